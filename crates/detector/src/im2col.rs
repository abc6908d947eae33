//! A graph rewrite applied to the ONNX model before tract parses it: deep 3x3 convolutions
//! become an explicit im2col (nine shifted slices of the padded input, concatenated along the
//! channels) followed by one 1x1 convolution with the weights reordered to match.
//!
//! Why: tract runs a 3x3 convolution as one matrix product whose activation operand is
//! gathered on the fly (its lazy im2col). For the SSD heads, small maps (19x19 down to 1x1)
//! with long reductions (k = 9 x 1280 = 11520 for the 10x10 class head), that strided gather
//! is the bottleneck: the 10x10 class head ran at 37 GFLOP/s where onnxruntime reaches 81 on
//! the same core, a fifth of the whole frame (docs/performance.md, "Where the time goes").
//! With the patches explicit, tract splits the product over the nine taps (its `concat-einsum`
//! rule): each tap is a plain product over a contiguous slice of the padded input (4.6 MB of
//! slices for that head), which runs at the rate of tract's other big products. The result is
//! the same convolution, the same products summed in another order: the unit test below checks
//! it on random weights, and the known-answer and golden tests (1e-4) pass unchanged on the
//! real model.
//!
//! Which convolutions: 3x3, stride 1, dilation 1, one group, padding 1 on every side, weights
//! a constant f32 initializer, and at least [`MIN_CHANNELS`] input channels. Deep layers are
//! where maps are small, so the explicit patches stay small; a shallow convolution over a big
//! map would materialize a large tensor for little gain, and is left to tract.

use std::collections::{HashMap, HashSet};

use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::pb::{GraphProto, ModelProto, NodeProto, TensorProto};

use crate::proto::{int_attr, ints_attr};

/// Convolutions with fewer input channels stay as they are (see the module docs).
pub const MIN_CHANNELS: i64 = 128;

/// The opset from which Pad takes its pads as an input (opset 11) and Slice its bounds (10).
const MIN_OPSET: i64 = 11;

/// Rewrites every eligible convolution of `model`; returns how many it rewrote. A model it
/// does not understand (an old opset, no graph) is left untouched.
pub fn rewrite(model: &mut ModelProto) -> usize {
    let opset =
        model.opset_import.iter().find(|o| o.domain.is_empty() || o.domain == "ai.onnx").map_or(0, |o| o.version);
    if opset < MIN_OPSET {
        return 0;
    }
    let Some(graph) = model.graph.as_mut() else { return 0 };
    let mut nodes = Vec::with_capacity(graph.node.len());
    let mut replaced = Vec::new();
    // Convolutions reading the same input (an SSD level's class and box heads) share its
    // patches: built once, by the first of them.
    let mut patches: HashMap<String, String> = HashMap::new();
    for node in std::mem::take(&mut graph.node) {
        match eligible(graph, &node) {
            Some(plan) => {
                let cat = match patches.get(&node.input[0]) {
                    Some(cat) => cat.clone(),
                    None => {
                        let cat = gather(graph, &node, &mut nodes);
                        patches.insert(node.input[0].clone(), cat.clone());
                        cat
                    }
                };
                nodes.push(convolve(graph, &node, plan, cat));
                replaced.push(node.input[1].clone());
            }
            None => nodes.push(node),
        }
    }
    graph.node = nodes;
    drop_unread(graph, &replaced);
    replaced.len()
}

/// What the rewrite needs of one eligible convolution.
struct Plan {
    /// The weights reordered to `[out, 3, 3, in]`, i.e. `[out, 9 x in, 1, 1]`, as little-endian
    /// f32 bytes.
    weights: Vec<u8>,
    out: i64,
    channels: i64,
}

fn eligible(graph: &GraphProto, node: &NodeProto) -> Option<Plan> {
    if node.op_type != "Conv" || !(node.domain.is_empty() || node.domain == "ai.onnx") {
        return None;
    }
    if !(2..=3).contains(&node.input.len()) || node.output.len() != 1 {
        return None;
    }
    for a in &node.attribute {
        let ok = match a.name.as_str() {
            "kernel_shape" => a.ints == [3, 3],
            "strides" | "dilations" => a.ints == [1, 1],
            "group" => a.i == 1,
            "pads" => a.ints == [1, 1, 1, 1],
            "auto_pad" => a.s.is_empty() || a.s == b"NOTSET",
            _ => false,
        };
        if !ok {
            return None;
        }
    }
    // No pads attribute means no padding: not the shape this rewrite keeps.
    if !node.attribute.iter().any(|a| a.name == "pads") {
        return None;
    }
    let w = graph.initializer.iter().find(|t| t.name == node.input[1])?;
    let &[out, channels, 3, 3] = w.dims.as_slice() else { return None };
    if channels < MIN_CHANNELS || w.data_type != DataType::Float as i32 || w.segment.is_some() {
        return None;
    }
    let data = raw_floats(w)?;
    let (o, c) = (usize::try_from(out).ok()?, usize::try_from(channels).ok()?);
    if data.len() != o * c * 9 * 4 {
        return None;
    }
    // [o][c][kh][kw] -> [o][kh][kw][c], matching the concatenation order of the slices; bytes
    // to bytes, so the heads' weights are not copied more than once while loading.
    let mut weights = vec![0u8; data.len()];
    for oi in 0..o {
        for ci in 0..c {
            for k in 0..9 {
                let (to, from) = (((oi * 9 + k) * c + ci) * 4, ((oi * c + ci) * 9 + k) * 4);
                weights[to..to + 4].copy_from_slice(&data[from..from + 4]);
            }
        }
    }
    Some(Plan { weights, out, channels })
}

/// An f32 initializer's values as little-endian bytes: `raw_data` as it is, or `float_data`
/// converted.
fn raw_floats(t: &TensorProto) -> Option<std::borrow::Cow<'_, [u8]>> {
    if !t.raw_data.is_empty() {
        return Some(std::borrow::Cow::Borrowed(&t.raw_data));
    }
    (!t.float_data.is_empty())
        .then(|| std::borrow::Cow::Owned(t.float_data.iter().flat_map(|v| v.to_le_bytes()).collect()))
}

/// Appends to `nodes` the Pad, the nine Slices and the Concat that gather `node`'s input into
/// patches, with their constants added to `graph`; returns the patches' name.
fn gather(graph: &mut GraphProto, node: &NodeProto, nodes: &mut Vec<NodeProto>) -> String {
    let base = &node.name;
    let x = &node.input[0];
    let padded = format!("{base}/im2col/padded");
    let pads = constant_i64(graph, format!("{base}/im2col/pads"), &[0, 0, 1, 1, 0, 0, 1, 1]);
    let axes = constant_i64(graph, format!("{base}/im2col/axes"), &[2, 3]);
    nodes.push(NodeProto {
        name: format!("{base}/im2col/pad"),
        op_type: "Pad".into(),
        input: vec![x.clone(), pads],
        output: vec![padded.clone()],
        ..NodeProto::default()
    });
    let mut patches = Vec::with_capacity(9);
    for kh in 0..3i64 {
        for kw in 0..3i64 {
            // The padded map is 2 larger per axis: tap (kh, kw) starts at (kh, kw) and ends
            // 2 - kh (2 - kw) before the end. i64::MAX stands for "to the end", as in ONNX.
            let end = |k: i64| if k == 2 { i64::MAX } else { k - 2 };
            let name = format!("{base}/im2col/tap{kh}{kw}");
            let starts = constant_i64(graph, format!("{name}/starts"), &[kh, kw]);
            let ends = constant_i64(graph, format!("{name}/ends"), &[end(kh), end(kw)]);
            nodes.push(NodeProto {
                name: name.clone(),
                op_type: "Slice".into(),
                input: vec![padded.clone(), starts, ends, axes.clone()],
                output: vec![name.clone()],
                ..NodeProto::default()
            });
            patches.push(name);
        }
    }
    let concat = format!("{base}/im2col/patches");
    nodes.push(NodeProto {
        name: concat.clone(),
        op_type: "Concat".into(),
        input: patches,
        output: vec![concat.clone()],
        attribute: vec![int_attr("axis", 1)],
        ..NodeProto::default()
    });
    concat
}

/// The 1x1 convolution over the patches that replaces `node`, with its reordered weights added
/// to `graph`. It keeps the convolution's name and output, so profiles and outputs still name
/// the original layer.
fn convolve(graph: &mut GraphProto, node: &NodeProto, plan: Plan, patches: String) -> NodeProto {
    let weights = format!("{}/im2col/weights", node.name);
    graph.initializer.push(TensorProto {
        name: weights.clone(),
        dims: vec![plan.out, 9 * plan.channels, 1, 1],
        data_type: DataType::Float as i32,
        raw_data: plan.weights,
        ..TensorProto::default()
    });
    let mut input = vec![patches, weights];
    input.extend(node.input.get(2).cloned());
    NodeProto {
        name: node.name.clone(),
        op_type: "Conv".into(),
        input,
        output: node.output.clone(),
        attribute: vec![ints_attr("kernel_shape", &[1, 1])],
        ..NodeProto::default()
    }
}

fn constant_i64(graph: &mut GraphProto, name: String, values: &[i64]) -> String {
    graph.initializer.push(TensorProto {
        name: name.clone(),
        dims: vec![i64::try_from(values.len()).unwrap_or(i64::MAX)],
        data_type: DataType::Int64 as i32,
        int64_data: values.to_vec(),
        ..TensorProto::default()
    });
    name
}

/// Drops the replaced 3x3 weights that no node reads any more, so the rewrite does not keep two
/// copies of the heads' weights in memory. Kept when a node has a subgraph, which may read them.
fn drop_unread(graph: &mut GraphProto, replaced: &[String]) {
    let subgraphs = graph.node.iter().any(|n| n.attribute.iter().any(|a| a.g.is_some() || !a.graphs.is_empty()));
    if subgraphs {
        return;
    }
    let read: HashSet<&str> = graph
        .node
        .iter()
        .flat_map(|n| n.input.iter().map(String::as_str))
        .chain(graph.output.iter().map(|o| o.name.as_str()))
        .collect();
    let drop: Vec<bool> =
        graph.initializer.iter().map(|t| replaced.contains(&t.name) && !read.contains(t.name.as_str())).collect();
    let mut drop = drop.into_iter();
    graph.initializer.retain(|_| !drop.next().unwrap_or(false));
}

#[cfg(test)]
mod tests {
    use tract_onnx::pb::{OperatorSetIdProto, ValueInfoProto};

    use super::*;
    use crate::proto::{f32_type, floats, noise, run_graph};

    fn conv(name: &str, input: &str, out: i64, channels: i64, stride: i64, seed: u64) -> (NodeProto, [TensorProto; 2]) {
        let o = usize::try_from(out).unwrap();
        let c = usize::try_from(channels).unwrap();
        let w = floats(&format!("{name}/w"), &[out, channels, 3, 3], &noise(o * c * 9, seed));
        let b = floats(&format!("{name}/b"), &[out], &noise(o, seed + 1));
        let node = NodeProto {
            name: name.into(),
            op_type: "Conv".into(),
            input: vec![input.into(), w.name.clone(), b.name.clone()],
            output: vec![format!("{name}/y")],
            attribute: vec![
                ints_attr("kernel_shape", &[3, 3]),
                ints_attr("strides", &[stride, stride]),
                ints_attr("pads", &[1, 1, 1, 1]),
                ints_attr("dilations", &[1, 1]),
                int_attr("group", 1),
            ],
            ..NodeProto::default()
        };
        (node, [w, b])
    }

    /// Two heads on one 128-channel input (the SSD shape) and one shallow convolution.
    fn model(channels: i64) -> ModelProto {
        let (a, wa) = conv("class", "x", 12, channels, 1, 1);
        let (b, wb) = conv("box", "x", 4, channels, 1, 7);
        let (c, wc) = conv("strided", "x", 4, channels, 2, 13);
        let outputs = [&a, &b, &c].map(|n| ValueInfoProto { name: n.output[0].clone(), ..ValueInfoProto::default() });
        ModelProto {
            ir_version: 7,
            opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 13 }],
            graph: Some(GraphProto {
                node: vec![a, b, c],
                initializer: wa.into_iter().chain(wb).chain(wc).collect(),
                input: vec![ValueInfoProto { name: "x".into(), r#type: Some(f32_type()), ..ValueInfoProto::default() }],
                output: outputs.to_vec(),
                ..GraphProto::default()
            }),
            ..ModelProto::default()
        }
    }

    #[test]
    fn the_rewritten_graph_computes_the_same_convolutions() {
        let channels = 128usize;
        let plain = model(MIN_CHANNELS);
        let mut rewritten = plain.clone();
        assert_eq!(rewrite(&mut rewritten), 2, "the two stride-1 heads, not the strided one");
        let graph = rewritten.graph.as_ref().unwrap();
        let pads = graph.node.iter().filter(|n| n.op_type == "Pad").count();
        assert_eq!(pads, 1, "heads on the same input share one set of patches");
        assert!(graph.initializer.iter().all(|t| t.name != "class/w" && t.name != "box/w"), "old weights dropped");
        assert!(graph.initializer.iter().any(|t| t.name == "strided/w"));

        let x = noise(channels * 49, 99);
        let shape = [1, channels, 7, 7];
        let onnx = tract_onnx::onnx();
        let (want, got) = (run_graph(&onnx, &plain, shape, &x), run_graph(&onnx, &rewritten, shape, &x));
        assert_eq!(want.len(), 3);
        for (w, g) in want.iter().zip(&got) {
            assert_eq!(w.len(), g.len());
            let worst = w.iter().zip(g).map(|(a, b)| (a - b).abs() / a.abs().max(1.0)).fold(0.0, f32::max);
            assert!(worst < 1e-5, "rewritten output differs by {worst}");
        }
    }

    #[test]
    fn shallow_convolutions_and_old_opsets_are_left_alone() {
        let mut shallow = model(MIN_CHANNELS - 1);
        assert_eq!(rewrite(&mut shallow), 0);
        assert_eq!(shallow, model(MIN_CHANNELS - 1));
        let mut old = model(MIN_CHANNELS);
        old.opset_import[0].version = 9;
        let before = old.clone();
        assert_eq!(rewrite(&mut old), 0);
        assert_eq!(old, before);
    }
}
