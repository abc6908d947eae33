//! `docs/metrics.md` must be exactly what the catalog generates, so the documented metrics cannot
//! drift from the ones the code registers.

use std::path::PathBuf;

const REGENERATE: &str = "cargo run -p edgepool -- metrics-doc > docs/metrics.md";

#[test]
fn metrics_doc_matches_the_catalog() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/metrics.md");
    let on_disk = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}; create it with `{REGENERATE}`", path.display()));
    let generated = edgepool_runtime::metrics::markdown();
    if on_disk == generated {
        return;
    }
    // Name the first line that differs: a whole-file diff of a wide table is unreadable.
    let first = on_disk
        .lines()
        .zip(generated.lines())
        .enumerate()
        .find(|(_, (a, b))| a != b)
        .map(|(i, (a, b))| format!("line {}:\n  file: {a}\n  code: {b}", i + 1))
        .unwrap_or_else(|| {
            format!(
                "the file has {} lines, the catalog generates {}",
                on_disk.lines().count(),
                generated.lines().count()
            )
        });
    panic!(
        "docs/metrics.md is out of date with crates/runtime/src/metrics.rs; regenerate it with\n    {REGENERATE}\n\
         first difference at {first}"
    );
}
