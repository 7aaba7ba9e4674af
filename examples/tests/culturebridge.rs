//! The CultureBridge migration end to end: the Bubble-compatible test server, a real
//! PostgreSQL (etl-testkit), exact counts from the fixtures' own expectations, the rollback
//! script, incremental upserts, both key modes, and passwords from a CSV.

use std::path::Path;

use etl_examples::culturebridge::{Args, fixtures, run, start_test_server, timestamp};
use sqlx::PgPool;

fn args(db: &str, dir: &Path, extra: &[&str]) -> Args {
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
    etl_core::cli::parse_args_from(v.into_iter().map(std::ffi::OsString::from)).unwrap()
}

const TABLES: [&str; 7] = [
    "users",
    "client_profiles",
    "coach_profiles",
    "bookings",
    "payments",
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
