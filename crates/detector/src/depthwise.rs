//! Our own kernel for the model's depthwise 3x3 convolutions, with the batch norm and Relu6
//! that follow each of them fused in: an ONNX graph rewrite before tract parses the model,
//! and a tract op registered from this crate.
//!
//! Why: tract-linalg 0.23 has vector kernels for depthwise convolutions at stride 1 only (AVX
//! on x86_64, NEON on aarch64); stride 2 runs its scalar loop, every zone of the image goes
//! through its generic walk, and the batch norm's scale and shift and the Relu6 run after it
//! as a separate pass. The 21 depthwise convolutions of SSD-MobileNet-v2 took 11.5-13.7 ms of
//! a frame against onnxruntime's 2.8-2.9 ms, plus 2.7 ms for that separate pass; with this op
//! they take 6.2-8.3 ms, batch norm and Relu6 included (docs/performance.md).
//!
//! The op works on the NCHW layout the ONNX graph has. Per channel it copies the input into a
//! zero-padded plane (for stride 2, split by row and column parity into four planes), so that
//! each of the nine taps is a plain offset into a plane and the whole output plane is one loop
//! over contiguous runs: bias plus nine scaled taps, clamped as it is written, 32 points per
//! block with the accumulators in registers. One loop per plane rather than per row matters
//! for the 19 x 19 and 10 x 10 maps, where per-row overhead dominated. The loop computes a few
//! points past the end of each row, which are dropped. The compiler vectorizes it for the
//! target's baseline (SSE2 on x86_64, NEON on aarch64), and an AVX2 build of the same loop is
//! picked at run time where the CPU has it: no hand-written intrinsics to keep per
//! architecture.
//!
//! Which nodes: a `Conv` with 3x3 kernels, one group per channel (as many groups as input and
//! output channels), stride 1 or 2, dilation 1, explicit pads of 0 or 1, f32 initializer
//! weights and bias. Then, fused when the convolution's output is read by them alone: a `Mul`
//! and an `Add` by per-channel constants (a batch norm that tf2onnx left unfolded), and a
//! `Clip` with constant bounds or a `Relu`. The fused node keeps the convolution's name (so
//! profiles still name the layer) and the last fused node's output name, so nothing
//! downstream changes. The unit tests check the op against tract's own convolution on random
//! weights, for every stride, padding and fused tail the model uses.

use std::collections::HashMap;
use std::sync::Arc;

use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::pb::{GraphProto, ModelProto, NodeProto};
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::*;

use crate::proto::{float_attr, floats, int_attr, ints_attr};

/// The op type of the fused node in the rewritten graph. Custom domain, so no ONNX runtime
/// would mistake it for a standard op.
const OP_TYPE: &str = "EdgepoolDepthwise3x3";
const DOMAIN: &str = "ai.edgepool";

/// Registers the fused node's parser with tract's ONNX front end.
pub fn register(onnx: &mut tract_onnx::Onnx) {
    onnx.op_register.insert(OP_TYPE, parse_node);
}

/// Fuses every eligible depthwise convolution of `model` (see the module docs); returns how
/// many it fused. A model without a graph is left untouched.
pub fn rewrite(model: &mut ModelProto) -> usize {
    let Some(graph) = model.graph.as_mut() else { return 0 };
    if graph.node.iter().any(|n| n.attribute.iter().any(|a| a.g.is_some() || !a.graphs.is_empty())) {
        // A subgraph may read an intermediate we would remove.
        return 0;
    }
    let mut readers: HashMap<String, usize> = HashMap::new();
    for n in &graph.node {
        for i in &n.input {
            *readers.entry(i.clone()).or_default() += 1;
        }
    }
    for o in &graph.output {
        *readers.entry(o.name.clone()).or_default() += 1;
    }
    let consumer_of = |name: &str, nodes: &[NodeProto]| -> Option<usize> {
        if readers.get(name).copied() != Some(1) {
            return None;
        }
        nodes.iter().position(|n| n.input.iter().any(|i| i == name))
    };

    let mut fused = 0;
    let mut drop = vec![false; graph.node.len()];
    let mut replace: Vec<(usize, NodeProto)> = Vec::new();
    let mut new_inits = Vec::new();
    for (ix, node) in graph.node.iter().enumerate() {
        let Some(mut plan) = conv_plan(graph, node) else { continue };
        let mut out = node.output[0].clone();
        let mut chain = vec![ix];
        // Mul by a per-channel constant, then Add of one: the batch norm.
        if let Some(m) = consumer_of(&out, &graph.node).filter(|&m| !drop[m])
            && let Some(scale) = per_channel_operand(graph, &graph.node[m], &out, "Mul", plan.channels)
        {
            for (c, s) in scale.iter().enumerate() {
                plan.weights[c * 9..c * 9 + 9].iter_mut().for_each(|w| *w *= s);
                plan.bias[c] *= s;
            }
            out = graph.node[m].output[0].clone();
            chain.push(m);
            if let Some(a) = consumer_of(&out, &graph.node)
                && let Some(shift) = per_channel_operand(graph, &graph.node[a], &out, "Add", plan.channels)
            {
                plan.bias.iter_mut().zip(&shift).for_each(|(b, s)| *b += s);
                out = graph.node[a].output[0].clone();
                chain.push(a);
            }
        }
        // Then the activation.
        if let Some(c) = consumer_of(&out, &graph.node)
            && let Some((lo, hi)) = clamp_bounds(graph, &graph.node[c], &out)
        {
            plan.clip = (lo, hi);
            out = graph.node[c].output[0].clone();
            chain.push(c);
        }
        let name = node.name.clone();
        let weights = format!("{name}/edgepool_dw/weights");
        let bias = format!("{name}/edgepool_dw/bias");
        new_inits.push(floats(&weights, &[plan.channels as i64, 9], &plan.weights));
        new_inits.push(floats(&bias, &[plan.channels as i64], &plan.bias));
        let fused_node = NodeProto {
            name,
            op_type: OP_TYPE.into(),
            domain: DOMAIN.into(),
            input: vec![node.input[0].clone(), weights, bias],
            output: vec![out],
            attribute: vec![
                int_attr("stride", plan.stride as i64),
                ints_attr("pads", &plan.pads.map(|p| p as i64)),
                float_attr("clip_min", plan.clip.0),
                float_attr("clip_max", plan.clip.1),
            ],
            ..NodeProto::default()
        };
        for &c in &chain {
            drop[c] = true;
        }
        replace.push((ix, fused_node));
        fused += 1;
    }
    if fused == 0 {
        return 0;
    }
    let mut replace: HashMap<usize, NodeProto> = replace.into_iter().collect();
    let nodes = std::mem::take(&mut graph.node);
    graph.node = nodes
        .into_iter()
        .enumerate()
        .filter_map(|(ix, n)| match replace.remove(&ix) {
            Some(f) => Some(f),
            None => (!drop[ix]).then_some(n),
        })
        .collect();
    graph.initializer.extend(new_inits);
    drop_unread(graph);
    if !model.opset_import.iter().any(|o| o.domain == DOMAIN) {
        model.opset_import.push(tract_onnx::pb::OperatorSetIdProto { domain: DOMAIN.into(), version: 1 });
    }
    fused
}

/// What the fused node needs of one depthwise convolution.
struct Plan {
    channels: usize,
    stride: usize,
    /// ONNX order: top, left, bottom, right.
    pads: [usize; 4],
    /// `[channels][3][3]`, scaled by the fused batch norm.
    weights: Vec<f32>,
    bias: Vec<f32>,
    clip: (f32, f32),
}

fn conv_plan(graph: &GraphProto, node: &NodeProto) -> Option<Plan> {
    if node.op_type != "Conv" || !(node.domain.is_empty() || node.domain == "ai.onnx") {
        return None;
    }
    if !(2..=3).contains(&node.input.len()) || node.output.len() != 1 {
        return None;
    }
    let (mut stride, mut pads, mut group) = (1, [0usize; 4], 1i64);
    for a in &node.attribute {
        match a.name.as_str() {
            "kernel_shape" if a.ints == [3, 3] => {}
            "dilations" if a.ints == [1, 1] => {}
            "strides" if a.ints == [1, 1] || a.ints == [2, 2] => stride = a.ints[0] as usize,
            "group" => group = a.i,
            "pads" if a.ints.len() == 4 && a.ints.iter().all(|p| (0..=1).contains(p)) => {
                for (p, v) in pads.iter_mut().zip(&a.ints) {
                    *p = *v as usize;
                }
            }
            "auto_pad" if a.s.is_empty() || a.s == b"NOTSET" => {}
            _ => return None,
        }
    }
    let w = initializer(graph, &node.input[1])?;
    let &[c, 1, 3, 3] = w.0.as_slice() else { return None };
    if c != group || c < 1 {
        return None;
    }
    let channels = usize::try_from(c).ok()?;
    if w.1.len() != channels * 9 {
        return None;
    }
    let bias = match node.input.get(2) {
        Some(b) => {
            let b = initializer(graph, b)?;
            (b.1.len() == channels).then_some(b.1)?
        }
        None => vec![0.0; channels],
    };
    Some(Plan { channels, stride, pads, weights: w.1, bias, clip: (f32::NEG_INFINITY, f32::INFINITY) })
}

/// An f32 initializer's dims and values.
fn initializer(graph: &GraphProto, name: &str) -> Option<(Vec<i64>, Vec<f32>)> {
    let t = graph.initializer.iter().find(|t| t.name == name)?;
    if t.data_type != DataType::Float as i32 || t.segment.is_some() || t.data_location.is_some_and(|l| l != 0) {
        return None;
    }
    let values = if t.raw_data.is_empty() {
        t.float_data.clone()
    } else {
        if t.raw_data.len() % 4 != 0 {
            return None;
        }
        t.raw_data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
    };
    let count: i64 = t.dims.iter().product();
    (usize::try_from(count).ok()? == values.len()).then_some((t.dims.clone(), values))
}

/// The other operand of a binary `op` reading `x`, when it is a constant with one value per
/// channel (`[C]`, `[C,1,1]` or `[1,C,1,1]`) or one value for all.
fn per_channel_operand(graph: &GraphProto, node: &NodeProto, x: &str, op: &str, channels: usize) -> Option<Vec<f32>> {
    if node.op_type != op || !node.domain.is_empty() || node.input.len() != 2 || node.output.len() != 1 {
        return None;
    }
    let other = if node.input[0] == x { &node.input[1] } else { &node.input[0] };
    if other == x {
        return None;
    }
    let (dims, values) = initializer(graph, other)?;
    let per_channel =
        matches!(dims.as_slice(), [c] | [c, 1, 1] | [1, c, 1, 1] if usize::try_from(*c).ok() == Some(channels));
    if per_channel && values.len() == channels {
        return Some(values);
    }
    (dims.iter().all(|&d| d == 1) && values.len() == 1).then(|| vec![values[0]; channels])
}

/// The bounds of a `Clip` with constant bounds, or of a `Relu`, reading `x`.
fn clamp_bounds(graph: &GraphProto, node: &NodeProto, x: &str) -> Option<(f32, f32)> {
    if !node.domain.is_empty() || node.output.len() != 1 || node.input.first().map(String::as_str) != Some(x) {
        return None;
    }
    match node.op_type.as_str() {
        "Relu" if node.input.len() == 1 => Some((0.0, f32::INFINITY)),
        "Clip" => {
            let bound = |ix: usize, default: f32| -> Option<f32> {
                match node.input.get(ix).filter(|n| !n.is_empty()) {
                    None => Some(default),
                    Some(name) => {
                        let (_, v) = initializer(graph, name)?;
                        (v.len() == 1).then(|| v[0])
                    }
                }
            };
            // Opset 6-10 Clip has its bounds as attributes.
            let mut lo = bound(1, f32::NEG_INFINITY)?;
            let mut hi = bound(2, f32::INFINITY)?;
            for a in &node.attribute {
                match a.name.as_str() {
                    "min" => lo = a.f,
                    "max" => hi = a.f,
                    _ => return None,
                }
            }
            (lo <= hi).then_some((lo, hi))
        }
        _ => None,
    }
}

/// Drops the initializers no node reads any more (the replaced weights, the batch norms'
/// constants), so the model does not keep two copies in memory.
fn drop_unread(graph: &mut GraphProto) {
    let read: std::collections::HashSet<String> = graph
        .node
        .iter()
        .flat_map(|n| n.input.iter().cloned())
        .chain(graph.output.iter().map(|o| o.name.clone()))
        .collect();
    graph.initializer.retain(|t| read.contains(&t.name));
}

// ---- the tract side -------------------------------------------------------------------------

fn parse_node(
    _ctx: &tract_onnx::model::ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let stride: i64 = node.get_attr("stride")?;
    let pads: Vec<i64> = node.get_attr_vec("pads")?;
    let clip_min: f32 = node.get_attr("clip_min")?;
    let clip_max: f32 = node.get_attr("clip_max")?;
    let [top, left, bottom, right] = pads.as_slice() else { bail!("{OP_TYPE}: pads must have 4 values") };
    let pad = |p: &i64| usize::try_from(*p).map_err(|_| format_err!("{OP_TYPE}: negative pad"));
    let geometry = Geometry {
        stride: usize::try_from(stride).ok().filter(|s| (1..=2).contains(s)).context("stride must be 1 or 2")?,
        pads: [pad(top)?, pad(left)?, pad(bottom)?, pad(right)?],
    };
    Ok((expand(FusedExpansion { geometry, clip: (clip_min, clip_max) }), vec![]))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Geometry {
    stride: usize,
    /// top, left, bottom, right
    pads: [usize; 4],
}

impl Geometry {
    fn output_hw(&self, h: usize, w: usize) -> Option<(usize, usize)> {
        let hp = h + self.pads[0] + self.pads[2];
        let wp = w + self.pads[1] + self.pads[3];
        (hp >= 3 && wp >= 3).then(|| ((hp - 3) / self.stride + 1, (wp - 3) / self.stride + 1))
    }
}

#[derive(Debug, Clone)]
struct FusedExpansion {
    geometry: Geometry,
    clip: (f32, f32),
}

impl Expansion for FusedExpansion {
    fn name(&self) -> StaticName {
        OP_TYPE.into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 3)?;
        check_output_arity(outputs, 1)?;
        s.equals(&inputs[0].rank, 4)?;
        s.equals(&outputs[0].rank, 4)?;
        s.equals(&outputs[0].datum_type, &inputs[0].datum_type)?;
        s.given(&inputs[0].shape, move |s, shape| {
            let (Ok(h), Ok(w)) = (shape[2].to_usize(), shape[3].to_usize()) else { return Ok(()) };
            let (ho, wo) = self.geometry.output_hw(h, w).context("input smaller than the kernel")?;
            s.equals(
                &outputs[0].shape,
                ShapeFactoid::from(tvec!(shape[0].clone(), shape[1].clone(), ho.to_dim(), wo.to_dim())),
            )
        })
    }

    fn wire(&self, prefix: &str, model: &mut TypedModel, inputs: &[OutletId]) -> TractResult<TVec<OutletId>> {
        let konst = |ix: usize| -> TractResult<Vec<f32>> {
            let fact = model.outlet_fact(inputs[ix])?;
            let t = fact.konst.as_ref().with_context(|| format!("{OP_TYPE}: input {ix} must be a constant"))?;
            Ok(t.cast_to::<f32>()?.try_as_plain_ram()?.as_slice::<f32>()?.to_vec())
        };
        let (weights, bias) = (konst(1)?, konst(2)?);
        let x = model.outlet_fact(inputs[0])?;
        ensure!(x.datum_type == f32::datum_type(), "{OP_TYPE}: f32 input only, got {:?}", x.datum_type);
        let channels = x.shape[1].to_usize()?;
        ensure!(
            weights.len() == channels * 9 && bias.len() == channels,
            "{OP_TYPE}: weights do not match {channels} channels"
        );
        let op = FusedDepthwise {
            geometry: self.geometry,
            clip: self.clip,
            weights: Arc::new(weights),
            bias: Arc::new(bias),
        };
        model.wire_node(prefix, op, &inputs[..1])
    }
}

/// The fused depthwise 3x3 convolution, bias, and clamp, on an f32 NCHW tensor.
#[derive(Debug, Clone)]
pub struct FusedDepthwise {
    geometry: Geometry,
    clip: (f32, f32),
    weights: Arc<Vec<f32>>,
    bias: Arc<Vec<f32>>,
}

impl PartialEq for FusedDepthwise {
    fn eq(&self, other: &Self) -> bool {
        self.geometry == other.geometry
            && self.clip.0.to_bits() == other.clip.0.to_bits()
            && self.clip.1.to_bits() == other.clip.1.to_bits()
            && Arc::ptr_eq(&self.weights, &other.weights)
            && Arc::ptr_eq(&self.bias, &other.bias)
    }
}

impl Eq for FusedDepthwise {}

impl Op for FusedDepthwise {
    fn name(&self) -> StaticName {
        "EdgepoolDepthwise".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("stride {} pads {:?} clip {:?}", self.geometry.stride, self.geometry.pads, self.clip)])
    }

    fn validation(&self) -> Validation {
        Validation::Rounding
    }

    op_as_typed_op!();
}

impl EvalOp for FusedDepthwise {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = &inputs[0];
        let &[n, c, h, w] = x.shape() else { bail!("{OP_TYPE}: rank 4 input expected") };
        let (ho, wo) = self.geometry.output_hw(h, w).context("input smaller than the kernel")?;
        ensure!(c * 9 == self.weights.len(), "{OP_TYPE}: {c} channels, weights for {}", self.weights.len() / 9);
        // Zeroed rather than uninitialized: the workspace has no unsafe for this, and the
        // pass costs little next to the convolution. Written in place, not built in a Vec
        // and converted: tract copies an ndarray into a new tensor.
        let mut out = Tensor::zero::<f32>(&[n, c, ho, wo])?;
        let mut view = out.try_as_plain_ram_mut()?;
        self.run(x.try_as_plain_ram()?.as_slice::<f32>()?, view.as_slice_mut::<f32>()?, n * c, h, w);
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for FusedDepthwise {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let shape = &inputs[0].shape;
        ensure!(shape.rank() == 4, "{OP_TYPE}: rank 4 input expected");
        let (ho, wo) = self
            .geometry
            .output_hw(shape[2].to_usize()?, shape[3].to_usize()?)
            .context("input smaller than the kernel")?;
        Ok(tvec!(f32::fact([shape[0].clone(), shape[1].clone(), ho.to_dim(), wo.to_dim()])))
    }

    fn cost(&self, inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        let out = self.output_facts(inputs)?;
        Ok(tvec!((Cost::FMA(f32::datum_type()), out[0].shape.volume() * 9)))
    }

    as_op!();
}

impl FusedDepthwise {
    /// `planes` input planes of `h` x `w` (batch and channels flattened) into `out`, the
    /// output planes in the same order.
    fn run(&self, input: &[f32], out: &mut [f32], planes: usize, h: usize, w: usize) {
        let Some((ho, wo)) = self.geometry.output_hw(h, w) else { return };
        let channels = self.bias.len();
        let kernel = row_kernel();
        let (lo, hi) = self.clip;
        let mut scratch = Scratch::default();
        for (p, (plane, out)) in input.chunks_exact(h * w).zip(out.chunks_exact_mut(ho * wo)).take(planes).enumerate() {
            let ch = p % channels;
            let k: [f32; 9] = std::array::from_fn(|t| self.weights[ch * 9 + t]);
            scratch.fill(plane, h, w, self.geometry);
            let (taps, len) = scratch.taps(ho, wo);
            let Scratch { planes, row_stride, flat, .. } = &mut scratch;
            flat.resize(len, 0.0);
            kernel(&mut flat[..len], &taps.map(|(q, offset)| &planes[q][offset..]), &k, self.bias[ch], lo, hi);
            for (y, row) in out.chunks_exact_mut(wo).enumerate() {
                row.copy_from_slice(&flat[y * *row_stride..y * *row_stride + wo]);
            }
        }
    }
}

/// One channel's zero-padded input, laid out so that the whole output plane is one run of a
/// single vector loop: `flat[i] = bias + sum over taps of k[t] * tap_t[i]`, where output
/// (y, x) is `flat[y * row_stride + x]` and every tap is a plain offset into one of the
/// planes. The loop also computes a few points past the end of each row, which are dropped;
/// that costs less than stopping at every row of a 19 x 19 or 10 x 10 map.
///
/// Stride 1: one plane, the padded input; tap (ky, kx) is at offset `ky * width + kx`.
/// Stride 2: the padded input split by row parity and column parity into four planes of the
/// same width; tap (ky, kx) reads the plane of parities (ky % 2, kx % 2), one row further
/// down when ky = 2 and one column further right when kx = 2.
#[derive(Default)]
struct Scratch {
    planes: [Vec<f32>; 4],
    row_stride: usize,
    stride: usize,
    flat: Vec<f32>,
}

impl Scratch {
    fn fill(&mut self, plane: &[f32], h: usize, w: usize, g: Geometry) {
        let [top, left, bottom, right] = g.pads;
        let (hp, wp) = (h + top + bottom, w + left + right);
        self.stride = g.stride;
        if g.stride == 1 {
            self.row_stride = wp;
            let p = &mut self.planes[0];
            p.clear();
            // One spare row, so that the dropped points past the last row stay in bounds.
            p.resize((hp + 1) * wp, 0.0);
            for (y, src) in plane.chunks_exact(w).enumerate() {
                let to = (y + top) * wp + left;
                p[to..to + w].copy_from_slice(src);
            }
            return;
        }
        let half_w = wp.div_ceil(2);
        let half_h = hp.div_ceil(2) + 1;
        self.row_stride = half_w;
        for p in &mut self.planes {
            p.clear();
            p.resize(half_h * half_w, 0.0);
        }
        let [ee, eo, oe, oo] = &mut self.planes;
        for (y, src) in plane.chunks_exact(w).enumerate() {
            let r = y + top;
            let (even_cols, odd_cols) = if r % 2 == 0 { (&mut *ee, &mut *eo) } else { (&mut *oe, &mut *oo) };
            let base = (r / 2) * half_w;
            let (ev, od) = (&mut even_cols[base..base + half_w], &mut odd_cols[base..base + half_w]);
            // Column c = x + left goes to plane c % 2 at c / 2: pairs of input columns fill one
            // slot of each plane, in an order set by the parity of `left`.
            let off = left / 2;
            let pairs = src.chunks_exact(2);
            let last = pairs.remainder().first().copied();
            if left % 2 == 0 {
                for ((pair, e), o) in pairs.zip(&mut ev[off..]).zip(&mut od[off..]) {
                    (*e, *o) = (pair[0], pair[1]);
                }
                if let Some(v) = last {
                    ev[off + w / 2] = v;
                }
            } else {
                for ((pair, o), e) in pairs.zip(&mut od[off..]).zip(&mut ev[off + 1..]) {
                    (*o, *e) = (pair[0], pair[1]);
                }
                if let Some(v) = last {
                    od[off + w / 2] = v;
                }
            }
        }
    }

    /// The nine taps as (plane, offset), and the length of the flat run.
    fn taps(&self, ho: usize, wo: usize) -> ([(usize, usize); 9], usize) {
        let s = self.row_stride;
        let len = (ho - 1) * s + wo;
        let taps = std::array::from_fn(|t| {
            let (ky, kx) = (t / 3, t % 3);
            if self.stride == 1 { (0, ky * s + kx) } else { ((ky % 2) * 2 + kx % 2, (ky / 2) * s + kx / 2) }
        });
        (taps, len)
    }
}

type RowKernel = fn(&mut [f32], &[&[f32]; 9], &[f32; 9], f32, f32, f32);

/// The run kernel for this CPU: the AVX2 build of the same loop where the CPU has AVX2.
fn row_kernel() -> RowKernel {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        #[allow(unsafe_code)]
        return |o, t, k, b, lo, hi| {
            // SAFETY: `row_avx2` only needs AVX2, and the CPU has it: checked just above.
            unsafe { row_avx2(o, t, k, b, lo, hi) }
        };
    }
    row_generic
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn row_avx2(out: &mut [f32], taps: &[&[f32]; 9], k: &[f32; 9], bias: f32, lo: f32, hi: f32) {
    row(out, taps, k, bias, lo, hi);
}

fn row_generic(out: &mut [f32], taps: &[&[f32]; 9], k: &[f32; 9], bias: f32, lo: f32, hi: f32) {
    row(out, taps, k, bias, lo, hi);
}

/// One run of output points: `out[x] = clamp(bias + sum over taps of k[t] * taps[t][x])`, in blocks of
/// 32 and 8 points: each block keeps its accumulators in registers, so the nine multiply-adds
/// of one point do not wait on each other's latency across the block (one running sum per
/// point would be a chain of nine dependent adds).
#[inline(always)]
fn row(out: &mut [f32], taps: &[&[f32]; 9], k: &[f32; 9], bias: f32, lo: f32, hi: f32) {
    let n = out.len();
    let mut i = 0;
    while i + 32 <= n {
        block::<32>(out, taps, k, bias, lo, hi, i);
        i += 32;
    }
    while i + 8 <= n {
        block::<8>(out, taps, k, bias, lo, hi, i);
        i += 8;
    }
    while i < n {
        block::<1>(out, taps, k, bias, lo, hi, i);
        i += 1;
    }
}

#[inline(always)]
fn block<const N: usize>(out: &mut [f32], taps: &[&[f32]; 9], k: &[f32; 9], bias: f32, lo: f32, hi: f32, i: usize) {
    let mut acc = [bias; N];
    for (tap, &kt) in taps.iter().zip(k) {
        for (a, &x) in acc.iter_mut().zip(&tap[i..i + N]) {
            *a += kt * x;
        }
    }
    for (o, a) in out[i..i + N].iter_mut().zip(acc) {
        *o = a.max(lo).min(hi);
    }
}

#[cfg(test)]
mod tests {
    use tract_onnx::pb::{AttributeProto, OperatorSetIdProto, TensorProto, ValueInfoProto};

    use super::*;
    use crate::proto::{f32_type, noise, run_graph};

    const C: usize = 20;
    const SIDE: usize = 37;

    fn node(name: &str, op: &str, input: &[&str], attribute: Vec<AttributeProto>) -> NodeProto {
        NodeProto {
            name: name.into(),
            op_type: op.into(),
            input: input.iter().map(|s| (*s).to_owned()).collect(),
            output: vec![format!("{name}/y")],
            attribute,
            ..NodeProto::default()
        }
    }

    fn depthwise(name: &str, stride: i64, pads: [i64; 4], bias: bool, inits: &mut Vec<TensorProto>) -> NodeProto {
        let w = format!("{name}/w");
        inits.push(floats(&w, &[C as i64, 1, 3, 3], &noise(C * 9, stride as u64 * 31 + pads[0] as u64)));
        let mut input = vec!["x", w.as_str()];
        let b = format!("{name}/b");
        if bias {
            inits.push(floats(&b, &[C as i64], &noise(C, 5)));
            input.push(&b);
        }
        node(
            name,
            "Conv",
            &input,
            vec![
                ints_attr("kernel_shape", &[3, 3]),
                ints_attr("strides", &[stride, stride]),
                ints_attr("pads", &pads),
                ints_attr("dilations", &[1, 1]),
                int_attr("group", C as i64),
            ],
        )
    }

    /// Every shape of depthwise convolution the model has, each with what follows it there,
    /// and two nodes the rewrite must leave alone.
    fn model() -> ModelProto {
        let mut inits = Vec::new();
        let mut nodes = Vec::new();
        // Stride 1, pads 1: batch norm as Mul and Add by per-channel constants, then Relu6.
        nodes.push(depthwise("same", 1, [1, 1, 1, 1], false, &mut inits));
        inits.push(floats("scale", &[1, C as i64, 1, 1], &noise(C, 11).iter().map(|v| v + 1.5).collect::<Vec<_>>()));
        inits.push(floats("shift", &[1, C as i64, 1, 1], &noise(C, 12)));
        inits.push(floats("zero", &[], &[0.0]));
        inits.push(floats("six", &[], &[0.6]));
        nodes.push(node("same/bn/mul", "Mul", &["same/y", "scale"], vec![]));
        nodes.push(node("same/bn/add", "Add", &["same/bn/mul/y", "shift"], vec![]));
        nodes.push(node("same/relu6", "Clip", &["same/bn/add/y", "zero", "six"], vec![]));
        // Stride 2, TF-style pads (bottom and right only), a bias, then Relu.
        nodes.push(depthwise("s2", 2, [0, 0, 1, 1], true, &mut inits));
        nodes.push(node("s2/relu", "Relu", &["s2/y"], vec![]));
        // Stride 2, pads 1, nothing after it: a graph output itself.
        nodes.push(depthwise("s2pad", 2, [1, 1, 1, 1], false, &mut inits));
        // Its output is read twice: the convolution is fused alone, the Add stays.
        nodes.push(depthwise("shared", 1, [1, 1, 1, 1], false, &mut inits));
        nodes.push(node("shared/twice", "Add", &["shared/y", "shared/y"], vec![]));
        // Not depthwise: one group.
        inits.push(floats("dense/w", &[4, C as i64, 3, 3], &noise(4 * C * 9, 3)));
        nodes.push(node(
            "dense",
            "Conv",
            &["x", "dense/w"],
            vec![ints_attr("kernel_shape", &[3, 3]), ints_attr("pads", &[1, 1, 1, 1]), int_attr("group", 1)],
        ));
        let outputs = ["same/relu6/y", "s2/relu/y", "s2pad/y", "shared/twice/y", "dense/y"]
            .map(|n| ValueInfoProto { name: n.into(), ..ValueInfoProto::default() });
        ModelProto {
            ir_version: 7,
            opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 13 }],
            graph: Some(GraphProto {
                node: nodes,
                initializer: inits,
                input: vec![ValueInfoProto { name: "x".into(), r#type: Some(f32_type()), ..ValueInfoProto::default() }],
                output: outputs.to_vec(),
                ..GraphProto::default()
            }),
            ..ModelProto::default()
        }
    }

    #[test]
    fn the_fused_op_computes_what_tract_computes() {
        let plain = model();
        let mut fused = plain.clone();
        assert_eq!(rewrite(&mut fused), 4, "the four depthwise convolutions, not the dense one");
        let graph = fused.graph.as_ref().unwrap();
        let ops: Vec<&str> = graph.node.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(ops, [OP_TYPE, OP_TYPE, OP_TYPE, OP_TYPE, "Add", "Conv"], "what is left");
        let same = &graph.node[0];
        assert_eq!(same.output, ["same/relu6/y"], "batch norm and Relu6 fused, the last output kept");
        let names: Vec<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
        assert!(!names.contains(&"same/w") && !names.contains(&"scale"), "unread constants dropped: {names:?}");
        assert!(names.contains(&"dense/w"));

        let x = noise(C * SIDE * SIDE, 99);
        let shape = [1, C, SIDE, SIDE];
        let mut onnx = onnx();
        register(&mut onnx);
        let (want, got) = (run_graph(&onnx, &plain, shape, &x), run_graph(&onnx, &fused, shape, &x));
        let sizes: Vec<usize> = want.iter().map(Vec::len).collect();
        assert_eq!(sizes, [C * 37 * 37, C * 18 * 18, C * 19 * 19, C * 37 * 37, 4 * 37 * 37]);
        for (i, (w, g)) in want.iter().zip(&got).enumerate() {
            assert_eq!(w.len(), g.len());
            let worst = w.iter().zip(g).map(|(a, b)| (a - b).abs() / a.abs().max(1.0)).fold(0.0, f32::max);
            assert!(worst < 1e-5, "output {i} differs by {worst}");
        }
        // The clamps bite: Relu6 at 0.6 and Relu at 0 are reached.
        assert!(got[0].contains(&0.6) && got[0].contains(&0.0));
        assert!(got[1].contains(&0.0) && got[1].iter().any(|&v| v > 1.0));
    }

    #[test]
    fn a_model_without_depthwise_convolutions_is_left_alone() {
        let mut m = model();
        let graph = m.graph.as_mut().unwrap();
        graph.node.retain(|n| n.name == "dense");
        graph.output.retain(|o| o.name == "dense/y");
        let before = m.clone();
        assert_eq!(rewrite(&mut m), 0);
        assert_eq!(m, before);
    }
}
