//! `ferry guess`: a job skeleton from a sample of the source, with the evidence; and the
//! `CREATE TABLE` of a guessed schema.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use arrow_schema::{DataType, SchemaRef};
use etl_source_csv::{Dialect, Encoding, Guess, HeaderMode};

use crate::dtype;

/// What `ferry guess` / `ferry load` read: CSV files, Parquet files, or a PostgreSQL table.
#[derive(Debug, Clone)]
pub enum Sample {
    /// CSV files and what was guessed from them.
    Csv {
        /// The path or glob as given.
        path: String,
        /// The guess.
        guess: Guess,
    },
    /// A PostgreSQL table (its schema is the catalog's).
    Postgres {
        /// The table.
        table: String,
        /// Its key (the primary key's single column, else a single-column unique index).
        key: String,
        /// The columns as the source reads them.
        schema: SchemaRef,
        /// The planner's estimate of its rows.
        rows: i64,
    },
    /// Parquet files (their schema is in the files).
    Parquet {
        /// The path or glob as given.
        path: String,
        /// The schema of the first file.
        schema: SchemaRef,
        /// Files.
        files: usize,
    },
}

/// The files a path or glob names (`data/*.csv`, a directory, a file).
///
/// # Errors
/// Nothing matches.
pub fn files_of(path: &str) -> anyhow::Result<Vec<PathBuf>> {
    crate::build::files(Path::new(path), "*")
}

fn is_parquet(p: &Path) -> bool {
    p.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet"))
}

/// Sample `path` (CSV unless every file is `.parquet`): up to `rows` rows of each CSV file.
///
/// # Errors
/// No file, unreadable files, nothing to guess from.
pub fn sample(path: &str, rows: usize) -> anyhow::Result<Sample> {
    let files = files_of(path)?;
    if files.iter().all(|f| is_parquet(f)) {
        let schema = etl_parquet::file_schema(&files[0])?;
        return Ok(Sample::Parquet {
            path: path.to_owned(),
            schema,
            files: files.len(),
        });
    }
    let guess = etl_source_csv::guess(&files, rows)?;
    Ok(Sample::Csv {
        path: path.to_owned(),
        guess,
    })
}

/// A TOML basic string (JSON's string escapes are TOML's).
fn lit(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

/// `CREATE TABLE IF NOT EXISTS table (…)` for `schema` (Arrow -> PostgreSQL: the one type
/// map of `etl-postgres`; `decimal(p,s)` as `numeric(p,s)`).
///
/// # Errors
/// A type PostgreSQL has no column type for.
pub fn create_table_sql(table: &str, schema: &SchemaRef) -> anyhow::Result<String> {
    let t = etl_sink_postgres::ident::TableName::parse(table);
    let mut cols = Vec::new();
    for f in schema.fields() {
        let ty = match f.data_type() {
            DataType::Decimal128(p, s) => format!("numeric({p},{s})"),
            dt => etl_postgres::types::PgType::for_arrow(dt)
                .with_context(|| format!("column `{}`: no PostgreSQL type for {dt}", f.name()))?
                .sql_name()
                .to_owned(),
        };
        let null = if f.is_nullable() { "" } else { " NOT NULL" };
        cols.push(format!(
            "    {} {ty}{null}",
            etl_sink_postgres::ident::quote_ident(f.name())
        ));
    }
    Ok(format!(
        "CREATE TABLE IF NOT EXISTS {} (\n{}\n)",
        t.sql(),
        cols.join(",\n")
    ))
}

/// The job name for a table name (letters, digits, `_`).
fn job_name(table: &str) -> String {
    let n: String = table
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if n.is_empty() { "job".into() } else { n }
}

/// `(url without the ferry parameters, table, mode)` of a target or source URL
/// (`postgres://…/db?table=t&mode=append`).
///
/// # Errors
/// Not a PostgreSQL URL, or a mode other than `replace` / `append`.
pub fn split_target(target: &str) -> anyhow::Result<(String, Option<String>, String)> {
    if !target.starts_with("postgres://") && !target.starts_with("postgresql://") {
        anyhow::bail!("the target must be a PostgreSQL URL (postgres://user@host/db?table=name)");
    }
    let (base, query) = target.split_once('?').unwrap_or((target, ""));
    let (mut table, mut mode, mut rest) = (None, "replace".to_owned(), Vec::new());
    for kv in query.split('&').filter(|s| !s.is_empty()) {
        match kv.split_once('=') {
            Some(("table", t)) => table = Some(t.to_owned()),
            Some(("mode", m)) if m == "replace" || m == "append" => mode = m.to_owned(),
            Some(("mode", m)) => anyhow::bail!("mode={m}: use replace or append"),
            _ => rest.push(kv),
        }
    }
    let url = if rest.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    Ok((url, table, mode))
}

/// Sample a PostgreSQL table: `postgres://…/db?table=name` (`schema.name` allowed). The key
/// is its primary key's column, else a single-column unique index's.
///
/// # Errors
/// No `table`, the server cannot be reached, no single-column key.
pub async fn sample_postgres(target: &str) -> anyhow::Result<Sample> {
    use sqlx::Connection as _;
    let (url, table, _) = split_target(target)?;
    let table = table.context("name the table: postgres://…/db?table=name")?;
    let opts = etl_sink_postgres::connect_options(&url)?;
    let mut conn = sqlx::PgConnection::connect_with(&opts)
        .await
        .with_context(|| format!("connecting to {}", etl_core::config::redact_url(&url)))?;
    let t = etl_sink_postgres::ident::TableName::parse(&table);
    let keys: Vec<(String, bool)> = sqlx::query_as(
        "SELECT a.attname::text, i.indisprimary FROM pg_index i
           JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
          WHERE i.indrelid = $1::regclass AND i.indisunique AND i.indnkeyatts = 1 AND i.indpred IS NULL
          ORDER BY i.indisprimary DESC, a.attnum",
    )
    .bind(t.sql())
    .fetch_all(&mut conn)
    .await
    .with_context(|| format!("reading the keys of {table}"))?;
    let key = keys.first().map(|(k, _)| k.clone()).with_context(|| {
        format!("{table} has no single-column primary key or unique index to read it by")
    })?;
    let rows: i64 = sqlx::query_scalar(
        "SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = $1::regclass",
    )
    .bind(t.sql())
    .fetch_one(&mut conn)
    .await?;
    let text = format!(
        "[job]\nname = \"guess\"\n[source]\nkind = \"postgres\"\nurl = \"${{SOURCE_URL}}\"\ntable = {}\nkey = {}\n[target]\nkind = \"parquet\"\ndir = \"x\"\n",
        lit(&table),
        lit(&key)
    );
    let job = crate::job::Job::parse(
        &etl_core::config::substitute_with(&text, |_| Some(url.clone()))?,
        Path::new("guess.toml"),
    )?;
    let schema = crate::pg_source::schema(&job).await?;
    Ok(Sample::Postgres {
        table,
        key,
        schema,
        rows,
    })
}

/// The table a sample loads into by default: the first file's stem as a SQL name.
pub fn default_table(s: &Sample) -> String {
    let path = match s {
        Sample::Csv { path, .. } | Sample::Parquet { path, .. } => path,
        Sample::Postgres { table, .. } => {
            return etl_sink_postgres::ident::TableName::parse(table).name;
        }
    };
    let stem = Path::new(path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = stem
        .split(['.', '*', '?'])
        .find(|s| !s.is_empty())
        .unwrap_or("data");
    let name = etl_source_csv::guess::sql_name(stem.trim_end_matches(['_', '-']));
    if name.is_empty() { "data".into() } else { name }
}

/// The job file text for `sample`, loading into PostgreSQL `table` at `url` (written as
/// given: `${DATABASE_URL}` stays a reference), paths relative to `base` when they can be.
///
/// # Errors
/// A type without a PostgreSQL column type.
pub fn job_toml(s: &Sample, url: &str, table: &str, mode: &str) -> anyhow::Result<String> {
    let mut out = String::new();
    let today = chrono::Utc::now().format("%Y-%m-%d");
    let (schema, renames) = match s {
        Sample::Csv { path, guess } => {
            let files = guess.files.len();
            writeln!(
                out,
                "# Written by `ferry guess {path}` on {today}: {files} files, {} rows sampled.",
                guess.rows_sampled
            )?;
            writeln!(
                out,
                "# Check the types (the evidence is in the comments), then: ferry run <this file>"
            )?;
            for n in &guess.notes {
                writeln!(out, "# note: {n}")?;
            }
            (
                guess.schema(),
                guess
                    .columns
                    .iter()
                    .filter_map(|c| {
                        c.header
                            .as_ref()
                            .filter(|h| **h != c.name)
                            .map(|h| (h.clone(), c.name.clone()))
                    })
                    .collect::<Vec<_>>(),
            )
        }
        Sample::Parquet {
            path,
            schema,
            files,
        } => {
            writeln!(
                out,
                "# Written by `ferry guess {path}` on {today}: {files} Parquet files (types from the files)."
            )?;
            (schema.clone(), Vec::new())
        }
        Sample::Postgres {
            table,
            key,
            schema,
            rows,
        } => {
            writeln!(
                out,
                "# Written by `ferry guess` on {today}: the PostgreSQL table {table}, about {rows} rows,"
            )?;
            writeln!(
                out,
                "# read in `{key}` order from one snapshot. Set SOURCE_URL (and DATABASE_URL), then: ferry run <this file>"
            )?;
            (schema.clone(), Vec::new())
        }
    };
    writeln!(out, "\n[job]\nname = {}\n", lit(&job_name(table)))?;
    writeln!(out, "[source]")?;
    match s {
        Sample::Csv { path, guess } => {
            writeln!(out, "kind = \"csv\"\npath = {}", lit(path))?;
            writeln!(out, "columns = [")?;
            for c in &guess.columns {
                let name = c.header.clone().unwrap_or_else(|| c.name.clone());
                let null = if c.nullable { "" } else { ", nullable = false" };
                let mut evidence = format!("{} values, {} NULL", c.values, c.nulls);
                for m in c.did_not_fit.iter().take(3) {
                    let v: String = m.value.chars().take(40).collect();
                    write!(
                        evidence,
                        "; {v:?} ({}:{}) is not {}",
                        short(&m.file),
                        m.line,
                        m.types.join("/")
                    )?;
                }
                writeln!(
                    out,
                    "  {{ name = {}, type = {}{null} }}, # {evidence}",
                    lit(&name),
                    lit(&dtype::name(&c.data_type))
                )?;
            }
            writeln!(out, "]\n")?;
            writeln!(out, "{}", dialect_toml(&guess.dialect))?;
        }
        Sample::Parquet { path, .. } => {
            writeln!(out, "kind = \"parquet\"\npath = {}\n", lit(path))?;
        }
        Sample::Postgres {
            table, key, schema, ..
        } => {
            writeln!(
                out,
                "kind = \"postgres\"\nurl = \"${{SOURCE_URL}}\"\ntable = {}\nkey = {}",
                lit(table),
                lit(key)
            )?;
            let cols: Vec<String> = schema
                .fields()
                .iter()
                .map(|f| format!("{} {}", f.name(), dtype::name(f.data_type())))
                .collect();
            writeln!(out, "# columns: {}\n", cols.join(", "))?;
        }
    }
    if !renames.is_empty() {
        writeln!(
            out,
            "# The header's names as SQL names.\n[[transform]]\nkind = \"rename\""
        )?;
        let pairs: Vec<String> = renames
            .iter()
            .map(|(a, b)| format!("{} = {}", lit(a), lit(b)))
            .collect();
        writeln!(out, "columns = {{ {} }}\n", pairs.join(", "))?;
    }
    writeln!(
        out,
        "[target]\nkind = \"postgres\"\nurl = {}\ntable = {}\nmode = {}",
        lit(url),
        lit(table),
        lit(mode)
    )?;
    let ddl = create_table_sql(table, &schema)?;
    writeln!(
        out,
        "# Run when the table is missing (the loaded table gets this shape).\ncreate = \"\"\"\n{ddl}\n\"\"\""
    )?;
    writeln!(out, "\n[[gate]]\ncheck = \"reject_rate\"\nmax = 0.01")?;
    // The table loaded holds exactly the rows loaded only when it is a new one (staging).
    if mode != "append" {
        writeln!(out, "\n[[gate]]\ncheck = \"row_count\"")?;
    }
    Ok(out)
}

fn short(file: &str) -> String {
    Path::new(file)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| file.to_owned())
}

/// The `[source.dialect]` table of a guessed dialect (defaults left out).
fn dialect_toml(d: &Dialect) -> String {
    let def = Dialect::default();
    let mut out = String::from("[source.dialect]\n");
    let ch = |c: Option<char>| {
        c.map(|c| lit(&c.to_string()))
            .unwrap_or_else(|| "\"\"".into())
    };
    if d.delimiter != def.delimiter {
        writeln!(out, "delimiter = {}", lit(&d.delimiter.to_string())).ok();
    }
    if d.quote != def.quote {
        writeln!(out, "quote = {}", ch(d.quote)).ok();
    }
    if d.escape != def.escape {
        writeln!(out, "escape = {}", ch(d.escape)).ok();
    }
    let enc = match d.encoding {
        Encoding::Utf8 => "utf-8",
        _ => "latin-1",
    };
    writeln!(out, "encoding = {}", lit(enc)).ok();
    // Columns are listed by their header names (renamed to SQL names by a transform), so
    // a header is matched by name: a file whose columns moved or changed is an error.
    let header = match d.header {
        HeaderMode::Present | HeaderMode::Skip => "present",
        HeaderMode::Absent => "absent",
    };
    writeln!(out, "header = {}", lit(header)).ok();
    let markers: Vec<String> = d.null_markers.iter().map(|m| lit(m)).collect();
    writeln!(out, "null_markers = [{}]", markers.join(", ")).ok();
    if d.empty_is_null != def.empty_is_null {
        writeln!(out, "empty_is_null = {}", d.empty_is_null).ok();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_targets_split_into_url_table_and_mode() {
        let (u, t, m) = split_target("postgres://u@h/db?table=trips&sslmode=disable").unwrap();
        assert_eq!(
            (u.as_str(), t.as_deref(), m.as_str()),
            (
                "postgres://u@h/db?sslmode=disable",
                Some("trips"),
                "replace"
            )
        );
        let (_, t, m) = split_target("postgres://u@h/db?mode=append").unwrap();
        assert_eq!((t, m.as_str()), (None, "append"));
        assert!(split_target("mysql://h/db").is_err());
    }
}
