//! Passwords for a migration off Bubble: the Data API never returns them, so a migration
//! that keeps its users' logins reads them from the old system's export (a CSV with a
//! `password` column) and hashes them here before any other stage sees the batch, so
//! plaintext reaches no reject, log, report or export: plaintext is hashed with bcrypt
//! (configurable cost) across all cores, an existing bcrypt hash is kept, an empty one or
//! one longer than bcrypt's 72 bytes becomes null (a reset is required; never truncated).

use std::sync::Arc;

use arrow_array::builder::StringBuilder;
use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use etl_core::{Batch, Transform};

/// Column holding plaintext passwords (or bcrypt hashes) in the input.
pub const PASSWORD: &str = "password";
/// Column that replaces it.
pub const PASSWORD_HASH: &str = "password_hash";

/// Whether `s` already is a bcrypt hash (`$2a$`, `$2b$`, `$2y$`, 60 characters).
pub fn is_bcrypt_hash(s: &str) -> bool {
    s.len() == 60 && (s.starts_with("$2a$") || s.starts_with("$2b$") || s.starts_with("$2y$"))
}

/// The shape of the old system's export of a type's things: the type's raw (export)
/// columns and [`PASSWORD`], all text.
pub fn with_password(spec: &crate::TypeSchema) -> SchemaRef {
    let raw = spec.raw_schema();
    let mut fields: Vec<Field> = raw.fields().iter().map(|f| (**f).clone()).collect();
    fields.push(Field::new(PASSWORD, DataType::Utf8, true));
    Arc::new(Schema::new(fields))
}

/// Replaces `password` by `password_hash`: bcrypt at `cost` for plaintext (on all cores),
/// kept as is for existing bcrypt hashes, null (reset required) when empty or longer than
/// bcrypt's 72 bytes (never truncated).
pub struct PasswordTransform {
    cost: u32,
}

impl PasswordTransform {
    /// Hash at `cost` (12 in production; 4 in tests).
    pub fn new(cost: u32) -> Self {
        PasswordTransform { cost }
    }
}

enum Outcome {
    None,
    Kept(String),
    Hashed(String),
    TooLong,
}

/// Hash `passwords` on all cores (scoped threads; the runner already calls transforms on
/// the blocking pool).
fn hash_all(passwords: &[Option<&str>], cost: u32) -> etl_core::Result<Vec<Outcome>> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(passwords.len().max(1));
    let chunk = passwords.len().div_ceil(threads).max(1);
    let mut out: Vec<Outcome> = Vec::with_capacity(passwords.len());
    let results: Vec<etl_core::Result<Vec<Outcome>>> = std::thread::scope(|s| {
        let handles: Vec<_> = passwords
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|p| match p {
                            None => Ok(Outcome::None),
                            Some("") => Ok(Outcome::None),
                            Some(p) if is_bcrypt_hash(p) => Ok(Outcome::Kept((*p).to_owned())),
                            Some(p) => match bcrypt::non_truncating_hash(p, cost) {
                                Ok(h) => Ok(Outcome::Hashed(h)),
                                Err(bcrypt::BcryptError::Truncation(_)) => Ok(Outcome::TooLong),
                                Err(e) => Err(etl_core::Error::component(
                                    etl_core::Stage::Transform,
                                    "bcrypt",
                                    false,
                                    format!("bcrypt failed (cost {cost}): {e}"),
                                )),
                            },
                        })
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("bcrypt thread"))
            .collect()
    });
    for r in results {
        out.extend(r?);
    }
    Ok(out)
}

impl Transform for PasswordTransform {
    fn name(&self) -> &str {
        "bcrypt_passwords"
    }

    fn output_schema(&self, input: &SchemaRef) -> etl_core::Result<SchemaRef> {
        Ok(Arc::new(Schema::new(
            input
                .fields()
                .iter()
                .map(|f| {
                    if f.name() == PASSWORD {
                        Arc::new(Field::new(PASSWORD_HASH, DataType::Utf8, true))
                    } else {
                        f.clone()
                    }
                })
                .collect::<Vec<_>>(),
        )))
    }

    fn transform(&self, mut batch: Batch) -> etl_core::Result<Batch> {
        let schema = batch.data.schema();
        let Some(idx) = schema.index_of(PASSWORD).ok() else {
            return Ok(batch);
        };
        let col = batch.data.column(idx).as_string::<i32>();
        let pw: Vec<Option<&str>> = (0..col.len())
            .map(|i| col.is_valid(i).then(|| col.value(i)))
            .collect();
        let outcomes = hash_all(&pw, self.cost)?;
        let mut b = StringBuilder::new();
        let (mut hashed, mut kept, mut long) = (0, 0, 0);
        for o in outcomes {
            match o {
                Outcome::None => b.append_null(),
                Outcome::TooLong => {
                    long += 1;
                    b.append_null();
                }
                Outcome::Kept(h) => {
                    kept += 1;
                    b.append_value(h);
                }
                Outcome::Hashed(h) => {
                    hashed += 1;
                    b.append_value(h);
                }
            }
        }
        let mut columns: Vec<ArrayRef> = batch.data.columns().to_vec();
        columns[idx] = Arc::new(b.finish());
        batch.data = RecordBatch::try_new(self.output_schema(&schema)?, columns)?;
        batch.count("passwords_hashed", hashed);
        batch.count("password_hashes_kept", kept);
        batch.count("password_too_long_reset", long);
        Ok(batch)
    }
}

/// Hashes per second at `cost` on `threads` threads for `n` passwords (for the figures).
pub fn bcrypt_rate(cost: u32, threads: usize, n: usize) -> f64 {
    let pw: Vec<String> = (0..n)
        .map(|i| format!("correct horse battery {i}"))
        .collect();
    let t0 = std::time::Instant::now();
    std::thread::scope(|s| {
        for part in pw.chunks(n.div_ceil(threads.max(1)).max(1)) {
            s.spawn(move || {
                for p in part {
                    let _ = bcrypt::non_truncating_hash(p, cost);
                }
            });
        }
    });
    n as f64 / t0.elapsed().as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::StringArray;

    #[test]
    fn the_old_systems_export_has_the_raw_columns_and_a_password() {
        let spec = crate::TypeSchema::new("user", crate::KeyMode::DisplayNames)
            .field(crate::FieldSpec::new("active", crate::FieldKind::Bool));
        let s = with_password(&spec);
        let names: Vec<&str> = s.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(
            names,
            ["_id", "created_date", "modified_date", "active", "password"]
        );
        assert!(s.fields().iter().all(|f| f.data_type() == &DataType::Utf8));
    }

    #[test]
    fn plaintext_is_hashed_hashes_are_kept_and_too_long_is_reset() {
        let kept = bcrypt::hash("kept", 4).unwrap();
        let long = "x".repeat(80);
        let col = StringArray::from(vec![
            Some("secret"),
            Some(kept.as_str()),
            Some(""),
            None,
            Some(long.as_str()),
        ]);
        let schema = Arc::new(Schema::new(vec![Field::new(
            PASSWORD,
            DataType::Utf8,
            true,
        )]));
        let data = RecordBatch::try_new(schema, vec![Arc::new(col) as ArrayRef]).unwrap();
        let out = PasswordTransform::new(4)
            .transform(Batch::new("u".into(), data, (1..=5).collect()))
            .unwrap();
        let h = out
            .data
            .column_by_name(PASSWORD_HASH)
            .unwrap()
            .as_string::<i32>();
        assert!(bcrypt::verify("secret", h.value(0)).unwrap());
        assert_eq!(h.value(1), kept);
        assert!(h.is_null(2) && h.is_null(3) && h.is_null(4));
        let c = &out.counters;
        assert_eq!(
            (
                c["passwords_hashed"],
                c["password_hashes_kept"],
                c["password_too_long_reset"]
            ),
            (1, 1, 1)
        );
    }
}
