use arrow_schema::SchemaRef;
use etl_core::testing::MemoryExtract;
use etl_core::{
    Batch, Error, Pipeline, PipelineOptions, RunInfo, RunStatus, Transform, UnitStatus,
};
use etl_sink_postgres::ident::TableName;
use etl_sink_postgres::{PgLoad, connect_options};

/// Fails on one unit, as a crash would.
struct FailOn(&'static str);
impl Transform for FailOn {
    fn name(&self) -> &str {
        "fail_on"
    }
    fn output_schema(&self, input: &SchemaRef) -> etl_core::Result<SchemaRef> {
        Ok(input.clone())
    }
    fn transform(&self, batch: Batch) -> etl_core::Result<Batch> {
        if &*batch.unit == self.0 {
            return Err(Error::Config(format!("injected failure in {}", self.0)));
        }
        Ok(batch)
    }
}

fn options() -> PipelineOptions {
    PipelineOptions {
        batch_size: 7,
        parallel: 1,
        ..Default::default()
    }
}

#[tokio::test]
async fn units_commit_with_their_checkpoint_and_resume_skips_exactly_those() {
    let (db, mut conn) = super::db().await;
    sqlx::query("CREATE TABLE nums (n bigint NOT NULL)")
        .execute(&mut conn)
        .await
        .unwrap();
    let extract = || MemoryExtract::units(&[("a", 20), ("b", 30), ("c", 40)]);
    let load = || PgLoad::new(connect_options(db.url()).unwrap(), TableName::new("nums"));

    // First attempt: unit b fails after a committed.
    let mut run = RunInfo::new("nums");
    let report = Pipeline::new(extract(), load())
        .transform(FailOn("b"))
        .options(options())
        .run(&run)
        .await;
    assert_eq!(report.status, RunStatus::Failed);
    assert!(
        report
            .error
            .as_deref()
            .unwrap()
            .contains("injected failure in b")
    );
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM nums")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(n, 20, "only unit a is visible");
    let statuses: Vec<(String, String)> = sqlx::query_as(
        "SELECT file_name, status FROM ferry_migration_log WHERE run_id = $1 ORDER BY file_name",
    )
    .bind(run.run_id)
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        statuses,
        vec![
            ("a".into(), "completed".into()),
            ("b".into(), "failed".into())
        ]
    );

    // Resume the same run: a is skipped, b and c load, nothing twice.
    run.resume = true;
    let report = Pipeline::new(extract(), load())
        .options(options())
        .run(&run)
        .await;
    assert_eq!(report.status, RunStatus::Succeeded, "{:?}", report.error);
    assert_eq!(report.units[0].status, UnitStatus::Resumed);
    assert_eq!(report.totals.read, 90);
    assert_eq!(report.totals.loaded, 90);
    let (n, distinct): (i64, i64) = sqlx::query_as("SELECT count(*), count(DISTINCT n) FROM nums")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!((n, distinct), (90, 40));
    let per_value: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT n, count(*) FROM nums GROUP BY n HAVING count(*) <> CASE WHEN n <= 20 THEN 3 WHEN n <= 30 THEN 2 ELSE 1 END",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert!(
        per_value.is_empty(),
        "no duplicates, no gaps: {per_value:?}"
    );
    let (status,): (String,) = sqlx::query_as("SELECT status FROM ferry_runs WHERE run_id = $1")
        .bind(run.run_id)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(status, "validated");
}
