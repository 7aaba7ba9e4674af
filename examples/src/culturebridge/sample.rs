//! The post-load check: a random sample of staged things of every migrated type, compared
//! column by column with what the API says now.
//!
//! For each type, `n` random staged rows are picked (with their Bubble ids), each thing is
//! fetched again, decoded and mapped by the same [`mapping`] the load uses
//! ([`sample::fetch_mapped`]), and compared column by column with the staged row
//! ([`compare::diff_rows`]), except the columns in [`NOT_FROM_API`].
//!
//! The mapping runs with its own [`Ctx`], built the way the run builds its own
//! (`prepare_ctx`: ids committed earlier, who keeps each e-mail) plus every id staged by
//! this run as an accepted parent, and with an error log that writes nothing: the check
//! neither logs rejects nor moves the run's high-water mark.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use etl_core::Finding;
use etl_sink_postgres::compare;
use etl_sink_postgres::ident::TableName;
use etl_source_bubble::mapping::RejectLog;
pub use etl_source_bubble::sample::{self, Mismatch, SampleReport};
use etl_source_bubble::{BubbleClient, TypeSchema};
use sqlx::PgPool;
use uuid::Uuid;

use super::schema::{MIGRATED, table_of};
use super::transform::{Ctx, mapping, new_id};

/// `(table, column)` of the target columns no API field feeds, which the sample check
/// therefore does not compare: a user's password hash comes from the old system's CSV
/// (`--users-csv`) or is empty, and whether a reset is required follows from that.
pub const NOT_FROM_API: [(&str, &str); 2] = [
    ("users", "password_hash"),
    ("users", "password_reset_required"),
];

/// Requests in flight at once while fetching the sample (the client's rate limit still
/// holds).
const CONCURRENCY: usize = 8;

/// Compare up to `n` random staged things of every migrated type with the API, column by
/// column, and return the findings (`sample_matches_api`, `ids_deterministic`); nothing
/// when `n` is 0.
///
/// `schemas` are the run's declared schemas, `export_dir` its export (read for who keeps
/// each e-mail, as the run does). Staging (`cb_staging`) must hold the run's rows.
///
/// # Errors
/// A database or API error (after the client's retries).
pub async fn sample_check(
    client: &BubbleClient,
    pool: &PgPool,
    schemas: &HashMap<String, TypeSchema>,
    export_dir: &Path,
    n: usize,
) -> anyhow::Result<Vec<Finding>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let report = compare_sample(client, pool, schemas, export_dir, n).await?;
    Ok(report.findings(&NOT_FROM_API))
}

/// The comparison behind [`sample_check`], as data.
///
/// # Errors
/// As [`sample_check`].
pub async fn compare_sample(
    client: &BubbleClient,
    pool: &PgPool,
    schemas: &HashMap<String, TypeSchema>,
    export_dir: &Path,
    n: usize,
) -> anyhow::Result<SampleReport> {
    let ctx = Arc::new(Ctx::new(RejectLog::discard()));
    super::prepare_ctx(&ctx, pool, export_dir, true).await?;
    let mut report = SampleReport::default();
    let mut mapped = Vec::new();
    for ty in MIGRATED {
        let table = TableName::qualified("cb_staging", table_of(ty));
        let keys = compare::random_keys(pool, &table, "bubble_id", n).await?;
        let picked: Vec<(String, Uuid)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT bubble_id, id FROM {} WHERE bubble_id = ANY($1) ORDER BY bubble_id",
            table.sql()
        )))
        .bind(&keys)
        .fetch_all(pool)
        .await
        .with_context(|| format!("cannot sample {table}"))?;
        for (b, id) in &picked {
            if *id != new_id(ty, b) {
                report.bad_ids.push(format!("{ty} {b} -> {id}"));
            }
        }
        let spec = schemas
            .get(ty)
            .with_context(|| format!("no schema for `{ty}`"))?;
        let spec = Arc::new(spec.clone());
        let map = mapping(spec.clone(), ctx.clone());
        let ids = picked.into_iter().map(|p| p.0).collect();
        let problems = &mut report.problems;
        let data = sample::fetch_mapped(client, spec, ids, &map, CONCURRENCY, problems)
            .await
            .map_err(anyhow::Error::from_boxed)?;
        if let Some(data) = data {
            mapped.push((ty, table, data));
        }
    }
    // the API-derived rows compared with the staged rows in SQL, in one transaction
    let mut tx = pool.begin().await?;
    let mut compared: HashMap<&str, u64> = HashMap::new();
    for (ty, table, data) in &mapped {
        let skip = NOT_FROM_API.iter().filter(|(t, _)| *t == table.name);
        let skip: Vec<&str> = skip.map(|(_, c)| *c).collect();
        let (n, diffs) = compare::diff_rows(&mut tx, table, "bubble_id", data, &skip)
            .await
            .with_context(|| format!("cannot compare the {ty} sample"))?;
        compared.insert(ty, n);
        report
            .mismatches
            .extend(diffs.into_iter().map(|d| Mismatch {
                bubble_type: (*ty).to_owned(),
                bubble_id: d.key,
                column: d.column,
                staged: d.staged,
                api: d.fresh,
            }));
    }
    tx.rollback().await?;
    report.compared = MIGRATED
        .iter()
        .map(|ty| ((*ty).to_owned(), compared.get(ty).copied().unwrap_or(0)))
        .collect();
    Ok(report)
}
