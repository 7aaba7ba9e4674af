//! The ferry examples: one module per migration, wired from the ferry crates, and the
//! helpers they share. Each binary in `examples/examples/` is a thin `main` over a module
//! here, so integration tests can call the same code.

#![warn(missing_docs)]

pub mod artifact;
pub mod cites;
pub mod common;
pub mod culturebridge;
pub mod partitioning;
pub mod s9;

/// The README's code sample, compiled as a doc test so it stays true.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
