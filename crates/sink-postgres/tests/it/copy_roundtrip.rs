use std::sync::Arc;

use arrow_array::builder::{ListBuilder, StringBuilder};
use arrow_array::*;
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use bytes::BytesMut;
use etl_sink_postgres::copy::{COPY_HEADER, COPY_TRAILER, CopyEncoder};
use etl_sink_postgres::ident::TableName;
use etl_sink_postgres::types::table_columns;

#[tokio::test]
async fn every_supported_type_round_trips_through_binary_copy() {
    let (_db, mut conn) = super::db().await;
    sqlx::query(
        "CREATE TABLE t (i2 smallint, i4 integer, i8 bigint, f8 double precision, n numeric,
            n2 numeric(10,2), t text, v varchar(20), b boolean, d date, ts timestamp, tz timestamptz,
            u uuid, us uuid, j jsonb, tags text[], rid text, id uuid DEFAULT gen_random_uuid())",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("i2", DataType::Int16, true),
        Field::new("i4", DataType::Int32, true),
        Field::new("i8", DataType::Int64, true),
        Field::new("f8", DataType::Float64, true),
        Field::new("n", DataType::Decimal128(38, 10), true),
        Field::new("n2", DataType::Utf8, true),
        Field::new("t", DataType::Utf8View, true),
        Field::new("v", DataType::Utf8, true),
        Field::new("b", DataType::Boolean, true),
        Field::new("d", DataType::Date32, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true),
        Field::new(
            "tz",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            true,
        ),
        Field::new("u", DataType::FixedSizeBinary(16), true),
        Field::new("us", DataType::Utf8, true),
        Field::new("j", DataType::Utf8, true),
        Field::new(
            "tags",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            true,
        ),
        Field::new("rid", DataType::Int64, true),
    ]));
    let mut tags = ListBuilder::new(StringBuilder::new());
    tags.values().append_value("a");
    tags.values().append_value("b,c");
    tags.append(true);
    tags.append(false);
    let uuid = *b"\x67\xe5\x50\x44\x10\xb1\x42\x6f\x92\x47\xbb\x68\x0e\x5f\xe0\xc8";
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int16Array::from(vec![Some(-7), None])),
            Arc::new(Int32Array::from(vec![Some(2024), None])),
            Arc::new(Int64Array::from(vec![Some(7_592_925_716), None])),
            Arc::new(Float64Array::from(vec![Some(0.25), None])),
            Arc::new(
                Decimal128Array::from(vec![Some(25_000_000_001_234_500_000i128), None])
                    .with_precision_and_scale(38, 10)
                    .unwrap(),
            ),
            Arc::new(StringArray::from(vec![Some("27550.004"), None])),
            Arc::new(StringViewArray::from(vec![
                Some("Falco rusticolus, a longer text"),
                None,
            ])),
            Arc::new(StringArray::from(vec![Some("NA"), None])),
            Arc::new(BooleanArray::from(vec![Some(true), None])),
            Arc::new(Date32Array::from(vec![Some(20_483), None])),
            Arc::new(TimestampMicrosecondArray::from(vec![
                Some(1_769_783_400_123_456),
                None,
            ])),
            Arc::new(
                TimestampMillisecondArray::from(vec![Some(1_769_783_400_000), None])
                    .with_timezone("UTC"),
            ),
            Arc::new(
                FixedSizeBinaryArray::try_from_sparse_iter_with_size(
                    vec![Some(uuid), None].into_iter(),
                    16,
                )
                .unwrap(),
            ),
            Arc::new(StringArray::from(vec![
                Some("67e55044-10b1-426f-9247-bb680e5fe0c8"),
                None,
            ])),
            Arc::new(StringArray::from(vec![Some(r#"{"a": [1, "x"]}"#), None])),
            Arc::new(tags.finish()),
            Arc::new(Int64Array::from(vec![Some(-7_592_925_716), None])),
        ],
    )
    .unwrap();
    let cols = table_columns(&mut conn, &TableName::new("t"))
        .await
        .unwrap();
    let enc = CopyEncoder::for_table(&schema, &cols).unwrap();
    let mut buf = BytesMut::new();
    buf.extend_from_slice(COPY_HEADER);
    enc.encode(&batch, &mut buf).unwrap();
    let encoded = buf.len() - COPY_HEADER.len();
    let hint = enc.encoded_size_hint(&batch);
    assert!(
        hint >= encoded - 40 && hint <= encoded * 2,
        "hint {hint} vs {encoded}"
    );
    buf.extend_from_slice(COPY_TRAILER);
    let sql = format!(
        "COPY t {} FROM STDIN (FORMAT binary)",
        enc.column_list_sql()
    );
    let mut copy = conn.copy_in_raw(&sql).await.unwrap();
    copy.send(buf.freeze()).await.unwrap();
    assert_eq!(copy.finish().await.unwrap(), 2);

    let row: (String,) = sqlx::query_as(
        "SELECT concat_ws('|', i2, i4, i8, f8, n, n2, t, v, b, d, ts, tz AT TIME ZONE 'UTC', u, us, j, tags, rid, id IS NOT NULL)
           FROM t WHERE i2 IS NOT NULL",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        row.0,
        "-7|2024|7592925716|0.25|2500000000.12345|27550.00|Falco rusticolus, a longer text|NA|t|2026-01-30|2026-01-30 14:30:00.123456|2026-01-30 14:30:00|67e55044-10b1-426f-9247-bb680e5fe0c8|67e55044-10b1-426f-9247-bb680e5fe0c8|{\"a\": [1, \"x\"]}|{a,\"b,c\"}|-7592925716|t"
    );
    let nulls: (i64,) = sqlx::query_as(
        "SELECT count(*) FROM t WHERE i2 IS NULL AND i4 IS NULL AND n IS NULL AND t IS NULL AND u IS NULL AND tags IS NULL AND j IS NULL",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(nulls.0, 1);
}

#[test]
fn mapping_errors_name_the_columns() {
    let schema = Schema::new(vec![Field::new("flag", DataType::Boolean, true)]);
    let cols = vec![etl_sink_postgres::types::PgColumn {
        name: "flag".into(),
        pg_type: Some(etl_sink_postgres::types::PgType::Int4),
        type_text: "integer".into(),
        not_null: false,
        has_default: false,
    }];
    let err = CopyEncoder::for_table(&schema, &cols)
        .unwrap_err()
        .to_string();
    assert!(err.contains("`flag`") && err.contains("integer"), "{err}");
    let schema = Schema::new(vec![Field::new("nope", DataType::Boolean, true)]);
    let err = CopyEncoder::for_table(&schema, &cols)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no target column `nope`"), "{err}");
}

#[test]
fn out_of_range_values_name_column_and_row() {
    let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
    let enc = CopyEncoder::new(
        &schema,
        vec![etl_sink_postgres::copy::ColumnMapping {
            source: 0,
            target: "x".into(),
            pg_type: etl_sink_postgres::types::PgType::Int2,
        }],
    )
    .unwrap();
    let batch =
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![1, 70_000]))]).unwrap();
    let err = enc
        .encode(&batch, &mut BytesMut::new())
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "cannot encode column `x` row 1: 70000 does not fit smallint"
    );
}

/// The encoder's date and timestamp ranges are PostgreSQL's own: the first and last values
/// it writes load and read back, and one step past the first, written by hand, is refused
/// by the server (so the encoder refusing it first loses nothing).
#[tokio::test]
async fn timestamps_and_dates_at_postgresql_limits() {
    let (_db, mut conn) = super::db().await;
    sqlx::query("CREATE TABLE lim (k int, d date, ts timestamp)")
        .execute(&mut conn)
        .await
        .unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int32, false),
        Field::new("d", DataType::Date32, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true),
    ]));
    // 4714-11-24 BC (Julian day 0) in days and microseconds from 1970; the last date;
    // i64::MAX microseconds (PostgreSQL's end, 294277-01-01, lies past it).
    let first_us = -210_866_803_200_000_000_i64;
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int32Array::from(vec![1, 2])),
            Arc::new(Date32Array::from(vec![-2_440_588, 2_145_042_905])),
            Arc::new(TimestampMicrosecondArray::from(vec![first_us, i64::MAX])),
        ],
    )
    .unwrap();
    let cols = table_columns(&mut conn, &TableName::new("lim"))
        .await
        .unwrap();
    let enc = CopyEncoder::for_table(&schema, &cols).unwrap();
    let copy_bytes = |tuples: &[u8]| {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(COPY_HEADER);
        buf.extend_from_slice(tuples);
        buf.extend_from_slice(COPY_TRAILER);
        buf.freeze()
    };
    let mut tuples = BytesMut::new();
    enc.encode(&batch, &mut tuples).unwrap();
    let mut copy = conn
        .copy_in_raw("COPY lim (k, d, ts) FROM STDIN (FORMAT binary)")
        .await
        .unwrap();
    copy.send(copy_bytes(&tuples)).await.unwrap();
    assert_eq!(copy.finish().await.unwrap(), 2);
    let rows: Vec<(String,)> = sqlx::query_as("SELECT concat_ws('|', d, ts) FROM lim ORDER BY k")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        rows,
        [
            ("4714-11-24 BC|4714-11-24 00:00:00 BC".to_owned(),),
            ("5874897-12-31|294247-01-10 04:00:54.775807".to_owned(),)
        ]
    );
    // One microsecond before the first (PostgreSQL microseconds from 2000), by hand.
    let pg_first = first_us - 946_684_800_000_000;
    let mut tuple = BytesMut::new();
    tuple.extend_from_slice(&1i16.to_be_bytes());
    tuple.extend_from_slice(&8i32.to_be_bytes());
    tuple.extend_from_slice(&(pg_first - 1).to_be_bytes());
    let mut copy = conn
        .copy_in_raw("COPY lim (ts) FROM STDIN (FORMAT binary)")
        .await
        .unwrap();
    copy.send(copy_bytes(&tuple)).await.unwrap();
    let err = copy.finish().await.unwrap_err().to_string();
    assert!(err.contains("timestamp out of range"), "{err}");
    // The encoder refuses it before the server sees it.
    let before = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int32Array::from(vec![3])),
            Arc::new(Date32Array::from(vec![-2_440_589])),
            Arc::new(TimestampMicrosecondArray::from(vec![first_us - 1])),
        ],
    )
    .unwrap();
    let err = enc
        .encode(&before, &mut BytesMut::new())
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("cannot encode column `d` row 0: date -2440589 days"),
        "{err}"
    );
}
