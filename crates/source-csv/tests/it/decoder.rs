//! The push decoder: values, rejects, headers, chunking.

use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_array::types::*;
use etl_source_csv::{CsvError, CsvOptions, Decoder, Header};

use crate::{CITES_COLUMNS, cites_schema, data, decode_in_chunks, flatten, typed_schema};

fn cites_bytes() -> Vec<u8> {
    std::fs::read(data("cites_small.csv")).unwrap()
}

fn rejects_bytes() -> Vec<u8> {
    std::fs::read(data("rejects.csv")).unwrap()
}

fn typed_options() -> CsvOptions {
    CsvOptions::default().with_max_record_bytes(200)
}

#[test]
fn cites_rows_have_exact_typed_values() {
    let batches = decode_in_chunks(
        cites_schema(),
        &cites_bytes(),
        1 << 20,
        1000,
        CsvOptions::default(),
    )
    .unwrap();
    assert_eq!(batches.len(), 1);
    let b = &batches[0];
    assert!(b.rejects.is_empty(), "{:?}", b.rejects);
    assert_eq!(b.records, [2, 3, 4, 5, 7]);
    let header = Header::parse("t.csv", &cites_bytes(), &CsvOptions::default(), false)
        .unwrap()
        .unwrap();
    assert_eq!(header.names, CITES_COLUMNS);
    assert_eq!(b.consumed as usize, cites_bytes().len() - header.len);
    let d = &b.data;
    let id = d.column(0).as_primitive::<Int64Type>();
    assert_eq!(
        id.values(),
        &[9001000001, 9001000002, 9001000003, 9001000004, 9001000005]
    );
    let year = d.column(1).as_primitive::<Int32Type>();
    assert_eq!(year.values(), &[2001, 2015, 1999, 2020, 1975]);
    let taxon = d.column(3).as_string_view();
    assert_eq!(taxon.value(0), "Falco rusticolus");
    assert_eq!(taxon.value(2), "Branta canadensis leucopareia");
    let q = d.column(9).as_primitive::<Decimal128Type>();
    assert_eq!(q.data_type(), &arrow_schema::DataType::Decimal128(38, 10));
    assert_eq!(q.value(0), 20_000_000_000);
    assert_eq!(q.value(1), 100_000 * 10_000_000_000);
    assert_eq!(q.value(2), 25_000_000_001_250_000_000);
    assert!(q.is_null(3));
    assert_eq!(q.value(4), 1);
    // "NA" is Namibia, never NULL; empty is NULL.
    let importer = d.column(11).as_string_view();
    assert_eq!(importer.value(0), "NA");
    assert_eq!(importer.value(4), "NA");
    let unit = d.column(10).as_string_view();
    assert!(unit.is_null(0));
    assert_eq!(unit.value(2), "kg");
    assert_eq!(d.column(13).as_string_view().value(4), "NA");
    // The embedded newline stays in the value and the next record is on line 7.
    let origin_permit = d.column(19).as_string_view();
    assert_eq!(origin_permit.value(3), "multi\nline permit");
    assert!(origin_permit.is_null(0));
    assert_eq!(d.column(18).as_string_view().value(0), "a1b2c3d4e5");
}

#[test]
fn empty_is_null_can_be_turned_off_for_strings() {
    let opts = CsvOptions::default().with_empty_is_null(false);
    let batches = decode_in_chunks(cites_schema(), &cites_bytes(), 1 << 20, 1000, opts).unwrap();
    let d = &batches[0].data;
    assert_eq!(d.column(10).as_string_view().value(0), "");
    assert!(!d.column(10).is_null(0));
    // Typed columns still read empty as NULL.
    assert!(d.column(9).is_null(3));
}

#[test]
fn every_reject_kind_with_line_column_and_reason() {
    let batches = decode_in_chunks(
        typed_schema(),
        &rejects_bytes(),
        1 << 20,
        1000,
        typed_options(),
    )
    .unwrap();
    let (rows, rejects) = flatten(&batches);
    let lines: Vec<u64> = rows.iter().map(|r| r.0).collect();
    assert_eq!(lines, [2, 13, 16, 17, 19]);
    let got: Vec<(u64, &str, Option<&str>)> = rejects
        .iter()
        .map(|r| (r.record, r.kind.as_str(), r.column.as_deref()))
        .collect();
    assert_eq!(
        got,
        [
            (3, "bad_integer", Some("id")),
            (4, "bad_boolean", Some("flag")),
            (5, "bad_date", Some("day")),
            (6, "bad_timestamp", Some("ts")),
            (7, "bad_decimal", Some("amount")),
            (8, "bad_number", Some("score")),
            (9, "missing_value", Some("name")),
            (10, "field_count", None),
            (11, "record_too_long", None),
            (12, "invalid_utf8", Some("name")),
            (15, "unterminated_quote", None),
        ]
    );
    let reason = |line: u64| {
        rejects
            .iter()
            .find(|r| r.record == line)
            .unwrap()
            .reason
            .clone()
    };
    assert_eq!(reason(3), "id: \"x1\" is not an integer");
    assert_eq!(
        reason(4),
        "flag: \"maybe\" is not a boolean (true/false/t/f/1/0)"
    );
    assert_eq!(reason(5), "day: \"2024-02-30\" is not a date (YYYY-MM-DD)");
    assert!(reason(6).starts_with("ts: \"2024-01-01 25:00:00\" is not a timestamp"));
    assert_eq!(
        reason(7),
        "amount: \"1.234\" has more than 2 fractional digits"
    );
    assert_eq!(reason(8), "score: \"abc\" is not a number");
    assert_eq!(
        reason(9),
        "name: missing value (empty in a non-nullable column)"
    );
    assert_eq!(reason(10), "expected 9 fields, found 2");
    assert_eq!(
        reason(11),
        "record is longer than max_record_bytes (200 bytes)"
    );
    assert!(
        reason(12).starts_with("name: invalid UTF-8 at byte 14 of the record"),
        "{}",
        reason(12)
    );
    assert!(reason(15).starts_with("unterminated quoted field"));
    let raw = |line: u64| {
        rejects
            .iter()
            .find(|r| r.record == line)
            .unwrap()
            .raw
            .clone()
    };
    assert_eq!(raw(3), "x1,t,,,,,\"n\",,");
    assert_eq!(raw(10), "8,t");
    assert_eq!(raw(12), "14,,,,,,\"bad \u{FFFD} name\",,");
    assert_eq!(raw(15), "10,,,,,,\"ok\",\"stray note,5");
    assert_eq!(
        raw(11).chars().count(),
        201,
        "cut at max_record_bytes plus an ellipsis"
    );
    assert!(rejects.iter().all(|r| &*r.unit == "t.csv"));

    // The good rows around the bad ones load with their values.
    let b = &batches[0];
    let d = &b.data;
    assert_eq!(
        d.column(0).as_primitive::<Int64Type>().values(),
        &[1, 9, 11, 12, 13]
    );
    let flag = d.column(1).as_boolean();
    assert!(flag.value(0) && flag.is_null(1) && !flag.value(4));
    let day = d.column(2).as_primitive::<Date32Type>();
    assert_eq!(day.value(0), 19_724);
    assert_eq!(day.value(4), 10_956);
    let ts = d.column(3).as_primitive::<TimestampMicrosecondType>();
    assert_eq!(ts.value(0), 1_704_164_645_500_000);
    assert_eq!(ts.value(4), 946_684_799_000_000);
    let amount = d.column(4).as_primitive::<Decimal128Type>();
    assert_eq!((amount.value(0), amount.value(4)), (1250, -50));
    let score = d.column(5).as_primitive::<Float64Type>();
    assert_eq!((score.value(0), score.value(4)), (1.5, 2000.0));
    let name = d.column(6).as_string_view();
    assert_eq!(
        (0..5).map(|i| name.value(i)).collect::<Vec<_>>(),
        ["Falco rusticolus", "two\nlines", "after", "NA", "last"]
    );
    let note = d.column(7).as_string::<i32>();
    assert_eq!(note.value(0), "a \"quoted\" note");
    assert!(note.is_null(1));
    let small = d.column(8).as_primitive::<Int16Type>();
    assert_eq!((small.value(0), small.value(4)), (7, i16::MIN));
    assert!(small.is_null(1));
}

#[test]
fn chunk_boundaries_anywhere_give_the_same_result() {
    for (schema, input, opts) in [
        (cites_schema(), cites_bytes(), CsvOptions::default()),
        (typed_schema(), rejects_bytes(), typed_options()),
    ] {
        let whole = flatten(
            &decode_in_chunks(schema.clone(), &input, input.len() + 1, 1000, opts.clone()).unwrap(),
        );
        let crlf = String::from_utf8_lossy(&input).replace('\n', "\r\n");
        for chunk in (1..=40).chain([63, 64, 100, 127, 128, 199, 200, 201, 202, 255, 256, 500]) {
            for batch_size in [1, 3, 1000] {
                let got = flatten(
                    &decode_in_chunks(schema.clone(), &input, chunk, batch_size, opts.clone())
                        .unwrap(),
                );
                assert_eq!(got, whole, "chunk {chunk}, batch {batch_size}");
            }
        }
        // The same with CRLF line ends (the invalid byte becomes U+FFFD: compare lines only).
        if input.is_ascii() {
            let whole_crlf = flatten(
                &decode_in_chunks(schema.clone(), crlf.as_bytes(), 1 << 20, 1000, opts.clone())
                    .unwrap(),
            );
            let expected: Vec<(u64, String)> = whole
                .0
                .iter()
                .map(|(l, r)| (*l, r.replace('\n', "\r\n")))
                .collect();
            assert_eq!(whole_crlf.0, expected);
            for chunk in [1, 2, 3, 7, 64] {
                let got = flatten(
                    &decode_in_chunks(schema.clone(), crlf.as_bytes(), chunk, 2, opts.clone())
                        .unwrap(),
                );
                assert_eq!(got, whole_crlf, "crlf chunk {chunk}");
            }
        }
    }
}

#[test]
fn batches_respect_batch_size_and_consumed_adds_up() {
    let input = cites_bytes();
    let batches = decode_in_chunks(cites_schema(), &input, 37, 2, CsvOptions::default()).unwrap();
    assert_eq!(
        batches.iter().map(|b| b.num_rows()).collect::<Vec<_>>(),
        [2, 2, 1]
    );
    let header = Header::parse("t.csv", &input, &CsvOptions::default(), false)
        .unwrap()
        .unwrap();
    let consumed: u64 = batches.iter().map(|b| b.consumed).sum();
    assert_eq!(consumed as usize, input.len() - header.len);
}

#[test]
fn header_columns_by_name_extra_ignored_missing_named() {
    let schema = typed_schema();
    // Reordered, with an extra column: an error by default, skipped when told to.
    let input = b"small,extra,name,note,score,amount,ts,day,flag,id\n5,zzz,\"n\",,,,,,,42\n";
    let err =
        decode_in_chunks(schema.clone(), input, 1 << 10, 10, CsvOptions::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "t.csv: column(s) not in the schema: \"extra\" (position 2); declare them, or set ignore_extra_columns to skip them"
    );
    let opts = CsvOptions::default().with_ignore_extra_columns(true);
    let (rows, rejects) =
        flatten(&decode_in_chunks(schema.clone(), input, 1 << 10, 10, opts).unwrap());
    assert!(rejects.is_empty());
    assert_eq!(rows, [(2, "42,,,,,,n,,5".to_owned())]);
    // Missing columns: an error naming the file, each of them and the header found.
    let err = Decoder::builder(schema)
        .unit("trade_db_1.csv")
        .build(&["id", "flag", "day", "ts", "amount", "score"])
        .unwrap_err();
    match &err {
        CsvError::MissingColumns {
            unit,
            columns,
            header,
        } => {
            assert_eq!(unit, "trade_db_1.csv");
            assert_eq!(columns, &["name", "note", "small"]);
            assert_eq!(header, &["id", "flag", "day", "ts", "amount", "score"]);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "trade_db_1.csv: missing column(s) name, note, small (the header has \"id\", \"flag\", \"day\", \"ts\", \"amount\", \"score\")"
    );
    let core: etl_core::Error = err.into();
    assert!(
        core.to_string()
            .contains("missing column(s) name, note, small")
    );
}

#[test]
fn a_declared_name_twice_in_the_header_is_an_error_naming_both_positions() {
    let err = Decoder::builder(typed_two())
        .unit("a.csv")
        .build(&["id", "name", "id"])
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "a.csv: column \"id\" appears twice in the header, at positions 1 and 3"
    );
    // Even when extra columns are ignored; an undeclared name twice is then fine.
    let opts = CsvOptions::default().with_ignore_extra_columns(true);
    assert!(matches!(
        Decoder::builder(typed_two())
            .options(opts.clone())
            .build(&["id", "name", "name"]),
        Err(CsvError::DuplicateColumn {
            first: 2,
            second: 3,
            ..
        })
    ));
    Decoder::builder(typed_two())
        .options(opts)
        .build(&["x", "id", "x", "name"])
        .unwrap();
}

#[test]
fn bom_and_crlf_header() {
    let mut input = b"\xEF\xBB\xBF".to_vec();
    input.extend_from_slice(CITES_COLUMNS.join(",").as_bytes());
    input.extend_from_slice(
        b"\r\n\"1\",2001,\"II\",\"Falco rusticolus\",,,,,\"live\",3,,,,,,,,,,\"x\"\r\n",
    );
    let (rows, rejects) =
        flatten(&decode_in_chunks(cites_schema(), &input, 5, 10, CsvOptions::default()).unwrap());
    assert!(rejects.is_empty(), "{rejects:?}");
    assert_eq!(
        rows,
        [(
            2,
            "1,2001,II,Falco rusticolus,,,,,live,3,,,,,,,,,,x".to_owned()
        )]
    );
}

#[test]
fn zero_data_rows_and_empty_input() {
    let input = format!("{}\n", CITES_COLUMNS.join(","));
    let batches = decode_in_chunks(
        cites_schema(),
        input.as_bytes(),
        7,
        10,
        CsvOptions::default(),
    )
    .unwrap();
    assert!(
        batches
            .iter()
            .all(|b| b.num_rows() == 0 && b.rejects.is_empty())
    );
    let err = decode_in_chunks(cites_schema(), b"", 7, 10, CsvOptions::default()).unwrap_err();
    assert!(matches!(err, CsvError::NoHeader { .. }), "{err:?}");
}

#[test]
fn blank_lines_are_skipped_but_counted() {
    let input = b"id,name\n\n1,a\r\n\r\n\n2,b\n\n";
    let schema = std::sync::Arc::new(arrow_schema::Schema::new(vec![
        arrow_schema::Field::new("id", arrow_schema::DataType::Int32, false),
        arrow_schema::Field::new("name", arrow_schema::DataType::Utf8View, false),
    ]));
    let (rows, rejects) =
        flatten(&decode_in_chunks(schema, input, 3, 10, CsvOptions::default()).unwrap());
    assert!(rejects.is_empty());
    assert_eq!(rows, [(3, "1,a".to_owned()), (6, "2,b".to_owned())]);
}

#[test]
fn a_stray_quote_only_costs_its_line() {
    // Without resync the quote would swallow everything after line 3.
    let mut input = String::from("id,name\n1,\"a\"\n2,\"oops\n");
    for i in 3..50 {
        input.push_str(&format!("{i},\"n{i}\"\n"));
    }
    let (rows, rejects) = flatten(
        &decode_in_chunks(typed_two(), input.as_bytes(), 16, 8, CsvOptions::default()).unwrap(),
    );
    assert_eq!(rejects.len(), 1);
    assert_eq!(
        (rejects[0].record, rejects[0].kind.as_str()),
        (3, "unterminated_quote")
    );
    assert_eq!(rejects[0].raw, "2,\"oops");
    assert_eq!(rows.len(), 48);
    assert_eq!(rows[1], (4, "3,n3".to_owned()));
    // A quote opened on the last line and never closed.
    let (rows, rejects) = flatten(
        &decode_in_chunks(
            typed_two(),
            b"id,name\n1,\"a\"\n2,\"b",
            3,
            8,
            CsvOptions::default(),
        )
        .unwrap(),
    );
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rejects[0].record, rejects[0].kind.as_str()),
        (3, "unterminated_quote")
    );
}

#[test]
fn an_overlong_line_in_pieces_is_skipped_to_its_end() {
    let long = "y".repeat(5000);
    let input = format!("id,name\n1,\"{long}\"\n2,\"ok\"\n");
    let opts = CsvOptions::default().with_max_record_bytes(100);
    for chunk in [7, 64, 1 << 20] {
        let (rows, rejects) = flatten(
            &decode_in_chunks(typed_two(), input.as_bytes(), chunk, 8, opts.clone()).unwrap(),
        );
        assert_eq!(rows, [(3, "2,ok".to_owned())], "chunk {chunk}");
        assert_eq!(
            (rejects[0].record, rejects[0].kind.as_str()),
            (2, "record_too_long")
        );
    }
}

#[test]
fn integers_out_of_range_and_other_types() {
    let schema = std::sync::Arc::new(arrow_schema::Schema::new(vec![
        arrow_schema::Field::new("a", arrow_schema::DataType::Int16, true),
        arrow_schema::Field::new("b", arrow_schema::DataType::UInt8, true),
        arrow_schema::Field::new("c", arrow_schema::DataType::Float32, true),
        arrow_schema::Field::new(
            "d",
            arrow_schema::DataType::Timestamp(
                arrow_schema::TimeUnit::Microsecond,
                Some("UTC".into()),
            ),
            true,
        ),
    ]));
    let input = b"a,b,c,d\n40000,,,\n1,256,,\n2,3,0.25,2024-01-01T00:00:00.000001Z\n";
    let batches = decode_in_chunks(schema, input, 4, 10, CsvOptions::default()).unwrap();
    let (rows, rejects) = flatten(&batches);
    assert_eq!(rejects[0].reason, "a: \"40000\" is out of range for Int16");
    assert_eq!(rejects[1].reason, "b: \"256\" is out of range for UInt8");
    assert_eq!(rows.len(), 1);
    let d = &batches[0].data;
    assert_eq!(d.column(2).as_primitive::<Float32Type>().value(0), 0.25);
    let ts = d.column(3).as_primitive::<TimestampMicrosecondType>();
    assert_eq!(ts.value(0), 1_704_067_200_000_001);
    assert_eq!(ts.timezone(), Some("UTC"));
}

#[test]
fn unsupported_type_and_bad_options_are_errors() {
    let schema = std::sync::Arc::new(arrow_schema::Schema::new(vec![arrow_schema::Field::new(
        "a",
        arrow_schema::DataType::Binary,
        true,
    )]));
    assert!(matches!(
        Decoder::new(schema, &["a"]),
        Err(CsvError::UnsupportedType { .. })
    ));
    let err = Decoder::builder(typed_two())
        .options(CsvOptions::default().with_delimiter(b'"'))
        .build(&["id", "name"])
        .unwrap_err();
    assert!(matches!(err, CsvError::InvalidOption(_)));
}

#[test]
fn semicolon_delimiter() {
    let input = b"name;id\n\"a;b\";1\n";
    let opts = CsvOptions::default().with_delimiter(b';');
    let (rows, rejects) = flatten(&decode_in_chunks(typed_two(), input, 2, 8, opts).unwrap());
    assert!(rejects.is_empty());
    assert_eq!(rows, [(2, "1,a;b".to_owned())]);
}

fn typed_two() -> arrow_schema::SchemaRef {
    std::sync::Arc::new(arrow_schema::Schema::new(vec![
        arrow_schema::Field::new("id", arrow_schema::DataType::Int64, false),
        arrow_schema::Field::new("name", arrow_schema::DataType::Utf8View, true),
    ]))
}
