//! `ParquetPartsLoad`: a part per unit, recorded units skipped on resume, parts joined in
//! unit order; a fresh run clears only its own parts.

use etl_core::checkpoint::JsonCheckpoint;
use etl_core::testing::MemoryExtract;
use etl_core::{Extract, Pipeline, RunInfo, UnitStatus};
use etl_parquet::{ParquetPartsLoad, file_rows, merge_parts, read_all};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_resume_and_merge_in_unit_order() {
    let dir = tempfile::tempdir().unwrap();
    let parts = dir.path().join("parts");
    let ckpt = dir.path().join(".checkpoint.json");
    std::fs::create_dir_all(&parts).unwrap();
    std::fs::write(parts.join("notes.txt"), "not a part").unwrap();
    let extract = MemoryExtract::units(&[("a", 300), ("b", 0), ("c", 1_200)]);
    let sink = || ParquetPartsLoad::new(&parts, JsonCheckpoint::new(&ckpt, "parts"));

    let first = Pipeline::new(extract.clone(), sink())
        .run(&RunInfo::new("parts"))
        .await;
    assert!(first.succeeded(), "{:?}", first.error);
    for u in ["a", "b", "c"] {
        assert!(ParquetPartsLoad::part_path(&parts, u).exists(), "{u}");
    }

    // Lose unit c's file: a resumed run redoes c only.
    std::fs::remove_file(ParquetPartsLoad::part_path(&parts, "c")).unwrap();
    let mut info = RunInfo::new("parts");
    info.resume = true;
    let again = Pipeline::new(extract.clone(), sink()).run(&info).await;
    assert!(again.succeeded(), "{:?}", again.error);
    let status = |n: &str| again.units.iter().find(|u| u.name == n).unwrap().status;
    assert_eq!(status("a"), UnitStatus::Resumed);
    assert_eq!(status("b"), UnitStatus::Resumed);
    assert_ne!(status("c"), UnitStatus::Resumed);

    let units: Vec<String> = extract
        .units()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.name)
        .collect();
    let out = dir.path().join("all.parquet");
    let rows = merge_parts(&parts, &units, extract.schema(), &out).unwrap();
    assert_eq!(rows, 1_500);
    assert_eq!(file_rows(&out).unwrap(), 1_500);
    assert!(!out.with_extension("parquet.part").exists());
    let batches = read_all(&out).unwrap();
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 1_500);

    // A fresh run clears its parts, and nothing else.
    let fresh = Pipeline::new(MemoryExtract::units(&[("z", 10)]), sink())
        .run(&RunInfo::new("parts"))
        .await;
    assert!(fresh.succeeded(), "{:?}", fresh.error);
    assert!(!ParquetPartsLoad::part_path(&parts, "a").exists());
    assert!(ParquetPartsLoad::part_path(&parts, "z").exists());
    assert!(parts.join("notes.txt").exists());
}
