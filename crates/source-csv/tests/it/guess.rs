//! `guess` on files it has never seen, then a load with what it guessed.

use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_schema::{DataType, TimeUnit};
use etl_source_csv::guess::{ColumnGuess, Misfit};
use etl_source_csv::{Compression, CsvSource, Encoding, HeaderMode, guess};

use crate::dialect::{gzip, read_all, write, zstd};
use crate::flatten;

fn types(cols: &[ColumnGuess]) -> Vec<(&str, &str, bool)> {
    cols.iter()
        .map(|c| (c.name.as_str(), c.type_name.as_str(), c.nullable))
        .collect()
}

const ORDERS: &str = "\
Order ID,Customer,Amount,Discount,Paid,Ordered On,Shipped At,Zip,Weight,Big
1,Alice,12.50,,true,2024-01-02,2024-01-02 10:00:00,01234,1.5,3000000000
2,Bob,3.00,NA,false,2024-01-03,2024-01-03 11:30:00.25,99999,2.25,1
3,\"Smith, J\",100.00,0.10,t,2024-01-04,,00501,3,2
4,Dora,7.25,NA,f,2024-01-05,2024-01-05 08:00:00,10115,4.125,-5
";

#[test]
fn types_nulls_names_and_evidence() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "orders.csv", ORDERS.as_bytes());
    let g = guess(std::slice::from_ref(&path), 100).unwrap();
    assert_eq!(g.dialect.delimiter, ',');
    assert_eq!(g.dialect.quote, Some('"'));
    assert_eq!(g.dialect.escape, None);
    assert_eq!(g.dialect.encoding, Encoding::Utf8);
    assert_eq!(g.dialect.null_markers, ["NA"]);
    // Names changed (`Order ID` -> `order_id`): columns are taken by position.
    assert_eq!(g.dialect.header, HeaderMode::Skip);
    assert_eq!(g.rows_sampled, 4);
    assert_eq!(g.files[0].rows, 4);
    assert!(g.files[0].whole);
    assert_eq!(g.files[0].compression, Compression::None);
    assert_eq!(
        types(&g.columns),
        [
            ("order_id", "int32", false),
            ("customer", "text", false),
            ("amount", "decimal(18,2)", false),
            ("discount", "decimal(18,2)", true),
            ("paid", "boolean", false),
            ("ordered_on", "date", false),
            ("shipped_at", "timestamp(us)", true),
            ("zip", "text", false),
            ("weight", "float64", false),
            ("big", "int64", false),
        ]
    );
    assert_eq!(g.columns[0].header.as_deref(), Some("Order ID"));
    assert_eq!(g.columns[2].data_type, DataType::Decimal128(18, 2));
    assert_eq!(
        g.columns[6].data_type,
        DataType::Timestamp(TimeUnit::Microsecond, None)
    );
    let discount = &g.columns[3];
    assert_eq!((discount.values, discount.nulls), (1, 3));
    let file = path.display().to_string();
    let misfit = |line, value: &str, types: &[&str]| Misfit {
        file: file.clone(),
        line,
        value: value.into(),
        types: types.iter().map(|t| t.to_string()).collect(),
    };
    // Zip codes: 99999 and 10115 are integers, 01234 has a leading zero.
    assert_eq!(
        g.columns[7].did_not_fit,
        [
            misfit(2, "01234", &["int32", "int64", "decimal", "float64"]),
            misfit(4, "00501", &["int32", "int64", "decimal", "float64"]),
        ]
    );
    // Weights: 1.5 then 2.25 (another scale: not money-like), 3 is an integer.
    assert_eq!(
        g.columns[8].did_not_fit,
        [
            misfit(2, "1.5", &["int32", "int64"]),
            misfit(3, "2.25", &["int32", "int64", "decimal (scale 1)"]),
            misfit(5, "4.125", &["int32", "int64", "decimal (scale 1)"]),
        ]
    );
    assert_eq!(
        g.columns[9].did_not_fit,
        [misfit(2, "3000000000", &["int32"])]
    );
    assert!(
        g.columns[1].did_not_fit.is_empty(),
        "plain text has no evidence"
    );
    assert!(g.notes.is_empty(), "{:?}", g.notes);
    // Serializable as the skeleton of a job file.
    let json = serde_json::to_value(&g).unwrap();
    assert_eq!(json["dialect"]["header"], "skip");
    assert_eq!(json["columns"][2]["type_name"], "decimal(18,2)");
    // Every type name reads back as its type.
    for c in &g.columns {
        assert_eq!(
            etl_source_csv::guess::data_type(&c.type_name).as_ref(),
            Some(&c.data_type)
        );
    }
}

#[tokio::test]
async fn guess_then_load_files_it_has_never_seen() {
    let dir = tempfile::tempdir().unwrap();
    // Rows past the sample: a NA customer (NULL everywhere), an amount with a third
    // decimal and a date that is not one; the second file is gzip-compressed.
    let more = "5,NA,1.00,NA,true,2024-02-01,,12345,1,7\n\
                6,Eve,2.505,,false,2024-02-02,,12345,1,7\n\
                7,Finn,3.00,,false,2024-02-30,,12345,1,7\n\
                8,Gus,4.00,0.50,true,2024-02-03,,02134,2,8\n";
    let a = write(
        dir.path(),
        "orders_1.csv",
        format!("{ORDERS}{more}").as_bytes(),
    );
    let b = write(dir.path(), "orders_2.csv.gz", &gzip(ORDERS.as_bytes()));
    let g = guess(&[a.clone(), b.clone()], 4).unwrap();
    assert_eq!(g.files[0].rows, 4);
    assert!(!g.files[0].whole);
    assert_eq!(g.files[1].compression, Compression::Gzip);
    assert_eq!(g.rows_sampled, 8);
    let source = CsvSource::files(g.schema(), [&a, &b]).with_options(g.options().unwrap());
    source.check_headers().unwrap();
    let batches = read_all(&source).await;
    let (rows, rejects) = flatten(&batches);
    let got: Vec<(&str, u64, &str, &str)> = rejects
        .iter()
        .map(|r| {
            (
                &*r.unit,
                r.record,
                r.kind.as_str(),
                r.column.as_deref().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("orders_1.csv", 6, "missing_value", "customer"),
            ("orders_1.csv", 7, "bad_decimal", "amount"),
            ("orders_1.csv", 8, "bad_date", "ordered_on"),
        ]
    );
    assert_eq!(rows.len(), 4 + 1 + 4);
    // Line 9: NULL where empty, a zip code kept as text.
    let last = batches
        .iter()
        .find(|b| &*b.unit == "orders_1.csv" && b.records.contains(&9))
        .unwrap();
    let i = last.records.iter().position(|&l| l == 9).unwrap();
    assert!(last.data.column(6).is_null(i));
    assert_eq!(last.data.column(7).as_string_view().value(i), "02134");
    assert_eq!(
        last.data
            .column(3)
            .as_primitive::<arrow_array::types::Decimal128Type>()
            .value(i),
        50
    );
    // NA is NULL in the decimal column of line 3 as well.
    let first = &batches[0];
    assert_eq!(first.records[1], 3);
    assert!(first.data.column(3).is_null(1));
    assert_eq!(first.data.column(7).as_string_view().value(0), "01234");
}

#[tokio::test]
async fn latin1_tabs_without_header_in_zstd() {
    let dir = tempfile::tempdir().unwrap();
    let text = b"1\tcaf\xe9\t2.5\n2\tna\xefve\t\n3\tZo\xeb\t10.0\n";
    let path = write(dir.path(), "words.tsv.zst", &zstd(text));
    let g = guess(std::slice::from_ref(&path), 100).unwrap();
    assert_eq!(g.dialect.delimiter, '\t');
    assert_eq!(g.dialect.encoding, Encoding::Latin1);
    assert_eq!(g.dialect.header, HeaderMode::Absent);
    assert_eq!(g.files[0].compression, Compression::Zstd);
    assert!(
        g.notes[0].contains("line 1 has the byte 0xE9"),
        "{:?}",
        g.notes
    );
    assert_eq!(
        types(&g.columns),
        [
            ("column_1", "int32", false),
            ("column_2", "text", false),
            ("column_3", "decimal(18,1)", true),
        ]
    );
    assert_eq!(g.columns[0].header, None);
    let source = CsvSource::files(g.schema(), [&path]).with_options(g.options().unwrap());
    let batches = read_all(&source).await;
    let (rows, rejects) = flatten(&batches);
    assert!(rejects.is_empty());
    assert_eq!(rows[1], (2, "2,naïve,".to_string()));
}

#[tokio::test]
async fn semicolons_na_markers_and_namibia() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "trade.csv",
        b"id;country;qty;note\n1;\"NA\";NA;x\n2;\"CA\";5;NA\n3;DE;\\N;y\n",
    );
    let g = guess(std::slice::from_ref(&path), 100).unwrap();
    assert_eq!(g.dialect.delimiter, ';');
    assert_eq!(g.dialect.null_markers, ["NA", "\\N"]);
    assert_eq!(g.dialect.header, HeaderMode::Present);
    assert_eq!(
        types(&g.columns),
        [
            ("id", "int32", false),
            ("country", "text", false),
            ("qty", "int32", true),
            ("note", "text", true),
        ]
    );
    // An unquoted NA in a text column is NULL too: said in a note.
    assert!(
        g.notes
            .iter()
            .any(|n| n.contains("\"NA\" also stands unquoted in text column 4 (lines 3)")),
        "{:?}",
        g.notes
    );
    let batches =
        read_all(&CsvSource::files(g.schema(), [&path]).with_options(g.options().unwrap())).await;
    let (rows, rejects) = flatten(&batches);
    assert!(rejects.is_empty());
    assert_eq!(
        rows,
        [
            (2, "1,NA,,x".to_string()),
            (3, "2,CA,5,".into()),
            (4, "3,DE,,y".into())
        ]
    );
}

#[test]
fn text_only_header_and_escapes() {
    let dir = tempfile::tempdir().unwrap();
    let header = write(
        dir.path(),
        "people.csv",
        b"name,city,code\nAlice,Paris,T\nBob,Rome,F\n",
    );
    let g = guess(&[header], 10).unwrap();
    assert_eq!(g.dialect.header, HeaderMode::Present);
    // Upper-case T and F are codes here, not booleans.
    assert_eq!(
        types(&g.columns),
        [
            ("name", "text", false),
            ("city", "text", false),
            ("code", "text", false)
        ]
    );

    let none = write(dir.path(), "pairs.csv", b"Alice,Paris\nBob,Paris\n");
    let g = guess(&[none], 10).unwrap();
    assert_eq!(g.dialect.header, HeaderMode::Absent, "Paris twice: data");

    let esc = write(
        dir.path(),
        "esc.csv",
        b"id|quote\n1|\"she said \\\"hi\\\"\"\n2|\"plain\"\n",
    );
    let g = guess(&[esc], 10).unwrap();
    assert_eq!(g.dialect.delimiter, '|');
    assert_eq!(g.dialect.escape, Some('\\'));
    assert_eq!(
        types(&g.columns),
        [("id", "int32", false), ("quote", "text", false)]
    );
}

#[test]
fn records_of_another_width_are_noted_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "w.csv", b"a,b\n1,2\n3\n4,5\n");
    let g = guess(std::slice::from_ref(&path), 10).unwrap();
    assert_eq!(g.rows_sampled, 2);
    assert!(
        g.notes[0].contains("line 3: 1 fields where the others have 2"),
        "{:?}",
        g.notes
    );
    let empty = write(dir.path(), "empty.csv", b"");
    assert!(guess(&[empty], 10).is_err());
    assert!(guess(&[], 10).is_err());
    assert!(guess(std::slice::from_ref(&path), 0).is_err());
    assert!(guess(&[dir.path().join("missing.csv")], 10).is_err());
}
