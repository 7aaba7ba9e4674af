//! Integration tests: real clusters from the installed PostgreSQL binaries.

use etl_testkit::{TempPostgres, TestDb};
use sqlx::Connection as _;

fn scratch_dir(tag: &str) -> std::path::PathBuf {
    etl_testkit::target_dir()
        .join("ferry-testkit-it")
        .join(format!("{tag}-{}", std::process::id()))
}

#[tokio::test]
async fn temp_postgres_starts_reuses_and_cleans_up() {
    let dir = scratch_dir("cluster");
    let _ = std::fs::remove_dir_all(&dir);
    let pg = TempPostgres::start(&dir).await.expect("start");
    assert_eq!(
        pg.url(),
        format!("postgres://postgres@127.0.0.1:{}/postgres", pg.port())
    );
    assert!(pg.data_dir().join("PG_VERSION").is_file());

    let mut conn = sqlx::PgConnection::connect(pg.url())
        .await
        .expect("connect");
    let (one,): (i32,) = sqlx::query_as("SELECT 1")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(one, 1);
    let (fsync,): (String,) = sqlx::query_as("SHOW fsync")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(fsync, "off");
    let (listen,): (String,) = sqlx::query_as("SHOW listen_addresses")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(listen, "127.0.0.1");
    conn.close().await.unwrap();

    // keep + start again on the same dir = reuse the running server.
    let port = pg.port();
    let url = pg.keep();
    let again = TempPostgres::start(&dir).await.expect("reuse");
    assert_eq!(again.port(), port);
    assert_eq!(again.url(), url);

    let data_dir = again.data_dir().to_path_buf();
    drop(again);
    assert!(!data_dir.exists(), "data dir must be deleted on drop");
    assert!(
        sqlx::PgConnection::connect(&url).await.is_err(),
        "server must be stopped"
    );
}

#[tokio::test]
async fn explicit_stop_deletes_the_cluster() {
    let dir = scratch_dir("stop");
    let _ = std::fs::remove_dir_all(&dir);
    let pg = TempPostgres::start(&dir).await.expect("start");
    let data_dir = pg.data_dir().to_path_buf();
    pg.stop().await.expect("stop");
    assert!(!data_dir.exists());
}

#[tokio::test]
async fn test_db_is_fresh_and_dropped() {
    let db = TestDb::create().await.expect("create test db");
    assert!(db.name().starts_with("ferry_t_"));
    assert!(db.url().ends_with(db.name()));
    let pool = db.pool().await.expect("pool");
    let (current,): (String,) = sqlx::query_as("SELECT current_database()")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(current, db.name());
    let (tables,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(tables, 0);
    sqlx::query("CREATE TABLE t (id int)")
        .execute(&pool)
        .await
        .unwrap();

    let name = db.name().to_string();
    let server = etl_testkit::test_server_url().await.unwrap();
    drop(db); // pool still open: DROP ... WITH (FORCE) ends its connections
    drop(pool);
    let mut conn = sqlx::PgConnection::connect(&server).await.unwrap();
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM pg_database WHERE datname = $1")
        .bind(&name)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(n, 0, "test database must be dropped");
}

#[tokio::test]
async fn database_url_or_start_passes_a_given_url_through() {
    let (url, guard) =
        etl_testkit::database_url_or_start(Some("postgres://x@127.0.0.1:1/y"), "unused")
            .await
            .unwrap();
    assert_eq!(url, "postgres://x@127.0.0.1:1/y");
    assert!(guard.is_none());

    let (url, guard) =
        etl_testkit::database_url_or_start(None, &format!("it-{}", std::process::id()))
            .await
            .unwrap();
    let guard = guard.expect("a started cluster");
    assert_eq!(url, guard.url());
    let dir = guard.data_dir().to_path_buf();
    assert!(
        dir.starts_with(
            etl_testkit::target_dir()
                .join("ferry-pg")
                .canonicalize()
                .unwrap()
        )
    );
    drop(guard);
    assert!(!dir.exists());
}

/// The PostgreSQL fault proxy: a cut connection fails at once, a stalled one never answers.
#[tokio::test]
async fn the_pg_fault_proxy_cuts_and_stalls_connections() {
    use sqlx::Connection as _;
    let db = TestDb::create().await.unwrap();
    let url = db.url();
    let port: u16 = url
        .rsplit_once(':')
        .unwrap()
        .1
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let proxied = |p: u16| {
        format!(
            "{}{p}{}?sslmode=disable",
            &url[..url.rfind(':').unwrap() + 1],
            &url[url.rfind('/').unwrap()..]
        )
    };
    let proxy = etl_testkit::PgFaultProxy::start(port, etl_testkit::PgFault::None)
        .await
        .unwrap();
    let mut conn = sqlx::PgConnection::connect(&proxied(proxy.port()))
        .await
        .unwrap();
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(one, 1, "forwards when no fault is set");

    // Startup is a few hundred bytes: a cut after 2,000 lets it connect, then the big
    // query dies.
    proxy.set_fault(etl_testkit::PgFault::CutAfterBytes(2_000));
    let mut conn = sqlx::PgConnection::connect(&proxied(proxy.port()))
        .await
        .unwrap();
    let big = format!("SELECT '{}'", "x".repeat(4_000));
    assert!(
        sqlx::query(sqlx::AssertSqlSafe(big.clone()))
            .execute(&mut conn)
            .await
            .is_err()
    );

    proxy.set_fault(etl_testkit::PgFault::StallAfterBytes(2_000));
    let mut conn = sqlx::PgConnection::connect(&proxied(proxy.port()))
        .await
        .unwrap();
    let stalled = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        sqlx::query(sqlx::AssertSqlSafe(big)).execute(&mut conn),
    )
    .await;
    assert!(stalled.is_err(), "a stalled link gives no answer");
    assert_eq!(proxy.fired(), 2);
}

/// The statement faults of the PostgreSQL proxy: a cut before a statement leaves nothing
/// done, a cut after it lets an autocommit statement commit, a `COMMIT` after a matching
/// statement commits while its answer is lost; each fires once.
#[tokio::test]
async fn the_pg_fault_proxy_cuts_at_statements_and_loses_a_commit_answer() {
    use etl_testkit::{PgFault, PgFaultProxy};
    use sqlx::Connection as _;
    let db = TestDb::create().await.unwrap();
    let url = db.url();
    let mut direct = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::raw_sql("CREATE TABLE t (x int)")
        .execute(&mut direct)
        .await
        .unwrap();
    let count = |sql: &'static str| async move {
        let mut c = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(&mut c)
            .await
            .unwrap()
    };
    // A proxy with `fault` and a connection through it.
    let through = |fault| async move {
        let proxy = PgFaultProxy::in_front_of(url, fault).await.unwrap();
        let c = sqlx::PgConnection::connect(&proxy.url_for(url))
            .await
            .unwrap();
        (proxy, c)
    };
    for (forward, want) in [(false, 0), (true, 1)] {
        sqlx::raw_sql("TRUNCATE t")
            .execute(&mut direct)
            .await
            .unwrap();
        let cut = PgFault::CutOnQuery {
            pattern: "insert into t",
            forward,
        };
        let (proxy, mut c) = through(cut).await;
        assert!(
            sqlx::query("INSERT INTO t VALUES ($1)")
                .bind(1)
                .execute(&mut c)
                .await
                .is_err()
        );
        assert_eq!(proxy.fired(), 1);
        assert_eq!(
            count("SELECT count(*) FROM t").await,
            want,
            "forward {forward}"
        );
        // Fires once: a new connection goes through.
        let mut c = sqlx::PgConnection::connect(&proxy.url_for(url))
            .await
            .unwrap();
        sqlx::query("INSERT INTO t VALUES (2)")
            .execute(&mut c)
            .await
            .unwrap();
    }

    let (proxy, mut c) = through(PgFault::LoseCommitAfter {
        pattern: "INSERT INTO T",
    })
    .await;
    let mut tx = sqlx::Connection::begin(&mut c).await.unwrap();
    sqlx::query("INSERT INTO t VALUES (3)")
        .execute(&mut *tx)
        .await
        .unwrap();
    assert!(tx.commit().await.is_err(), "the client hears nothing");
    assert_eq!(
        count("SELECT count(*) FROM t WHERE x = 3").await,
        1,
        "but it committed"
    );
    assert_eq!(proxy.fired(), 1);
}

#[tokio::test]
async fn the_pg_fault_proxy_rewrites_urls_to_itself() {
    let proxy = etl_testkit::PgFaultProxy::in_front_of(
        "postgres://u:pw@127.0.0.1:5432/db",
        etl_testkit::PgFault::None,
    )
    .await
    .unwrap();
    let p = proxy.port();
    assert!(
        etl_testkit::PgFaultProxy::in_front_of("postgres://u@h/db", etl_testkit::PgFault::None)
            .await
            .is_err(),
        "no port"
    );
    assert_eq!(
        proxy.url_for("postgres://u:pw@127.0.0.1:5432/db"),
        format!("postgres://u:pw@127.0.0.1:{p}/db?sslmode=disable")
    );
    assert_eq!(
        proxy.url_for("postgres://u@127.0.0.1:5432/db?application_name=x"),
        format!("postgres://u@127.0.0.1:{p}/db?application_name=x&sslmode=disable")
    );
}
