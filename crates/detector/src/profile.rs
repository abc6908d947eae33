//! Where an inference spends its time: every node of the tract plan timed on its own, for
//! `edgepool bench detect --profile` (docs/performance.md), and each node traced back to the ONNX
//! node it came from, so the split can be put beside onnxruntime's profile of the same graph.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use tract_onnx::pb::{ModelProto, NodeProto};
use tract_onnx::prelude::*;

/// One plan node's mean time per frame.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeTime {
    /// The tract node's name: the ONNX node's name, plus a suffix when tract split it.
    pub name: String,
    /// tract's operator (after optimization: the kernels that actually run).
    pub op: String,
    /// The node's first output, e.g. `1,150,150,32,F32`.
    pub output: String,
    pub mean: Duration,
}

/// Per-node times of `frames` inferences on one input tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub frames: usize,
    /// Mean wall time of a whole inference while profiling (includes the timing itself).
    pub wall: Duration,
    /// In plan order.
    pub nodes: Vec<NodeTime>,
}

impl Profile {
    /// Sum of the nodes' means.
    #[must_use]
    pub fn nodes_total(&self) -> Duration {
        self.nodes.iter().map(|n| n.mean).sum()
    }

    /// The `n` most expensive nodes, most expensive first.
    #[must_use]
    pub fn top(&self, n: usize) -> Vec<&NodeTime> {
        let mut v: Vec<&NodeTime> = self.nodes.iter().collect();
        v.sort_by_key(|n| std::cmp::Reverse(n.mean));
        v.truncate(n);
        v
    }

    /// Time per group, most expensive first: `(group, mean time per frame, nodes)`.
    #[must_use]
    pub fn grouped(&self, group: impl Fn(&NodeTime) -> String) -> Vec<(String, Duration, usize)> {
        let mut by: HashMap<String, (Duration, usize)> = HashMap::new();
        for n in &self.nodes {
            let e = by.entry(group(n)).or_default();
            e.0 += n.mean;
            e.1 += 1;
        }
        let mut v: Vec<(String, Duration, usize)> = by.into_iter().map(|(k, (d, c))| (k, d, c)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v
    }
}

/// Accumulates node times over the profiled runs.
#[derive(Debug, Default)]
pub(crate) struct Recorder {
    nodes: HashMap<usize, NodeTime>,
    order: Vec<usize>,
}

impl Recorder {
    /// Adds `took` to node `id`; `describe` gives its name, op and output the first time.
    pub(crate) fn record(&mut self, id: usize, took: Duration, describe: impl FnOnce() -> (String, String, String)) {
        let e = self.nodes.entry(id).or_insert_with(|| {
            self.order.push(id);
            let (name, op, output) = describe();
            NodeTime { name, op, output, mean: Duration::ZERO }
        });
        e.mean += took;
    }

    pub(crate) fn finish(mut self, frames: usize, wall: Duration) -> Profile {
        let n = u32::try_from(frames.max(1)).unwrap_or(u32::MAX);
        let nodes = self
            .order
            .iter()
            .filter_map(|id| self.nodes.remove(id))
            .map(|mut t| {
                t.mean /= n;
                t
            })
            .collect();
        Profile { frames, wall: wall / n, nodes }
    }
}

/// What each ONNX node is, by name: its op type, with convolutions told apart by kind
/// (`Conv depthwise`, `Conv 1x1`, `Conv 3x3`), since their kernels differ most.
#[derive(Debug, Clone, Default)]
pub struct OnnxKinds {
    by_name: HashMap<String, String>,
    /// For each node, the kind of a `Conv` that produces one of its inputs: tract fuses a
    /// convolution into the activation or residual add after it and names the fused kernel after
    /// that node (`…/Relu6.max.prefused`), so its time belongs to the convolution.
    conv_input: HashMap<String, String>,
}

impl OnnxKinds {
    /// Reads the ONNX file's graph (not the weights' values).
    pub fn read(path: &Path) -> TractResult<Self> {
        let proto: ModelProto = onnx().proto_model_for_path(path)?;
        let graph = proto.graph.as_ref().ok_or_else(|| TractError::msg("the ONNX file has no graph"))?;
        let by_name: HashMap<String, String> = graph.node.iter().map(|n| (n.name.clone(), kind(n))).collect();
        // Which node makes each tensor, to walk back from an activation to its convolution
        // through the element-wise ops between them (a batch norm left as Mul + Add).
        let producer: HashMap<&str, &NodeProto> =
            graph.node.iter().flat_map(|n| n.output.iter().map(move |o| (o.as_str(), n))).collect();
        let conv_behind = |start: &NodeProto| -> Option<String> {
            let mut frontier = vec![start];
            for _ in 0..4 {
                let mut next = Vec::new();
                for n in frontier {
                    for p in n.input.iter().filter_map(|i| producer.get(i.as_str())) {
                        if p.op_type == "Conv" {
                            return Some(kind(p));
                        }
                        if PASS_THROUGH.contains(&p.op_type.as_str()) {
                            next.push(*p);
                        }
                    }
                }
                frontier = next;
            }
            None
        };
        let conv_input = graph.node.iter().filter_map(|n| Some((n.name.clone(), conv_behind(n)?))).collect();
        Ok(Self { by_name, conv_input })
    }

    /// The kind of the convolution that feeds the ONNX node `name` came from, if one does.
    #[must_use]
    pub fn conv_feeding(&self, name: &str) -> Option<&str> {
        self.origin(name).and_then(|o| self.conv_input.get(o)).map(String::as_str)
    }

    /// The kind of the ONNX node `name` came from: the longest ONNX node name that `name` starts
    /// with (tract names the nodes it adds `<onnx name>.<suffix>`). `None` for nodes tract made
    /// up without an ONNX origin.
    #[must_use]
    pub fn kind_of(&self, name: &str) -> Option<&str> {
        self.origin(name).and_then(|o| self.by_name.get(o)).map(String::as_str)
    }

    /// The ONNX node name `name` starts with (itself, or up to a `.`, `#`, `-`, `_`, `:` or `/`;
    /// onnxruntime names nodes it rewrites after their output, `…/BiasAdd:0_nchwc`, and our
    /// explicit-im2col rewrite names the nodes it adds `<conv>/im2col/…`, so their time counts
    /// as the 3x3 convolution they replace).
    fn origin<'a>(&self, name: &'a str) -> Option<&'a str> {
        if self.by_name.contains_key(name) {
            return Some(name);
        }
        let mut cut = name.len();
        while let Some(i) = name[..cut].rfind(['.', '#', '-', '_', ':', '/']) {
            if self.by_name.contains_key(&name[..i]) {
                return Some(&name[..i]);
            }
            cut = i;
        }
        None
    }
}

/// Element-wise ops that may sit between a convolution and the activation fused with it.
const PASS_THROUGH: &[&str] = &["Mul", "Add", "Sub", "BatchNormalization"];

fn kind(n: &NodeProto) -> String {
    if n.op_type != "Conv" {
        return n.op_type.clone();
    }
    let attr = |name: &str| n.attribute.iter().find(|a| a.name == name);
    let group = attr("group").map_or(1, |a| a.i);
    if group > 1 {
        return "Conv depthwise".to_owned();
    }
    match attr("kernel_shape").map(|a| a.ints.as_slice()) {
        Some([h, w]) => format!("Conv {h}x{w}"),
        _ => "Conv".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorder_means_and_groups() {
        let mut r = Recorder::default();
        for _ in 0..2 {
            let d = |n: &str, op: &str| (n.to_owned(), op.to_owned(), "1,8,8,F32".to_owned());
            r.record(3, Duration::from_millis(4), || d("conv_a", "LirMatMul"));
            r.record(1, Duration::from_millis(1), || d("relu", "Max"));
            r.record(7, Duration::from_millis(2), || d("conv_b", "LirMatMul"));
        }
        let p = r.finish(2, Duration::from_millis(16));
        assert_eq!(p.wall, Duration::from_millis(8));
        assert_eq!(p.nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["conv_a", "relu", "conv_b"]);
        assert_eq!(p.nodes_total(), Duration::from_millis(7));
        assert_eq!(p.top(1)[0].name, "conv_a");
        let by_op = p.grouped(|n| n.op.clone());
        assert_eq!(by_op[0], ("LirMatMul".to_owned(), Duration::from_millis(6), 2));
    }

    #[test]
    fn tract_names_trace_back_to_onnx_nodes() {
        let kinds = OnnxKinds {
            by_name: [("Conv__12", "Conv 1x1"), ("Conv__12_dw", "Conv depthwise"), ("a/Relu6", "Clip")]
                .into_iter()
                .map(|(a, b)| (a.to_owned(), b.to_owned()))
                .collect(),
            conv_input: [("a/Relu6".to_owned(), "Conv 1x1".to_owned())].into_iter().collect(),
        };
        assert_eq!(kinds.kind_of("a/Relu6.max.prefused"), Some("Clip"));
        assert_eq!(kinds.conv_feeding("a/Relu6.max.prefused"), Some("Conv 1x1"));
        assert_eq!(kinds.conv_feeding("Conv__12"), None);
        assert_eq!(kinds.kind_of("Conv__12:0_nchwc"), Some("Conv 1x1"), "onnxruntime's name for its NCHWc conv");
        assert_eq!(kinds.kind_of("Conv__12"), Some("Conv 1x1"));
        assert_eq!(kinds.kind_of("Conv__12.matmatmul"), Some("Conv 1x1"));
        assert_eq!(kinds.kind_of("Conv__12_dw.pack.0"), Some("Conv depthwise"));
        assert_eq!(kinds.kind_of("unrelated"), None);
    }
}
