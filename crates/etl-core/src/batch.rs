//! [`Batch`]: a record batch with its provenance, the unit of data that flows between stages.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch};
use arrow_schema::{DataType, TimeUnit};

use crate::{Reject, Result};

/// Counts by reason (`"unmatched species" -> 12`).
pub type Counts = BTreeMap<String, u64>;

/// What happens to a row that does not go on.
#[derive(Debug, Clone, PartialEq)]
pub enum Fate {
    /// The row is bad: it becomes a [`Reject`] with this column, kind and reason.
    Reject {
        /// Column at fault.
        column: Option<String>,
        /// Short code to count by.
        kind: String,
        /// Message for a person.
        reason: String,
    },
    /// The row is dropped on purpose (out of scope); counted under `reason`.
    Filter {
        /// Why it was filtered, e.g. `unmatched species`.
        reason: String,
    },
}

/// A [`RecordBatch`] with the record number of every row and the rows that left the flow.
///
/// The invariant every stage keeps: `read() = data.num_rows() + rejects.len() + filtered`
/// does not change as the batch moves from stage to stage; rows only move from `data` to
/// `rejects` or `filtered`. The runner checks it after every transform.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Unit of work these rows come from.
    pub unit: Arc<str>,
    /// The rows still flowing.
    pub data: RecordBatch,
    /// Record number (CSV line, API position, ...) of each row of `data`.
    pub records: Vec<u64>,
    /// Rows rejected so far.
    pub rejects: Vec<Reject>,
    /// Rows filtered so far, by reason.
    pub filtered: Counts,
    /// Free counters a stage wants in the ledger (`species_matched`, ...).
    pub counters: Counts,
    /// How much of the unit's size hint this batch consumed (bytes of a file, rows of a table).
    pub consumed: u64,
}

impl Batch {
    /// A batch with no rejects, no filtered rows and no counters.
    pub fn new(unit: Arc<str>, data: RecordBatch, records: Vec<u64>) -> Self {
        debug_assert_eq!(data.num_rows(), records.len());
        Batch {
            unit,
            data,
            records,
            rejects: Vec::new(),
            filtered: Counts::new(),
            counters: Counts::new(),
            consumed: 0,
        }
    }

    /// Number of rows still flowing.
    pub fn num_rows(&self) -> usize {
        self.data.num_rows()
    }

    /// Rows filtered in all.
    pub fn filtered_total(&self) -> u64 {
        self.filtered.values().sum()
    }

    /// Input records this batch accounts for: flowing + rejected + filtered.
    pub fn read(&self) -> u64 {
        self.data.num_rows() as u64 + self.rejects.len() as u64 + self.filtered_total()
    }

    /// Add `n` to counter `name` (a zero still creates the counter, so it reports as 0).
    pub fn count(&mut self, name: &str, n: u64) {
        *self.counters.entry(name.to_owned()).or_default() += n;
    }

    /// Remove the rows whose fate is `Some`, turning them into rejects or filtered counts.
    ///
    /// `fates` is aligned with the rows of `data`. Raw text of a rejected row is the row
    /// rendered as CSV (see [`render_row`]).
    pub fn apply_fates(&mut self, fates: &[Option<Fate>]) -> Result<()> {
        assert_eq!(fates.len(), self.data.num_rows(), "one fate per row");
        if fates.iter().all(Option::is_none) {
            return Ok(());
        }
        for (row, fate) in fates.iter().enumerate() {
            match fate {
                None => {}
                Some(Fate::Filter { reason }) => {
                    *self.filtered.entry(reason.clone()).or_default() += 1;
                }
                Some(Fate::Reject {
                    column,
                    kind,
                    reason,
                }) => self.rejects.push(Reject {
                    unit: self.unit.clone(),
                    record: self.records[row],
                    column: column.clone(),
                    kind: kind.clone(),
                    reason: reason.clone(),
                    raw: render_row(&self.data, row),
                }),
            }
        }
        let keep: BooleanArray = fates.iter().map(|f| Some(f.is_none())).collect();
        self.data = arrow_select::filter::filter_record_batch(&self.data, &keep)?;
        self.records = self
            .records
            .iter()
            .zip(fates)
            .filter(|(_, f)| f.is_none())
            .map(|(r, _)| *r)
            .collect();
        Ok(())
    }
}

/// Render one row as a CSV line (no trailing newline); nulls are empty fields.
pub fn render_row(batch: &RecordBatch, row: usize) -> String {
    let mut out = String::new();
    for (i, col) in batch.columns().iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let value = render_value(col, row);
        crate::reject::write_csv_field(&mut out, &value);
    }
    out
}

/// Render one value for people (rejects, reports); nulls are empty.
pub fn render_value(array: &ArrayRef, row: usize) -> String {
    if array.is_null(row) {
        return String::new();
    }
    let mut s = String::new();
    match array.data_type() {
        DataType::Utf8 => s.push_str(array.as_string::<i32>().value(row)),
        DataType::LargeUtf8 => s.push_str(array.as_string::<i64>().value(row)),
        DataType::Utf8View => s.push_str(array.as_string_view().value(row)),
        DataType::Boolean => {
            let _ = write!(s, "{}", array.as_boolean().value(row));
        }
        DataType::Int8 => {
            let _ = write!(s, "{}", array.as_primitive::<Int8Type>().value(row));
        }
        DataType::Int16 => {
            let _ = write!(s, "{}", array.as_primitive::<Int16Type>().value(row));
        }
        DataType::Int32 => {
            let _ = write!(s, "{}", array.as_primitive::<Int32Type>().value(row));
        }
        DataType::Int64 => {
            let _ = write!(s, "{}", array.as_primitive::<Int64Type>().value(row));
        }
        DataType::UInt64 => {
            let _ = write!(s, "{}", array.as_primitive::<UInt64Type>().value(row));
        }
        DataType::Float32 => {
            let _ = write!(s, "{}", array.as_primitive::<Float32Type>().value(row));
        }
        DataType::Float64 => {
            let _ = write!(s, "{}", array.as_primitive::<Float64Type>().value(row));
        }
        DataType::Decimal128(_, scale) => {
            let v = array.as_primitive::<Decimal128Type>().value(row);
            s.push_str(&format_decimal(v, *scale));
        }
        DataType::Date32 => {
            let days = array.as_primitive::<Date32Type>().value(row);
            let d = chrono::NaiveDate::from_num_days_from_ce_opt(days + 719_163);
            let _ = write!(s, "{}", d.map(|d| d.to_string()).unwrap_or_default());
        }
        DataType::Timestamp(unit, _) => {
            let v = match unit {
                TimeUnit::Second => {
                    array.as_primitive::<TimestampSecondType>().value(row) * 1_000_000
                }
                TimeUnit::Millisecond => {
                    array.as_primitive::<TimestampMillisecondType>().value(row) * 1_000
                }
                TimeUnit::Microsecond => {
                    array.as_primitive::<TimestampMicrosecondType>().value(row)
                }
                TimeUnit::Nanosecond => {
                    array.as_primitive::<TimestampNanosecondType>().value(row) / 1_000
                }
            };
            if let Some(t) = chrono::DateTime::from_timestamp_micros(v) {
                let _ = write!(s, "{}", t.naive_utc());
            }
        }
        other => {
            let _ = write!(s, "<{other}>");
        }
    }
    s
}

/// Format a scaled decimal (`12345`, scale 2 -> `123.45`), without trailing fractional zeros.
pub fn format_decimal(value: i128, scale: i8) -> String {
    if scale <= 0 {
        let mut s = value.to_string();
        if value == 0 {
            return s;
        }
        for _ in 0..(-scale) {
            s.push('0');
        }
        return s;
    }
    let neg = value < 0;
    let abs = value.unsigned_abs();
    let pow = 10u128.pow(scale as u32);
    let int = abs / pow;
    let mut frac = abs % pow;
    let mut digits = scale as usize;
    while digits > 0 && frac.is_multiple_of(10) {
        frac /= 10;
        digits -= 1;
    }
    let mut s = String::new();
    if neg {
        s.push('-');
    }
    let _ = write!(s, "{int}");
    if digits > 0 {
        let _ = write!(s, ".{frac:0digits$}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Int64Array, StringArray};
    use arrow_schema::{Field, Schema};

    fn batch() -> Batch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]));
        let data = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![1, 2, 3])),
                Arc::new(StringArray::from(vec![Some("a"), None, Some("c,d")])),
            ],
        )
        .unwrap();
        Batch::new("u".into(), data, vec![2, 3, 5])
    }

    #[test]
    fn fates_move_rows_and_keep_the_count() {
        let mut b = batch();
        assert_eq!(b.read(), 3);
        b.apply_fates(&[
            None,
            Some(Fate::Filter {
                reason: "out of scope".into(),
            }),
            Some(Fate::Reject {
                column: Some("name".into()),
                kind: "bad".into(),
                reason: "bad name".into(),
            }),
        ])
        .unwrap();
        assert_eq!(b.read(), 3);
        assert_eq!(b.num_rows(), 1);
        assert_eq!(b.records, vec![2]);
        assert_eq!(b.filtered["out of scope"], 1);
        assert_eq!(b.rejects[0].record, 5);
        assert_eq!(b.rejects[0].raw, "3,\"c,d\"");
    }

    #[test]
    fn decimals_format_without_trailing_zeros() {
        assert_eq!(format_decimal(12_345, 2), "123.45");
        assert_eq!(format_decimal(-5, 3), "-0.005");
        assert_eq!(format_decimal(1_000, 2), "10");
        assert_eq!(format_decimal(7, -2), "700");
        assert_eq!(format_decimal(0, -3), "0");
    }
}
