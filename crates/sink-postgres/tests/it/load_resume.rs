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

/// Adds `k` (`n % 3` as text) and `q` (`n / 10` as a decimal) to the numbers.
struct KeyAndAmount;
impl Transform for KeyAndAmount {
    fn name(&self) -> &str {
        "key_and_amount"
    }
    fn output_schema(&self, input: &SchemaRef) -> etl_core::Result<SchemaRef> {
        let mut fields: Vec<_> = input.fields().iter().cloned().collect();
        fields.push(arrow_schema::Field::new("k", arrow_schema::DataType::Utf8, false).into());
        fields.push(
            arrow_schema::Field::new("q", arrow_schema::DataType::Decimal128(10, 1), true).into(),
        );
        Ok(std::sync::Arc::new(arrow_schema::Schema::new(fields)))
    }
    fn transform(&self, batch: Batch) -> etl_core::Result<Batch> {
        use arrow_array::cast::AsArray;
        let n = batch
            .data
            .column(0)
            .as_primitive::<arrow_array::types::Int64Type>();
        let k: arrow_array::StringArray =
            n.iter().map(|v| v.map(|v| (v % 3).to_string())).collect();
        let q = n
            .iter()
            .map(|v| v.filter(|v| v % 5 != 0).map(i128::from))
            .collect::<arrow_array::Decimal128Array>()
            .with_precision_and_scale(10, 1)
            .unwrap();
        let schema = self.output_schema(&batch.data.schema())?;
        let mut cols = batch.data.columns().to_vec();
        cols.push(std::sync::Arc::new(k));
        cols.push(std::sync::Arc::new(q));
        let data = arrow_array::RecordBatch::try_new(schema, cols).unwrap();
        Ok(Batch { data, ..batch })
    }
}

/// A rollup's groups are the committed units' rows: a load resumed after a failure did not
/// see the units committed before it and writes none (the reconciliation says so); a load
/// that committed every unit writes groups equal to a `GROUP BY` of the table.
#[tokio::test]
async fn rollup_groups_match_a_group_by_and_a_resumed_load_writes_none() {
    use etl_sink_postgres::ledger::LedgerTables;
    use etl_sink_postgres::rollup::Rollup;
    let (db, mut conn) = super::db().await;
    sqlx::query("CREATE TABLE sums (n bigint NOT NULL, k text NOT NULL, q numeric)")
        .execute(&mut conn)
        .await
        .unwrap();
    let extract = || MemoryExtract::units(&[("a", 20), ("b", 30), ("c", 40)]);
    let rollup = Rollup::new(TableName::new("sums_by_k"), ["k"], ["q"]);
    let load = || {
        PgLoad::new(connect_options(db.url()).unwrap(), TableName::new("sums"))
            .with_rollup(rollup.clone())
    };
    let ledger = LedgerTables::default();
    let mut run = RunInfo::new("sums");
    let report = Pipeline::new(extract(), load())
        .transform(KeyAndAmount)
        .transform(FailOn("b"))
        .options(options())
        .run(&run)
        .await;
    assert_eq!(report.status, RunStatus::Failed);
    run.resume = true;
    let report = Pipeline::new(extract(), load())
        .transform(KeyAndAmount)
        .options(options())
        .run(&run)
        .await;
    assert_eq!(report.status, RunStatus::Succeeded, "{:?}", report.error);
    let counts = rollup.reconcile(&mut conn, &ledger, run.run_id).await;
    assert_eq!(counts.unwrap(), (None, 90), "unit a was committed before");
    // A new run that commits every unit.
    sqlx::query("TRUNCATE sums")
        .execute(&mut conn)
        .await
        .unwrap();
    let run = RunInfo::new("sums");
    let report = Pipeline::new(extract(), load())
        .transform(KeyAndAmount)
        .options(PipelineOptions {
            parallel: 2,
            ..options()
        })
        .run(&run)
        .await;
    assert_eq!(report.status, RunStatus::Succeeded, "{:?}", report.error);
    let groups: Vec<(String, i64, Option<String>)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT k, rows, q::text FROM ({}) g ORDER BY k",
        rollup.groups_sql(run.run_id)
    )))
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let scanned: Vec<(String, i64, Option<String>)> =
        sqlx::query_as("SELECT k, count(*), sum(q)::text FROM sums GROUP BY k ORDER BY k")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(groups.len(), 3);
    assert_eq!(groups, scanned);
    let counts = rollup.reconcile(&mut conn, &ledger, run.run_id).await;
    assert_eq!(counts.unwrap(), (Some(90), 90));
    let (runs,): (i64,) = sqlx::query_as("SELECT count(DISTINCT run_id) FROM sums_by_k")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(runs, 1);
}
