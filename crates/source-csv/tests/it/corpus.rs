//! The bad-input corpus: every file of `tests/corpus/` decoded against the outcome its
//! entry in `tests/corpus/manifest.toml` states (rows with their line and values, rejects
//! with line, column, kind and reason, or the error that stops the file), fed in pieces of
//! several sizes with several batch sizes, and once through [`CsvSource`] from the file.
//!
//! `CORPUS_PRINT=1` prints the outcome the decoder gives for every case, in the manifest's
//! format (to write down a new case after checking it by hand).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, ArrayRef};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use etl_core::{Batch, Extract, ExtractOptions};
use etl_source_csv::{CsvOptions, CsvSource};
use futures::StreamExt;

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

/// The schemas the manifest names.
fn schema(name: &str) -> SchemaRef {
    use DataType::*;
    let f = |n: &str, t: DataType, nullable: bool| Field::new(n, t, nullable);
    let fields = match name {
        "two" => vec![f("id", Int64, false), f("name", Utf8View, true)],
        "two_utf8" => vec![f("id", Int64, false), f("name", Utf8, true)],
        "cites" => return crate::cites_schema(),
        "typed" => return crate::typed_schema(),
        "ints" => vec![
            f("i16", Int16, true),
            f("i32", Int32, true),
            f("i64", Int64, true),
            f("u8", UInt8, true),
        ],
        "decimals" => vec![
            f("d5_2", Decimal128(5, 2), true),
            f("d38_10", Decimal128(38, 10), true),
        ],
        "times" => vec![
            f("d", Date32, true),
            f("ns", Timestamp(TimeUnit::Nanosecond, None), true),
            f(
                "us",
                Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
        ],
        other => panic!("unknown schema {other:?} in the manifest"),
    };
    Arc::new(Schema::new(fields))
}

/// One value for the manifest: strings quoted (so `""`, `" "` and NULL differ), timestamps
/// as the raw integer with their unit, everything else as the report renders it.
fn value(a: &ArrayRef, row: usize) -> String {
    if a.is_null(row) {
        return "NULL".to_owned();
    }
    match a.data_type() {
        DataType::Utf8View => text(a.as_string_view().value(row)),
        DataType::Utf8 => text(a.as_string::<i32>().value(row)),
        DataType::UInt8 => a.as_primitive::<UInt8Type>().value(row).to_string(),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => {
            format!(
                "{}ns",
                a.as_primitive::<TimestampNanosecondType>().value(row)
            )
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            format!(
                "{}us",
                a.as_primitive::<TimestampMicrosecondType>().value(row)
            )
        }
        _ => etl_core::batch::render_value(a, row),
    }
}

/// A string value quoted; a long one by its start, length and count of quotes.
fn text(s: &str) -> String {
    if s.chars().count() <= 60 {
        return format!("{s:?}");
    }
    let start: String = s.chars().take(12).collect();
    let quotes = s.matches('"').count();
    format!("{start:?}… ({} chars, {quotes} quotes)", s.chars().count())
}

/// `s` as a TOML basic string.
fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() || c == '\u{feff}' => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// What decoding a file gives: `line: v | v` rows and `line column kind: reason` rejects,
/// or the error.
#[derive(Debug, PartialEq)]
enum Outcome {
    Read {
        rows: Vec<String>,
        rejects: Vec<String>,
    },
    Error(String),
}

fn outcome(batches: &[Batch]) -> Outcome {
    let mut rows = Vec::new();
    let mut rejects = Vec::new();
    for b in batches {
        for r in 0..b.num_rows() {
            let vals: Vec<String> = b.data.columns().iter().map(|a| value(a, r)).collect();
            rows.push(format!("{}: {}", b.records[r], vals.join(" | ")));
        }
        for j in &b.rejects {
            rejects.push(format!(
                "{} {} {}: {}",
                j.record,
                j.column.as_deref().unwrap_or("-"),
                j.kind,
                j.reason
            ));
        }
    }
    Outcome::Read { rows, rejects }
}

fn strings(case: &toml::Table, key: &str) -> Vec<String> {
    case.get(key)
        .map(|v| {
            v.as_array()
                .unwrap_or_else(|| panic!("{key} must be an array"))
                .iter()
                .map(|s| s.as_str().expect("strings").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn options(case: &toml::Table) -> CsvOptions {
    let mut o = CsvOptions::default();
    for (k, v) in case
        .get("options")
        .and_then(|v| v.as_table())
        .into_iter()
        .flatten()
    {
        o = match k.as_str() {
            "ignore_extra_columns" => o.with_ignore_extra_columns(v.as_bool().unwrap()),
            "empty_is_null" => o.with_empty_is_null(v.as_bool().unwrap()),
            "delimiter" => o.with_delimiter(v.as_str().unwrap().as_bytes()[0]),
            "max_record_bytes" => o.with_max_record_bytes(v.as_integer().unwrap() as usize),
            other => panic!("unknown option {other:?}"),
        };
    }
    o
}

/// Read `path` through the file source, as a pipeline does.
async fn through_source(schema: SchemaRef, path: &Path, opts: CsvOptions) -> Outcome {
    let source = CsvSource::files(schema, [path]).with_options(opts.with_chunk_size(4096));
    let units = source.units().await.unwrap();
    let stream = source
        .open(
            &units[0],
            ExtractOptions {
                batch_size: 3,
                buffer: 1,
            },
        )
        .unwrap();
    let mut batches = Vec::new();
    let mut stream = std::pin::pin!(stream);
    while let Some(b) = stream.next().await {
        match b {
            Ok(b) => batches.push(b),
            Err(e) => return Outcome::Error(e.to_string()),
        }
    }
    outcome(&batches)
}

#[tokio::test]
async fn every_corpus_file_gives_its_stated_outcome() {
    let dir = corpus_dir();
    let manifest: toml::Table =
        toml::from_str(&std::fs::read_to_string(dir.join("manifest.toml")).unwrap()).unwrap();
    let cases = manifest["case"].as_array().expect("[[case]] entries");
    let print = std::env::var_os("CORPUS_PRINT").is_some();
    let mut listed = std::collections::BTreeSet::new();
    let mut failures = Vec::new();
    for case in cases {
        let case = case.as_table().unwrap();
        let file = case["file"].as_str().unwrap();
        assert!(listed.insert(file.to_owned()), "{file} is listed twice");
        assert!(
            case.get("about").and_then(|a| a.as_str()).is_some(),
            "{file}: every case says what it is about"
        );
        let schema = schema(case["schema"].as_str().unwrap());
        let opts = options(case);
        let input = std::fs::read(dir.join(file)).unwrap();
        let expected = match case.get("error") {
            Some(e) => Outcome::Error(e.as_str().unwrap().to_owned()),
            None => Outcome::Read {
                rows: strings(case, "rows"),
                rejects: strings(case, "rejects"),
            },
        };
        // Every way of feeding the bytes gives the same outcome.
        let mut seen = Vec::new();
        for chunk in [1, 7, 4096, input.len() + 1] {
            if chunk < 64 && input.len() > 10_000 {
                continue;
            }
            for batch_size in [1, 2, 1000] {
                let got = match crate::decode_unit_in_chunks(
                    file,
                    schema.clone(),
                    &input,
                    chunk,
                    batch_size,
                    opts.clone(),
                ) {
                    Ok(batches) => outcome(&batches),
                    Err(e) => Outcome::Error(e.to_string()),
                };
                seen.push((chunk, batch_size, got));
            }
        }
        let from_file = through_source(schema.clone(), &dir.join(file), opts.clone()).await;
        if print {
            println!("[[case]]\nfile = {}", toml_str(file));
            let list = |v: &[String]| {
                v.iter()
                    .map(|s| format!("\n  {},", toml_str(s)))
                    .collect::<String>()
            };
            match &seen[0].2 {
                Outcome::Error(e) => println!("error = {}", toml_str(e)),
                Outcome::Read { rows, rejects } => {
                    println!("rows = [{}\n]\nrejects = [{}\n]", list(rows), list(rejects))
                }
            }
            println!();
        }
        for (chunk, batch_size, got) in &seen {
            if *got != expected {
                failures.push(format!(
                    "{file} (pieces of {chunk} bytes, batches of {batch_size}):\n  expected {expected:?}\n  got      {got:?}"
                ));
                break;
            }
        }
        // The file source wraps errors in the pipeline's error type: same text inside.
        let same = match (&from_file, &expected) {
            (Outcome::Error(got), Outcome::Error(want)) => got.contains(want.as_str()),
            (got, want) => got == want,
        };
        if !same {
            failures.push(format!(
                "{file} (through CsvSource):\n  expected {expected:?}\n  got      {from_file:?}"
            ));
        }
    }
    // Every file of the corpus is in the manifest.
    let on_disk: std::collections::BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".csv"))
        .collect();
    assert_eq!(on_disk, listed, "files of tests/corpus vs manifest entries");
    assert!(
        listed.len() >= 40,
        "the corpus holds {} cases",
        listed.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
