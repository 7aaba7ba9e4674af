//! The job files of the other source and target kinds, run by the `ferry` library against
//! real servers: `s9_to_dynamodb.toml` (the S9 buyers from PostgreSQL into a dynalite)
//! and `bubble_to_postgres.toml` (CultureBridge users from the Bubble-compatible test
//! server into PostgreSQL).

#[allow(dead_code)]
mod support;

use std::path::{Path, PathBuf};

use etl_core::checkpoint::JsonCheckpoint;
use etl_core::migration::{Action, RunOptions};
use etl_core::{RunStatus, UnitStatus};
use etl_examples::culturebridge::fixtures;
use etl_examples::s9::generate;
use etl_sink_dynamodb::admin::count_items;
use etl_sink_dynamodb::aws_sdk_dynamodb::types::AttributeValue;
use etl_sink_dynamodb::dynalite::Dynalite;
use etl_source_bubble::declared::MappingFile;
use etl_source_bubble::test_server::TestServer;
use ferry_cli::build::{JobRun, migration};
use ferry_cli::job::Job;
use sqlx::{Connection, PgConnection};

fn jobs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("jobs")
}

/// The job with its `${VAR}`s from `vars` only.
fn job(name: &str, vars: &[(&str, String)]) -> JobRun {
    let job = Job::load_with(&jobs_dir().join(name), |k| {
        vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
    })
    .unwrap();
    JobRun::new(job, None, Some(2))
}

/// Run `c` as `ferry run` would, with its journal where `ferry` keeps it.
async fn run_job(c: &JobRun, report_dir: &Path, action: Action) -> etl_core::RunReport {
    run_with(c, report_dir, action, RunOptions::new(report_dir)).await
}

async fn run_with(
    c: &JobRun,
    report_dir: &Path,
    action: Action,
    mut opts: RunOptions,
) -> etl_core::RunReport {
    let m = migration(c).unwrap();
    let journal = ferry_cli::commands::journal(c, report_dir).unwrap();
    opts.action = action;
    opts.progress = false;
    m.execute(c, journal.as_ref(), &opts).await.unwrap()
}

fn reconciles(r: &etl_core::RunReport) {
    let t = &r.totals;
    assert_eq!(
        t.read,
        t.loaded + t.rejected + t.filtered,
        "read = loaded + rejected + filtered: {t:?}"
    );
}

/// A port nothing listens on.
fn dead_address() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

fn text(item: &std::collections::HashMap<String, AttributeValue>, k: &str) -> String {
    match item.get(k) {
        Some(AttributeValue::S(v) | AttributeValue::N(v)) => v.clone(),
        other => panic!("{k}: {other:?} in {item:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s9_buyers_go_from_postgres_to_dynamodb_resume_and_roll_back() {
    let db = etl_testkit::TestDb::create().await.unwrap();
    let pool = db.pool().await.unwrap();
    let opts = generate::GenOptions {
        sales: 6_000,
        seed: 9,
    };
    let generated = generate::generate(&pool, opts).await.unwrap();
    let dl = Dynalite::start().await.unwrap();
    let client = dl.client(None);
    let dir = tempfile::tempdir().unwrap();
    let reports = dir.path().join("reports");
    let vars = |endpoint: String| {
        vec![
            ("SOURCE_URL", db.url().to_owned()),
            ("DYNAMODB_ENDPOINT", endpoint),
        ]
    };

    // Nothing listens on the endpoint: the run fails, nothing written ...
    let dead = job(
        "s9_to_dynamodb.toml",
        &vars(format!("http://{}", dead_address())),
    );
    let r = run_job(&dead, &reports, Action::Run).await;
    assert_eq!(r.status, RunStatus::Failed, "{:?}", r.error);

    // A dry run reads, maps and checks every row, and writes nothing: no table.
    let mut c = job("s9_to_dynamodb.toml", &vars(dl.endpoint()));
    let r = run_job(&c, &dir.path().join("dry"), Action::DryRun).await;
    assert_eq!(r.status, RunStatus::DryRun, "{:?}", r.error);
    assert_eq!(r.totals.read, generated.buyers);
    assert!(
        !etl_sink_dynamodb::admin::table_exists(&client, "s9_buyers")
            .await
            .unwrap()
    );

    // ... --resume with the server up creates the table and starts the load, which is
    // interrupted (as by Ctrl-C) once two units are recorded in its checkpoint ...
    c.batch_size = 5;
    c.parallel = 1;
    let ck = JsonCheckpoint::new(
        reports.join("journal/s9_buyers_job.dynamodb.checkpoint.json"),
        "s9_buyers_job",
    );
    let mut opts = RunOptions::new(&reports);
    let cancel = opts.cancel.clone();
    let watch = {
        let ck = ck.clone();
        tokio::spawn(async move {
            while ck.completed().map_or(0, |u| u.len()) < 2 {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
            cancel.cancel();
        })
    };
    opts.unit_retries = 0;
    let r = run_with(&c, &reports, Action::Resume, opts).await;
    watch.abort();
    assert_ne!(r.status, RunStatus::Succeeded, "interrupted");
    let done = ck.completed().unwrap().len();
    assert!(done >= 2, "{done} units recorded before the interruption");

    // ... and a second --resume skips the units recorded and loads the others.
    let r = run_job(&c, &reports, Action::Resume).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.error);
    reconciles(&r);
    let resumed = r
        .units
        .iter()
        .filter(|u| u.status == UnitStatus::Resumed)
        .count();
    assert!(
        resumed >= 2 && resumed < r.units.len(),
        "{resumed} of {} units resumed",
        r.units.len()
    );
    let buyers: i64 = sqlx::query_scalar("SELECT count(*) FROM compradores")
        .fetch_one(&pool)
        .await
        .unwrap();
    let buyers = buyers as u64;
    assert_eq!(buyers, generated.buyers);
    assert_eq!((r.totals.read, r.totals.loaded), (buyers, buyers));
    assert!(r.units.len() > 1, "split_every: {} units", r.units.len());
    assert_eq!(
        count_items(&client, "s9_buyers", None, 2).await.unwrap(),
        buyers
    );

    // One item against its source row.
    let (id, nome, limite, status): (i32, String, Option<String>, String) = sqlx::query_as(
        "SELECT id_comprador, nome, trim_scale(limite_credito)::text, status::text FROM compradores ORDER BY id_comprador LIMIT 1",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let item = client
        .get_item()
        .table_name("s9_buyers")
        .key("PK", AttributeValue::S(format!("BUYER#{id}")))
        .key("SK", AttributeValue::S("#METADATA#buyer".into()))
        .send()
        .await
        .unwrap()
        .item
        .expect("the first buyer's item");
    assert_eq!(text(&item, "Name"), nome);
    assert!(matches!(item.get("BuyerId"), Some(AttributeValue::N(n)) if *n == id.to_string()));
    assert_eq!(text(&item, "Status"), status);
    assert_eq!(text(&item, "EntityType"), "Buyer");
    if let Some(l) = limite {
        assert_eq!(text(&item, "CreditLimit"), l);
    }
    assert!(text(&item, "CreatedAt").ends_with('Z'), "{item:?}");
    assert!(!item.contains_key("usuario_cadastro"));

    // --rollback restores the backup taken before the load: the new table was empty.
    let r = run_job(&c, &reports, Action::Rollback).await;
    assert_eq!(r.status, RunStatus::RolledBack, "{:?}", r.error);
    assert_eq!(count_items(&client, "s9_buyers", None, 2).await.unwrap(), 0);

    // Two more runs put the same items: no duplicates.
    for _ in 0..2 {
        let r = run_job(&c, &reports, Action::Run).await;
        assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.error);
        reconciles(&r);
        assert_eq!(r.totals.loaded, buyers);
        assert_eq!(
            count_items(&client, "s9_buyers", None, 2).await.unwrap(),
            buyers
        );
    }
    let all = support::table_items(&client, "s9_buyers").await;
    assert_eq!(all.len() as u64, buyers);

    // ferry validate's view of the job.
    let (out, ok) = ferry_cli::build::validate(&c).await.unwrap();
    assert!(ok, "{out}");
    assert!(out.contains("exists with the job's key"), "{out}");

    // A query source (a join) into Parquet files: every sale once, with its buyer's name.
    let parts = dir.path().join("parts");
    let text = format!(
        r#"
[job]
name = "s9_sales_query"
batch_size = 1000

[source]
kind = "postgres"
url = "{}"
query = "SELECT v.id_venda, v.status, c.nome AS buyer FROM vendas v LEFT JOIN compradores c USING (id_comprador)"
key = "id_venda"

[target]
kind = "parquet"
dir = "{}"
"#,
        db.url(),
        parts.display()
    );
    let q = JobRun::new(
        Job::parse(&text, &jobs_dir().join("query.toml")).unwrap(),
        None,
        Some(2),
    );
    let r = run_job(&q, &dir.path().join("query"), Action::Run).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.error);
    reconciles(&r);
    let sales: i64 = sqlx::query_scalar("SELECT count(*) FROM vendas")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(r.totals.loaded, sales as u64);
    let mut rows = 0;
    for f in std::fs::read_dir(&parts).unwrap() {
        let f = f.unwrap().path();
        if f.extension().is_some_and(|e| e == "parquet") {
            for b in etl_parquet::read_all(&f).unwrap() {
                assert_eq!(b.schema().field(2).name(), "buyer");
                rows += b.num_rows();
            }
        }
    }
    assert_eq!(rows as i64, sales);
}

type UserRow = (uuid::Uuid, String, String, String, bool, Option<String>);

async fn users(conn: &mut PgConnection) -> Vec<UserRow> {
    let mut rows: Vec<UserRow> = sqlx::query_as(
        "SELECT id, bubble_id, email, role, password_reset_required, password_hash FROM bubble_users",
    )
    .fetch_all(conn)
    .await
    .unwrap();
    rows.sort();
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bubble_users_go_into_postgres_with_their_mapping_and_upsert_again() {
    let db = etl_testkit::TestDb::create().await.unwrap();
    // 100 users: a bad e-mail and an unknown role among them, no second user with an
    // e-mail (the first comes at user 100; the job's gate would veto it).
    let (fx, exp) = fixtures::generate(fixtures::Sizes {
        users: 100,
        ..Default::default()
    });
    let server = TestServer::start(fx, Default::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let vars = |token: &str| {
        vec![
            ("DATABASE_URL", db.url().to_owned()),
            ("BUBBLE_URL", server.base_url()),
            ("BUBBLE_TOKEN", token.to_owned()),
        ]
    };
    let c = job("bubble_to_postgres.toml", &vars(server.token()));
    let r = run_job(&c, &dir.path().join("run1"), Action::Run).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.error);
    reconciles(&r);
    let t = &r.totals;
    assert_eq!(t.read, exp.read["user"]);
    assert_eq!(t.loaded, exp.loaded["user"]);
    assert_eq!(t.rejected, exp.rejected["user"]);
    assert!(t.rejected > 0, "the fixtures have bad e-mails and roles");
    let rejects = std::fs::read_to_string(dir.path().join("run1/rejects.csv")).unwrap();
    assert!(
        rejects.contains("is not a valid address") && rejects.contains("unknown role `superuser`"),
        "{rejects}"
    );

    // Ids are the mapping's UUIDv5 of the Bubble id; roles went through the code map;
    // the Data API gives no passwords.
    let mut conn = PgConnection::connect(db.url()).await.unwrap();
    let rows = users(&mut conn).await;
    assert_eq!(rows.len() as u64, exp.loaded["user"]);
    let mapping = jobs_dir().join("../src/culturebridge/mapping.toml");
    let file = MappingFile::from_toml(&std::fs::read_to_string(mapping).unwrap()).unwrap();
    for (id, bubble_id, email, role, reset, hash) in &rows {
        assert_eq!(*id, file.new_id("user", bubble_id));
        assert_eq!(email, &email.to_lowercase());
        assert!(
            ["client", "coach", "admin"].contains(&role.as_str()),
            "{role}"
        );
        assert!(*reset && hash.is_none());
    }

    // A run with a wrong token fails (401, at once); --resume with the right one
    // completes, and the upsert leaves the same rows (no duplicates).
    let bad = job("bubble_to_postgres.toml", &vars("not-the-token"));
    let r = run_job(&bad, &dir.path().join("run2"), Action::Run).await;
    assert_eq!(r.status, RunStatus::Failed, "{:?}", r.error);
    assert!(!format!("{:?}", r.error).contains("not-the-token"));
    let r = run_job(&c, &dir.path().join("run2"), Action::Resume).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.error);
    reconciles(&r);
    assert_eq!(r.totals.loaded, exp.loaded["user"]);
    assert_eq!(
        users(&mut conn).await,
        rows,
        "a second load changes nothing"
    );

    // ferry validate's view of the job.
    let (out, ok) = ferry_cli::build::validate(&c).await.unwrap();
    assert!(ok, "{out}");
    assert!(out.contains("Bubble Data API answers for `user`"), "{out}");

    // The client profiles next: their `user` references are checked against the users
    // migrated (`parents`); those of rejected or missing users are rejected.
    let text = format!(
        r#"
[job]
name = "bubble_client_profiles"

[source]
kind = "bubble"
url = "{}"
token = "{}"
mapping = "../src/culturebridge/mapping.toml"
type = "client_profile"
parents = {{ user = "SELECT bubble_id FROM bubble_users" }}

[target]
kind = "postgres"
url = "{}"
table = "bubble_client_profiles"
mode = "upsert"
keys = ["id"]
create = """
CREATE TABLE IF NOT EXISTS bubble_client_profiles (
  id uuid PRIMARY KEY, bubble_id text NOT NULL UNIQUE,
  user_id uuid NOT NULL UNIQUE REFERENCES bubble_users (id),
  first_name varchar(100), last_name varchar(100), photo_url varchar(500), phone varchar(20),
  timezone varchar(50), quiz_data jsonb NOT NULL, preferences jsonb,
  created_at timestamp NOT NULL, updated_at timestamp NOT NULL)
"""
"#,
        server.base_url(),
        server.token(),
        db.url()
    );
    let path = jobs_dir().join("profiles.toml");
    let p = JobRun::new(Job::parse(&text, &path).unwrap(), None, Some(2));
    let r = run_job(&p, &dir.path().join("profiles"), Action::Run).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.error);
    reconciles(&r);
    let t = &r.totals;
    assert_eq!(t.read, exp.read["client_profile"]);
    assert_eq!(t.loaded, exp.loaded["client_profile"]);
    assert_eq!(t.rejected, exp.rejected["client_profile"]);
    let orphans: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM bubble_client_profiles p LEFT JOIN bubble_users u ON u.id = p.user_id WHERE u.id IS NULL",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(orphans, 0);
    // Without `parents` the job is refused when it is read, naming the line.
    let e = Job::parse(&text.replace("parents = {", "# {"), &path).unwrap_err();
    assert!(format!("{e:#}").contains("references `user`"), "{e:#}");
}
