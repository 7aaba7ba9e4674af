//! `pg_dump` backups and their checked restore against a real server.

use etl_sink_postgres::backup::{self, MANIFEST, table_checksum};
use etl_sink_postgres::ident::TableName;

#[tokio::test]
async fn a_restore_gives_back_every_table_with_its_checksum() {
    let (db, mut conn) = super::db().await;
    sqlx::raw_sql(
        "CREATE TABLE parent (id int PRIMARY KEY, name text);
         CREATE TABLE \"Child\" (id int PRIMARY KEY, parent_id int REFERENCES parent(id), v numeric);
         CREATE INDEX child_v ON \"Child\" (v);
         INSERT INTO parent SELECT g, 'p' || g FROM generate_series(1, 500) g;
         INSERT INTO \"Child\" SELECT g, 1 + g % 500, g / 7.0 FROM generate_series(1, 2000) g;
         -- outside the backup: a table and a view that depend on it
         CREATE TABLE kept (id int PRIMARY KEY, parent_id int REFERENCES parent(id));
         INSERT INTO kept SELECT g, g FROM generate_series(1, 50) g;
         CREATE VIEW parent_names AS SELECT name FROM parent;",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let tables = [
        TableName::new("parent"),
        TableName::new("Child"),
        TableName::new("absent"),
    ];
    let before = [
        table_checksum(&mut conn, &tables[0]).await.unwrap(),
        table_checksum(&mut conn, &tables[1]).await.unwrap(),
    ];
    let dir = tempfile::tempdir().unwrap();
    let m = backup::dump(db.url(), &tables, dir.path()).await.unwrap();
    assert_eq!(m.tables, before);
    assert_eq!(m.missing, ["absent"]);
    assert!(m.bytes > 0 && m.sha256.len() == 64);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.path().join(MANIFEST))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // The migration changes both tables (and drops an index).
    sqlx::raw_sql(
        "DELETE FROM \"Child\" WHERE id > 1000; UPDATE parent SET name = 'changed' WHERE id < 10;
         DROP INDEX child_v; INSERT INTO parent VALUES (9999, 'new');",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    assert_ne!(
        table_checksum(&mut conn, &tables[0]).await.unwrap(),
        before[0]
    );

    let after = backup::restore(db.url(), dir.path()).await.unwrap();
    assert_eq!(after, before);
    for t in &tables[..2] {
        let now = table_checksum(&mut conn, t).await.unwrap();
        assert!(before.contains(&now), "{now:?}");
    }
    let (idx,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM pg_indexes WHERE indexname = 'child_v'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(idx, 1, "the dropped index is back");
    let (fks, views, kept): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM pg_constraint WHERE conrelid = 'kept'::regclass AND contype = 'f'),
                (SELECT count(*) FROM parent_names), (SELECT count(*) FROM kept)",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        (fks, views, kept),
        (1, 500, 50),
        "outside dependents are back"
    );

    // A changed dump file is refused, and nothing is touched.
    let dump = dir.path().join(backup::DUMP);
    let mut bytes = std::fs::read(&dump).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&dump, bytes).unwrap();
    let err = backup::restore(db.url(), dir.path())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("has changed since the backup"), "{err}");

    // A dump pg_restore cannot finish (cut short, its manifest made to match) restores
    // nothing: the tables keep what they hold now.
    sqlx::query("DELETE FROM \"Child\" WHERE id > 1500")
        .execute(&mut conn)
        .await
        .unwrap();
    let now = table_checksum(&mut conn, &tables[1]).await.unwrap();
    let bytes = std::fs::read(&dump).unwrap();
    std::fs::write(&dump, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let mut manifest = backup::read_manifest(dir.path()).unwrap();
    manifest.sha256 = format!(
        "{:x}",
        <sha2::Sha256 as sha2::Digest>::digest(&bytes[..bytes.len() * 2 / 3])
    );
    std::fs::write(
        dir.path().join(MANIFEST),
        serde_json::to_string(&manifest).unwrap(),
    )
    .unwrap();
    let err = backup::restore(db.url(), dir.path())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("nothing was restored"), "{err}");
    assert_eq!(table_checksum(&mut conn, &tables[1]).await.unwrap(), now);
}

#[tokio::test]
async fn a_partitioned_table_is_backed_up_with_its_partitions() {
    let (db, mut conn) = super::db().await;
    sqlx::raw_sql(
        "CREATE TABLE events (id int, at date NOT NULL, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
         CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
         CREATE TABLE events_rest PARTITION OF events DEFAULT;
         INSERT INTO events SELECT g, date '2024-01-01' + g FROM generate_series(1, 900) g;",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let t = [TableName::new("events")];
    let before = table_checksum(&mut conn, &t[0]).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    backup::dump(db.url(), &t, dir.path()).await.unwrap();
    sqlx::raw_sql("DELETE FROM events WHERE id % 3 = 0; DROP TABLE events_rest;")
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        backup::restore(db.url(), dir.path()).await.unwrap(),
        [before]
    );
}
