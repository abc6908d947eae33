//! A worker's model by name: fetch (from the local cache, or downloaded and verified), load, and
//! hot-swap when a new version is pushed.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, object_store::ObjectStore};
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use edgepool_detector::{DetectorConfig, Model};

use super::{META_SHA256, ModelError, ModelName, hex, is_sha256_hex, open_bucket, sha256_file};
use crate::engine::LiveModel;

/// A download that receives nothing for this long is abandoned (e.g. its chunks were purged by
/// a newer push while it ran); the next push event or worker start tries again.
const DOWNLOAD_STALL: Duration = Duration::from_secs(30);
/// Pause before re-creating a failed bucket watch.
const WATCH_RETRY: Duration = Duration::from_secs(2);

/// A model file on local disk whose bytes hash to the digest stored with the object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub path: PathBuf,
    pub sha256: String,
    /// The model string results carry (`<name>@sha256:<12 hex>`).
    pub version: String,
    /// True when the verified cached file was used and nothing was downloaded.
    pub from_cache: bool,
}

/// Where a worker gets its model: `name` in the `MODELS` bucket, cached in `dir`.
#[derive(Clone)]
pub struct ModelSource {
    store: ObjectStore,
    name: ModelName,
    dir: PathBuf,
    detector: DetectorConfig,
}

impl fmt::Debug for ModelSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModelSource").field("name", &self.name).field("dir", &self.dir).finish_non_exhaustive()
    }
}

impl ModelSource {
    /// Opens the bucket (which must exist). `dir` is the cache directory (an emptyDir on
    /// Kubernetes); it is created when missing.
    pub async fn open(
        js: &jetstream::Context,
        name: ModelName,
        dir: PathBuf,
        detector: DetectorConfig,
    ) -> Result<Self, ModelError> {
        Ok(Self { store: open_bucket(js).await?, name, dir, detector })
    }

    /// Makes the current version of the model available as a verified local file: the cached
    /// `<dir>/<name>-<sha256>.onnx` if its bytes hash to the object's digest, else a fresh
    /// download (streamed to a temporary file, verified, then renamed into place). A digest
    /// mismatch is [`ModelError::DigestMismatch`] and leaves no file behind.
    pub async fn fetch(&self) -> Result<Fetched, ModelError> {
        let name = self.name.as_str();
        // `get` reads the object's info only; chunks flow once the object is read.
        let mut object = self.store.get(name).await.map_err(|e| match e.kind() {
            jetstream::object_store::GetErrorKind::NotFound => ModelError::NotFound { name: name.to_owned() },
            _ => ModelError::store(format!("reading {}/{name}", super::BUCKET), e),
        })?;
        let expected = match object.info.metadata.get(META_SHA256) {
            Some(d) if is_sha256_hex(d) => d.clone(),
            _ => return Err(ModelError::NoDigest { name: name.to_owned() }),
        };
        let path = self.name.cache_file(&self.dir, &expected);
        let version = self.name.version(&expected);
        if tokio::fs::try_exists(&path).await.unwrap_or(false) {
            match sha256_file(&path).await {
                Ok((actual, _)) if actual == expected => {
                    return Ok(Fetched { path, sha256: expected, version, from_cache: true });
                }
                Ok((actual, _)) => {
                    tracing::warn!(
                        path = %path.display(),
                        expected,
                        actual,
                        "cached model file is corrupt; downloading it again"
                    );
                }
                Err(e) => tracing::warn!(error = %e, "cannot read the cached model file; downloading it again"),
            }
            let _ = tokio::fs::remove_file(&path).await;
        }

        tokio::fs::create_dir_all(&self.dir).await.map_err(ModelError::io(&self.dir))?;
        let started = Instant::now();
        // Same directory as the target, so that the final rename is atomic. Dropped (and
        // deleted) on any error below.
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}-"))
            .suffix(".download")
            .tempfile_in(&self.dir)
            .map_err(ModelError::io(&self.dir))?;
        let std_file = tmp.as_file().try_clone().map_err(ModelError::io(tmp.path()))?;
        let mut out = tokio::fs::File::from_std(std_file);
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut size = 0u64;
        let download_err = |e: std::io::Error| ModelError::store(format!("downloading {}/{name}", super::BUCKET), e);
        loop {
            let n = match tokio::time::timeout(DOWNLOAD_STALL, object.read(&mut buf)).await {
                Err(_) => {
                    let stalled =
                        std::io::Error::new(std::io::ErrorKind::TimedOut, format!("no data for {DOWNLOAD_STALL:?}"));
                    return Err(download_err(stalled));
                }
                Ok(Err(e)) => return Err(download_err(e)),
                Ok(Ok(0)) => break,
                Ok(Ok(n)) => n,
            };
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n]).await.map_err(ModelError::io(tmp.path()))?;
            size += n as u64;
        }
        out.sync_all().await.map_err(ModelError::io(tmp.path()))?;
        drop(out);
        let actual = hex(&hasher.finalize());
        if actual != expected {
            return Err(ModelError::DigestMismatch { name: name.to_owned(), expected, actual });
        }
        tmp.persist(&path).map_err(|e| ModelError::Io { path: path.clone(), source: e.error })?;
        tracing::info!(
            model = %version,
            bytes = size,
            seconds = started.elapsed().as_secs_f64(),
            "model downloaded and verified"
        );
        Ok(Fetched { path, sha256: expected, version, from_cache: false })
    }

    /// Loads a fetched file (parse and optimize: seconds on a small device) on a blocking
    /// thread, off the reactor and off the pull loop.
    pub async fn load(&self, fetched: &Fetched) -> Result<Model, ModelError> {
        let (path, cfg) = (fetched.path.clone(), self.detector.clone());
        tokio::task::spawn_blocking(move || Model::load(&path, &cfg))
            .await
            .map_err(|e| ModelError::Io { path: fetched.path.clone(), source: std::io::Error::other(e) })?
            .map_err(ModelError::from)
    }

    /// Fetches and loads the current version: the worker's engine, and the watcher that keeps
    /// it current (run it with [`HotSwap::run`]).
    pub async fn start(self) -> Result<(LiveModel, HotSwap), ModelError> {
        let fetched = self.fetch().await?;
        let model = self.load(&fetched).await?;
        tracing::info!(model = %fetched.version, cached = fetched.from_cache, "model loaded");
        self.prune(&fetched.path).await;
        let live = LiveModel::new(model, fetched.version.as_str());
        Ok((live.clone(), HotSwap { source: self, live, sha256: fetched.sha256 }))
    }

    /// Deletes other cached versions of this model: the emptyDir has a size limit, and a loaded
    /// model no longer needs its file.
    async fn prune(&self, keep: &Path) {
        let Ok(mut entries) = tokio::fs::read_dir(&self.dir).await else { return };
        let prefix = format!("{}-", self.name);
        while let Ok(Some(entry)) = entries.next_entry().await {
            let path = entry.path();
            let file = entry.file_name();
            let file = file.to_string_lossy();
            let is_version =
                file.strip_prefix(&prefix).and_then(|r| r.strip_suffix(".onnx")).is_some_and(is_sha256_hex);
            if is_version && path != keep {
                match tokio::fs::remove_file(&path).await {
                    Ok(()) => tracing::debug!(path = %path.display(), "removed an old cached model version"),
                    Err(e) => tracing::debug!(path = %path.display(), error = %e, "cannot remove an old cached model"),
                }
            }
        }
    }
}

/// Keeps a [`LiveModel`] on the newest version of its name in the bucket.
#[derive(Debug)]
pub struct HotSwap {
    source: ModelSource,
    live: LiveModel,
    sha256: String,
}

impl HotSwap {
    /// Watches the bucket until `shutdown`. On a new version of the name: download, verify,
    /// load (on a blocking thread), then swap. Frames already running finish on the old
    /// version; frames that start after the swap use the new one. Any failure keeps the
    /// current version and is logged; the next push tries again.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let name = self.source.name.to_string();
        while !shutdown.is_cancelled() {
            // With history: the first event is the name's latest version, which closes the
            // window between loading at start and watching.
            let watch = tokio::select! {
                () = shutdown.cancelled() => return,
                w = self.source.store.watch_with_history() => w,
            };
            let mut watch = match watch {
                Ok(w) => w,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch the model bucket; retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(WATCH_RETRY) => continue,
                    }
                }
            };
            loop {
                let event = tokio::select! {
                    () = shutdown.cancelled() => return,
                    e = watch.next() => e,
                };
                let info = match event {
                    Some(Ok(info)) => info,
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "model bucket watch failed; re-creating it");
                        break;
                    }
                    None => break,
                };
                if info.name != name {
                    continue;
                }
                if info.deleted {
                    tracing::warn!(model = %name, "model deleted from the bucket; keeping the loaded version");
                    continue;
                }
                if info.metadata.get(META_SHA256) == Some(&self.sha256) {
                    continue;
                }
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = self.update() => {}
                }
            }
        }
    }

    async fn update(&mut self) {
        let started = Instant::now();
        let fetched = match self.source.fetch().await {
            // Fetch reads the latest info itself, so a burst of pushes ends on the last one.
            Ok(f) if f.sha256 == self.sha256 => return,
            Ok(f) => f,
            Err(e) => {
                tracing::error!(
                    error = %e,
                    transient = e.is_transient(),
                    "new model version refused; keeping the loaded one"
                );
                return;
            }
        };
        let model = match self.source.load(&fetched).await {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(
                    error = %e,
                    model = %fetched.version,
                    "new model version does not load; keeping the loaded one"
                );
                return;
            }
        };
        let old = self.live.swap(model, fetched.version.as_str());
        self.sha256 = fetched.sha256;
        tracing::info!(from = %old.version, to = %fetched.version, seconds = started.elapsed().as_secs_f64(),
            "model hot-swapped; in-flight frames finish on the old version");
        self.source.prune(&fetched.path).await;
    }
}
