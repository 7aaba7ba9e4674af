use etl_sink_postgres::ident::TableName;
use etl_sink_postgres::proof::{TableStats, disk_check};

#[tokio::test]
async fn table_stats_compare_before_and_after_and_the_disk_check_refuses_what_does_not_fit() {
    let (_db, mut conn) = crate::db().await;
    let t = TableName::new("trade");
    let (species, year) = (Some("species"), Some("year"));
    let missing = TableStats::take(&mut conn, &t, species, year)
        .await
        .unwrap();
    assert!(!missing.exists && missing.rows == 0 && missing.range.is_none());
    sqlx::raw_sql(
        "CREATE TABLE trade (species text, year integer);
         INSERT INTO trade VALUES ('a', 1990), ('a', 2001), ('b', NULL), (NULL, 1995);",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let before = TableStats::take(&mut conn, &t, species, year)
        .await
        .unwrap();
    assert_eq!((before.exists, before.rows), (true, 4));
    assert_eq!(before.distinct, Some(("species".into(), 2)));
    assert_eq!(before.range, Some(("year".into(), Some(1990), Some(2001))));
    assert!(
        missing.comparison(&missing, "stats").is_none(),
        "nothing before"
    );
    sqlx::raw_sql("DELETE FROM trade WHERE year = 2001")
        .execute(&mut conn)
        .await
        .unwrap();
    let after = TableStats::take(&mut conn, &t, species, year)
        .await
        .unwrap();
    let f = after.comparison(&before, "stats").unwrap();
    assert_eq!(
        f.message,
        "rows 4 -> 3, distinct species 2 -> 2, min year 1990 -> 1990, max year 2001 -> 1995"
    );
    assert!(!f.passed && !f.vetoes(), "a lost row warns: {f:?}");
    assert!(before.comparison(&before, "stats").unwrap().passed);
    // A round trip through the report's JSON.
    let json = serde_json::to_value(&before).unwrap();
    assert_eq!(serde_json::from_value::<TableStats>(json).unwrap(), before);

    // The test server is local: its free space is known and checked.
    let d = disk_check(&mut conn, 1000, 2.0, std::slice::from_ref(&t))
        .await
        .unwrap();
    assert!(d.free_bytes.is_some(), "{d:?}");
    assert!(d.needed_bytes > 2000 && d.note == "checked", "{d:?}");
    let e = disk_check(&mut conn, u64::MAX / 4, 1.0, &[])
        .await
        .unwrap_err();
    assert!(
        e.to_string().starts_with("not enough disk for the run"),
        "{e}"
    );
}
