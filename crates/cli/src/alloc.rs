//! glibc malloc tuning for the long-running roles (worker, sink, camera, demo, benchmarks).
//!
//! Measured (`edgepool bench chaos bad-input`, docs/reliability.md): with glibc's defaults a
//! one-slot worker fed 8 MiB frames grew from 184 to 450 MiB and kept creeping — every thread
//! that touched a big buffer got its own arena (up to 8 per core), and the dynamic mmap threshold
//! rose after the first big free, so later big buffers came from arenas that never shrink.
//!
//! `MALLOC_ARENA_MAX=2` plus a *fixed* `MALLOC_MMAP_THRESHOLD_` of 16 MiB: the quick run peaks
//! at 165 MiB instead of 386. The threshold's value matters for speed: at 1 MiB every one of
//! tract's multi-megabyte intermediate tensors became an mmap/munmap pair with fresh page faults,
//! and inference took 130 ms instead of 100 (`edgepool bench detect`); at 16 MiB inference is
//! as fast as with the defaults. Arenas alone (no fixed threshold) still reached 227 MiB.
//!
//! `MALLOC_TRIM_THRESHOLD_` of 32 MiB (issue 15): fixing the mmap threshold also fixes the trim
//! threshold at glibc's 128 KiB, where the dynamic threshold would have raised it to twice the
//! mmap threshold. So every multi-megabyte tensor freed at the top of the heap went back to
//! the OS and the next one faulted its pages in again: a 30-frame `edgepool bench detect` took
//! 0.5-1.0 million page faults. At 32 MiB (what glibc's own rule gives for a 16 MiB mmap
//! threshold) it takes 0.19 million, and inference on one thread took 79.6-81.6 ms against
//! 89.6-97.7 ms, two parallel 1-thread sessions 20.7-23.6 fps against 17.6-18.8, in three
//! alternating runs each (docs/performance.md). The heap keeps up to 32 MiB of free memory
//! at its top instead of returning it; peak RSS does not change.
//!
//! glibc reads these variables only at process start, and setting them needs `unsafe` (which
//! the workspace forbids), so the binary re-executes itself once with them in its environment.
//! Variables the operator sets win (no re-exec then); `EDGEPOOL_MALLOC_TUNING=off` disables it.

/// The variables and values applied.
pub const TUNING: [(&str, &str); 3] =
    [("MALLOC_ARENA_MAX", "2"), ("MALLOC_MMAP_THRESHOLD_", "16777216"), ("MALLOC_TRIM_THRESHOLD_", "33554432")];

/// Set in the re-executed process (and by operators to opt out with `off`).
pub const MARK: &str = "EDGEPOOL_MALLOC_TUNING";

/// Re-executes this binary with [`TUNING`] in its environment, unless that was done already,
/// the operator set any of the variables, or `EDGEPOOL_MALLOC_TUNING` is set. Returns only when
/// no re-exec happened (or it failed, which is reported and otherwise harmless).
pub fn tune_by_reexec() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::os::unix::process::CommandExt as _;
        if std::env::var_os(MARK).is_some() || TUNING.iter().any(|(k, _)| std::env::var_os(k).is_some()) {
            return;
        }
        let Ok(exe) = std::env::current_exe() else { return };
        let mut args = std::env::args_os();
        let mut cmd = std::process::Command::new(exe);
        if let Some(arg0) = args.next() {
            cmd.arg0(arg0);
        }
        cmd.args(args).envs(TUNING).env(MARK, "applied");
        let err = cmd.exec();
        eprintln!("warning: could not re-execute with malloc tuning ({err}); continuing with glibc defaults");
    }
}
