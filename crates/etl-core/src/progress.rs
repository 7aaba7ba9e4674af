//! Progress bars: one per running unit and one for the run, with rows/s and ETA.
//!
//! Bars draw only on a terminal (stderr) and are silent otherwise, so logs and CI output
//! stay clean. Without the `progress` feature every method is a no-op.

use crate::SizeHint;

/// The run's progress display. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Progress {
    #[cfg(feature = "progress")]
    inner: Option<Inner>,
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

    /// Bars on stderr when it is a terminal and `enabled`; hidden otherwise.
    pub fn new(enabled: bool, units: u64) -> Self {
        #[cfg(feature = "progress")]
        {
            use std::io::IsTerminal;
            if !enabled || !std::io::stderr().is_terminal() {
                return Progress::default();
            }
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
            }
        }
        #[cfg(not(feature = "progress"))]
        {
            let _ = (enabled, units);
            Progress::default()
        }
    }

    /// A bar for one unit.
    pub fn unit(&self, name: &str, size: Option<SizeHint>) -> UnitProgress {
        #[cfg(feature = "progress")]
        {
            let Some(inner) = &self.inner else {
                return UnitProgress::default();
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
            }
        }
        #[cfg(not(feature = "progress"))]
        {
            let _ = (name, size);
            UnitProgress::default()
        }
    }

    /// Show the run's rows so far and rows/s on the total bar.
    pub fn set_rows(&self, rows: u64, rows_per_s: f64) {
        #[cfg(feature = "progress")]
        if let Some(inner) = &self.inner {
            inner
                .total
                .set_message(format!("{rows} rows, {rows_per_s:.0} rows/s"));
        }
        #[cfg(not(feature = "progress"))]
        let _ = (rows, rows_per_s);
    }

    /// Remove the bars.
    pub fn finish(&self) {
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
