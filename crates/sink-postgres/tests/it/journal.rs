//! The run lock of the PostgreSQL journal survives a server restart, or says it was lost.

use std::time::{Duration, Instant};

use etl_core::migration::Journal;
use etl_sink_postgres::connect_options;
use etl_sink_postgres::journal::PgJournal;

async fn wait_until(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let t0 = Instant::now();
    while !f().await {
        assert!(t0.elapsed() < Duration::from_secs(30), "{what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_lock_is_taken_again_after_a_restart_or_reported_lost() {
    let dir = tempfile::tempdir().unwrap();
    // A server of its own: the test restarts it.
    let pg = etl_testkit::TempPostgres::start(dir.path().join("pg"))
        .await
        .unwrap();
    let journal = PgJournal::new(connect_options(pg.url()).unwrap());
    let lock = journal.lock("m").await.unwrap();
    assert_eq!(journal.lock_held("m").await.unwrap(), Some(true));
    assert!(
        journal.lock("m").await.is_err(),
        "held: a second taker is refused"
    );

    // The restart ends the session; the holder takes the lock again.
    pg.restart().await.unwrap();
    wait_until("the lock was not taken again", async || {
        journal.lock_held("m").await.unwrap_or(None) == Some(true)
    })
    .await;
    assert!(!lock.is_lost());
    assert!(journal.lock("m").await.is_err(), "still held by the first");

    // Another process takes it while the holder's session is down: the holder says lost.
    pg.restart().await.unwrap();
    let other = loop {
        match journal.lock("m").await {
            Ok(l) => break l,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    wait_until("the holder did not notice", async || lock.is_lost()).await;
    drop(lock);
    assert_eq!(
        journal.lock_held("m").await.unwrap(),
        Some(true),
        "the other holds it"
    );
    drop(other);
}
