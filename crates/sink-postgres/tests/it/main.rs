//! Integration tests against a real PostgreSQL (the test server of `etl-testkit`).

mod backup;
mod compare;
mod copy_props;
mod copy_roundtrip;
mod journal;
mod load_resume;
mod partition;
mod partition_steps;
mod plan;
mod proof;
mod switchover;
mod upsert;

use sqlx::{Connection, PgConnection};

pub async fn db() -> (etl_testkit::TestDb, PgConnection) {
    let db = etl_testkit::TestDb::create().await.expect("test database");
    let conn = PgConnection::connect(db.url()).await.expect("connect");
    (db, conn)
}
