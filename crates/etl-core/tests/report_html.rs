//! `report.html` in a real headless browser (Debian's `chromium`): a tiny migration writes
//! it beside `report.json`; the page renders without a console message (no script error, no
//! Content-Security-Policy refusal of anything external) and its DOM shows the totals, the
//! reconciliation and a hostile reject value as text.
//!
//! Without `chromium` on PATH the test prints a note and passes, unless
//! `FERRY_REQUIRE_CHROMIUM=1` (set by `scripts/test.sh`, which installs it).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_schema::SchemaRef;
use etl_core::migration::{
    Action, MemoryJournal, Migration, RunOptions, Step, StepKind, StepOutput,
};
use etl_core::testing::{MemoryExtract, MemoryLoad};
use etl_core::{Batch, Fate, Finding, Pipeline, Result, RunStatus, Transform};

/// Rejects every tenth number with a reason that is markup, filters the sevens.
struct Hostile;
impl Transform for Hostile {
    fn name(&self) -> &str {
        "hostile"
    }
    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef> {
        Ok(input.clone())
    }
    fn transform(&self, mut batch: Batch) -> Result<Batch> {
        let n = batch.data.column(0).as_primitive::<Int64Type>().clone();
        let fates: Vec<Option<Fate>> = (n.values().iter())
            .map(|v| match v {
                v if v % 10 == 0 => Some(Fate::Reject {
                    column: Some("n".into()),
                    kind: "round".into(),
                    reason: format!("<script>alert({v})</script>"),
                }),
                v if v % 7 == 0 => Some(Fate::Filter {
                    reason: "unmatched sevens".into(),
                }),
                _ => None,
            })
            .collect();
        batch.apply_fates(&fates)?;
        Ok(batch)
    }
}

fn migration() -> Migration<MemoryLoad> {
    Migration::new("html_demo")
        .step(Step::pipeline("load", |load: &MemoryLoad, cx| {
            let source = MemoryExtract::units(&[("a.csv", 100), ("b.csv", 35)]);
            Ok(Pipeline::new(source, load.clone())
                .transform(Hostile)
                .options(cx.pipeline_options(16, 2)))
        }))
        .step(Step::new("gate", StepKind::Gate, |_: &MemoryLoad, _cx| {
            Box::pin(async move {
                Ok(StepOutput::message("104 rows staged")
                    .with_details(serde_json::json!({"rows": 104, "unmatched_values": ["7", "14"]}))
                    .with_findings(vec![Finding::check("min_rows", true, "104 rows staged")]))
            })
        }))
}

#[tokio::test]
async fn report_html_renders_in_chromium_without_console_errors() {
    let dir = tempfile::tempdir().unwrap();
    let load = MemoryLoad::default();
    let opts = RunOptions::new(dir.path()).with_action(Action::Run);
    let r = migration()
        .execute(&load, &MemoryJournal::new(), &opts)
        .await
        .unwrap();
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.error);
    let t = &r.totals;
    assert_eq!(
        (t.read, t.loaded, t.rejected, t.filtered),
        (135, 104, 13, 18)
    );
    assert!(r.files.iter().any(|f| f == "report.html"), "{:?}", r.files);
    let page = dir.path().join("report.html");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&page).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "it shows rejected records: owner-only");
    }

    let Some(chromium) = ["chromium", "chromium-browser"].into_iter().find(|b| {
        Command::new(b)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    }) else {
        assert!(
            std::env::var("FERRY_REQUIRE_CHROMIUM").as_deref() != Ok("1"),
            "chromium is not installed and FERRY_REQUIRE_CHROMIUM=1"
        );
        eprintln!("SKIP: no chromium on PATH (apt-get install chromium); report.html not rendered");
        return;
    };
    let profile = dir.path().join("chromium-profile");
    let mut child = Command::new(chromium)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish in 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    let (dom, log) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "chromium failed: {}\n{log}",
        out.status
    );
    // Chromium logs every console message (errors, CSP refusals) as `INFO:CONSOLE…`.
    let console: Vec<&str> = (log.lines())
        .filter(|l| l.contains(":CONSOLE") || l.contains("Uncaught"))
        .collect();
    assert!(
        console.is_empty(),
        "console messages:\n{}",
        console.join("\n")
    );
    for shown in [
        "<div class=\"v\" id=\"total-read\">135</div>",
        "<div class=\"v\" id=\"total-loaded\">104</div>",
        "read 135 = loaded 104 + rejected 13 + filtered 18 <span class=\"ok\">✓ reconciles</span>",
        "&lt;script&gt;alert(10)&lt;/script&gt;",
        "unmatched sevens",
        "step gate.unmatched_values",
        "min_rows",
    ] {
        assert!(dom.contains(shown), "{shown} not in the DOM:\n{dom}");
    }
    assert!(!dom.contains("<script"), "a script element in the DOM");
}
