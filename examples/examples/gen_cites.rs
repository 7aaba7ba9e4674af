//! Writes synthetic CITES Trade Database bulk CSV files (`trade_db_1.csv` ..), in the exact
//! format of the real release, for loading tests and benchmarks.
//!
//! ```text
//! cargo run --release --example gen_cites -- --files 56 --rows-per-file 500000 --out /tmp/cites
//! ```

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use etl_examples::cites::generate::{self, BadRowKind, GenOptions};

/// Generate deterministic CITES trade bulk CSV files.
///
/// The files imitate the real "Full CITES Trade Database Download": the same header and
/// quoting (text fields quoted, Year and Quantity not, a missing quantity written as an
/// empty unquoted field), LF line endings, real taxa with CITES taxonomy, "NA" = Namibia.
/// The same options always give byte-identical files.
#[derive(Debug, Parser)]
#[command(name = "gen_cites", version)]
struct Args {
    /// Number of files to write: trade_db_1.csv .. trade_db_N.csv (the real v2025.1
    /// release has 56).
    #[arg(long, default_value_t = 3)]
    files: usize,

    /// Data rows per file, header not counted (the real release has 500,000).
    #[arg(long, default_value_t = 2_000)]
    rows_per_file: usize,

    /// Output directory (created if missing; existing trade_db_*.csv are overwritten).
    #[arg(long)]
    out: PathBuf,

    /// PRNG seed; the same seed and options give byte-identical files.
    #[arg(long, default_value_t = 1)]
    seed: u64,

    /// Probability that a row is malformed. Bad rows cycle through: Year `19x5`, Year
    /// 1899, Quantity "abc", a dropped field (19 fields), Appendix "IV", empty Taxon,
    /// Year 2031, Quantity 1.2.3.
    #[arg(long, default_value_t = 0.001)]
    bad_row_rate: f64,

    /// Probability that a well-formed row names a real CITES taxon that is not in the
    /// species list (--species-csv), i.e. a row that matches no species.
    #[arg(long, default_value_t = 0.02)]
    unknown_taxon_rate: f64,

    /// Probability that a well-formed row has no Quantity (a valid NULL, not a bad row).
    #[arg(long, default_value_t = 0.0005)]
    missing_quantity_rate: f64,

    /// Id of the first row; later ids increase by random gaps of 1..=32 across all files.
    #[arg(long, default_value_t = 1_000_000_000)]
    first_id: u64,

    /// Also write `scientific_name,common_name` for every taxon the generator treats as
    /// known (the unknown-taxon rows match none of them) to this file.
    #[arg(long)]
    species_csv: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let opts = GenOptions {
        files: args.files,
        rows_per_file: args.rows_per_file,
        seed: args.seed,
        bad_row_rate: args.bad_row_rate,
        unknown_taxon_rate: args.unknown_taxon_rate,
        missing_quantity_rate: args.missing_quantity_rate,
        first_id: args.first_id,
    };
    let started = Instant::now();
    let summary = generate::generate(&args.out, &opts)
        .with_context(|| format!("writing CITES files into {}", args.out.display()))?;
    let elapsed = started.elapsed().as_secs_f64();
    for file in &summary.files {
        println!("wrote {}", file.display());
    }
    println!(
        "{} files, {} rows, {:.1} MB in {:.2} s ({:.0} rows/s, {:.0} MB/s)",
        summary.files.len(),
        summary.rows,
        summary.bytes as f64 / 1e6,
        elapsed,
        summary.rows as f64 / elapsed.max(1e-9),
        summary.bytes as f64 / 1e6 / elapsed.max(1e-9),
    );
    println!(
        "bad rows: {} ({})",
        summary.bad_rows.len(),
        BadRowKind::ALL
            .iter()
            .map(|k| format!("{} {}", k.name(), summary.bad_rows_of(*k)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "unknown-taxon rows: {}, rows without quantity: {}, Arctic-species rows: {}",
        summary.unknown_taxon_rows, summary.missing_quantity_rows, summary.arctic_rows
    );
    if let Some(path) = &args.species_csv {
        generate::write_species_csv(path).with_context(|| format!("writing {}", path.display()))?;
        println!(
            "wrote {} ({} taxa)",
            path.display(),
            generate::known_taxa().count()
        );
    }
    Ok(())
}
