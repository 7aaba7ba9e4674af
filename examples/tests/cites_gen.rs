//! Tests of the CITES trade-data generator (`etl_examples::cites::generate`) and of the bundled
//! sample data it produced.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use etl_examples::cites::generate::{
    self, BadRowKind, FIELD_COUNT, GenOptions, GenSummary, HEADER, arctic_taxa, known_taxa,
    unknown_taxa,
};

fn small(seed: u64) -> GenOptions {
    GenOptions {
        files: 3,
        rows_per_file: 1_500,
        seed,
        ..GenOptions::default()
    }
}

fn read_lines(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).expect("read generated file");
    assert!(
        !text.contains('\r'),
        "{}: CR found, line endings must be LF",
        path.display()
    );
    assert!(
        text.ends_with('\n'),
        "{}: last line must end with LF",
        path.display()
    );
    text.lines().map(str::to_owned).collect()
}

/// Splits a CSV line on commas outside double quotes, keeping the quotes, so a test can
/// tell `""` (empty string) from nothing (missing number).
fn split_raw(line: &str) -> Vec<&str> {
    let mut fields = Vec::new();
    let mut in_quotes = false;
    let mut start = 0;
    for (i, c) in line.char_indices() {
        match c {
            '"' => in_quotes = !in_quotes,
            ',' if !in_quotes => {
                fields.push(&line[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    assert!(!in_quotes, "unterminated quote in {line}");
    fields.push(&line[start..]);
    fields
}

fn is_quoted(field: &str) -> bool {
    field.len() >= 2 && field.starts_with('"') && field.ends_with('"')
}

fn unquote(field: &str) -> &str {
    assert!(is_quoted(field), "not quoted: {field}");
    &field[1..field.len() - 1]
}

fn generate(dir: &Path, opts: &GenOptions) -> GenSummary {
    generate::generate(dir, opts).expect("generate")
}

/// Every data row of every file as `(file number, line number, raw fields)`.
fn all_rows(files: &[PathBuf]) -> Vec<(usize, u64, Vec<String>)> {
    let mut rows = Vec::new();
    for (i, file) in files.iter().enumerate() {
        for (n, line) in read_lines(file).iter().enumerate().skip(1) {
            let fields = split_raw(line).into_iter().map(str::to_owned).collect();
            rows.push((i + 1, n as u64 + 1, fields));
        }
    }
    rows
}

#[test]
fn same_options_give_identical_bytes_and_another_seed_differs() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let c = tempfile::tempdir().unwrap();
    let fa = generate::write_files(a.path(), &small(7)).unwrap();
    let fb = generate::write_files(b.path(), &small(7)).unwrap();
    let fc = generate::write_files(c.path(), &small(8)).unwrap();
    assert_eq!(fa.len(), 3);
    for (i, (x, y)) in fa.iter().zip(&fb).enumerate() {
        assert_eq!(
            x.file_name().unwrap(),
            format!("trade_db_{}.csv", i + 1).as_str()
        );
        assert_eq!(
            std::fs::read(x).unwrap(),
            std::fs::read(y).unwrap(),
            "{}",
            x.display()
        );
    }
    assert_ne!(
        std::fs::read(&fa[0]).unwrap(),
        std::fs::read(&fc[0]).unwrap()
    );
}

#[test]
fn header_and_quoting_match_the_real_release() {
    let dir = tempfile::tempdir().unwrap();
    let summary = generate(dir.path(), &small(11));
    let bad: HashSet<(usize, u64)> = summary.bad_rows.iter().map(|b| (b.file, b.line)).collect();
    let mut checked = 0;
    for file in &summary.files {
        let lines = read_lines(file);
        assert_eq!(lines[0], HEADER);
        assert_eq!(lines.len(), 1 + 1_500);
    }
    for (file, line, fields) in all_rows(&summary.files) {
        if bad.contains(&(file, line)) {
            continue;
        }
        assert_eq!(fields.len(), FIELD_COUNT, "file {file} line {line}");
        for (i, f) in fields.iter().enumerate() {
            match i {
                // Year: unquoted 4-digit integer in range.
                1 => {
                    assert!(!f.starts_with('"'), "Year quoted: {f}");
                    let year: u16 = f.parse().expect("integer year");
                    assert!((1975..=2024).contains(&year), "year {year}");
                }
                // Quantity: unquoted number, or nothing when missing.
                9 => {
                    assert!(!f.starts_with('"'), "Quantity quoted: {f}");
                    if !f.is_empty() {
                        let q: f64 = f.parse().expect("numeric quantity");
                        assert!(q > 0.0, "quantity {f}");
                        assert!(!f.contains('e') && !f.contains('E'), "scientific: {f}");
                        if let Some((_, frac)) = f.split_once('.') {
                            assert!(frac.len() <= 6 && !frac.ends_with('0'), "{f}");
                        }
                    }
                }
                _ => assert!(is_quoted(f), "field {i} not quoted: {f:?}"),
            }
        }
        let id = unquote(&fields[0]);
        assert!(
            id.len() == 10 && id.bytes().all(|b| b.is_ascii_digit()),
            "Id {id}"
        );
        assert!(["I", "II", "III", "N"].contains(&unquote(&fields[2])));
        assert!(!unquote(&fields[3]).is_empty(), "empty taxon in a good row");
        assert!(["I", "E"].contains(&unquote(&fields[16])));
        assert!(
            [
                "", "T", "S", "Z", "P", "Q", "M", "E", "B", "N", "L", "H", "Y", "G"
            ]
            .contains(&unquote(&fields[14]))
        );
        assert!(
            ["", "W", "C", "D", "F", "R", "A", "I", "O", "U", "X"].contains(&unquote(&fields[15]))
        );
        for permit in &fields[17..20] {
            let p = unquote(permit);
            assert!(
                p.is_empty() || (p.len() == 10 && p.bytes().all(|b| b.is_ascii_hexdigit())),
                "permit {p}"
            );
        }
        checked += 1;
    }
    assert!(checked > 4_400, "only {checked} good rows checked");
}

#[test]
fn ids_are_unique_and_increasing_across_files() {
    let dir = tempfile::tempdir().unwrap();
    let opts = GenOptions {
        first_id: 4_000_000_000,
        ..small(3)
    };
    let summary = generate(dir.path(), &opts);
    let ids: Vec<u64> = all_rows(&summary.files)
        .iter()
        .map(|(_, _, f)| unquote(&f[0]).parse().unwrap())
        .collect();
    assert_eq!(ids.len(), 4_500);
    assert_eq!(ids[0], 4_000_000_000);
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ids must strictly increase"
    );
    let unique: HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len());
    // Ids that would overflow 10 digits are refused, not written with 11.
    let too_big = GenOptions {
        first_id: 9_999_999_990,
        ..small(3)
    };
    let err = generate::generate(tempfile::tempdir().unwrap().path(), &too_big).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}

/// Classifies a raw row the way a strict loader would, without trusting the summary.
fn malformation(fields: &[String]) -> Option<BadRowKind> {
    if fields.len() != FIELD_COUNT {
        return Some(BadRowKind::WrongFieldCount);
    }
    match fields[1].as_str() {
        "19x5" => return Some(BadRowKind::YearNotInteger),
        "1899" => return Some(BadRowKind::YearTooEarly),
        "2031" => return Some(BadRowKind::YearTooLate),
        _ => {}
    }
    match fields[9].as_str() {
        "\"abc\"" => return Some(BadRowKind::QuantityText),
        "1.2.3" => return Some(BadRowKind::QuantityMalformed),
        _ => {}
    }
    if fields[2] == "\"IV\"" {
        return Some(BadRowKind::AppendixInvalid);
    }
    if fields[3] == "\"\"" {
        return Some(BadRowKind::EmptyTaxon);
    }
    None
}

#[test]
fn bad_rows_and_unknown_taxa_come_at_the_asked_rates() {
    let dir = tempfile::tempdir().unwrap();
    let opts = GenOptions {
        files: 4,
        rows_per_file: 5_000,
        seed: 99,
        bad_row_rate: 0.01,
        unknown_taxon_rate: 0.05,
        ..GenOptions::default()
    };
    let summary = generate(dir.path(), &opts);
    assert_eq!(summary.rows, 20_000);

    let unknown: HashSet<&str> = unknown_taxa().iter().map(|t| t.name).collect();
    let mut found_bad = Vec::new();
    let mut unknown_rows = 0u64;
    for (file, line, fields) in all_rows(&summary.files) {
        if let Some(kind) = malformation(&fields) {
            found_bad.push((file, line, kind));
        } else if unknown.contains(unquote(&fields[3])) {
            unknown_rows += 1;
        }
    }
    // The files hold exactly the bad rows the summary lists, of the listed kinds.
    let listed: Vec<_> = summary
        .bad_rows
        .iter()
        .map(|b| (b.file, b.line, b.kind))
        .collect();
    assert_eq!(found_bad, listed);
    // ~200 expected (binomial sd ~14).
    let n_bad = found_bad.len();
    assert!((140..=260).contains(&n_bad), "{n_bad} bad rows");
    // Kinds cycle, so every kind appears, equally often within one.
    for kind in BadRowKind::ALL {
        let n = summary.bad_rows_of(kind) as usize;
        assert!(n.abs_diff(n_bad / 8) <= 1, "{kind:?}: {n}");
    }
    // ~990 expected (sd ~31).
    assert_eq!(unknown_rows, summary.unknown_taxon_rows);
    assert!(
        (850..=1_130).contains(&unknown_rows),
        "{unknown_rows} unknown-taxon rows"
    );
}

#[test]
fn zero_rates_give_clean_files() {
    let dir = tempfile::tempdir().unwrap();
    let opts = GenOptions {
        bad_row_rate: 0.0,
        unknown_taxon_rate: 0.0,
        missing_quantity_rate: 0.0,
        ..small(5)
    };
    let summary = generate(dir.path(), &opts);
    let known: HashSet<&str> = known_taxa().map(|t| t.name).collect();
    for (_, _, fields) in all_rows(&summary.files) {
        assert_eq!(malformation(&fields), None);
        assert!(known.contains(unquote(&fields[3])));
        assert!(!fields[9].is_empty());
    }
    assert!(summary.bad_rows.is_empty());
    assert_eq!(summary.unknown_taxon_rows, 0);
}

#[test]
fn namibia_and_unknown_country_codes_are_present() {
    let dir = tempfile::tempdir().unwrap();
    let summary = generate(dir.path(), &small(21));
    let rows = all_rows(&summary.files);
    let code = |i: usize, c: &str| {
        rows.iter()
            .filter(|(_, _, f)| f.len() == 20 && f[i] == c)
            .count()
    };
    let na = code(11, "\"NA\"") + code(12, "\"NA\"");
    assert!(na > 10, "only {na} NA importers/exporters");
    assert!(code(13, "\"XX\"") > 10);
    assert!(
        code(13, "\"\"") > rows.len() / 2,
        "origin should mostly be empty"
    );
}

#[test]
fn species_csv_lists_every_known_taxon_and_no_unknown_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("species.csv");
    generate::write_species_csv(&path).unwrap();
    let lines = read_lines(&path);
    assert_eq!(lines[0], "scientific_name,common_name");
    let names: HashSet<&str> = lines[1..]
        .iter()
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(names.len(), lines.len() - 1, "duplicate scientific names");
    assert_eq!(names.len(), known_taxa().count());
    assert!(known_taxa().all(|t| names.contains(t.name)));
    assert!(unknown_taxa().iter().all(|t| !names.contains(t.name)));
    assert_eq!(arctic_taxa().len(), 43);
    for cites_name in [
        "Branta canadensis leucopareia",
        "Nyctea scandiaca",
        "Acipenser baerii",
    ] {
        assert!(names.contains(cites_name), "{cites_name}");
    }
    for newer_name in ["Branta hutchinsii leucopareia", "Bubo scandiacus"] {
        assert!(!names.contains(newer_name), "{newer_name}");
    }
}

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data")
}

/// The bundled samples are exactly what the command in `data/README.md` regenerates.
#[test]
fn bundled_samples_match_their_regeneration() {
    let bundled = data_dir().join("cites");
    let dir = tempfile::tempdir().unwrap();
    let opts = GenOptions {
        files: 3,
        rows_per_file: 2_000,
        seed: 1,
        ..GenOptions::default()
    };
    let summary = generate(dir.path(), &opts);
    for file in &summary.files {
        let name = file.file_name().unwrap();
        let committed = std::fs::read(bundled.join(name)).expect("bundled trade_db file");
        assert!(
            committed == std::fs::read(file).unwrap(),
            "{name:?} differs from regeneration"
        );
    }
    let species = dir.path().join("species.csv");
    generate::write_species_csv(&species).unwrap();
    assert!(std::fs::read(bundled.join("species.csv")).unwrap() == std::fs::read(species).unwrap());
}

#[test]
fn bundled_arctic_files_are_consistent() {
    let arctic = data_dir().join("arctic");
    let species = read_lines(&arctic.join("arctic_species.csv"));
    assert_eq!(species[0], "scientific_name,common_name");
    assert_eq!(species.len(), 44);
    let arctic_names: HashSet<&str> = species[1..]
        .iter()
        .map(|l| l.split(',').next().unwrap())
        .collect();
    // The generator's Arctic taxa are exactly the bundled Arctic species.
    let generated: HashSet<&str> = arctic_taxa().iter().map(|t| t.name).collect();
    assert_eq!(arctic_names, generated);

    let synonyms = read_lines(&arctic.join("species_synonyms.csv"));
    assert_eq!(synonyms[0], "synonym,scientific_name");
    let pairs: Vec<(&str, &str)> = synonyms[1..]
        .iter()
        .map(|l| l.split_once(',').unwrap())
        .collect();
    assert!(pairs.contains(&(
        "Branta hutchinsii leucopareia",
        "Branta canadensis leucopareia"
    )));
    assert!(pairs.contains(&("Bubo scandiacus", "Nyctea scandiaca")));
    let synonym_names: HashSet<&str> = pairs.iter().map(|p| p.0).collect();
    assert_eq!(
        synonym_names.len(),
        pairs.len(),
        "a synonym maps to one name only"
    );
    for (synonym, name) in &pairs {
        assert_ne!(synonym, name);
        // Targets are CITES names; no chains.
        assert!(!synonym_names.contains(name), "{name} is itself a synonym");
    }
}
