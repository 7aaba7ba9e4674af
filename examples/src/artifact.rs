//! Fingerprints of the files one step writes and another reads (an export, a transformed
//! Parquet file), so that `--resume` only continues over the very bytes the unfinished
//! run used: its size, modification time and a fast content hash (XXH3-64).

use std::io::Read as _;
use std::path::Path;

use anyhow::Context as _;
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
    pub fn of(path: &Path) -> anyhow::Result<Self> {
        let (size, modified_ns) = Self::times(path)?;
        let mut f =
            std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let mut h = twox_hash::XxHash3_64::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f
                .read(&mut buf)
                .with_context(|| format!("cannot read {}", path.display()))?;
            if n == 0 {
                break;
            }
            std::hash::Hasher::write(&mut h, &buf[..n]);
        }
        Ok(Fingerprint {
            size,
            modified_ns,
            xxh3: format!("{:016x}", std::hash::Hasher::finish(&h)),
        })
    }

    /// The size and modification time (nanoseconds since the Unix epoch) of the file at
    /// `path`, without reading it.
    ///
    /// # Errors
    /// The file's metadata cannot be read.
    pub fn times(path: &Path) -> anyhow::Result<(u64, i128)> {
        let meta =
            std::fs::metadata(path).with_context(|| format!("cannot stat {}", path.display()))?;
        let ns = meta
            .modified()
            .map_or(0, |t| match t.duration_since(std::time::UNIX_EPOCH) {
                Ok(d) => d.as_nanos() as i128,
                Err(e) => -(e.duration().as_nanos() as i128),
            });
        Ok((meta.len(), ns))
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
}
