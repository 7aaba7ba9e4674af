//! # etl-postgres
//!
//! What ferry's PostgreSQL source, sink and checks share:
//!
//! * [`ident`]: identifiers and literals always quoted ([`ident::TableName`],
//!   [`ident::quote_ident`], [`ident::quote_literal`]) and the [`sqlf!`] macro for SQL whose
//!   dynamic parts are quoted;
//! * [`types`]: the ONE Arrow <-> PostgreSQL type map ([`types::PgType`]) used by the
//!   source (what a column reads as) and the sink (what an Arrow type is written as);
//! * [`catalog`]: catalog helpers (columns of a table, existence, exact row counts, the
//!   views that depend on a table, the `lock_timeout` preamble);
//! * [`connect`]: connect options with ferry's defaults ([`connect_options`]) and the
//!   optional settings ([`ConnectSettings`]: statement timeout, server-side keepalives,
//!   connect timeout).
//!
//! Text codecs that need no database (decimal text) live in `etl_core::codec`, so crates
//! without PostgreSQL use them too.
//!
//! ```no_run
//! use etl_postgres::{connect_options, catalog, ident::TableName};
//! use sqlx::{ConnectOptions, Connection};
//! # async fn demo(url: &str) -> sqlx::Result<()> {
//! let mut conn = connect_options(url)?.connect().await?;
//! if catalog::exists(&mut conn, &TableName::new("cities")).await? {
//!     let n = catalog::count_rows(&mut conn, &TableName::new("cities")).await?;
//!     println!("{n} rows");
//! }
//! # conn.close().await }
//! ```

#![warn(missing_docs)]

/// `format!` for SQL whose dynamic parts are quoted identifiers or literals (see
/// [`ident`]): the result is a [`sqlx::AssertSqlSafe`] string ready for `sqlx::query`.
///
/// ```
/// use etl_postgres::{ident::TableName, sqlf};
/// let t = TableName::new("cities");
/// let q = sqlf!("SELECT count(*) FROM {}", t.sql());
/// assert_eq!(q.0, r#"SELECT count(*) FROM "cities""#);
/// ```
#[macro_export]
macro_rules! sqlf {
    ($($t:tt)*) => { $crate::sqlx::AssertSqlSafe(format!($($t)*)) };
}

pub mod catalog;
pub mod connect;
pub mod ident;
pub mod types;

pub use connect::{ConnectSettings, connect_options};
pub use sqlx;
