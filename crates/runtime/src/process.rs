//! Resident memory and CPU time of a process, from `/proc` (Linux; `None` elsewhere).

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

/// CPU time (user + system) process `pid` has used so far, in seconds, from
/// `/proc/<pid>/stat`.
#[must_use]
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of the whole line, utime and stime, in clock ticks.
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let per_second = rustix::param::clock_ticks_per_second();
    (per_second > 0).then(|| ticks as f64 / per_second as f64)
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
        let start = cpu_seconds(std::process::id()).unwrap();
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while t.elapsed().as_millis() < 300 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let used = cpu_seconds(std::process::id()).unwrap() - start;
        assert!(used >= 0.1, "300 ms of spinning counted as {used} s of CPU");
        assert!(cpu_seconds(u32::MAX).is_none());
    }
}
