//! SQL checks against a real PostgreSQL.

use etl_core::RunTotals;
use etl_postgres::ident::TableName;
use etl_validate::sql::{SqlCheck, SqlChecks};
use sqlx::{Connection, Executor, PgConnection};

#[tokio::test]
async fn sql_checks_find_orphans_duplicates_ranges_nulls_and_counts() {
    let db = etl_testkit::TestDb::create().await.unwrap();
    let mut conn = PgConnection::connect(db.url()).await.unwrap();
    conn.execute(
        "CREATE TABLE parent (id int PRIMARY KEY);
         INSERT INTO parent VALUES (1), (2);
         CREATE TABLE child (pid int, year int, code text);
         INSERT INTO child VALUES (1, 2000, 'a'), (2, 1800, 'b'), (3, 2001, NULL), (1, 2002, 'a');",
    )
    .await
    .unwrap();
    let t = TableName::new("child");
    let checks = SqlChecks::new(
        db.url(),
        vec![
            SqlCheck::row_count(&t),
            SqlCheck::no_orphans(&t, "pid", &TableName::new("parent"), "id"),
            SqlCheck::in_range(&t, "year", 1975, 2026),
            SqlCheck::not_null(&t, "code"),
            SqlCheck::no_duplicates(&t, &["code"]),
        ],
    );
    let totals = RunTotals {
        loaded: 4,
        ..Default::default()
    };
    let findings = checks.run_all(&totals).await.unwrap();
    let got: Vec<(String, bool, String)> = findings
        .into_iter()
        .map(|f| (f.check, f.passed, f.message))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "row_count".into(),
                true,
                "4 rows in child (expected 4 (rows loaded))".into()
            ),
            (
                "no_orphan_pid".into(),
                false,
                "1 rows of child whose pid is not in parent (expected 0)".into()
            ),
            (
                "year_in_range".into(),
                false,
                "1 rows with year outside 1975..=2026 (expected 0)".into()
            ),
            (
                "code_present".into(),
                false,
                "1 rows with no code (expected 0)".into()
            ),
            (
                "no_duplicate_code".into(),
                false,
                "1 duplicate (code) rows in child (expected 0)".into()
            ),
        ]
    );
}
