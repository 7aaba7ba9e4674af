//! A job file -> the run layer's steps.
//!
//! ```text
//! PostgreSQL replace: preflight ─> create ─> prepare* ─> staging ─> load ─> indexes ─> gates ─> switch ─> post_switch* ─> ids ─> (cleanup)
//! PostgreSQL upsert:  preflight ─> create ─> prepare* ─> staging ─> load ─> gates ─> upsert ─> post_switch* ─> ids
//! PostgreSQL append:  preflight ─> create ─> prepare* ─> load (into the table) ─> gates ─> post_switch* ─> ids
//! Parquet:            preflight ─> load (PostgreSQL SQL is refused)
//! DynamoDB:           preflight ─> [create_table] ─> [backup] ─> load (see [`crate::dynamo`])
//! ```
//!
//! Sources: CSV, Parquet, PostgreSQL ([`crate::pg_source`]), Bubble ([`crate::bubble`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, bail};
use arrow_schema::{Field, Schema, SchemaRef};
use etl_core::migration::{Migration, Step, StepCx, StepKind, StepOutput};
use etl_core::{Extract, Finding, Load, Pipeline, SharedTransform, SharedValidate};
use etl_sink_postgres::ident::TableName;
use etl_sink_postgres::ledger::LedgerTables;
use etl_sink_postgres::rollup::Rollup;
use etl_sink_postgres::staging::StagingTable;
use etl_sink_postgres::steps::ReplaceSteps;
use etl_sink_postgres::upsert::{Upsert, UpsertTable};
use etl_sink_postgres::{PgLoad, connect_options};
use etl_source_csv::{CsvOptions, CsvSource};
use etl_validate::columns::{
    Cast, Default as DefaultValue, Drop, Filter, IdMethod, Keep, Rename, UuidIds,
};
use etl_validate::lookup::{Lookup, LookupTransform};
use etl_validate::sql::{Expect, SqlCheck, SqlChecks};
use etl_validate::{MatchRate, RejectRate, RowRules, Rule};
use serde_json::json;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection as _, PgConnection};

use crate::job::{
    Bound, GateSpec, Job, LookupSpec, Mode, PgTargetSpec, Source, SqlStepSpec, Target,
    TransformSpec,
};

/// What every step of a job sees: the job and the run's settings.
#[derive(Debug)]
pub struct JobRun {
    /// The job file.
    pub job: Job,
    /// Rows per batch.
    pub batch_size: usize,
    /// Units at once.
    pub parallel: usize,
}

impl JobRun {
    /// The job with its own `[job]` settings (or `batch_size` / `parallel` when unset).
    pub fn new(job: Job, batch_size: Option<usize>, parallel: Option<usize>) -> Self {
        let batch_size = batch_size.or(job.job.batch_size).unwrap_or(8_192);
        let parallel = parallel
            .or(job.job.parallel)
            .unwrap_or_else(etl_core::cli::default_parallelism);
        JobRun {
            job,
            batch_size,
            parallel,
        }
    }

    /// The PostgreSQL target, if the target is PostgreSQL.
    pub fn pg(&self) -> Option<&PgTargetSpec> {
        match self.job.target.get_ref() {
            Target::Postgres(pg) => Some(pg),
            _ => None,
        }
    }

    /// Connection options of the PostgreSQL target.
    ///
    /// # Errors
    /// The target is not PostgreSQL, or its URL does not parse.
    pub fn pg_opts(&self) -> anyhow::Result<PgConnectOptions> {
        let pg = self.pg().context("the target is not PostgreSQL")?;
        Ok(connect_options(pg.url.expose())?)
    }

    /// The live and staging tables of a PostgreSQL target.
    pub fn tables(&self) -> Option<StagingTable> {
        self.pg()
            .map(|pg| StagingTable::for_live(TableName::parse(&pg.table)))
    }

    fn ledger(&self) -> LedgerTables {
        let mut l = LedgerTables::default();
        if let Some(spec) = self.pg().and_then(|pg| pg.ledger.as_ref()) {
            if let Some(t) = &spec.runs {
                l.runs = TableName::parse(t);
            }
            if let Some(t) = &spec.units {
                l.units = TableName::parse(t);
            }
            if let Some(t) = &spec.rejects {
                l.rejects = TableName::parse(t);
            }
        }
        l
    }

    fn rollups(&self) -> Vec<Rollup> {
        self.pg()
            .map(|pg| {
                pg.rollup
                    .iter()
                    .map(|r| {
                        Rollup::new(TableName::parse(&r.table), r.keys.clone(), r.sums.clone())
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The table the load writes: staging (replace, upsert) or the table (append).
    fn load_table(&self) -> Option<TableName> {
        let pg = self.pg()?;
        let st = self.tables()?;
        Some(match pg.mode {
            Mode::Append => st.live,
            Mode::Replace | Mode::Upsert => st.staging,
        })
    }

    async fn conn(&self) -> anyhow::Result<PgConnection> {
        PgConnection::connect_with(&self.pg_opts()?)
            .await
            .context("connecting to the target PostgreSQL (check [target] url)")
    }
}

/// The source's schema, as declared (CSV) or read (Parquet).
///
/// # Errors
/// A type name does not parse, or a Parquet file cannot be read.
pub fn source_schema(job: &Job) -> anyhow::Result<SchemaRef> {
    match job.source.get_ref() {
        Source::Csv(csv) => {
            let fields = csv
                .columns
                .iter()
                .map(|c| {
                    Ok(Field::new(
                        &c.name,
                        crate::dtype::parse(&c.data_type)?,
                        c.nullable,
                    ))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            Ok(Arc::new(Schema::new(fields)))
        }
        Source::Parquet { path } => {
            let files = expand(job, path, "parquet")?;
            let first = files
                .first()
                .context("no Parquet file matches [source] path")?;
            Ok(etl_parquet::file_schema(first)?)
        }
        Source::Bubble(_) => crate::bubble::schema(job),
        Source::Postgres(_) => bail!(
            "{}: the schema of a PostgreSQL source is read from the database: use `source_schema_of`",
            job.at(job.source.span())
        ),
    }
}

/// [`source_schema`], with a PostgreSQL source's schema read from its database.
///
/// # Errors
/// As [`source_schema`]; the source database cannot be reached.
pub async fn source_schema_of(job: &Job) -> anyhow::Result<SchemaRef> {
    match job.source.get_ref() {
        Source::Postgres(_) => crate::pg_source::schema(job).await,
        _ => source_schema(job),
    }
}

/// The files a job's `path` names (see [`files`]), resolved against the job file.
///
/// # Errors
/// Nothing matches.
pub fn expand(job: &Job, path: &str, ext: &str) -> anyhow::Result<Vec<PathBuf>> {
    files(&job.resolve(path), &format!("*.{ext}"))
}

/// The files `path` names: a file, the files of a directory matching `in_dir`, or a glob
/// on file names (`data/trade_*.csv`), in natural order.
///
/// # Errors
/// Nothing matches, or the directory cannot be listed.
pub fn files(path: &Path, in_dir: &str) -> anyhow::Result<Vec<PathBuf>> {
    match split_glob(path, in_dir) {
        (file, None) if file.is_file() => Ok(vec![file]),
        (file, None) => bail!("no file {}", file.display()),
        (dir, Some(pattern)) => Ok(etl_source_csv::glob_files(&dir, &pattern)?),
    }
}

/// `(dir, Some(pattern))` for a directory (`in_dir`) or a glob, `(file, None)` for a file.
fn split_glob(p: &Path, in_dir: &str) -> (PathBuf, Option<String>) {
    if p.is_dir() {
        return (p.to_path_buf(), Some(in_dir.to_owned()));
    }
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if name.contains(['*', '?']) {
        let dir = p.parent().filter(|d| !d.as_os_str().is_empty());
        (dir.unwrap_or(Path::new(".")).to_path_buf(), Some(name))
    } else {
        (p.to_path_buf(), None)
    }
}

/// The CSV source of a job.
///
/// # Errors
/// The schema or the dialect does not parse.
pub fn csv_source(job: &Job) -> anyhow::Result<CsvSource> {
    let Source::Csv(spec) = job.source.get_ref() else {
        bail!("the source is not CSV")
    };
    let schema = source_schema(job)?;
    let (dir, pattern) = split_glob(&job.resolve(&spec.path), "*.csv");
    let source = match pattern {
        Some(p) => CsvSource::glob(schema, dir, p),
        None => CsvSource::files(schema, [dir]),
    };
    let opts = CsvOptions::default()
        .with_dialect(&spec.dialect)
        .with_context(|| format!("{}: [source.dialect]", job.at(job.source.span())))?;
    Ok(source.with_options(opts))
}

/// The transforms of a job, built (lookups loaded) for a run; the lookups are returned
/// too, to report their unmatched values.
struct Built {
    transforms: Vec<SharedTransform>,
    validators: Vec<SharedValidate>,
    lookups: Vec<(Arc<LookupTransform>, Option<f64>)>,
}

async fn build_transforms(c: &JobRun, dry_run: bool) -> anyhow::Result<Built> {
    let job = &c.job;
    let mut b = Built {
        transforms: Vec::new(),
        validators: Vec::new(),
        lookups: Vec::new(),
    };
    for t in &job.transform {
        let at = job.at(t.span());
        let shared: SharedTransform = match t.get_ref() {
            TransformSpec::Rename { columns } => Arc::new(Rename::new(columns.clone())),
            TransformSpec::Drop { columns } => Arc::new(Drop::new(columns.clone())),
            TransformSpec::Cast { columns } => Arc::new(Cast::new(
                columns
                    .iter()
                    .map(|(c, t)| Ok((c.clone(), crate::dtype::parse(t)?)))
                    .collect::<anyhow::Result<Vec<_>>>()?,
            )),
            TransformSpec::Default {
                column,
                value,
                data_type,
            } => {
                let mut d = DefaultValue::new(column, value);
                if let Some(t) = data_type {
                    d = d.with_type(crate::dtype::parse(t)?);
                }
                Arc::new(d)
            }
            TransformSpec::Rules { rules } => {
                let mut out = Vec::new();
                for r in rules {
                    if r.required {
                        out.push(Rule::required(&r.column));
                    }
                    if r.min.is_some() || r.max.is_some() {
                        let v = |b: &Option<Bound>, d: i64| b.as_ref().map_or(Ok(d), Bound::value);
                        out.push(Rule::int_range(
                            &r.column,
                            v(&r.min, i64::MIN)?,
                            v(&r.max, i64::MAX)?,
                        ));
                    }
                    if let Some(vals) = &r.one_of {
                        out.push(Rule::one_of(&r.column, vals.clone()));
                    }
                }
                Arc::new(RowRules::new(out))
            }
            TransformSpec::Filter {
                column,
                keep,
                drop,
                not_null,
                reason,
            } => {
                let (k, vals) = match (keep, drop, not_null) {
                    (Some(v), _, _) => (Keep::In, v.clone()),
                    (_, Some(v), _) => (Keep::NotIn, v.clone()),
                    _ => (Keep::NotNull, Vec::new()),
                };
                Arc::new(Filter::new(column, k, vals, reason))
            }
            TransformSpec::Lookup(spec) => {
                let lookup = load_lookup(c, spec, dry_run)
                    .await
                    .with_context(|| format!("{at}: [[transform]] lookup of `{}`", spec.column))?;
                let mut l = LookupTransform::new(lookup, &spec.column, &spec.id_column);
                if let Some(r) = &spec.reason {
                    l.reason = r.clone();
                }
                if let Some(p) = &spec.counter {
                    l.counter = p.clone();
                }
                if let Some(min) = spec.min_match_rate {
                    b.validators.push(Arc::new(MatchRate {
                        name: format!("{}_match_rate", l.counter),
                        matched_counter: format!("{}_matched", l.counter),
                        unmatched_reason: l.reason.clone(),
                        min,
                    }));
                }
                let l = Arc::new(l);
                b.lookups.push((l.clone(), spec.min_match_rate));
                l
            }
            TransformSpec::Uuid {
                column,
                from,
                namespace,
                method,
                ..
            } => {
                let ns = match namespace {
                    Some(ns) => uuid::Uuid::parse_str(ns)?,
                    None => uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, job.job.name.as_bytes()),
                };
                let m = match method.as_deref() {
                    Some("embed") => IdMethod::Embed,
                    _ => IdMethod::V5,
                };
                Arc::new(UuidIds::new(column, from.clone(), ns, m))
            }
            TransformSpec::Bcrypt {
                column,
                output,
                cost,
            } => {
                let out = output.clone().unwrap_or_else(|| "password_hash".into());
                Arc::new(crate::bcrypt::Bcrypt::new(column, &out, cost.unwrap_or(12)))
            }
        };
        b.transforms.push(shared);
    }
    for g in &job.gate {
        if let GateSpec::RejectRate { max } = g.get_ref() {
            b.validators.push(Arc::new(RejectRate { max: *max }));
        }
    }
    Ok(b)
}

async fn load_lookup(c: &JobRun, spec: &LookupSpec, dry_run: bool) -> anyhow::Result<Lookup> {
    if let Some(csv) = &spec.csv {
        let path = c.job.resolve(csv);
        let pairs = etl_source_csv::read_pairs(&path)?;
        let values = pairs
            .into_iter()
            .map(|(v, id)| {
                let id = uuid::Uuid::parse_str(id.trim()).with_context(|| {
                    format!("{}: id {id:?} of {v:?} is not a UUID", path.display())
                })?;
                Ok((v, id))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        return Ok(Lookup::from_pairs(values, &[]));
    }
    let query = spec.query.as_deref().context("no query")?;
    let mut conn = c.conn().await?;
    match Lookup::load(&mut conn, query, spec.aliases_query.as_deref()).await {
        Ok(l) => Ok(l),
        // A dry run may look up a table the prepare steps would create.
        Err(e) if dry_run => {
            tracing::warn!("lookup of `{}` is empty in this dry run: {e}", spec.column);
            Ok(Lookup::default())
        }
        Err(e) => Err(e.into()),
    }
}

/// The load step: the source through the transforms into the target.
async fn load(c: &JobRun, cx: &StepCx) -> anyhow::Result<StepOutput> {
    match c.job.source.get_ref() {
        Source::Csv(_) => load_from(c, cx, csv_source(&c.job)?, Vec::new()).await,
        Source::Parquet { path } => {
            let files = expand(&c.job, path, "parquet")?;
            load_from(c, cx, crate::parquet::ParquetFiles::new(files)?, Vec::new()).await
        }
        Source::Postgres(_) => {
            let source = crate::pg_source::source(&c.job, c.parallel).await?;
            load_from(c, cx, source, Vec::new()).await
        }
        Source::Bubble(_) => {
            let parents = crate::bubble::parents(c).await?;
            let (source, pre) = crate::bubble::source(&c.job, c.parallel, parents)?;
            load_from(c, cx, source, pre).await
        }
    }
}

/// The source through `pre` (the source's own mapping), the job's transforms, and the
/// target's load.
async fn load_from<E: Extract>(
    c: &JobRun,
    cx: &StepCx,
    source: E,
    pre: Vec<SharedTransform>,
) -> anyhow::Result<StepOutput> {
    match c.job.target.get_ref() {
        Target::Postgres(_) => {
            let table = c.load_table().context("no table")?;
            let mut load = PgLoad::new(c.pg_opts()?, table).with_ledger(c.ledger());
            for r in c.rollups() {
                load = load.with_rollup(r);
            }
            run_pipeline(c, cx, source, load, pre, Vec::new()).await
        }
        Target::Parquet { dir } => {
            let dir = c.job.resolve(dir);
            let ck = etl_core::checkpoint::JsonCheckpoint::new(
                dir.join(format!("{}.checkpoint.json", c.job.job.name)),
                c.job.job.name.clone(),
            );
            let load = etl_parquet::ParquetPartsLoad::new(&dir, ck);
            run_pipeline(c, cx, source, load, pre, Vec::new()).await
        }
        Target::Dynamodb(_) => {
            let (load, post) = crate::dynamo::load(c, cx)?;
            run_pipeline(c, cx, source, load, pre, post).await
        }
    }
}

async fn run_pipeline<E: Extract, L: Load>(
    c: &JobRun,
    cx: &StepCx,
    source: E,
    load: L,
    pre: Vec<SharedTransform>,
    post: Vec<SharedTransform>,
) -> anyhow::Result<StepOutput> {
    let built = build_transforms(c, cx.dry_run).await?;
    let mut p = Pipeline::new(source, load).options(cx.pipeline_options(c.batch_size, c.parallel));
    for t in pre.into_iter().chain(built.transforms).chain(post) {
        p = p.transform_shared(t);
    }
    for v in built.validators {
        p = p.validate_shared(v);
    }
    let report = p.run(&cx.run_info()).await;
    for (l, min) in &built.lookups {
        let unmatched = l.unmatched.sorted();
        let matched = report
            .totals
            .counters
            .get(&format!("{}_matched", l.counter))
            .copied()
            .unwrap_or(0);
        let missed = report
            .totals
            .counters
            .get(&format!("{}_unmatched", l.counter))
            .copied()
            .unwrap_or(0);
        let rate = if matched + missed == 0 {
            1.0
        } else {
            matched as f64 / (matched + missed) as f64
        };
        cx.set_extra(
            format!("lookup_{}", l.column),
            json!({
                "column": l.column,
                "matched_rows": matched,
                "unmatched_rows": missed,
                "match_rate": rate,
                "min_match_rate": min,
                "unmatched_values": unmatched.len(),
                "unmatched": unmatched.iter().take(100).map(|(v, n)| json!({"value": v, "rows": n})).collect::<Vec<_>>(),
            }),
        );
    }
    Ok(StepOutput::from_pipeline(report))
}

fn sql_checks(c: &JobRun, table: &TableName) -> anyhow::Result<Vec<SqlCheck>> {
    let mut out = Vec::new();
    for g in &c.job.gate {
        let at = c.job.at(g.span());
        match g.get_ref() {
            GateSpec::RejectRate { .. } => {}
            GateSpec::RowCount => out.push(SqlCheck::row_count(table)),
            GateSpec::Rows { .. } => {}
            GateSpec::NoOrphans { column, references } => {
                let (t, col) = references
                    .strip_suffix(')')
                    .and_then(|r| r.split_once('('))
                    .with_context(|| {
                        format!("{at}: references {references:?}: write `table(column)`")
                    })?;
                out.push(SqlCheck::no_orphans(
                    table,
                    column,
                    &TableName::parse(t.trim()),
                    col.trim(),
                ));
            }
            GateSpec::NoDuplicates { columns } => {
                let cols: Vec<&str> = columns.iter().map(String::as_str).collect();
                out.push(SqlCheck::no_duplicates(table, &cols));
            }
            GateSpec::InRange { column, min, max } => {
                out.push(SqlCheck::in_range(
                    table,
                    column,
                    min.value()?,
                    max.value()?,
                ));
            }
            GateSpec::NotNull { columns } => {
                out.extend(columns.iter().map(|col| SqlCheck::not_null(table, col)));
            }
            GateSpec::Sql { name, sql, expect } => {
                let e = match expect.as_deref() {
                    None | Some("zero") => Expect::Zero,
                    Some("nonzero") => bail!(
                        "{at}: expect = \"nonzero\" is not supported; write the query to count bad rows"
                    ),
                    Some(x) => bail!("{at}: expect {x:?}: use \"zero\""),
                };
                let sql = sql.replace("{table}", &table.sql());
                out.push(SqlCheck::custom(name, sql, e, "rows"));
            }
        }
    }
    Ok(out)
}

/// The gates on the loaded table: SQL checks against the load's totals, and row bounds.
async fn gates(c: &JobRun, cx: &StepCx) -> anyhow::Result<StepOutput> {
    let table = c.load_table().context("no table")?;
    let totals = cx
        .pipeline_of("load")
        .map(|p| p.totals)
        .context("the load step left no totals in the journal; run the load again")?;
    let pg = c.pg().context("not PostgreSQL")?;
    let mut findings = SqlChecks::new(pg.url.expose(), sql_checks(c, &table)?)
        .run_all(&totals)
        .await?;
    for g in &c.job.gate {
        if let GateSpec::Rows { min, max } = g.get_ref() {
            let n = totals.loaded;
            let ok = min.is_none_or(|m| n >= m) && max.is_none_or(|m| n <= m);
            findings.push(Finding::check(
                "rows",
                ok,
                format!("{n} rows loaded (min {min:?}, max {max:?})"),
            ));
        }
    }
    let failed = findings.iter().filter(|f| f.vetoes()).count();
    Ok(
        StepOutput::message(format!("{} checks, {failed} failed", findings.len()))
            .with_findings(findings),
    )
}

/// Run one `[[prepare]]` / `[[post_switch]]` step: its CSV into a temporary table, then its
/// SQL (or its fallback when a rollup it reads does not reconcile), in one transaction.
async fn sql_step(c: &JobRun, cx: &StepCx, spec: &SqlStepSpec) -> anyhow::Result<StepOutput> {
    let mut conn = c.conn().await?;
    let mut sql = spec.text(&c.job)?;
    let mut from = "sql";
    if sql.contains("{groups:") {
        let (rolled, rollups) = rollup_groups(c, cx, &mut conn, &sql).await?;
        match (rolled, spec.fallback(&c.job)?) {
            (true, _) => {
                for r in rollups {
                    sql = sql.replace(
                        &format!("{{groups:{}}}", r.table),
                        &format!("({})", r.groups_sql(cx.run_id)),
                    );
                }
                from = "rollups";
            }
            (false, Some(fallback)) => {
                sql = fallback;
                from = "fallback";
            }
            (false, None) => bail!(
                "step `{}`: the rollups do not reconcile with the ledger (a resumed load) and the step has no fallback_sql",
                spec.name
            ),
        }
    }
    sql = sql.replace("{run_id}", &cx.run_id.to_string());
    let mut tx = conn.begin().await?;
    let mut loaded = None;
    if let Some(csv) = &spec.csv {
        let path = c.job.resolve(&csv.file);
        loaded = Some(crate::pgcsv::copy_csv_temp(&mut tx, &path, &csv.table).await?);
    }
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(StepOutput::message(format!("done ({from})"))
        .with_details(json!({ "from": from, "csv_rows": loaded })))
}

/// Whether the rollups named in `sql` reconcile with the ledger for this run.
async fn rollup_groups(
    c: &JobRun,
    cx: &StepCx,
    conn: &mut PgConnection,
    sql: &str,
) -> anyhow::Result<(bool, Vec<Rollup>)> {
    let used: Vec<Rollup> = c
        .rollups()
        .into_iter()
        .filter(|r| sql.contains(&format!("{{groups:{}}}", r.table)))
        .collect();
    let Some(first) = used.first() else {
        bail!("`{{groups:…}}` names no rollup of [target] rollup");
    };
    let ok =
        matches!(first.reconcile(conn, &c.ledger(), cx.run_id).await, Ok((Some(r), l)) if r == l);
    Ok((ok, used))
}

/// The steps of a job.
///
/// # Errors
/// A combination the job cannot run (PostgreSQL steps without a PostgreSQL target).
pub fn migration(c: &JobRun) -> anyhow::Result<Migration<JobRun>> {
    let job = &c.job;
    let mut m = Migration::new(job.job.name.clone());
    m = m.step(
        Step::new("preflight", StepKind::Preflight, |c: &JobRun, cx| {
            Box::pin(async move { Ok(preflight(c, cx).await?) })
        })
        .always()
        .in_dry_run()
        .describe("checks the job's source (files, headers) and target"),
    );
    let pg = c.pg();
    if pg.is_none()
        && !(job.prepare.is_empty()
            && job.post_switch.is_empty()
            && job
                .gate
                .iter()
                .all(|g| matches!(g.get_ref(), GateSpec::RejectRate { .. })))
    {
        bail!(
            "{}: [[prepare]], [[post_switch]] and SQL gates need a PostgreSQL target",
            job.path.display()
        );
    }
    let Some(pg) = pg else {
        if crate::dynamo::spec(job).is_some() {
            return Ok(crate::dynamo::steps(m, c, load_step()));
        }
        return Ok(m.restart_unfinished().step(load_step()));
    };
    let opts = c.pg_opts()?;
    let tables = c.tables().context("no tables")?;
    let replace = ReplaceSteps::new(opts.clone(), tables.clone())
        .lock_timeout(pg.lock_timeout.clone().unwrap_or_else(|| "10s".into()))
        .ledger(c.ledger());
    let replace = match (&pg.after_rollback, &pg.after_rollback_file) {
        (Some(sql), _) => replace.after_rollback(sql.clone()),
        (None, Some(f)) => replace.after_rollback(f.read(job)?),
        (None, None) => replace,
    };
    if pg.backup {
        let mut tables = vec![tables.live.clone()];
        tables.extend(pg.backup_tables.iter().map(|t| TableName::parse(t)));
        let dir = pg.backup_dir.as_ref().map(|d| job.resolve(d));
        m = m.step(etl_sink_postgres::steps::pg_dump_step(
            "backup",
            pg.url.expose(),
            tables,
            dir,
        ));
    }
    if let Some(ddl) = &pg.create {
        m = m.step(etl_sink_postgres::steps::sql_step(
            "create",
            StepKind::Prepare,
            opts.clone(),
            ddl.clone(),
        ));
    }
    for (i, p) in job.prepare.iter().enumerate() {
        m = m.step(spec_step(i, p.get_ref(), StepKind::Prepare, true));
    }
    let has_gates = job
        .gate
        .iter()
        .any(|g| !matches!(g.get_ref(), GateSpec::RejectRate { .. }));
    match pg.mode {
        Mode::Replace => {
            m = m
                .restart_unfinished()
                .step(replace.staging())
                .step(load_step())
                .step(replace.indexes());
            if has_gates {
                m = m.step(gates_step());
            }
            m = m.step(replace.switch());
        }
        Mode::Upsert => {
            m = m
                .restart_unfinished()
                .step(replace.staging())
                .step(load_step());
            if has_gates {
                m = m.step(gates_step());
            }
            let keys: Vec<&str> = pg.keys.iter().map(String::as_str).collect();
            let upsert = Upsert::new(
                opts.clone(),
                vec![UpsertTable::new(
                    tables.staging.clone(),
                    tables.live.clone(),
                    &keys,
                )],
            );
            m = m.step(upsert.step("upsert"));
        }
        Mode::Append => {
            m = m.step(load_step().irreversible(
                "rows were appended to the live table; delete them by the ledger's run id",
            ));
            if has_gates {
                m = m.step(gates_step());
            }
        }
    }
    for (i, p) in job.post_switch.iter().enumerate() {
        m = m.step(spec_step(i, p.get_ref(), StepKind::PostSwitch, false));
    }
    for t in &job.transform {
        if let TransformSpec::Uuid {
            column,
            from,
            mapping_table: Some(map),
            ..
        } = t.get_ref()
        {
            let key = from
                .iter()
                .map(|f| {
                    format!(
                        "{}::text",
                        etl_sink_postgres::ident::quote_ident(&renamed(job, f))
                    )
                })
                .collect::<Vec<_>>()
                .join(" || chr(31) || ");
            let (map, live) = (TableName::parse(map).sql(), tables.live.sql());
            let id = etl_sink_postgres::ident::quote_ident(column);
            let sql = format!(
                "CREATE TABLE IF NOT EXISTS {map} (key text PRIMARY KEY, id uuid NOT NULL);\n\
                 INSERT INTO {map} (key, id) SELECT {key}, {id} FROM {live} ON CONFLICT (key) DO NOTHING;"
            );
            m = m.step(etl_sink_postgres::steps::sql_step(
                &format!("ids_{column}"),
                StepKind::PostSwitch,
                opts.clone(),
                sql,
            ));
        }
    }
    if pg.mode == Mode::Replace {
        m = m.step(replace.cleanup());
    }
    Ok(m)
}

/// The name a source column has after the job's renames.
fn renamed(job: &Job, column: &str) -> String {
    let mut name = column.to_owned();
    for t in &job.transform {
        if let TransformSpec::Rename { columns } = t.get_ref()
            && let Some(n) = columns.get(&name)
        {
            name = n.clone();
        }
    }
    name
}

fn load_step() -> Step<JobRun> {
    Step::new("load", StepKind::Load, |c: &JobRun, cx| Box::pin(async move { Ok(load(c, cx).await?) }))
        .in_dry_run()
        .describe("reads the source, applies the transforms and validators, loads every unit with its ledger row")
}

fn gates_step() -> Step<JobRun> {
    Step::new("gates", StepKind::Gate, |c: &JobRun, cx| {
        Box::pin(async move { Ok(gates(c, cx).await?) })
    })
    .describe("the job's SQL gates on the loaded table, against the load's totals")
}

fn spec_step(i: usize, spec: &SqlStepSpec, kind: StepKind, prepare: bool) -> Step<JobRun> {
    let name = spec.name.clone();
    let section = if prepare { "prepare" } else { "post_switch" };
    Step::new(name.clone(), kind, move |c: &JobRun, cx| {
        Box::pin(async move {
            let list = if prepare {
                &c.job.prepare
            } else {
                &c.job.post_switch
            };
            Ok(sql_step(c, cx, list[i].get_ref()).await?)
        })
    })
    .describe(format!("[[{section}]] `{name}`: SQL in one transaction"))
}

async fn preflight(c: &JobRun, cx: &StepCx) -> anyhow::Result<StepOutput> {
    let mut details = serde_json::Map::new();
    match c.job.source.get_ref() {
        Source::Csv(_) => {
            let units = csv_source(&c.job)?.check_headers()?;
            details.insert("files".into(), json!(units.len()));
        }
        Source::Parquet { path } => {
            details.insert(
                "files".into(),
                json!(expand(&c.job, path, "parquet")?.len()),
            );
        }
        Source::Postgres(_) => extend(&mut details, crate::pg_source::preflight(&c.job).await?),
        Source::Bubble(_) => extend(&mut details, crate::bubble::preflight(&c.job).await?),
    }
    if crate::dynamo::spec(&c.job).is_some() {
        extend(&mut details, crate::dynamo::preflight(c).await?);
    }
    if let Some(pg) = c.pg() {
        let mut conn = c.conn().await?;
        let st = c.tables().context("no tables")?;
        // A new run of a replace job must not find the previous switch's table: the
        // switch would fail after the whole load.
        if pg.mode == Mode::Replace
            && !cx.dry_run
            && cx.attempt == 1
            && !cx.resuming()
            && st.states(&mut conn).await?.old
        {
            bail!(
                "{} still holds the data replaced by the previous switch: drop it with `ferry run --cleanup` \
                 (or undo that switch with --rollback) before loading again",
                st.old
            );
        }
        let v: String = sqlx::query_scalar("SHOW server_version")
            .fetch_one(&mut conn)
            .await?;
        details.insert("server_version".into(), json!(v));
    }
    Ok(StepOutput::message("source and target reachable")
        .with_details(serde_json::Value::Object(details)))
}

fn extend(details: &mut serde_json::Map<String, serde_json::Value>, more: serde_json::Value) {
    if let serde_json::Value::Object(m) = more {
        details.extend(m);
    }
}

/// `ferry validate`'s line for a source on a server: what its preflight found.
async fn remote_source(job: &Job) -> anyhow::Result<String> {
    Ok(match job.source.get_ref() {
        Source::Postgres(_) => {
            let d = crate::pg_source::preflight(job).await?;
            let (rows, units) = (&d["source_rows"], &d["source_units"]);
            format!("PostgreSQL source: {rows} rows in {units} units, in one snapshot")
        }
        _ => {
            let d = crate::bubble::preflight(job).await?;
            let (t, n) = (
                d["bubble_type"].as_str().unwrap_or_default(),
                &d["things_reported"],
            );
            format!("Bubble Data API answers for `{t}` ({n} things)")
        }
    })
}

/// `ferry validate`: the job parses, the source's files and headers fit, the transforms
/// accept the source's schema, the target is reachable and its table takes the output.
/// Nothing is written. Returns the report (one line per check) and whether all passed.
///
/// # Errors
/// Only failures to report (every problem found is a line of the report).
pub async fn validate(c: &JobRun) -> anyhow::Result<(String, bool)> {
    let mut out = String::new();
    let mut ok = true;
    let mut line = |pass: bool, what: String| {
        ok &= pass;
        out.push_str(&format!("{} {what}\n", if pass { "✓" } else { "✗" }));
    };
    line(
        true,
        format!(
            "job file {} parses ({} transforms, {} gates)",
            c.job.path.display(),
            c.job.transform.len(),
            c.job.gate.len()
        ),
    );
    let schema = match source_schema_of(&c.job).await {
        Ok(s) => s,
        Err(e) => {
            line(false, format!("source schema: {e:#}"));
            return Ok((out, false));
        }
    };
    match c.job.source.get_ref() {
        Source::Csv(_) => match csv_source(&c.job).and_then(|s| Ok(s.check_headers()?)) {
            Ok(units) => line(
                true,
                format!(
                    "{} CSV files, every header has the declared columns",
                    units.len()
                ),
            ),
            Err(e) => line(false, format!("source: {e:#}")),
        },
        Source::Parquet { path } => {
            match expand(&c.job, path, "parquet").and_then(crate::parquet::ParquetFiles::new) {
                Ok(_) => line(true, "Parquet files readable, one schema".into()),
                Err(e) => line(false, format!("source: {e:#}")),
            }
        }
        Source::Postgres(_) | Source::Bubble(_) => match remote_source(&c.job).await {
            Ok(what) => line(true, what),
            Err(e) => line(false, format!("source: {e:#}")),
        },
    }
    let mut output = schema.clone();
    match build_transforms(c, true).await {
        Ok(b) => {
            for t in &b.transforms {
                match t.output_schema(&output) {
                    Ok(s) => output = s,
                    Err(e) => {
                        line(false, format!("transform `{}`: {e}", t.name()));
                        return Ok((out, false));
                    }
                }
            }
            let cols: Vec<String> = output
                .fields()
                .iter()
                .map(|f| format!("{} {}", f.name(), crate::dtype::name(f.data_type())))
                .collect();
            line(
                true,
                format!(
                    "transforms give {} columns: {}",
                    cols.len(),
                    cols.join(", ")
                ),
            );
        }
        Err(e) => line(false, format!("transforms: {e:#}")),
    }
    if let Some(pg) = c.pg() {
        match c.conn().await {
            Err(e) => line(false, format!("target: {e:#}")),
            Ok(mut conn) => {
                let t = TableName::parse(&pg.table);
                let cols: Vec<(String, bool)> = sqlx::query_as(
                    "SELECT column_name::text, (is_nullable = 'NO' AND column_default IS NULL) FROM information_schema.columns
                      WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position",
                )
                .bind(t.schema_or_public())
                .bind(&t.name)
                .fetch_all(&mut conn)
                .await?;
                if cols.is_empty() {
                    let creates = pg.create.is_some() || !c.job.prepare.is_empty();
                    line(
                        creates,
                        format!(
                            "target table {} does not exist{}",
                            pg.table,
                            if creates {
                                " (the job's create/prepare steps make it)"
                            } else {
                                "; add `create` to [target]"
                            }
                        ),
                    );
                } else {
                    let names: std::collections::HashSet<&str> =
                        cols.iter().map(|(n, _)| n.as_str()).collect();
                    let extra: Vec<&str> = output
                        .fields()
                        .iter()
                        .map(|f| f.name().as_str())
                        .filter(|n| !names.contains(n))
                        .collect();
                    let have: std::collections::HashSet<&str> =
                        output.fields().iter().map(|f| f.name().as_str()).collect();
                    let required: Vec<&str> = cols
                        .iter()
                        .filter(|(n, req)| *req && !have.contains(n.as_str()))
                        .map(|(n, _)| n.as_str())
                        .collect();
                    line(
                        extra.is_empty(),
                        format!(
                            "target {}: {}",
                            pg.table,
                            if extra.is_empty() {
                                "takes every output column".to_owned()
                            } else {
                                format!("has no column {} (rename or drop it)", extra.join(", "))
                            }
                        ),
                    );
                    if !required.is_empty() {
                        line(
                            false,
                            format!(
                                "target {}: NOT NULL columns without default not in the output: {}",
                                pg.table,
                                required.join(", ")
                            ),
                        );
                    }
                }
            }
        }
    }
    if crate::dynamo::spec(&c.job).is_some() {
        for (pass, what) in crate::dynamo::validate(c, &output).await {
            line(pass, what);
        }
    }
    Ok((out, ok))
}
