//! Resident memory of a process, from `/proc` (Linux; `None` elsewhere).

/// Current resident set (VmRSS) of process `pid`, in MiB.
#[must_use]
pub fn rss_mib(pid: u32) -> Option<f64> {
    status_kib(&format!("/proc/{pid}/status"), "VmRSS:").map(|k| k / 1024.0)
}

/// Peak resident set (VmHWM) of this process so far, in MiB.
#[must_use]
pub fn peak_rss_mib() -> Option<f64> {
    status_kib("/proc/self/status", "VmHWM:").map(|k| k / 1024.0)
}

/// A `kB` field of a `/proc/<pid>/status` file.
fn status_kib(path: &str, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(path).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let now = rss_mib(std::process::id()).unwrap();
        let peak = peak_rss_mib().unwrap();
        assert!(now > 0.0 && peak >= now * 0.5, "rss {now} peak {peak}");
        assert!(rss_mib(u32::MAX).is_none());
    }
}
