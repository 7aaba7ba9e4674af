//! Backups a DBA can restore: `pg_dump --format=custom` of the tables a migration will
//! change, taken from one snapshot, with a manifest of what is in the dump (rows and a
//! content checksum per table, the server's version, the dump file's SHA-256), and the
//! restore that checks the manifest after `pg_restore`.
//!
//! ```text
//! <dir>/backup.dump      pg_dump --format=custom --compress=1 --snapshot=<the checksums' snapshot> -t ...
//! <dir>/manifest.json    tables {table, rows, checksum}, server_version, pg_dump, sha256, bytes
//! ```
//!
//! The content checksum of a table is `count(*)` and the sum of
//! `hashtextextended(row::text, 0)` over its rows: independent of row order, equal for equal
//! contents, computed by the server in one scan ([`table_checksum`]).
//!
//! `pg_dump` must be at least the server's major version: the binary is looked for in
//! `$FERRY_PG_BIN`, `/usr/lib/postgresql/<major>/bin` (Debian and Ubuntu) and `PATH`, and
//! a missing or older one is an error saying what to install. The password never appears
//! on a command line: it reaches `pg_dump` / `pg_restore` through `PGPASSWORD`.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use sqlx::{Connection as _, PgConnection};

use crate::ident::TableName;
use crate::staging::exists;
use crate::{Error, Result};
use etl_postgres::catalog;

/// The manifest's file name in a backup directory.
pub const MANIFEST: &str = "manifest.json";
/// The dump's file name in a backup directory.
pub const DUMP: &str = "backup.dump";

/// One table in a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSum {
    /// Schema-qualified name.
    pub table: String,
    /// Rows.
    pub rows: i64,
    /// Content checksum ([`table_checksum`]).
    pub checksum: String,
}

/// What a backup holds ([`MANIFEST`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// When the snapshot was taken.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// `server_version` of the database dumped.
    pub server_version: String,
    /// The `pg_dump --version` line.
    pub pg_dump: String,
    /// The dump file, relative to the manifest.
    pub dump_file: String,
    /// SHA-256 of the dump file (hex).
    pub sha256: String,
    /// Size of the dump file.
    pub bytes: u64,
    /// Seconds the backup took.
    pub seconds: f64,
    /// The tables dumped, with their rows and checksums at the snapshot.
    pub tables: Vec<TableSum>,
    /// Tables asked for that did not exist (nothing to back up).
    pub missing: Vec<String>,
}

/// Rows and content checksum of `table` (see the [module docs](self)).
///
/// # Errors
/// The database's.
pub async fn table_checksum(conn: &mut PgConnection, table: &TableName) -> Result<TableSum> {
    let (rows, checksum): (i64, String) = sqlx::query_as(sqlf!(
        "SELECT count(*), coalesce(sum(hashtextextended(t::text, 0)::numeric), 0)::text FROM {} t",
        table.sql()
    ))
    .fetch_one(conn)
    .await?;
    Ok(TableSum {
        table: table.to_string(),
        rows,
        checksum,
    })
}

/// Dump `tables` of the database at `url` into `dir` (created; files written with mode
/// 0600: a backup holds the data) and write its [`Manifest`]. The checksums and the dump
/// come from one snapshot, so they agree even while the tables change. Tables that do not
/// exist are listed in `missing`.
///
/// # Errors
/// `pg_dump` is missing, older than the server or fails (its message is returned); the
/// directory cannot be written; the database's errors.
pub async fn dump(url: &str, tables: &[TableName], dir: &Path) -> Result<Manifest> {
    let t0 = std::time::Instant::now();
    let opts = crate::connect_options(url)?;
    let mut conn = crate::ConnectSettings::default().connect(&opts).await?;
    let (server_version, major) = server_version(&mut conn).await?;
    let tool = pg_tool("pg_dump", major)?;
    std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
    let mut tx = conn.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let (snapshot,): (String,) = sqlx::query_as("SELECT pg_export_snapshot()")
        .fetch_one(&mut *tx)
        .await?;
    let (mut sums, mut missing) = (Vec::new(), Vec::new());
    for t in tables {
        if exists(&mut tx, t).await? {
            sums.push(table_checksum(&mut tx, t).await?);
        } else {
            missing.push(t.to_string());
        }
    }
    let file = dir.join(DUMP);
    let mut cmd = command(&tool.path, url);
    // Fastest zlib level: on 4.9 M CITES rows 7.6 s instead of 19.4 s at the default
    // level, for a dump 21 % larger (294 MB instead of 243 MB).
    cmd.arg("--format=custom")
        .arg("--compress=1")
        .arg("--no-owner")
        .arg("--no-acl")
        .arg(format!("--snapshot={snapshot}"))
        .arg(format!("--file={}", file.display()));
    for t in tables.iter().filter(|t| !missing.contains(&t.to_string())) {
        cmd.arg(format!("--table={}", pattern(t)));
    }
    // A partitioned table's rows are in its partitions, which `--table` does not take
    // along before PostgreSQL 16: name them too.
    let parents: Vec<String> = sums
        .iter()
        .map(|t| TableName::parse(&t.table).sql())
        .collect();
    let partitions: Vec<(String, String)> = sqlx::query_as(
        "WITH RECURSIVE p(oid) AS (
             SELECT i.inhrelid FROM pg_inherits i WHERE i.inhparent IN (SELECT to_regclass(x) FROM unnest($1::text[]) x)
             UNION SELECT i.inhrelid FROM pg_inherits i JOIN p ON i.inhparent = p.oid)
         SELECT n.nspname::text, c.relname::text FROM p JOIN pg_class c ON c.oid = p.oid
           JOIN pg_namespace n ON n.oid = c.relnamespace",
    )
    .bind(&parents)
    .fetch_all(&mut *tx)
    .await?;
    for (schema, name) in partitions {
        let t = TableName {
            schema: Some(schema),
            name,
        };
        cmd.arg(format!("--table={}", pattern(&t)));
    }
    if !sums.is_empty() {
        run(cmd, "pg_dump").await?;
    } else {
        std::fs::write(&file, b"").map_err(|e| io_error(&file, e))?;
    }
    tx.commit().await?;
    private(&file)?;
    let (sha256, bytes) = sha256_of(&file)?;
    let manifest = Manifest {
        created_at: chrono::Utc::now(),
        server_version,
        pg_dump: tool.version,
        dump_file: DUMP.into(),
        sha256,
        bytes,
        seconds: t0.elapsed().as_secs_f64(),
        tables: sums,
        missing,
    };
    let path = dir.join(MANIFEST);
    let text = serde_json::to_string_pretty(&manifest).expect("a manifest serializes");
    std::fs::write(&path, text).map_err(|e| io_error(&path, e))?;
    private(&path)?;
    Ok(manifest)
}

/// Read the manifest of the backup in `dir`.
///
/// # Errors
/// The manifest is missing or not a manifest.
pub fn read_manifest(dir: &Path) -> Result<Manifest> {
    let path = dir.join(MANIFEST);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        Error::Backup(format!(
            "{} cannot be read ({e}): is {} a backup directory written by ferry?",
            path.display(),
            dir.display()
        ))
    })?;
    serde_json::from_str(&text)
        .map_err(|e| Error::Backup(format!("{} is not a backup manifest: {e}", path.display())))
}

/// [`restore`] for a migration: with the migration's run lock held, and its latest
/// unfinished run marked rolled back (`--restore DIR` of the examples and of `ferry run`).
///
/// # Errors
/// As [`restore`]; the run lock is held by another run.
pub async fn restore_for<C: Send + Sync>(
    migration: &etl_core::migration::Migration<C>,
    journal: &dyn etl_core::migration::Journal,
    url: &str,
    dir: &Path,
) -> std::result::Result<Vec<TableSum>, etl_core::BoxError> {
    let note = format!("tables restored from the backup in {}", dir.display());
    let restore = async { Ok(restore(url, dir).await?) };
    migration.restore_outside(journal, &note, restore).await
}

/// Restore the backup in `dir` into the database at `url`: the dump file's SHA-256 is
/// checked first, then in ONE transaction (`psql --single-transaction`) the dumped tables
/// are dropped and restored from the dump (`pg_restore`'s script), with what
/// depends on them from outside the backup — foreign keys of other tables (the previous
/// table a switch kept, a staging table) and views — dropped before and created again
/// after, then every table's rows and checksum are compared with the manifest. All or
/// nothing: a failure leaves the database as it was. Returns the tables as they are after
/// the restore.
///
/// # Errors
/// The dump file is missing or changed; `pg_restore` or `psql` is missing, older than
/// the server or fails (nothing is changed then); a restored table differs from the
/// manifest.
pub async fn restore(url: &str, dir: &Path) -> Result<Vec<TableSum>> {
    use tokio::io::AsyncWriteExt as _;
    let manifest = read_manifest(dir)?;
    let file = dir.join(&manifest.dump_file);
    let (sha, _) = sha256_of(&file)?;
    if sha != manifest.sha256 {
        return Err(Error::Backup(format!(
            "{} has changed since the backup (sha256 {sha}, manifest {}): refusing to restore it",
            file.display(),
            manifest.sha256
        )));
    }
    let opts = crate::connect_options(url)?;
    let mut conn = crate::ConnectSettings::default().connect(&opts).await?;
    let tables: Vec<TableName> = manifest
        .tables
        .iter()
        .map(|t| TableName::parse(&t.table))
        .collect();
    if !tables.is_empty() {
        let (_, major) = server_version(&mut conn).await?;
        let (pg_restore, psql) = (pg_tool("pg_restore", major)?, pg_tool("psql", major)?);
        let (before, after) = outside_dependents(&mut conn, &tables).await?;
        let mut apply = command(&psql.path, url);
        apply
            .args([
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "--single-transaction",
                "-f",
                "-",
            ])
            .stdin(Stdio::piped());
        let mut apply = apply
            .spawn()
            .map_err(|e| Error::Backup(format!("psql could not start: {e}")))?;
        let mut script = tokio::process::Command::new(&pg_restore.path);
        script
            .args(["--no-owner", "--no-acl", "-f", "-"])
            .arg(&file)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut script = script
            .spawn()
            .map_err(|e| Error::Backup(format!("pg_restore could not start: {e}")))?;
        let mut stdin = apply.stdin.take().expect("piped");
        let mut body = script.stdout.take().expect("piped");
        let fed = async {
            stdin.write_all(before.as_bytes()).await?;
            tokio::io::copy(&mut body, &mut stdin).await?;
            std::io::Result::Ok(())
        }
        .await;
        // psql commits at the end of its input: end it only when pg_restore has produced
        // the whole script; otherwise kill it, which rolls the transaction back.
        let made = script.wait_with_output().await;
        if let Err(e) = check(made, "pg_restore")
            .and(fed.map_err(|e| Error::Backup(format!("feeding the restore to psql: {e}"))))
        {
            let _ = apply.kill().await;
            let out = apply.wait_with_output().await;
            let psql = out
                .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_owned())
                .unwrap_or_default();
            return Err(Error::Backup(format!(
                "{e}; nothing was restored (psql: {psql})"
            )));
        }
        let ended = async {
            stdin.write_all(after.as_bytes()).await?;
            stdin.flush().await
        }
        .await;
        drop(stdin);
        check(
            apply.wait_with_output().await,
            "psql (the restore transaction was rolled back)",
        )?;
        ended.map_err(|e| Error::Backup(format!("feeding the restore to psql: {e}")))?;
    }
    let mut restored = Vec::new();
    for t in &manifest.tables {
        let now = table_checksum(&mut conn, &TableName::parse(&t.table)).await?;
        if &now != t {
            return Err(Error::Backup(format!(
                "restored {} differs from the backup: {} rows, checksum {} (backup: {} rows, checksum {})",
                t.table, now.rows, now.checksum, t.rows, t.checksum
            )));
        }
        restored.push(now);
    }
    Ok(restored)
}

/// SQL dropping (first) and creating again (second) what depends on `tables` from
/// outside them: foreign keys of other tables, views ([`catalog::dependent_views`]). The
/// definitions are read under the session's `search_path`, which the second part sets
/// again (the restore script empties it).
async fn outside_dependents(
    conn: &mut PgConnection,
    tables: &[TableName],
) -> Result<(String, String)> {
    let names: Vec<String> = tables.iter().map(|t| t.sql()).collect();
    let (path,): (String,) = sqlx::query_as("SELECT current_setting('search_path')")
        .fetch_one(&mut *conn)
        .await?;
    let fks: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT format('%I.%I', n.nspname, c.relname), quote_ident(k.conname), pg_get_constraintdef(k.oid)
           FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE k.contype = 'f'
            AND k.confrelid IN (SELECT to_regclass(x) FROM unnest($1::text[]) x)
            AND k.conrelid NOT IN (SELECT to_regclass(x) FROM unnest($1::text[]) x WHERE to_regclass(x) IS NOT NULL)",
    )
    .bind(&names)
    .fetch_all(&mut *conn)
    .await?;
    let mut views: Vec<(String, String)> = Vec::new();
    for t in tables {
        for v in catalog::dependent_views(conn, t).await? {
            if !views.contains(&v) {
                views.push(v);
            }
        }
    }
    let mut before = String::new();
    let mut after = format!(
        "SELECT pg_catalog.set_config('search_path', '{}', false);\n",
        path.replace('\'', "''")
    );
    for (name, _) in &views {
        before.push_str(&format!("DROP VIEW IF EXISTS {name};\n"));
    }
    for (table, name, def) in &fks {
        before.push_str(&format!("ALTER TABLE {table} DROP CONSTRAINT {name};\n"));
        after.push_str(&format!(
            "ALTER TABLE {table} ADD CONSTRAINT {name} {def};\n"
        ));
    }
    // The dumped tables go (with their partitions: `pg_restore --clean` cannot drop the
    // constraints partitions inherit), and the dump's script creates them again.
    for t in tables {
        before.push_str(&format!("DROP TABLE IF EXISTS {} CASCADE;\n", t.sql()));
    }
    for (name, def) in &views {
        after.push_str(&format!("CREATE VIEW {name} AS {def}\n"));
    }
    Ok((before, after))
}

fn check(out: std::io::Result<std::process::Output>, what: &str) -> Result<()> {
    let out = out.map_err(|e| Error::Backup(format!("{what}: {e}")))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(Error::Backup(format!(
            "{what} failed ({}): {}",
            out.status,
            etl_core::config::redact_url(err.trim())
        )));
    }
    Ok(())
}

/// A PostgreSQL client program and its version line.
#[derive(Debug, Clone)]
pub struct PgTool {
    /// Its path.
    pub path: PathBuf,
    /// `--version` output.
    pub version: String,
}

/// `tool` (`pg_dump`, `pg_restore`) of at least major version `major`: from
/// `$FERRY_PG_BIN`, `/usr/lib/postgresql/<n>/bin` (highest first) or `PATH`.
///
/// # Errors
/// None found: the message says what to install.
pub fn pg_tool(tool: &str, major: u32) -> Result<PgTool> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(dir) = std::env::var_os("FERRY_PG_BIN") {
        candidates.push(Path::new(&dir).join(tool));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path())))
        .collect();
    versions.sort_by_key(|v| std::cmp::Reverse(v.0));
    candidates.extend(versions.into_iter().map(|(_, p)| p.join("bin").join(tool)));
    candidates.push(PathBuf::from(tool));
    let mut seen = Vec::new();
    for path in candidates {
        let Ok(out) = std::process::Command::new(&path).arg("--version").output() else {
            continue;
        };
        let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let found = version
            .split_whitespace()
            .find_map(|w| w.split('.').next()?.parse::<u32>().ok());
        if found.is_some_and(|v| v >= major) {
            return Ok(PgTool { path, version });
        }
        seen.push(format!("{} ({version})", path.display()));
    }
    Err(Error::Backup(format!(
        "no {tool} of PostgreSQL {major} or newer (the server is {major}; found: {}): install the client programs, e.g. `apt-get install postgresql-client-{major}`, or set FERRY_PG_BIN to the directory holding {tool}",
        if seen.is_empty() {
            "none".to_owned()
        } else {
            seen.join(", ")
        }
    )))
}

async fn server_version(conn: &mut PgConnection) -> Result<(String, u32)> {
    let (version, num): (String, String) = sqlx::query_as(
        "SELECT current_setting('server_version'), current_setting('server_version_num')",
    )
    .fetch_one(conn)
    .await?;
    Ok((version, num.parse::<u32>().unwrap_or(0) / 10_000))
}

/// The command `path` against the database at `url`, the password passed through the
/// environment only.
fn command(path: &Path, url: &str) -> tokio::process::Command {
    let (url, password) = split_password(url);
    let mut cmd = tokio::process::Command::new(path);
    cmd.arg(format!("--dbname={url}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(p) = password {
        cmd.env("PGPASSWORD", p);
    }
    cmd
}

async fn run(mut cmd: tokio::process::Command, what: &str) -> Result<()> {
    check(cmd.output().await, what)
}

/// `url` without its password, and the password (percent-decoded), from the user info or
/// a `password=` parameter.
fn split_password(url: &str) -> (String, Option<String>) {
    let mut out = url.to_owned();
    let mut password = None;
    if let Some(scheme_end) = out.find("://") {
        let start = scheme_end + 3;
        let end = out[start..]
            .find(['/', '?', '#'])
            .map_or(out.len(), |i| start + i);
        if let Some(at) = out[start..end].rfind('@').map(|i| start + i)
            && let Some(colon) = out[start..at].find(':').map(|i| start + i)
        {
            password = Some(percent_decode(&out[colon + 1..at]));
            out.replace_range(colon..at, "");
        }
    }
    if let Some(q) = out.find('?') {
        let (base, query) = out.split_at(q);
        let kept: Vec<&str> = query[1..]
            .split('&')
            .filter(|kv| match kv.strip_prefix("password=") {
                Some(p) => {
                    password = Some(percent_decode(p));
                    false
                }
                None => true,
            })
            .collect();
        out = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
    }
    (out, password)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).and_then(|&c| hex(c)),
            b.get(i + 2).and_then(|&c| hex(c)),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A `pg_dump --table` pattern matching exactly `t`.
fn pattern(t: &TableName) -> String {
    let q = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    match &t.schema {
        Some(s) => format!("{}.{}", q(s), q(&t.name)),
        None => q(&t.name),
    }
}

fn sha256_of(path: &Path) -> Result<(String, u64)> {
    let mut f = std::fs::File::open(path).map_err(|e| io_error(path, e))?;
    let mut h = sha2::Sha256::new();
    let bytes = std::io::copy(&mut f, &mut h).map_err(|e| io_error(path, e))?;
    Ok((format!("{:x}", h.finalize()), bytes))
}

/// Owner-only permissions: backups hold the data.
fn private(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| io_error(path, e))?;
    }
    Ok(())
}

fn io_error(path: &Path, e: std::io::Error) -> Error {
    Error::Backup(format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_leave_the_url() {
        assert_eq!(
            split_password("postgres://u:p%40ss@h:5/db?sslmode=disable"),
            (
                "postgres://u@h:5/db?sslmode=disable".into(),
                Some("p@ss".into())
            )
        );
        assert_eq!(
            split_password("postgres://u@h/db?password=x&a=b"),
            ("postgres://u@h/db?a=b".into(), Some("x".into()))
        );
        assert_eq!(
            split_password("postgres://h/db"),
            ("postgres://h/db".into(), None)
        );
    }

    #[test]
    fn patterns_quote() {
        assert_eq!(pattern(&TableName::parse("a.B\"c")), "\"a\".\"B\"\"c\"");
        assert_eq!(pattern(&TableName::new("t")), "\"t\"");
    }
}
