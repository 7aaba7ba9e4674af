//! `[target] kind = "dynamodb"`: rows -> items through `etl_sink_dynamodb`.
//!
//! ```text
//! preflight ─> [create_table] ─> [backup] ─> load
//! load: … the job's transforms ─> KeyTemplates (PK/SK from `pk`/`sk`) ─> ItemCheck (rows
//!       that cannot be items rejected with their reason) ─> DynamoLoad (BatchWriteItem,
//!       retries; units recorded in a checkpoint beside the journal)
//! ```
//!
//! The client gets its endpoint, region and credentials from the job or the standard
//! environment variables only: never from a profile or the instance-metadata service.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, bail};
use arrow_array::builder::StringBuilder;
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use etl_core::migration::{Migration, Step, StepCx, StepKind, StepOutput};
use etl_core::{Batch, Fate, SharedTransform, Transform};
use etl_sink_dynamodb::admin::{TableSpec, ensure_table, table_exists};
use etl_sink_dynamodb::aws_sdk_dynamodb::Client;
use etl_sink_dynamodb::aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use etl_sink_dynamodb::{
    DynamoLoad, ItemCheck, ItemWriter, JsonCheckpoint, KeySchema, MappingOptions, NullMode,
    WriteOptions,
};

use crate::build::JobRun;
use crate::job::{DynamoTargetSpec, Job, Target};

/// The DynamoDB target of a job, if it has one.
pub fn spec(job: &Job) -> Option<&DynamoTargetSpec> {
    match job.target.get_ref() {
        Target::Dynamodb(d) => Some(d),
        _ => None,
    }
}

/// What the job file must say of a DynamoDB target: templates that parse, a `nulls`
/// mode, both halves of explicit credentials.
///
/// # Errors
/// The first problem, naming the line.
pub fn check(job: &Job) -> anyhow::Result<()> {
    let Some(d) = spec(job) else { return Ok(()) };
    let at = job.at(job.target.span());
    Template::parse(&d.pk).with_context(|| format!("{at}: [target] pk"))?;
    if let Some(sk) = &d.sk {
        Template::parse(sk).with_context(|| format!("{at}: [target] sk"))?;
    }
    nulls(d).with_context(|| at.clone())?;
    if d.access_key_id.is_some() != d.secret_access_key.is_some() {
        bail!("{at}: [target] give both access_key_id and secret_access_key, or neither");
    }
    if d.table.is_empty() {
        bail!("{at}: [target] table is empty");
    }
    Ok(())
}

fn nulls(d: &DynamoTargetSpec) -> anyhow::Result<NullMode> {
    match d.nulls.as_deref() {
        None | Some("omit") => Ok(NullMode::Omit),
        Some("null") => Ok(NullMode::Null),
        Some(x) => bail!("[target] nulls {x:?}: use \"omit\" or \"null\""),
    }
}

/// The table's key attributes.
pub fn keys(d: &DynamoTargetSpec) -> KeySchema {
    let pk = d.pk_attribute.clone().unwrap_or_else(|| "PK".into());
    let sk =
        d.sk.as_ref()
            .map(|_| d.sk_attribute.clone().unwrap_or_else(|| "SK".into()));
    KeySchema::new(pk, sk.as_deref())
}

/// A client for the target: `endpoint` (else AWS in `region`), credentials from the job,
/// else `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`, else (with an
/// endpoint only) placeholders for a local server. Nothing else is consulted, so the
/// instance-metadata address is never contacted.
///
/// # Errors
/// No credentials for AWS.
pub fn client(d: &DynamoTargetSpec) -> anyhow::Result<Client> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let expose = |s: &Option<etl_core::Secret>| s.as_ref().map(|s| s.expose().to_owned());
    let creds = match (expose(&d.access_key_id), expose(&d.secret_access_key)) {
        (Some(id), Some(secret)) => {
            Credentials::new(id, secret, expose(&d.session_token), None, "job file")
        }
        _ => match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
            (Some(id), Some(secret)) => {
                Credentials::new(id, secret, var("AWS_SESSION_TOKEN"), None, "environment")
            }
            _ if d.endpoint.is_some() => {
                Credentials::new("local", "local", None, None, "local endpoint")
            }
            _ => bail!(
                "no AWS credentials for DynamoDB table {}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY \
                 (or access_key_id / secret_access_key in [target]); ferry does not read profiles or instance metadata",
                d.table
            ),
        },
    };
    let mut b = etl_sink_dynamodb::aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(
            d.region.clone().unwrap_or_else(|| "us-east-1".into()),
        ))
        .credentials_provider(creds);
    if let Some(ep) = &d.endpoint {
        b = b.endpoint_url(ep);
    }
    Ok(Client::from_conf(b.build()))
}

/// Where the journal and the load's checkpoint of a DynamoDB job go: `journal_dir`
/// (relative to the job file), else `<report dir>/journal`.
pub fn journal_dir(job: &Job, report_dir: &Path) -> PathBuf {
    match spec(job).and_then(|d| d.journal_dir.as_deref()) {
        Some(d) => job.resolve(d),
        None => report_dir.join("journal"),
    }
}

fn write_options(d: &DynamoTargetSpec) -> WriteOptions {
    let mut w = WriteOptions::default();
    if let Some(n) = d.concurrency {
        w.concurrency = n.max(1);
    }
    if let Some(n) = d.max_retries {
        w.max_retries = n;
    }
    w
}

fn mapping_options(d: &DynamoTargetSpec) -> anyhow::Result<MappingOptions> {
    Ok(MappingOptions {
        nulls: nulls(d)?,
        ..MappingOptions::default()
    })
}

/// The load of a run: the sink, and the transforms that make and check the keys (after
/// the job's own).
///
/// # Errors
/// No credentials; a template that does not parse.
pub fn load(c: &JobRun, cx: &StepCx) -> anyhow::Result<(DynamoLoad, Vec<SharedTransform>)> {
    let d = spec(&c.job).context("the target is not DynamoDB")?;
    let keys = keys(d);
    let writer = ItemWriter::new(client(d)?, &d.table, keys.clone(), write_options(d));
    let dir = journal_dir(&c.job, &cx.report_dir);
    let ck = JsonCheckpoint::new(
        dir.join(format!("{}.dynamodb.checkpoint.json", c.job.job.name)),
        c.job.job.name.clone(),
    );
    let mapping = mapping_options(d)?;
    let mut templates = vec![(keys.partition.clone(), Template::parse(&d.pk)?)];
    if let (Some(sk), Some(attr)) = (&d.sk, &keys.sort) {
        templates.push((attr.clone(), Template::parse(sk)?));
    }
    let post: Vec<SharedTransform> = vec![
        Arc::new(KeyTemplates { templates }),
        Arc::new(ItemCheck::new(keys, mapping.clone())),
    ];
    Ok((DynamoLoad::new(writer, mapping, ck), post))
}

/// Preflight: the table exists (or `create` will make it) with the key the job writes.
///
/// # Errors
/// The table is missing without `create`; DynamoDB cannot be reached.
pub async fn preflight(c: &JobRun) -> anyhow::Result<serde_json::Value> {
    let d = spec(&c.job).context("the target is not DynamoDB")?;
    let client = client(d)?;
    let exists = table_exists(&client, &d.table)
        .await
        .with_context(|| format!("DynamoDB at {}", endpoint_of(d)))?;
    if !exists && !d.create {
        bail!(
            "DynamoDB table {} does not exist at {}: create it, or set `create = true` in [target]",
            d.table,
            endpoint_of(d)
        );
    }
    if exists {
        let out = client.describe_table().table_name(&d.table).send().await?;
        let want = keys(d);
        let have: Vec<(String, String)> = out
            .table()
            .map(|t| t.key_schema())
            .unwrap_or_default()
            .iter()
            .map(|k| {
                (
                    k.attribute_name().to_owned(),
                    k.key_type().as_str().to_owned(),
                )
            })
            .collect();
        let mut expected = vec![(want.partition.clone(), "HASH".to_owned())];
        expected.extend(want.sort.clone().map(|s| (s, "RANGE".to_owned())));
        let (mut a, mut b) = (have.clone(), expected.clone());
        a.sort();
        b.sort();
        if a != b {
            bail!(
                "DynamoDB table {} has the key {have:?}, the job writes {expected:?} (set pk_attribute / sk_attribute)",
                d.table
            );
        }
    }
    Ok(serde_json::json!({ "dynamodb_table": d.table, "table_exists": exists }))
}

/// `ferry validate`'s lines for a DynamoDB target: the key templates read columns of
/// the output, the table is reachable with the key the job writes.
pub async fn validate(c: &JobRun, output: &SchemaRef) -> Vec<(bool, String)> {
    let Some(d) = spec(&c.job) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let keys = keys(d);
    let mut templates = vec![(keys.partition.clone(), d.pk.clone())];
    if let (Some(sk), Some(attr)) = (&d.sk, &keys.sort) {
        templates.push((attr.clone(), sk.clone()));
    }
    for (attr, t) in templates {
        let missing: Vec<String> = Template::parse(&t)
            .map(|t| {
                t.columns()
                    .filter(|c| output.field_with_name(c).is_err())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        out.push((
            missing.is_empty(),
            if missing.is_empty() {
                format!("key {attr} = {t:?}")
            } else {
                format!("key {attr} = {t:?} reads no column {}", missing.join(", "))
            },
        ));
    }
    match preflight(c).await {
        Ok(v) => out.push((
            true,
            format!(
                "DynamoDB table {} at {} {}",
                d.table,
                endpoint_of(d),
                if v["table_exists"] == true {
                    "exists with the job's key"
                } else {
                    "does not exist (the create_table step makes it)"
                }
            ),
        )),
        Err(e) => out.push((false, format!("target: {e:#}"))),
    }
    out
}

/// What the report says the target is: `DynamoDB table T at <endpoint>` (or `at AWS
/// <region>`); never a credential.
pub fn target_line(d: &DynamoTargetSpec) -> String {
    format!("DynamoDB table {} at {}", d.table, endpoint_of(d))
}

fn endpoint_of(d: &DynamoTargetSpec) -> String {
    d.endpoint.clone().unwrap_or_else(|| {
        format!(
            "AWS {}",
            d.region.clone().unwrap_or_else(|| "us-east-1".into())
        )
    })
}

/// The steps of a DynamoDB job after its preflight: `create_table` (with `create`),
/// `backup` (with `backup`), then `load` (`load`, built by the caller): undone by restoring
/// the backup, or irreversible without one.
pub fn steps(m: Migration<JobRun>, c: &JobRun, load: Step<JobRun>) -> Migration<JobRun> {
    let Some(d) = spec(&c.job) else { return m };
    let load = load.describe(
        "reads the source, applies the transforms, puts every unit's items (the unit then recorded in the checkpoint)",
    );
    let mut m = m.restart_unfinished();
    if d.create {
        m = m.step(
            Step::new("create_table", StepKind::Prepare, |c: &JobRun, _cx| {
                Box::pin(async move { Ok(create_table(c).await?) })
            })
            .describe("creates the DynamoDB table when missing (on-demand billing, string keys)"),
        );
    }
    if d.backup {
        m = m.step(
            Step::new("backup", StepKind::Backup, |c: &JobRun, cx| {
                Box::pin(async move {
                    let d = spec(&c.job).ok_or("the target is not DynamoDB")?;
                    let dir = match &d.backup_dir {
                        Some(b) => c.job.resolve(b),
                        None => cx.report_dir.join("backup"),
                    };
                    let table = TableSpec {
                        name: d.table.clone(),
                        keys: keys(d),
                        indexes: Vec::new(),
                    };
                    etl_sink_dynamodb::steps::backup_step(&client(d)?, &[table], &dir).await
                })
            })
            .describe("scans the DynamoDB table into a Parquet file (what --rollback restores)"),
        );
        m.step(load.undo(|c: &JobRun, cx| {
            Box::pin(async move {
                let d = spec(&c.job).ok_or("the target is not DynamoDB")?;
                etl_sink_dynamodb::steps::undo_from_backups(
                    &client(d)?,
                    cx,
                    "backup",
                    write_options(d),
                )
                .await
            })
        }))
    } else {
        m.step(load.irreversible(
            "items were put into DynamoDB without a backup (set `backup = true` in [target] to make the load undoable)",
        ))
    }
}

async fn create_table(c: &JobRun) -> anyhow::Result<StepOutput> {
    let d = spec(&c.job).context("the target is not DynamoDB")?;
    let spec = TableSpec {
        name: d.table.clone(),
        keys: keys(d),
        indexes: Vec::new(),
    };
    let created = ensure_table(&client(d)?, &spec).await?;
    Ok(StepOutput::message(if created {
        format!("created {}", d.table)
    } else {
        format!("{} exists", d.table)
    })
    .with_details(serde_json::json!({ "created": created })))
}

/// A key template: literal text and `{column}` placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(Vec<Part>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Column(String),
}

impl Template {
    /// Parse `CUSTOMER#{customer_id}` (`{{` and `}}` are literal braces).
    ///
    /// # Errors
    /// An unclosed or empty placeholder, a stray `}`, an empty template.
    pub fn parse(s: &str) -> anyhow::Result<Template> {
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut chars = s.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    text.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    text.push('}');
                }
                '{' => {
                    let name: String = chars.by_ref().take_while(|c| *c != '}').collect();
                    if name.trim().is_empty() || name.contains('{') {
                        bail!("template {s:?}: a placeholder must be `{{column}}`");
                    }
                    if !text.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut text)));
                    }
                    parts.push(Part::Column(name.trim().to_owned()));
                }
                '}' => bail!("template {s:?}: `}}` without `{{` (write `}}}}` for a brace)"),
                c => text.push(c),
            }
        }
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        if parts.is_empty() {
            bail!("the template is empty");
        }
        // An unclosed `{` ends the input inside take_while: check the braces balance.
        let opens = s.matches('{').count() - 2 * s.matches("{{").count();
        let closes = s.matches('}').count() - 2 * s.matches("}}").count();
        if opens != closes {
            bail!("template {s:?}: an unclosed `{{`");
        }
        Ok(Template(parts))
    }

    /// The columns it reads.
    pub fn columns(&self) -> impl Iterator<Item = &str> {
        self.0.iter().filter_map(|p| match p {
            Part::Column(c) => Some(c.as_str()),
            Part::Text(_) => None,
        })
    }
}

/// Adds (or replaces) the key attributes, rendered from their templates; a row with a
/// NULL or empty placeholder is rejected (`missing_key`).
#[derive(Debug)]
struct KeyTemplates {
    templates: Vec<(String, Template)>,
}

impl Transform for KeyTemplates {
    fn name(&self) -> &str {
        "dynamodb_keys"
    }

    fn output_schema(&self, input: &SchemaRef) -> etl_core::Result<SchemaRef> {
        for (attr, t) in &self.templates {
            for col in t.columns() {
                if input.field_with_name(col).is_err() {
                    return Err(etl_core::Error::Config(format!(
                        "[target] key {attr}: the rows have no column `{col}` (columns: {})",
                        input
                            .fields()
                            .iter()
                            .map(|f| f.name().as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
            }
        }
        let mut fields: Vec<Field> = self
            .templates
            .iter()
            .map(|(attr, _)| Field::new(attr, DataType::Utf8, false))
            .collect();
        fields.extend(
            input
                .fields()
                .iter()
                .filter(|f| !self.templates.iter().any(|(a, _)| a == f.name()))
                .map(|f| f.as_ref().clone()),
        );
        Ok(Arc::new(Schema::new(fields)))
    }

    fn transform(&self, mut batch: Batch) -> etl_core::Result<Batch> {
        let input = batch.data.schema();
        let schema = self.output_schema(&input)?;
        let n = batch.num_rows();
        let mut fates: Vec<Option<Fate>> = vec![None; n];
        let mut keys: Vec<Vec<String>> = vec![Vec::with_capacity(n); self.templates.len()];
        for (row, fate) in fates.iter_mut().enumerate() {
            for (i, (attr, t)) in self.templates.iter().enumerate() {
                let mut s = String::new();
                for p in &t.0 {
                    match p {
                        Part::Text(x) => s.push_str(x),
                        Part::Column(c) => {
                            let col = batch.data.column(input.index_of(c)?);
                            let v = etl_core::batch::render_value(col, row);
                            if col.is_null(row) || v.is_empty() {
                                fate.get_or_insert(Fate::Reject {
                                    column: Some(c.clone()),
                                    kind: "missing_key".into(),
                                    reason: format!("{c} is empty: no {attr} for the item"),
                                });
                            }
                            s.push_str(&v);
                        }
                    }
                }
                keys[i].push(s);
            }
        }
        let mut cols: Vec<ArrayRef> = keys
            .into_iter()
            .map(|k| {
                let mut b = StringBuilder::new();
                for v in k {
                    b.append_value(v);
                }
                Arc::new(b.finish()) as ArrayRef
            })
            .collect();
        for (f, col) in input.fields().iter().zip(batch.data.columns()) {
            if !self.templates.iter().any(|(a, _)| a == f.name()) {
                cols.push(col.clone());
            }
        }
        batch.data = RecordBatch::try_new(schema, cols)?;
        if fates.iter().any(Option::is_some) {
            batch.apply_fates(&fates)?;
        }
        Ok(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_parse_and_refuse_bad_braces() {
        let t = Template::parse("CUSTOMER#{customer_id}#{ region }").unwrap();
        assert_eq!(t.columns().collect::<Vec<_>>(), ["customer_id", "region"]);
        assert_eq!(Template::parse("PROFILE").unwrap().columns().count(), 0);
        assert_eq!(
            Template::parse("A{{x}}").unwrap(),
            Template(vec![Part::Text("A{x}".into())])
        );
        for bad in ["A#{id", "A#{}", "A}", ""] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn aws_without_credentials_is_refused_not_looked_up() {
        if std::env::var_os("AWS_ACCESS_KEY_ID").is_some() {
            return;
        }
        let text = r#"
[job]
name = "t"
[source]
kind = "parquet"
path = "x.parquet"
[target]
kind = "dynamodb"
table = "items"
pk = "ITEM#{id}"
"#;
        let job = Job::parse(text, std::path::Path::new("t.toml")).unwrap();
        let err = client(spec(&job).unwrap()).unwrap_err().to_string();
        assert!(err.contains("no AWS credentials"), "{err}");
        let local = text.replace(
            "table = \"items\"",
            "table = \"items\"\nendpoint = \"http://127.0.0.1:1\"",
        );
        let job = Job::parse(&local, std::path::Path::new("t.toml")).unwrap();
        assert!(client(spec(&job).unwrap()).is_ok());
        assert_eq!(
            target_line(spec(&job).unwrap()),
            "DynamoDB table items at http://127.0.0.1:1"
        );
    }
}
