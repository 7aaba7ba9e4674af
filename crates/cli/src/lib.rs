//! # ferry-cli
//!
//! The `ferry` command: migrations declared in a TOML job file, run by the run layer of
//! `etl-core` (journal, `--resume`, `--rollback`, `--plan`, reports), and the one-liners
//! `ferry guess` and `ferry load`. The library half is what the binary is made of, for a
//! program that runs job files itself:
//!
//! * [`job`] — the job file (every field documented; errors name the line);
//! * [`build`] — a job -> the run layer's steps ([`build::migration`]);
//! * [`dtype`] — type names of the job file <-> Arrow types;
//! * [`pg_source`], [`bubble`], [`dynamo`] — PostgreSQL and Bubble sources, the DynamoDB target.
//!
//! The job file reference is `docs/job-file.md` in the repository.

#![warn(missing_docs)]

pub mod bcrypt;
pub mod bubble;
pub mod build;
pub mod commands;
pub mod dtype;
pub mod dynamo;
pub mod guess;
pub mod job;
pub mod parquet;
pub mod pg_source;
pub mod pgcsv;
