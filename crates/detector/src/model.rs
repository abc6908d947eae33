//! The loaded model (one optimized tract plan, shared) and the per-slot [`Session`] that runs
//! frames through decode, preprocess, inference and post-processing with reusable buffers.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edgepool_wire::detection::Detection;
use tract_linalg::multithread::Executor;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::runtime::RunOptions;

use crate::decode::Frame;
use crate::postprocess::PostProcessor;
use crate::preprocess::{INPUT_HEIGHT, INPUT_LEN, INPUT_WIDTH, Resizer};
use crate::profile::{Profile, Recorder};
use crate::{DetectError, DetectorConfig, LoadError, NUM_ANCHORS, NUM_SCORE_COLUMNS, OutputsError};

const INPUT_SHAPE: [usize; 4] = [1, INPUT_HEIGHT as usize, INPUT_WIDTH as usize, 3];
const BOXES_LEN: usize = NUM_ANCHORS * 4;
const SCORES_LEN: usize = NUM_ANCHORS * NUM_SCORE_COLUMNS;

/// How far tract transforms the graph before planning it. [`Model::load`] uses
/// [`Optimization::Optimized`]; the other exists to measure the difference (`edgepool bench
/// detect`, docs/performance.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Optimization {
    /// Our explicit-im2col rewrite of the deep 3x3 convolutions ([`crate::im2col`]) when the
    /// model runs on one thread, our fused depthwise kernel ([`crate::depthwise`]), then
    /// tract's `into_optimized()`: declutter, then codegen (fused, packed kernels). The fast one.
    #[default]
    Optimized,
    /// [`Optimization::Optimized`] without our depthwise kernel: what the kernel gives.
    OptimizedWithoutDepthwise,
    /// `into_optimized()` on the graph as the file has it, without our rewrites.
    OptimizedPlainGraph,
    /// `into_typed()` + `into_decluttered()` only, without our rewrites: generic ops, no codegen.
    Decluttered,
}

/// The loaded model: an optimized, runnable tract plan behind an `Arc`. Cloning is cheap and
/// every clone shares the weights; create one [`Session`] per inference slot.
#[derive(Clone)]
pub struct Model {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: DetectorConfig,
    /// A fresh tract state to clone sessions from: cloning is infallible, while creating a
    /// state from the plan is not, and `Model::session` cannot fail.
    proto: Mutex<TypedSimpleState>,
}

impl fmt::Debug for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Model").field("cfg", &self.inner.cfg).finish_non_exhaustive()
    }
}

/// Reads the ONNX file into tract, with the explicit-im2col rewrite when `im2col` is set and
/// our depthwise kernel when `depthwise` is.
/// External data files are looked up beside the model, as tract's `model_for_path` does.
fn parse(path: &Path, im2col: bool, depthwise: bool) -> TractResult<InferenceModel> {
    let mut onnx = onnx();
    crate::depthwise::register(&mut onnx);
    let mut proto = onnx.proto_model_for_path(path)?;
    if im2col {
        crate::im2col::rewrite(&mut proto);
    }
    if depthwise {
        crate::depthwise::rewrite(&mut proto);
    }
    let dir = path.parent().and_then(Path::to_str);
    let parsed = onnx.parse(&proto, dir)?;
    if !parsed.unresolved_inputs.is_empty() {
        return Err(tract_onnx::tract_core::internal::format_err!(
            "could not resolve inputs at top level: {:?}",
            parsed.unresolved_inputs
        ));
    }
    Ok(parsed.model)
}

impl Model {
    /// Parses the ONNX file, fixes the input to `f32 [1,300,300,3]`, optimizes and plans it.
    /// Takes a few hundred ms; do it once per process.
    ///
    /// `cfg.threads` is applied here: with more than one thread the plan gets its own rayon
    /// pool of that size (tract's `RunOptions::executor`), which all sessions of this model
    /// share. tract's process-wide default executor is not touched, so two models in one
    /// process can use different thread counts.
    pub fn load(path: &Path, cfg: &DetectorConfig) -> Result<Model, LoadError> {
        Self::load_with(path, cfg, Optimization::Optimized)
    }

    /// [`Model::load`] with a choice of graph optimization, for benchmarks.
    pub fn load_with(path: &Path, cfg: &DetectorConfig, optimization: Optimization) -> Result<Model, LoadError> {
        cfg.validate()?;
        if !path.is_file() {
            return Err(LoadError::Missing { path: path.to_owned() });
        }
        let model_err = |e: TractError| LoadError::Model { path: path.to_owned(), source: e.into() };
        // The im2col rewrite pays on one thread (8-17 % less inference) and costs 2-10 % on one
        // session of two threads, where tract splits each of the nine smaller products across
        // the threads. Our depthwise kernel is single-threaded: 7-8 % less inference on one
        // thread, nothing on two (docs/performance.md). Both go with the layout they help.
        let im2col = matches!(optimization, Optimization::Optimized | Optimization::OptimizedWithoutDepthwise)
            && cfg.threads == 1;
        let depthwise = optimization == Optimization::Optimized && cfg.threads == 1;
        let model = parse(path, im2col, depthwise)
            .and_then(|m| m.with_input_fact(0, f32::fact(INPUT_SHAPE).into()))
            .and_then(|m| match optimization {
                Optimization::Optimized
                | Optimization::OptimizedWithoutDepthwise
                | Optimization::OptimizedPlainGraph => m.into_optimized(),
                Optimization::Decluttered => m.into_typed().and_then(|t| t.into_decluttered()),
            })
            .map_err(model_err)?;
        check_outputs(&model).map_err(|source| LoadError::Outputs { path: path.to_owned(), source })?;
        let executor = if cfg.threads > 1 {
            // Building a pool only fails if the OS refuses threads; tract panics then.
            catch_unwind(|| Executor::multithread_with_name(cfg.threads, "edgepool-tract"))
                .map_err(|_| LoadError::Threads { path: path.to_owned(), threads: cfg.threads })?
        } else {
            Executor::SingleThread
        };
        let options = RunOptions { executor: Some(executor), ..RunOptions::default() };
        let plan = model.into_runnable_with_options(&options).map_err(model_err)?;
        let proto = plan.spawn().map_err(model_err)?;
        Ok(Model { inner: Arc::new(Inner { cfg: cfg.clone(), proto: Mutex::new(proto) }) })
    }

    /// A new inference slot. Cheap (no weights are copied), but each session holds a few MB
    /// of buffers, so keep one per slot rather than one per frame.
    #[must_use]
    pub fn session(&self) -> Session {
        Session {
            model: self.clone(),
            state: self.fresh_state(),
            frame: Frame::default(),
            resizer: Resizer::default(),
            input: Arc::new(Tensor::from(tract_ndarray::Array4::<f32>::zeros(INPUT_SHAPE))),
            post: PostProcessor::default(),
            decode_time: Duration::ZERO,
        }
    }

    /// The config the model was loaded with.
    #[must_use]
    pub fn config(&self) -> &DetectorConfig {
        &self.inner.cfg
    }

    fn fresh_state(&self) -> TypedSimpleState {
        // A poisoned lock only means another thread panicked while cloning; the prototype is
        // never mutated, so it is still good.
        self.inner.proto.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

/// Refuses a model whose outputs are not `boxes [1,1917,4]` and `scores [1,1917,91]`, so a
/// wrong file fails at load, not on the first frame.
fn check_outputs(model: &TypedModel) -> Result<(), OutputsError> {
    let want: [&[usize]; 2] = [&[1, NUM_ANCHORS, 4], &[1, NUM_ANCHORS, NUM_SCORE_COLUMNS]];
    if model.outputs.len() != 2 {
        return Err(OutputsError::Count(model.outputs.len()));
    }
    for (index, want) in want.iter().enumerate() {
        let fact = model.output_fact(index).map_err(|e| OutputsError::Fact { index, source: e.into() })?;
        let got = fact.shape.as_concrete();
        if fact.datum_type != f32::datum_type() || got != Some(*want) {
            return Err(OutputsError::Shape { index, found: format!("{fact:?}"), expected: want.to_vec() });
        }
    }
    Ok(())
}

/// What one frame produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    /// The original frame's size in pixels (boxes are normalized to it).
    pub width: u32,
    pub height: u32,
    /// Sorted by descending score.
    pub detections: Vec<Detection>,
    pub timings: StageTimings,
}

/// Wall time of each stage of one frame.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StageTimings {
    pub decode: Duration,
    pub preprocess: Duration,
    pub inference: Duration,
    pub postprocess: Duration,
}

impl StageTimings {
    /// Sum of all stages.
    #[must_use]
    pub fn total(&self) -> Duration {
        self.decode + self.preprocess + self.inference + self.postprocess
    }
}

/// One inference slot: the tract state plus every buffer a frame needs, reused from frame to
/// frame. Not shared between threads; move it to the thread that runs it.
pub struct Session {
    model: Model,
    state: TypedSimpleState,
    frame: Frame,
    resizer: Resizer,
    /// The model input. tract takes inputs by value, so it gets a second `Arc` to this tensor
    /// and drops it when the run ends; we then write the next frame into the same memory.
    input: Arc<Tensor>,
    post: PostProcessor,
    decode_time: Duration,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session").field("frame", &self.frame).finish_non_exhaustive()
    }
}

impl Session {
    /// Decodes, preprocesses, runs and post-processes one encoded JPEG or PNG frame.
    pub fn detect(&mut self, encoded: &[u8]) -> Result<Output, DetectError> {
        self.decode(encoded)?;
        self.infer()
    }

    /// Decodes a JPEG or PNG into the session's RGB buffer, enforcing the config's limits
    /// before any image-sized allocation. Returns the frame's width and height.
    pub fn decode(&mut self, encoded: &[u8]) -> Result<(u32, u32), DetectError> {
        let started = Instant::now();
        let limits = &self.model.inner.cfg.limits;
        let frame = &mut self.frame;
        // Decoders are fed untrusted bytes; a decoder bug must cost one frame, not the slot.
        let result = catch_unwind(AssertUnwindSafe(|| frame.decode(encoded, limits)))
            .unwrap_or_else(|_| Err(DetectError::Corrupt("the image decoder panicked".into())));
        self.decode_time = started.elapsed();
        result
    }

    /// Takes raw RGB8 pixels (`image/x-raw-rgb`: a tensor as Frigate sends it) instead of
    /// decoding, within the same limits. Returns the width and height.
    pub fn decode_rgb(&mut self, pixels: &[u8], width: u32, height: u32) -> Result<(u32, u32), DetectError> {
        let started = Instant::now();
        let result = self.frame.take_rgb(pixels, width, height, &self.model.inner.cfg.limits);
        self.decode_time = started.elapsed();
        result
    }

    /// [`Session::decode_rgb`], then [`Session::infer`].
    pub fn detect_rgb(&mut self, pixels: &[u8], width: u32, height: u32) -> Result<Output, DetectError> {
        self.decode_rgb(pixels, width, height)?;
        self.infer()
    }

    /// Preprocesses, runs and post-processes the image of the last successful [`Session::decode`].
    pub fn infer(&mut self) -> Result<Output, DetectError> {
        let t0 = Instant::now();
        self.fill_input()?;
        let t1 = Instant::now();
        let outputs = self.run()?;
        let t2 = Instant::now();
        let (boxes, scores) = output_slices(&outputs)?;
        let detections = self.post.run(boxes, scores, &self.model.inner.cfg);
        let t3 = Instant::now();
        Ok(Output {
            width: self.frame.width,
            height: self.frame.height,
            detections,
            timings: StageTimings {
                decode: self.decode_time,
                preprocess: t1 - t0,
                inference: t2 - t1,
                postprocess: t3 - t2,
            },
        })
    }

    /// Resizes the last decoded image into the input tensor and returns it (NHWC
    /// `[1,300,300,3]`, RGB, integral values 0..=255). For parity tests and benchmarks; the
    /// values are what [`Session::infer`] feeds the model.
    pub fn preprocess(&mut self) -> Result<&[f32], DetectError> {
        self.fill_input()?;
        input_slice(&self.input)
    }

    /// Runs the model on a caller-made NHWC tensor (`INPUT_LEN` values) and returns the raw
    /// `boxes` and `scores` outputs, flattened. No decoding or post-processing.
    pub fn run_tensor(&mut self, nhwc: &[f32]) -> Result<(Vec<f32>, Vec<f32>), DetectError> {
        if nhwc.len() != INPUT_LEN {
            return Err(DetectError::InputShape { len: nhwc.len(), expected: INPUT_LEN });
        }
        input_slice_mut(&mut self.input)?.copy_from_slice(nhwc);
        let outputs = self.run()?;
        let (boxes, scores) = output_slices(&outputs)?;
        Ok((boxes.to_vec(), scores.to_vec()))
    }

    /// Runs `nhwc` `frames` times with every plan node timed on its own (after one untimed run
    /// that packs weights and grows buffers). For `edgepool bench detect --profile`.
    pub fn profile_tensor(&mut self, nhwc: &[f32], frames: usize) -> Result<Profile, DetectError> {
        self.run_tensor(nhwc)?;
        let mut rec = Recorder::default();
        let started = Instant::now();
        for _ in 0..frames {
            let input = TValue::from_const(Arc::clone(&self.input));
            self.state
                .run_plan_with_eval(tvec![input], |ctx, state, node, inputs| {
                    let t = Instant::now();
                    let out = tract_onnx::tract_core::plan::eval(ctx, state, node, inputs);
                    let took = t.elapsed();
                    rec.record(node.id, took, || {
                        let output = node.outputs.first().map(|o| format!("{:?}", o.fact)).unwrap_or_default();
                        (node.name.clone(), node.op.name().into_owned(), output)
                    });
                    out
                })
                .map_err(|e| DetectError::Inference(format!("{e:#}")))?;
        }
        Ok(rec.finish(frames, started.elapsed()))
    }

    fn fill_input(&mut self) -> Result<(), DetectError> {
        if !self.frame.valid {
            return Err(DetectError::NoImage);
        }
        let out = input_slice_mut(&mut self.input)?;
        self.resizer.run(&self.frame.rgb, self.frame.width, self.frame.height, out);
        Ok(())
    }

    fn run(&mut self) -> Result<TVec<TValue>, DetectError> {
        let input = TValue::from_const(Arc::clone(&self.input));
        match catch_unwind(AssertUnwindSafe(|| self.state.run(tvec![input]))) {
            Ok(Ok(outputs)) => Ok(outputs),
            Ok(Err(e)) => Err(DetectError::Inference(format!("{e:#}"))),
            Err(_) => {
                // The state may be half-updated after a panic; start the next frame clean.
                self.state = self.model.fresh_state();
                Err(DetectError::Inference("tract panicked".into()))
            }
        }
    }
}

fn input_slice(t: &Tensor) -> Result<&[f32], DetectError> {
    t.try_as_plain_ram().and_then(|v| v.as_slice::<f32>()).map_err(|e| DetectError::Inference(format!("{e:#}")))
}

/// Mutable access to the input tensor's values. tract has dropped its reference when a run
/// returns, so `make_mut` does not copy; if it ever kept one, this would copy once, not break.
fn input_slice_mut(t: &mut Arc<Tensor>) -> Result<&mut [f32], DetectError> {
    let tensor = Arc::make_mut(t);
    let err = |e: TractError| DetectError::Inference(format!("{e:#}"));
    let view = tensor.to_plain_array_view_mut::<f32>().map_err(err)?;
    view.into_slice().ok_or_else(|| DetectError::Inference("input tensor is not contiguous".into()))
}

fn output_slices(outputs: &[TValue]) -> Result<(&[f32], &[f32]), DetectError> {
    let get = |i: usize, len: usize| -> Result<&[f32], DetectError> {
        let t = outputs.get(i).ok_or_else(|| DetectError::Inference(format!("missing output {i}")))?;
        let s = input_slice(t)?;
        if s.len() != len {
            return Err(DetectError::Inference(format!("output {i} has {} values, expected {len}", s.len())));
        }
        Ok(s)
    };
    Ok((get(0, BOXES_LEN)?, get(1, SCORES_LEN)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worker moves sessions to blocking threads and shares the model between them.
    #[test]
    fn session_is_send_and_model_is_shared() {
        fn send<T: Send>() {}
        fn send_sync<T: Send + Sync>() {}
        send::<Session>();
        send_sync::<Model>();
    }

    /// A file that is not ONNX fails with tract's reason kept as the source, not flattened.
    #[test]
    fn load_errors_keep_their_source() {
        let path = std::env::temp_dir().join(format!("edgepool-not-onnx-{}.onnx", std::process::id()));
        std::fs::write(&path, b"this is not a protobuf").unwrap();
        let err = Model::load(&path, &DetectorConfig::default()).err().unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(err, LoadError::Model { .. }), "{err:?}");
        assert_eq!(err.to_string(), format!("cannot load model {}", path.display()));
        assert!(std::error::Error::source(&err).is_some(), "tract's error is the source");

        let bad = DetectorConfig { threads: 0, ..DetectorConfig::default() };
        let err = Model::load(&path, &bad).err().unwrap();
        let source = std::error::Error::source(&err).map(ToString::to_string);
        assert_eq!(source.as_deref(), Some("detector.threads must be at least 1"), "{err:?}");
    }
}
