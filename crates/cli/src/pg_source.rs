//! `[source] kind = "postgres"`: a table or a query through `etl_source_postgres` (keyset
//! pages in key order, one exported snapshot for every unit, integer keys split into
//! resumable units).

use anyhow::{Context as _, bail};
use arrow_schema::SchemaRef;
use etl_source_postgres::{Entity, PgSource, PgSourceOptions};

use crate::job::{Job, PgSourceSpec, Source};

/// The PostgreSQL source of a job, if it has one.
pub fn spec(job: &Job) -> Option<&PgSourceSpec> {
    match job.source.get_ref() {
        Source::Postgres(s) => Some(s),
        _ => None,
    }
}

/// What the job file must say of a PostgreSQL source: a table or a query, not both.
///
/// # Errors
/// Both or neither; an empty key.
pub fn check(job: &Job) -> anyhow::Result<()> {
    let Some(s) = spec(job) else { return Ok(()) };
    let at = job.at(job.source.span());
    if s.table.is_some() == s.query.is_some() {
        bail!("{at}: [source] kind = \"postgres\" needs exactly one of `table` or `query`");
    }
    if s.key.trim().is_empty() {
        bail!("{at}: [source] key is empty");
    }
    if s.split_every == Some(0) {
        bail!("{at}: [source] split_every must be at least 1");
    }
    Ok(())
}

/// The entity the spec names (unit name: the table's or `query`).
pub fn entity(s: &PgSourceSpec) -> Entity {
    let mut e = match (&s.table, &s.query) {
        (Some(t), _) => {
            let t = etl_sink_postgres::ident::TableName::parse(t);
            let e = Entity::table(t.name.clone(), t.name.clone(), &s.key);
            match &t.schema {
                Some(schema) => e.schema(schema.clone()),
                None => e,
            }
        }
        (None, q) => Entity::query("query", q.clone().unwrap_or_default(), &s.key),
    };
    if let Some(cols) = &s.columns {
        e = e.columns(cols.clone());
    }
    if let Some(n) = s.split_every {
        e = e.split_every(n);
    }
    e
}

/// Connect, export the snapshot and resolve the entity's columns (`parallel` readers).
///
/// # Errors
/// The server cannot be reached (named without its password); a missing table, key or
/// column; a column type without a mapping.
pub async fn source(job: &Job, parallel: usize) -> anyhow::Result<PgSource> {
    let s = spec(job).context("the source is not PostgreSQL")?;
    // One connection holds the exported snapshot; the readers need their own.
    let max = (parallel as u32).clamp(1, 32) + 1;
    PgSource::connect_url(
        s.url.expose(),
        max,
        vec![entity(s)],
        PgSourceOptions::default(),
    )
    .await
    .with_context(|| format!("{}: [source] PostgreSQL", job.at(job.source.span())))
}

/// The Arrow schema of the source's rows (the table's or query's columns, in the
/// PostgreSQL type map of `etl_postgres`).
///
/// # Errors
/// As [`source`].
pub async fn schema(job: &Job) -> anyhow::Result<SchemaRef> {
    use etl_core::Extract as _;
    Ok(source(job, 1).await?.schema())
}

/// Preflight: the rows the snapshot holds and the units they make.
///
/// # Errors
/// As [`source`]; the count fails.
pub async fn preflight(job: &Job) -> anyhow::Result<serde_json::Value> {
    use etl_core::Extract as _;
    let src = source(job, 1).await?;
    let name = src
        .entities()
        .next()
        .map(|e| e.entity.name.clone())
        .unwrap_or_default();
    let rows = src.count(&name).await?;
    let units = src.units().await?.len();
    Ok(serde_json::json!({ "source_rows": rows, "source_units": units }))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::job::Job;

    const JOB: &str = r#"
[job]
name = "t"

[source]
kind = "postgres"
url = "postgres://u:secret@127.0.0.1/db"
table = "public.orders"
key = "id"

[target]
kind = "parquet"
dir = "out"
"#;

    #[test]
    fn a_table_or_a_query_not_both() {
        let job = Job::parse(JOB, Path::new("t.toml")).unwrap();
        let e = super::entity(super::spec(&job).unwrap());
        assert_eq!((e.name.as_str(), e.key.as_str()), ("orders", "id"));
        let both = JOB.replace("key = \"id\"", "key = \"id\"\nquery = \"SELECT 1 AS id\"");
        let err = format!("{:#}", Job::parse(&both, Path::new("t.toml")).unwrap_err());
        assert!(
            err.contains("t.toml:5") && err.contains("exactly one"),
            "{err}"
        );
        let spec = format!("{:?}", super::spec(&job).unwrap());
        assert!(!spec.contains("secret"), "the URL is redacted: {spec}");
    }
}
