//! What a worker runs per frame: the real detector (fixed, or live and hot-swappable when the
//! model comes from NATS), or (inside `edgepool bench` only) a pass-through that measures the
//! pipeline without the model.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use edgepool_detector::{DetectError, Model, Session, StageTimings};
use edgepool_wire::Detection;

/// The inference engine of a worker.
#[derive(Debug, Clone)]
pub enum Engine {
    /// The real detector, with the version string results carry (`id@sha256:...`).
    Model { model: Model, version: String },
    /// The real detector, replaceable while the worker runs (models over NATS, see
    /// `docs/models.md`). Clones share the same slot, so a swap is seen by every clone.
    Live(LiveModel),
    /// Decode nothing, detect nothing. Only `edgepool bench pipeline` builds this, through
    /// [`Engine::pass_through_for_bench`]; `edgepool worker` has no way to select it.
    PassThrough(BenchOnly),
}

/// Proof that the pass-through was asked for by a benchmark.
#[derive(Debug, Clone, Copy)]
pub struct BenchOnly(());

const PASS_THROUGH: &str = "pass-through (benchmark only, no inference)";

impl Engine {
    /// The pass-through engine, for pipeline-overhead benchmarks only.
    #[doc(hidden)]
    #[must_use]
    pub fn pass_through_for_bench() -> Self {
        Self::PassThrough(BenchOnly(()))
    }

    /// The model string of the current version. Results computed by a [`Runner`] carry
    /// [`Runner::version`] instead, which is the version that actually ran.
    #[must_use]
    pub fn version(&self) -> String {
        match self {
            Self::Model { version, .. } => version.clone(),
            Self::Live(live) => live.current().version.to_string(),
            Self::PassThrough(_) => PASS_THROUGH.to_owned(),
        }
    }

    /// A per-slot runner with its own buffers, on the current model version.
    #[must_use]
    pub fn runner(&self) -> Runner {
        match self {
            Self::Model { model, version } => Runner::model(model, Arc::from(version.as_str())),
            Self::Live(live) => {
                let current = live.current();
                Runner::model(&current.model, Arc::clone(&current.version))
            }
            Self::PassThrough(_) => Runner { kind: Kind::PassThrough, version: Arc::from(PASS_THROUGH) },
        }
    }

    /// The slot's runner for its next frame: `previous` when it still runs the current model
    /// version, else a new one on the current version. A runner that is busy with a frame is
    /// not here, so an in-flight frame always finishes on the model it started with.
    #[must_use]
    pub fn runner_for(&self, previous: Option<Runner>) -> Runner {
        match (self, previous) {
            (Self::Live(live), Some(prev)) => {
                // One read lock and one Arc clone per frame: the cost of being swappable.
                let current = live.current();
                if Arc::ptr_eq(&prev.version, &current.version) {
                    prev
                } else {
                    tracing::debug!(from = %prev.version, to = %current.version, "slot switches model version");
                    Runner::model(&current.model, Arc::clone(&current.version))
                }
            }
            (_, Some(prev)) => prev,
            (_, None) => self.runner(),
        }
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

/// The result of one frame's inference.
#[derive(Debug)]
pub struct Inferred {
    pub width: u32,
    pub height: u32,
    pub detections: Vec<Detection>,
    pub timings: StageTimings,
}

/// One inference slot's state. Lives on a blocking thread while a frame is processed.
#[derive(Debug)]
pub struct Runner {
    kind: Kind,
    version: Arc<str>,
}

#[derive(Debug)]
enum Kind {
    Model(Box<Session>),
    PassThrough,
}

impl Runner {
    fn model(model: &Model, version: Arc<str>) -> Self {
        Self { kind: Kind::Model(Box::new(model.session())), version }
    }

    /// The model version this runner computes with: what its results must name.
    #[must_use]
    pub fn version(&self) -> &Arc<str> {
        &self.version
    }

    /// Decode, preprocess, infer, post-process. Runs on a blocking thread.
    pub fn run(&mut self, payload: &[u8]) -> Result<Inferred, DetectError> {
        match &mut self.kind {
            Kind::Model(session) => {
                let out = session.detect(payload)?;
                Ok(Inferred { width: out.width, height: out.height, detections: out.detections, timings: out.timings })
            }
            Kind::PassThrough => {
                let start = Instant::now();
                // Touch the bytes so the benchmark pays for reading the payload once.
                let sum = payload.iter().fold(0u8, |a, b| a.wrapping_add(*b));
                std::hint::black_box(sum);
                let t = start.elapsed();
                Ok(Inferred {
                    width: 0,
                    height: 0,
                    detections: Vec::new(),
                    timings: StageTimings {
                        decode: t,
                        preprocess: Duration::ZERO,
                        inference: Duration::ZERO,
                        postprocess: Duration::ZERO,
                    },
                })
            }
        }
    }
}
