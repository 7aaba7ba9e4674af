use etl_sink_postgres::ident::TableName;
use etl_sink_postgres::staging::{StagingTable, count_rows};

async fn names(conn: &mut sqlx::PgConnection, table: &str) -> Vec<String> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT i.relname::text FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
          WHERE x.indrelid = to_regclass($1)
         UNION SELECT conname::text FROM pg_constraint WHERE conrelid = to_regclass($1) AND contype = 'f'
         ORDER BY 1",
    )
    .bind(table)
    .fetch_all(conn)
    .await
    .unwrap();
    rows.into_iter().map(|(n,)| n).collect()
}

async fn reloptions(conn: &mut sqlx::PgConnection, table: &str) -> Option<Vec<String>> {
    let (o,): (Option<Vec<String>>,) =
        sqlx::query_as("SELECT reloptions FROM pg_class WHERE oid = to_regclass($1)")
            .bind(table)
            .fetch_one(conn)
            .await
            .unwrap();
    o
}

#[tokio::test]
async fn switch_rollback_and_cleanup_leave_exactly_the_expected_tables() {
    let (_db, mut conn) = super::db().await;
    for sql in [
        "CREATE TABLE species (id int PRIMARY KEY)",
        "INSERT INTO species VALUES (1), (2)",
        "CREATE TABLE live (id int PRIMARY KEY, species_id int NOT NULL REFERENCES species(id), year int CHECK (year > 1900))",
        "CREATE INDEX live_year ON live (year)",
        "CREATE VIEW live_view AS SELECT count(*) AS n FROM live",
        "INSERT INTO live VALUES (1, 1, 2000), (2, 2, 2001)",
    ] {
        sqlx::query(sql).execute(&mut conn).await.unwrap();
    }
    let st = StagingTable::for_live(TableName::new("live"));
    st.create(&mut conn).await.unwrap();
    assert!(
        names(&mut conn, "live_staging").await.is_empty(),
        "no indexes during the load"
    );
    sqlx::query("INSERT INTO live_staging SELECT g, 1 + g % 2, 2020 FROM generate_series(1, 5) g")
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        reloptions(&mut conn, "live_staging").await,
        Some(vec!["autovacuum_enabled=false".to_owned()]),
        "no autovacuum during the load"
    );
    let built = st.build_indexes(&mut conn).await.unwrap();
    assert_eq!(
        reloptions(&mut conn, "live_staging").await,
        None,
        "autovacuum back on after the load"
    );
    assert_eq!(built.len(), 3, "{built:?}");
    assert!(
        st.build_indexes(&mut conn).await.unwrap().is_empty(),
        "idempotent"
    );

    st.switch(&mut conn, "5s").await.unwrap();
    assert_eq!(
        count_rows(&mut conn, &TableName::new("live"))
            .await
            .unwrap(),
        5
    );
    assert_eq!(
        count_rows(&mut conn, &TableName::new("live_old"))
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        names(&mut conn, "live").await,
        vec!["live_pkey", "live_species_id_fkey", "live_year"]
    );
    assert_eq!(
        names(&mut conn, "live_old").await,
        vec!["live_pkey_old", "live_species_id_fkey_old", "live_year_old"]
    );
    let (n,): (i64,) = sqlx::query_as("SELECT n FROM live_view")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(n, 5, "the view follows the new table");
    let err = st.switch(&mut conn, "5s").await.unwrap_err().to_string();
    assert!(
        err.contains("does not exist") || err.contains("cleanup"),
        "{err}"
    );

    st.rollback(&mut conn, "5s").await.unwrap();
    assert_eq!(
        count_rows(&mut conn, &TableName::new("live"))
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        count_rows(&mut conn, &TableName::new("live_staging"))
            .await
            .unwrap(),
        5
    );
    assert_eq!(
        names(&mut conn, "live").await,
        vec!["live_pkey", "live_species_id_fkey", "live_year"]
    );
    let (n,): (i64,) = sqlx::query_as("SELECT n FROM live_view")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(n, 2, "the view follows the restored table");

    // switch again, then clean up: only live remains
    st.switch(&mut conn, "5s").await.unwrap();
    let dropped = st.cleanup(&mut conn).await.unwrap();
    assert_eq!(dropped, vec!["live_old".to_string()]);
    let states = st.states(&mut conn).await.unwrap();
    assert!(states.live && !states.staging && !states.old);
    assert_eq!(
        count_rows(&mut conn, &TableName::new("live"))
            .await
            .unwrap(),
        5
    );
}
