//! The run ledger in PostgreSQL: runs, per-unit checkpoints and rejects.
//!
//! A unit's checkpoint row is written in the same transaction as its data, so after a
//! crash a unit is either fully loaded and recorded, or absent from both.

use chrono::{DateTime, Utc};
use etl_core::{Counts, RunTotals, UnitStatus, UnitSummary};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::Result;
use crate::ident::{TableName, quote_ident};

/// Names of the ledger tables.
#[derive(Debug, Clone)]
pub struct LedgerTables {
    /// One row per run (`ferry_runs`).
    pub runs: TableName,
    /// One row per unit and run (`ferry_migration_log`; the CITES example uses the seed's
    /// `cites_migration_log`).
    pub units: TableName,
    /// One row per rejected record (`ferry_import_errors`; CITES: `cites_trade_import_errors`).
    pub rejects: TableName,
}

impl Default for LedgerTables {
    fn default() -> Self {
        LedgerTables {
            runs: TableName::new("ferry_runs"),
            units: TableName::new("ferry_migration_log"),
            rejects: TableName::new("ferry_import_errors"),
        }
    }
}

type UnitRow = (
    String,
    Option<i32>,
    Option<i32>,
    Option<i32>,
    Option<i64>,
    Option<serde_json::Value>,
    Option<chrono::NaiveDateTime>,
    Option<chrono::NaiveDateTime>,
);

/// A run as the ledger knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    /// Run id.
    pub run_id: Uuid,
    /// Migration name.
    pub migration: String,
    /// `loading`, `loaded`, `validated`, `failed`, `switched`, `rolled_back`.
    pub status: String,
    /// Start.
    pub started_at: DateTime<Utc>,
}

impl LedgerTables {
    /// Create the tables if missing; add ferry's columns to tables created from the seed's
    /// DDL (`cites_migration_log`, `cites_trade_import_errors`).
    pub async fn ensure(&self, conn: &mut PgConnection) -> Result<()> {
        let runs = self.runs.sql();
        let units = self.units.sql();
        let rejects = self.rejects.sql();
        let stmts = [
            format!(
                "CREATE TABLE IF NOT EXISTS {runs} (
                    run_id uuid PRIMARY KEY,
                    migration text NOT NULL,
                    status text NOT NULL,
                    started_at timestamptz NOT NULL DEFAULT now(),
                    finished_at timestamptz,
                    details jsonb NOT NULL DEFAULT '{{}}'::jsonb)"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {units} (
                    id uuid DEFAULT gen_random_uuid() PRIMARY KEY,
                    file_name varchar(255),
                    records_processed integer,
                    records_inserted integer,
                    records_updated integer,
                    records_failed integer,
                    species_matched integer,
                    species_unmatched integer,
                    start_time timestamp,
                    end_time timestamp,
                    status varchar(50),
                    error_message text,
                    created_at timestamp DEFAULT now())"
            ),
            format!("ALTER TABLE {units} ADD COLUMN IF NOT EXISTS run_id uuid"),
            format!("ALTER TABLE {units} ADD COLUMN IF NOT EXISTS migration text"),
            format!("ALTER TABLE {units} ADD COLUMN IF NOT EXISTS records_filtered bigint"),
            format!("ALTER TABLE {units} ADD COLUMN IF NOT EXISTS details jsonb"),
            format!(
                "CREATE UNIQUE INDEX IF NOT EXISTS {} ON {units} (run_id, file_name)",
                quote_ident(&crate::ident::fit_name(&self.units.name, "_run_unit"))
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {rejects} (
                    id uuid DEFAULT gen_random_uuid() PRIMARY KEY,
                    file_name varchar(255),
                    line_number integer,
                    raw_data text,
                    error_message text,
                    created_at timestamp DEFAULT now())"
            ),
            format!("ALTER TABLE {rejects} ADD COLUMN IF NOT EXISTS run_id uuid"),
            format!("ALTER TABLE {rejects} ADD COLUMN IF NOT EXISTS column_name text"),
            format!("ALTER TABLE {rejects} ADD COLUMN IF NOT EXISTS error_kind text"),
            format!(
                "CREATE INDEX IF NOT EXISTS {} ON {rejects} (run_id, file_name)",
                quote_ident(&crate::ident::fit_name(&self.rejects.name, "_run_unit"))
            ),
        ];
        for s in stmts {
            sqlx::query(sqlx::AssertSqlSafe(s))
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }

    /// Start (or, when resuming, re-open) a run.
    pub async fn start_run(
        &self,
        conn: &mut PgConnection,
        run_id: Uuid,
        migration: &str,
        details: &serde_json::Value,
    ) -> Result<()> {
        sqlx::query(sqlf!(
            "INSERT INTO {} (run_id, migration, status, details) VALUES ($1, $2, 'loading', $3)
             ON CONFLICT (run_id) DO UPDATE SET status = 'loading', finished_at = NULL",
            self.runs.sql()
        ))
        .bind(run_id)
        .bind(migration)
        .bind(details)
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Set a run's status (`loaded`, `validated`, `failed`, `switched`, `rolled_back`).
    pub async fn set_status(
        &self,
        conn: &mut PgConnection,
        run_id: Uuid,
        status: &str,
    ) -> Result<()> {
        sqlx::query(sqlf!(
            "UPDATE {} SET status = $2, finished_at = CASE WHEN $2 IN ('loading') THEN NULL ELSE now() END WHERE run_id = $1",
            self.runs.sql()
        ))
        .bind(run_id)
        .bind(status)
        .execute(conn)
        .await?;
        Ok(())
    }

    /// The newest run of `migration`, if any.
    pub async fn last_run(
        &self,
        conn: &mut PgConnection,
        migration: &str,
    ) -> Result<Option<RunRecord>> {
        let row: Option<(Uuid, String, String, DateTime<Utc>)> = sqlx::query_as(sqlf!(
            "SELECT run_id, migration, status, started_at FROM {} WHERE migration = $1
             ORDER BY started_at DESC, run_id DESC LIMIT 1",
            self.runs.sql()
        ))
        .bind(migration)
        .fetch_optional(conn)
        .await?;
        Ok(
            row.map(|(run_id, migration, status, started_at)| RunRecord {
                run_id,
                migration,
                status,
                started_at,
            }),
        )
    }

    /// Whether `unit` of `run_id` committed (its ledger row is written in the unit's own
    /// transaction, so this is the unit's commit outcome).
    pub async fn unit_completed(
        &self,
        conn: &mut PgConnection,
        run_id: Uuid,
        unit: &str,
    ) -> Result<bool> {
        Ok(sqlx::query_scalar(sqlf!(
            "SELECT EXISTS (SELECT 1 FROM {} WHERE run_id = $1 AND file_name = $2 AND status = 'completed')",
            self.units.sql()
        ))
        .bind(run_id)
        .bind(unit)
        .fetch_one(conn)
        .await?)
    }

    /// The units of `run_id` that committed, with their counts (what a resume skips).
    pub async fn completed_units(
        &self,
        conn: &mut PgConnection,
        run_id: Uuid,
    ) -> Result<Vec<UnitSummary>> {
        let rows: Vec<UnitRow> =
            sqlx::query_as(sqlf!(
                "SELECT file_name, records_processed, records_inserted, records_failed, records_filtered, details, start_time, end_time
                   FROM {} WHERE run_id = $1 AND status = 'completed' ORDER BY start_time",
                self.units.sql()
            ))
            .bind(run_id)
            .fetch_all(conn)
            .await?;
        Ok(rows
            .into_iter()
            .map(
                |(name, read, loaded, failed, filtered, details, start, end)| {
                    let mut u = UnitSummary::new(name);
                    u.read = read.unwrap_or(0) as u64;
                    u.loaded = loaded.unwrap_or(0) as u64;
                    u.rejected = failed.unwrap_or(0) as u64;
                    u.filtered = filtered.unwrap_or(0) as u64;
                    let counts = |k: &str| -> Counts {
                        details
                            .as_ref()
                            .and_then(|d| d.get(k))
                            .and_then(|v| serde_json::from_value(v.clone()).ok())
                            .unwrap_or_default()
                    };
                    u.rejected_by_reason = counts("rejected_by_reason");
                    u.filtered_by_reason = counts("filtered_by_reason");
                    u.counters = counts("counters");
                    u.status = UnitStatus::Completed;
                    u.started_at = start.map(|t| t.and_utc());
                    u.finished_at = end.map(|t| t.and_utc());
                    u.fingerprint = details
                        .as_ref()
                        .and_then(|d| d.get("fingerprint"))
                        .and_then(|v| v.as_str())
                        .map(str::to_owned);
                    u.duration_s = details
                        .as_ref()
                        .and_then(|d| d.get("duration_s"))
                        .and_then(|v| v.as_f64())
                        .unwrap_or(0.0);
                    u
                },
            )
            .collect())
    }

    /// Record a unit (inside the unit's transaction when `status` is `completed`).
    pub async fn record_unit(
        &self,
        conn: &mut PgConnection,
        run_id: Uuid,
        migration: &str,
        unit: &UnitSummary,
        status: &str,
    ) -> Result<()> {
        let details = serde_json::json!({
            "rejected_by_reason": unit.rejected_by_reason,
            "filtered_by_reason": unit.filtered_by_reason,
            "counters": unit.counters,
            "duration_s": unit.duration_s,
            "fingerprint": unit.fingerprint,
        });
        let counter = |k: &str| unit.counters.get(k).map(|v| *v as i64);
        sqlx::query(sqlf!(
            "INSERT INTO {} (run_id, migration, file_name, records_processed, records_inserted, records_updated,
                             records_failed, records_filtered, species_matched, species_unmatched,
                             start_time, end_time, status, error_message, details)
             VALUES ($1, $2, $3, $4, $5, 0, $6, $7, $8, $9, $10, $11, $12, $13, $14)
             ON CONFLICT (run_id, file_name) DO UPDATE SET
                records_processed = EXCLUDED.records_processed, records_inserted = EXCLUDED.records_inserted,
                records_failed = EXCLUDED.records_failed, records_filtered = EXCLUDED.records_filtered,
                species_matched = EXCLUDED.species_matched, species_unmatched = EXCLUDED.species_unmatched,
                start_time = EXCLUDED.start_time, end_time = EXCLUDED.end_time, status = EXCLUDED.status,
                error_message = EXCLUDED.error_message, details = EXCLUDED.details",
            self.units.sql()
        ))
        .bind(run_id)
        .bind(migration)
        .bind(&unit.name)
        .bind(unit.read as i64 as i32)
        .bind(unit.loaded as i64 as i32)
        .bind(unit.rejected as i64 as i32)
        .bind(unit.filtered as i64)
        .bind(counter("species_matched").map(|v| v as i32))
        .bind(counter("species_unmatched").map(|v| v as i32))
        .bind(unit.started_at.map(|t| t.naive_utc()))
        .bind(unit.finished_at.map(|t| t.naive_utc()))
        .bind(status)
        .bind(unit.error.as_deref())
        .bind(details)
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Totals of a run's committed units.
    pub async fn run_totals(&self, conn: &mut PgConnection, run_id: Uuid) -> Result<RunTotals> {
        let units = self.completed_units(conn, run_id).await?;
        Ok(RunTotals::from_units(&units))
    }
}
