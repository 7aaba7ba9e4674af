//! The CITES trade migrations (seeds 000 and 001).

/// Deterministic generator of CITES trade bulk CSV files (`gen` is a reserved keyword in
/// edition 2024, hence the raw identifier).
pub mod r#gen;
