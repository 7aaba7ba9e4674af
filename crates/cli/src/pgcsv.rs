//! A CSV file into a temporary table (every column text, named by the header), for the
//! reference data a `[[prepare]]` step inserts.

use std::path::Path;

use anyhow::Context as _;
use etl_sink_postgres::ident::quote_ident;
use sqlx::PgConnection;

/// Create `TEMP TABLE table` (dropped at commit) with the header's columns as text and
/// `COPY` the file into it; returns the rows copied.
///
/// # Errors
/// The file cannot be read, has no header, or the COPY fails (PostgreSQL names the line).
pub async fn copy_csv_temp(
    conn: &mut PgConnection,
    path: &Path,
    table: &str,
) -> anyhow::Result<u64> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut reader = csv::Reader::from_reader(bytes.as_slice());
    let header = reader
        .headers()
        .with_context(|| format!("{}: no header line", path.display()))?
        .clone();
    if header.is_empty() {
        anyhow::bail!("{}: empty header", path.display());
    }
    let cols: Vec<String> = header
        .iter()
        .map(|h| format!("{} text", quote_ident(h.trim_start_matches('\u{feff}'))))
        .collect();
    let t = quote_ident(table);
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE TEMP TABLE {t} ({}) ON COMMIT DROP",
        cols.join(", ")
    )))
    .execute(&mut *conn)
    .await?;
    let mut copy = conn
        .copy_in_raw(&format!(
            "COPY {t} FROM STDIN WITH (FORMAT csv, HEADER true)"
        ))
        .await?;
    copy.send(bytes.as_slice()).await?;
    let n = copy
        .finish()
        .await
        .with_context(|| format!("copying {} into {table}", path.display()))?;
    Ok(n)
}
