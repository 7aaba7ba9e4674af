//! Progress bars: one per running unit and one for the run, with rows/s and ETA.
//!
//! Bars draw only on a terminal (stderr). Off a terminal (logs, CI, `nohup`), an enabled
//! display writes one plain progress line every 10 seconds instead (rows, rows/s, units),
//! so the log of a long run shows life without drowning in redraws. Without the
//! `progress` feature the bars are no-ops; the plain lines remain.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::SizeHint;

/// How often a plain progress line is written off a terminal (`FERRY_PROGRESS_SECS`
/// overrides the default of 10 seconds).
pub fn plain_interval() -> Duration {
    std::env::var("FERRY_PROGRESS_SECS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| *s > 0.0)
        .map_or(Duration::from_secs(10), Duration::from_secs_f64)
}

/// The run's progress display. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Progress {
    #[cfg(feature = "progress")]
    inner: Option<Inner>,
    plain: Option<Arc<Plain>>,
}

/// Counters behind the plain progress lines, and the thread writing them.
#[derive(Debug)]
struct Plain {
    rows: AtomicU64,
    units_done: AtomicU64,
    units: u64,
    started: Instant,
    stop: std::sync::Mutex<Option<std::sync::mpsc::Sender<()>>>,
}

impl Plain {
    fn start(units: u64) -> Arc<Plain> {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let plain = Arc::new(Plain {
            rows: AtomicU64::new(0),
            units_done: AtomicU64::new(0),
            units,
            started: Instant::now(),
            stop: std::sync::Mutex::new(Some(tx)),
        });
        let weak = Arc::downgrade(&plain);
        let every = plain_interval();
        let _ = std::thread::Builder::new()
            .name("ferry-progress".into())
            .spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(every) {
                    let Some(p) = weak.upgrade() else { break };
                    let secs = p.started.elapsed().as_secs_f64();
                    let rows = p.rows.load(Ordering::Relaxed);
                    tracing::info!(
                        rows,
                        rows_per_s = format!("{:.0}", rows as f64 / secs.max(1e-9)),
                        units_done = p.units_done.load(Ordering::Relaxed),
                        units = p.units,
                        elapsed_s = format!("{secs:.0}"),
                        "progress"
                    );
                }
            });
        plain
    }

    fn finish(&self) {
        self.stop.lock().expect("progress lock").take();
    }
}

#[cfg(feature = "progress")]
#[derive(Clone, Debug)]
struct Inner {
    multi: indicatif::MultiProgress,
    total: indicatif::ProgressBar,
}

/// The bar of one unit.
#[derive(Clone, Debug, Default)]
pub struct UnitProgress {
    #[cfg(feature = "progress")]
    bar: Option<indicatif::ProgressBar>,
    #[cfg(feature = "progress")]
    total: Option<indicatif::ProgressBar>,
    plain: Option<Arc<Plain>>,
}

#[cfg(feature = "progress")]
static GLOBAL: std::sync::OnceLock<indicatif::MultiProgress> = std::sync::OnceLock::new();

/// The process-wide bar set, so log lines can be printed above the bars.
#[cfg(feature = "progress")]
pub fn multi() -> &'static indicatif::MultiProgress {
    GLOBAL.get_or_init(|| {
        indicatif::MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::stderr_with_hz(8))
    })
}

impl Progress {
    /// No bars at all.
    pub fn hidden() -> Self {
        Progress::default()
    }

    /// Bars on stderr when it is a terminal and `enabled`; a plain progress line every
    /// 10 s when `enabled` off a terminal; nothing otherwise.
    pub fn new(enabled: bool, units: u64) -> Self {
        use std::io::IsTerminal;
        if !enabled {
            return Progress::default();
        }
        if !std::io::stderr().is_terminal() || cfg!(not(feature = "progress")) {
            return Progress {
                plain: Some(Plain::start(units)),
                ..Progress::default()
            };
        }
        #[cfg(feature = "progress")]
        {
            let multi = multi().clone();
            let total = multi.add(indicatif::ProgressBar::new(units));
            total.set_style(
                indicatif::ProgressStyle::with_template(
                    "{prefix:>12.bold} [{bar:30.green/dim}] {pos}/{len} units  {msg}  {elapsed_precise} ETA {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            total.set_prefix("total");
            Progress {
                inner: Some(Inner { multi, total }),
                plain: None,
            }
        }
        #[cfg(not(feature = "progress"))]
        Progress::default()
    }

    /// A bar for one unit.
    pub fn unit(&self, name: &str, size: Option<SizeHint>) -> UnitProgress {
        #[cfg(feature = "progress")]
        {
            let Some(inner) = &self.inner else {
                return UnitProgress {
                    plain: self.plain.clone(),
                    ..UnitProgress::default()
                };
            };
            let (len, template) = match size {
                Some(SizeHint::Bytes(b)) => (
                    b,
                    "{prefix:>24.cyan} [{bar:30}] {bytes}/{total_bytes} {msg} ({bytes_per_sec}, ETA {eta})",
                ),
                Some(SizeHint::Rows(r)) => (
                    r,
                    "{prefix:>24.cyan} [{bar:30}] {pos}/{len} {msg} ({per_sec}, ETA {eta})",
                ),
                None => (0, "{prefix:>24.cyan} {spinner} {msg}"),
            };
            let bar = inner.multi.add(indicatif::ProgressBar::new(len));
            bar.set_style(
                indicatif::ProgressStyle::with_template(template)
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            let short: String = name
                .chars()
                .rev()
                .take(24)
                .collect::<String>()
                .chars()
                .rev()
                .collect();
            bar.set_prefix(short);
            UnitProgress {
                bar: Some(bar),
                total: Some(inner.total.clone()),
                plain: None,
            }
        }
        #[cfg(not(feature = "progress"))]
        {
            let _ = (name, size);
            UnitProgress {
                plain: self.plain.clone(),
            }
        }
    }

    /// Show the run's rows so far and rows/s on the total bar.
    pub fn set_rows(&self, rows: u64, rows_per_s: f64) {
        if let Some(p) = &self.plain {
            p.rows.store(rows, Ordering::Relaxed);
        }
        #[cfg(feature = "progress")]
        if let Some(inner) = &self.inner {
            inner
                .total
                .set_message(format!("{rows} rows, {rows_per_s:.0} rows/s"));
        }
        #[cfg(not(feature = "progress"))]
        let _ = (rows, rows_per_s);
    }

    /// Remove the bars (and stop the plain progress lines).
    pub fn finish(&self) {
        if let Some(p) = &self.plain {
            p.finish();
        }
        #[cfg(feature = "progress")]
        if let Some(inner) = &self.inner {
            inner.total.finish_and_clear();
        }
    }
}

impl UnitProgress {
    /// Advance by `consumed` (bytes or rows, as the size hint) and show the rows so far.
    pub fn advance(&self, consumed: u64, rows: u64) {
        #[cfg(feature = "progress")]
        if let Some(bar) = &self.bar {
            if bar.length().unwrap_or(0) > 0 {
                bar.inc(consumed);
            } else {
                bar.tick();
            }
            bar.set_message(format!("{rows} rows"));
        }
        #[cfg(not(feature = "progress"))]
        let _ = (consumed, rows);
    }

    /// The unit ended.
    pub fn finish(&self) {
        if let Some(p) = &self.plain {
            p.units_done.fetch_add(1, Ordering::Relaxed);
        }
        #[cfg(feature = "progress")]
        {
            if let Some(bar) = &self.bar {
                bar.finish_and_clear();
            }
            if let Some(total) = &self.total {
                total.inc(1);
            }
        }
    }
}

/// The sign of life of one migration step: a spinner with the elapsed time on a terminal,
/// a log line every 10 s off one (`step 5/9 indexes: running for 40 s`). Dropped or
/// [`StepTicker::finish`]ed when the step ends.
#[derive(Debug, Default)]
pub struct StepTicker {
    #[cfg(feature = "progress")]
    bar: Option<indicatif::ProgressBar>,
    stop: Option<std::sync::mpsc::Sender<()>>,
}

impl StepTicker {
    /// Start showing `label` (nothing when `enabled` is false).
    pub fn start(enabled: bool, label: &str) -> Self {
        use std::io::IsTerminal;
        if !enabled {
            return StepTicker::default();
        }
        #[cfg(feature = "progress")]
        if std::io::stderr().is_terminal() {
            let bar = multi().add(indicatif::ProgressBar::new_spinner());
            bar.set_style(
                indicatif::ProgressStyle::with_template("{spinner} {prefix:.bold} {elapsed}")
                    .expect("valid template"),
            );
            bar.set_prefix(label.to_owned());
            bar.enable_steady_tick(Duration::from_millis(200));
            return StepTicker {
                bar: Some(bar),
                stop: None,
            };
        }
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let label = label.to_owned();
        let every = plain_interval();
        let t0 = Instant::now();
        let _ = std::thread::Builder::new()
            .name("ferry-step".into())
            .spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(every) {
                    tracing::info!("{label}: running for {:.0} s", t0.elapsed().as_secs_f64());
                }
            });
        StepTicker {
            #[cfg(feature = "progress")]
            bar: None,
            stop: Some(tx),
        }
    }

    /// The step ended.
    pub fn finish(mut self) {
        self.stop.take();
        #[cfg(feature = "progress")]
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
