//! Benchmarks live in benches/.
//!
//! Under `cargo test --doc` this crate also compiles (and runs) the usage snippet of every
//! crate's README.md, so the READMEs published with the crates stay true.

#[cfg(doctest)]
mod readmes {
    #[doc = include_str!("../../crates/etl-core/README.md")]
    struct EtlCore;
    #[doc = include_str!("../../crates/postgres/README.md")]
    struct EtlPostgres;
    #[doc = include_str!("../../crates/source-csv/README.md")]
    struct EtlSourceCsv;
    #[doc = include_str!("../../crates/sink-postgres/README.md")]
    struct EtlSinkPostgres;
    #[doc = include_str!("../../crates/validate/README.md")]
    struct EtlValidate;
    #[doc = include_str!("../../crates/source-postgres/README.md")]
    struct EtlSourcePostgres;
    #[doc = include_str!("../../crates/sink-dynamodb/README.md")]
    struct EtlSinkDynamodb;
    #[doc = include_str!("../../crates/source-bubble/README.md")]
    struct EtlSourceBubble;
    #[doc = include_str!("../../crates/parquet/README.md")]
    struct EtlParquet;
    #[doc = include_str!("../../crates/testkit/README.md")]
    struct EtlTestkit;
}
