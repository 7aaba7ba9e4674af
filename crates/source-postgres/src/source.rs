//! [`PgSource`]: entities read from one exported snapshot, keyset page by keyset page.

use std::sync::{Arc, Mutex};

use arrow_array::cast::AsArray;
use arrow_array::types::{Int16Type, Int32Type, Int64Type};
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, SchemaRef};
use etl_core::{Batch, BatchStream, Extract, ExtractOptions, Reject, SizeHint, Unit};
use futures::StreamExt;
use sqlx::postgres::{PgPool, PgRow};
use sqlx::{AssertSqlSafe, Column, Executor, Postgres, Row, Transaction, TypeInfo};

use crate::entity::{Entity, Key, Relation};
use crate::error::{PgSourceError, Result};
use crate::types::{
    PgColumn, PgType, RowDecoder, arrow_schema, quote_ident, readable, select_expr,
};
use etl_postgres::ident::TableName;

/// The statement every extraction transaction starts with: a consistent, read-only view.
pub const BEGIN_SNAPSHOT: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";

/// An exported snapshot: one `REPEATABLE READ READ ONLY` transaction kept open so that
/// other connections can import its view with `SET TRANSACTION SNAPSHOT`.
///
/// Every entity read through the same `Snapshot` sees the database as of one instant, as
/// if read in one transaction, while several connections read in parallel.
///
/// ### Note
/// The exporting transaction stays open (holding one pool connection) until the
/// `Snapshot` is dropped; the pool needs at least one more connection for the readers.
pub struct Snapshot {
    id: String,
    holder: Mutex<Option<Transaction<'static, Postgres>>>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot").field("id", &self.id).finish()
    }
}

impl Snapshot {
    /// Begin a read-only repeatable-read transaction on `pool` and export its snapshot.
    ///
    /// # Errors
    /// The connection fails, or the server refuses to export (a hot standby before 10).
    pub async fn export(pool: &PgPool) -> Result<Snapshot> {
        let mut tx = pool
            .begin_with(BEGIN_SNAPSHOT)
            .await
            .map_err(|e| PgSourceError::query("beginning the snapshot transaction", e))?;
        let id: String = sqlx::query_scalar("SELECT pg_export_snapshot()")
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| PgSourceError::query("exporting the snapshot", e))?;
        if !id.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            return Err(PgSourceError::Config(format!(
                "unexpected snapshot id {id:?} from pg_export_snapshot()"
            )));
        }
        tracing::debug!(snapshot = %id, "exported snapshot");
        Ok(Snapshot {
            id,
            holder: Mutex::new(Some(tx)),
        })
    }

    /// The snapshot id (`00000003-0000001B-1`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Begin a read-only transaction on `pool` that sees this snapshot.
    pub async fn begin(&self, pool: &PgPool) -> Result<Transaction<'static, Postgres>> {
        let mut tx = pool
            .begin_with(BEGIN_SNAPSHOT)
            .await
            .map_err(|e| PgSourceError::query("beginning a reader transaction", e))?;
        // The id was checked to be hex digits and dashes: safe to embed in the statement.
        sqlx::query(AssertSqlSafe(format!(
            "SET TRANSACTION SNAPSHOT '{}'",
            self.id
        )))
        .execute(&mut *tx)
        .await
        .map_err(|e| PgSourceError::query(format!("importing snapshot {}", self.id), e))?;
        Ok(tx)
    }

    /// End the exporting transaction (dropping the `Snapshot` does the same).
    pub fn release(&self) {
        if let Ok(mut h) = self.holder.lock() {
            h.take();
        }
    }
}

/// Options of a [`PgSource`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgSourceOptions {
    /// Scale of unconstrained `numeric` columns (`numeric` without `(p, s)`).
    pub default_numeric_scale: i8,
    /// Read every entity from one exported snapshot (recommended). When false, each unit
    /// reads in its own read-only repeatable-read transaction.
    pub shared_snapshot: bool,
    /// How long [`PgSource::connect_url`] may wait for a connection (30 s by default).
    pub connect_timeout: Option<std::time::Duration>,
}

impl Default for PgSourceOptions {
    fn default() -> Self {
        PgSourceOptions {
            default_numeric_scale: 6,
            shared_snapshot: true,
            connect_timeout: None,
        }
    }
}

/// An entity with its columns resolved.
#[derive(Debug, Clone)]
pub struct ResolvedEntity {
    /// The entity.
    pub entity: Entity,
    /// Columns read, in order.
    pub columns: Vec<PgColumn>,
    /// Every column of the relation (for filter casts).
    all_columns: Vec<PgColumn>,
    /// Index of the key in `columns`.
    pub key_index: usize,
    /// Arrow schema of the batches.
    pub schema: SchemaRef,
    from_sql: String,
}

impl ResolvedEntity {
    fn column(&self, name: &str) -> Result<&PgColumn> {
        self.all_columns
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| PgSourceError::ColumnNotFound {
                entity: self.entity.name.clone(),
                column: name.to_owned(),
                available: self
                    .all_columns
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// The key type.
    pub fn key_kind(&self) -> PgType {
        self.columns[self.key_index].pg_type
    }

    /// The key of the last row of `batch` (a batch this entity produced): where an
    /// interrupted extraction resumes with [`PgSource::open_after`].
    pub fn last_key(&self, batch: &RecordBatch) -> Option<Key> {
        let n = batch.num_rows();
        if n == 0 {
            return None;
        }
        let col = batch.column(self.key_index);
        if col.is_null(n - 1) {
            return None;
        }
        Some(match col.data_type() {
            DataType::Int16 => Key::Int(col.as_primitive::<Int16Type>().value(n - 1) as i64),
            DataType::Int32 => Key::Int(col.as_primitive::<Int32Type>().value(n - 1) as i64),
            DataType::Int64 => Key::Int(col.as_primitive::<Int64Type>().value(n - 1)),
            _ => Key::Text(etl_core::batch::render_value(col, n - 1)),
        })
    }
}

/// Bind values: integers or text cast server-side.
#[derive(Debug, Clone)]
enum Param {
    Int(i64),
    Text(String),
}

/// A PostgreSQL source: each [`Entity`] (table or query) read in keyset pages of the
/// batch size, inside read-only transactions that share one exported [`Snapshot`].
///
/// Units are entities, or integer key ranges `name[lo..hi)` when the entity is split with
/// [`Entity::split_every`]. Nothing is held in memory beyond one page per open unit.
///
/// # Examples
/// ```no_run
/// # async fn demo(pool: sqlx::PgPool) -> etl_core::Result<()> {
/// use etl_source_postgres::{Entity, PgSource, PgSourceOptions};
/// let source = PgSource::connect(
///     pool,
///     vec![Entity::table("buyers", "compradores", "id_comprador")],
///     PgSourceOptions::default(),
/// )
/// .await?;
/// let schema = source.entity("buyers").unwrap().schema.clone();
/// # let _ = schema; Ok(()) }
/// ```
pub struct PgSource {
    pool: PgPool,
    entities: Vec<Arc<ResolvedEntity>>,
    snapshot: Option<Arc<Snapshot>>,
    options: PgSourceOptions,
}

impl std::fmt::Debug for PgSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgSource")
            .field(
                "entities",
                &self
                    .entities
                    .iter()
                    .map(|e| &e.entity.name)
                    .collect::<Vec<_>>(),
            )
            .field("snapshot", &self.snapshot)
            .finish()
    }
}

impl PgSource {
    /// [`PgSource::connect`] to the server at `url` through a pool of at most
    /// `max_connections`; a failure to connect names the server (password redacted).
    ///
    /// # Errors
    /// As [`PgSource::connect`]; the server cannot be reached.
    pub async fn connect_url(
        url: &str,
        max_connections: u32,
        entities: Vec<Entity>,
        options: PgSourceOptions,
    ) -> Result<Self> {
        let at = etl_core::config::redact_url(url);
        let timeout = options
            .connect_timeout
            .unwrap_or(std::time::Duration::from_secs(30));
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(timeout)
            .connect(url)
            .await
            .map_err(|e| PgSourceError::query(format!("connecting to {at}"), e))?;
        Self::connect(pool, entities, options).await
    }

    /// Export a snapshot (unless disabled) and resolve the columns of every entity in it.
    ///
    /// # Errors
    /// A missing table, key or filter column, an unsupported column type, a connection
    /// failure.
    pub async fn connect(
        pool: PgPool,
        entities: Vec<Entity>,
        options: PgSourceOptions,
    ) -> Result<Self> {
        let snapshot = if options.shared_snapshot {
            Some(Arc::new(Snapshot::export(&pool).await?))
        } else {
            None
        };
        let mut tx = match &snapshot {
            Some(s) => s.begin(&pool).await?,
            None => pool
                .begin_with(BEGIN_SNAPSHOT)
                .await
                .map_err(|e| PgSourceError::query("beginning a transaction", e))?,
        };
        let mut resolved = Vec::new();
        for entity in entities {
            resolved.push(Arc::new(resolve(&mut tx, entity, &options).await?));
        }
        drop(tx);
        Ok(PgSource {
            pool,
            entities: resolved,
            snapshot,
            options,
        })
    }

    /// The snapshot every unit reads from, if shared.
    pub fn snapshot(&self) -> Option<&Snapshot> {
        self.snapshot.as_deref()
    }

    /// The options.
    pub fn options(&self) -> &PgSourceOptions {
        &self.options
    }

    /// A resolved entity by name.
    pub fn entity(&self, name: &str) -> Option<&ResolvedEntity> {
        self.entities
            .iter()
            .find(|e| e.entity.name == name)
            .map(|e| e.as_ref())
    }

    /// Every resolved entity.
    pub fn entities(&self) -> impl Iterator<Item = &ResolvedEntity> {
        self.entities.iter().map(|e| e.as_ref())
    }

    async fn begin(&self) -> Result<Transaction<'static, Postgres>> {
        begin(&self.pool, self.snapshot.as_deref()).await
    }

    /// Rows of entity `name` that its filters select, counted in the snapshot.
    pub async fn count(&self, name: &str) -> Result<u64> {
        let e = self
            .entity(name)
            .ok_or_else(|| PgSourceError::Config(format!("no entity named `{name}`")))?;
        let mut params = Vec::new();
        let wh = where_clause(e, None, None, &mut params)?;
        let sql = format!("SELECT count(*) FROM {} {wh}", e.from_sql);
        let mut tx = self.begin().await?;
        let mut q = sqlx::query_scalar::<_, i64>(AssertSqlSafe(sql));
        for p in params {
            q = match p {
                Param::Int(v) => q.bind(v),
                Param::Text(v) => q.bind(v),
            };
        }
        let n = q
            .fetch_one(&mut *tx)
            .await
            .map_err(|err| PgSourceError::query(format!("counting `{name}`"), err))?;
        Ok(n.max(0) as u64)
    }

    /// Rows `offset..offset + limit` of entity `name` (those its filters select) in key
    /// order, as key bounds for [`Entity::key_range`]: `(after, upto)`, the largest key of
    /// the first `offset` rows (`None` when `offset` is 0) and of the first `offset +
    /// limit` rows (`None` when the entity has no rows). Both are found by `ORDER BY key
    /// LIMIT n` on the key (an index scan of `n` entries, once per window; the pages are
    /// then read keyset by keyset). A window past the end is empty (`after == upto`).
    ///
    /// # Errors
    /// An unknown entity; the query fails.
    pub async fn key_window(
        &self,
        name: &str,
        offset: u64,
        limit: u64,
    ) -> Result<(Option<Key>, Option<Key>)> {
        let e = self
            .entity(name)
            .ok_or_else(|| PgSourceError::Config(format!("no entity named `{name}`")))?;
        let mut tx = self.begin().await?;
        let mut bound = async |n: u64| -> Result<Option<Key>> {
            if n == 0 {
                return Ok(None);
            }
            let mut params = Vec::new();
            let wh = where_clause(e, None, None, &mut params)?;
            let key = format!("r.{}", quote_ident(&e.entity.key));
            let sql = format!(
                "SELECT max(k)::text FROM (SELECT {key} AS k FROM {} {wh} ORDER BY {key} LIMIT {}) w",
                e.from_sql,
                n.min(i64::MAX as u64)
            );
            let mut q = sqlx::query_scalar::<_, Option<String>>(AssertSqlSafe(sql));
            for p in params {
                q = match p {
                    Param::Int(v) => q.bind(v),
                    Param::Text(v) => q.bind(v),
                };
            }
            let k = q.fetch_one(&mut *tx).await.map_err(|err| {
                PgSourceError::query(format!("finding the key window of `{name}`"), err)
            })?;
            Ok(k.map(|k| match (e.key_kind().is_integer(), k.parse()) {
                (true, Ok(v)) => Key::Int(v),
                _ => Key::Text(k),
            }))
        };
        let after = bound(offset).await?;
        let upto = bound(offset.saturating_add(limit)).await?;
        Ok((after, upto))
    }

    /// A source over `entities`, resolved in this source's snapshot and sharing its pool
    /// (e.g. the same entities narrowed by [`Entity::key_range`] after
    /// [`PgSource::key_window`]).
    ///
    /// # Errors
    /// As [`PgSource::connect`].
    pub async fn with_entities(&self, entities: Vec<Entity>) -> Result<PgSource> {
        let mut tx = self.begin().await?;
        let mut resolved = Vec::new();
        for entity in entities {
            resolved.push(Arc::new(resolve(&mut tx, entity, &self.options).await?));
        }
        Ok(PgSource {
            pool: self.pool.clone(),
            entities: resolved,
            snapshot: self.snapshot.clone(),
            options: self.options.clone(),
        })
    }

    async fn units_of(&self, e: &ResolvedEntity, index: usize) -> Result<Vec<Unit>> {
        let whole = || Unit {
            name: e.entity.name.clone(),
            locator: format!("{index}"),
            size: None,
        };
        let Some(step) = e.entity.split_every else {
            return Ok(vec![whole()]);
        };
        if !e.key_kind().is_integer() {
            return Ok(vec![whole()]);
        }
        let mut params = Vec::new();
        let wh = where_clause(e, None, None, &mut params)?;
        let key = format!("r.{}", quote_ident(&e.entity.key));
        let sql = format!(
            "SELECT min({key})::int8, max({key})::int8 FROM {} {wh}",
            e.from_sql
        );
        let mut tx = self.begin().await?;
        let mut q = sqlx::query_as::<_, (Option<i64>, Option<i64>)>(AssertSqlSafe(sql));
        for p in params {
            q = match p {
                Param::Int(v) => q.bind(v),
                Param::Text(v) => q.bind(v),
            };
        }
        let (lo, hi) = q.fetch_one(&mut *tx).await.map_err(|err| {
            PgSourceError::query(format!("finding the key range of `{}`", e.entity.name), err)
        })?;
        let (Some(lo), Some(hi)) = (lo, hi) else {
            return Ok(vec![whole()]);
        };
        let step = step.min(i64::MAX as u64) as i64;
        let mut units = Vec::new();
        let mut start = lo;
        while start <= hi {
            let end = start.saturating_add(step);
            units.push(Unit {
                name: format!("{}[{start}..{end})", e.entity.name),
                locator: format!("{index}:{start}:{end}"),
                size: Some(SizeHint::Rows((end - start) as u64)),
            });
            if end == i64::MAX {
                break;
            }
            start = end;
        }
        Ok(units)
    }

    /// Like [`Extract::open`], but start after key `after` (resume an interrupted unit;
    /// take the key from [`ResolvedEntity::last_key`] of the last batch stored).
    pub fn open_after(
        &self,
        unit: &Unit,
        after: Option<Key>,
        options: ExtractOptions,
    ) -> Result<BatchStream> {
        let (index, range) = parse_locator(&unit.locator)?;
        let entity = self.entities.get(index).cloned().ok_or_else(|| {
            PgSourceError::Config(format!("unit `{}`: no entity {index}", unit.name))
        })?;
        let state = PageState {
            pool: self.pool.clone(),
            snapshot: self.snapshot.clone(),
            entity,
            unit: Arc::from(unit.name.as_str()),
            range,
            after,
            tx: None,
            page: options.batch_size.max(1),
            ordinal: 0,
            done: false,
        };
        let stream = futures::stream::try_unfold(state, |mut st| async move {
            if st.done {
                return Ok(None);
            }
            let batch = st.next_page().await?;
            Ok(batch.map(|b| (b, st)))
        })
        .map(|r: Result<Batch>| r.map_err(etl_core::Error::from));
        Ok(stream.boxed())
    }
}

async fn begin(
    pool: &PgPool,
    snapshot: Option<&Snapshot>,
) -> Result<Transaction<'static, Postgres>> {
    match snapshot {
        Some(s) => s.begin(pool).await,
        None => pool
            .begin_with(BEGIN_SNAPSHOT)
            .await
            .map_err(|e| PgSourceError::query("beginning a read-only transaction", e)),
    }
}

fn parse_locator(locator: &str) -> Result<(usize, Option<(i64, i64)>)> {
    let bad = || {
        PgSourceError::Config(format!(
            "unit locator `{locator}` was not made by this source"
        ))
    };
    let mut parts = locator.split(':');
    let index = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    match (parts.next(), parts.next()) {
        (None, None) => Ok((index, None)),
        (Some(lo), Some(hi)) => Ok((
            index,
            Some((
                lo.parse().map_err(|_| bad())?,
                hi.parse().map_err(|_| bad())?,
            )),
        )),
        _ => Err(bad()),
    }
}

/// `WHERE ...` for filters, `since`, a key range and a start key; pushes the parameters.
fn where_clause(
    e: &ResolvedEntity,
    range: Option<(i64, i64)>,
    after: Option<&Key>,
    params: &mut Vec<Param>,
) -> Result<String> {
    let mut conds: Vec<String> = Vec::new();
    let key = format!("r.{}", quote_ident(&e.entity.key));
    for f in &e.entity.filters {
        let c = e.column(&f.column)?;
        params.push(Param::Text(f.value.clone()));
        conds.push(format!(
            "r.{} {} CAST(${} AS {})",
            quote_ident(&c.name),
            f.op.sql(),
            params.len(),
            c.sql_type
        ));
    }
    if let Some((col, value)) = &e.entity.since {
        let c = e.column(col)?;
        params.push(Param::Text(value.clone()));
        conds.push(format!(
            "r.{} > CAST(${} AS {})",
            quote_ident(&c.name),
            params.len(),
            c.sql_type
        ));
    }
    if let Some((lo, hi)) = range {
        params.push(Param::Int(lo));
        conds.push(format!("{key} >= ${}", params.len()));
        params.push(Param::Int(hi));
        conds.push(format!("{key} < ${}", params.len()));
    }
    if let Some(k) = after {
        let kc = &e.columns[e.key_index];
        match k {
            Key::Int(v) => {
                params.push(Param::Int(*v));
                conds.push(format!("{key} > ${}", params.len()));
            }
            Key::Text(v) => {
                params.push(Param::Text(v.clone()));
                conds.push(format!(
                    "{key} > CAST(${} AS {})",
                    params.len(),
                    kc.sql_type
                ));
            }
        }
    }
    Ok(if conds.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conds.join(" AND "))
    })
}

struct PageState {
    pool: PgPool,
    snapshot: Option<Arc<Snapshot>>,
    entity: Arc<ResolvedEntity>,
    unit: Arc<str>,
    range: Option<(i64, i64)>,
    after: Option<Key>,
    tx: Option<Transaction<'static, Postgres>>,
    page: usize,
    ordinal: u64,
    done: bool,
}

impl PageState {
    async fn next_page(&mut self) -> Result<Option<Batch>> {
        if self.tx.is_none() {
            self.tx = Some(begin(&self.pool, self.snapshot.as_deref()).await?);
        }
        let e = self.entity.clone();
        let mut params = Vec::new();
        let wh = where_clause(&e, self.range, self.after.as_ref(), &mut params)?;
        let select: Vec<String> = e
            .columns
            .iter()
            .map(|c| select_expr(c.pg_type, &format!("r.{}", quote_ident(&c.name))))
            .collect();
        let sql = format!(
            "SELECT {} FROM {} {wh} ORDER BY r.{} LIMIT {}",
            select.join(", "),
            e.from_sql,
            quote_ident(&e.entity.key),
            self.page
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for p in params {
            q = match p {
                Param::Int(v) => q.bind(v),
                Param::Text(v) => q.bind(v),
            };
        }
        let tx = self.tx.as_mut().expect("transaction begun above");
        let rows: Vec<PgRow> = q.fetch_all(&mut **tx).await.map_err(|err| {
            PgSourceError::query(
                format!(
                    "reading a page of `{}` after key {}",
                    self.unit,
                    self.after
                        .as_ref()
                        .map_or("(start)".to_owned(), |k| k.to_string())
                ),
                err,
            )
        })?;
        if rows.len() < self.page {
            self.done = true;
        }
        if rows.is_empty() {
            self.tx = None;
            return Ok(None);
        }
        let mut decoder = RowDecoder::new(&e.columns, e.schema.clone(), rows.len());
        let mut records = Vec::with_capacity(rows.len());
        let mut rejects = Vec::new();
        let integer_key = e.key_kind().is_integer();
        for row in &rows {
            self.ordinal += 1;
            let record = if integer_key {
                row_int(row, e.key_index).map_or(self.ordinal, |k| k.max(0) as u64)
            } else {
                self.ordinal
            };
            let appended = decoder.append(row).map_err(|err| {
                PgSourceError::query(format!("decoding a row of `{}`", self.unit), err)
            })?;
            match appended {
                Ok(()) => records.push(record),
                Err(bad) => rejects.push(Reject::new(
                    self.unit.clone(),
                    record,
                    Some(&bad.column),
                    "bad_value",
                    bad.reason,
                    String::new(),
                )),
            }
        }
        let last = rows.last().expect("non-empty page");
        self.after = Some(if integer_key {
            Key::Int(row_int(last, e.key_index).ok_or_else(|| {
                PgSourceError::Config(format!(
                    "null key in `{}`: the key column must be NOT NULL",
                    self.unit
                ))
            })?)
        } else {
            let v: Option<String> = last.try_get(e.key_index).map_err(|err| {
                PgSourceError::query(format!("reading the key of `{}`", self.unit), err)
            })?;
            Key::Text(v.ok_or_else(|| {
                PgSourceError::Config(format!(
                    "null key in `{}`: the key column must be NOT NULL",
                    self.unit
                ))
            })?)
        });
        let n = rows.len() as u64;
        drop(rows);
        let data = decoder.flush().map_err(|source| PgSourceError::Arrow {
            entity: e.entity.name.clone(),
            source,
        })?;
        debug_assert_eq!(decoder.len(), 0);
        let mut batch = Batch::new(self.unit.clone(), data, records);
        batch.rejects = rejects;
        batch.consumed = n;
        if self.done {
            self.tx = None;
        }
        Ok(Some(batch))
    }
}

fn row_int(row: &PgRow, i: usize) -> Option<i64> {
    row.try_get::<Option<i64>, _>(i)
        .ok()
        .flatten()
        .or_else(|| {
            row.try_get::<Option<i32>, _>(i)
                .ok()
                .flatten()
                .map(i64::from)
        })
        .or_else(|| {
            row.try_get::<Option<i16>, _>(i)
                .ok()
                .flatten()
                .map(i64::from)
        })
}

async fn resolve(
    tx: &mut Transaction<'static, Postgres>,
    entity: Entity,
    options: &PgSourceOptions,
) -> Result<ResolvedEntity> {
    let (from_sql, all_columns) = match &entity.relation {
        Relation::Table { schema, table } => {
            let name = TableName {
                schema: schema.clone(),
                name: table.clone(),
            };
            let qualified = name.sql();
            let rows = etl_postgres::catalog::table_columns(tx, &name)
                .await
                .map_err(|e| {
                    PgSourceError::query(format!("reading the columns of {qualified}"), e)
                })?;
            if rows.is_empty() {
                return Err(PgSourceError::TableNotFound {
                    entity: entity.name.clone(),
                    table: qualified,
                });
            }
            let mut cols = Vec::new();
            for c in rows {
                match PgType::from_name(&c.type_name).filter(|t| readable(*t)) {
                    Some(pg_type) => cols.push(PgColumn {
                        data_type: pg_type.arrow_type_for(c.typmod, options.default_numeric_scale),
                        name: c.name,
                        pg_type,
                        sql_type: c.type_text,
                        nullable: !c.not_null,
                    }),
                    None if entity
                        .columns
                        .as_ref()
                        .is_some_and(|n| !n.contains(&c.name)) => {}
                    None => {
                        return Err(PgSourceError::UnsupportedType {
                            entity: entity.name.clone(),
                            column: c.name,
                            pg_type: c.type_text,
                        });
                    }
                }
            }
            (format!("{qualified} AS r"), cols)
        }
        Relation::Query(sql) => {
            let stmt = (&mut **tx)
                .prepare(sqlx::SqlSafeStr::into_sql_str(AssertSqlSafe(sql.clone())))
                .await
                .map_err(|e| {
                    PgSourceError::query(format!("preparing the query of `{}`", entity.name), e)
                })?;
            let mut cols = Vec::new();
            for c in sqlx::Statement::columns(&stmt) {
                let ty = c.type_info().name().to_owned();
                let pg_type = PgType::from_name(&ty)
                    .filter(|t| readable(*t))
                    .ok_or_else(|| PgSourceError::UnsupportedType {
                        entity: entity.name.clone(),
                        column: c.name().to_owned(),
                        pg_type: ty.clone(),
                    })?;
                let sql_type = match pg_type {
                    PgType::Numeric => "numeric".to_owned(),
                    _ => ty.to_ascii_lowercase(),
                };
                cols.push(PgColumn {
                    name: c.name().to_owned(),
                    data_type: pg_type.arrow_type_for(-1, options.default_numeric_scale),
                    pg_type,
                    sql_type,
                    nullable: true,
                });
            }
            (format!("({sql}) AS r"), cols)
        }
    };
    let lookup = |name: &str| -> Result<PgColumn> {
        all_columns
            .iter()
            .find(|c| c.name == name)
            .cloned()
            .ok_or_else(|| PgSourceError::ColumnNotFound {
                entity: entity.name.clone(),
                column: name.to_owned(),
                available: all_columns
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    };
    let columns: Vec<PgColumn> = match &entity.columns {
        Some(names) => names.iter().map(|n| lookup(n)).collect::<Result<_>>()?,
        None => all_columns.clone(),
    };
    lookup(&entity.key)?;
    for f in &entity.filters {
        lookup(&f.column)?;
    }
    if let Some((c, _)) = &entity.since {
        lookup(c)?;
    }
    let key_index = columns
        .iter()
        .position(|c| c.name == entity.key)
        .ok_or_else(|| {
            PgSourceError::Config(format!(
                "entity `{}`: the key column `{}` must be among the columns read",
                entity.name, entity.key
            ))
        })?;
    let schema = arrow_schema(&columns);
    Ok(ResolvedEntity {
        entity,
        columns,
        all_columns,
        key_index,
        schema,
        from_sql,
    })
}

impl Extract for PgSource {
    fn name(&self) -> &str {
        "postgres"
    }

    /// The schema of the first entity. A pipeline reads entities of one schema; run one
    /// pipeline per entity (or [`PgSource::only`]) when they differ.
    fn schema(&self) -> SchemaRef {
        self.entities
            .first()
            .map(|e| e.schema.clone())
            .unwrap_or_else(|| Arc::new(arrow_schema::Schema::empty()))
    }

    async fn units(&self) -> etl_core::Result<Vec<Unit>> {
        let mut out = Vec::new();
        for (i, e) in self.entities.iter().enumerate() {
            out.extend(self.units_of(e, i).await?);
        }
        Ok(out)
    }

    fn open(&self, unit: &Unit, options: ExtractOptions) -> etl_core::Result<BatchStream> {
        Ok(self.open_after(unit, None, options)?)
    }
}

impl PgSource {
    /// A source over one entity of this one, sharing its pool and snapshot (for a
    /// pipeline per entity when entities have different schemas).
    pub fn only(&self, name: &str) -> Result<PgSource> {
        let e = self
            .entities
            .iter()
            .find(|e| e.entity.name == name)
            .cloned()
            .ok_or_else(|| PgSourceError::Config(format!("no entity named `{name}`")))?;
        Ok(PgSource {
            pool: self.pool.clone(),
            entities: vec![e],
            snapshot: self.snapshot.clone(),
            options: self.options.clone(),
        })
    }
}
