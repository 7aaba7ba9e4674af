//! Fingerprints of the files one step writes and another reads (an export, a transformed
//! Parquet file), so that `--resume` only continues over the very bytes the unfinished
//! run used: now [`etl_parquet::Fingerprint`].

pub use etl_parquet::Fingerprint;
