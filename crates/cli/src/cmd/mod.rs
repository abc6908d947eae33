//! One module per subcommand, plus what they share.

pub mod auth;
pub mod bench;
pub mod camera;
pub mod demo;
pub mod detect;
pub mod gateway;
pub mod model;
pub mod setup;
pub mod sink;
pub mod status;
pub mod top;
pub mod video;
pub mod watch;
pub mod worker;

/// Reads an image folder or file list into `(name, content type, bytes)`, sorted by path.
pub fn load_images(
    sources: &[std::path::PathBuf],
) -> anyhow::Result<Vec<(String, edgepool_wire::ContentType, bytes::Bytes)>> {
    use anyhow::Context as _;
    let mut files = Vec::new();
    for s in sources {
        if s.is_dir() {
            let mut entries: Vec<_> = std::fs::read_dir(s)
                .with_context(|| format!("reading {}", s.display()))?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect();
            entries.sort();
            files.extend(entries);
        } else {
            anyhow::ensure!(s.is_file(), "{} does not exist", s.display());
            files.push(s.clone());
        }
    }
    let mut out = Vec::new();
    for f in files {
        let ext = f.extension().and_then(|e| e.to_str()).unwrap_or("");
        let Some(ct) = edgepool_wire::ContentType::from_extension(ext) else {
            // Folders may hold licence notes and the like; only images are frames.
            continue;
        };
        let bytes = std::fs::read(&f).with_context(|| format!("reading {}", f.display()))?;
        out.push((f.display().to_string(), ct, bytes::Bytes::from(bytes)));
    }
    anyhow::ensure!(!out.is_empty(), "no .jpg, .jpeg or .png files in {sources:?}");
    Ok(out)
}
