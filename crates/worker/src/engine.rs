//! What a worker runs per frame: the [`Infer`] trait a worker holds (as `Arc<dyn Infer>`), and
//! [`Engine`], the real detector behind it (fixed, or live and hot-swappable when the model
//! comes from NATS). Benchmarks implement [`Infer`] themselves to run the pipeline without it.

use std::fmt;
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};

use edgepool_detector::{DetectError, DetectorConfig, Model, Session, StageTimings};
use edgepool_wire::Detection;

use crate::error::EngineError;
use crate::model_name::{ModelName, sha256_file_blocking};

/// What a worker needs from an inference engine: a version to name in results, and one
/// [`Slot`] state per inference slot.
pub trait Infer: Send + Sync + fmt::Debug {
    /// The model string of the current version. Results computed by a [`Slot`] carry
    /// [`Slot::version`] instead, which is the version that actually ran.
    fn version(&self) -> String;

    /// The slot's state for its next frame: `previous` when it is still usable (same model
    /// version), else a new one. A slot busy with a frame is not here, so an in-flight frame
    /// always finishes on the model it started with.
    fn slot(&self, previous: Option<Box<dyn Slot>>) -> Box<dyn Slot>;
}

/// One inference slot's state. Lives on a blocking thread while a frame is processed.
pub trait Slot: Send + fmt::Debug {
    /// The model version this slot computes with: what its results must name.
    fn version(&self) -> &Arc<str>;

    /// Decode, preprocess, infer, post-process. Runs on a blocking thread. `raw` is the width
    /// and height of an `image/x-raw-rgb` payload; `None` for JPEG and PNG.
    fn run(&mut self, payload: &[u8], raw: Option<(u32, u32)>) -> Result<Inferred, DetectError>;
}

/// The result of one frame's inference.
#[derive(Debug)]
pub struct Inferred {
    pub width: u32,
    pub height: u32,
    pub detections: Vec<Detection>,
    pub timings: StageTimings,
}

/// The real detector.
#[derive(Debug, Clone)]
pub enum Engine {
    /// A fixed model, with the version string results carry (`id@sha256:...`).
    Model { model: Model, version: Arc<str> },
    /// Replaceable while the worker runs (models over NATS, see `docs/models.md`). Clones
    /// share the same slot, so a swap is seen by every clone.
    Live(LiveModel),
}

/// Loads the model file at `path` once with the detector settings. Its version string is
/// `ssd_mobilenet_v2_coco@sha256:<first 12 hex digits of the file's sha256>`, the same form
/// [`ModelName::version`] gives models over NATS.
pub fn load_engine(path: &Path, detector: &DetectorConfig) -> Result<Engine, EngineError> {
    if !path.is_file() {
        return Err(EngineError::NotFound { path: path.to_owned() });
    }
    let (sha256, _) =
        sha256_file_blocking(path).map_err(|source| EngineError::Read { path: path.to_owned(), source })?;
    let name = ModelName::new(edgepool_detector::MODEL_ID).unwrap_or_else(|_| unreachable!("MODEL_ID is a valid name"));
    let model = Model::load(path, detector).map_err(|source| EngineError::Load { path: path.to_owned(), source })?;
    Ok(Engine::Model { model, version: Arc::from(name.version(&sha256)) })
}

impl Engine {
    /// The model string of the current version.
    #[must_use]
    pub fn version(&self) -> String {
        self.current_version().to_string()
    }

    fn current_version(&self) -> Arc<str> {
        match self {
            Self::Model { version, .. } => Arc::clone(version),
            Self::Live(live) => Arc::clone(&live.current().version),
        }
    }

    /// A per-slot runner with its own buffers, on the current model version.
    #[must_use]
    pub fn runner(&self) -> Runner {
        match self {
            Self::Model { model, version } => Runner::new(model, Arc::clone(version)),
            Self::Live(live) => {
                let current = live.current();
                Runner::new(&current.model, Arc::clone(&current.version))
            }
        }
    }
}

impl Infer for Engine {
    fn version(&self) -> String {
        Self::version(self)
    }

    fn slot(&self, previous: Option<Box<dyn Slot>>) -> Box<dyn Slot> {
        // One read lock and one Arc clone per frame for a live engine: the cost of being swappable.
        let current = self.current_version();
        match previous {
            Some(prev) if Arc::ptr_eq(prev.version(), &current) => prev,
            Some(prev) => {
                tracing::debug!(from = %prev.version(), to = %current, "slot switches model version");
                Box::new(self.runner())
            }
            None => Box::new(self.runner()),
        }
    }
}

impl From<Engine> for Arc<dyn Infer> {
    fn from(engine: Engine) -> Self {
        Arc::new(engine)
    }
}

/// One loaded model version: the plan and the string results carry (`name@sha256:<12 hex>`).
#[derive(Debug)]
pub struct Loaded {
    pub model: Model,
    pub version: Arc<str>,
}

/// The current model version of a live engine, swapped atomically as a whole.
///
/// Readers take a snapshot (`Arc<Loaded>`) and keep using it for as long as they like; a swap
/// only changes what the next snapshot is. The old version is freed when the last runner
/// built from it is dropped or rebuilt.
#[derive(Debug, Clone)]
pub struct LiveModel {
    current: Arc<RwLock<Arc<Loaded>>>,
}

impl LiveModel {
    #[must_use]
    pub fn new(model: Model, version: impl Into<Arc<str>>) -> Self {
        Self { current: Arc::new(RwLock::new(Arc::new(Loaded { model, version: version.into() }))) }
    }

    /// A snapshot of the current version.
    #[must_use]
    pub fn current(&self) -> Arc<Loaded> {
        // The lock guards a pointer swap only; a poisoned lock still holds a valid Arc.
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Makes `model` the current version for every frame that starts from now on, and returns
    /// the previous one.
    pub fn swap(&self, model: Model, version: impl Into<Arc<str>>) -> Arc<Loaded> {
        let next = Arc::new(Loaded { model, version: version.into() });
        let mut guard = self.current.write().unwrap_or_else(PoisonError::into_inner);
        std::mem::replace(&mut *guard, next)
    }
}

/// The detector's state for one slot: a session with its own buffers.
#[derive(Debug)]
pub struct Runner {
    session: Box<Session>,
    version: Arc<str>,
}

impl Runner {
    fn new(model: &Model, version: Arc<str>) -> Self {
        Self { session: Box::new(model.session()), version }
    }

    /// The model version this runner computes with.
    #[must_use]
    pub fn version(&self) -> &Arc<str> {
        &self.version
    }

    /// Decode, preprocess, infer, post-process. Runs on a blocking thread.
    pub fn run(&mut self, payload: &[u8], raw: Option<(u32, u32)>) -> Result<Inferred, DetectError> {
        let out = match raw {
            Some((w, h)) => self.session.detect_rgb(payload, w, h)?,
            None => self.session.detect(payload)?,
        };
        Ok(Inferred { width: out.width, height: out.height, detections: out.detections, timings: out.timings })
    }
}

impl Slot for Runner {
    fn version(&self) -> &Arc<str> {
        &self.version
    }

    fn run(&mut self, payload: &[u8], raw: Option<(u32, u32)>) -> Result<Inferred, DetectError> {
        Self::run(self, payload, raw)
    }
}
