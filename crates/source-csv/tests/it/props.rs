//! Property tests: the decoder against the `csv` crate as a reference parser, on random
//! well-formed inputs and on random mutations of them, and its invariants (no panic, the
//! same result whatever the piece and batch sizes).
//!
//! Bounded for `scripts/test.sh` (64 cases per property); `PROPTEST_CASES=N` raises it
//! and `scripts/proptest-long.sh` runs them long.
//!
//! Known, decided differences from the `csv` crate, kept out of the comparison:
//! * a lone CR ends a record for the `csv` crate and is data for the decoder (generated
//!   inputs hold none);
//! * a quote that is never closed swallows the rest of the file for the `csv` crate; the
//!   decoder rejects that line (`unterminated_quote`) and goes on at the next one, and it
//!   takes a record that crossed lines inside quotes but has the wrong number of fields
//!   for such a stray quote too. Inputs where the decoder reports `unterminated_quote` are
//!   only checked for the invariants.

use std::sync::Arc;

use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use etl_core::Batch;
use etl_source_csv::CsvOptions;
use proptest::prelude::*;

/// Cases per property: `PROPTEST_CASES`, else 64.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn schema(ncols: usize) -> SchemaRef {
    Arc::new(Schema::new(
        (0..ncols)
            .map(|i| Field::new(format!("c{i}"), DataType::Utf8View, true))
            .collect::<Vec<_>>(),
    ))
}

/// What a file decodes to, in line order: `Ok(values)` for a row (`None` = NULL), `Err(kind)`
/// for a reject.
type Decoded = Vec<(u64, Result<Vec<Option<Vec<u8>>>, String>)>;

fn decoded(batches: &[Batch]) -> Decoded {
    let mut out = Vec::new();
    for b in batches {
        for r in 0..b.num_rows() {
            let vals = b
                .data
                .columns()
                .iter()
                .map(|a| {
                    let a = a.as_string_view();
                    (!a.is_null(r)).then(|| a.value(r).as_bytes().to_vec())
                })
                .collect();
            out.push((b.records[r], Ok(vals)));
        }
        out.extend(b.rejects.iter().map(|j| (j.record, Err(j.kind.clone()))));
    }
    out.sort_by_key(|(line, _)| *line);
    out
}

/// What the `csv` crate reads, with the decoder's rules for each record: the field count
/// must match the header, the record's bytes must be UTF-8 (the decoder checks the bytes
/// of the file, so a quote inside a multi-byte character makes the record invalid even
/// though the unquoted value would be valid), no NUL in text, an empty field is NULL.
fn reference(input: &[u8], ncols: usize) -> Decoded {
    reference_in(input, ncols, b',', b'"', None)
}

/// [`reference`] for another dialect: delimiter, quote and escape inside quotes.
fn reference_in(input: &[u8], ncols: usize, delim: u8, quote: u8, escape: Option<u8>) -> Decoded {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .delimiter(delim)
        .quote(quote)
        .escape(escape)
        .from_reader(input);
    let records: Vec<csv::ByteRecord> = rdr
        .byte_records()
        .map(|r| r.expect("the csv crate reads anything"))
        .collect();
    let starts: Vec<usize> = records
        .iter()
        .map(|r| r.position().expect("a position").byte() as usize)
        .collect();
    let mut out = Vec::new();
    for (k, rec) in records.iter().enumerate() {
        // The line the record starts on, from its byte offset (the crate's own line count
        // leaves out skipped blank lines; its offset may point at them).
        let mut at = starts[k];
        let mut line = 1 + input[..at].iter().filter(|&&b| b == b'\n').count() as u64;
        while at < input.len() && matches!(input[at], b'\n' | b'\r') {
            line += u64::from(input[at] == b'\n');
            at += 1;
        }
        let raw = &input[at..starts.get(k + 1).copied().unwrap_or(input.len())];
        let kind = if rec.len() != ncols {
            Some("field_count")
        } else if std::str::from_utf8(raw).is_err()
            || rec.iter().any(|f| std::str::from_utf8(f).is_err())
        {
            Some("invalid_utf8")
        } else if rec.iter().any(|f| f.contains(&0)) {
            Some("nul_byte")
        } else {
            None
        };
        let item = match kind {
            Some(k) => Err(k.to_owned()),
            None => Ok(rec
                .iter()
                .map(|f| (!f.is_empty()).then(|| f.to_vec()))
                .collect()),
        };
        out.push((line, item));
    }
    out
}

/// Decode `input` (header included) in pieces of `chunk` bytes, batches of `batch`.
fn decode(input: &[u8], ncols: usize, chunk: usize, batch: usize, opts: &CsvOptions) -> Decoded {
    let batches = crate::decode_in_chunks(schema(ncols), input, chunk, batch, opts.clone())
        .expect("the header is well-formed");
    decoded(&batches)
}

/// One field: quoted or not, its text.
fn field(multiline: bool) -> impl Strategy<Value = String> {
    let plain = prop::collection::vec(
        prop::sample::select(vec![
            "a", "b", "Z", "0", "9", " ", "é", "\"", "x y", "NA", "\t",
        ]),
        0..6,
    )
    .prop_map(|parts| {
        let s: String = parts.concat();
        // A quote opens a quoted field only at its start.
        if s.starts_with('"') {
            format!("q{s}")
        } else {
            s
        }
    });
    let mut inner = vec!["a", "b", ",", "\"\"", " ", "é", "€", "NA", ";"];
    if multiline {
        inner.extend(["\n", "\r\n", "\n\n"]);
    }
    let quoted = prop::collection::vec(prop::sample::select(inner), 0..6)
        .prop_map(|parts| format!("\"{}\"", parts.concat()));
    prop_oneof![3 => plain, 2 => quoted]
}

/// A well-formed file: a header of `ncols` names and records; a record with the wrong
/// number of fields never crosses a line inside quotes.
fn file() -> impl Strategy<Value = (usize, Vec<u8>)> {
    (1usize..5).prop_flat_map(|ncols| {
        let record = (any::<bool>(), -1i32..=1, any::<bool>(), 0u8..8).prop_flat_map(
            move |(crlf, delta, multiline, blank)| {
                let n = (ncols as i32 + if blank == 0 { delta } else { 0 }).max(1) as usize;
                let multiline = multiline && n == ncols;
                (
                    prop::collection::vec(field(multiline), n),
                    Just(crlf),
                    Just(blank == 1),
                )
            },
        );
        (
            Just(ncols),
            prop::collection::vec(record, 0..12),
            any::<bool>(),
        )
            .prop_map(|(ncols, records, final_eol)| {
                let names: Vec<String> = (0..ncols).map(|i| format!("c{i}")).collect();
                let mut text = format!("{}\n", names.join(","));
                let k = records.len();
                for (i, (fields, crlf, blank)) in records.into_iter().enumerate() {
                    if blank {
                        text.push('\n');
                    }
                    text.push_str(&fields.join(","));
                    if i + 1 < k || final_eol {
                        text.push_str(if crlf { "\r\n" } else { "\n" });
                    }
                }
                (ncols, text.into_bytes())
            })
    })
}

/// A byte-level change to the body of a file.
#[derive(Debug, Clone)]
enum Mutation {
    Insert(usize, u8),
    Delete(usize),
    Duplicate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let byte = prop::sample::select(vec![b'"', b',', b'\n', 0u8, 0xFF, 0xC3, b'a', b' ']);
    prop_oneof![
        (any::<usize>(), byte).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Delete),
        any::<usize>().prop_map(Mutation::Duplicate),
    ]
}

/// Apply `muts` after the header line; lone CRs (a known difference) are removed after.
fn mutate(input: &[u8], muts: &[Mutation]) -> Vec<u8> {
    let body_start = input
        .iter()
        .position(|&b| b == b'\n')
        .map_or(input.len(), |i| i + 1);
    let (head, body) = input.split_at(body_start);
    let mut body = body.to_vec();
    for m in muts {
        match *m {
            Mutation::Insert(i, b) => body.insert(i % (body.len() + 1), b),
            Mutation::Delete(i) if !body.is_empty() => {
                body.remove(i % body.len());
            }
            Mutation::Duplicate(i) if !body.is_empty() => {
                let i = i % body.len();
                body.insert(i, body[i]);
            }
            _ => {}
        }
    }
    let mut out = head.to_vec();
    for (i, &b) in body.iter().enumerate() {
        if b != b'\r' || body.get(i + 1) == Some(&b'\n') {
            out.push(b);
        }
    }
    out
}

/// `input` (`,` and `"` with doubled quotes) written again by the `csv` crate with
/// another delimiter, quote and escape (quoting only where needed, LF line ends).
fn rewrite(input: &[u8], delim: u8, quote: u8, escape: Option<u8>) -> Vec<u8> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(input);
    let mut w = csv::WriterBuilder::new()
        .flexible(true)
        .delimiter(delim)
        .quote(quote)
        .double_quote(escape.is_none())
        .escape(escape.unwrap_or(b'\\'))
        .from_writer(Vec::new());
    for r in rdr.byte_records() {
        w.write_byte_record(&r.expect("the csv crate reads anything"))
            .unwrap();
    }
    w.into_inner().unwrap()
}

/// The invariants of any input: lines only go up, each line holds at most one record, the
/// result does not depend on how the bytes arrive or how batches are cut.
fn check_invariants(
    input: &[u8],
    ncols: usize,
    chunk: usize,
    batch: usize,
    opts: &CsvOptions,
) -> Decoded {
    let whole = decode(input, ncols, input.len() + 1, 1 << 16, opts);
    let pieces = decode(input, ncols, chunk, batch, opts);
    assert_eq!(whole, pieces, "pieces of {chunk} bytes, batches of {batch}");
    for w in whole.windows(2) {
        assert!(w[0].0 < w[1].0, "lines go up: {:?}", (w[0].0, w[1].0));
    }
    whole
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn well_formed_input_decodes_as_the_csv_crate_reads_it(
        (ncols, input) in file(),
        chunk in 1usize..64,
        batch in 1usize..8,
    ) {
        let got = check_invariants(&input, ncols, chunk, batch, &CsvOptions::default());
        prop_assert_eq!(got, reference(&input, ncols), "input b\"{}\"", input.escape_ascii());
    }

    #[test]
    fn mutated_input_never_panics_and_agrees_unless_a_quote_is_left_open(
        (ncols, input) in file(),
        muts in prop::collection::vec(mutation(), 1..6),
        chunk in 1usize..64,
        batch in 1usize..8,
    ) {
        let input = mutate(&input, &muts);
        let got = check_invariants(&input, ncols, chunk, batch, &CsvOptions::default());
        let stray = got
            .iter()
            .any(|(_, r)| matches!(r, Err(k) if k == "unterminated_quote"));
        if !stray {
            prop_assert_eq!(got, reference(&input, ncols), "input b\"{}\"", input.escape_ascii());
        }
    }

    #[test]
    fn other_dialects_decode_as_the_csv_crate_reads_them(
        (ncols, input) in file(),
        style in 0usize..3,
        chunk in 1usize..64,
        batch in 1usize..8,
    ) {
        let (delim, quote, escape) = [
            (b';', b'\'', Some(b'\\')),
            (b'\t', b'"', Some(b'\\')),
            (b'|', b'\'', None),
        ][style];
        let input = rewrite(&input, delim, quote, escape);
        let opts = CsvOptions::default()
            .with_delimiter(delim)
            .with_quote(Some(quote))
            .with_escape(escape);
        let got = check_invariants(&input, ncols, chunk, batch, &opts);
        prop_assert_eq!(
            got,
            reference_in(&input, ncols, delim, quote, escape),
            "input b\"{}\"",
            input.escape_ascii()
        );
    }

    #[test]
    fn a_small_record_limit_gives_the_same_verdicts_in_any_pieces(
        (ncols, input) in file(),
        muts in prop::collection::vec(mutation(), 0..6),
        limit in 11usize..40,
        chunk in 1usize..64,
        batch in 1usize..8,
    ) {
        let input = mutate(&input, &muts);
        // (The longest header, `c0,c1,c2,c3`, fits.)
        let opts = CsvOptions::default().with_max_record_bytes(limit);
        let got = check_invariants(&input, ncols, chunk, batch, &opts);
        // Every loaded record fits the limit.
        let lines: Vec<&[u8]> = input.split(|&b| b == b'\n').collect();
        for (line, r) in &got {
            if r.is_ok() {
                let first = lines[*line as usize - 1];
                prop_assert!(first.len() <= limit + 1, "line {} longer than {}", line, limit);
            }
        }
    }
}
