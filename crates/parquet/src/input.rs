//! Inputs of resumable steps: a step that reads a file another step wrote (an export, a
//! transformed Parquet file) and records the units it finished may only continue after a
//! kill over the very same bytes. [`Fingerprint`] identifies a file's content (size,
//! modification time, XXH3-64); [`InputGuard`] records it next to the units and refuses a
//! resume over a file that changed since, naming what changed.

use std::collections::HashMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use etl_core::checkpoint::JsonCheckpoint;
use serde::{Deserialize, Serialize};

/// What identifies a file's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// Bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub modified_ns: i128,
    /// XXH3-64 of the content, 16 hex digits.
    pub xxh3: String,
}

impl Fingerprint {
    /// The fingerprint of the file at `path` (read once, 1 MiB at a time).
    ///
    /// # Errors
    /// The file cannot be read.
    pub fn of(path: &Path) -> etl_core::Result<Self> {
        let (size, modified_ns) = Self::times(path)?;
        let io = |e| etl_core::Error::io(path.display(), e);
        let mut f = std::fs::File::open(path).map_err(io)?;
        let mut h = twox_hash::XxHash3_64::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf).map_err(io)?;
            if n == 0 {
                break;
            }
            std::hash::Hasher::write(&mut h, &buf[..n]);
        }
        let xxh3 = format!("{:016x}", std::hash::Hasher::finish(&h));
        Ok(Fingerprint {
            size,
            modified_ns,
            xxh3,
        })
    }

    /// The size and modification time (nanoseconds since the Unix epoch) of the file at
    /// `path`, without reading it.
    ///
    /// # Errors
    /// The file's metadata cannot be read.
    pub fn times(path: &Path) -> etl_core::Result<(u64, i128)> {
        let meta = std::fs::metadata(path).map_err(|e| etl_core::Error::io(path.display(), e))?;
        let ns = meta
            .modified()
            .map_or(0, |t| match t.duration_since(std::time::UNIX_EPOCH) {
                Ok(d) => d.as_nanos() as i128,
                Err(e) => -(e.duration().as_nanos() as i128),
            });
        Ok((meta.len(), ns))
    }

    /// Whether the file at `path` still has this size and modification time.
    pub fn same_times(&self, path: &Path) -> bool {
        Self::times(path).is_ok_and(|t| t == (self.size, self.modified_ns))
    }

    /// How the content differs from `then` (empty when it does not): `size 10 -> 12
    /// bytes`, `content hash a.. -> b..`, then `modified 2026-.. -> 2026-..` when the time
    /// differs too. A file only touched, or copied back, has the same content: no change.
    pub fn changes_since(&self, then: &Fingerprint) -> Vec<String> {
        let mut v = Vec::new();
        if self.size != then.size {
            v.push(format!("size {} -> {} bytes", then.size, self.size));
        }
        if self.xxh3 != then.xxh3 {
            v.push(format!("content hash {} -> {}", then.xxh3, self.xxh3));
        }
        if !v.is_empty() && self.modified_ns != then.modified_ns {
            v.push(format!(
                "modified {} -> {}",
                time(then.modified_ns),
                time(self.modified_ns)
            ));
        }
        v
    }
}

fn time(ns: i128) -> String {
    let secs = ns.div_euclid(1_000_000_000) as i64;
    let nanos = ns.rem_euclid(1_000_000_000) as u32;
    chrono::DateTime::from_timestamp(secs, nanos).map_or_else(|| ns.to_string(), |t| t.to_rfc3339())
}

/// The inputs of resumable steps, recorded in a checkpoint file: for units recorded under
/// scope `S`, the input's fingerprint is recorded under `input:S`. Each file is hashed once
/// per guard (later checks compare size and time).
#[derive(Debug)]
pub struct InputGuard {
    checkpoint: PathBuf,
    checked: Mutex<HashMap<PathBuf, Fingerprint>>,
}

impl InputGuard {
    /// A guard recording in the checkpoint file `checkpoint`.
    pub fn new(checkpoint: impl Into<PathBuf>) -> Self {
        InputGuard {
            checkpoint: checkpoint.into(),
            checked: Mutex::default(),
        }
    }

    /// Before a step reads `path` and records its units under `scope`: when resuming
    /// (`resume`) over recorded units, refuse ([`etl_core::Error::Refused`]) if the file
    /// changed since they were recorded; when not resuming, forget the units. Either way
    /// the file's fingerprint is recorded as it is now.
    ///
    /// # Errors
    /// The refusal; the file or the checkpoint cannot be read or written.
    pub fn check(&self, path: &Path, scope: &str, resume: bool) -> etl_core::Result<Fingerprint> {
        let units = JsonCheckpoint::new(&self.checkpoint, scope);
        let input = JsonCheckpoint::new(&self.checkpoint, format!("input:{scope}"));
        let known = self.checked.lock().expect("lock").get(path).cloned();
        let now = match known {
            Some(f) if resume && f.same_times(path) => f,
            _ => Fingerprint::of(path)?,
        };
        if resume && !units.completed()?.is_empty() {
            let then: Option<Fingerprint> =
                (input.get("fingerprint")?).and_then(|v| serde_json::from_value(v).ok());
            let changes = match &then {
                None => vec!["no fingerprint of it was recorded".to_owned()],
                Some(then) => now.changes_since(then),
            };
            if !changes.is_empty() {
                return Err(etl_core::Error::Refused(format!(
                    "--resume: {} changed since the unfinished {scope} recorded the units it \
                     wrote ({}); they are not the units of this file: run it from the start \
                     without --resume",
                    path.display(),
                    changes.join(", ")
                )));
            }
        } else if !resume {
            units.reset()?;
        }
        let value =
            serde_json::to_value(&now).map_err(|e| etl_core::Error::Config(e.to_string()))?;
        input.set("fingerprint", value)?;
        self.checked
            .lock()
            .expect("lock")
            .insert(path.to_owned(), now.clone());
        Ok(now)
    }

    /// [`InputGuard::check`] of every `(path, scope)` before any is read (a resume is
    /// refused over any input that changed), then [`InputGuard::report`] with the time
    /// the checks took.
    ///
    /// # Errors
    /// As [`InputGuard::check`].
    pub fn check_all(
        &self,
        inputs: impl IntoIterator<Item = (PathBuf, String)>,
        resume: bool,
    ) -> etl_core::Result<serde_json::Value> {
        let t = std::time::Instant::now();
        for (path, scope) in inputs {
            self.check(&path, &scope, resume)?;
        }
        Ok(self.report(t.elapsed().as_secs_f64()))
    }

    /// The fingerprints this guard checked, by path.
    pub fn checked(&self) -> HashMap<PathBuf, Fingerprint> {
        self.checked.lock().expect("lock").clone()
    }

    /// Before anything runs: when units of `scope` are recorded, refuse as
    /// [`InputGuard::check`] resuming does if `path` changed since they were (nothing to
    /// check when the file is missing or no unit is recorded).
    ///
    /// # Errors
    /// The refusal; the file or the checkpoint cannot be read or written.
    pub fn check_recorded(&self, path: &Path, scope: &str) -> etl_core::Result<()> {
        let units = JsonCheckpoint::new(&self.checkpoint, scope);
        if path.exists() && !units.completed()?.is_empty() {
            self.check(path, scope, true)?;
        }
        Ok(())
    }

    /// What was checked, for a report: `bytes` (of every file), `seconds` (as given: the
    /// time the checks took) and `files` (each fingerprint by path).
    pub fn report(&self, seconds: f64) -> serde_json::Value {
        let checked = self.checked();
        serde_json::json!({
            "bytes": checked.values().map(|f| f.size).sum::<u64>(),
            "seconds": seconds,
            "files": checked,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rewrite_changes_the_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.bin");
        std::fs::write(&p, b"hello").unwrap();
        let a = Fingerprint::of(&p).unwrap();
        assert_eq!(a, Fingerprint::of(&p).unwrap());
        assert!(a.changes_since(&a).is_empty());
        std::fs::write(&p, b"hellp").unwrap();
        let b = Fingerprint::of(&p).unwrap();
        let changes = b.changes_since(&a).join(", ");
        assert!(changes.contains("content hash"), "{changes}");
        assert!(!changes.contains("size"), "{changes}");
        // Copied back: the same content, whatever the time.
        std::fs::write(&p, b"hello").unwrap();
        assert!(Fingerprint::of(&p).unwrap().changes_since(&a).is_empty());
    }

    #[test]
    fn a_resume_over_recorded_units_needs_the_same_input() {
        let dir = tempfile::tempdir().unwrap();
        let (p, cp) = (dir.path().join("in.parquet"), dir.path().join("cp.json"));
        std::fs::write(&p, b"one").unwrap();
        InputGuard::new(&cp).check(&p, "load:x", false).unwrap();
        let unit = etl_core::UnitSummary::new("u1");
        JsonCheckpoint::new(&cp, "load:x").record(&unit).unwrap();
        InputGuard::new(&cp).check(&p, "load:x", true).unwrap();
        InputGuard::new(&cp).check_recorded(&p, "load:x").unwrap();
        let g = InputGuard::new(&cp);
        g.check_recorded(&dir.path().join("missing"), "load:x")
            .unwrap();
        g.check_recorded(&p, "load:y").unwrap();
        assert!(g.checked().is_empty(), "nothing recorded: nothing checked");
        std::fs::write(&p, b"two").unwrap();
        let err = InputGuard::new(&cp)
            .check_recorded(&p, "load:x")
            .unwrap_err();
        assert!(err.to_string().contains("changed since"), "{err}");
        let err = InputGuard::new(&cp)
            .check(&p, "load:x", true)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("changed since") && err.contains("content hash"),
            "{err}"
        );
        // A fresh run forgets the units and records the new file.
        let g = InputGuard::new(&cp);
        g.check(&p, "load:x", false).unwrap();
        let r = g.report(0.5);
        assert_eq!(
            (r["bytes"].as_u64(), r["seconds"].as_f64()),
            (Some(3), Some(0.5))
        );
        assert!(
            JsonCheckpoint::new(&cp, "load:x")
                .completed()
                .unwrap()
                .is_empty()
        );
    }
}
