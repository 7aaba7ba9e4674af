//! The ferry examples: one module per migration, wired from the ferry crates, and the
//! helpers they share. Each binary in `examples/examples/` is a thin `main` over a module
//! here, so integration tests can call the same code.

#![warn(missing_docs)]

pub mod common;
pub mod cites;
pub mod s9;
pub mod culturebridge;
pub mod partitioning;
