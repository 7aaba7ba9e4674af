//! [`PgLoad`]: the `etl_core::Load` for PostgreSQL — binary COPY per unit, in one
//! transaction with the unit's rejects and checkpoint.

use std::sync::{Arc, Mutex};

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use bytes::{Bytes, BytesMut};
use etl_core::{Load, Reject, RunInfo, RunTotals, Unit, UnitSummary, UnitWriter};
use sqlx::PgConnection;
use sqlx::postgres::PgConnectOptions;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::copy::{COPY_HEADER, COPY_TRAILER, CopyEncoder};
use crate::ident::TableName;
use crate::ledger::LedgerTables;
use crate::rollup::{Groups, Rollup};
use crate::staging::StagingTable;
use crate::{Error, Result};

/// Loads batches into one table with binary `COPY`, unit by unit.
///
/// Every unit runs on its own connection in one transaction: `COPY` of the rows, the
/// unit's rejects into the reject table, and its checkpoint row in the unit ledger —
/// committed together, so a crash at any point leaves either the whole unit or nothing,
/// and `--resume` (same `run_id`) skips exactly the committed units.
///
/// Batch encoding runs on the blocking pool while the previous chunk is on the wire.
#[derive(Debug, Clone)]
pub struct PgLoad {
    connect: PgConnectOptions,
    table: TableName,
    ledger: LedgerTables,
    staging: Option<StagingTable>,
    rollups: Vec<Arc<Rollup>>,
    /// The groups of the units committed in this process, and whether they are all of the
    /// run's (no unit was committed by an earlier attempt).
    run_groups: Arc<Mutex<(bool, Vec<Groups>)>>,
    state: Arc<Mutex<Option<RunState>>>,
}

#[derive(Debug, Clone)]
struct RunState {
    run_id: Uuid,
    migration: String,
    encoder: Arc<CopyEncoder>,
    copy_sql: Arc<str>,
}

impl PgLoad {
    /// Load into `table`, with the default ledger table names.
    pub fn new(connect: PgConnectOptions, table: TableName) -> Self {
        PgLoad {
            connect,
            table,
            ledger: LedgerTables::default(),
            staging: None,
            rollups: Vec::new(),
            run_groups: Arc::default(),
            state: Arc::new(Mutex::new(None)),
        }
    }

    /// Use these ledger tables.
    pub fn with_ledger(mut self, ledger: LedgerTables) -> Self {
        self.ledger = ledger;
        self
    }

    /// The target is the staging table of `staging`: after the load, build the live
    /// table's indexes and keys on it and `ANALYZE` it.
    pub fn with_staging(mut self, staging: StagingTable) -> Self {
        self.staging = Some(staging);
        self
    }

    /// Also compute `rollup`'s group-by counts and sums of the written rows, written to
    /// its table at the end of the load (see [`Rollup`]).
    pub fn with_rollup(mut self, rollup: Rollup) -> Self {
        self.rollups.push(Arc::new(rollup));
        self
    }

    /// The ledger tables.
    pub fn ledger(&self) -> &LedgerTables {
        &self.ledger
    }

    /// A new connection with this loader's options.
    /// A connection attempt gives up after 30 s (`ConnectSettings::connect`).
    pub async fn connect(&self) -> Result<PgConnection> {
        Ok(crate::ConnectSettings::default()
            .connect(&self.connect)
            .await?)
    }

    fn run_state(&self) -> Result<RunState> {
        self.state
            .lock()
            .expect("state lock")
            .clone()
            .ok_or_else(|| Error::State("begin_run was not called".into()))
    }
}

impl Load for PgLoad {
    type Writer = PgUnitWriter;

    fn name(&self) -> &str {
        "postgres"
    }

    async fn begin_run(
        &self,
        run: &RunInfo,
        schema: SchemaRef,
    ) -> etl_core::Result<Vec<UnitSummary>> {
        let mut conn = self.connect().await?;
        self.ledger.ensure(&mut conn).await?;
        let columns = crate::types::table_columns(&mut conn, &self.table).await?;
        let encoder = CopyEncoder::for_table(&schema, &columns)?;
        let copy_sql = format!(
            "COPY {} {} FROM STDIN (FORMAT binary)",
            self.table.sql(),
            encoder.column_list_sql()
        );
        for r in &self.rollups {
            r.begin_run(&mut conn, &self.table).await?;
        }
        let details = serde_json::json!({ "table": self.table.to_string() });
        self.ledger
            .start_run(&mut conn, run.run_id, &run.migration, &details)
            .await?;
        let done = if run.resume {
            self.ledger.completed_units(&mut conn, run.run_id).await?
        } else {
            Vec::new()
        };
        *self.run_groups.lock().expect("groups lock") = (
            done.is_empty(),
            self.rollups.iter().cloned().map(Groups::new).collect(),
        );
        *self.state.lock().expect("state lock") = Some(RunState {
            run_id: run.run_id,
            migration: run.migration.clone(),
            encoder: Arc::new(encoder),
            copy_sql: copy_sql.into(),
        });
        Ok(done)
    }

    async fn begin_unit(&self, unit: &Unit) -> etl_core::Result<PgUnitWriter> {
        let state = self.run_state()?;
        let conn = self.connect().await?;
        let (tx, rx) = mpsc::channel(2);
        let ledger = self.ledger.clone();
        let unit_name = unit.name.clone();
        let st = state.clone();
        let task = tokio::spawn(async move { unit_task(conn, st, ledger, unit_name, rx).await });
        Ok(PgUnitWriter {
            encoder: state.encoder,
            groups: self.rollups.iter().cloned().map(Groups::new).collect(),
            run_groups: self.run_groups.clone(),
            tx: Some(tx),
            task: Some(task),
        })
    }

    async fn unit_failed(&self, unit: &Unit, error: &str) -> etl_core::Result<()> {
        let state = self.run_state()?;
        let mut conn = self.connect().await?;
        let mut s = UnitSummary::new(&unit.name);
        s.error = Some(error.to_owned());
        s.finished_at = Some(chrono::Utc::now());
        self.ledger
            .record_unit(&mut conn, state.run_id, &state.migration, &s, "failed")
            .await?;
        Ok(())
    }

    async fn unit_committed(&self, unit: &Unit) -> etl_core::Result<bool> {
        let state = self.run_state()?;
        let mut conn = self.connect().await?;
        Ok(self
            .ledger
            .unit_completed(&mut conn, state.run_id, &unit.name)
            .await?)
    }

    async fn end_load(&self) -> etl_core::Result<()> {
        let state = self.run_state()?;
        let mut conn = self.connect().await?;
        if let Some(st) = &self.staging {
            sqlx::query("SET maintenance_work_mem = '512MB'")
                .execute(&mut conn)
                .await
                .map_err(Error::from)?;
            st.build_indexes(&mut conn).await?;
        }
        // The run's groups, when this process committed every unit of the run: all
        // rollups in one transaction, so a kill never leaves one written and another not
        // (the summary checks one rollup's rows against the ledger).
        let groups = std::mem::take(&mut *self.run_groups.lock().expect("groups lock"));
        if groups.0 && !groups.1.is_empty() {
            use sqlx::Connection as _;
            let mut tx = conn.begin().await.map_err(Error::from)?;
            for g in &groups.1 {
                g.write(&mut tx, state.run_id).await?;
            }
            tx.commit().await.map_err(Error::from)?;
        }
        crate::staging::analyze(&mut conn, &self.table).await?;
        self.ledger
            .set_status(&mut conn, state.run_id, "loaded")
            .await?;
        Ok(())
    }

    async fn commit_run(&self, _totals: &RunTotals) -> etl_core::Result<()> {
        let state = self.run_state()?;
        let mut conn = self.connect().await?;
        self.ledger
            .set_status(&mut conn, state.run_id, "validated")
            .await?;
        Ok(())
    }

    async fn abort_run(&self, reason: &str) -> etl_core::Result<()> {
        let Ok(state) = self.run_state() else {
            return Ok(());
        };
        let mut conn = self.connect().await?;
        tracing::warn!(%reason, "run aborted; production untouched");
        self.ledger
            .set_status(&mut conn, state.run_id, "failed")
            .await?;
        Ok(())
    }
}

/// Bytes per `CopyData` message.
const COPY_MESSAGE_BYTES: usize = 1 << 20;

enum Msg {
    Data(Bytes),
    Rejects(Vec<Reject>),
    Commit(Box<UnitSummary>, oneshot::Sender<()>),
}

/// Writes one unit through a connection task: `write` encodes on the blocking pool and
/// hands bytes to the task, which streams them into `COPY`.
///
/// ### Note
/// Dropping a writer without `commit` closes its connection, which rolls the unit back.
#[derive(Debug)]
pub struct PgUnitWriter {
    encoder: Arc<CopyEncoder>,
    groups: Vec<Groups>,
    run_groups: Arc<Mutex<(bool, Vec<Groups>)>>,
    tx: Option<mpsc::Sender<Msg>>,
    task: Option<tokio::task::JoinHandle<Result<()>>>,
}

impl PgUnitWriter {
    async fn send(&mut self, msg: Msg) -> Result<()> {
        let tx = self
            .tx
            .as_ref()
            .ok_or_else(|| Error::Task("writer closed".into()))?;
        if tx.send(msg).await.is_err() {
            return Err(self.task_error().await);
        }
        Ok(())
    }

    async fn task_error(&mut self) -> Error {
        self.tx = None;
        match self.task.take() {
            Some(h) => match h.await {
                Ok(Err(e)) => e,
                Ok(Ok(())) => Error::Task("the COPY task ended early".into()),
                Err(e) => Error::Task(e.to_string()),
            },
            None => Error::Task("writer closed".into()),
        }
    }
}

impl UnitWriter for PgUnitWriter {
    async fn write(&mut self, batch: RecordBatch) -> etl_core::Result<u64> {
        let n = batch.num_rows() as u64;
        let encoder = self.encoder.clone();
        let mut groups = std::mem::take(&mut self.groups);
        let (bytes, groups) = tokio::task::spawn_blocking(move || -> Result<(Bytes, _)> {
            let mut buf = BytesMut::with_capacity(encoder.encoded_size_hint(&batch) + 64);
            encoder.encode(&batch, &mut buf)?;
            for g in &mut groups {
                g.add(&batch)?;
            }
            Ok((buf.freeze(), groups))
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))??;
        self.groups = groups;
        self.send(Msg::Data(bytes)).await?;
        Ok(n)
    }

    async fn write_rejects(&mut self, rejects: &[Reject]) -> etl_core::Result<()> {
        self.send(Msg::Rejects(rejects.to_vec())).await?;
        Ok(())
    }

    async fn commit(mut self, summary: &UnitSummary) -> etl_core::Result<()> {
        let (done_tx, done_rx) = oneshot::channel();
        self.send(Msg::Commit(Box::new(summary.clone()), done_tx))
            .await?;
        if done_rx.await.is_err() {
            return Err(self.task_error().await.into());
        }
        // Committed: the unit's groups join the run's (a group that cannot be merged
        // leaves the run's groups incomplete, so the summary scans instead).
        if !self.groups.is_empty() {
            let mut run = self.run_groups.lock().expect("groups lock");
            let merged = std::mem::take(&mut self.groups)
                .into_iter()
                .zip(run.1.iter_mut())
                .try_for_each(|(unit, run)| run.merge(unit));
            run.0 &= merged.is_ok();
        }
        self.tx = None;
        if let Some(h) = self.task.take() {
            h.await.map_err(|e| Error::Task(e.to_string()))??;
        }
        Ok(())
    }

    async fn abort(mut self) -> etl_core::Result<()> {
        // Closing the channel makes the task drop its connection: the server rolls back.
        self.tx = None;
        if let Some(h) = self.task.take() {
            h.abort();
            let _ = h.await;
        }
        Ok(())
    }
}

async fn unit_task(
    mut conn: PgConnection,
    state: RunState,
    ledger: LedgerTables,
    unit: String,
    mut rx: mpsc::Receiver<Msg>,
) -> Result<()> {
    use sqlx::Executor;
    conn.execute("BEGIN").await?;
    let mut rejects: Vec<Reject> = Vec::new();
    let mut copy = conn.copy_in_raw(&state.copy_sql).await?;
    copy.send(COPY_HEADER).await?;
    let commit = loop {
        match rx.recv().await {
            Some(Msg::Data(b)) => {
                // Moderate CopyData messages keep the connection's write buffer small.
                for chunk in b.chunks(COPY_MESSAGE_BYTES) {
                    copy.send(chunk).await?;
                }
            }
            Some(Msg::Rejects(r)) => rejects.extend(r),
            Some(Msg::Commit(summary, reply)) => break Some((summary, reply)),
            None => break None,
        }
    };
    let Some((summary, reply)) = commit else {
        // Abort: dropping `copy` and the connection rolls back on the server.
        drop(copy);
        drop(conn);
        return Ok(());
    };
    copy.send(COPY_TRAILER).await?;
    let rows = copy.finish().await?;
    if rows != summary.loaded {
        return Err(Error::State(format!(
            "unit `{unit}`: COPY stored {rows} rows but the pipeline sent {}",
            summary.loaded
        )));
    }
    insert_rejects(&mut conn, &ledger, state.run_id, &rejects).await?;
    ledger
        .record_unit(
            &mut conn,
            state.run_id,
            &state.migration,
            &summary,
            "completed",
        )
        .await?;
    conn.execute("COMMIT").await?;
    let _ = reply.send(());
    Ok(())
}

fn clean(s: &str) -> String {
    s.replace('\0', "\u{FFFD}")
}

/// Insert rejects into the reject table, 5,000 per statement.
pub async fn insert_rejects(
    conn: &mut PgConnection,
    ledger: &LedgerTables,
    run_id: Uuid,
    rejects: &[Reject],
) -> Result<()> {
    for chunk in rejects.chunks(5_000) {
        let files: Vec<String> = chunk.iter().map(|r| clean(&r.unit)).collect();
        let lines: Vec<i32> = chunk
            .iter()
            .map(|r| r.record.min(i32::MAX as u64) as i32)
            .collect();
        let cols: Vec<Option<String>> = chunk
            .iter()
            .map(|r| r.column.as_deref().map(clean))
            .collect();
        let kinds: Vec<String> = chunk.iter().map(|r| clean(&r.kind)).collect();
        let msgs: Vec<String> = chunk.iter().map(|r| clean(&r.reason)).collect();
        let raws: Vec<String> = chunk.iter().map(|r| clean(&r.raw)).collect();
        sqlx::query(sqlf!(
            "INSERT INTO {} (run_id, file_name, line_number, column_name, error_kind, error_message, raw_data)
             SELECT $1, * FROM UNNEST($2::text[], $3::int4[], $4::text[], $5::text[], $6::text[], $7::text[])",
            ledger.rejects.sql()
        ))
        .bind(run_id)
        .bind(files)
        .bind(lines)
        .bind(cols)
        .bind(kinds)
        .bind(msgs)
        .bind(raws)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}
