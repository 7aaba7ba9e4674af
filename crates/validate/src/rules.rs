//! Row-level rules: a failing row is rejected with its reason, the rest go on.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int16Type, Int32Type, Int64Type};
use arrow_array::{Array, ArrayRef};
use arrow_schema::{DataType, SchemaRef};
use etl_core::{Batch, Error, Fate, Result, Stage, Transform};

type StrPredicate = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// One row-level rule on one column.
#[derive(Clone)]
pub enum Rule {
    /// An integer column within `min..=max` (NULLs pass; use [`Rule::Required`] too).
    IntRange {
        /// Column name.
        column: String,
        /// Smallest allowed value.
        min: i64,
        /// Largest allowed value.
        max: i64,
    },
    /// A text column whose value is one of `values` (NULLs pass).
    OneOf {
        /// Column name.
        column: String,
        /// Allowed values, exact and case-sensitive.
        values: Vec<String>,
    },
    /// A column that must be non-NULL and, for text, non-empty.
    Required {
        /// Column name.
        column: String,
    },
    /// A text column whose values must satisfy a predicate (NULLs pass).
    Text {
        /// Column name.
        column: String,
        /// Reject kind when the predicate fails.
        kind: String,
        /// What the rule wants, for the reason text ("a valid e-mail address").
        expected: String,
        /// The predicate.
        check: StrPredicate,
    },
}

impl std::fmt::Debug for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rule::IntRange { column, min, max } => write!(f, "IntRange({column}, {min}..={max})"),
            Rule::OneOf { column, values } => write!(f, "OneOf({column}, {values:?})"),
            Rule::Required { column } => write!(f, "Required({column})"),
            Rule::Text {
                column, expected, ..
            } => write!(f, "Text({column}: {expected})"),
        }
    }
}

impl Rule {
    /// `column` within `min..=max`.
    pub fn int_range(column: &str, min: i64, max: i64) -> Self {
        Rule::IntRange {
            column: column.to_owned(),
            min,
            max,
        }
    }
    /// `column` one of `values`.
    pub fn one_of<I: IntoIterator<Item = S>, S: Into<String>>(column: &str, values: I) -> Self {
        Rule::OneOf {
            column: column.to_owned(),
            values: values.into_iter().map(Into::into).collect(),
        }
    }
    /// `column` present and non-empty.
    pub fn required(column: &str) -> Self {
        Rule::Required {
            column: column.to_owned(),
        }
    }
    /// `column` satisfies `check`.
    pub fn text(
        column: &str,
        kind: &str,
        expected: &str,
        check: impl Fn(&str) -> bool + Send + Sync + 'static,
    ) -> Self {
        Rule::Text {
            column: column.to_owned(),
            kind: kind.to_owned(),
            expected: expected.to_owned(),
            check: Arc::new(check),
        }
    }

    fn column(&self) -> &str {
        match self {
            Rule::IntRange { column, .. }
            | Rule::OneOf { column, .. }
            | Rule::Required { column }
            | Rule::Text { column, .. } => column,
        }
    }

    fn apply(&self, array: &ArrayRef, fates: &mut [Option<Fate>]) -> Result<()> {
        let col = self.column();
        let reject = |kind: &str, reason: String| Fate::Reject {
            column: Some(col.to_owned()),
            kind: kind.to_owned(),
            reason,
        };
        match self {
            Rule::IntRange { min, max, .. } => {
                let get: Box<dyn Fn(usize) -> i64> = match array.data_type() {
                    DataType::Int16 => {
                        let a = array.as_primitive::<Int16Type>().clone();
                        Box::new(move |i| a.value(i) as i64)
                    }
                    DataType::Int32 => {
                        let a = array.as_primitive::<Int32Type>().clone();
                        Box::new(move |i| a.value(i) as i64)
                    }
                    DataType::Int64 => {
                        let a = array.as_primitive::<Int64Type>().clone();
                        Box::new(move |i| a.value(i))
                    }
                    other => return Err(type_error(col, "an integer", other)),
                };
                for (i, fate) in fates.iter_mut().enumerate() {
                    if fate.is_some() || array.is_null(i) {
                        continue;
                    }
                    let v = get(i);
                    if v < *min || v > *max {
                        *fate = Some(reject(
                            "out_of_range",
                            format!("{col} {v} is outside {min}..={max}"),
                        ));
                    }
                }
            }
            Rule::OneOf { values, .. } => {
                for_each_str(array, col, fates, |v| {
                    (!values.iter().any(|x| x == v)).then(|| {
                        reject(
                            "not_allowed",
                            format!("{col} {v:?} is not one of {}", values.join(", ")),
                        )
                    })
                })?;
            }
            Rule::Required { .. } => {
                let is_str = matches!(
                    array.data_type(),
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
                );
                for (i, fate) in fates.iter_mut().enumerate() {
                    if fate.is_some() {
                        continue;
                    }
                    let empty = array.is_null(i)
                        || (is_str && str_at(array, i).is_some_and(|s| s.trim().is_empty()));
                    if empty {
                        *fate = Some(reject(
                            "missing_value",
                            format!("{col} is required but empty"),
                        ));
                    }
                }
            }
            Rule::Text {
                kind,
                expected,
                check,
                ..
            } => {
                for_each_str(array, col, fates, |v| {
                    (!check(v)).then(|| reject(kind, format!("{col} {v:?} is not {expected}")))
                })?;
            }
        }
        Ok(())
    }
}

fn type_error(col: &str, wanted: &str, got: &DataType) -> Error {
    Error::Schema {
        stage: Stage::Transform,
        component: "row_rules".into(),
        detail: format!("rule on `{col}` needs {wanted} column, found {got}"),
    }
}

fn str_at(array: &ArrayRef, i: usize) -> Option<&str> {
    if array.is_null(i) {
        return None;
    }
    Some(match array.data_type() {
        DataType::Utf8 => array.as_string::<i32>().value(i),
        DataType::LargeUtf8 => array.as_string::<i64>().value(i),
        DataType::Utf8View => array.as_string_view().value(i),
        _ => return None,
    })
}

fn for_each_str(
    array: &ArrayRef,
    col: &str,
    fates: &mut [Option<Fate>],
    mut f: impl FnMut(&str) -> Option<Fate>,
) -> Result<()> {
    if !matches!(
        array.data_type(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    ) {
        return Err(type_error(col, "a text", array.data_type()));
    }
    for (i, fate) in fates.iter_mut().enumerate() {
        if fate.is_some() {
            continue;
        }
        if let Some(v) = str_at(array, i) {
            *fate = f(v);
        }
    }
    Ok(())
}

/// A `Transform` that rejects every row breaking one of its rules (the first broken
/// rule gives the reason). The schema is unchanged.
#[derive(Debug, Clone)]
pub struct RowRules {
    rules: Vec<Rule>,
}

impl RowRules {
    /// Rules checked in order.
    pub fn new(rules: Vec<Rule>) -> Self {
        RowRules { rules }
    }
}

impl Transform for RowRules {
    fn name(&self) -> &str {
        "row_rules"
    }

    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef> {
        for r in &self.rules {
            input.index_of(r.column()).map_err(|_| Error::Schema {
                stage: Stage::Transform,
                component: "row_rules".into(),
                detail: format!("no column `{}` for rule {r:?}", r.column()),
            })?;
        }
        Ok(input.clone())
    }

    fn transform(&self, mut batch: Batch) -> Result<Batch> {
        let mut fates = vec![None; batch.num_rows()];
        for r in &self.rules {
            let idx = batch.data.schema().index_of(r.column())?;
            r.apply(batch.data.column(idx), &mut fates)?;
        }
        batch.apply_fates(&fates)?;
        Ok(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Int32Array, RecordBatch, StringArray};
    use arrow_schema::{Field, Schema};

    #[test]
    fn rules_reject_with_reasons_and_keep_the_rest() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("Year", DataType::Int32, true),
            Field::new("Appendix", DataType::Utf8, true),
        ]));
        let data = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int32Array::from(vec![
                    Some(2000),
                    Some(1899),
                    Some(2001),
                    Some(2002),
                    None,
                ])),
                Arc::new(StringArray::from(vec![
                    Some("I"),
                    Some("II"),
                    Some("IV"),
                    Some(""),
                    Some("N"),
                ])),
            ],
        )
        .unwrap();
        let batch = Batch::new("f.csv".into(), data, vec![2, 3, 4, 5, 6]);
        let rules = RowRules::new(vec![
            Rule::int_range("Year", 1975, 2026),
            Rule::one_of("Appendix", ["I", "II", "III", "N"]),
            Rule::required("Year"),
        ]);
        let out = rules.transform(batch).unwrap();
        assert_eq!(out.records, vec![2]);
        let reasons: Vec<(u64, &str, &str)> = out
            .rejects
            .iter()
            .map(|r| (r.record, r.kind.as_str(), r.reason.as_str()))
            .collect();
        assert_eq!(
            reasons,
            vec![
                (3, "out_of_range", "Year 1899 is outside 1975..=2026"),
                (
                    4,
                    "not_allowed",
                    "Appendix \"IV\" is not one of I, II, III, N"
                ),
                (
                    5,
                    "not_allowed",
                    "Appendix \"\" is not one of I, II, III, N"
                ),
                (6, "missing_value", "Year is required but empty"),
            ]
        );
    }
}
