//! Memory figures of the running process, for reports and benchmarks.
//!
//! "Peak RSS flat as the input grows" is a requirement of every migration here, and the
//! peak of a whole process tree (what `/usr/bin/time` reports) mixes in the servers a
//! binary may start (PostgreSQL, a local DynamoDB). These read the figures of this process
//! only, from `/proc/self/status` on Linux; elsewhere they return `None`.
//!
//! ```
//! let before = etl_core::mem::peak_rss_bytes();
//! let v = vec![1u8; 8 << 20];
//! # std::hint::black_box(&v);
//! if let (Some(a), Some(b)) = (before, etl_core::mem::peak_rss_bytes()) {
//!     assert!(b >= a);
//! }
//! ```

/// Peak resident set size of this process in bytes (`VmHWM`), since start or since the
/// last successful [`reset_peak_rss`].
pub fn peak_rss_bytes() -> Option<u64> {
    status_kib("VmHWM:").map(|k| k * 1024)
}

/// Current resident set size of this process in bytes (`VmRSS`).
pub fn current_rss_bytes() -> Option<u64> {
    status_kib("VmRSS:").map(|k| k * 1024)
}

/// Resets the peak to the current RSS, so the next [`peak_rss_bytes`] is the peak of what
/// runs in between (Linux 4.0 and later: writes `5` to `/proc/self/clear_refs`). Returns
/// `false` where that is not supported; the peak then keeps counting from the start.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", b"5").is_ok()
}

/// Caps glibc's malloc at `n` arenas, as `MALLOC_ARENA_MAX=n` in the environment would
/// (an explicit `MALLOC_ARENA_MAX` wins: then this does nothing). Call it first thing in
/// `main`.
///
/// By default glibc gives each thread that meets contention its own arena (up to 8 per
/// core), and memory freed in one arena is not reused by the others: a pipeline whose
/// batches are allocated on one thread and dropped on another then keeps tens of MB more
/// than it uses, growing with the run. Two arenas cost nothing measurable here and kept the
/// S9 migration's peak 25-30 % lower and flat (see BENCHMARKS.md). Returns whether the
/// limit was set (`false` off glibc).
pub fn limit_malloc_arenas(n: u32) -> bool {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return false;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        /// `M_ARENA_MAX` of glibc's `<malloc.h>`.
        const M_ARENA_MAX: i32 = -8;
        let n = i32::try_from(n.max(1)).unwrap_or(i32::MAX);
        // SAFETY: mallopt only sets a tuning parameter of the allocator.
        unsafe { mallopt(M_ARENA_MAX, n) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        let _ = n;
        false
    }
}

/// Bytes as MiB rounded to one decimal, for reports.
pub fn mib(bytes: u64) -> f64 {
    (bytes as f64 / 1_048_576.0 * 10.0).round() / 10.0
}

fn status_kib(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(target_os = "linux")]
    fn peak_follows_allocations_and_resets() {
        let base = super::current_rss_bytes().unwrap();
        let v = vec![7u8; 64 << 20];
        std::hint::black_box(&v);
        let peak = super::peak_rss_bytes().unwrap();
        assert!(peak >= base + (60 << 20), "peak {peak} base {base}");
        drop(v);
        if super::reset_peak_rss() {
            let after = super::peak_rss_bytes().unwrap();
            assert!(after < peak, "reset: {after} vs {peak}");
        }
        assert_eq!(super::mib(3 << 20), 3.0);
    }
}
