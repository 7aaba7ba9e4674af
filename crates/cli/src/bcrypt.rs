//! bcrypt of a password column (`etl_source_bubble::passwords` under other names).

use arrow_schema::DataType;
use arrow_schema::SchemaRef;
use etl_core::{Batch, Transform};
use etl_source_bubble::passwords::PasswordTransform;
use etl_validate::columns::{Cast, Rename};

/// Replaces `column` (plaintext) by `output` (its bcrypt hash at `cost`; kept when it is
/// already a bcrypt hash; NULL when empty or longer than bcrypt's 72 bytes).
pub struct Bcrypt {
    text: Cast,
    before: Rename,
    hash: PasswordTransform,
    after: Rename,
}

impl Bcrypt {
    /// Hash `column` into `output` at `cost`.
    pub fn new(column: &str, output: &str, cost: u32) -> Self {
        Bcrypt {
            // The hasher reads Utf8 (a CSV column is Utf8View).
            text: Cast::new([(column, DataType::Utf8)]),
            before: Rename::new([(column, "password")]),
            hash: PasswordTransform::new(cost),
            after: Rename::new([("password_hash", output)]),
        }
    }
}

impl Transform for Bcrypt {
    fn name(&self) -> &str {
        "bcrypt"
    }

    fn output_schema(&self, input: &SchemaRef) -> etl_core::Result<SchemaRef> {
        let s = self.text.output_schema(input)?;
        let s = self.before.output_schema(&s)?;
        let s = self.hash.output_schema(&s)?;
        self.after.output_schema(&s)
    }

    fn transform(&self, batch: Batch) -> etl_core::Result<Batch> {
        let b = self.text.transform(batch)?;
        let b = self.before.transform(b)?;
        let b = self.hash.transform(b)?;
        self.after.transform(b)
    }
}
