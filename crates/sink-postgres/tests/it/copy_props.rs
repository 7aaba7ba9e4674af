//! Property test: random batches of every Arrow -> PostgreSQL pair of the type map, with
//! nulls and values at and past the limits, through [`CopyEncoder`] and a binary COPY into
//! a real table, read back and compared with what was written.
//!
//! A batch holding a value PostgreSQL cannot store (a date or timestamp out of its range,
//! an integer too large for `smallint`, a decimal too large for the encoder) must fail to
//! encode with `Error::Encode` naming the first such value's column and row; the rows
//! without one are then loaded and compared.
//!
//! One server for every case: 64 cases by default, `PROPTEST_CASES=N` for more.

use std::sync::Arc;

use arrow_array::builder::{ListBuilder, PrimitiveBuilder, StringBuilder};
use arrow_array::types::{Int32Type, Int64Type};
use arrow_array::*;
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use bytes::BytesMut;
use etl_sink_postgres::Error;
use etl_sink_postgres::copy::{COPY_HEADER, COPY_TRAILER, CopyEncoder};
use etl_sink_postgres::ident::TableName;
use etl_sink_postgres::types::table_columns;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use sqlx::{PgConnection, Row as _};

/// Days from 1970 of PostgreSQL's first and last dates (4714-11-24 BC, 5874897-12-31).
const DATE_MIN: i32 = -2_440_588;
const DATE_MAX: i32 = 2_145_031_948 + 10_957;
/// Microseconds from 1970 of PostgreSQL's first timestamp (every later i64 fits).
const TS_MIN: i64 = -211_813_488_000_000_000 + 946_684_800_000_000;

/// One generated row; `None` is NULL.
#[derive(Debug, Clone)]
struct Row {
    b: Option<bool>,
    i2: Option<i32>,
    i4: Option<i32>,
    i8: Option<i64>,
    f4: Option<f32>,
    f8: Option<f64>,
    /// Into `numeric(38,10)` from `Decimal128(38,10)`.
    n38: Option<i128>,
    /// Into `numeric(6,2)` from `Decimal128(6,2)`.
    n6: Option<i128>,
    /// Into unconstrained `numeric` from `Decimal128(38,1)`.
    nu: Option<i128>,
    /// Into unconstrained `numeric` from `Decimal128(38,-3)`.
    nneg: Option<i128>,
    t: Option<String>,
    tv: Option<String>,
    j: Option<serde_json::Value>,
    u: Option<[u8; 16]>,
    /// Uuid text and its bytes.
    us: Option<(String, [u8; 16])>,
    d: Option<i32>,
    ts: Option<i64>,
    tz: Option<i64>,
    by: Option<Vec<u8>>,
    ta: Option<Vec<Option<String>>>,
    ia: Option<Vec<Option<i32>>>,
    la: Option<Vec<Option<i64>>>,
    /// Into `numeric` from decimal text: the text and the value PostgreSQL must print
    /// (`None`: not a number, an encoder error).
    nt: Option<(String, Option<String>)>,
    /// Into `numeric` from `Float64`.
    nf: Option<f64>,
    /// Into `text` from `Int64`.
    t8: Option<i64>,
    /// Into `timestamp` from `Timestamp(Second)`.
    tss: Option<i64>,
    /// Into `timestamptz` from `Timestamp(Nanosecond, UTC)`.
    tsn: Option<i64>,
    /// Into `bytea` from `FixedSizeBinary(16)`.
    ub: Option<[u8; 16]>,
    /// Into `bigint` from `UInt64`.
    u8: Option<u64>,
}

const CREATE: &str =
    "CREATE TABLE t (k integer, b boolean, i2 smallint, i4 integer, i8 bigint, f4 real,
    f8 double precision, n38 numeric(38,10), n6 numeric(6,2), nu numeric, nneg numeric,
    t text, tv text, j jsonb, u uuid, us uuid, d date, ts timestamp, tz timestamptz, by bytea,
    ta text[], ia integer[], la bigint[], nt numeric, nf numeric, t8 text, tss timestamp,
    tsn timestamptz, ub bytea, u8 bigint)";

fn list(t: DataType) -> DataType {
    DataType::List(Arc::new(Field::new_list_field(t, true)))
}

fn schema() -> Arc<Schema> {
    let f = |n: &str, t: DataType| Field::new(n, t, true);
    Arc::new(Schema::new(vec![
        f("k", DataType::Int32),
        f("b", DataType::Boolean),
        f("i2", DataType::Int32),
        f("i4", DataType::Int32),
        f("i8", DataType::Int64),
        f("f4", DataType::Float32),
        f("f8", DataType::Float64),
        f("n38", DataType::Decimal128(38, 10)),
        f("n6", DataType::Decimal128(6, 2)),
        f("nu", DataType::Decimal128(38, 1)),
        f("nneg", DataType::Decimal128(38, -3)),
        f("t", DataType::Utf8),
        f("tv", DataType::Utf8View),
        f("j", DataType::Utf8),
        f("u", DataType::FixedSizeBinary(16)),
        f("us", DataType::Utf8),
        f("d", DataType::Date32),
        f("ts", DataType::Timestamp(TimeUnit::Microsecond, None)),
        f(
            "tz",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        ),
        f("by", DataType::Binary),
        f("ta", list(DataType::Utf8)),
        f("ia", list(DataType::Int32)),
        f("la", list(DataType::Int64)),
        f("nt", DataType::Utf8),
        f("nf", DataType::Float64),
        f("t8", DataType::Int64),
        f("tss", DataType::Timestamp(TimeUnit::Second, None)),
        f(
            "tsn",
            DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
        ),
        f("ub", DataType::FixedSizeBinary(16)),
        f("u8", DataType::UInt64),
    ]))
}

fn batch(rows: &[&Row]) -> RecordBatch {
    macro_rules! prim {
        ($arr:ty, $field:ident) => {
            Arc::new(rows.iter().map(|r| r.$field).collect::<$arr>()) as ArrayRef
        };
    }
    let dec = |v: Vec<Option<i128>>, p: u8, s: i8| -> ArrayRef {
        Arc::new(
            Decimal128Array::from(v)
                .with_precision_and_scale(p, s)
                .unwrap(),
        )
    };
    let mut ta = ListBuilder::new(StringBuilder::new());
    let mut ia = ListBuilder::new(PrimitiveBuilder::<Int32Type>::new());
    let mut la = ListBuilder::new(PrimitiveBuilder::<Int64Type>::new());
    for r in rows {
        ta.append_option(r.ta.clone());
        ia.append_option(r.ia.clone());
        la.append_option(r.la.clone());
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int32Array::from_iter_values(0..rows.len() as i32)),
        prim!(BooleanArray, b),
        prim!(Int32Array, i2),
        prim!(Int32Array, i4),
        prim!(Int64Array, i8),
        prim!(Float32Array, f4),
        prim!(Float64Array, f8),
        dec(rows.iter().map(|r| r.n38).collect(), 38, 10),
        dec(rows.iter().map(|r| r.n6).collect(), 6, 2),
        dec(rows.iter().map(|r| r.nu).collect(), 38, 1),
        dec(rows.iter().map(|r| r.nneg).collect(), 38, -3),
        Arc::new(rows.iter().map(|r| r.t.clone()).collect::<StringArray>()),
        Arc::new(
            rows.iter()
                .map(|r| r.tv.clone())
                .collect::<StringViewArray>(),
        ),
        Arc::new(
            rows.iter()
                .map(|r| r.j.as_ref().map(|j| j.to_string()))
                .collect::<StringArray>(),
        ),
        Arc::new(
            FixedSizeBinaryArray::try_from_sparse_iter_with_size(rows.iter().map(|r| r.u), 16)
                .unwrap(),
        ),
        Arc::new(
            rows.iter()
                .map(|r| r.us.as_ref().map(|u| u.0.clone()))
                .collect::<StringArray>(),
        ),
        prim!(Date32Array, d),
        prim!(TimestampMicrosecondArray, ts),
        Arc::new(
            rows.iter()
                .map(|r| r.tz)
                .collect::<TimestampMicrosecondArray>()
                .with_timezone("UTC"),
        ),
        Arc::new(
            rows.iter()
                .map(|r| r.by.as_deref())
                .collect::<BinaryArray>(),
        ),
        Arc::new(ta.finish()),
        Arc::new(ia.finish()),
        Arc::new(la.finish()),
        Arc::new(
            rows.iter()
                .map(|r| r.nt.as_ref().map(|n| n.0.clone()))
                .collect::<StringArray>(),
        ),
        prim!(Float64Array, nf),
        prim!(Int64Array, t8),
        prim!(TimestampSecondArray, tss),
        Arc::new(
            rows.iter()
                .map(|r| r.tsn)
                .collect::<TimestampNanosecondArray>()
                .with_timezone("UTC"),
        ),
        Arc::new(
            FixedSizeBinaryArray::try_from_sparse_iter_with_size(rows.iter().map(|r| r.ub), 16)
                .unwrap(),
        ),
        prim!(UInt64Array, u8),
    ];
    RecordBatch::try_new(schema(), columns).unwrap()
}

/// The first column (in table order) of `r` holding a value PostgreSQL or the encoder
/// cannot take, if any.
fn bad_column(r: &Row) -> Option<&'static str> {
    if r.i2.is_some_and(|v| i16::try_from(v).is_err()) {
        return Some("i2");
    }
    if r.nneg
        .is_some_and(|v| v.unsigned_abs().checked_mul(1000).is_none())
    {
        return Some("nneg");
    }
    if r.d.is_some_and(|d| !(DATE_MIN..=DATE_MAX).contains(&d)) {
        return Some("d");
    }
    if r.ts.is_some_and(|v| v < TS_MIN) {
        return Some("ts");
    }
    if r.tz.is_some_and(|v| v < TS_MIN) {
        return Some("tz");
    }
    if r.nt.as_ref().is_some_and(|n| n.1.is_none()) {
        return Some("nt");
    }
    if r.nf.is_some_and(f64::is_infinite) {
        return Some("nf");
    }
    if r.tss
        .is_some_and(|v| v.checked_mul(1_000_000).is_none_or(|us| us < TS_MIN))
    {
        return Some("tss");
    }
    if r.u8.is_some_and(|v| i64::try_from(v).is_err()) {
        return Some("u8");
    }
    None
}

fn opt<T: std::fmt::Debug + Clone + 'static>(
    s: impl Strategy<Value = T> + 'static,
) -> BoxedStrategy<Option<T>> {
    prop_oneof![1 => Just(None), 4 => s.prop_map(Some)].boxed()
}

/// Near and at the limits, and anywhere.
fn edgy_i128(max: i128) -> impl Strategy<Value = i128> {
    prop_oneof![
        Just(0),
        Just(max),
        Just(-max),
        (0..1000i128).prop_map(move |d| max - d),
        (0..1000i128).prop_map(move |d| d - max),
        -max..=max,
        -10_000i128..10_000,
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-zé,\"\\\\{} 😀\t\n]{0,12}",
        Just(String::new()),
        Just("NULL".to_owned()),
    ]
    .prop_map(|s| s.replace('\0', ""))
}

fn json() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((text(), inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn uuid_text(u: [u8; 16], upper: bool, hyphens: bool) -> String {
    let s = if hyphens {
        uuid::Uuid::from_bytes(u).hyphenated().to_string()
    } else {
        uuid::Uuid::from_bytes(u).simple().to_string()
    };
    if upper { s.to_uppercase() } else { s }
}

fn row() -> impl Strategy<Value = Row> {
    let dec38 = 10i128.pow(38) - 1;
    let ints = (
        opt(any::<bool>()),
        opt(prop_oneof![
            8 => any::<i16>().prop_map(i32::from),
            1 => Just(i16::MAX as i32 + 1),
            1 => Just(i16::MIN as i32 - 1),
            1 => any::<i32>(),
        ]),
        opt(prop_oneof![Just(i32::MIN), Just(i32::MAX), any::<i32>()]),
        opt(prop_oneof![Just(i64::MIN), Just(i64::MAX), any::<i64>()]),
        opt(prop_oneof![
            Just(f32::NAN),
            Just(f32::INFINITY),
            Just(f32::NEG_INFINITY),
            Just(-0.0f32),
            Just(f32::MIN_POSITIVE),
            Just(f32::MAX),
            any::<f32>(),
        ]),
        opt(prop_oneof![
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(-0.0f64),
            Just(f64::MIN_POSITIVE),
            Just(5e-324),
            Just(f64::MAX),
            any::<f64>(),
        ]),
    );
    let numerics = (
        opt(edgy_i128(dec38)),
        opt(edgy_i128(999_999)),
        opt(edgy_i128(dec38)),
        opt(edgy_i128(dec38)),
    );
    let texts = (
        opt(text()),
        opt(text()),
        opt(json()),
        opt(any::<[u8; 16]>()),
        opt((any::<[u8; 16]>(), any::<bool>(), any::<bool>())
            .prop_map(|(u, up, hy)| (uuid_text(u, up, hy), u))),
    );
    let ts = || {
        prop_oneof![
            Just(TS_MIN),
            Just(TS_MIN - 1),
            Just(i64::MAX),
            Just(i64::MIN),
            Just(-1),
            any::<i64>(),
            -10_000_000_000_000_000i64..10_000_000_000_000_000,
        ]
    };
    let times = (
        opt(prop_oneof![
            Just(DATE_MIN),
            Just(DATE_MIN - 1),
            Just(DATE_MAX),
            Just(DATE_MAX + 1),
            Just(i32::MIN),
            Just(i32::MAX),
            any::<i32>(),
            -800_000..3_000_000i32,
        ]),
        opt(ts()),
        opt(ts()),
    );
    let lists = (
        opt(prop::collection::vec(any::<u8>(), 0..40)),
        opt(prop::collection::vec(opt(text()), 0..5)),
        opt(prop::collection::vec(opt(any::<i32>()), 0..5)),
        opt(prop::collection::vec(opt(any::<i64>()), 0..5)),
    );
    let more = (
        opt(numeric_text()),
        opt(prop_oneof![
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(-0.0),
            Just(5e-324),
            Just(f64::MIN_POSITIVE),
            any::<f64>().prop_filter("< 1e30", |f| f.abs() < 1e30),
        ]),
        opt(any::<i64>()),
        opt(prop_oneof![
            Just(TS_MIN / 1_000_000),
            Just(TS_MIN / 1_000_000 - 1),
            Just(i64::MAX / 1_000_000 + 1),
            any::<i64>(),
            -1_000_000_000_000i64..1_000_000_000_000,
        ]),
        opt(any::<i64>()),
        opt(any::<[u8; 16]>()),
        opt(prop_oneof![
            Just(i64::MAX as u64),
            Just(i64::MAX as u64 + 1),
            any::<u64>()
        ]),
    );
    (ints, numerics, texts, times, lists, more).prop_map(
        |(
            (b, i2, i4, i8, f4, f8),
            (n38, n6, nu, nneg),
            (t, tv, j, u, us),
            (d, ts, tz),
            l,
            (nt, nf, t8, tss, tsn, ub, u8),
        )| Row {
            b,
            i2,
            i4,
            i8,
            f4,
            f8,
            n38,
            n6,
            nu,
            nneg,
            t,
            tv,
            j,
            u,
            us,
            d,
            ts,
            tz,
            by: l.0,
            ta: l.1,
            ia: l.2,
            la: l.3,
            nt,
            nf,
            t8,
            tss,
            tsn,
            ub,
            u8,
        },
    )
}

/// Decimal text (padded, with trailing zeros or an exponent) and the number PostgreSQL
/// prints for it, or text that is not a number.
fn numeric_text() -> impl Strategy<Value = (String, Option<String>)> {
    let max = 10i128.pow(30);
    prop_oneof![
        4 => (-max..max, 0..8u32, 0..3usize, any::<bool>()).prop_map(|(v, scale, zeros, pad)| {
            let p = 10u128.pow(scale);
            let abs = v.unsigned_abs();
            let mut s = format!(
                "{}{}.{:0w$}",
                if v < 0 { "-" } else { "" },
                abs / p,
                abs % p,
                w = scale as usize
            );
            s.extend(std::iter::repeat_n('0', zeros));
            if pad {
                s = format!(" {s}  ");
            }
            (s, Some(decimal_text(v, scale as i8)))
        }),
        1 => (-1_000_000i128..1_000_000, -6i8..6)
            .prop_map(|(v, e)| (format!("{v}e{e}"), Some(decimal_text(v, -e)))),
        1 => prop_oneof![Just("abc"), Just("1.2.3"), Just("--1"), Just("1e")]
            .prop_map(|s| (s.to_owned(), None)),
    ]
}

fn rows() -> impl Strategy<Value = Vec<Row>> {
    prop::collection::vec(row(), 0..12)
}

/// `value × 10^-scale` as PostgreSQL prints it without trailing fractional zeros.
fn decimal_text(value: i128, scale: i8) -> String {
    etl_core::batch::format_decimal(value, scale)
}

/// PostgreSQL's numeric text without trailing fractional zeros.
fn trim_numeric(s: &str) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s.to_owned()
    }
}

fn same_f64(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a.to_bits() == b.to_bits()
}

async fn copy(
    conn: &mut PgConnection,
    enc: &CopyEncoder,
    batch: &RecordBatch,
) -> Result<(), Error> {
    let mut buf = BytesMut::new();
    buf.extend_from_slice(COPY_HEADER);
    enc.encode(batch, &mut buf)?;
    buf.extend_from_slice(COPY_TRAILER);
    sqlx::query("TRUNCATE t").execute(&mut *conn).await.unwrap();
    let sql = format!(
        "COPY t {} FROM STDIN (FORMAT binary)",
        enc.column_list_sql()
    );
    let mut c = conn.copy_in_raw(&sql).await.unwrap();
    c.send(buf.freeze()).await.unwrap();
    let n = c.finish().await.unwrap();
    assert_eq!(n, batch.num_rows() as u64);
    Ok(())
}

/// (`extract(epoch FROM ts)` goes through a float near the end of the range, hence the
/// subtraction: the epoch of an interval is exact.)
const SELECT: &str = "SELECT k, b, i2, i4, i8, f4, f8, n38::text, n6::text, nu::text, nneg::text,
    t, tv, j::text, u, us, (d - date '2000-01-01') AS d,
    (extract(epoch FROM ts - timestamp '2000-01-01') * 1000000 + 946684800000000)::text AS ts,
    (extract(epoch FROM tz - timestamptz '2000-01-01 00:00:00+00') * 1000000
        + 946684800000000)::text AS tz,
    by, ta, ia, la, nt::text, nf::text, t8,
    (extract(epoch FROM tss - timestamp '2000-01-01') * 1000000 + 946684800000000)::text AS tss,
    (extract(epoch FROM tsn - timestamptz '2000-01-01 00:00:00+00') * 1000000
        + 946684800000000)::text AS tsn,
    ub, u8 FROM t ORDER BY k";

fn check_row(r: &Row, got: &sqlx::postgres::PgRow) -> Result<(), TestCaseError> {
    macro_rules! eq {
        ($name:expr, $got:expr, $want:expr) => {
            prop_assert_eq!($got, $want, "column {}", $name)
        };
    }
    eq!("b", got.get::<Option<bool>, _>("b"), r.b);
    eq!("i2", got.get::<Option<i16>, _>("i2").map(i32::from), r.i2);
    eq!("i4", got.get::<Option<i32>, _>("i4"), r.i4);
    eq!("i8", got.get::<Option<i64>, _>("i8"), r.i8);
    let f4 = got.get::<Option<f32>, _>("f4");
    prop_assert!(
        match (f4, r.f4) {
            (Some(a), Some(b)) => same_f64(a as f64, b as f64),
            (a, b) => a.is_none() && b.is_none(),
        },
        "f4 {:?} != {:?}",
        f4,
        r.f4
    );
    let f8 = got.get::<Option<f64>, _>("f8");
    prop_assert!(
        match (f8, r.f8) {
            (Some(a), Some(b)) => same_f64(a, b),
            (a, b) => a.is_none() && b.is_none(),
        },
        "f8 {:?} != {:?}",
        f8,
        r.f8
    );
    for (name, v, s) in [
        ("n38", r.n38, 10),
        ("n6", r.n6, 2),
        ("nu", r.nu, 1),
        ("nneg", r.nneg, -3),
    ] {
        let text: Option<String> = got.get(name);
        eq!(
            name,
            text.as_deref().map(trim_numeric),
            v.map(|v| decimal_text(v, s))
        );
    }
    eq!("t", got.get::<Option<String>, _>("t"), r.t.clone());
    eq!("tv", got.get::<Option<String>, _>("tv"), r.tv.clone());
    // (The values of `j` are compared by the server: see `same_json`.)
    eq!(
        "j",
        got.get::<Option<String>, _>("j").is_some(),
        r.j.is_some()
    );
    eq!(
        "u",
        got.get::<Option<uuid::Uuid>, _>("u"),
        r.u.map(uuid::Uuid::from_bytes)
    );
    eq!(
        "us",
        got.get::<Option<uuid::Uuid>, _>("us"),
        r.us.as_ref().map(|u| uuid::Uuid::from_bytes(u.1))
    );
    eq!(
        "d",
        got.get::<Option<i32>, _>("d").map(i64::from),
        r.d.map(|d| i64::from(d) - 10_957)
    );
    eq!(
        "ts",
        got.get::<Option<String>, _>("ts")
            .as_deref()
            .map(trim_numeric),
        r.ts.map(|v| v.to_string())
    );
    eq!(
        "tz",
        got.get::<Option<String>, _>("tz")
            .as_deref()
            .map(trim_numeric),
        r.tz.map(|v| v.to_string())
    );
    eq!("by", got.get::<Option<Vec<u8>>, _>("by"), r.by.clone());
    eq!(
        "ta",
        got.get::<Option<Vec<Option<String>>>, _>("ta"),
        r.ta.clone()
    );
    eq!(
        "ia",
        got.get::<Option<Vec<Option<i32>>>, _>("ia"),
        r.ia.clone()
    );
    eq!(
        "la",
        got.get::<Option<Vec<Option<i64>>>, _>("la"),
        r.la.clone()
    );
    eq!(
        "nt",
        got.get::<Option<String>, _>("nt")
            .as_deref()
            .map(trim_numeric),
        r.nt.as_ref().map(|n| n.1.clone().unwrap())
    );
    eq!(
        "nf",
        got.get::<Option<String>, _>("nf")
            .as_deref()
            .map(trim_numeric),
        r.nf.map(|f| match trim_numeric(&format!("{f}")) {
            z if z == "-0" => "0".to_owned(),
            s => s,
        })
    );
    eq!(
        "t8",
        got.get::<Option<String>, _>("t8"),
        r.t8.map(|v| v.to_string())
    );
    eq!(
        "tss",
        got.get::<Option<String>, _>("tss")
            .as_deref()
            .map(trim_numeric),
        r.tss.map(|v| (v * 1_000_000).to_string())
    );
    eq!(
        "tsn",
        got.get::<Option<String>, _>("tsn")
            .as_deref()
            .map(trim_numeric),
        r.tsn.map(|v| v.div_euclid(1000).to_string())
    );
    eq!(
        "ub",
        got.get::<Option<Vec<u8>>, _>("ub"),
        r.ub.map(|u| u.to_vec())
    );
    eq!(
        "u8",
        got.get::<Option<i64>, _>("u8"),
        r.u8.map(|v| v as i64)
    );
    Ok(())
}

/// Whether two JSON texts are the same `jsonb` (serde_json's float parsing is not exact
/// enough to compare numbers such as `45385004607771010000000` and `4.538500460777101e22`).
async fn same_json(conn: &mut PgConnection, a: &str, b: &str) -> bool {
    sqlx::query_scalar("SELECT $1::jsonb = $2::jsonb")
        .bind(a)
        .bind(b)
        .fetch_one(conn)
        .await
        .unwrap()
}

#[test]
fn random_batches_of_every_type_round_trip_through_binary_copy() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (_db, conn) = rt.block_on(async {
        let (db, mut conn) = super::db().await;
        sqlx::query(CREATE).execute(&mut conn).await.unwrap();
        (db, conn)
    });
    let conn = tokio::sync::Mutex::new(conn);
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let schema = schema();
    let enc = rt.block_on(async {
        let cols = table_columns(&mut *conn.lock().await, &TableName::new("t"))
            .await
            .unwrap();
        CopyEncoder::for_table(&schema, &cols).unwrap()
    });
    let result = runner.run(&rows(), |rows| {
        rt.block_on(async {
            let mut conn = conn.lock().await;
            let all: Vec<&Row> = rows.iter().collect();
            // The first bad value in row order, then column order, is the error.
            let first_bad = all
                .iter()
                .enumerate()
                .find_map(|(i, r)| bad_column(r).map(|c| (i, c)));
            let res = copy(&mut conn, &enc, &batch(&all)).await;
            match (first_bad, res) {
                (None, Ok(())) => {}
                (
                    Some((row, column)),
                    Err(Error::Encode {
                        column: c, row: r, ..
                    }),
                ) => {
                    prop_assert_eq!((r, c.as_str()), (row, column));
                }
                (want, got) => {
                    return Err(TestCaseError::fail(format!(
                        "expected error at {want:?}, got {got:?}"
                    )));
                }
            }
            let good: Vec<&Row> = rows.iter().filter(|r| bad_column(r).is_none()).collect();
            let b = batch(&good);
            copy(&mut conn, &enc, &b)
                .await
                .map_err(|e| TestCaseError::fail(format!("good rows: {e}")))?;
            let back = sqlx::query(SELECT).fetch_all(&mut *conn).await.unwrap();
            prop_assert_eq!(back.len(), good.len());
            for (r, got) in good.iter().zip(&back) {
                check_row(r, got)?;
                if let (Some(want), Some(got)) = (&r.j, got.get::<Option<String>, _>("j")) {
                    let want = want.to_string();
                    prop_assert!(same_json(&mut conn, &got, &want).await, "j {got} != {want}");
                }
            }
            Ok(())
        })
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
