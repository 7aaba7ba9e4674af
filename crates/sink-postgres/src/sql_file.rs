//! SQL migration files (`NNN_name.sql`, undone by `NNN_name.down.sql`) and their
//! idempotency markers: a file runs in one transaction with a row of
//! [`MARKERS`] (`ferry_sql_migrations`: migration, step, SHA-256), so a kill between its
//! COMMIT and the run journal's record cannot apply it twice — the rerun sees the marker
//! and reports "already applied". A file with the line `-- ferry:no-transaction` runs
//! statement by statement (for `CREATE INDEX CONCURRENTLY`), its marker written after the
//! last statement (its statements must then be idempotent: `IF NOT EXISTS`). The run-layer
//! step is [`crate::steps::sql_migration`].

use std::path::{Path, PathBuf};

use sha2::Digest as _;
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use crate::ident::TableName;
use crate::{Error, Result};

/// The marker table: one row per applied migration file.
pub const MARKERS: &str = "ferry_sql_migrations";

/// The marker line of a migration that must run outside a transaction.
pub const NO_TRANSACTION: &str = "-- ferry:no-transaction";

/// A SQL migration from a file `NAME.sql`, undone by `NAME.down.sql` when present.
#[derive(Debug, Clone)]
pub struct SqlMigration {
    /// The step name: the file name without `.sql`.
    pub name: String,
    /// The file.
    pub path: PathBuf,
    /// Its text.
    pub up: String,
    /// The rollback script's text, if any.
    pub down: Option<String>,
}

fn read(path: &Path, what: &str) -> Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| Error::State(format!("cannot read {what} {}: {e}", path.display())))
}

impl SqlMigration {
    /// Read `path` and, beside it, `<stem>.down.sql` if it exists.
    ///
    /// # Errors
    /// A file cannot be read.
    pub fn from_file(path: &Path) -> Result<Self> {
        let up = read(path, "migration file")?;
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".sql"))
            .unwrap_or_default()
            .to_owned();
        let down_path = path.with_file_name(format!("{name}.down.sql"));
        let down = if down_path.exists() {
            Some(read(&down_path, "rollback file")?)
        } else {
            None
        };
        Ok(SqlMigration {
            name,
            path: path.to_owned(),
            up,
            down,
        })
    }

    /// Hex SHA-256 of the file's text.
    pub fn sha256(&self) -> String {
        format!("{:x}", sha2::Sha256::digest(self.up.as_bytes()))
    }

    /// Whether `text` runs in one transaction (it has no [`NO_TRANSACTION`] line).
    pub fn in_transaction(text: &str) -> bool {
        !text.lines().any(|l| l.trim() == NO_TRANSACTION)
    }

    /// The checksum recorded when this file was applied under `migration`, if it was
    /// (reads only: `None` when the marker table does not exist).
    ///
    /// # Errors
    /// The database's.
    pub async fn applied(
        &self,
        conn: &mut PgConnection,
        migration: &str,
    ) -> Result<Option<String>> {
        if !crate::staging::exists(conn, &TableName::new(MARKERS)).await? {
            return Ok(None);
        }
        let row: Option<(String,)> = sqlx::query_as(sqlf!(
            "SELECT checksum FROM {} WHERE migration = $1 AND step = $2",
            TableName::new(MARKERS).sql()
        ))
        .bind(migration)
        .bind(&self.name)
        .fetch_optional(conn)
        .await?;
        Ok(row.map(|(c,)| c))
    }

    fn changed(&self, applied: &str) -> String {
        format!(
            "`{}` ({}: sha256 now {}, applied {applied})",
            self.name,
            self.path.display(),
            self.sha256()
        )
    }

    async fn exec(&self, conn: &mut PgConnection, text: &str, what: &str) -> Result<()> {
        let wrap = |e: sqlx::Error| {
            Error::State(format!(
                "{what} {} failed: {e} (fix the SQL; nothing of a transactional file is applied)",
                self.path.display()
            ))
        };
        if Self::in_transaction(text) {
            sqlx::raw_sql(sqlx::AssertSqlSafe(text.to_owned()))
                .execute(conn)
                .await
                .map_err(wrap)?;
        } else {
            for stmt in split_statements(text) {
                sqlx::raw_sql(sqlx::AssertSqlSafe(stmt))
                    .execute(&mut *conn)
                    .await
                    .map_err(wrap)?;
            }
        }
        Ok(())
    }

    /// Apply the file under `migration` unless its marker says it was: `Ok(false)` when
    /// it was applied before (nothing ran), `Ok(true)` when it ran now. A transactional
    /// file and its marker commit together.
    ///
    /// # Errors
    /// The file changed since it was applied (it never runs again: put the change in a new
    /// file), or the SQL failed.
    pub async fn apply(
        &self,
        conn: &mut PgConnection,
        migration: &str,
        run_id: Uuid,
    ) -> Result<bool> {
        let markers = TableName::new(MARKERS);
        sqlx::query(sqlf!(
            "CREATE TABLE IF NOT EXISTS {} (migration text NOT NULL, step text NOT NULL,
                checksum text NOT NULL, file text, run_id uuid,
                applied_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (migration, step))",
            markers.sql()
        ))
        .execute(&mut *conn)
        .await?;
        let insert = sqlf!(
            "INSERT INTO {} (migration, step, checksum, file, run_id) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (migration, step) DO UPDATE SET checksum = EXCLUDED.checksum,
                file = EXCLUDED.file, run_id = EXCLUDED.run_id, applied_at = now()",
            markers.sql()
        );
        let mut tx = conn.begin().await?;
        // One applier at a time for this file; the lock ends with the transaction.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(format!("{migration}/{}", self.name))
            .execute(&mut *tx)
            .await?;
        match self.applied(&mut tx, migration).await? {
            Some(c) if c == self.sha256() => return Ok(false),
            Some(c) => {
                return Err(Error::State(format!(
                    "migration changed after it was applied: {}; a completed migration never runs again — restore the file and put the change in a new migration",
                    self.changed(&c)
                )));
            }
            None => {}
        }
        let transactional = Self::in_transaction(&self.up);
        if transactional {
            self.exec(&mut tx, &self.up, "migration").await?;
        } else {
            tx.commit().await?;
            self.exec(conn, &self.up, "migration").await?;
            tx = conn.begin().await?;
        }
        sqlx::query(insert)
            .bind(migration)
            .bind(&self.name)
            .bind(self.sha256())
            .bind(self.path.display().to_string())
            .bind(run_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Run `.down.sql` and remove the marker (together, for a transactional script).
    /// A transactional file without a marker was never applied: nothing runs (`Ok(false)`).
    ///
    /// # Errors
    /// There is no `.down.sql`, or it failed.
    pub async fn revert(&self, conn: &mut PgConnection, migration: &str) -> Result<bool> {
        let Some(down) = &self.down else {
            return Err(Error::State(format!(
                "{} has no rollback script; add {} beside it",
                self.path.display(),
                self.path.with_extension("down.sql").display()
            )));
        };
        if self.applied(conn, migration).await?.is_none() && Self::in_transaction(&self.up) {
            return Ok(false);
        }
        let delete = sqlf!(
            "DELETE FROM {} WHERE migration = $1 AND step = $2",
            TableName::new(MARKERS).sql()
        );
        let mut tx = conn.begin().await?;
        if Self::in_transaction(down) {
            self.exec(&mut tx, down, "rollback of").await?;
        } else {
            tx.commit().await?;
            self.exec(conn, down, "rollback of").await?;
            tx = conn.begin().await?;
        }
        if crate::staging::exists(&mut tx, &TableName::new(MARKERS)).await? {
            sqlx::query(delete)
                .bind(migration)
                .bind(&self.name)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(true)
    }
}

/// Refuse when one of `files` was applied under `migration` and has changed since (reads
/// only): the check a run makes before any step.
///
/// # Errors
/// [`Error::State`] naming every changed file.
pub async fn check_unchanged(
    conn: &mut PgConnection,
    migration: &str,
    files: &[SqlMigration],
) -> Result<()> {
    let mut changed = Vec::new();
    for f in files {
        if let Some(c) = f.applied(conn, migration).await?
            && c != f.sha256()
        {
            changed.push(f.changed(&c));
        }
    }
    if changed.is_empty() {
        return Ok(());
    }
    Err(Error::State(format!(
        "`{migration}`: migration(s) changed after they were applied: {}; a completed migration never runs again — restore the file and put the change in a new migration",
        changed.join(", ")
    )))
}

/// Split a SQL script into statements at top-level `;` (quotes, quoted identifiers,
/// dollar-quoted bodies and comments respected). Comment-only pieces are dropped.
pub fn split_statements(sql: &str) -> Vec<String> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    let mut has_code = false;
    while i < b.len() {
        match b[i] {
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i += 2;
                continue;
            }
            q @ (b'\'' | b'"') => {
                has_code = true;
                i += 1;
                while i < b.len() {
                    if b[i] == q {
                        if b.get(i + 1) == Some(&q) {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
            }
            b'$' => {
                has_code = true;
                // $tag$ ... $tag$
                let rest = &sql[i + 1..];
                if let Some(end) = rest.find('$') {
                    let tag = &rest[..end];
                    if tag.chars().all(|c| c.is_alphanumeric() || c == '_')
                        && !tag.starts_with(|c: char| c.is_ascii_digit())
                    {
                        let delim = format!("${tag}$");
                        let body = i + delim.len();
                        if let Some(close) = sql[body..].find(&delim) {
                            i = body + close + delim.len();
                            continue;
                        }
                    }
                }
            }
            b';' => {
                if has_code {
                    out.push(sql[start..i].trim().to_owned());
                }
                start = i + 1;
                has_code = false;
            }
            c if !c.is_ascii_whitespace() => has_code = true,
            _ => {}
        }
        i += 1;
    }
    if has_code && start < sql.len() {
        out.push(sql[start..].trim().to_owned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_split_at_top_level_semicolons() {
        let sql = "-- header; not a statement\nCREATE TABLE \"a;b\" (x text DEFAULT 'it''s; ok');\n\
                   /* block; comment */\nCREATE FUNCTION f() RETURNS int LANGUAGE sql AS $body$ SELECT 1; $body$;\n\
                   SELECT $1;\n  -- trailing comment only\n";
        let v = split_statements(sql);
        assert_eq!(v.len(), 3, "{v:#?}");
        assert!(v[0].ends_with("DEFAULT 'it''s; ok')"), "{}", v[0]);
        assert!(v[1].contains("$body$ SELECT 1; $body$"), "{}", v[1]);
        assert_eq!(v[2], "SELECT $1");
    }

    #[test]
    fn migration_files_have_checksums_and_optional_down_scripts() {
        let dir = std::env::temp_dir().join(format!("ferry-sql-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let up = dir.join("001_x.sql");
        std::fs::write(&up, "CREATE TABLE x (id int);").unwrap();
        let m = SqlMigration::from_file(&up).unwrap();
        assert!(m.down.is_none() && SqlMigration::in_transaction(&m.up));
        assert_eq!((m.name.as_str(), m.sha256().len()), ("001_x", 64));
        std::fs::write(dir.join("001_x.down.sql"), "DROP TABLE x;").unwrap();
        std::fs::write(&up, format!("{NO_TRANSACTION}\nCREATE TABLE x (id int);")).unwrap();
        let m2 = SqlMigration::from_file(&up).unwrap();
        assert!(m2.down.is_some() && !SqlMigration::in_transaction(&m2.up));
        assert_ne!(m.sha256(), m2.sha256());
        let e = SqlMigration::from_file(&dir.join("nope.sql")).unwrap_err();
        assert!(e.to_string().contains("nope.sql"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
