//! What a worker runs per frame: the real detector, or (inside `edgepool bench` only) a
//! pass-through that measures the pipeline without the model.

use std::time::{Duration, Instant};

use edgepool_detector::{DetectError, Model, Session, StageTimings};
use edgepool_wire::Detection;

/// The inference engine of a worker.
#[derive(Debug, Clone)]
pub enum Engine {
    /// The real detector, with the version string results carry (`id@sha256:...`).
    Model { model: Model, version: String },
    /// Decode nothing, detect nothing. Only `edgepool bench pipeline` builds this, through
    /// [`Engine::pass_through_for_bench`]; `edgepool worker` has no way to select it.
    PassThrough(BenchOnly),
}

/// Proof that the pass-through was asked for by a benchmark.
#[derive(Debug, Clone, Copy)]
pub struct BenchOnly(());

impl Engine {
    /// The pass-through engine, for pipeline-overhead benchmarks only.
    #[doc(hidden)]
    #[must_use]
    pub fn pass_through_for_bench() -> Self {
        Self::PassThrough(BenchOnly(()))
    }

    /// The model string put in results.
    #[must_use]
    pub fn version(&self) -> &str {
        match self {
            Self::Model { version, .. } => version,
            Self::PassThrough(_) => "pass-through (benchmark only, no inference)",
        }
    }

    /// A per-slot runner with its own buffers.
    #[must_use]
    pub fn runner(&self) -> Runner {
        match self {
            Self::Model { model, .. } => Runner::Model(Box::new(model.session())),
            Self::PassThrough(_) => Runner::PassThrough,
        }
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
pub enum Runner {
    Model(Box<Session>),
    PassThrough,
}

impl Runner {
    /// Decode, preprocess, infer, post-process. Runs on a blocking thread.
    pub fn run(&mut self, payload: &[u8]) -> Result<Inferred, DetectError> {
        match self {
            Self::Model(session) => {
                let out = session.detect(payload)?;
                Ok(Inferred { width: out.width, height: out.height, detections: out.detections, timings: out.timings })
            }
            Self::PassThrough => {
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
