//! Property tests of the attribute mapping ([`etl_sink_dynamodb::mapping`]) and of
//! [`json_batch`]: random batches of the types they support (strings, integers, booleans,
//! decimals, structs of strings, lists of strings, with nulls)
//!
//! * -> items -> DynamoDB JSON (as text) -> items: the same items;
//! * -> items -> plain JSON -> [`json_batch`] with the same schema: the same batch (what a
//!   backup to plain JSON and its restore rely on);
//! * floats: a finite float is an `N` that parses back to it, a non-finite one is an error
//!   naming the column, never an item.
//!
//! 64 cases per property by default, `PROPTEST_CASES=N` for more.

use std::sync::Arc;

use arrow_array::builder::{ListBuilder, StringBuilder};
use arrow_array::{
    Array, ArrayRef, BooleanArray, Decimal128Array, Float64Array, Int64Array, RecordBatch,
    StringArray, StructArray,
};
use arrow_buffer::NullBuffer;
use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef};
use aws_sdk_dynamodb::types::AttributeValue;
use etl_sink_dynamodb::DynamoError;
use etl_sink_dynamodb::json_items::json_batch;
use etl_sink_dynamodb::mapping::{
    Item, MappingOptions, NullMode, item_from_dynamo_json, item_to_dynamo_json, item_to_plain_json,
    items_from_batch,
};
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

/// The decimal columns: name, precision, scale.
const DECIMALS: [(&str, u8, i8); 3] = [("d18", 18, 2), ("d38", 38, 10), ("d5", 5, 0)];

/// The two strings of the struct column.
type Address = (Option<String>, Option<String>);

#[derive(Debug, Clone)]
struct Row {
    s: Option<String>,
    i: Option<i64>,
    b: Option<bool>,
    d: [Option<i128>; 3],
    m: Option<Address>,
    l: Option<Vec<Option<String>>>,
}

fn struct_fields() -> Fields {
    Fields::from(vec![
        Field::new("Street", DataType::Utf8, true),
        Field::new("City", DataType::Utf8, true),
    ])
}

fn schema() -> SchemaRef {
    let mut fields = vec![
        Field::new("s", DataType::Utf8, true),
        Field::new("i", DataType::Int64, true),
        Field::new("b", DataType::Boolean, true),
    ];
    fields.extend(
        DECIMALS
            .iter()
            .map(|(n, p, s)| Field::new(*n, DataType::Decimal128(*p, *s), true)),
    );
    fields.push(Field::new("m", DataType::Struct(struct_fields()), true));
    fields.push(Field::new(
        "l",
        DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))),
        true,
    ));
    Arc::new(Schema::new(fields))
}

fn batch(rows: &[Row]) -> RecordBatch {
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(rows.iter().map(|r| r.s.clone()).collect::<StringArray>()),
        Arc::new(rows.iter().map(|r| r.i).collect::<Int64Array>()),
        Arc::new(rows.iter().map(|r| r.b).collect::<BooleanArray>()),
    ];
    for (k, (_, p, s)) in DECIMALS.iter().enumerate() {
        columns.push(Arc::new(
            rows.iter()
                .map(|r| r.d[k])
                .collect::<Decimal128Array>()
                .with_precision_and_scale(*p, *s)
                .unwrap(),
        ));
    }
    let child = |f: fn(&Address) -> Option<String>| -> ArrayRef {
        Arc::new(
            rows.iter()
                .map(|r| r.m.as_ref().and_then(f))
                .collect::<StringArray>(),
        )
    };
    columns.push(Arc::new(
        StructArray::try_new(
            struct_fields(),
            vec![child(|m| m.0.clone()), child(|m| m.1.clone())],
            Some(NullBuffer::from_iter(rows.iter().map(|r| r.m.is_some()))),
        )
        .unwrap(),
    ));
    let mut l = ListBuilder::new(StringBuilder::new());
    for r in rows {
        l.append_option(r.l.clone());
    }
    columns.push(Arc::new(l.finish()));
    RecordBatch::try_new(schema(), columns).unwrap()
}

fn opt<T: std::fmt::Debug + Clone + 'static>(
    s: impl Strategy<Value = T> + 'static,
) -> BoxedStrategy<Option<T>> {
    prop_oneof![1 => Just(None), 3 => s.prop_map(Some)].boxed()
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-z0-9 .,\"{}\\[\\]:é😀\\\\]{0,10}",
        Just(String::new()),
        Just("null".to_owned()),
        Just("12.50".to_owned()),
    ]
}

/// Any value of `Decimal128(precision, _)`, its limits and small ones.
fn decimal(precision: u8) -> impl Strategy<Value = i128> {
    let max = 10i128.pow(u32::from(precision)) - 1;
    prop_oneof![
        Just(0),
        Just(max),
        Just(-max),
        -max..=max,
        -100_000i128..100_000,
    ]
}

fn row() -> impl Strategy<Value = Row> {
    (
        opt(text()),
        opt(prop_oneof![Just(i64::MIN), Just(i64::MAX), any::<i64>()]),
        opt(any::<bool>()),
        (opt(decimal(18)), opt(decimal(38)), opt(decimal(5))),
        opt((opt(text()), opt(text()))),
        opt(prop::collection::vec(opt(text()), 0..4)),
    )
        .prop_map(|(s, i, b, d, m, l)| Row {
            s,
            i,
            b,
            d: [d.0, d.1, d.2],
            m,
            l,
        })
}

fn rows() -> impl Strategy<Value = Vec<Row>> {
    prop::collection::vec(row(), 0..10)
}

fn nulls() -> impl Strategy<Value = NullMode> {
    prop_oneof![Just(NullMode::Omit), Just(NullMode::Null)]
}

fn items(batch: &RecordBatch, nulls: NullMode) -> Vec<Item> {
    let options = MappingOptions {
        nulls,
        ..MappingOptions::default()
    };
    items_from_batch(batch, &options)
        .into_iter()
        .map(|i| i.expect("every supported value maps"))
        .collect()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn items_round_trip_through_dynamodb_json(rows in rows(), nulls in nulls()) {
        let items = items(&batch(&rows), nulls);
        prop_assert_eq!(items.len(), rows.len());
        for item in &items {
            let text = item_to_dynamo_json(item).to_string();
            let back = item_from_dynamo_json(&serde_json::from_str(&text).unwrap()).unwrap();
            prop_assert_eq!(&back, item);
        }
    }

    #[test]
    fn items_round_trip_through_plain_json_to_the_same_batch(
        rows in rows(),
        nulls in nulls(),
    ) {
        let batch = batch(&rows);
        let plain: Vec<serde_json::Map<String, serde_json::Value>> = items(&batch, nulls)
            .iter()
            .map(|i| {
                // Through the text, as a backup file holds it.
                let text = item_to_plain_json(i).to_string();
                serde_json::from_str(&text).unwrap()
            })
            .collect();
        let back = json_batch(&batch.schema(), &plain).unwrap();
        for (c, f) in batch.schema().fields().iter().enumerate() {
            prop_assert_eq!(
                back.column(c).to_data(),
                batch.column(c).to_data(),
                "column {}",
                f.name()
            );
        }
    }

    #[test]
    fn floats_are_numbers_or_errors_never_wrong_items(
        values in prop::collection::vec(
            opt(prop_oneof![
                Just(f64::NAN),
                Just(f64::INFINITY),
                Just(f64::NEG_INFINITY),
                Just(-0.0),
                Just(f64::MAX),
                Just(f64::MIN_POSITIVE),
                Just(5e-324),
                any::<f64>(),
            ]),
            0..10,
        ),
    ) {
        let schema = Arc::new(Schema::new(vec![Field::new("f", DataType::Float64, true)]));
        let batch = RecordBatch::try_new(
            schema,
            vec![Arc::new(values.iter().copied().collect::<Float64Array>())],
        )
        .unwrap();
        let items = items_from_batch(&batch, &MappingOptions::default());
        prop_assert_eq!(items.len(), values.len());
        for (v, item) in values.iter().zip(items) {
            match (v, item) {
                (None, Ok(item)) => prop_assert!(item.is_empty()),
                (Some(v), Ok(item)) => {
                    prop_assert!(v.is_finite());
                    let Some(AttributeValue::N(n)) = item.get("f") else {
                        return Err(TestCaseError::fail(format!("{item:?} has no N")));
                    };
                    prop_assert_eq!(n.parse::<f64>().unwrap(), *v);
                }
                (Some(v), Err(DynamoError::Mapping { column, .. })) => {
                    prop_assert!(!v.is_finite());
                    prop_assert_eq!(column, "f");
                }
                (v, Err(e)) => return Err(TestCaseError::fail(format!("{v:?}: {e}"))),
            }
        }
        prop_assert_eq!(batch.column(0).len(), values.len());
    }
}
