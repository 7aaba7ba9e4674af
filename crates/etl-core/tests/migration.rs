//! The run layer: steps, journal, resume, rollback, dry run, plan, report.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use etl_core::migration::{
    Action, FileJournal, Journal, Migration, RunOptions, RunState, Step, StepKind, StepOutput,
    StepState,
};
use etl_core::testing::{MemoryExtract, MemoryLoad};
use etl_core::{Error, Finding, Pipeline, RunStatus};

/// The context of the test migration: a log of what ran, switches that make steps fail.
#[derive(Default)]
struct Ctx {
    log: Mutex<Vec<String>>,
    fail_gate: AtomicBool,
    fail_summary: AtomicBool,
    fail_preflight: AtomicBool,
    load: MemoryLoad,
}

impl Ctx {
    fn note(&self, s: &str) {
        self.log.lock().unwrap().push(s.to_owned());
    }
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }
}

fn simple(name: &'static str, kind: StepKind) -> Step<Ctx> {
    Step::new(name, kind, move |c: &Ctx, _cx| {
        Box::pin(async move {
            c.note(name);
            Ok(StepOutput::message(format!("{name} ok")))
        })
    })
    .undo(move |c: &Ctx, _cx| {
        Box::pin(async move {
            c.note(&format!("undo {name}"));
            Ok(StepOutput::message(format!("{name} undone")))
        })
    })
}

fn migration() -> Migration<Ctx> {
    Migration::new("test")
        .step(
            Step::new("preflight", StepKind::Preflight, |c: &Ctx, cx| {
                Box::pin(async move {
                    c.note(if cx.dry_run {
                        "preflight(dry)"
                    } else {
                        "preflight"
                    });
                    if c.fail_preflight.load(Ordering::SeqCst) {
                        return Err("the old table is in the way".into());
                    }
                    Ok(StepOutput::message("inputs found"))
                })
            })
            .in_dry_run()
            .always(),
        )
        .step(simple("staging", StepKind::Prepare))
        .step(
            Step::new("load", StepKind::Load, |c: &Ctx, cx| {
                Box::pin(async move {
                    c.note(if cx.resuming() {
                        "load(resume)"
                    } else {
                        "load"
                    });
                    let report =
                        Pipeline::new(MemoryExtract::numbers("n", 100, 10), c.load.clone())
                            .run(&cx.run_info())
                            .await;
                    Ok(StepOutput::from_pipeline(report))
                })
            })
            .in_dry_run(),
        )
        .step(
            Step::new("gates", StepKind::Gate, |c: &Ctx, _cx| {
                Box::pin(async move {
                    c.note("gates");
                    let ok = !c.fail_gate.load(Ordering::SeqCst);
                    Ok(StepOutput::message("checked")
                        .with_findings(vec![Finding::check("rows", ok, "100 rows")]))
                })
            })
            .in_dry_run(),
        )
        .step(simple("switch", StepKind::Switch))
        .step(Step::new("summary", StepKind::PostSwitch, |c: &Ctx, cx| {
            Box::pin(async move {
                c.note("summary");
                if c.fail_summary.load(Ordering::SeqCst) {
                    return Err("the summary table is locked".into());
                }
                let loaded = cx
                    .pipeline_of("load")
                    .map(|p| p.totals.loaded)
                    .unwrap_or_default();
                Ok(StepOutput::message("rebuilt")
                    .with_details(serde_json::json!({ "rows_seen": loaded })))
            })
        }))
        .step(
            Step::new("cleanup", StepKind::Cleanup, |c: &Ctx, _cx| {
                Box::pin(async move {
                    c.note("cleanup");
                    Ok(StepOutput::message("dropped the old table"))
                })
            })
            .optional()
            .irreversible("the old table is dropped; restore it from the backup"),
        )
}

fn opts(dir: &std::path::Path, action: Action) -> RunOptions {
    RunOptions::new(dir).with_action(action)
}

#[tokio::test]
async fn a_run_records_every_step_and_the_report_has_steps_and_totals() {
    let dir = tempfile::tempdir().unwrap();
    let journal = FileJournal::new(dir.path());
    let ctx = Ctx::default();
    let r = migration()
        .execute(&ctx, &journal, &opts(dir.path(), Action::Run))
        .await
        .unwrap();
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.error);
    assert_eq!(
        ctx.take(),
        ["preflight", "staging", "load", "gates", "switch", "summary"]
    );
    assert_eq!(r.totals.loaded, 100);
    assert_eq!(r.run_state.as_deref(), Some("done"));
    let outcomes: Vec<&str> = r.steps.iter().map(|s| s.outcome.as_str()).collect();
    assert_eq!(
        outcomes,
        ["ran", "ran", "ran", "ran", "ran", "ran", "skipped"]
    );
    assert_eq!(r.steps[5].details["rows_seen"], 100);
    // The journal file, the report files.
    let latest = journal.latest("test").await.unwrap().unwrap();
    assert_eq!(latest.run.state, RunState::Done);
    assert!(latest.steps[..6].iter().all(|s| s.state == StepState::Done));
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("report.json")).unwrap()).unwrap();
    assert_eq!(json["steps"].as_array().unwrap().len(), 7);
    assert_eq!(json["totals"]["loaded"], 100);
    let summary = std::fs::read_to_string(dir.path().join("summary.txt")).unwrap();
    assert!(summary.contains("summary"), "{summary}");
}

#[tokio::test]
async fn a_failed_post_switch_step_is_resumed_alone_and_a_plain_run_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let journal = FileJournal::new(dir.path());
    let ctx = Ctx::default();
    ctx.fail_summary.store(true, Ordering::SeqCst);
    let m = migration();
    let r = m
        .execute(&ctx, &journal, &opts(dir.path(), Action::Run))
        .await
        .unwrap();
    assert_eq!(r.status, RunStatus::Failed);
    assert!(
        r.error
            .as_deref()
            .unwrap()
            .contains("step `summary` failed: the summary table is locked"),
        "{:?}",
        r.error
    );
    ctx.take();
    // Past the switch: a plain run must not start over.
    let e = m
        .execute(&ctx, &journal, &opts(dir.path(), Action::Run))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Refused(_)), "{e}");
    assert!(e.to_string().contains("--resume"), "{e}");
    assert!(ctx.take().is_empty(), "nothing ran");
    // --plan says where a resume continues.
    let status = m.status(&journal).await.unwrap().to_string();
    assert!(status.contains("--resume continues run"), "{status}");
    assert!(status.contains("`summary`"), "{status}");
    // Resume runs the pre-flight (always) and the failed step only; the totals of the
    // load done earlier are in the report.
    ctx.fail_summary.store(false, Ordering::SeqCst);
    let r2 = m
        .execute(&ctx, &journal, &opts(dir.path(), Action::Resume))
        .await
        .unwrap();
    assert_eq!(r2.status, RunStatus::Succeeded, "{:?}", r2.error);
    assert_eq!(r2.run_id, r.run_id);
    assert_eq!(ctx.take(), ["preflight", "summary"]);
    assert_eq!(r2.totals.loaded, 100);
    assert_eq!(r2.steps[5].attempts, 2);
    assert_eq!(r2.steps[5].details["rows_seen"], 100);
    // Nothing left to resume.
    let e = m
        .execute(&ctx, &journal, &opts(dir.path(), Action::Resume))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("nothing to resume"), "{e}");
}

#[tokio::test]
async fn a_restartable_migration_starts_over_before_its_switch_only() {
    let dir = tempfile::tempdir().unwrap();
    let journal = FileJournal::new(dir.path());
    let ctx = Ctx::default();
    ctx.fail_gate.store(true, Ordering::SeqCst);
    let m = migration().restart_unfinished();
    let r = m
        .execute(&ctx, &journal, &opts(dir.path(), Action::Run))
        .await
        .unwrap();
    assert_eq!(r.status, RunStatus::Failed);
    assert!(
        r.error.as_deref().unwrap().contains("rows: 100 rows"),
        "{:?}",
        r.error
    );
    assert_eq!(r.steps[4].outcome, "not_reached");
    ctx.take();
    ctx.fail_gate.store(false, Ordering::SeqCst);
    let r2 = m
        .execute(&ctx, &journal, &opts(dir.path(), Action::Run))
        .await
        .unwrap();
    assert_eq!(r2.status, RunStatus::Succeeded);
    assert_ne!(r2.run_id, r.run_id, "a new run");
    assert_eq!(
        ctx.take(),
        ["preflight", "staging", "load", "gates", "switch", "summary"]
    );
}

#[tokio::test]
async fn stop_before_a_step_then_resume_there() {
    let dir = tempfile::tempdir().unwrap();
    let journal = FileJournal::new(dir.path());
    let ctx = Ctx::default();
    let m = migration();
    let mut o = opts(dir.path(), Action::Run);
    o.stop_before = Some("switch".into());
    let r = m.execute(&ctx, &journal, &o).await.unwrap();
    assert_eq!(r.status, RunStatus::Succeeded);
    assert_eq!(r.run_state.as_deref(), Some("stopped"));
    assert!(r.extra["next_step"].as_str().unwrap().contains("--resume"));
    assert_eq!(ctx.take(), ["preflight", "staging", "load", "gates"]);
    let r2 = m
        .execute(&ctx, &journal, &opts(dir.path(), Action::Resume))
        .await
        .unwrap();
    assert_eq!(r2.status, RunStatus::Succeeded);
    assert_eq!(ctx.take(), ["preflight", "switch", "summary"]);
    assert_eq!(r2.totals.loaded, 100, "the load's totals carried over");
}

#[tokio::test]
async fn rollback_undoes_in_reverse_and_a_cleanup_blocks_it() {
    let dir = tempfile::tempdir().unwrap();
    let journal = FileJournal::new(dir.path());
    let ctx = Ctx::default();
    let m = migration();
    m.execute(&ctx, &journal, &opts(dir.path(), Action::Run))
        .await
        .unwrap();
    ctx.take();
    let plan = m.status(&journal).await.unwrap().to_string();
    assert!(
        plan.contains(
            "--rollback would undo, in this order: summary, switch, gates, load, staging, preflight"
        ),
        "{plan}"
    );
    let r = m
        .execute(&ctx, &journal, &opts(dir.path(), Action::Rollback))
        .await
        .unwrap();
    assert_eq!(r.status, RunStatus::RolledBack, "{:?}", r.error);
    assert_eq!(ctx.take(), ["undo switch", "undo staging"]);
    let latest = journal.latest("test").await.unwrap().unwrap();
    assert_eq!(latest.run.state, RunState::RolledBack);
    assert!(
        m.execute(&ctx, &journal, &opts(dir.path(), Action::Rollback))
            .await
            .unwrap_err()
            .to_string()
            .contains("already rolled back")
    );

    // A new run, then its cleanup: the rollback is now refused before undoing anything.
    m.execute(&ctx, &journal, &opts(dir.path(), Action::Run))
        .await
        .unwrap();
    let r = m
        .execute(
            &ctx,
            &journal,
            &opts(dir.path(), Action::Only(vec!["cleanup".into()])),
        )
        .await
        .unwrap();
    assert_eq!(r.status, RunStatus::Succeeded);
    ctx.take();
    let e = m
        .execute(&ctx, &journal, &opts(dir.path(), Action::Rollback))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("`cleanup`"), "{e}");
    assert!(ctx.take().is_empty());
}

#[tokio::test]
async fn a_dry_run_runs_the_reading_steps_and_writes_no_journal() {
    let dir = tempfile::tempdir().unwrap();
    let journal = FileJournal::new(dir.path().join("journal"));
    let ctx = Ctx::default();
    let r = migration()
        .execute(&ctx, &journal, &opts(dir.path(), Action::DryRun))
        .await
        .unwrap();
    assert_eq!(r.status, RunStatus::DryRun, "{:?}", r.error);
    assert_eq!(ctx.take(), ["preflight(dry)", "load", "gates"]);
    assert_eq!(ctx.load.rows(), 0, "a dry-run pipeline loads nothing");
    assert_eq!(r.totals.read, 100);
    assert_eq!(r.steps[1].outcome, "would_run");
    assert!(!dir.path().join("journal").exists());
}

#[tokio::test]
async fn resume_refuses_a_step_whose_definition_changed() {
    let dir = tempfile::tempdir().unwrap();
    let journal = FileJournal::new(dir.path());
    let ctx = Ctx::default();
    ctx.fail_summary.store(true, Ordering::SeqCst);
    let with_fp = |fp: &str| {
        let fp = fp.to_owned();
        Migration::new("test")
            .step(simple("schema", StepKind::Schema).fingerprint(fp))
            .step(migration().step_list()[5].clone())
    };
    with_fp("sha256:aaa")
        .execute(&ctx, &journal, &opts(dir.path(), Action::Run))
        .await
        .unwrap();
    let e = with_fp("sha256:bbb")
        .execute(&ctx, &journal, &opts(dir.path(), Action::Resume))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("`schema`"), "{e}");
    assert!(e.to_string().contains("sha256:aaa"), "{e}");
}

#[tokio::test]
async fn unknown_steps_and_resume_without_a_run_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let journal = FileJournal::new(dir.path());
    let ctx = Ctx::default();
    let m = migration();
    let e = m
        .execute(&ctx, &journal, &opts(dir.path(), Action::Resume))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("no run to resume"), "{e}");
    let e = m
        .execute(
            &ctx,
            &journal,
            &opts(dir.path(), Action::Only(vec!["vacuum".into()])),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("no step `vacuum`"), "{e}");
    let plan = m.status(&journal).await.unwrap().to_string();
    assert!(
        plan.contains("next: a run starts at step 1 `preflight`"),
        "{plan}"
    );
}

#[tokio::test]
async fn one_run_at_a_time_and_a_dead_holder_frees_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let journal = FileJournal::new(dir.path());
    let ctx = Ctx::default();
    let m = migration();
    // Another process's run holds the lock (here: this test, through the journal).
    let held = journal.lock("test").await.unwrap();
    assert_eq!(journal.lock_held("test").await.unwrap(), Some(true));
    for action in [Action::Run, Action::Resume, Action::Rollback] {
        let e = m
            .execute(&ctx, &journal, &opts(dir.path(), action))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Refused(_)), "{e}");
        let msg = e.to_string();
        assert!(msg.contains("is being run by pid"), "{msg}");
        assert!(msg.contains(&std::process::id().to_string()), "{msg}");
    }
    assert!(ctx.take().is_empty(), "nothing ran");
    // A dry run writes nothing and needs no lock.
    let r = m
        .execute(&ctx, &journal, &opts(dir.path(), Action::DryRun))
        .await
        .unwrap();
    assert_eq!(r.status, RunStatus::DryRun);
    ctx.take();
    // The holder is gone: the lock is free and a run takes it.
    drop(held);
    assert_eq!(journal.lock_held("test").await.unwrap(), Some(false));
    let r = m
        .execute(&ctx, &journal, &opts(dir.path(), Action::Run))
        .await
        .unwrap();
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.error);
    assert_eq!(
        journal.lock_held("test").await.unwrap(),
        Some(false),
        "released at the end"
    );
}

#[tokio::test]
async fn a_run_refused_at_its_preflight_does_not_block_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let journal = FileJournal::new(dir.path());
    let ctx = Ctx::default();
    let m = migration(); // not restartable
    ctx.fail_preflight.store(true, Ordering::SeqCst);
    let r = m
        .execute(&ctx, &journal, &opts(dir.path(), Action::Run))
        .await
        .unwrap();
    assert_eq!(r.status, RunStatus::Failed);
    ctx.fail_preflight.store(false, Ordering::SeqCst);
    ctx.take();
    let r2 = m
        .execute(&ctx, &journal, &opts(dir.path(), Action::Run))
        .await
        .unwrap();
    assert_eq!(r2.status, RunStatus::Succeeded, "{:?}", r2.error);
    assert_ne!(r2.run_id, r.run_id);
}

/// Steps `a1`, `a2` (group `a`), `b` (group `b`, resumes itself) and `c` (group `b`);
/// each notes its name, `b` also whether it resumes.
fn grouped() -> Migration<Ctx> {
    let note = |name: &'static str, group: &'static str| {
        Step::new(name, StepKind::Other, move |c: &Ctx, cx| {
            Box::pin(async move {
                c.note(&format!(
                    "{name}{}",
                    if cx.resuming() { "(resume)" } else { "" }
                ));
                cx.log_errors([format!("NOTE {name}")])?;
                Ok(StepOutput::message("ok"))
            })
        })
        .group(group)
    };
    Migration::new("grouped")
        .errors_log("errors.log")
        .step(note("a1", "a"))
        .step(note("a2", "a"))
        .step(note("b", "b").resumes_itself())
        .step(note("c", "b"))
}

#[tokio::test]
async fn groups_run_within_the_latest_run_afresh_or_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let journal = FileJournal::new(dir.path());
    let ctx = Ctx::default();
    let m = grouped();
    assert_eq!(m.groups(), ["a", "b"]);
    let group = |g: &str, resume: bool| {
        opts(
            dir.path(),
            Action::Group {
                group: g.into(),
                resume,
            },
        )
    };
    let r = m.execute(&ctx, &journal, &group("a", false)).await.unwrap();
    assert!(r.succeeded(), "{:?}", r.error);
    assert_eq!(ctx.take(), ["a1", "a2"]);
    assert_eq!(
        r.run_state.as_deref(),
        Some("stopped"),
        "b and c are not done"
    );
    let run_id = r.run_id.clone();

    let r = m.execute(&ctx, &journal, &group("b", false)).await.unwrap();
    assert_eq!(ctx.take(), ["b", "c"]);
    assert_eq!(
        (r.run_id.as_str(), r.run_state.as_deref()),
        (run_id.as_str(), Some("done"))
    );
    assert_eq!(r.steps[0].outcome, "skipped");

    // Resumed: the step that resumes itself runs again (resuming), the done one does not.
    m.execute(&ctx, &journal, &group("b", true)).await.unwrap();
    assert_eq!(ctx.take(), ["b(resume)"]);
    // Afresh: every step of the group, none resuming (though they ran before).
    m.execute(&ctx, &journal, &group("b", false)).await.unwrap();
    assert_eq!(ctx.take(), ["b", "c"]);
    // --only takes group names.
    let r = (m.execute(
        &ctx,
        &journal,
        &opts(dir.path(), Action::Only(vec!["a".into()])),
    ))
    .await
    .unwrap();
    assert_eq!(ctx.take(), ["a1(resume)", "a2(resume)"], "they ran before");
    assert_eq!(r.run_id, run_id);
    // An unknown group is refused before anything runs.
    let e = m
        .execute(&ctx, &journal, &group("z", false))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Refused(m) if m.contains("its groups: a, b")),
        "{e}"
    );
    assert!(ctx.take().is_empty());

    // The errors log holds what the steps logged, and the report lists it.
    let log = std::fs::read_to_string(dir.path().join("errors.log")).unwrap();
    assert_eq!(log.matches("NOTE a1").count(), 2, "{log}");
    assert!(r.files.contains(&"errors.log".to_owned()), "{:?}", r.files);
}

#[tokio::test]
async fn the_runner_records_peak_memory_and_logs_errors_and_failed_checks() {
    let dir = tempfile::tempdir().unwrap();
    let journal = FileJournal::new(dir.path());
    let ctx = Ctx::default();
    ctx.fail_gate.store(true, Ordering::SeqCst);
    let m = migration().errors_log("migration_errors.log");
    let r = m
        .execute(&ctx, &journal, &opts(dir.path(), Action::Run))
        .await
        .unwrap();
    assert_eq!(r.status, RunStatus::Failed);
    if etl_core::mem::peak_rss_bytes().is_some() {
        let load = r.steps.iter().find(|s| s.name == "load").unwrap();
        assert!(load.peak_rss_mib.unwrap() > 0.0, "{load:?}");
        assert!(
            r.extra["peak_rss_mib"]["gates"].is_number(),
            "{:?}",
            r.extra
        );
        assert!(r.extra["peak_rss_mib"].get("switch").is_none(), "not run");
    }
    let log = std::fs::read_to_string(dir.path().join("migration_errors.log")).unwrap();
    assert!(log.contains("ERROR gates: rows: 100 rows"), "{log}");
    assert!(
        log.contains("ERROR step `gates` failed"),
        "the run's error: {log}"
    );
    assert!(r.files.contains(&"migration_errors.log".to_owned()));
}

#[tokio::test]
async fn a_step_of_several_pipelines_reports_them_as_one() {
    let dir = tempfile::tempdir().unwrap();
    let journal = FileJournal::new(dir.path());
    let ctx = Ctx::default();
    let both = |fail: bool| {
        Step::new("both", StepKind::Load, move |c: &Ctx, cx| {
            Box::pin(async move {
                let mut reports = Vec::new();
                for (name, n) in [("x", 30), ("y", 20)] {
                    let p = Pipeline::new(MemoryExtract::numbers(name, n, 10), c.load.clone());
                    reports.push(p.run(&cx.run_info()).await);
                }
                if fail {
                    let mut r = etl_core::RunReport::new(
                        "z",
                        "z",
                        RunStatus::Failed,
                        &[],
                        chrono::Utc::now(),
                    );
                    r.error = Some("the third one failed".into());
                    reports.push(r);
                }
                Ok(StepOutput::from_pipelines(reports))
            })
        })
    };
    let m = Migration::new("several").step(both(false));
    let r = m
        .execute(&ctx, &journal, &opts(dir.path(), Action::Run))
        .await
        .unwrap();
    assert!(r.succeeded(), "{:?}", r.error);
    assert_eq!((r.totals.read, r.totals.loaded), (50, 50));
    assert_eq!(r.units.len(), 2);
    assert!(
        r.steps[0].message.starts_with("read 50 = loaded 50"),
        "{}",
        r.steps[0].message
    );
    assert_eq!(
        StepOutput::from_pipelines(Vec::new()).message,
        "no pipeline ran"
    );

    let m = Migration::new("several2").step(both(true));
    let r = m
        .execute(&ctx, &journal, &opts(dir.path(), Action::Run))
        .await
        .unwrap();
    assert_eq!(r.status, RunStatus::Failed);
    assert!(r.error.unwrap().contains("the third one failed"));
}
