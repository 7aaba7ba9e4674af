//! The job file: a migration declared in TOML (reference: `docs/job-file.md`).
//!
//! ```toml
//! [job]
//! name = "cities"
//!
//! [source]
//! kind = "csv"
//! path = "data/cities_*.csv"
//! columns = [{ name = "id", type = "int64", nullable = false }, { name = "name", type = "text" }]
//!
//! [target]
//! kind = "postgres"
//! url = "${DATABASE_URL}"
//! table = "cities"
//! ```
//!
//! `${VAR}` is replaced from the environment before parsing (an unset variable is an
//! error naming it); relative paths are relative to the job file. Unknown keys are errors,
//! and every error names the line of the job file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use serde::Deserialize;
use toml::Spanned;

/// A whole job file. Its `Debug` leaves out the file's text (it holds the substituted
/// `${VAR}` values, passwords among them).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Job {
    /// `[job]`: name and run options.
    pub job: JobMeta,
    /// `[source]`: where rows come from.
    pub source: Spanned<Source>,
    /// `[[transform]]`: applied in order to every batch.
    #[serde(default)]
    pub transform: Vec<Spanned<TransformSpec>>,
    /// `[target]`: where rows go.
    pub target: Spanned<Target>,
    /// `[[gate]]`: checks that veto the switch (or the load's commit).
    #[serde(default)]
    pub gate: Vec<Spanned<GateSpec>>,
    /// `[[prepare]]`: SQL run before the load (schema, reference data); idempotent.
    #[serde(default)]
    pub prepare: Vec<Spanned<SqlStepSpec>>,
    /// `[[post_switch]]`: SQL run after the switch (summaries, ANALYZE, grants).
    #[serde(default)]
    pub post_switch: Vec<Spanned<SqlStepSpec>>,
    /// The job file's directory (relative paths are resolved against it).
    #[serde(skip)]
    pub dir: PathBuf,
    /// The job file's text after `${VAR}` substitution (for line numbers).
    #[serde(skip)]
    pub text: String,
    /// The job file's path.
    #[serde(skip)]
    pub path: PathBuf,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("path", &self.path)
            .field("job", &self.job)
            .field("source", &self.source)
            .field("transform", &self.transform)
            .field("target", &self.target)
            .field("gate", &self.gate)
            .field("prepare", &self.prepare)
            .field("post_switch", &self.post_switch)
            .finish_non_exhaustive()
    }
}

/// `[job]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobMeta {
    /// The migration's name: its key in the journal and the ledger.
    pub name: String,
    /// One line for `--plan` and the report.
    #[serde(default)]
    pub description: Option<String>,
    /// Rows per Arrow batch (default 8192).
    #[serde(default)]
    pub batch_size: Option<usize>,
    /// Units (files, key ranges, API types) processed at once (default: the cores, up to 8).
    #[serde(default)]
    pub parallel: Option<usize>,
}

/// A column of a declared schema.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnSpec {
    /// Name (the header name for CSV with a header).
    pub name: String,
    /// Type: `text`, `bool`, `int16`, `int32`, `int64`, `float64`, `decimal(p,s)`, `date`,
    /// `timestamp`, `timestamptz`, `uuid`, `json` (see [`crate::dtype::parse`]).
    #[serde(rename = "type", default = "text")]
    pub data_type: String,
    /// Whether NULLs are allowed (default true); a NULL in a non-null column rejects
    /// the row.
    #[serde(default = "yes")]
    pub nullable: bool,
}

fn text() -> String {
    "text".into()
}

fn yes() -> bool {
    true
}

/// `[source]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Source {
    /// CSV files.
    Csv(CsvSourceSpec),
    /// Parquet files (every codec of the `parquet` crate).
    Parquet {
        /// A file, a directory, or a glob (`data/*.parquet`).
        path: String,
    },
    /// A PostgreSQL table or query, read from one snapshot in key order.
    Postgres(PgSourceSpec),
    /// Things of Bubble Data API types.
    Bubble(BubbleSourceSpec),
}

/// `[source] kind = "csv"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsvSourceSpec {
    /// A file, a directory (every `*.csv`), or a glob on file names (`data/trade_*.csv`);
    /// `.gz` and `.zst` files are read through their decompressor.
    pub path: String,
    /// How the files are written (`[source.dialect]`: delimiter, quote, escape,
    /// encoding, header, null markers); defaults: RFC 4180 CSV in UTF-8 with a header.
    #[serde(default)]
    pub dialect: etl_source_csv::Dialect,
    /// The columns, in file order.
    pub columns: Vec<ColumnSpec>,
}

/// `[source] kind = "postgres"`: a table or a query read in key order, keyset page by
/// keyset page, from one exported snapshot (every unit sees the same instant); a resumed
/// load skips the units it committed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PgSourceSpec {
    /// Source database URL (`${SOURCE_URL}`); never printed.
    pub url: etl_core::Secret,
    /// A table (`schema.table` or `table`); or `query`.
    #[serde(default)]
    pub table: Option<String>,
    /// A `SELECT` (with `table`'s place); the key must be one of its columns.
    #[serde(default)]
    pub query: Option<String>,
    /// The keyset key (unique, not null, indexed): rows are read in its order, page by
    /// page (a page is a batch: `[job] batch_size` rows), from one snapshot.
    pub key: String,
    /// Only these columns, in this order (default: all of the table or query).
    #[serde(default)]
    pub columns: Option<Vec<String>>,
    /// Split an integer key into units of this many key values (read in parallel, each
    /// committed and resumed on its own); default one unit.
    #[serde(default)]
    pub split_every: Option<u64>,
}

/// `[source] kind = "bubble"`: the things of one Bubble type, read through the Data API
/// (keyset pages over `Created Date` windows, a request rate never exceeded, retries with
/// backoff; schema drift fails the load) and mapped to the rows of its table as the
/// declared mapping says (`etl_source_bubble::declared`: ids, codes, e-mails, decimals,
/// dates, JSON, lists). The rows carry `bubble_id` and the mapping's columns of the type;
/// a thing the mapping rejects is a reject with its reason.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BubbleSourceSpec {
    /// The app's Data API root, ending in `/api/1.1`
    /// (`https://app.example.com/version-test/api/1.1`; a trailing `/obj` is ignored).
    pub url: String,
    /// The admin API token (`${BUBBLE_TOKEN}`), sent as `Authorization: Bearer`; never
    /// printed.
    pub token: etl_core::Secret,
    /// The declared mapping file (TOML of `etl_source_bubble::declared`: `id_namespace`,
    /// `[codes.*]`, `[[types]]` with their columns), relative to the job file.
    pub mapping: String,
    /// The Bubble type read (`user`): one of the mapping's types with a `table`. A `ref`
    /// column of it needs `parents`.
    #[serde(rename = "type")]
    pub bubble_type: String,
    /// For `ref` columns: per parent type, a query on the target database returning the
    /// Bubble ids already migrated (`{ user = "SELECT bubble_id FROM users" }`); a
    /// reference to any other id is rejected as dangling.
    #[serde(default)]
    pub parents: BTreeMap<String, String>,
    /// Only things modified after this time (RFC 3339, `2026-01-01T00:00:00Z`).
    #[serde(default)]
    pub since: Option<String>,
    /// Field keys of the app: `display` (display names, default) or `generated` (ids such
    /// as `email_text`).
    #[serde(default)]
    pub key_mode: Option<String>,
    /// Disjoint `Created Date` windows paged concurrently (units; default: `parallel`).
    #[serde(default)]
    pub windows: Option<usize>,
    /// Requests per minute the client never exceeds (default 1000).
    #[serde(default)]
    pub requests_per_minute: Option<u32>,
}

/// `[[transform]]`, applied in file order.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum TransformSpec {
    /// `columns = { old = "new", … }`.
    Rename {
        /// Old name -> new name.
        columns: BTreeMap<String, String>,
    },
    /// Drop columns the target does not take.
    Drop {
        /// The columns.
        columns: Vec<String>,
    },
    /// `columns = { col = "int64", … }`: a value that does not convert rejects its row.
    Cast {
        /// Column -> type.
        columns: BTreeMap<String, String>,
    },
    /// NULLs of `column` become `value`; a missing column is added with it.
    Default {
        /// The column.
        column: String,
        /// The value, as text (converted to the column's type).
        value: String,
        /// The type of an added column (default text).
        #[serde(rename = "type", default)]
        data_type: Option<String>,
    },
    /// Row rules: a failing row is rejected with its reason.
    Rules {
        /// The rules.
        rules: Vec<RuleSpec>,
    },
    /// Keep some rows; the others are counted as filtered with `reason`.
    Filter {
        /// The column compared (as text).
        column: String,
        /// Keep rows whose value is one of these.
        #[serde(default)]
        keep: Option<Vec<String>>,
        /// Drop rows whose value is one of these.
        #[serde(default)]
        drop: Option<Vec<String>>,
        /// Keep only non-NULL values.
        #[serde(default)]
        not_null: bool,
        /// Reason counted for the dropped rows.
        reason: String,
    },
    /// Map a text column to an id through a reference list (SQL query or CSV file).
    Lookup(LookupSpec),
    /// A deterministic UUID id from key columns.
    Uuid {
        /// The id column added (or replaced).
        column: String,
        /// The key columns.
        from: Vec<String>,
        /// The namespace UUID (default: the job name's UUIDv5 in the URL namespace).
        #[serde(default)]
        namespace: Option<String>,
        /// `v5` (default) or `embed` (one int64 key, no hashing).
        #[serde(default)]
        method: Option<String>,
        /// A table `(key text PRIMARY KEY, id uuid)` filled with the run's ids after the
        /// load (PostgreSQL targets).
        #[serde(default)]
        mapping_table: Option<String>,
    },
    /// bcrypt hashes of a password column (existing bcrypt hashes are kept, empty or
    /// longer than 72 bytes becomes NULL: reset required).
    Bcrypt {
        /// The plaintext column (replaced by `output`).
        column: String,
        /// The hash column (default `password_hash`).
        #[serde(default)]
        output: Option<String>,
        /// Cost (default 12).
        #[serde(default)]
        cost: Option<u32>,
    },
}

/// A row rule of `[[transform]] kind = "rules"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// The column.
    pub column: String,
    /// Non-NULL (and non-empty text).
    #[serde(default)]
    pub required: bool,
    /// Smallest integer allowed.
    #[serde(default)]
    pub min: Option<Bound>,
    /// Largest integer allowed.
    #[serde(default)]
    pub max: Option<Bound>,
    /// Allowed text values.
    #[serde(default)]
    pub one_of: Option<Vec<String>>,
}

/// An integer bound, or `"current_year"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Bound {
    /// A number.
    Int(i64),
    /// `"current_year"` (the year when the run starts, UTC).
    Named(String),
}

impl Bound {
    /// The value.
    pub fn value(&self) -> anyhow::Result<i64> {
        match self {
            Bound::Int(n) => Ok(*n),
            Bound::Named(s) if s == "current_year" => {
                use chrono::Datelike as _;
                Ok(chrono::Utc::now().year() as i64)
            }
            Bound::Named(s) => bail!("`{s}` is not a bound: give a number or \"current_year\""),
        }
    }
}

/// `[[transform]] kind = "lookup"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupSpec {
    /// The text column looked up.
    pub column: String,
    /// The id column added.
    pub id_column: String,
    /// `SELECT value, id` (UUID) on the target database.
    #[serde(default)]
    pub query: Option<String>,
    /// `SELECT alias, value` pairs, used in both directions.
    #[serde(default)]
    pub aliases_query: Option<String>,
    /// A CSV file of `value,id` (with a header).
    #[serde(default)]
    pub csv: Option<String>,
    /// Filter reason of unmatched rows (default `unmatched <column>`).
    #[serde(default)]
    pub reason: Option<String>,
    /// Prefix of the counters `<counter>_matched` / `_unmatched` (default the column).
    #[serde(default)]
    pub counter: Option<String>,
    /// Smallest match rate (matched / (matched + unmatched)); below it the load fails.
    #[serde(default)]
    pub min_match_rate: Option<f64>,
}

/// `[target]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Target {
    /// A PostgreSQL table.
    Postgres(PgTargetSpec),
    /// Parquet files in a directory (one per unit).
    Parquet {
        /// The directory.
        dir: String,
    },
    /// A DynamoDB table.
    Dynamodb(DynamoTargetSpec),
}

/// How a PostgreSQL target is written.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// A staging table `LIKE` the live one is loaded, indexed, gated, then swapped in by
    /// one rename transaction (the previous table kept for `--rollback`).
    #[default]
    Replace,
    /// Rows are added to the table (unit by unit, each with its ledger row).
    Append,
    /// Rows are loaded to staging and merged on `keys` (`INSERT … ON CONFLICT`) in one
    /// transaction; `--rollback` restores the rows changed.
    Upsert,
}

/// `[target] kind = "postgres"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PgTargetSpec {
    /// Target database URL (`${DATABASE_URL}`); never printed.
    pub url: etl_core::Secret,
    /// The table (`schema.table` or `table`).
    pub table: String,
    /// `replace` (default), `append` or `upsert`.
    #[serde(default)]
    pub mode: Mode,
    /// The key of `upsert`.
    #[serde(default)]
    pub keys: Vec<String>,
    /// DDL creating the table when missing (run in the `prepare` step).
    #[serde(default)]
    pub create: Option<String>,
    /// Ledger table names (defaults `ferry_runs`, `ferry_migration_log`,
    /// `ferry_import_errors`).
    #[serde(default)]
    pub ledger: Option<LedgerSpec>,
    /// How long the switch may wait for its lock (PostgreSQL interval, default `10s`).
    #[serde(default)]
    pub lock_timeout: Option<String>,
    /// Group-by rollups computed while rows stream through the load; a post-switch
    /// step reads a rollup's groups as `{groups:<table>}`.
    #[serde(default)]
    pub rollup: Vec<RollupSpec>,
    /// Take a `pg_dump` of the table (and of `backup_tables`) before anything changes, in
    /// a directory of its own per run with a checksummed manifest; `ferry run --restore
    /// DIR` puts them back in one transaction.
    #[serde(default)]
    pub backup: bool,
    /// More tables the backup holds (reference tables the prepare steps change).
    #[serde(default)]
    pub backup_tables: Vec<String>,
    /// Where the backups go (default `<report dir>/backups`).
    #[serde(default)]
    pub backup_dir: Option<String>,
    /// SQL run after `--rollback` swapped the previous table back (rebuild what was
    /// derived from the new one).
    #[serde(default)]
    pub after_rollback: Option<String>,
    /// Or a file of it (or a list of files, run as one script).
    #[serde(default)]
    pub after_rollback_file: Option<SqlFiles>,
}

/// One SQL file, or several run one after the other as one script (to share a part
/// between steps: the CITES summaries are one file after either of two ways of making
/// their groups).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum SqlFiles {
    /// One file.
    One(String),
    /// Files in order.
    Many(Vec<String>),
}

impl SqlFiles {
    /// The files' text, joined by newlines.
    ///
    /// # Errors
    /// A file cannot be read (named).
    pub fn read(&self, job: &Job) -> anyhow::Result<String> {
        let files: Vec<&String> = match self {
            SqlFiles::One(f) => vec![f],
            SqlFiles::Many(v) => v.iter().collect(),
        };
        let mut out = String::new();
        for f in files {
            let p = job.resolve(f);
            out.push_str(
                &std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?,
            );
            out.push('\n');
        }
        Ok(out)
    }
}

/// Ledger table names.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerSpec {
    /// One row per run.
    #[serde(default)]
    pub runs: Option<String>,
    /// One row per unit.
    #[serde(default)]
    pub units: Option<String>,
    /// One row per rejected record.
    #[serde(default)]
    pub rejects: Option<String>,
}

/// A rollup (`etl_sink_postgres::rollup::Rollup`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollupSpec {
    /// The table of the groups.
    pub table: String,
    /// Grouped-by columns.
    pub keys: Vec<String>,
    /// Summed columns.
    #[serde(default)]
    pub sums: Vec<String>,
}

/// `[target] kind = "dynamodb"`: every row becomes an item (columns -> attributes, NULLs
/// omitted) put with `BatchWriteItem` (25 per call, `concurrency` calls in flight,
/// throttling and unprocessed items retried with backoff). Puts are idempotent by key: a
/// resumed load redoes only the units its checkpoint does not record, a second run
/// overwrites the same items. The keys are made from `pk` and `sk` templates.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DynamoTargetSpec {
    /// The table.
    pub table: String,
    /// Endpoint URL (a local DynamoDB-compatible server); default the AWS endpoint of
    /// `region`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Region (default `us-east-1`).
    #[serde(default)]
    pub region: Option<String>,
    /// Access key id (`${AWS_ACCESS_KEY_ID}`); default the environment's
    /// `AWS_ACCESS_KEY_ID`. Credentials are never looked up anywhere else (no profile, no
    /// instance metadata); with an `endpoint` and none given, placeholder ones are sent.
    #[serde(default)]
    pub access_key_id: Option<etl_core::Secret>,
    /// Secret access key; default the environment's `AWS_SECRET_ACCESS_KEY`. Never printed.
    #[serde(default)]
    pub secret_access_key: Option<etl_core::Secret>,
    /// Session token of temporary credentials; default the environment's
    /// `AWS_SESSION_TOKEN`. Never printed.
    #[serde(default)]
    pub session_token: Option<etl_core::Secret>,
    /// Partition key template: text with `{column}` placeholders, e.g. `CUSTOMER#{id}`
    /// (a row with a NULL placeholder is rejected, `missing_key`).
    pub pk: String,
    /// Sort key template, e.g. `PROFILE` or `ORDER#{order_id}`; none: the table has only a
    /// partition key.
    #[serde(default)]
    pub sk: Option<String>,
    /// The partition key attribute (default `PK`).
    #[serde(default)]
    pub pk_attribute: Option<String>,
    /// The sort key attribute (default `SK`).
    #[serde(default)]
    pub sk_attribute: Option<String>,
    /// Create the table when missing (on-demand billing, string keys), in a `create_table`
    /// step before the load.
    #[serde(default)]
    pub create: bool,
    /// Scan the table into a Parquet file before the load (a `backup` step), so that
    /// `--rollback` restores it exactly (items added since deleted). Without it the load
    /// is irreversible and `--rollback` is refused.
    #[serde(default)]
    pub backup: bool,
    /// Where the backup goes (default `<report dir>/backup`).
    #[serde(default)]
    pub backup_dir: Option<String>,
    /// `BatchWriteItem` calls in flight (default 16).
    #[serde(default)]
    pub concurrency: Option<usize>,
    /// Retries of a throttled call or of unprocessed items before the unit fails
    /// (default 8).
    #[serde(default)]
    pub max_retries: Option<u32>,
    /// What a NULL becomes: `omit` (no attribute, default) or `null` (a `NULL` attribute).
    #[serde(default)]
    pub nulls: Option<String>,
    /// Where the journal and the load's checkpoint go (default `<report dir>/journal`).
    #[serde(default)]
    pub journal_dir: Option<String>,
}

/// `[[gate]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "check", rename_all = "snake_case", deny_unknown_fields)]
pub enum GateSpec {
    /// Rejected / read at most `max` (checked before the load commits).
    RejectRate {
        /// The largest rate.
        max: f64,
    },
    /// Rows loaded equal the ledger and the table's count.
    RowCount,
    /// Rows loaded at least `min` (and at most `max`).
    Rows {
        /// Smallest count.
        #[serde(default)]
        min: Option<u64>,
        /// Largest count.
        #[serde(default)]
        max: Option<u64>,
    },
    /// Every `column` value exists in `references` (`table(column)`).
    NoOrphans {
        /// The column.
        column: String,
        /// `table(column)`.
        references: String,
    },
    /// No two rows share `columns`.
    NoDuplicates {
        /// The key.
        columns: Vec<String>,
    },
    /// `column` within `min..=max`.
    InRange {
        /// The column.
        column: String,
        /// Smallest.
        min: Bound,
        /// Largest.
        max: Bound,
    },
    /// No NULL in `columns`.
    NotNull {
        /// The columns.
        columns: Vec<String>,
    },
    /// A query returning one number; `{table}` is the table checked (staging before a
    /// switch). Passes when the number is 0 (`expect = "zero"`, default) or not.
    Sql {
        /// Name in the report.
        name: String,
        /// The query.
        sql: String,
        /// `zero` (default) or `nonzero`.
        #[serde(default)]
        expect: Option<String>,
    },
}

/// `[[prepare]]` / `[[post_switch]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlStepSpec {
    /// Step name in the journal.
    pub name: String,
    /// The SQL (several statements, one transaction).
    #[serde(default)]
    pub sql: Option<String>,
    /// Or a file of SQL (relative to the job file), or a list of files run as one script.
    #[serde(default)]
    pub file: Option<SqlFiles>,
    /// A CSV file loaded first into a temporary table (all columns text, from its
    /// header), for reference data the SQL inserts.
    #[serde(default)]
    pub csv: Option<CsvTempSpec>,
    /// With `sql` built from a rollup's groups (`{groups:<table>}` is replaced by the
    /// run's groups): the SQL used instead when the rollup does not reconcile with the
    /// ledger (a load resumed after a kill).
    #[serde(default)]
    pub fallback_sql: Option<String>,
    /// Or a file (or files) of it.
    #[serde(default)]
    pub fallback_file: Option<SqlFiles>,
}

/// A CSV file loaded into a temporary table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsvTempSpec {
    /// The file (with a header).
    pub file: String,
    /// The temporary table's name.
    pub table: String,
}

impl Job {
    /// Read, substitute `${VAR}` and parse a job file; check what can be checked without
    /// touching a source or a target.
    ///
    /// # Errors
    /// Unreadable file, unset variable, TOML syntax, unknown or mistyped keys, and
    /// semantic errors (each naming the line).
    pub fn load(path: &Path) -> anyhow::Result<Job> {
        Self::load_with(path, |name| std::env::var(name).ok())
    }

    /// [`Job::load`] with `${VAR}` taken from `vars` instead of the environment.
    ///
    /// # Errors
    /// As [`Job::load`].
    pub fn load_with(path: &Path, vars: impl Fn(&str) -> Option<String>) -> anyhow::Result<Job> {
        let raw = std::fs::read_to_string(path)
            .with_context(|| format!("reading the job file {}", path.display()))?;
        let text = etl_core::config::substitute_with(&raw, vars)
            .with_context(|| format!("in the job file {}", path.display()))?;
        Self::parse(&text, path)
    }

    /// Parse job text (already substituted) as if read from `path`.
    ///
    /// # Errors
    /// As [`Job::load`].
    pub fn parse(text: &str, path: &Path) -> anyhow::Result<Job> {
        let mut job: Job =
            toml::from_str(text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        job.dir = path
            .parent()
            .map(Path::to_path_buf)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."));
        job.text = text.to_owned();
        job.path = path.to_path_buf();
        job.check()?;
        Ok(job)
    }

    /// `path:line` of a span.
    pub fn at(&self, span: std::ops::Range<usize>) -> String {
        let line = self.text[..span.start.min(self.text.len())]
            .bytes()
            .filter(|&b| b == b'\n')
            .count()
            + 1;
        format!("{}:{line}", self.path.display())
    }

    /// A path of the job file resolved against its directory.
    pub fn resolve(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.dir.join(p)
        }
    }

    fn check(&self) -> anyhow::Result<()> {
        let name = &self.job.name;
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            bail!(
                "{}: [job] name {name:?} must be letters, digits, `_` or `-` (it names the journal)",
                self.path.display()
            );
        }
        if let Source::Csv(csv) = self.source.get_ref() {
            for c in &csv.columns {
                crate::dtype::parse(&c.data_type).with_context(|| {
                    format!("{}: column `{}`", self.at(self.source.span()), c.name)
                })?;
            }
            if csv.columns.is_empty() {
                bail!(
                    "{}: [source] lists no columns (`ferry guess` writes them)",
                    self.at(self.source.span())
                );
            }
        }
        for t in &self.transform {
            let at = self.at(t.span());
            match t.get_ref() {
                TransformSpec::Cast { columns } => {
                    for ty in columns.values() {
                        crate::dtype::parse(ty)
                            .with_context(|| format!("{at}: [[transform]] cast"))?;
                    }
                }
                TransformSpec::Lookup(l) if l.query.is_some() == l.csv.is_some() => {
                    bail!("{at}: [[transform]] lookup needs one of `query` or `csv`");
                }
                TransformSpec::Filter {
                    keep,
                    drop,
                    not_null,
                    ..
                } => {
                    let n = keep.is_some() as u8 + drop.is_some() as u8 + *not_null as u8;
                    if n != 1 {
                        bail!(
                            "{at}: [[transform]] filter needs exactly one of `keep`, `drop`, `not_null`"
                        );
                    }
                }
                TransformSpec::Uuid {
                    method, namespace, ..
                } => {
                    if let Some(m) = method
                        && m != "v5"
                        && m != "embed"
                    {
                        bail!("{at}: [[transform]] uuid method {m:?}: use \"v5\" or \"embed\"");
                    }
                    if let Some(ns) = namespace {
                        uuid::Uuid::parse_str(ns).with_context(|| {
                            format!("{at}: [[transform]] uuid namespace {ns:?}")
                        })?;
                    }
                }
                TransformSpec::Rules { rules } => {
                    for r in rules {
                        for b in [&r.min, &r.max].into_iter().flatten() {
                            b.value()
                                .with_context(|| format!("{at}: rule on `{}`", r.column))?;
                        }
                    }
                }
                _ => {}
            }
        }
        for s in self.prepare.iter().chain(&self.post_switch) {
            let at = self.at(s.span());
            let s = s.get_ref();
            if s.sql.is_some() == s.file.is_some() {
                bail!("{at}: step `{}` needs one of `sql` or `file`", s.name);
            }
        }
        crate::pg_source::check(self)?;
        crate::bubble::check(self)?;
        crate::dynamo::check(self)?;
        if let Target::Postgres(pg) = self.target.get_ref()
            && pg.mode == Mode::Upsert
            && pg.keys.is_empty()
        {
            bail!(
                "{}: [target] mode = \"upsert\" needs `keys`",
                self.at(self.target.span())
            );
        }
        Ok(())
    }
}

impl SqlStepSpec {
    /// The SQL text (inline or read from its file).
    ///
    /// # Errors
    /// The file cannot be read.
    pub fn text(&self, job: &Job) -> anyhow::Result<String> {
        read_sql(job, self.sql.as_deref(), self.file.as_ref(), &self.name)
    }

    /// The fallback SQL text, if any.
    ///
    /// # Errors
    /// The file cannot be read.
    pub fn fallback(&self, job: &Job) -> anyhow::Result<Option<String>> {
        if self.fallback_sql.is_none() && self.fallback_file.is_none() {
            return Ok(None);
        }
        read_sql(
            job,
            self.fallback_sql.as_deref(),
            self.fallback_file.as_ref(),
            &self.name,
        )
        .map(Some)
    }
}

fn read_sql(
    job: &Job,
    sql: Option<&str>,
    file: Option<&SqlFiles>,
    name: &str,
) -> anyhow::Result<String> {
    match (sql, file) {
        (Some(s), _) => Ok(s.to_owned()),
        (None, Some(f)) => f.read(job).with_context(|| format!("step `{name}`")),
        (None, None) => bail!("step `{name}` has no SQL"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = r#"
[job]
name = "t"

[source]
kind = "csv"
path = "a.csv"
columns = [{ name = "id", type = "int64", nullable = false }]

[target]
kind = "postgres"
url = "postgres://x@127.0.0.1/db"
table = "t"
"#;

    #[test]
    fn a_minimal_job_parses() {
        let job = Job::parse(MIN, Path::new("jobs/t.toml")).unwrap();
        assert_eq!(job.job.name, "t");
        assert_eq!(job.resolve("a.csv"), Path::new("jobs/a.csv"));
    }

    #[test]
    fn errors_name_the_line() {
        let bad = MIN.replace("table = \"t\"", "table = \"t\"\ncolour = 1");
        let e = Job::parse(&bad, Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 10") && e.contains("colour"), "{e}");
        let bad = MIN.replace("int64", "int65");
        let e = format!("{:#}", Job::parse(&bad, Path::new("t.toml")).unwrap_err());
        assert!(e.contains("t.toml:5") && e.contains("int65"), "{e}");
        let bad =
            format!("{MIN}\n[[transform]]\nkind = \"filter\"\ncolumn = \"id\"\nreason = \"x\"\n");
        let e = format!("{:#}", Job::parse(&bad, Path::new("t.toml")).unwrap_err());
        assert!(e.contains("t.toml:15") && e.contains("exactly one"), "{e}");
    }
}
