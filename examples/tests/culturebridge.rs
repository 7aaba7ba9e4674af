//! The CultureBridge migration end to end: the Bubble-compatible test server, a real
//! PostgreSQL (etl-testkit), exact counts from the fixtures' own expectations, the rollback
//! script, incremental upserts, both key modes, passwords from a CSV, the post-load sample
//! check against the API (every type, every column mapped from the API), and the run layer:
//! `--plan`, `--resume` after a failed export, `--rollback` to the exact pre-run state, one
//! report listing the seed's files.

mod support;

use std::path::Path;

use etl_examples::culturebridge::provenance;
use etl_examples::culturebridge::sample::{Mismatch, compare_sample, sample_check};
use etl_examples::culturebridge::schema::{MIGRATED, NOT_MIGRATED};
use etl_examples::culturebridge::{
    Args, Paths, fixtures, init_logging, plan, run, schemas, start_test_server, timestamp,
};
use etl_source_bubble::test_server::TestServer;
use etl_source_bubble::{BubbleClient, BubbleConfig};
use sqlx::PgPool;

fn args(db: &str, dir: &Path, extra: &[&str]) -> Args {
    let v = argv(db, dir, extra);
    etl_core::cli::parse_args_from(v.into_iter().map(std::ffi::OsString::from)).unwrap()
}

/// The command line of [`args`], the program name first.
fn argv(db: &str, dir: &Path, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = [
        "culturebridge",
        "--users",
        "400",
        "--windows",
        "3",
        "--requests-per-minute",
        "60000",
        "--sample",
        "5",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    v.extend(["--database-url".into(), db.to_owned()]);
    v.extend([
        "--export-dir".into(),
        dir.join("export").display().to_string(),
    ]);
    v.extend([
        "--report-dir".into(),
        dir.join("reports").display().to_string(),
    ]);
    v.extend(extra.iter().map(|s| (*s).to_owned()));
    v
}

const TABLES: [&str; 10] = [
    "users",
    "client_profiles",
    "coach_profiles",
    "bookings",
    "payments",
    "posts",
    "comments",
    "resources",
    "bubble_id_map",
    "migration_runs",
];

async fn snapshot(pool: &PgPool) -> Vec<String> {
    let mut out = Vec::new();
    for t in TABLES {
        let q = format!(
            "SELECT coalesce(jsonb_agg(to_jsonb(t) ORDER BY to_jsonb(t)::text), '[]')::text FROM {t} t"
        );
        let (s,): (String,) = sqlx::query_as(sqlx::AssertSqlSafe(q))
            .fetch_one(pool)
            .await
            .unwrap();
        out.push(s);
    }
    out
}

async fn apply(pool: &PgPool, sql_file: &Path) {
    let sql = std::fs::read_to_string(sql_file).unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(pool)
        .await
        .unwrap();
}

/// The finding `check` of a run.
fn finding<'a>(
    out: &'a etl_examples::culturebridge::Outcome,
    check: &str,
) -> &'a etl_core::Finding {
    out.report
        .validation
        .iter()
        .find(|f| f.check == check)
        .unwrap_or_else(|| panic!("no finding `{check}` in {:#?}", out.report.validation))
}

/// A client of `server` that is never the bottleneck.
fn client_of(server: &TestServer) -> BubbleClient {
    let mut cfg = BubbleConfig::new(server.base_url(), etl_core::Secret::new(server.token()));
    cfg.requests_per_minute = 1_000_000;
    BubbleClient::new(cfg).unwrap()
}

fn assert_counts(out: &etl_examples::culturebridge::Outcome, exp: &fixtures::Expected) {
    let pt = out.report.extra["per_type"].as_object().unwrap();
    for (t, read) in &exp.read {
        let v = &pt[t];
        let got = (
            v["read"].as_u64().unwrap(),
            v["loaded"].as_u64().unwrap(),
            v["rejected"].as_u64().unwrap(),
            v["filtered"].as_u64().unwrap(),
        );
        let want = (*read, exp.loaded[t], exp.rejected[t], exp.filtered[t]);
        assert_eq!(got, want, "type {t}: (read, loaded, rejected, filtered)");
        assert_eq!(got.0, got.1 + got.2 + got.3, "type {t} reconciles");
    }
    assert_eq!(
        out.report.extra["parent_rejected"].as_u64().unwrap(),
        exp.parent_rejected
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_migration_exact_counts_and_rollback_restores_the_pre_run_state() {
    let db = etl_testkit::TestDb::create().await.unwrap();
    let pool = db.pool().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let a = args(db.url(), dir.path(), &[]);
    sqlx::raw_sql(etl_examples::culturebridge::schema::DDL)
        .execute(&pool)
        .await
        .unwrap();
    let before = snapshot(&pool).await;
    let (server, exp) = start_test_server(&a).await.unwrap();
    let out = run(&a, &timestamp(), Some((&server, exp.clone())))
        .await
        .unwrap();
    assert!(out.report.succeeded(), "{:?}", out.report.error);
    assert_counts(&out, &exp);
    assert!(exp.parent_rejected > 0 && exp.rejected["user"] > 0);
    // the sample check compared `--sample 5` things of every migrated type
    let sample = finding(&out, "sample_matches_api");
    assert!(sample.passed, "{}", sample.message);
    assert!(
        sample.message.starts_with(
            "40 random staged things identical to the API in every column mapped from it (user 5, client_profile 5, coach_profile 5, booking 5, payment 5, post 5, comment 5, resource 5;"
        ),
        "{}",
        sample.message
    );
    assert!(finding(&out, "ids_deterministic").passed);
    // every user loaded has no password and must reset it
    let (n, reset): (i64, i64) = sqlx::query_as("SELECT count(*), count(*) FILTER (WHERE password_hash IS NULL AND password_reset_required) FROM users").fetch_one(&pool).await.unwrap();
    assert_eq!(
        (n as u64, reset as u64),
        (exp.loaded["user"], exp.loaded["user"])
    );
    assert_eq!(
        out.report.extra["password_reset_required"]
            .as_u64()
            .unwrap(),
        exp.loaded["user"]
    );
    // children of rejected parents are in the error log with the reason
    let errors = std::fs::read_to_string(&out.paths.errors).unwrap();
    assert_eq!(
        errors.matches(",parent rejected,").count() as u64,
        exp.parent_rejected
    );
    assert!(errors.contains("unknown role `superuser`"));
    // id maps exported
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("export/user_id_mapping.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(map.len() as u64, exp.loaded["user"]);
    for p in [&out.paths.summary, &out.paths.json, &out.paths.rollback] {
        assert!(p.exists(), "{}", p.display());
    }
    assert!(dir.path().join("reports/report.json").exists());
    assert!(
        dir.path().join("export/booking.csv").exists()
            && dir.path().join("export/post.parquet").exists()
    );
    // the rollback script restores exactly the pre-run state
    apply(&pool, &out.paths.rollback).await;
    assert_eq!(snapshot(&pool).await, before);

    // rerun from the export, then an incremental run with changed things
    let a2 = args(db.url(), dir.path(), &["--skip-export"]);
    let out2 = run(&a2, &timestamp(), Some((&server, exp.clone())))
        .await
        .unwrap();
    assert!(out2.report.succeeded(), "{:?}", out2.report.error);
    assert_counts(&out2, &exp);
    // The report says whose export it loaded: the first run's.
    assert_eq!(
        out2.report.extra["export_from"],
        serde_json::json!({"run_id": out.report.run_id, "reused": true})
    );
    let summary = std::fs::read_to_string(&out2.paths.summary).unwrap();
    assert!(summary.contains(&out.report.run_id), "{summary}");
    let after_first = snapshot(&pool).await;

    let (mut fx, _) = fixtures::generate(fixtures::Sizes {
        users: 400,
        ..Default::default()
    });
    let users = fx.things_mut("user").unwrap();
    let mut changed = 0;
    for (i, u) in users.iter_mut().enumerate() {
        if i % 10 == 0 && u["type"] == "coach" {
            u.insert("active".into(), serde_json::json!(false));
            u.insert(
                "Modified Date".into(),
                serde_json::json!("2030-01-01T00:00:00.000Z"),
            );
            changed += 1;
        }
    }
    let server2 = etl_source_bubble::test_server::TestServer::start(fx, Default::default())
        .await
        .unwrap();
    let mut a3 = args(db.url(), dir.path(), &["--incremental"]);
    a3.export_dir = dir.path().join("export-incr");
    let out3 = run(&a3, &timestamp(), Some((&server2, exp.clone())))
        .await
        .unwrap();
    assert!(out3.report.succeeded(), "{:?}", out3.report.error);
    // only what this run staged is sampled: the changed users
    let sample = finding(&out3, "sample_matches_api");
    assert!(sample.passed, "{}", sample.message);
    assert!(
        sample.message.contains(&format!(
            "(user {}, client_profile 0, coach_profile 0, booking 0, payment 0, post 0, comment 0, resource 0;",
            changed.min(5)
        )),
        "{}",
        sample.message
    );
    assert_eq!(
        out3.report.extra["updated"]["users"].as_u64().unwrap(),
        changed
    );
    assert_eq!(
        out3.report.extra["per_type"]["booking"]["read"]
            .as_u64()
            .unwrap(),
        0,
        "unchanged things are not read again"
    );
    let (inactive,): (i64,) = sqlx::query_as("SELECT count(*) FROM users WHERE NOT is_active AND role = 'coach' AND updated_at = '2030-01-01'").fetch_one(&pool).await.unwrap();
    assert_eq!(inactive, changed as i64);
    apply(&pool, &out3.paths.rollback).await;
    assert_eq!(
        snapshot(&pool).await,
        after_first,
        "rollback restores updated rows"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_field_ids_give_the_same_counts() {
    let db = etl_testkit::TestDb::create().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let a = args(
        db.url(),
        dir.path(),
        &["--key-mode", "generated", "--users", "250"],
    );
    let (server, exp) = start_test_server(&a).await.unwrap();
    let out = run(&a, &timestamp(), Some((&server, exp.clone())))
        .await
        .unwrap();
    assert!(out.report.succeeded(), "{:?}", out.report.error);
    assert_counts(&out, &exp);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_from_a_csv_are_bcrypted_and_never_written_in_plaintext() {
    let db = etl_testkit::TestDb::create().await.unwrap();
    let pool = db.pool().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (fx, exp) = fixtures::generate(fixtures::Sizes {
        users: 120,
        ..Default::default()
    });
    // the old system's CSV: the user columns plus a password
    let existing = bcrypt::hash("kept-hash-password", 4).unwrap();
    let mut csv =
        String::from("_id,created_date,modified_date,email,type,active,verified,password\n");
    let mut plain = Vec::new();
    for (i, u) in fx.things("user").iter().enumerate() {
        let pw = match i % 10 {
            0 => String::new(),
            1 => existing.clone(),
            _ => format!("Pl4intext-secret-{i:05}"),
        };
        if i % 10 >= 2 {
            plain.push((
                u["email"].as_str().unwrap().to_ascii_lowercase(),
                pw.clone(),
            ));
        }
        csv.push_str(&format!(
            "{},{},{},{},{},{},{},{}\n",
            u["_id"].as_str().unwrap(),
            u["Created Date"].as_str().unwrap(),
            u["Modified Date"].as_str().unwrap(),
            u["email"].as_str().unwrap(),
            u["type"].as_str().unwrap(),
            u["active"],
            u["verified"],
            pw
        ));
    }
    let csv_path = dir.path().join("users_with_passwords.csv");
    std::fs::write(&csv_path, csv).unwrap();
    let a = args(
        db.url(),
        dir.path(),
        &[
            "--users",
            "120",
            "--users-csv",
            csv_path.to_str().unwrap(),
            "--bcrypt-cost",
            "4",
        ],
    );
    let (server, _) = start_test_server(&a).await.unwrap();
    let out = run(&a, &timestamp(), Some((&server, exp.clone())))
        .await
        .unwrap();
    assert!(out.report.succeeded(), "{:?}", out.report.error);
    assert_counts(&out, &exp);
    let hashed = out.report.totals.counters["passwords_hashed"];
    assert!(hashed > 50);
    let rows: Vec<(String, Option<String>, bool)> =
        sqlx::query_as("SELECT email, password_hash, password_reset_required FROM users")
            .fetch_all(&pool)
            .await
            .unwrap();
    let mut verified = 0;
    for (email, pw) in &plain {
        if let Some((_, Some(h), reset)) = rows.iter().find(|r| &r.0 == email) {
            assert!(h.starts_with("$2b$04$"), "cost 4 from the config: {h}");
            assert!(bcrypt::verify(pw, h).unwrap());
            assert!(!reset);
            verified += 1;
        }
    }
    assert_eq!(verified as u64, hashed);
    assert!(
        rows.iter()
            .any(|r| r.1.as_deref() == Some(existing.as_str())),
        "an existing hash is kept"
    );
    assert!(
        rows.iter().any(|r| r.1.is_none() && r.2),
        "no password: reset required"
    );
    // plaintext appears in no output file
    let mut files = Vec::new();
    let mut stack = vec![dir.path().join("reports"), dir.path().join("export")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.path().is_dir() {
                stack.push(e.path())
            } else {
                files.push(e.path())
            }
        }
    }
    assert!(files.len() > 10);
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains("Pl4intext-secret"),
            "plaintext in {}",
            f.display()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_check_compares_every_type_and_names_type_id_column_and_values() {
    let db = etl_testkit::TestDb::create().await.unwrap();
    let pool = db.pool().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let a = args(db.url(), dir.path(), &["--users", "120"]);
    let (server, exp) = start_test_server(&a).await.unwrap();
    let out = run(&a, &timestamp(), Some((&server, exp.clone())))
        .await
        .unwrap();
    assert!(out.report.succeeded(), "{:?}", out.report.error);
    let schemas = schemas(&a).unwrap();
    let all = 1_000_000;

    // every staged thing of every type, re-read from the API, maps to the staged row exactly
    let clean = compare_sample(&client_of(&server), &pool, &schemas, &a.export_dir, all)
        .await
        .unwrap();
    assert!(
        clean.mismatches.is_empty() && clean.problems.is_empty(),
        "{clean:#?}"
    );
    assert!(clean.bad_ids.is_empty());
    let want: Vec<(String, u64)> = MIGRATED
        .iter()
        .map(|t| ((*t).to_owned(), exp.loaded[*t]))
        .collect();
    assert_eq!(clean.compared, want, "every staged thing compared");
    assert!(want.iter().all(|w| w.1 > 0));

    // the API changes after the export: one coach's rate, one payment's amount, one client
    // profile deleted, one booking's duration made invalid
    let loaded = |ty: &'static str| {
        let pool = pool.clone();
        async move {
            let (b,): (String,) = sqlx::query_as(
                "SELECT bubble_id FROM bubble_id_map WHERE bubble_type = $1 ORDER BY bubble_id LIMIT 1",
            )
            .bind(ty)
            .fetch_one(&pool)
            .await
            .unwrap();
            b
        }
    };
    let (coach, payment, client, booking) = (
        loaded("coach_profile").await,
        loaded("payment").await,
        loaded("client_profile").await,
        loaded("booking").await,
    );
    let staged = |sql: &'static str, id: String| {
        let pool = pool.clone();
        async move {
            let (v,): (String,) = sqlx::query_as(sql).bind(id).fetch_one(&pool).await.unwrap();
            v
        }
    };
    let old_rate = staged(
        "SELECT s.hourly_rate::text FROM cb_staging.coach_profiles s JOIN cb_staging.id_map i ON i.new_id = s.id WHERE i.bubble_id = $1",
        coach.clone(),
    )
    .await;
    let old_amount = staged(
        "SELECT s.amount::text FROM cb_staging.payments s JOIN cb_staging.id_map i ON i.new_id = s.id WHERE i.bubble_id = $1",
        payment.clone(),
    )
    .await;
    let new_rate = if old_rate == "77.77" {
        "88.88"
    } else {
        "77.77"
    };
    let new_amount = if old_amount == "12.34" {
        "43.21"
    } else {
        "12.34"
    };
    let (mut fx, _) = fixtures::generate(fixtures::Sizes {
        users: 120,
        ..Default::default()
    });
    let set = |fx: &mut etl_source_bubble::test_server::Fixtures,
               ty: &str,
               id: &str,
               key: &str,
               v: serde_json::Value| {
        let t = fx
            .things_mut(ty)
            .unwrap()
            .iter_mut()
            .find(|t| t["_id"] == id)
            .unwrap();
        t.insert(key.into(), v);
    };
    set(
        &mut fx,
        "coach_profile",
        &coach,
        "rate",
        serde_json::json!(new_rate.parse::<f64>().unwrap()),
    );
    set(
        &mut fx,
        "payment",
        &payment,
        "payment_amount",
        serde_json::json!(new_amount.parse::<f64>().unwrap()),
    );
    set(
        &mut fx,
        "booking",
        &booking,
        "duration",
        serde_json::json!(-5),
    );
    fx.things_mut("client_profile")
        .unwrap()
        .retain(|t| t["_id"] != client.as_str());
    let changed = TestServer::start(fx, Default::default()).await.unwrap();

    let found = compare_sample(&client_of(&changed), &pool, &schemas, &a.export_dir, all)
        .await
        .unwrap();
    let mut got = found.mismatches.clone();
    got.sort();
    let mut want_mm = vec![
        Mismatch {
            bubble_type: "coach_profile".to_owned(),
            bubble_id: coach.clone(),
            column: "hourly_rate".to_owned(),
            staged: Some(old_rate.clone()),
            api: Some(new_rate.to_owned()),
        },
        Mismatch {
            bubble_type: "payment".to_owned(),
            bubble_id: payment.clone(),
            column: "amount".to_owned(),
            staged: Some(old_amount.clone()),
            api: Some(new_amount.to_owned()),
        },
    ];
    want_mm.sort();
    assert_eq!(got, want_mm, "exactly the changed columns differ");
    assert_eq!(found.problems.len(), 2, "{:#?}", found.problems);
    assert!(found.problems.contains(&format!(
        "client_profile {client}: staged, but no longer exists in Bubble"
    )));
    assert!(found.problems.contains(&format!(
        "booking {booking}: staged, but the mapping now rejects the API's thing (duration: duration -5 is outside 1-2147483647)"
    )));
    let mut compared = want.clone();
    for (t, n) in &mut compared {
        if t == "client_profile" || t == "booking" {
            *n -= 1;
        }
    }
    assert_eq!(found.compared, compared);

    // the finding vetoes and names type, Bubble id, column, staged and API-derived value
    let findings = sample_check(&client_of(&changed), &pool, &schemas, &a.export_dir, all)
        .await
        .unwrap();
    let f = findings
        .iter()
        .find(|f| f.check == "sample_matches_api")
        .unwrap();
    assert!(f.vetoes(), "{f:?}");
    for needle in [
        format!("coach_profile {coach}: hourly_rate staged {old_rate} vs API-derived {new_rate}"),
        format!("payment {payment}: amount staged {old_amount} vs API-derived {new_amount}"),
        format!("client_profile {client}: staged, but no longer exists in Bubble"),
        format!("booking {booking}: staged, but the mapping now rejects"),
    ] {
        assert!(
            f.message.contains(&needle),
            "`{needle}` not in {}",
            f.message
        );
    }
    assert!(
        f.message.starts_with("4 differences from the API in "),
        "{}",
        f.message
    );

    // staging changed instead of the API: caught the same way, in a JSON column
    let (profile,): (String,) = sqlx::query_as(
        "SELECT i.bubble_id FROM cb_staging.client_profiles s JOIN cb_staging.id_map i ON i.new_id = s.id ORDER BY i.bubble_id LIMIT 1",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    sqlx::query(
        "UPDATE cb_staging.client_profiles SET preferences = '{\"staged\": true}' WHERE id = (SELECT new_id FROM cb_staging.id_map WHERE bubble_id = $1)",
    )
    .bind(&profile)
    .execute(&pool)
    .await
    .unwrap();
    let again = compare_sample(&client_of(&server), &pool, &schemas, &a.export_dir, all)
        .await
        .unwrap();
    assert_eq!(again.problems, Vec::<String>::new());
    assert_eq!(again.mismatches.len(), 1, "{:#?}", again.mismatches);
    let m = &again.mismatches[0];
    assert_eq!(
        (
            m.bubble_type.as_str(),
            m.bubble_id.as_str(),
            m.column.as_str()
        ),
        ("client_profile", profile.as_str(), "preferences")
    );
    assert_eq!(m.staged.as_deref(), Some(r#"{"staged": true}"#));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_changes_nothing_and_resume_exports_only_what_is_missing() {
    let db = etl_testkit::TestDb::create().await.unwrap();
    let pool = db.pool().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let a = args(db.url(), dir.path(), &["--users", "250", "--dry-run"]);
    let (server, exp) = start_test_server(&a).await.unwrap();
    sqlx::raw_sql(etl_examples::culturebridge::schema::DDL)
        .execute(&pool)
        .await
        .unwrap();
    let before = snapshot(&pool).await;
    let dry = dry_run(&a, &server, &exp).await;
    assert_eq!(
        snapshot(&pool).await,
        before,
        "a dry run leaves the tables as they were"
    );
    assert!(!dry.paths.rollback.exists(), "nothing to roll back");

    // An export that fails part-way: the Data API does not expose `booking` (404), so the
    // run stops at `export_booking` with every earlier type exported and nothing written.
    let broken = without_bookings(250).await;
    let a = args(db.url(), dir.path(), &["--users", "250"]);
    let failed = run(&a, &timestamp(), Some((&broken, exp.clone())))
        .await
        .unwrap();
    assert_eq!(failed.report.status, etl_core::RunStatus::Failed);
    let error = failed.report.error.clone().unwrap();
    assert!(error.contains("step `export_booking` failed"), "{error}");
    assert_eq!(
        snapshot(&pool).await,
        before,
        "a failed run leaves the tables as they were"
    );

    // --resume: only the types whose export is not complete are read from the API again
    // (`booking` and the types after it); the run then finishes.
    let a = args(db.url(), dir.path(), &["--users", "250", "--resume"]);
    let out = run(&a, &timestamp(), Some((&server, exp.clone())))
        .await
        .unwrap();
    assert!(out.report.succeeded(), "{:?}", out.report.error);
    let again: u64 = ["booking", "payment", "post", "comment", "resource"]
        .iter()
        .map(|t| exp.read[*t])
        .sum();
    assert_eq!(
        out.export.unwrap().records,
        again,
        "only the types whose export was not complete are read from the API again"
    );
    for t in ["user", "client_profile", "coach_profile"] {
        let s = step(&out, &format!("export_{t}"));
        assert_eq!((s.outcome.as_str(), s.attempts), ("skipped", 1), "{t}");
    }
    assert_eq!(step(&out, "export_booking").attempts, 2);
    assert_counts(&out, &exp);

    // A load that fails after its parents were staged by this process: a resume in a new
    // process still rejects the children of rejected parents as `parent rejected`.
    let export = dir.path().join("export");
    let payments = export.join("payment.parquet");
    let record = provenance::record_path(&export, "payment");
    let (good, good_record) = (
        std::fs::read(&payments).unwrap(),
        std::fs::read(&record).unwrap(),
    );
    std::fs::write(&payments, b"not parquet").unwrap();
    // A file changed since its run wrote it is never reused.
    let a = args(db.url(), dir.path(), &["--users", "250", "--skip-export"]);
    let refused = run(&a, &timestamp(), Some((&server, exp.clone())))
        .await
        .err()
        .expect("--skip-export over a changed file is refused")
        .to_string();
    assert!(
        refused.contains(&format!(
            "{} (Bubble type `payment`) changed since run",
            payments.display()
        )),
        "{refused}"
    );
    // As if the run had written it so: the load fails.
    let writer: provenance::ExportRecord = serde_json::from_slice(&good_record).unwrap();
    provenance::record(&export, "payment", writer.run_id, false).unwrap();
    let failed = run(&a, &timestamp(), Some((&server, exp.clone())))
        .await
        .unwrap();
    let error = failed.report.error.clone().unwrap();
    assert!(error.contains("step `load_payment` failed"), "{error}");
    std::fs::write(&payments, good).unwrap();
    std::fs::write(&record, good_record).unwrap();
    let a = args(
        db.url(),
        dir.path(),
        &["--users", "250", "--skip-export", "--resume"],
    );
    let out = run(&a, &timestamp(), Some((&server, exp.clone())))
        .await
        .unwrap();
    assert!(out.report.succeeded(), "{:?}", out.report.error);
    assert_eq!(step(&out, "load_booking").outcome, "skipped");
    assert_eq!(step(&out, "load_payment").attempts, 2);
    assert_counts(&out, &exp);
}

/// The step `name` of a run's report.
fn step<'a>(
    out: &'a etl_examples::culturebridge::Outcome,
    name: &str,
) -> &'a etl_core::migration::StepReport {
    out.report
        .steps
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no step `{name}`"))
}

/// An MD5 checksum of every row of every table (in a stable order).
async fn checksums(pool: &PgPool) -> Vec<(String, String, i64)> {
    let mut out = Vec::new();
    for t in TABLES {
        let q = format!(
            "SELECT md5(coalesce(string_agg(to_jsonb(t)::text, '|' ORDER BY to_jsonb(t)::text), '')), count(*) FROM {t} t"
        );
        let (sum, n): (String, i64) = sqlx::query_as(sqlx::AssertSqlSafe(q))
            .fetch_one(pool)
            .await
            .unwrap();
        out.push((t.to_owned(), sum, n));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_through_the_run_layer_restores_every_table_exactly() {
    let db = etl_testkit::TestDb::create().await.unwrap();
    let pool = db.pool().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The pre-run state: an earlier migration from an app in which every third payment
    // did not exist yet and some coaches were still active.
    let (mut fx, _) = fixtures::generate(fixtures::Sizes {
        users: 150,
        ..Default::default()
    });
    let mut i = 0;
    fx.things_mut("payment").unwrap().retain(|_| {
        i += 1;
        i % 3 != 0
    });
    for (i, u) in fx.things_mut("user").unwrap().iter_mut().enumerate() {
        if i % 7 == 0 && u["type"] == "coach" {
            u.insert(
                "active".into(),
                serde_json::json!(!u["active"].as_bool().unwrap_or(true)),
            );
        }
    }
    let earlier = TestServer::start(fx, Default::default()).await.unwrap();
    let a = args(db.url(), dir.path(), &["--users", "150", "--sample", "0"]);
    let (server, exp) = start_test_server(&a).await.unwrap();
    let first = run(&a, &timestamp(), Some((&earlier, exp.clone())))
        .await
        .unwrap();
    assert!(first.report.succeeded(), "{:?}", first.report.error);
    let before = checksums(&pool).await;
    assert!(before.iter().all(|t| t.2 > 0), "{before:?}");

    // This run inserts the missing payments and updates the changed users.
    let out = run(&a, &timestamp(), Some((&server, exp.clone())))
        .await
        .unwrap();
    assert!(out.report.succeeded(), "{:?}", out.report.error);
    assert_counts(&out, &exp);
    let inserted = out.report.extra["inserted"]["payments"].as_u64().unwrap();
    let updated = out.report.extra["updated"]["users"].as_u64().unwrap();
    assert!(inserted > 0 && updated > 0, "{inserted} {updated}");
    assert_ne!(checksums(&pool).await, before);

    // --only cleanup drops the scratch schema; --rollback still restores the exact
    // pre-run content (the before-images are whole rows).
    let cleanup = args(db.url(), dir.path(), &["--only", "cleanup"]);
    let cleaned = run(&cleanup, &timestamp(), None).await.unwrap();
    assert!(cleaned.report.succeeded(), "{:?}", cleaned.report.error);
    let (staging,): (bool,) = sqlx::query_as("SELECT to_regnamespace('cb_staging') IS NULL")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(staging, "cb_staging dropped");
    let rb = args(db.url(), dir.path(), &["--rollback"]);
    let back = run(&rb, &timestamp(), None).await.unwrap();
    assert_eq!(
        back.report.status,
        etl_core::RunStatus::RolledBack,
        "{:?}",
        back.report.error
    );
    assert_eq!(step(&back, "switch").outcome, "rolled_back");
    assert_eq!(
        checksums(&pool).await,
        before,
        "every table as before the run"
    );
    assert_eq!(snapshot(&pool).await.len(), TABLES.len());
    // Nothing is left to undo; the DBA script of the run stays on disk.
    let again = run(&rb, &timestamp(), None).await;
    assert!(
        again
            .as_ref()
            .is_err_and(|e| e.to_string().contains("already rolled back")),
        "{:?}",
        again.map(|o| o.report.status)
    );
    assert!(out.paths.rollback.exists());

    // The run layer's rollback and the DBA script agree: redo the run, apply the script.
    let redo = run(&a, &timestamp(), Some((&server, exp.clone())))
        .await
        .unwrap();
    assert!(redo.report.succeeded(), "{:?}", redo.report.error);
    apply(&pool, &redo.paths.rollback).await;
    assert_eq!(
        checksums(&pool).await,
        before,
        "the script restores the same state"
    );

    // And so does --restore of the pg_dump backup a run takes before its switch.
    let third = run(&a, &timestamp(), Some((&server, exp.clone())))
        .await
        .unwrap();
    assert!(third.report.succeeded(), "{:?}", third.report.error);
    assert_ne!(checksums(&pool).await, before);
    let backup = step(&third, "backup").details["dir"]
        .as_str()
        .unwrap()
        .to_owned();
    let restore = args(db.url(), dir.path(), &["--restore", &backup]);
    etl_examples::culturebridge::main_with(restore)
        .await
        .unwrap();
    assert_eq!(
        checksums(&pool).await,
        before,
        "--restore puts back the tables as before the run"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_shows_the_steps_and_report_json_lists_the_seed_files() {
    let db = etl_testkit::TestDb::create().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let a = args(db.url(), dir.path(), &["--users", "100"]);
    let fresh = plan(&a).await.unwrap();
    assert!(fresh.contains("no run recorded yet"), "{fresh}");
    assert!(
        fresh.contains("next: a run starts at step 1 `preflight`"),
        "{fresh}"
    );
    let mut names = vec!["preflight".to_owned(), "schema".to_owned()];
    names.extend(
        MIGRATED
            .iter()
            .chain(NOT_MIGRATED.iter())
            .map(|t| format!("export_{t}")),
    );
    names.push("staging".into());
    names.extend(
        MIGRATED
            .iter()
            .chain(NOT_MIGRATED.iter())
            .map(|t| format!("load_{t}")),
    );
    names.extend(
        [
            "checks", "backup", "switch", "reports", "mappings", "analyze", "cleanup",
        ]
        .map(String::from),
    );
    let listed: Vec<&str> = fresh
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            w.next()?.parse::<u32>().ok()?;
            w.next()
        })
        .collect();
    assert_eq!(listed, names, "{fresh}");
    assert!(fresh.contains("optional"), "cleanup is optional: {fresh}");

    let ts = timestamp();
    let paths = Paths::new(&dir.path().join("reports"), &ts);
    init_logging(&paths.log, 0).unwrap();
    let (server, exp) = start_test_server(&a).await.unwrap();
    let out = run(&a, &ts, Some((&server, exp.clone()))).await.unwrap();
    assert!(out.report.succeeded(), "{:?}", out.report.error);

    let done = plan(&a).await.unwrap();
    assert!(
        done.contains(&format!("latest run {}: done", out.report.run_id)),
        "{done}"
    );
    assert!(
        done.contains(
            "--rollback would undo, in this order: analyze, mappings, reports, switch, backup, checks, load_resource"
        ),
        "{done}"
    );
    let switch_line = done.lines().find(|l| l.contains(" switch ")).unwrap();
    assert!(switch_line.contains("done"), "{switch_line}");

    // One report: report.json names the seed's five files, all written.
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("reports/report.json")).unwrap(),
    )
    .unwrap();
    let files: Vec<&str> = json["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    for f in [
        format!("migration_summary_{ts}.txt"),
        format!("migration_errors_{ts}.csv"),
        format!("migration_report_{ts}.json"),
        format!("rollback_migration_{ts}.sql"),
        format!("migration_{ts}.log"),
        "report.json".to_owned(),
        "summary.txt".to_owned(),
        "rejects.csv".to_owned(),
    ] {
        assert!(files.contains(&f.as_str()), "{f} not in {files:?}");
        assert!(dir.path().join("reports").join(&f).exists(), "{f}");
    }
    assert_eq!(json["run_state"], "done");
    assert_eq!(json["steps"].as_array().unwrap().len(), names.len());
    let summary = std::fs::read_to_string(&out.paths.summary).unwrap();
    assert!(summary.contains("sample_matches_api"), "{summary}");
}

/// One run per target, with the real binary: while a run's checks wait on a lock another
/// session holds on `payments`, a second run (plain, `--resume`, `--rollback`) exits 2
/// naming the first run and its process, and `--plan` says the run is live. Killed
/// (SIGKILL), `--plan` says it was interrupted, and `--resume` takes the lock and finishes:
/// every table holds exactly what a clean run writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_is_refused_while_one_runs_and_a_killed_run_is_finished_by_resume() {
    let users = ["--users", "200", "-q"];
    // What a clean run writes, into a database of its own.
    let clean_db = etl_testkit::TestDb::create().await.unwrap();
    let clean_dir = tempfile::tempdir().unwrap();
    let a = args(clean_db.url(), clean_dir.path(), &users);
    let (server, exp) = start_test_server(&a).await.unwrap();
    let clean = run(&a, &timestamp(), Some((&server, exp))).await.unwrap();
    assert!(clean.report.succeeded(), "{:?}", clean.report.error);
    let want = content(&clean_db.pool().await.unwrap()).await;
    assert!(want.iter().all(|t| t.2 > 0), "{want:?}");
    drop((server, clean_db));

    let db = etl_testkit::TestDb::create().await.unwrap();
    let pool = db.pool().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    sqlx::raw_sql(etl_examples::culturebridge::schema::DDL)
        .execute(&pool)
        .await
        .unwrap();
    // Another session lets `payments` be read, not written.
    let mut blocker = pool.acquire().await.unwrap();
    sqlx::raw_sql("BEGIN; LOCK TABLE payments IN SHARE MODE")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let bin = support::example_binary("culturebridge");
    let line = |report: &str, extra: &[&str]| {
        let mut v = argv(db.url(), dir.path(), &[&users[..], extra].concat());
        v.extend([
            "--report-dir".into(),
            dir.path().join(report).display().to_string(),
        ]);
        v.remove(0);
        v
    };
    let binary = |report: &str, extra: &[&str]| {
        std::process::Command::new(&bin)
            .args(line(report, extra))
            .output()
            .unwrap()
    };
    let mut first = tokio::process::Command::new(&bin)
        .args(line("first", &[]))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = first.id().unwrap();
    support::wait_for_a_lock_wait(db.url(), &mut first).await;
    let (run_id, running): (String, String) = sqlx::query_as(
        "SELECT r.run_id::text, s.step FROM ferry_journal_runs r JOIN ferry_journal_steps s USING (run_id)
          WHERE r.migration = 'culturebridge' AND s.state = 'running'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        running, "checks",
        "the checks upsert into the tables, rolled back"
    );

    // One run at a time: a plain run, --resume and --rollback are refused, naming it.
    support::assert_one_run_at_a_time(&binary, pid, &run_id, &[]);

    // Killed while it waits.
    first.start_kill().unwrap(); // SIGKILL
    first.wait().await.unwrap();
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let plan = support::plan(&binary);
    assert!(plan.contains("the run was interrupted"), "{plan}");
    assert!(
        plan.contains(&format!("--resume continues run {run_id}"))
            && plan.contains("`checks` (it was running"),
        "{plan}"
    );

    // --resume takes the lock and finishes the same run: the tables equal the clean run's.
    let o = binary("resumed", &["--resume"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("resumed/report.json")).unwrap())
            .unwrap();
    assert_eq!(report["run_id"], run_id.as_str());
    assert_eq!(report["run_state"], "done");
    assert_eq!(content(&pool).await, want);
}

/// Every table's rows and an MD5 of them, without what differs from run to run (run ids,
/// the run log).
async fn content(pool: &PgPool) -> Vec<(String, String, i64)> {
    let mut out = Vec::new();
    for t in TABLES.iter().filter(|t| **t != "migration_runs") {
        let q = format!(
            "SELECT md5(coalesce(string_agg((to_jsonb(t) - 'run_id')::text, '|' ORDER BY (to_jsonb(t) - 'run_id')::text), '')), count(*) FROM {t} t"
        );
        let (sum, n): (String, i64) = sqlx::query_as(sqlx::AssertSqlSafe(q))
            .fetch_one(pool)
            .await
            .unwrap();
        out.push(((*t).to_owned(), sum, n));
    }
    out
}

/// A Data API that does not expose `booking` (404): a run stops at `export_booking`.
async fn without_bookings(users: usize) -> TestServer {
    let (fx, _) = fixtures::generate(fixtures::Sizes {
        users,
        ..Default::default()
    });
    let mut partial = etl_source_bubble::test_server::Fixtures::new();
    let types: Vec<String> = fx.types().map(str::to_owned).collect();
    for t in types.iter().filter(|t| *t != "booking") {
        partial.insert(t, fx.things(t).to_vec(), Default::default());
    }
    TestServer::start(partial, Default::default())
        .await
        .unwrap()
}

/// The error of a run refused before it started (the binary exits 2 on it).
fn refusal(r: anyhow::Result<etl_examples::culturebridge::Outcome>) -> String {
    let e = r.err().expect("refused");
    assert!(
        matches!(e.downcast_ref(), Some(etl_core::Error::Refused(_))),
        "not a refusal: {e:#}"
    );
    e.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_or_skip_export_never_loads_a_dry_runs_export() {
    let db = etl_testkit::TestDb::create().await.unwrap();
    let pool = db.pool().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let export = dir.path().join("export");
    let a = args(db.url(), dir.path(), &["--users", "250"]);
    let (server, exp) = start_test_server(&a).await.unwrap();
    sqlx::raw_sql(etl_examples::culturebridge::schema::DDL)
        .execute(&pool)
        .await
        .unwrap();
    let before = snapshot(&pool).await;
    // A server without `booking`: a real run stops at `export_booking`, interrupted with
    // users and profiles exported.
    let broken = without_bookings(250).await;
    let failed = run(&a, &timestamp(), Some((&broken, exp.clone())))
        .await
        .unwrap();
    assert_eq!(failed.report.status, etl_core::RunStatus::Failed);
    let run1 = failed.report.run_id.clone();

    // A dry run exports again meanwhile: --resume of the interrupted run is refused,
    // naming the type and the dry run that wrote its file; nothing is written.
    let dry_args = args(db.url(), dir.path(), &["--users", "250", "--dry-run"]);
    let dry = run(&dry_args, &timestamp(), Some((&server, exp.clone())))
        .await
        .unwrap();
    assert_eq!(dry.report.status, etl_core::RunStatus::DryRun);
    let resume = args(db.url(), dir.path(), &["--users", "250", "--resume"]);
    let msg = refusal(run(&resume, &timestamp(), Some((&server, exp.clone()))).await);
    assert!(
        msg.contains(&format!(
            "--resume: {} (Bubble type `user`) was written by dry run {}",
            export.join("user.parquet").display(),
            dry.report.run_id
        )) && msg.contains(&format!("not by run {run1} that is resumed")),
        "{msg}"
    );
    // --skip-export refuses a dry run's export too.
    let skip = args(db.url(), dir.path(), &["--users", "250", "--skip-export"]);
    let msg = refusal(run(&skip, &timestamp(), Some((&server, exp.clone()))).await);
    assert!(
        msg.contains(&format!(
            "(Bubble type `user`) was written by dry run {}",
            dry.report.run_id
        )),
        "{msg}"
    );
    assert_eq!(snapshot(&pool).await, before, "nothing was written");

    // A new real run, interrupted the same way: --resume exports the rest and finishes
    // exactly, on this run's files only.
    let failed = run(&a, &timestamp(), Some((&broken, exp.clone())))
        .await
        .unwrap();
    assert_eq!(failed.report.status, etl_core::RunStatus::Failed);
    let run2 = failed.report.run_id.clone();
    let out = run(&resume, &timestamp(), Some((&server, exp.clone())))
        .await
        .unwrap();
    assert!(out.report.succeeded(), "{:?}", out.report.error);
    assert_eq!(out.report.run_id, run2);
    assert_counts(&out, &exp);
    let runs = out.report.extra["export_runs"].as_object().unwrap();
    assert_eq!(runs.len(), MIGRATED.len() + NOT_MIGRATED.len());
    assert!(
        runs.values().all(|r| r == &serde_json::json!(run2)),
        "{runs:?}"
    );
    for t in runs.keys() {
        let r: provenance::ExportRecord =
            serde_json::from_slice(&std::fs::read(provenance::record_path(&export, t)).unwrap())
                .unwrap();
        assert_eq!(
            (r.run_id.to_string(), r.dry_run),
            (run2.clone(), false),
            "{t}"
        );
    }
}

/// The catalog of the target: every schema, and every relation with its file (a TRUNCATE
/// or a rewrite gives a new one), its row estimate aside.
async fn catalog(pool: &PgPool) -> (Vec<String>, Vec<String>) {
    let ns: Vec<(String,)> = sqlx::query_as("SELECT nspname::text FROM pg_namespace ORDER BY 1")
        .fetch_all(pool)
        .await
        .unwrap();
    let rels: Vec<(String,)> = sqlx::query_as(
        "SELECT format('%s.%s %s %s', n.nspname, c.relname, c.relkind, c.relfilenode)
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname NOT LIKE 'pg_temp%' AND n.nspname NOT LIKE 'pg_toast_temp%' ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    (
        ns.into_iter().map(|r| r.0).collect(),
        rels.into_iter().map(|r| r.0).collect(),
    )
}

/// A dry run of `a` on `server`: its status and its exact counts.
async fn dry_run(
    a: &Args,
    server: &TestServer,
    exp: &fixtures::Expected,
) -> etl_examples::culturebridge::Outcome {
    let out = run(a, &timestamp(), Some((server, exp.clone())))
        .await
        .unwrap();
    assert_eq!(
        out.report.status,
        etl_core::RunStatus::DryRun,
        "{:?}",
        out.report.error
    );
    assert_counts(&out, exp);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_writes_nothing_to_the_target_database() {
    let db = etl_testkit::TestDb::create().await.unwrap();
    let pool = db.pool().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dry = args(db.url(), dir.path(), &["--users", "150", "--dry-run"]);
    let (server, exp) = start_test_server(&dry).await.unwrap();
    // An empty database: no schema, no table, no journal appears.
    let empty = catalog(&pool).await;
    let out = dry_run(&dry, &server, &exp).await;
    assert_eq!(catalog(&pool).await, empty, "the dry run created nothing");
    for s in ["schema", "staging", "checks", "switch"] {
        assert_eq!(step(&out, s).outcome, "would_run", "{s}");
    }
    // After a real run (staging, journal, tables): nothing created, emptied or changed.
    let real = args(db.url(), dir.path(), &["--users", "150"]);
    let first = run(&real, &timestamp(), Some((&server, exp.clone())))
        .await
        .unwrap();
    assert!(first.report.succeeded(), "{:?}", first.report.error);
    let (before, rows) = (catalog(&pool).await, checksums(&pool).await);
    let journal = "SELECT count(*) FROM ferry_journal_runs";
    let (runs,): (i64,) = sqlx::query_as(journal).fetch_one(&pool).await.unwrap();
    dry_run(&dry, &server, &exp).await;
    assert_eq!(catalog(&pool).await, before);
    assert_eq!(checksums(&pool).await, rows);
    assert_eq!(
        sqlx::query_as::<_, (i64,)>(journal)
            .fetch_one(&pool)
            .await
            .unwrap()
            .0,
        runs
    );
}
