//! `cargo xtask lint-width`: no `.rs` line longer than rustfmt's `max_width`. rustfmt leaves
//! long string literals and comments alone, so this check catches what it cannot.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// The folders whose Rust files are checked.
const DIRS: &[&str] = &["crates", "xtask", "fuzz"];

/// Checks every `.rs` file under [`DIRS`] of `root` against `max_width` from `rustfmt.toml`.
pub fn lint(root: &Path) -> Result<()> {
    let max = max_width(root)?;
    let mut files = Vec::new();
    for d in DIRS {
        collect(&root.join(d), &mut files)?;
    }
    files.sort();
    let mut bad = 0usize;
    for f in &files {
        let text = std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        for (line, width) in too_long(&text, max) {
            let shown = f.strip_prefix(root).unwrap_or(f).display();
            println!("{shown}:{line}: {width} chars (max_width {max})");
            bad += 1;
        }
    }
    if bad > 0 {
        bail!("{bad} lines over {max} characters; wrap them (rustfmt does not wrap strings and comments)");
    }
    eprintln!("xtask: {} Rust files, no line over {max} characters", files.len());
    Ok(())
}

/// `max_width` from `rustfmt.toml` (rustfmt's default, 100, when unset).
fn max_width(root: &Path) -> Result<usize> {
    let text = std::fs::read_to_string(root.join("rustfmt.toml")).unwrap_or_default();
    for l in text.lines() {
        if let Some((k, v)) = l.split_once('=')
            && k.trim() == "max_width"
        {
            return v.trim().parse().with_context(|| format!("rustfmt.toml: max_width = {}", v.trim()));
        }
    }
    Ok(100)
}

/// `.rs` files under `dir`, skipping build output.
fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(()) };
    for e in entries {
        let path = e?.path();
        if path.is_dir() {
            if !matches!(path.file_name().and_then(|n| n.to_str()), Some("target" | "corpus" | "artifacts")) {
                collect(&path, out)?;
            }
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// 1-based numbers and widths (in characters, as rustfmt counts) of the lines over `max`.
fn too_long(text: &str, max: usize) -> Vec<(usize, usize)> {
    text.lines().enumerate().map(|(i, l)| (i + 1, l.chars().count())).filter(|&(_, w)| w > max).collect()
}

#[cfg(test)]
mod tests {
    use super::too_long;

    #[test]
    fn reports_only_lines_over_the_limit_counting_characters() {
        let text = format!("{}\n{}\n{}\n", "a".repeat(10), "b".repeat(11), "é".repeat(10));
        assert_eq!(too_long(&text, 10), vec![(2, 11)]);
    }
}
