//! `[source] kind = "bubble"`: one Bubble type through `etl_source_bubble` and its declared
//! mapping.
//!
//! ```text
//! BubbleExtract (raw, Created Date windows, paced, retried, drift-checked)
//!   ─> RowMap (the declared columns: ids, codes, e-mails, decimals, refs; rejects with kinds)
//!   ─> Cast + lists (the mapping's text values as typed Arrow columns: timestamps, bools,
//!      int64, decimal(p,s), text lists), then the job's own [[transform]]s
//! ```
//!
//! The rows carry `bubble_id` (the thing's `_id`) and the mapping's columns of the type.
//! `custom` columns (set by a migration's own code in the examples) are NULL here: drop
//! them or give them a `default` transform.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use arrow_array::builder::{ListBuilder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use etl_core::{Batch, SharedTransform, Transform};
use etl_source_bubble::declared::{Conversion, MappingFile, TypeMapping};
use etl_source_bubble::mapping::{MapState, RejectLog};
use etl_source_bubble::{BubbleClient, BubbleConfig, BubbleExtract, KeyMode, PageQuery};

use crate::build::JobRun;
use crate::job::{BubbleSourceSpec, Job, Source};
use sqlx::Connection as _;

/// The Bubble source of a job, if it has one.
pub fn spec(job: &Job) -> Option<&BubbleSourceSpec> {
    match job.source.get_ref() {
        Source::Bubble(s) => Some(s),
        _ => None,
    }
}

fn mapping_path(job: &Job, s: &BubbleSourceSpec) -> PathBuf {
    job.resolve(&s.mapping)
}

/// The declared mapping file of the source, read and validated.
///
/// # Errors
/// The file cannot be read or does not validate (naming the type and column).
pub fn mapping(job: &Job) -> anyhow::Result<Arc<MappingFile>> {
    let s = spec(job).context("the source is not Bubble")?;
    let p = mapping_path(job, s);
    let text = std::fs::read_to_string(&p)
        .with_context(|| format!("[source] mapping: reading {}", p.display()))?;
    let file = MappingFile::from_toml(&text).with_context(|| format!("{}", p.display()))?;
    Ok(Arc::new(file))
}

/// The mapping of the source's type (which must have a table).
fn type_mapping<'a>(job: &Job, file: &'a MappingFile) -> anyhow::Result<&'a TypeMapping> {
    let s = spec(job).context("the source is not Bubble")?;
    let t = file.get(&s.bubble_type).with_context(|| {
        format!(
            "{}: [source] type `{}` is not declared in {} (declared: {})",
            job.at(job.source.span()),
            s.bubble_type,
            s.mapping,
            file.types
                .iter()
                .map(|t| t.bubble_type.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })?;
    if t.table.is_none() {
        bail!(
            "{}: [source] type `{}` has no `table` in {}: it is exported only, nothing to load",
            job.at(job.source.span()),
            s.bubble_type,
            s.mapping
        );
    }
    Ok(t)
}

fn key_mode(s: &BubbleSourceSpec) -> anyhow::Result<KeyMode> {
    match s.key_mode.as_deref() {
        None | Some("display") => Ok(KeyMode::DisplayNames),
        Some("generated") => Ok(KeyMode::GeneratedIds),
        Some(k) => bail!("[source] key_mode {k:?}: use \"display\" or \"generated\""),
    }
}

fn since(s: &BubbleSourceSpec) -> anyhow::Result<Option<chrono::DateTime<chrono::Utc>>> {
    s.since
        .as_deref()
        .map(|t| {
            etl_source_bubble::parse_datetime(t)
                .with_context(|| format!("[source] since {t:?} is not a date (RFC 3339)"))
        })
        .transpose()
}

/// The parent types of the `ref` columns of the source's type.
fn parent_types(t: &TypeMapping) -> Vec<String> {
    let mut out: Vec<String> = t
        .columns
        .iter()
        .filter(|c| c.conversion == Conversion::Ref)
        .filter_map(|c| c.to.clone())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// What the job file must say of a Bubble source: a mapping that validates, a type of it
/// with a table, `parents` for its references, a key mode and `since` that parse.
///
/// # Errors
/// The first problem, naming the line.
pub fn check(job: &Job) -> anyhow::Result<()> {
    let Some(s) = spec(job) else { return Ok(()) };
    let at = job.at(job.source.span());
    key_mode(s).with_context(|| at.clone())?;
    since(s).with_context(|| at.clone())?;
    let file = mapping(job).with_context(|| at.clone())?;
    let t = type_mapping(job, &file)?;
    for p in parent_types(t) {
        if !s.parents.contains_key(&p) {
            bail!(
                "{at}: [source] type `{}` references `{p}`: give `parents = {{ {p} = \"SELECT bubble_id FROM …\" }}` (the {p} ids already migrated)",
                s.bubble_type
            );
        }
    }
    Ok(())
}

/// The Arrow type a conversion's text becomes.
fn arrow_type(c: &etl_source_bubble::declared::ColumnMap) -> DataType {
    use Conversion as C;
    match c.conversion {
        C::Created | C::Modified | C::Date => DataType::Timestamp(TimeUnit::Millisecond, None),
        C::Bool => DataType::Boolean,
        C::Int => DataType::Int64,
        C::Decimal => DataType::Decimal128(c.precision.unwrap_or(38), c.scale.unwrap_or(0)),
        C::List => list_type(),
        _ => DataType::Utf8,
    }
}

fn list_type() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
}

/// The rows' schema: `bubble_id`, then the type's columns, typed.
///
/// # Errors
/// The mapping cannot be read or lacks the type.
pub fn schema(job: &Job) -> anyhow::Result<SchemaRef> {
    let file = mapping(job)?;
    let t = type_mapping(job, &file)?;
    let mut fields = vec![Field::new("bubble_id", DataType::Utf8, false)];
    fields.extend(
        t.columns
            .iter()
            .map(|c| Field::new(&c.name, arrow_type(c), true)),
    );
    Ok(Arc::new(Schema::new(fields)))
}

/// The Data API client of the source.
///
/// # Errors
/// The URL does not parse.
pub fn client(job: &Job) -> anyhow::Result<Arc<BubbleClient>> {
    let s = spec(job).context("the source is not Bubble")?;
    let url = s.url.trim_end_matches('/');
    let url = url.strip_suffix("/obj").unwrap_or(url);
    let mut cfg = BubbleConfig::new(url, s.token.clone());
    if let Some(r) = s.requests_per_minute {
        cfg.requests_per_minute = r.max(1);
    }
    Ok(Arc::new(BubbleClient::new(cfg)?))
}

/// The extract (raw batches of the type) and the transforms that map and type them.
/// `parents` gives the Bubble ids of each parent type already migrated (see
/// [`BubbleSourceSpec::parents`]).
///
/// # Errors
/// The mapping cannot be read; a parent type without ids.
pub fn source(
    job: &Job,
    parallel: usize,
    parents: Vec<(String, Vec<String>)>,
) -> anyhow::Result<(BubbleExtract, Vec<SharedTransform>)> {
    let s = spec(job).context("the source is not Bubble")?;
    let file = mapping(job)?;
    let t = type_mapping(job, &file)?;
    let type_schema = t.schema(key_mode(s)?, &Default::default());
    let extract = BubbleExtract::new(client(job)?, type_schema.clone())
        .raw(true)
        .windows(s.windows.unwrap_or(parallel).max(1))
        .since(since(s)?);
    // The pipeline's rejects.csv lists the rejected things with their reasons.
    let state = Arc::new(MapState::new(RejectLog::discard()));
    for (ty, ids) in parents {
        state.accept_all(&ty, ids);
    }
    let map = file.row_map(Arc::new(type_schema), state, None);
    let casts: Vec<(String, DataType)> = t
        .columns
        .iter()
        .map(|c| (c.name.clone(), arrow_type(c)))
        .filter(|(_, ty)| !matches!(ty, DataType::Utf8 | DataType::List(_)))
        .collect();
    let lists: Vec<String> = t
        .columns
        .iter()
        .filter(|c| c.conversion == Conversion::List)
        .map(|c| c.name.clone())
        .collect();
    let mut transforms: Vec<SharedTransform> = vec![Arc::new(map)];
    if !casts.is_empty() {
        transforms.push(Arc::new(etl_validate::columns::Cast::new(casts)));
    }
    if !lists.is_empty() {
        transforms.push(Arc::new(TextLists { columns: lists }));
    }
    Ok((extract, transforms))
}

/// The Bubble ids of each parent type the source's references need, read with its
/// `parents` query from the PostgreSQL target.
///
/// # Errors
/// The mapping cannot be read; a parent type without a query; the target is not
/// PostgreSQL or a query fails.
pub async fn parents(c: &JobRun) -> anyhow::Result<Vec<(String, Vec<String>)>> {
    let s = spec(&c.job).context("the source is not Bubble")?;
    let file = mapping(&c.job)?;
    let mut out = Vec::new();
    for ty in parent_types(type_mapping(&c.job, &file)?) {
        let query = (s.parents.get(&ty))
            .with_context(|| format!("[source] parents has no query for `{ty}`"))?;
        let opts = c.pg_opts().with_context(|| {
            format!("[source] parents of `{ty}` are read from the target, which must be PostgreSQL")
        })?;
        let mut conn = sqlx::PgConnection::connect_with(&opts).await?;
        let ids: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(query.clone()))
            .fetch_all(&mut conn)
            .await
            .with_context(|| format!("[source] parents `{ty}`: {query}"))?;
        out.push((ty, ids));
    }
    Ok(out)
}

/// Preflight: the Data API answers for the type (one thing fetched).
///
/// # Errors
/// The API refuses (401/404) or cannot be reached after the retries.
pub async fn preflight(job: &Job) -> anyhow::Result<serde_json::Value> {
    let s = spec(job).context("the source is not Bubble")?;
    let q = PageQuery {
        limit: 1,
        ..PageQuery::default()
    };
    let page = client(job)?
        .fetch_page(&s.bubble_type, &q, 1)
        .await
        .with_context(|| format!("the Data API for type `{}`", s.bubble_type))?;
    Ok(serde_json::json!({
        "bubble_type": s.bubble_type,
        "things_reported": page.count + page.remaining,
    }))
}

/// PostgreSQL array literals (`{"a","b \"c\"",NULL}`, what the mapping makes of a list)
/// as `List<Utf8>` columns.
#[derive(Debug)]
struct TextLists {
    columns: Vec<String>,
}

impl Transform for TextLists {
    fn name(&self) -> &str {
        "bubble_lists"
    }

    fn output_schema(&self, input: &SchemaRef) -> etl_core::Result<SchemaRef> {
        let fields: Vec<Field> = input
            .fields()
            .iter()
            .map(|f| {
                if self.columns.contains(f.name()) {
                    Field::new(f.name(), list_type(), true)
                } else {
                    f.as_ref().clone()
                }
            })
            .collect();
        Ok(Arc::new(Schema::new(fields)))
    }

    fn transform(&self, mut batch: Batch) -> etl_core::Result<Batch> {
        let schema = self.output_schema(&batch.data.schema())?;
        let wanted: HashSet<&str> = self.columns.iter().map(String::as_str).collect();
        let mut cols: Vec<ArrayRef> = Vec::with_capacity(batch.data.num_columns());
        for (f, col) in batch
            .data
            .schema()
            .fields()
            .iter()
            .zip(batch.data.columns())
        {
            if !wanted.contains(f.name().as_str()) || col.data_type() != &DataType::Utf8 {
                cols.push(col.clone());
                continue;
            }
            let text = col.as_string::<i32>();
            let mut b = ListBuilder::new(StringBuilder::new());
            for v in text.iter() {
                match v {
                    None => b.append_null(),
                    Some(lit) => {
                        for item in parse_array_literal(lit) {
                            b.values().append_option(item);
                        }
                        b.append(true);
                    }
                }
            }
            cols.push(Arc::new(b.finish()));
        }
        batch.data = RecordBatch::try_new(schema, cols)?;
        Ok(batch)
    }
}

/// The items of an array literal of `etl_source_bubble::mapping` (quoted items with `\"`
/// and `\\` escaped; `NULL` unquoted).
fn parse_array_literal(lit: &str) -> Vec<Option<String>> {
    let inner = lit
        .trim()
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .unwrap_or(lit);
    let mut out = Vec::new();
    let mut chars = inner.chars().peekable();
    while chars.peek().is_some() {
        if chars.peek() == Some(&'"') {
            chars.next();
            let mut s = String::new();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => s.extend(chars.next()),
                    '"' => break,
                    c => s.push(c),
                }
            }
            out.push(Some(s));
        } else {
            let word: String = chars.by_ref().take_while(|c| *c != ',').collect();
            out.push((word.trim() != "NULL").then(|| word.trim().to_owned()));
            continue;
        }
        // the comma after a quoted item
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_literals_parse_back() {
        assert_eq!(
            parse_array_literal(r#"{"a","b \"c\"",NULL,"d\\e"}"#),
            vec![
                Some("a".into()),
                Some("b \"c\"".into()),
                None,
                Some("d\\e".into())
            ]
        );
        assert!(parse_array_literal("{}").is_empty());
    }
}
