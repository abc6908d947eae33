//! `cargo xtask layout`: the architecture as checks.
//!
//! 1. The shipped `edgepool` binary links no benchmark or chaos code: `edgepool-bench` is not in
//!    `cargo tree -p edgepool -e normal` (its normal dependencies, what the release build links).
//! 2. No import circles between the modules of any crate. A module may use its ancestors' items
//!    (`super::X`, the idiom for a parent's shared types); any other `crate::`/`super::` path is
//!    an edge, and a cycle of edges fails with the modules it runs through.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail};

/// Crates the `edgepool` binary must not link.
const NOT_SHIPPED: &[&str] = &["edgepool-bench"];

pub fn run(root: &Path) -> Result<()> {
    let mut failures = Vec::new();
    let tree = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .current_dir(root)
        .args(["tree", "-p", "edgepool", "-e", "normal", "--prefix", "none", "--format", "{p}"])
        .output()
        .context("running cargo tree")?;
    if !tree.status.success() {
        bail!("cargo tree failed: {}", String::from_utf8_lossy(&tree.stderr));
    }
    let text = String::from_utf8_lossy(&tree.stdout);
    let linked: BTreeSet<&str> = text.lines().filter_map(|l| l.split_whitespace().next()).collect();
    for c in NOT_SHIPPED {
        if linked.contains(c) {
            failures.push(format!("the edgepool binary links {c}"));
        }
    }
    let ours: Vec<&&str> = linked.iter().filter(|c| c.starts_with("edgepool")).collect();
    println!(
        "edgepool links {} crates; ours: {}",
        linked.len(),
        ours.iter().map(|c| **c).collect::<Vec<_>>().join(", ")
    );

    let mut crates: Vec<PathBuf> = std::fs::read_dir(root.join("crates"))?
        .filter_map(|e| e.ok().map(|e| e.path().join("src")))
        .filter(|p| p.is_dir())
        .collect();
    crates.push(root.join("xtask/src"));
    crates.sort();
    for src in crates {
        let graph = module_graph(&src)?;
        let edges: usize = graph.values().map(BTreeSet::len).sum();
        match find_cycle(&graph) {
            Some(cycle) => failures.push(format!("{}: import circle {}", src.display(), cycle.join(" -> "))),
            None => println!("{}: {} modules, {edges} imports between them, no circle", src.display(), graph.len()),
        }
    }
    if failures.is_empty() {
        println!("layout OK");
        Ok(())
    } else {
        bail!("layout check failed:\n  {}", failures.join("\n  "))
    }
}

/// `a::b` for `src/a/b.rs` or `src/a/b/mod.rs`; `crate` for `lib.rs`/`main.rs`.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap_or(file).with_extension("");
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib" || p == "main") {
        parts.pop();
    }
    if parts.is_empty() { "crate".to_owned() } else { format!("crate::{}", parts.join("::")) }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            rust_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// Module → modules it uses (not counting its ancestors).
fn module_graph(src: &Path) -> Result<BTreeMap<String, BTreeSet<String>>> {
    let mut files = Vec::new();
    rust_files(src, &mut files)?;
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(src, f)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = modules.iter().map(|m| (m.clone(), BTreeSet::new())).collect();
    for file in &files {
        let from = module_of(src, file);
        let text = std::fs::read_to_string(file)?;
        // Inline test modules may use anything of their file's module.
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        for path in paths(code) {
            let resolved = resolve(&from, &path);
            // The longest prefix that is a module of this crate.
            let mut target = None;
            for n in (1..=resolved.len()).rev() {
                let cand = resolved[..n].join("::");
                if modules.contains(&cand) {
                    target = Some(cand);
                    break;
                }
            }
            let Some(to) = target else { continue };
            let ancestor = to == "crate" || from.starts_with(&format!("{to}::"));
            if to != from && !ancestor {
                graph.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    Ok(graph)
}

/// Every `crate::…`/`super::…` path in `code`, with `{a, b::c}` groups expanded (first level).
fn paths(code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for start in ["crate::", "super::"] {
        let mut rest = code;
        while let Some(i) = rest.find(start) {
            let before = rest[..i].chars().next_back();
            rest = &rest[i..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                rest = &rest[start.len()..];
                continue;
            }
            let head: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':').collect();
            let mut segs: Vec<String> = head.split("::").filter(|s| !s.is_empty()).map(str::to_owned).collect();
            let after = &rest[head.len()..];
            if let Some(inner) = after.strip_prefix('{') {
                let group = inner.split('}').next().unwrap_or("");
                for item in group.split(',') {
                    let first: String = item.trim().split("::").next().unwrap_or("").to_owned();
                    if !first.is_empty() {
                        let mut p = segs.clone();
                        p.push(first);
                        out.push(p);
                    }
                }
            } else if !segs.is_empty() {
                out.push(std::mem::take(&mut segs));
            }
            rest = &rest[head.len().max(1)..];
        }
    }
    out
}

/// `super::x` from `crate::a::b` is `crate::a::x`; `crate::x` stays.
fn resolve(from: &str, path: &[String]) -> Vec<String> {
    let mut base: Vec<String> = from.split("::").map(str::to_owned).collect();
    let mut rest = path;
    if rest.first().is_some_and(|s| s == "crate") {
        return path.to_vec();
    }
    while rest.first().is_some_and(|s| s == "super") {
        if base.len() > 1 {
            base.pop();
        }
        rest = &rest[1..];
    }
    base.extend(rest.iter().cloned());
    base
}

/// A cycle in `graph`, as the list of its modules (first repeated at the end).
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(n.to_owned(), 1);
        stack.push(n.to_owned());
        for m in graph.get(n).into_iter().flatten() {
            match state.get(m.as_str()).copied().unwrap_or(0) {
                1 => {
                    let at = stack.iter().position(|s| s == m).unwrap_or(0);
                    let mut cycle = stack[at..].to_vec();
                    cycle.push(m.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(m, graph, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(n.to_owned(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in graph.keys() {
        if state.get(n.as_str()).copied().unwrap_or(0) == 0
            && let Some(c) = visit(n, graph, &mut state, &mut Vec::new())
        {
            return Some(c);
        }
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_groups() {
        let p = paths("use crate::a::{B, c::D};\nfn f() { super::e::f(); crate::g(); }");
        let s: Vec<String> = p.iter().map(|v| v.join("::")).collect();
        assert!(s.contains(&"crate::a::B".to_owned()), "{s:?}");
        assert!(s.contains(&"crate::a::c".to_owned()), "{s:?}");
        assert!(s.contains(&"super::e::f".to_owned()), "{s:?}");
        assert!(s.contains(&"crate::g".to_owned()), "{s:?}");
    }

    #[test]
    fn cycles_are_found_and_ancestors_are_not_edges() {
        assert_eq!(resolve("crate::a::b", &["super".into(), "x".into()]), vec!["crate", "a", "x"]);
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        g.entry("a".into()).or_default().insert("b".into());
        g.entry("b".into()).or_default().insert("c".into());
        g.entry("c".into()).or_default();
        assert!(find_cycle(&g).is_none());
        g.entry("c".into()).or_default().insert("a".into());
        assert_eq!(find_cycle(&g).unwrap(), vec!["a", "b", "c", "a"]);
    }
}
