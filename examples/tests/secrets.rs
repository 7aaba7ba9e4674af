//! No secret in any artifact: every migration (S9 reading its source from it) runs against a database whose URL holds a real
//! password (a role that must log in with it over TCP where the cluster's `pg_hba.conf` can
//! be changed), with a Bubble API key and AWS keys set, and a failing invocation too; then
//! every file the runs wrote (reports, logs, backups, exports, journals) and everything they
//! printed is searched for the password, the key and the AWS secret: 0 hits. The search
//! itself is checked: a secret planted on purpose is found.

mod support;
use support::example_binary;

use std::path::Path;

use sqlx::{Connection as _, PgConnection};

const PASSWORD: &str = "Pw-7f3e\"q\\ z!9";
const PASSWORD_URL: &str = "Pw-7f3e%22q%5C%20z%219";
const API_KEY: &str = "bubble-key-5e1c0a9d";
const AWS_SECRET: &str = "aws-secret-2b7d44f1e0";

/// Every occurrence of a secret (or its URL-encoded form) in the files under `dir` and in
/// `outputs`: `(where, which)`.
fn leaks(dir: &Path, outputs: &[(String, String)]) -> Vec<(String, &'static str)> {
    let secrets = [
        ("password", PASSWORD),
        ("password (url-encoded)", PASSWORD_URL),
        ("api key", API_KEY),
        ("aws secret", AWS_SECRET),
    ];
    let mut found = Vec::new();
    let mut check = |place: String, bytes: &[u8]| {
        for (name, s) in secrets {
            if bytes.windows(s.len()).any(|w| w == s.as_bytes()) {
                found.push((place.clone(), name));
            }
        }
    };
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                check(p.display().to_string(), &bytes);
            }
        }
    }
    for (what, text) in outputs {
        check(what.clone(), text.as_bytes());
    }
    found
}

/// A role with `PASSWORD` on a fresh database; where the cluster's `pg_hba.conf` is ours to
/// change, that role must log in with its password (scram) over TCP. Returns the URL.
async fn password_db(db: &etl_testkit::TestDb) -> (String, bool) {
    let mut conn = PgConnection::connect(db.url()).await.unwrap();
    let role = format!("secret_{}", db.name());
    let pw = PASSWORD.replace('\'', "''");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE ROLE \"{role}\" LOGIN SUPERUSER PASSWORD '{pw}'"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
    let (hba,): (String,) = sqlx::query_as("SELECT current_setting('hba_file')")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let mut enforced = false;
    if let Ok(text) = std::fs::read_to_string(&hba) {
        let line = format!("host all \"{role}\" 127.0.0.1/32 scram-sha-256\n");
        if std::fs::write(&hba, format!("{line}{text}")).is_ok() {
            sqlx::query("SELECT pg_reload_conf()")
                .execute(&mut conn)
                .await
                .unwrap();
            enforced = true;
        }
    }
    let url = db.url();
    let (scheme, rest) = url.split_once("://").unwrap();
    let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    (format!("{scheme}://{role}:{PASSWORD_URL}@{host}"), enforced)
}

fn run(
    bin: &str,
    url: &str,
    dir: &Path,
    args: &[&str],
    outputs: &mut Vec<(String, String)>,
) -> (bool, String) {
    let o = std::process::Command::new(example_binary(bin))
        .args(args)
        .arg("--report-dir")
        .arg(dir.join("reports").join(bin))
        .env("DATABASE_URL", url)
        .env("BUBBLE_API_KEY", API_KEY)
        .env("AWS_ACCESS_KEY_ID", "AKIDFERRYTEST")
        .env("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .current_dir(dir)
        .output()
        .unwrap();
    let what = format!("{bin} {}", args.join(" "));
    outputs.push((
        format!("{what} (stdout)"),
        String::from_utf8_lossy(&o.stdout).into_owned(),
    ));
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let tail: String = err
        .chars()
        .rev()
        .take(600)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    outputs.push((format!("{what} (stderr)"), err));
    (o.status.success(), format!("{what}: {tail}"))
}

fn ok(r: (bool, String)) {
    assert!(r.0, "{}", r.1);
}

#[tokio::test]
async fn no_artifact_log_or_error_of_any_migration_holds_a_secret() {
    let db = etl_testkit::TestDb::create().await.unwrap();
    let (url, enforced) = password_db(&db).await;
    // The password works (and, with scram enforced, is needed).
    PgConnection::connect(&url)
        .await
        .expect("the password URL connects");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let backups = d.join("backups").display().to_string();
    let export = d.join("export").display().to_string();
    let mut out = Vec::new();
    ok(run(
        "cites_trade",
        &url,
        d,
        &["--backup-dir", &backups],
        &mut out,
    ));
    ok(run("cites_trade", &url, d, &["--cleanup"], &mut out));
    // The Arctic subset replaces the full release here: its Ids are not all there.
    let arctic = ["--backup-dir", &backups, "--max-dropped-ids", "1000000"];
    ok(run("cites_arctic", &url, d, &arctic, &mut out));
    ok(run("cities", &url, d, &[], &mut out));
    let part = ["--backup-dir", &backups, "--rows", "2000"];
    ok(run("observations_partitioning", &url, d, &part, &mut out));
    let cb = [
        "--backup-dir",
        &backups,
        "--export-dir",
        &export,
        "--users",
        "40",
    ];
    ok(run("culturebridge", &url, d, &cb, &mut out));
    // S9: its source is the password database (with generated S9 tables), its target a
    // throwaway dynalite; the AWS keys are in the environment.
    let opts = etl_examples::s9::generate::GenOptions {
        sales: 300,
        seed: 3,
    };
    etl_examples::s9::generate::regenerate(&url, opts)
        .await
        .unwrap();
    ok(run("s9_sales", &url, d, &[], &mut out));
    // Failures print errors: nothing to switch, a wrong password, an unreachable server.
    assert!(!run("cites_trade", &url, d, &["--switchover"], &mut out).0);
    let wrong = url.replace(PASSWORD_URL, &format!("{PASSWORD_URL}x"));
    let refused = !run("cites_trade", &wrong, d, &[], &mut out).0;
    assert!(refused || !enforced, "a wrong password must be refused");
    let unreachable = format!("{}@127.0.0.1:1/x", url.rsplit_once('@').unwrap().0);
    assert!(!run("cities", &unreachable, d, &["--plan"], &mut out).0);
    let found = leaks(d, &out);
    assert!(found.is_empty(), "secrets found: {found:#?}");
    // Files holding personal data are owner-only: rejected rows, rollback scripts with
    // before-images, backups, Parquet artifacts and exports.
    let mut private = 0;
    let mut stack = vec![d.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let (p, name) = (e.path(), e.file_name().to_string_lossy().into_owned());
            if p.is_dir() {
                stack.push(p);
            } else if name == "rejects.csv"
                || name.ends_with(".parquet")
                || name.starts_with("rollback_migration_")
                || p.starts_with(d.join("backups"))
            {
                use std::os::unix::fs::PermissionsExt as _;
                let mode = e.metadata().unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{}", p.display());
                private += 1;
            }
        }
    }
    assert!(private >= 10, "{private} private files checked");
    // The search finds a planted secret.
    std::fs::write(
        d.join("reports").join("planted.txt"),
        format!("x{PASSWORD}y"),
    )
    .unwrap();
    let planted = leaks(d, &[("stderr".into(), format!("key={API_KEY}"))]);
    assert_eq!(planted.len(), 2, "{planted:?}");
}
