//! Loading: per-type staging tables (one transaction per unit), then one transaction that
//! upserts staging into the target tables in dependency order, records the id map, runs the
//! checks that can veto, and writes the rollback script before committing.

use std::fmt::Write as _;

use arrow_array::RecordBatch;
use arrow_array::cast::AsArray;
use arrow_schema::SchemaRef;
use etl_core::{Finding, Load, Reject, RunInfo, Stage, Unit, UnitSummary, UnitWriter};
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use super::schema::{MIGRATED, columns, table_of};

fn db_err(what: &str) -> impl Fn(sqlx::Error) -> etl_core::Error + '_ {
    move |e| etl_core::Error::component(Stage::Load, "culturebridge", false, format!("{what}: {e}"))
}

/// Writes mapped batches of one type into `cb_staging.<table>` and `cb_staging.id_map`.
pub struct StagingLoad {
    pool: PgPool,
    ty: String,
    table: &'static str,
}

impl StagingLoad {
    /// Staging for `bubble_type`.
    pub fn new(pool: PgPool, bubble_type: &str) -> Self {
        StagingLoad {
            pool,
            ty: bubble_type.to_owned(),
            table: table_of(bubble_type),
        }
    }
}

/// One unit's transaction.
pub struct StagingWriter {
    tx: Transaction<'static, Postgres>,
    ty: String,
    table: &'static str,
    insert: RowInsert,
}

impl Load for StagingLoad {
    type Writer = StagingWriter;

    fn name(&self) -> &str {
        "culturebridge_staging"
    }

    async fn begin_run(
        &self,
        _run: &RunInfo,
        _schema: SchemaRef,
    ) -> etl_core::Result<Vec<UnitSummary>> {
        let t = self.table;
        let sql = format!(
            "CREATE TABLE IF NOT EXISTS cb_staging.{t} (LIKE public.{t} INCLUDING DEFAULTS);
             TRUNCATE cb_staging.{t};
             CREATE TABLE IF NOT EXISTS cb_staging.id_map (bubble_type text NOT NULL, bubble_id text NOT NULL, new_id uuid NOT NULL);
             DELETE FROM cb_staging.id_map WHERE bubble_type = '{}';",
            self.ty.replace('\'', "''")
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&self.pool)
            .await
            .map_err(db_err("cannot prepare staging"))?;
        Ok(Vec::new())
    }

    async fn begin_unit(&self, _unit: &Unit) -> etl_core::Result<StagingWriter> {
        let tx = self
            .pool
            .begin()
            .await
            .map_err(db_err("cannot begin a staging transaction"))?;
        Ok(StagingWriter {
            tx,
            ty: self.ty.clone(),
            table: self.table,
            insert: RowInsert::new(
                &self.ty,
                &format!("cb_staging.{}", self.table),
                "cb_staging.id_map",
            ),
        })
    }
}

/// The one statement that writes mapped rows of a type (the output of
/// [`MapTransform`](super::transform::MapTransform)): each row into a table shaped like
/// `public.<table>`, every column cast from text as [`columns`] says, and its
/// `(bubble_type, bubble_id, new_id)` into an id map. Staging uses it, and so does the
/// post-load sample check, so both encode rows the same way.
pub struct RowInsert {
    sql: String,
}

impl RowInsert {
    /// Rows of `bubble_type` into `into` (e.g. `cb_staging.users`) and their ids into
    /// `id_map` (e.g. `cb_staging.id_map`). Both names are trusted SQL identifiers.
    pub fn new(bubble_type: &str, into: &str, id_map: &str) -> Self {
        let cols = columns(table_of(bubble_type));
        let names: Vec<&str> = cols.iter().map(|c| c.name).collect();
        let unnest: Vec<String> = (1..=cols.len())
            .map(|i| format!("${}::text[]", i + 1))
            .collect();
        let aliases: Vec<String> = (0..cols.len()).map(|i| format!("c{i}")).collect();
        let casts: Vec<String> = cols
            .iter()
            .enumerate()
            .map(|(i, c)| c.cast.replace("{}", &format!("u.c{i}")))
            .collect();
        let sql = format!(
            "WITH m AS (INSERT INTO {id_map} SELECT '{ty}', b, n::uuid FROM UNNEST($1::text[], $2::text[]) AS x(b, n))
             INSERT INTO {into} ({names}) SELECT {casts} FROM UNNEST({unnest}) AS u({aliases})",
            ty = bubble_type.replace('\'', "''"),
            names = names.join(", "),
            casts = casts.join(", "),
            unnest = unnest.join(", "),
            aliases = aliases.join(", "),
        );
        RowInsert { sql }
    }

    /// Write `batch` (`bubble_id` then the target columns, all text) over `conn`; returns
    /// the rows written.
    ///
    /// # Errors
    /// The database's error (a value its column type refuses, a constraint).
    pub async fn write(
        &self,
        conn: &mut sqlx::PgConnection,
        batch: &RecordBatch,
    ) -> Result<u64, sqlx::Error> {
        let mut q = sqlx::query(sqlx::AssertSqlSafe(self.sql.clone()));
        for i in 0..batch.num_columns() {
            let a = batch.column(i).as_string::<i32>();
            let v: Vec<Option<String>> = a.iter().map(|v| v.map(str::to_owned)).collect();
            q = q.bind(v);
        }
        q.execute(conn).await?;
        Ok(batch.num_rows() as u64)
    }
}

impl UnitWriter for StagingWriter {
    async fn write(&mut self, batch: RecordBatch) -> etl_core::Result<u64> {
        let n = batch.num_rows();
        self.insert.write(&mut self.tx, &batch).await.map_err(|e| {
            etl_core::Error::component(
                Stage::Load,
                "culturebridge",
                false,
                format!(
                    "cannot stage {n} {} rows into cb_staging.{}: {e}",
                    self.ty, self.table
                ),
            )
        })
    }

    async fn write_rejects(&mut self, _rejects: &[Reject]) -> etl_core::Result<()> {
        Ok(())
    }

    async fn commit(self, _summary: &UnitSummary) -> etl_core::Result<()> {
        self.tx
            .commit()
            .await
            .map_err(db_err("cannot commit a staging unit"))
    }

    async fn abort(self) -> etl_core::Result<()> {
        self.tx
            .rollback()
            .await
            .map_err(db_err("cannot roll back a staging unit"))
    }
}

/// What the switch did.
#[derive(Debug, Default)]
pub struct SwitchOutcome {
    /// Rows inserted per table.
    pub inserted: Vec<(String, u64)>,
    /// Rows updated per table.
    pub updated: Vec<(String, u64)>,
    /// The checks.
    pub findings: Vec<Finding>,
    /// Whether it committed.
    pub committed: bool,
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Upsert staging into the target tables in one transaction, run the checks (a failed
/// error-level check rolls everything back), and write `rollback` (SQL that deletes exactly
/// the rows this run inserted and restores the rows it updated) before committing.
///
/// `expected` is the number of rows staged per migrated type, as the pipelines counted them.
/// With `dry_run`, everything runs (upserts, checks, figures) and is then rolled back, and
/// no rollback script is written: the production tables are left as they were.
#[allow(clippy::too_many_arguments)]
pub async fn switch(
    pool: &PgPool,
    run_id: Uuid,
    since: Option<chrono::DateTime<chrono::Utc>>,
    hwm: Option<chrono::DateTime<chrono::Utc>>,
    expected: &[(String, u64)],
    extra_checks: Vec<Finding>,
    rollback: &std::path::Path,
    dry_run: bool,
) -> etl_core::Result<SwitchOutcome> {
    let e = db_err;
    let mut tx = pool
        .begin()
        .await
        .map_err(e("cannot begin the switch transaction"))?;
    let mut out = SwitchOutcome::default();
    let mut restore = String::new();
    let mut deletes: Vec<String> = Vec::new();
    for ty in MIGRATED {
        let t = table_of(ty);
        let cols = columns(t);
        let names: Vec<&str> = cols.iter().map(|c| c.name).collect();
        // before-images of rows this run will update
        let before: Vec<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT to_jsonb(t)::text FROM public.{t} t WHERE t.id IN (SELECT id FROM cb_staging.{t})"
        )))
        .fetch_all(&mut *tx)
        .await
        .map_err(e("cannot read before-images"))?;
        let sets: Vec<String> = names
            .iter()
            .skip(1)
            .map(|n| format!("{n} = r.{n}"))
            .collect();
        for (json,) in &before {
            let _ = writeln!(
                restore,
                "UPDATE public.{t} AS t SET {} FROM jsonb_populate_record(NULL::public.{t}, {}::jsonb) AS r WHERE t.id = r.id;",
                sets.join(", "),
                quote(json)
            );
        }
        let updates: Vec<String> = names
            .iter()
            .skip(1)
            .map(|n| format!("{n} = EXCLUDED.{n}"))
            .collect();
        let rows: Vec<(Uuid, bool)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "INSERT INTO public.{t} ({n}) SELECT {n} FROM cb_staging.{t}
             ON CONFLICT (id) DO UPDATE SET {u}
             RETURNING id, (xmax = 0)",
            n = names.join(", "),
            u = updates.join(", ")
        )))
        .fetch_all(&mut *tx)
        .await
        .map_err(|err| {
            etl_core::Error::component(
                Stage::Load,
                "culturebridge",
                false,
                format!("cannot upsert {t} from staging: {err}"),
            )
        })?;
        let inserted: Vec<String> = rows
            .iter()
            .filter(|r| r.1)
            .map(|r| r.0.to_string())
            .collect();
        out.inserted.push((t.to_owned(), inserted.len() as u64));
        out.updated
            .push((t.to_owned(), (rows.len() - inserted.len()) as u64));
        let mut del = String::new();
        for chunk in inserted.chunks(1000) {
            let _ = writeln!(
                del,
                "DELETE FROM public.{t} WHERE id = ANY('{{{}}}'::uuid[]);",
                chunk.join(",")
            );
        }
        deletes.push(del);
        let want = expected.iter().find(|(k, _)| k == ty).map_or(0, |x| x.1);
        out.findings.push(Finding::check(
            format!("count_{t}"),
            rows.len() as u64 == want,
            format!("{} rows staged from Bubble `{ty}` (read - rejected - filtered = {want}), {} in {t} ({} new, {} updated)", rows.len(), rows.len(), inserted.len(), rows.len() - inserted.len()),
        ));
    }
    let mapped: Vec<(String, String)> = sqlx::query_as(
        "INSERT INTO bubble_id_map (bubble_type, bubble_id, new_id, run_id)
         SELECT bubble_type, bubble_id, new_id, $1 FROM cb_staging.id_map
         ON CONFLICT (bubble_type, bubble_id) DO NOTHING RETURNING bubble_type, bubble_id",
    )
    .bind(run_id)
    .fetch_all(&mut *tx)
    .await
    .map_err(e("cannot record the id map"))?;
    sqlx::query("INSERT INTO migration_runs (run_id, started_at, finished_at, since, high_water_mark, status) VALUES ($1, now(), now(), $2, $3, 'succeeded')")
        .bind(run_id)
        .bind(since)
        .bind(hwm)
        .execute(&mut *tx)
        .await
        .map_err(e("cannot record the run"))?;

    out.findings.extend(checks(&mut tx).await?);
    out.findings.extend(extra_checks);

    // rollback script: restore updated rows, delete inserted rows children first
    let mut sql = format!(
        "-- Rollback of CultureBridge migration run {run_id}\n-- Restores the rows this run updated and deletes exactly the rows it inserted.\nBEGIN;\n"
    );
    sql.push_str(&restore);
    for d in deletes.iter().rev() {
        sql.push_str(d);
    }
    for chunk in mapped.chunks(500) {
        let pairs: Vec<String> = chunk
            .iter()
            .map(|(t, b)| format!("({}, {})", quote(t), quote(b)))
            .collect();
        let _ = writeln!(
            sql,
            "DELETE FROM bubble_id_map WHERE (bubble_type, bubble_id) IN ({});",
            pairs.join(", ")
        );
    }
    let _ = writeln!(
        sql,
        "DELETE FROM migration_runs WHERE run_id = '{run_id}';\nCOMMIT;"
    );
    if dry_run {
        tx.rollback()
            .await
            .map_err(e("cannot roll back the dry run"))?;
        return Ok(out);
    }
    std::fs::write(rollback, sql).map_err(|err| etl_core::Error::io(rollback.display(), err))?;

    if out.findings.iter().any(Finding::vetoes) {
        tx.rollback()
            .await
            .map_err(e("cannot roll back the switch"))?;
        return Ok(out);
    }
    tx.commit().await.map_err(e("cannot commit the switch"))?;
    out.committed = true;
    Ok(out)
}

async fn count(tx: &mut Transaction<'static, Postgres>, sql: &str) -> etl_core::Result<i64> {
    let (n,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(&mut **tx)
        .await
        .map_err(|err| {
            etl_core::Error::component(
                Stage::Validate,
                "culturebridge",
                false,
                format!("check `{sql}` failed: {err}"),
            )
        })?;
    Ok(n)
}

/// The seed's checks (10.3) on the target tables, inside the switch transaction.
async fn checks(tx: &mut Transaction<'static, Postgres>) -> etl_core::Result<Vec<Finding>> {
    let mut f = Vec::new();
    let zero = [
        (
            "fk_client_profiles_user",
            "SELECT count(*) FROM client_profiles c LEFT JOIN users u ON u.id = c.user_id WHERE u.id IS NULL",
        ),
        (
            "fk_coach_profiles_user",
            "SELECT count(*) FROM coach_profiles c LEFT JOIN users u ON u.id = c.user_id WHERE u.id IS NULL",
        ),
        (
            "fk_bookings_client",
            "SELECT count(*) FROM bookings b LEFT JOIN users u ON u.id = b.client_id WHERE u.id IS NULL",
        ),
        (
            "fk_bookings_coach",
            "SELECT count(*) FROM bookings b LEFT JOIN users u ON u.id = b.coach_id WHERE u.id IS NULL",
        ),
        (
            "fk_payments_booking",
            "SELECT count(*) FROM payments p LEFT JOIN bookings b ON b.id = p.booking_id WHERE b.id IS NULL",
        ),
        (
            "email_format",
            r"SELECT count(*) FROM users WHERE email !~ '^[a-zA-Z0-9._%+-]+@[a-zA-Z0-9.-]+\.[a-zA-Z]{2,}$'",
        ),
        (
            "coach_rate_25_500",
            "SELECT count(*) FROM coach_profiles WHERE hourly_rate < 25 OR hourly_rate > 500",
        ),
        (
            "booking_duration_positive",
            "SELECT count(*) FROM bookings WHERE duration_minutes <= 0",
        ),
        (
            "payment_amount_positive",
            "SELECT count(*) FROM payments WHERE amount <= 0",
        ),
    ];
    for (name, sql) in zero {
        let n = count(tx, sql).await?;
        f.push(Finding::check(name, n == 0, format!("{n} violating rows")));
    }
    let warn = [
        (
            "clients_have_profiles",
            "SELECT count(*) FROM users u WHERE u.role = 'client' AND NOT EXISTS (SELECT 1 FROM client_profiles p WHERE p.user_id = u.id)",
            "client users without a client profile",
        ),
        (
            "coaches_have_profiles",
            "SELECT count(*) FROM users u WHERE u.role = 'coach' AND NOT EXISTS (SELECT 1 FROM coach_profiles p WHERE p.user_id = u.id)",
            "coach users without a coach profile",
        ),
        (
            "confirmed_bookings_have_payments",
            "SELECT count(*) FROM bookings b WHERE b.status IN ('confirmed', 'completed') AND NOT EXISTS (SELECT 1 FROM payments p WHERE p.booking_id = b.id)",
            "confirmed or completed bookings without a payment",
        ),
    ];
    for (name, sql, what) in warn {
        let n = count(tx, sql).await?;
        f.push(if n == 0 {
            Finding::pass(name, format!("no {what}"))
        } else {
            Finding::warn(
                name,
                format!("{n} {what} (their profile or payment was rejected or never existed)"),
            )
        });
    }
    Ok(f)
}
