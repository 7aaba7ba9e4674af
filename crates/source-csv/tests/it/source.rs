//! `CsvSource` through `Extract`: units, natural order, the threaded stream.

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use etl_core::{Extract, ExtractOptions, SizeHint};
use etl_source_csv::{CsvOptions, CsvSource};

use futures::StreamExt;

use crate::{CITES_COLUMNS, cites_schema, data, flatten};

fn cites_file(rows: usize) -> String {
    let mut s = CITES_COLUMNS.join(",");
    s.push('\n');
    for i in 0..rows {
        s.push_str(&format!(
            "\"{}\",{},\"II\",\"Falco rusticolus\",\"Aves\",,,,\"live\",{}.5,,\"NA\",\"CA\",,\"T\",\"W\",\"E\",,,\n",
            9_000_000_000u64 + i as u64,
            1975 + (i % 50),
            i
        ));
    }
    s
}

#[tokio::test]
async fn units_are_files_in_natural_order() {
    let dir = tempfile::tempdir().unwrap();
    for n in [10, 2, 1, 100] {
        std::fs::write(dir.path().join(format!("trade_db_{n}.csv")), cites_file(1)).unwrap();
    }
    std::fs::write(dir.path().join("other.csv"), "x").unwrap();
    let source = CsvSource::glob(cites_schema(), dir.path(), "trade_db_*.csv");
    let units = source.units().await.unwrap();
    let names: Vec<&str> = units.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "trade_db_1.csv",
            "trade_db_2.csv",
            "trade_db_10.csv",
            "trade_db_100.csv"
        ]
    );
    let len = cites_file(1).len() as u64;
    assert_eq!(units[0].size, Some(SizeHint::Bytes(len)));
    assert_eq!(
        units[0].locator,
        dir.path().join("trade_db_1.csv").display().to_string()
    );

    // An explicit list, sorted the same way.
    let list = CsvSource::files(
        cites_schema(),
        [
            dir.path().join("trade_db_10.csv"),
            dir.path().join("trade_db_2.csv"),
        ],
    );
    let names: Vec<String> = list
        .units()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.name)
        .collect();
    assert_eq!(names, ["trade_db_2.csv", "trade_db_10.csv"]);
}

#[tokio::test]
async fn no_matching_file_names_the_directory_and_pattern() {
    let dir = tempfile::tempdir().unwrap();
    let source = CsvSource::glob(cites_schema(), dir.path(), "trade_db_*.csv");
    let err = source.units().await.unwrap_err().to_string();
    assert!(err.contains(&dir.path().display().to_string()), "{err}");
    assert!(err.contains("trade_db_*.csv"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_with_backpressure_yields_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let text = cites_file(5000);
    std::fs::write(dir.path().join("trade_db_1.csv"), &text).unwrap();
    let source = CsvSource::glob(cites_schema(), dir.path(), "trade_db_*.csv")
        .with_options(CsvOptions::default().with_chunk_size(4096));
    let units = source.units().await.unwrap();
    let opts = ExtractOptions {
        batch_size: 700,
        buffer: 1,
    };
    let mut stream = source.open(&units[0], opts).unwrap();
    let mut batches = Vec::new();
    while let Some(b) = stream.next().await {
        let b = b.unwrap();
        assert!(b.num_rows() <= 700);
        // Slow consumer: the reader must wait, not pile up batches.
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        batches.push(b);
    }
    let (rows, rejects) = flatten(&batches);
    assert!(rejects.is_empty());
    assert_eq!(rows.len(), 5000);
    assert_eq!(rows[0].0, 2);
    assert_eq!(rows[4999].0, 5001);
    let consumed: u64 = batches.iter().map(|b| b.consumed).sum();
    assert_eq!(consumed, text.len() as u64);
    let ids: Vec<i64> = batches
        .iter()
        .flat_map(|b| {
            b.data
                .column(0)
                .as_primitive::<Int64Type>()
                .values()
                .to_vec()
        })
        .collect();
    assert_eq!(
        ids,
        (0..5000).map(|i| 9_000_000_000 + i).collect::<Vec<_>>()
    );
    assert!(batches.iter().all(|b| &*b.unit == "trade_db_1.csv"));

    // The same rows as the in-memory decoder on the same bytes.
    let direct = crate::decode_in_chunks(
        cites_schema(),
        text.as_bytes(),
        1 << 20,
        700,
        CsvOptions::default(),
    )
    .unwrap();
    assert_eq!(flatten(&direct), (rows, rejects));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_of_fixture_with_rejects_and_dropping_the_stream() {
    let source = CsvSource::files(crate::typed_schema(), [data("rejects.csv")]).with_options(
        CsvOptions::default()
            .with_max_record_bytes(200)
            .with_chunk_size(16),
    );
    let units = source.units().await.unwrap();
    let batches: Vec<_> = source
        .open(
            &units[0],
            ExtractOptions {
                batch_size: 4,
                buffer: 1,
            },
        )
        .unwrap()
        .map(Result::unwrap)
        .collect()
        .await;
    let (rows, rejects) = flatten(&batches);
    assert_eq!(rows.len(), 5);
    assert_eq!(rejects.len(), 11);
    assert!(rejects.iter().all(|r| &*r.unit == "rejects.csv"));

    // Dropping the stream after one batch stops the reader (no hang, no panic).
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("big.csv"), cites_file(20_000)).unwrap();
    let big = CsvSource::glob(cites_schema(), dir.path(), "*.csv");
    let units = big.units().await.unwrap();
    let mut stream = big
        .open(
            &units[0],
            ExtractOptions {
                batch_size: 100,
                buffer: 1,
            },
        )
        .unwrap();
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(first.num_rows(), 100);
    drop(stream);
}

#[tokio::test]
async fn open_errors_surface_in_the_stream() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.csv"), "Id,Year\n1,2\n").unwrap();
    std::fs::write(dir.path().join("empty.csv"), "").unwrap();
    let source = CsvSource::glob(cites_schema(), dir.path(), "*.csv");
    let units = source.units().await.unwrap();
    assert_eq!(units.len(), 2);
    for u in &units {
        let mut s = source.open(u, ExtractOptions::default()).unwrap();
        let err = s.next().await.unwrap().unwrap_err().to_string();
        if u.name == "a.csv" {
            assert!(
                err.contains("a.csv: missing column(s) Appendix, Taxon"),
                "{err}"
            );
        } else {
            assert!(err.contains("empty.csv: no header line"), "{err}");
        }
        assert!(s.next().await.is_none());
    }
    let gone = etl_core::Unit {
        name: "gone.csv".into(),
        locator: dir.path().join("gone.csv").display().to_string(),
        size: None,
    };
    let mut s = source.open(&gone, ExtractOptions::default()).unwrap();
    let err = s.next().await.unwrap().unwrap_err();
    assert!(matches!(err, etl_core::Error::Io { .. }), "{err:?}");
}

#[tokio::test]
async fn header_only_file_yields_no_rows() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!("{}\n", CITES_COLUMNS.join(","));
    std::fs::write(dir.path().join("h.csv"), &text).unwrap();
    let source = CsvSource::glob(cites_schema(), dir.path(), "h.csv");
    let units = source.units().await.unwrap();
    let batches: Vec<_> = source
        .open(&units[0], ExtractOptions::default())
        .unwrap()
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 0);
    assert_eq!(
        batches.iter().map(|b| b.consumed).sum::<u64>(),
        text.len() as u64
    );
}
