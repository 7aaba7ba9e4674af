//! bcrypt of a password column (`etl_source_bubble::passwords` under other names).

use arrow_schema::SchemaRef;
use etl_core::{Batch, Transform};
use etl_source_bubble::passwords::PasswordTransform;
use etl_validate::columns::Rename;

/// Replaces `column` (plaintext) by `output` (its bcrypt hash at `cost`; kept when it is
/// already a bcrypt hash; NULL when empty or longer than bcrypt's 72 bytes).
pub struct Bcrypt {
    before: Rename,
    hash: PasswordTransform,
    after: Rename,
}

impl Bcrypt {
    /// Hash `column` into `output` at `cost`.
    pub fn new(column: &str, output: &str, cost: u32) -> Self {
        Bcrypt {
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
        let s = self.before.output_schema(input)?;
        let s = self.hash.output_schema(&s)?;
        self.after.output_schema(&s)
    }

    fn transform(&self, batch: Batch) -> etl_core::Result<Batch> {
        let b = self.before.transform(batch)?;
        let b = self.hash.transform(b)?;
        self.after.transform(b)
    }
}
