//! Property test of the Bubble JSON decoder ([`RecordDecoder::push_json`] and `flush`):
//! random things of a declared type (every field kind; values of the right kind in the
//! forms Bubble sends, of a wrong kind, missing, null; unknown keys; any unicode; numbers
//! at the i64/f64 limits; dates in Bubble's formats and malformed ones; lists; nested
//! objects) never panic, and every thing comes out either as a row whose values are the
//! ones sent (decoded independently by the test) or as a reject naming the thing and the
//! first field that does not fit; things in = rows + rejects.
//!
//! 64 cases by default, `PROPTEST_CASES=N` for more.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Decimal128Type, Float64Type, Int64Type, TimestampMillisecondType};
use arrow_array::{Array, ArrayRef};
use chrono::{DateTime, FixedOffset, Utc};
use etl_source_bubble::schema::{CREATED_COLUMN, CREATED_DATE, ID, MODIFIED_COLUMN, MODIFIED_DATE};
use etl_source_bubble::{FieldKind, FieldSpec, KeyMode, RecordDecoder, TypeSchema};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

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

const DEC_SMALL: FieldKind = FieldKind::Decimal {
    precision: 12,
    scale: 2,
};
const DEC_BIG: FieldKind = FieldKind::Decimal {
    precision: 38,
    scale: 4,
};

/// The declared fields after the three built-ins: column, kind.
const FIELDS: [(&str, FieldKind); 9] = [
    ("Name", FieldKind::Text),
    ("Active", FieldKind::Bool),
    ("Count", FieldKind::Int),
    ("Rate", FieldKind::Number),
    ("Price", DEC_SMALL),
    ("Big", DEC_BIG),
    ("When", FieldKind::Date),
    ("Meta", FieldKind::Json),
    ("Tags", FieldKind::TextList),
];

fn spec(mode: KeyMode) -> TypeSchema {
    FIELDS
        .iter()
        .fold(TypeSchema::new("thing", mode), |s, (c, k)| {
            s.field(FieldSpec::new(c, *k))
        })
}

/// A decoded value as the test expects it.
#[derive(Debug, Clone, PartialEq)]
enum Exp {
    Null,
    Str(String),
    Bool(bool),
    Int(i64),
    F64(f64),
    Dec(i128),
    Ts(i64),
    List(Vec<String>),
}

/// One generated value of a field: `None` = missing key; `Ok(expected)` a value the
/// decoder must take; `Err(())` one it must reject.
type Gen = (Option<Value>, Result<Exp, ()>);

fn right(v: Value, e: Exp) -> Gen {
    (Some(v), Ok(e))
}

fn wrong(v: Value) -> Gen {
    (Some(v), Err(()))
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-z ,\\[\\]\"{}:0-9é😀\\\\\t\n]{0,10}",
        Just(" ".to_owned()),
    ]
}

/// Objects and arrays nested a few levels.
fn nested() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::vec((text(), inner), 0..3)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn missing_or_null() -> impl Strategy<Value = Gen> {
    prop_oneof![
        Just((None, Ok(Exp::Null))),
        Just((Some(Value::Null), Ok(Exp::Null)))
    ]
}

fn text_field() -> impl Strategy<Value = Gen> {
    prop_oneof![
        4 => text().prop_map(|s| {
            let e = if s.is_empty() { Exp::Null } else { Exp::Str(s.clone()) };
            right(Value::String(s), e)
        }),
        1 => any::<i64>().prop_map(|i| right(json!(i), Exp::Str(i.to_string()))),
        1 => any::<bool>().prop_map(|b| right(json!(b), Exp::Str(b.to_string()))),
        1 => nested()
            .prop_filter("array or object", |v| v.is_array() || v.is_object())
            .prop_map(wrong),
        1 => missing_or_null(),
    ]
}

fn bool_field() -> impl Strategy<Value = Gen> {
    let words = prop_oneof![
        Just(("yes", true)),
        Just(("No", false)),
        Just((" TRUE ", true)),
        Just(("f", false)),
        Just(("1", true)),
        Just(("0", false)),
        Just(("y", true)),
    ];
    prop_oneof![
        any::<bool>().prop_map(|b| right(json!(b), Exp::Bool(b))),
        words.prop_map(|(w, b)| right(json!(w), Exp::Bool(b))),
        prop_oneof![
            Just(json!("maybe")),
            Just(json!(1)),
            Just(json!(0.5)),
            Just(json!([true]))
        ]
        .prop_map(wrong),
        missing_or_null(),
    ]
}

fn int_field() -> impl Strategy<Value = Gen> {
    prop_oneof![
        prop_oneof![Just(i64::MIN), Just(i64::MAX), any::<i64>()]
            .prop_map(|i| right(json!(i), Exp::Int(i))),
        any::<i64>().prop_map(|i| right(json!(format!(" {i} ")), Exp::Int(i))),
        // Whole numbers sent as doubles.
        (-9_000_000_000_000_000i64..=9_000_000_000_000_000)
            .prop_map(|i| (i as f64) as i64)
            .prop_map(|i| right(json!(i as f64), Exp::Int(i))),
        prop_oneof![
            Just(json!(1.5)),
            Just(json!(1e20)),
            Just(json!(u64::MAX)),
            Just(json!("12abc")),
            Just(json!("1e400")),
            Just(json!(true)),
            Just(json!({"a": 1})),
        ]
        .prop_map(wrong),
        missing_or_null(),
    ]
}

fn number_field() -> impl Strategy<Value = Gen> {
    prop_oneof![
        prop_oneof![
            Just(f64::MAX),
            Just(f64::MIN),
            Just(f64::MIN_POSITIVE),
            Just(5e-324),
            Just(-0.0),
            any::<f64>().prop_filter("finite", |f| f.is_finite()),
        ]
        .prop_map(|f| right(json!(f), Exp::F64(f))),
        any::<i64>().prop_map(|i| right(json!(i), Exp::F64(i as f64))),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| right(json!(format!("{f}")), Exp::F64(f))),
        prop_oneof![
            Just(json!("NaN")),
            Just(json!("inf")),
            Just(json!("1e400")),
            Just(json!("12,5")),
            Just(json!(false)),
            Just(json!([1.5])),
        ]
        .prop_map(wrong),
        missing_or_null(),
    ]
}

/// `value × 10^-scale` as text, with `zeros` extra trailing zeros.
fn decimal_text(value: i128, scale: u32, zeros: usize) -> String {
    let neg = value < 0;
    let abs = value.unsigned_abs();
    let p = 10u128.pow(scale);
    let mut s = format!(
        "{}{}.{:0width$}",
        if neg { "-" } else { "" },
        abs / p,
        abs % p,
        width = scale as usize
    );
    s.extend(std::iter::repeat_n('0', zeros));
    s
}

fn decimal_field(precision: u32, scale: u32) -> impl Strategy<Value = Gen> {
    let max = 10i128.pow(precision) - 1;
    let values = prop_oneof![
        Just(max),
        Just(-max),
        Just(0),
        -max..=max,
        -100_000i128..100_000
    ];
    // At most 12 digits: every double of such a value prints as the value.
    let as_number = (-999_999_999_999i128..=999_999_999_999).prop_map(move |v| {
        let f = v as f64 / 10f64.powi(scale as i32);
        right(json!(f), Exp::Dec(v))
    });
    prop_oneof![
        4 => (values, 0..3usize)
            .prop_map(move |(v, z)| right(json!(decimal_text(v, scale, z)), Exp::Dec(v))),
        1 => as_number,
        // Bubble's float noise, rounded to the scale.
        1 => Just(right(json!(76.49000000000001), Exp::Dec(7649 * 10i128.pow(scale - 2)))),
        1 => Just(right(json!("0.30000000000000004"), Exp::Dec(3 * 10i128.pow(scale - 1)))),
        1 => prop_oneof![
            // More digits than the precision, a real excess digit, not a number.
            Just(json!(format!("1{}", "0".repeat(precision as usize - scale as usize)))),
            Just(json!(format!("0.{}1", "0".repeat(scale as usize)))),
            Just(json!(format!("1.{}1", "2".repeat(scale as usize)))),
            Just(json!("12.5.0")),
            Just(json!(1e300)),
            Just(json!(-1e-300)),
            Just(json!("1e-400")),
            Just(json!("NaN")),
            Just(json!("abc")),
            Just(json!(true)),
            Just(json!(["1"])),
        ]
        .prop_map(wrong),
        1 => missing_or_null(),
    ]
}

/// A date as milliseconds between the years 1000 and 9999.
fn millis() -> impl Strategy<Value = i64> {
    prop_oneof![
        Just(0i64),
        Just(1_708_326_730_811),
        -30_610_224_000_000i64..253_402_000_000_000,
    ]
}

fn date_field() -> impl Strategy<Value = Gen> {
    let t = |ms: i64| DateTime::<Utc>::from_timestamp_millis(ms).unwrap();
    let formats = (millis(), 0..14u8, -14i32..=14).prop_map(move |(ms, f, off_h)| {
        let at = t(ms);
        let secs = ms.div_euclid(1000) * 1000;
        let mins = ms.div_euclid(60_000) * 60_000;
        let days = ms.div_euclid(86_400_000) * 86_400_000;
        let (s, want) = match f {
            0 => (at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(), ms),
            1 => {
                let off = FixedOffset::east_opt(off_h * 3600).unwrap();
                (at.with_timezone(&off).to_rfc3339(), ms)
            }
            2 => (at.format("%Y-%m-%d %H:%M:%S").to_string(), secs),
            3 => (at.format("%Y-%m-%d %H:%M").to_string(), mins),
            4 => (at.format("%Y-%m-%d").to_string(), days),
            5 => (at.format("%m/%d/%Y %H:%M:%S").to_string(), secs),
            6 => (at.format("%m/%d/%Y %I:%M %p").to_string(), mins),
            7 => (at.format("%m/%d/%Y").to_string(), days),
            8 => (at.format("%b %d, %Y %I:%M %p").to_string(), mins),
            9 => (at.format("%b %d, %Y").to_string(), days),
            // The forms of the doc: `02/19/2024 7:12 am`, `Feb 19, 2024 7:12 am`.
            10 => (at.format("%m/%d/%Y %-I:%M %P").to_string(), mins),
            11 => (at.format("%b %-d, %Y %-I:%M %P").to_string(), mins),
            12 => (at.format("%Y-%m-%dT%H:%M:%S%.3f").to_string(), ms),
            _ => (format!(" {} ", at.format("%Y-%m-%dT%H:%M:%S%.6fZ")), ms),
        };
        right(json!(s), Exp::Ts(want))
    });
    prop_oneof![
        4 => formats,
        1 => millis().prop_map(|ms| right(json!(ms), Exp::Ts(ms))),
        1 => (1_000_000_000i64..253_402_300_799_999)
            .prop_map(|ms| right(json!(ms.to_string()), Exp::Ts(ms))),
        2 => prop_oneof![
            Just(json!("2024-13-45")),
            Just(json!("02/30/2024")),
            Just(json!("yesterday")),
            Just(json!("12345")),
            Just(json!("99999999999999999999")),
            Just(json!(i64::MAX)),
            Just(json!(1.5)),
            Just(json!(true)),
            Just(json!({"date": "2024-02-19"})),
        ]
        .prop_map(wrong),
        1 => missing_or_null(),
    ]
}

fn json_field() -> impl Strategy<Value = Gen> {
    prop_oneof![
        text().prop_map(|s| right(json!(s), Exp::Str(s))),
        nested()
            .prop_filter("not null", |v| !v.is_null() && !v.is_string())
            .prop_map(|v| {
                let s = v.to_string();
                right(v, Exp::Str(s))
            }),
        missing_or_null(),
    ]
}

/// The strings of a list as the decoder makes them: nulls dropped, other values as JSON.
fn list_strings(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .filter(|v| !v.is_null())
        .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
        .collect()
}

fn list_field() -> impl Strategy<Value = Gen> {
    let items = prop::collection::vec(
        prop_oneof![
            4 => text().prop_map(Value::String),
            1 => Just(Value::Null),
            1 => nested(),
        ],
        0..4,
    );
    let words = prop::collection::vec("[a-zé😀 ]{0,5}", 0..4);
    prop_oneof![
        items
            .clone()
            .prop_map(|l| right(Value::Array(l.clone()), Exp::List(list_strings(&l)))),
        items.prop_map(|l| {
            let s = Value::Array(l.clone()).to_string();
            right(json!(format!(" {s}")), Exp::List(list_strings(&l)))
        }),
        words.prop_map(|w| {
            let s = w.join(",");
            let want = w
                .iter()
                .map(|x| x.trim())
                .filter(|x| !x.is_empty())
                .map(str::to_owned)
                .collect();
            let e = if s.is_empty() {
                Exp::Null
            } else {
                Exp::List(want)
            };
            right(json!(s), e)
        }),
        prop_oneof![
            Just(json!("[\"a\", ")),
            Just(json!("[1] trailing")),
            Just(json!({"a": 1})),
            Just(json!(12)),
            Just(json!(true)),
        ]
        .prop_map(wrong),
        missing_or_null(),
    ]
}

fn id_field() -> impl Strategy<Value = Gen> {
    prop_oneof![
        8 => "[0-9]{10}x[0-9]{5}".prop_map(|s| right(json!(s), Exp::Str(s))),
        1 => text().prop_map(|s| {
            let e = if s.is_empty() { Err(()) } else { Ok(Exp::Str(s.clone())) };
            (Some(json!(s)), e)
        }),
        1 => prop_oneof![
            Just((None, Err(()))),
            Just((Some(Value::Null), Err(()))),
            Just(wrong(json!(["x"]))),
        ],
    ]
}

fn field(kind: FieldKind) -> BoxedStrategy<Gen> {
    match kind {
        FieldKind::Text => text_field().boxed(),
        FieldKind::Bool => bool_field().boxed(),
        FieldKind::Int => int_field().boxed(),
        FieldKind::Number => number_field().boxed(),
        FieldKind::Decimal { precision, scale } => {
            decimal_field(u32::from(precision), scale as u32).boxed()
        }
        FieldKind::Date => date_field().boxed(),
        FieldKind::Json => json_field().boxed(),
        FieldKind::TextList => list_field().boxed(),
    }
}

/// One thing: a value for `_id`, the two dates and each field, in column order, plus
/// unknown keys.
#[derive(Debug, Clone)]
struct Thing {
    values: Vec<Gen>,
    extra: Vec<(String, Value)>,
}

fn thing() -> impl Strategy<Value = Thing> {
    let mut parts = vec![
        id_field().boxed(),
        date_field().boxed(),
        date_field().boxed(),
    ];
    parts.extend(FIELDS.iter().map(|(_, k)| field(*k)));
    // Half the things have no wrong value (missing instead), so that rows are many.
    (
        parts,
        prop::collection::vec((text(), nested()), 0..3),
        any::<bool>(),
    )
        .prop_map(|(mut values, extra, clean)| {
            if clean {
                for (i, v) in values.iter_mut().enumerate() {
                    if v.1.is_err() {
                        *v = if i == 0 {
                            right(json!("1x1"), Exp::Str("1x1".to_owned()))
                        } else {
                            (None, Ok(Exp::Null))
                        };
                    }
                }
            }
            Thing { values, extra }
        })
}

fn keys(spec: &TypeSchema) -> Vec<String> {
    [ID, CREATED_DATE, MODIFIED_DATE]
        .into_iter()
        .map(str::to_owned)
        .chain(
            spec.fields
                .iter()
                .map(|f| f.key_for(spec.key_mode).to_owned()),
        )
        .collect()
}

fn columns() -> Vec<&'static str> {
    let mut c = vec!["_id", CREATED_COLUMN, MODIFIED_COLUMN];
    c.extend(FIELDS.iter().map(|(c, _)| *c));
    c
}

fn object(spec: &TypeSchema, t: &Thing) -> Map<String, Value> {
    let keys = keys(spec);
    let mut m = Map::new();
    // Unknown keys first, so that a declared key generated by chance is overwritten.
    for (k, v) in &t.extra {
        m.insert(k.clone(), v.clone());
    }
    // The keys of the other key mode are not read.
    for f in &spec.fields {
        let other = match spec.key_mode {
            KeyMode::DisplayNames => &f.id_key,
            KeyMode::GeneratedIds => &f.key,
        };
        m.insert(other.clone(), json!([{"not": "read"}]));
    }
    for (k, (v, _)) in keys.iter().zip(&t.values) {
        match v {
            Some(v) => m.insert(k.clone(), v.clone()),
            None => m.remove(k),
        };
    }
    m
}

fn got(a: &ArrayRef, row: usize) -> Exp {
    use arrow_schema::DataType;
    if a.is_null(row) {
        return Exp::Null;
    }
    match a.data_type() {
        DataType::Utf8 => Exp::Str(a.as_string::<i32>().value(row).to_owned()),
        DataType::Boolean => Exp::Bool(a.as_boolean().value(row)),
        DataType::Int64 => Exp::Int(a.as_primitive::<Int64Type>().value(row)),
        DataType::Float64 => Exp::F64(a.as_primitive::<Float64Type>().value(row)),
        DataType::Decimal128(..) => Exp::Dec(a.as_primitive::<Decimal128Type>().value(row)),
        DataType::Timestamp(..) => Exp::Ts(a.as_primitive::<TimestampMillisecondType>().value(row)),
        DataType::List(_) => {
            let l = a.as_list::<i32>().value(row);
            let s = l.as_string::<i32>();
            Exp::List((0..s.len()).map(|i| s.value(i).to_owned()).collect())
        }
        other => panic!("unexpected {other}"),
    }
}

fn same(a: &Exp, b: &Exp) -> bool {
    match (a, b) {
        (Exp::F64(x), Exp::F64(y)) => x.to_bits() == y.to_bits(),
        _ => a == b,
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn things_become_their_values_or_rejects_naming_the_field(
        things in prop::collection::vec(thing(), 1..12),
        generated_ids in any::<bool>(),
        flush_at in 0..12usize,
    ) {
        let mode = if generated_ids { KeyMode::GeneratedIds } else { KeyMode::DisplayNames };
        let spec = Arc::new(spec(mode));
        let mut dec = RecordDecoder::new(spec.clone(), Arc::from("unit"), false);
        let mut batches = Vec::new();
        for (i, t) in things.iter().enumerate() {
            if i == flush_at {
                batches.extend(dec.flush().unwrap());
            }
            dec.push_json(i as u64 + 100, &object(&spec, t));
        }
        batches.extend(dec.flush().unwrap());
        prop_assert!(dec.is_empty());
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        let rejects: usize = batches.iter().map(|b| b.rejects.len()).sum();
        prop_assert_eq!(rows + rejects, things.len());
        let columns = columns();
        for (i, t) in things.iter().enumerate() {
            let record = i as u64 + 100;
            let first_bad = t.values.iter().position(|(_, e)| e.is_err());
            let row = batches.iter().find_map(|b| {
                b.records.iter().position(|r| *r == record).map(|row| (b, row))
            });
            let reject = batches
                .iter()
                .flat_map(|b| &b.rejects)
                .find(|j| j.record == record);
            match (first_bad, row, reject) {
                (None, Some((b, row)), None) => {
                    for (c, (_, want)) in t.values.iter().enumerate() {
                        let want = want.as_ref().unwrap();
                        let got = got(b.data.column(c), row);
                        prop_assert!(
                            same(&got, want),
                            "record {} column {}: got {:?}, want {:?} (sent {:?})",
                            record, columns[c], got, want, t.values[c].0
                        );
                    }
                }
                (Some(c), None, Some(j)) => {
                    prop_assert_eq!(j.column.as_deref(), Some(columns[c]), "{}", j.reason);
                    let prefix = format!("thing.{}: ", columns[c]);
                    prop_assert!(j.reason.starts_with(&prefix), "{}", j.reason);
                    prop_assert_eq!(&j.unit[..], "unit");
                }
                (want, row, reject) => {
                    return Err(TestCaseError::fail(format!(
                        "record {record}: expected a reject at {:?}, got row {:?} reject {:?}",
                        want.map(|c| columns[c]),
                        row.map(|(_, r)| r),
                        reject
                    )));
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(config())]

    /// The raw (export) decoding is lossless: every value as sent (strings as they are,
    /// other values as their JSON text), only a thing without `_id` is rejected.
    #[test]
    fn raw_things_keep_every_value_as_sent(
        things in prop::collection::vec(thing(), 1..12),
        generated_ids in any::<bool>(),
    ) {
        let mode = if generated_ids { KeyMode::GeneratedIds } else { KeyMode::DisplayNames };
        let spec = Arc::new(spec(mode));
        let mut dec = RecordDecoder::new(spec.clone(), Arc::from("unit"), true);
        for (i, t) in things.iter().enumerate() {
            dec.push_json(i as u64, &object(&spec, t));
        }
        let batch = dec.flush().unwrap().unwrap();
        prop_assert_eq!(batch.num_rows() + batch.rejects.len(), things.len());
        for (i, t) in things.iter().enumerate() {
            let row = batch.records.iter().position(|r| *r == i as u64);
            let reject = batch.rejects.iter().find(|j| j.record == i as u64);
            let raw = |v: &Option<Value>| match v {
                None | Some(Value::Null) => Exp::Null,
                Some(Value::String(s)) => Exp::Str(s.clone()),
                Some(other) => Exp::Str(other.to_string()),
            };
            if raw(&t.values[0].0) == Exp::Null {
                prop_assert!(row.is_none());
                prop_assert_eq!(reject.and_then(|j| j.column.as_deref()), Some("_id"));
                continue;
            }
            prop_assert!(reject.is_none(), "{:?}", reject);
            let row = row.unwrap();
            for (c, (v, _)) in t.values.iter().enumerate() {
                prop_assert_eq!(got(batch.data.column(c), row), raw(v));
            }
        }
    }
}

/// Found by the property tests: the float-noise rule of `parse_decimal` ("14 or more
/// fractional digits within 1e-6 of a unit in the last place of the scale is rounded;
/// real excess digits are refused") was computed in f64 alone, where a large value has no
/// fractional bits left, so real excess digits of a large decimal were rounded away
/// silently. Text of more than 17 significant digits (more than any double prints) is no
/// longer taken for noise.
#[test]
fn real_excess_digits_of_a_large_decimal_are_refused() {
    let kind = FieldKind::Decimal {
        precision: 38,
        scale: 4,
    };
    let spec = Arc::new(
        TypeSchema::new("thing", KeyMode::DisplayNames).field(FieldSpec::new("Big", kind)),
    );
    let mut dec = RecordDecoder::new(spec, Arc::from("unit"), false);
    // 27 significant digits: no double prints like this, it is not float noise.
    let thing = json!({"_id": "1x1", "Big": "1234567890123.12345678901234"});
    dec.push_json(0, thing.as_object().unwrap());
    let batch = dec.flush().unwrap().unwrap();
    assert_eq!(
        batch.rejects.len(),
        1,
        "decoded as {:?}",
        batch.data.column(3)
    );
}
