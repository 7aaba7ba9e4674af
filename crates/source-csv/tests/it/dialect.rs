//! Dialects through `CsvSource`: quote, escape, Latin-1, header modes, null markers, and
//! gzip / zstd files read transparently.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_array::types::{Decimal128Type, Int32Type, Int64Type};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use etl_core::{Batch, Extract, ExtractOptions, Reject};
use etl_source_csv::{CsvError, CsvOptions, CsvSource, Dialect, Encoding, HeaderMode};
use futures::StreamExt;

use crate::flatten;

/// Every batch of every unit of `source`.
pub async fn read_all(source: &CsvSource) -> Vec<Batch> {
    let mut out = Vec::new();
    for unit in source.units().await.unwrap() {
        let opts = ExtractOptions {
            batch_size: 3,
            buffer: 2,
        };
        let mut stream = source.open(&unit, opts).unwrap();
        while let Some(b) = stream.next().await {
            out.push(b.unwrap());
        }
    }
    out
}

/// Write `bytes` to `dir/name`.
pub fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// `bytes` gzip-compressed, in two members (a multi-member file, as `cat a.gz b.gz`).
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let (a, b) = bytes.split_at(bytes.len() / 2);
    for part in [a, b] {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(part).unwrap();
        out.extend(enc.finish().unwrap());
    }
    out
}

/// `bytes` zstd-compressed.
pub fn zstd(bytes: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(bytes, 3).unwrap()
}

fn schema(fields: Vec<Field>) -> SchemaRef {
    Arc::new(Schema::new(fields))
}

fn lines(rejects: &[Reject]) -> Vec<(u64, &str)> {
    rejects
        .iter()
        .map(|r| (r.record, r.kind.as_str()))
        .collect()
}

#[tokio::test]
async fn latin1_file_is_transcoded_and_utf8_would_reject_it() {
    let dir = tempfile::tempdir().unwrap();
    // "café" and "Zoë" in Latin-1: é is 0xE9, ë is 0xEB.
    let path = write(
        dir.path(),
        "l1.csv",
        b"id,name\n1,caf\xe9\n2,Zo\xeb\n3,plain\n",
    );
    let s = schema(vec![
        Field::new("id", DataType::Int32, false),
        Field::new("name", DataType::Utf8View, false),
    ]);
    let source = CsvSource::files(s.clone(), [&path])
        .with_options(CsvOptions::default().with_encoding(Encoding::Latin1));
    let batches = read_all(&source).await;
    let (rows, rejects) = flatten(&batches);
    assert!(rejects.is_empty(), "{rejects:?}");
    assert_eq!(
        rows,
        [
            (2, "1,café".to_string()),
            (3, "2,Zoë".into()),
            (4, "3,plain".into())
        ]
    );
    // Progress counts the file's bytes, not the transcoded ones.
    let consumed: u64 = batches.iter().map(|b| b.consumed).sum();
    assert_eq!(consumed, std::fs::metadata(&path).unwrap().len());

    // Read as UTF-8 the same file rejects the Latin-1 records.
    let utf8 = read_all(&CsvSource::files(s, [&path])).await;
    let (rows, rejects) = flatten(&utf8);
    assert_eq!(rows.len(), 1);
    assert_eq!(lines(&rejects), [(2, "invalid_utf8"), (3, "invalid_utf8")]);
}

#[tokio::test]
async fn semicolons_with_na_markers_quoted_na_stays_a_value() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "semi.csv",
        b"id;country;qty;price\n\
          1;\"NA\";NA;1,5\n\
          2;NA;3;NA\n\
          NA;\"CA\";4;2\n\
          4;\"DE\";\"NA\";3\n",
    );
    let s = schema(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("country", DataType::Utf8View, true),
        Field::new("qty", DataType::Int32, true),
        Field::new("price", DataType::Utf8View, true),
    ]);
    let opts = CsvOptions::default()
        .with_delimiter(b';')
        .with_null_markers(["NA", "\\N"]);
    let batches = read_all(&CsvSource::files(s, [&path]).with_options(opts)).await;
    let (rows, rejects) = flatten(&batches);
    assert_eq!(
        rows,
        [(2, "1,NA,,\"1,5\"".to_string()), (3, "2,,3,".into()),]
    );
    // The marker in the non-nullable id is a missing value; a quoted "NA" in an integer
    // column is not NULL, and not an integer.
    assert_eq!(lines(&rejects), [(4, "missing_value"), (5, "bad_integer")]);
    let b = &batches[0].data;
    assert!(!b.column(1).is_null(0) && b.column(1).is_null(1));
    assert!(b.column(2).is_null(0) && b.column(3).is_null(1));
}

#[tokio::test]
async fn tab_file_without_header_starts_on_line_1() {
    let dir = tempfile::tempdir().unwrap();
    let text = b"1\tFalco\t2001\n2\tUrsus\tx\n\n3\tMonodon\t1999\n";
    let path = write(dir.path(), "t.tsv", text);
    let s = schema(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("genus", DataType::Utf8View, false),
        Field::new("year", DataType::Int32, false),
    ]);
    let opts = CsvOptions::default()
        .with_delimiter(b'\t')
        .with_header(HeaderMode::Absent);
    let batches = read_all(&CsvSource::files(s.clone(), [&path]).with_options(opts.clone())).await;
    let (rows, rejects) = flatten(&batches);
    assert_eq!(
        rows,
        [
            (1, "1,Falco,2001".to_string()),
            (4, "3,Monodon,1999".into())
        ]
    );
    assert_eq!(lines(&rejects), [(2, "bad_integer")]);
    let consumed: u64 = batches.iter().map(|b| b.consumed).sum();
    assert_eq!(consumed, text.len() as u64);

    // A column list names the file's columns; undeclared ones are skipped when told to.
    let opts = opts
        .with_columns(["id", "genus", "skipped"])
        .with_ignore_extra_columns(true);
    let s2 = schema(vec![
        Field::new("genus", DataType::Utf8View, false),
        Field::new("id", DataType::Int64, false),
    ]);
    let batches = read_all(&CsvSource::files(s2, [&path]).with_options(opts)).await;
    let (rows, rejects) = flatten(&batches);
    assert!(rejects.is_empty());
    assert_eq!(rows[1], (2, "Ursus,2".to_string()));
}

#[tokio::test]
async fn skipped_header_maps_columns_by_position() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "h.csv",
        b"Unit Price,Item Name\n2.50,Tea\nx,Cake\n",
    );
    let s = schema(vec![
        Field::new("unit_price", DataType::Decimal128(10, 2), false),
        Field::new("item_name", DataType::Utf8View, false),
    ]);
    let opts = CsvOptions::default().with_header(HeaderMode::Skip);
    let batches = read_all(&CsvSource::files(s.clone(), [&path]).with_options(opts.clone())).await;
    let (rows, rejects) = flatten(&batches);
    assert_eq!(rows, [(2, "2.5,Tea".to_string())]);
    assert_eq!(lines(&rejects), [(3, "bad_decimal")]);
    assert_eq!(
        batches[0]
            .data
            .column(0)
            .as_primitive::<Decimal128Type>()
            .value(0),
        250
    );
    // By name the header does not match.
    let err = CsvSource::files(s.clone(), [&path])
        .check_headers()
        .unwrap_err();
    assert!(matches!(err, CsvError::MissingColumns { .. }), "{err}");
    // A header line with another number of columns than the list is an error.
    let three = schema(vec![
        Field::new("a", DataType::Utf8View, true),
        Field::new("b", DataType::Utf8View, true),
        Field::new("c", DataType::Utf8View, true),
    ]);
    let err = CsvSource::files(three, [&path])
        .with_options(opts)
        .check_headers()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("the header line has 2 columns, the column list 3"),
        "{err}"
    );
}

#[tokio::test]
async fn backslash_escapes_and_unquoted_dialect() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "esc.csv",
        b"id,text\n1,\"say \\\"hi\\\"\"\n2,\"back\\\\slash, and \"\"doubled\"\"\"\n3,\"two\\\nlines\"\n4,after\n",
    );
    let s = schema(vec![
        Field::new("id", DataType::Int32, false),
        Field::new("text", DataType::Utf8View, false),
    ]);
    let opts = CsvOptions::default().with_escape(Some(b'\\'));
    let batches = read_all(&CsvSource::files(s.clone(), [&path]).with_options(opts)).await;
    let (_, rejects) = flatten(&batches);
    assert!(rejects.is_empty(), "{rejects:?}");
    let text: Vec<(u64, String)> = batches
        .iter()
        .flat_map(|b| {
            let col = b.data.column(1).as_string_view().clone();
            b.records
                .iter()
                .enumerate()
                .map(move |(i, l)| (*l, col.value(i).to_string()))
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(
        text,
        [
            (2, "say \"hi\"".to_string()),
            (3, "back\\slash, and \"doubled\"".into()),
            (4, "two\nlines".into()),
            (6, "after".into()),
        ]
    );

    // Without quoting a `"` is text.
    let path = write(dir.path(), "bare.csv", b"id,text\n1,\"a\n2,b\"\n");
    let opts = CsvOptions::default().with_quote(None);
    let batches = read_all(&CsvSource::files(s, [&path]).with_options(opts)).await;
    let (rows, rejects) = flatten(&batches);
    assert!(rejects.is_empty());
    // (Rows are rendered as CSV: a quote in a value is doubled.)
    assert_eq!(
        rows,
        [(2, "1,\"\"\"a\"".to_string()), (3, "2,\"b\"\"\"".into())]
    );
}

#[test]
fn invalid_dialects_are_refused() {
    let base = CsvOptions::default();
    for (opts, want) in [
        (base.clone().with_quote(Some(b',')), "cannot be the quote"),
        (base.clone().with_escape(Some(b'"')), "escape must differ"),
        (
            base.clone().with_quote(None).with_escape(Some(b'\\')),
            "needs a quote",
        ),
        (base.clone().with_escape(Some(b'\n')), "line break"),
    ] {
        let err = opts.validate().unwrap_err().to_string();
        assert!(err.contains(want), "{err}");
    }
    let d = Dialect {
        delimiter: '§',
        ..Dialect::default()
    };
    let err = base.with_dialect(&d).unwrap_err().to_string();
    assert!(err.contains("one ASCII character"), "{err}");
    let bad: Result<Dialect, _> = toml::from_str("quote = \"ab\"");
    assert!(
        bad.unwrap_err()
            .to_string()
            .contains("expected one character")
    );
    let bad: Result<Dialect, _> = toml::from_str("delimter = \";\"");
    assert!(bad.is_err(), "unknown fields are refused");
}

#[test]
fn dialect_round_trips_through_serde() {
    let d = Dialect {
        delimiter: '\t',
        quote: None,
        escape: None,
        encoding: Encoding::Latin1,
        header: HeaderMode::Skip,
        null_markers: vec!["\\N".into(), "".into()],
        empty_is_null: false,
    };
    let text = serde_json::to_string(&d).unwrap();
    assert_eq!(serde_json::from_str::<Dialect>(&text).unwrap(), d, "{text}");
    let d: Dialect = toml::from_str("encoding = \"ISO-8859-1\"\nescape = \"\\\\\"").unwrap();
    assert_eq!((d.encoding, d.escape), (Encoding::Latin1, Some('\\')));
}

/// A file with rejects of several kinds, spread over batches and chunks.
fn rejecting_file(rows: usize) -> Vec<u8> {
    let mut s = String::from("id,amount,note\n");
    for i in 0..rows {
        match i % 97 {
            13 => s.push_str(&format!("{i},1.2.3,bad decimal\n")),
            41 => s.push_str(&format!("{i},5\n")),
            60 => s.push_str(&format!("{i},7,\"spans\nlines\"\n")),
            _ => s.push_str(&format!("{i},{}.25,\"row {i}\"\n", i % 1000)),
        }
    }
    s.into_bytes()
}

#[tokio::test]
async fn gzip_and_zstd_give_the_batches_and_reject_lines_of_the_plain_file() {
    let dir = tempfile::tempdir().unwrap();
    let plain = rejecting_file(5000);
    let s = schema(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("amount", DataType::Decimal128(12, 2), true),
        Field::new("note", DataType::Utf8View, true),
    ]);
    let opts = CsvOptions::default().with_chunk_size(1000);
    let mut results = Vec::new();
    for (name, bytes) in [
        ("plain.csv", plain.clone()),
        ("data.csv.gz", gzip(&plain)),
        // The name does not matter: the first bytes do.
        ("data.zst.csv", zstd(&plain)),
    ] {
        let path = write(dir.path(), name, &bytes);
        let source = CsvSource::files(s.clone(), [&path]).with_options(opts.clone());
        source.check_headers().unwrap();
        let batches = read_all(&source).await;
        let consumed: u64 = batches.iter().map(|b| b.consumed).sum();
        assert_eq!(consumed, bytes.len() as u64, "{name}");
        let fp = etl_source_csv::file_fingerprint(&path).unwrap();
        assert!(fp.starts_with(&format!("size={} ", bytes.len())), "{fp}");
        let data: Vec<_> = batches.iter().map(|b| b.data.clone()).collect();
        results.push((name, flatten(&batches), data));
    }
    let (_, (rows, rejects), data) = &results[0];
    assert_eq!(rows.len(), 5000 - 2 * 52);
    assert_eq!(rejects.len(), 2 * 52);
    assert_eq!(
        lines(&rejects[..2]),
        [(15, "bad_decimal"), (43, "field_count")]
    );
    // The record after the two-line one starts a line later.
    assert_eq!(rows[59], (64, "61,61.25,row 61".to_string()));
    let same = |r: &Reject| (r.record, r.kind.clone(), r.reason.clone(), r.raw.clone());
    let want: Vec<_> = rejects.iter().map(same).collect();
    for (name, flat, d) in &results[1..] {
        assert_eq!(flat.0, *rows, "{name}");
        assert_eq!(flat.1.iter().map(same).collect::<Vec<_>>(), want, "{name}");
        assert_eq!(d, data, "{name}: identical batches");
    }
}

#[tokio::test]
async fn compressed_latin1_with_a_bom_less_headerless_tab_dialect() {
    let dir = tempfile::tempdir().unwrap();
    let plain = b"7\tna\xefve\n8\t\\N\n";
    let path = write(dir.path(), "x.tsv.gz", &gzip(plain));
    let s = schema(vec![
        Field::new("n", DataType::Int32, false),
        Field::new("word", DataType::Utf8View, true),
    ]);
    let d: Dialect = toml::from_str(
        "delimiter = \"\\t\"\nencoding = \"latin-1\"\nheader = \"absent\"\nnull_markers = [\"\\\\N\"]",
    )
    .unwrap();
    let opts = CsvOptions::default().with_dialect(&d).unwrap();
    let batches = read_all(&CsvSource::files(s, [&path]).with_options(opts)).await;
    let b = &batches[0];
    assert_eq!(b.records, [1, 2]);
    assert_eq!(
        b.data.column(0).as_primitive::<Int32Type>().values(),
        &[7, 8]
    );
    assert_eq!(b.data.column(1).as_string_view().value(0), "naïve");
    assert!(b.data.column(1).is_null(1));
}

#[test]
fn decoder_null_markers_with_empty_text_kept() {
    // Empty text is a value, `\N` is NULL: the COPY text convention.
    let s = schema(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("t", DataType::Utf8View, true),
    ]);
    let opts = CsvOptions::default()
        .with_empty_is_null(false)
        .with_null_markers(["\\N"]);
    let batches =
        crate::decode_in_chunks(s, b"id,t\n1,\n2,\\N\n3,\"\\N\"\n", 5, 100, opts).unwrap();
    let b = &batches[0];
    let t = b.data.column(1).as_string_view();
    assert_eq!(
        b.data.column(0).as_primitive::<Int64Type>().values(),
        &[1, 2, 3]
    );
    assert!(!t.is_null(0) && t.value(0).is_empty());
    assert!(t.is_null(1));
    assert_eq!(t.value(2), "\\N");
}
