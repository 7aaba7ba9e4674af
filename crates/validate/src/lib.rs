//! # etl-validate
//!
//! Reusable checks for ferry pipelines:
//!
//! * [`RowRules`] — a `Transform` that rejects rows breaking row-level rules (a year out
//!   of range, a code not in a list, an empty required field), each with its reason;
//! * [`lookup::LookupTransform`] — a text column mapped to an id through a reference list
//!   with aliases; unmatched rows filtered with a reason and counted per value;
//! * [`columns`] — rename, drop, cast, default, filter and deterministic UUID ids, the
//!   column transforms of a declarative job;
//! * aggregate gates over the run's totals — [`RejectRate`], [`MatchRate`] — that veto the
//!   commit when the data as a whole is not good enough;
//! * [`sql::SqlChecks`] (feature `postgres`) — checks run in the database after the load:
//!   row counts against the ledger, orphans, duplicates, ranges, NULLs.
//!
//! ```
//! use etl_validate::{Rule, RowRules};
//! let rules = RowRules::new(vec![
//!     Rule::int_range("Year", 1975, 2026),
//!     Rule::one_of("Appendix", ["I", "II", "III", "N"]),
//! ]);
//! ```

#![warn(missing_docs)]

pub mod columns;
mod gates;
pub mod lookup;
mod rules;
#[cfg(feature = "postgres")]
pub mod sql;

pub use gates::{MatchRate, RejectRate};
pub use rules::{RowRules, Rule};
