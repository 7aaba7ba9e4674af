//! The post-load check: a random sample of staged things of every migrated type, compared
//! column by column with what the API says now.
//!
//! For each type, `n` random staged rows are picked (with their Bubble ids), each thing is
//! fetched with `GET /obj/<type>/<id>`, decoded into a raw batch by the same
//! [`RecordDecoder`] the export uses, mapped by the same [`mapping`] the load uses, and
//! compared column by column with the staged row ([`compare::diff_rows`]), except the
//! columns in [`NOT_FROM_API`].
//!
//! The mapping runs with its own [`Ctx`], built the way the run builds its own
//! (`prepare_ctx`: ids committed earlier, who keeps each e-mail) plus every id staged by
//! this run as an accepted parent, and with an error log that writes nothing: the check
//! neither logs rejects nor moves the run's high-water mark.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use etl_core::{Finding, Transform as _};
use etl_sink_postgres::compare;
use etl_sink_postgres::ident::TableName;
use etl_source_bubble::mapping::RejectLog;
use etl_source_bubble::{BubbleClient, RecordDecoder, TypeSchema};
use futures::StreamExt as _;
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

/// Longest value shown in a finding (longer ones are cut, with `…`).
const SHOW_CHARS: usize = 200;

/// One column of one thing in which the staged row and the API-derived row differ.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Mismatch {
    /// Bubble type (`coach_profile`).
    pub bubble_type: String,
    /// Bubble `_id` of the thing.
    pub bubble_id: String,
    /// Target column (`hourly_rate`).
    pub column: String,
    /// The staged value as PostgreSQL prints it (`None`: NULL).
    pub staged: Option<String>,
    /// The value the mapping derives from the API's thing now (`None`: NULL).
    pub api: Option<String>,
}

fn show(v: Option<&str>) -> String {
    match v {
        None => "NULL".to_owned(),
        Some(s) if s.chars().count() > SHOW_CHARS => {
            format!("{}…", s.chars().take(SHOW_CHARS).collect::<String>())
        }
        Some(s) => s.to_owned(),
    }
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {} staged {} vs API-derived {}",
            self.bubble_type,
            self.bubble_id,
            self.column,
            show(self.staged.as_deref()),
            show(self.api.as_deref())
        )
    }
}

/// What the sample check found.
#[derive(Debug, Clone, Default)]
pub struct SampleReport {
    /// Things compared column by column, per migrated type, in dependency order.
    pub compared: Vec<(String, u64)>,
    /// Every column in which a compared thing differs.
    pub mismatches: Vec<Mismatch>,
    /// Sampled things that could not be compared: gone from the API, or their mapping now
    /// rejects them (with the reason).
    pub problems: Vec<String>,
    /// Sampled things whose staged id is not the UUIDv5 of their Bubble id.
    pub bad_ids: Vec<String>,
}

impl SampleReport {
    /// Things compared, in all.
    pub fn total(&self) -> u64 {
        self.compared.iter().map(|c| c.1).sum()
    }

    fn per_type(&self) -> String {
        self.compared
            .iter()
            .map(|(t, n)| format!("{t} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `sample_matches_api` (vetoes on any difference) and `ids_deterministic`.
    pub fn findings(&self) -> Vec<Finding> {
        let skipped: Vec<String> = NOT_FROM_API
            .iter()
            .map(|(t, c)| format!("{t}.{c}"))
            .collect();
        let ok = self.mismatches.is_empty() && self.problems.is_empty();
        let message = if ok {
            format!(
                "{} random staged things identical to the API in every column mapped from it ({}; not from the API, not compared: {})",
                self.total(),
                self.per_type(),
                skipped.join(", ")
            )
        } else {
            let mut items: Vec<String> = self.problems.clone();
            items.extend(self.mismatches.iter().map(ToString::to_string));
            format!(
                "{} differences from the API in {} random staged things compared ({}): {}",
                self.mismatches.len() + self.problems.len(),
                self.total(),
                self.per_type(),
                items.join("; ")
            )
        };
        vec![
            Finding::check("sample_matches_api", ok, message),
            Finding::check(
                "ids_deterministic",
                self.bad_ids.is_empty(),
                if self.bad_ids.is_empty() {
                    "new ids are UUIDv5 of the Bubble _id (every sampled thing)".to_owned()
                } else {
                    format!(
                        "staged ids that are not the UUIDv5 of their Bubble _id: {}",
                        self.bad_ids.join(", ")
                    )
                },
            ),
        ]
    }
}

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
    Ok(compare_sample(client, pool, schemas, export_dir, n)
        .await?
        .findings())
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
        let fetched: Vec<(String, _)> = futures::stream::iter(picked.into_iter().map(|p| p.0))
            .map(|b| async move {
                let thing = client.get_thing(ty, &b).await;
                (b, thing)
            })
            .buffered(CONCURRENCY)
            .collect()
            .await;
        let spec = Arc::new(
            schemas
                .get(ty)
                .with_context(|| format!("no schema for `{ty}`"))?
                .clone(),
        );
        let mut dec = RecordDecoder::new(spec.clone(), format!("sample:{ty}").into(), true);
        let mut ids = Vec::new();
        for (b, thing) in fetched {
            match thing.with_context(|| format!("cannot fetch {ty} {b} for the sample check"))? {
                None => report
                    .problems
                    .push(format!("{ty} {b}: staged, but no longer exists in Bubble")),
                Some(t) => {
                    ids.push(b);
                    dec.push_json(ids.len() as u64, &t);
                }
            }
        }
        let Some(raw) = dec.flush()? else {
            continue;
        };
        let out = mapping(spec, ctx.clone()).transform(raw)?;
        for r in &out.rejects {
            let b = usize::try_from(r.record)
                .ok()
                .and_then(|i| ids.get(i.wrapping_sub(1)))
                .map_or("?", String::as_str);
            let column = r
                .column
                .as_deref()
                .map(|c| format!("{c}: "))
                .unwrap_or_default();
            report.problems.push(format!(
                "{ty} {b}: staged, but the mapping now rejects the API's thing ({column}{})",
                r.reason
            ));
        }
        mapped.push((ty, table, out.data));
    }
    // the API-derived rows compared with the staged rows in SQL, in one transaction
    let mut tx = pool.begin().await?;
    let mut compared: HashMap<&str, u64> = HashMap::new();
    for (ty, table, data) in &mapped {
        let skip: Vec<&str> = NOT_FROM_API
            .iter()
            .filter(|(t, _)| *t == table.name)
            .map(|(_, c)| *c)
            .collect();
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
