//! `edgepool bench detect --profile`: where inference time goes, in tract and in onnxruntime,
//! on the same input tensor, at 1 thread and at all cores.
//!
//! tract's side times every node of the optimized plan on its own (`Session::profile_tensor`);
//! onnxruntime's side is its own profiler (`enable_profiling`, kernel time per node). Both are
//! grouped by the ONNX operator each node came from (convolutions by kind: 1x1, 3x3,
//! depthwise), since the two runtimes fuse and split nodes differently but keep ONNX names.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use edgepool_detector::{DetectorConfig, Model, NodeTime, OnnxKinds, Profile};
use serde::Serialize;

use super::{BenchDetectArgs, OrtNode, run_reference};

/// Nodes tract made without an ONNX origin (layout changes, weight packing it could not fold).
const TRACT_ONLY: &str = "(tract-made, no ONNX node)";

#[derive(Debug, Serialize)]
struct ProfileReport {
    cpu: String,
    frames: usize,
    onnxruntime: Option<String>,
    runs: Vec<ThreadsProfile>,
}

#[derive(Debug, Serialize)]
struct ThreadsProfile {
    threads: usize,
    /// Mean wall time of a profiled tract inference (node timing included).
    tract_wall_ms: f64,
    tract_nodes_ms: f64,
    onnxruntime_nodes_ms: Option<f64>,
    /// By ONNX operator kind: tract and onnxruntime time per frame.
    by_kind: Vec<KindRow>,
    /// By tract operator, after optimization: what actually runs.
    by_tract_op: Vec<OpRow>,
    /// By onnxruntime operator (after its fusions).
    by_ort_op: Vec<OpRow>,
    top_tract_nodes: Vec<NodeRow>,
}

#[derive(Debug, Serialize)]
struct KindRow {
    kind: String,
    tract_ms: f64,
    tract_nodes: usize,
    onnxruntime_ms: Option<f64>,
    onnxruntime_nodes: usize,
}

#[derive(Debug, Serialize)]
struct OpRow {
    op: String,
    ms: f64,
    nodes: usize,
}

#[derive(Debug, Serialize)]
struct NodeRow {
    name: String,
    op: String,
    kind: String,
    output: String,
    ms: f64,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub(super) fn run(
    args: &BenchDetectArgs,
    model_path: &Path,
    photos: &[(String, Vec<u8>)],
    cores: usize,
    progress: &dyn Fn(&str),
) -> anyhow::Result<ExitCode> {
    let kinds =
        OnnxKinds::read(model_path).with_context(|| format!("reading the graph of {}", model_path.display()))?;
    let mut threads = vec![1];
    if cores > 1 {
        threads.push(cores);
    }
    // The input: the first photo, decoded and preprocessed as the pipeline does.
    let one = Model::load(model_path, &DetectorConfig::default())?;
    let mut s = one.session();
    s.decode(&photos[0].1).with_context(|| format!("decoding {}", photos[0].0))?;
    let tensor = s.preprocess()?.to_vec();

    let ort = if args.no_reference {
        None
    } else {
        Some(run_reference(model_path, &tensor, cores, args.iterations, true, progress)?)
    };
    let mut runs = Vec::new();
    for &t in &threads {
        progress(&format!("tract, {t} thread(s): {} frames, every node timed", args.iterations));
        let model = Model::load(model_path, &DetectorConfig { threads: t, ..Default::default() })?;
        let profile = model.session().profile_tensor(&tensor, args.iterations)?;
        let ort_nodes = ort.as_ref().and_then(|o| o.runs.iter().find(|r| r.threads == t)).map(|r| r.nodes.as_slice());
        runs.push(summarize(t, &profile, ort_nodes, &kinds));
    }
    let report = ProfileReport {
        cpu: edgepool_worker::device::cpu_model_name(),
        frames: args.iterations,
        onnxruntime: ort.map(|o| o.onnxruntime),
        runs,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print(&report);
    }
    Ok(ExitCode::SUCCESS)
}

fn summarize(threads: usize, p: &Profile, ort: Option<&[OrtNode]>, kinds: &OnnxKinds) -> ThreadsProfile {
    let kind = |name: &str| kinds.kind_of(name).unwrap_or(TRACT_ONLY).to_owned();
    // A convolution kernel tract fused into the op after it is named after that op; its time is
    // the convolution's.
    let tract_kind = |n: &NodeTime| match kinds.conv_feeding(&n.name) {
        Some(conv) if is_conv_kernel(&n.op) => conv.to_owned(),
        _ => kind(&n.name),
    };
    let tract_kinds = p.grouped(tract_kind);
    let mut by_kind: Vec<KindRow> = tract_kinds
        .iter()
        .map(|(k, d, n)| KindRow {
            kind: k.clone(),
            tract_ms: ms(*d),
            tract_nodes: *n,
            onnxruntime_ms: ort.map(|_| 0.0),
            onnxruntime_nodes: 0,
        })
        .collect();
    let mut by_ort_op: Vec<OpRow> = Vec::new();
    if let Some(nodes) = ort {
        for n in nodes {
            // onnxruntime names the nodes it rewrites (NCHWc convolutions, layout reorders) after
            // their output tensor, `<onnx node>:0_nchwc`.
            let k = match (kinds.kind_of(&n.name), kinds.conv_feeding(&n.name)) {
                // A convolution fused with the activation after it, named after that activation.
                (Some(_), Some(conv)) if n.op.contains("Conv") => conv.to_owned(),
                (Some(k), _) => k.to_owned(),
                (None, _) => "(onnxruntime-made, no ONNX node)".to_owned(),
            };
            match by_kind.iter_mut().find(|r| r.kind == k) {
                Some(r) => {
                    *r.onnxruntime_ms.get_or_insert(0.0) += n.ms;
                    r.onnxruntime_nodes += 1;
                }
                None => by_kind.push(KindRow {
                    kind: k,
                    tract_ms: 0.0,
                    tract_nodes: 0,
                    onnxruntime_ms: Some(n.ms),
                    onnxruntime_nodes: 1,
                }),
            }
            match by_ort_op.iter_mut().find(|r| r.op == n.op) {
                Some(r) => {
                    r.ms += n.ms;
                    r.nodes += 1;
                }
                None => by_ort_op.push(OpRow { op: n.op.clone(), ms: n.ms, nodes: 1 }),
            }
        }
    }
    by_kind.sort_by(|a, b| {
        (b.tract_ms + b.onnxruntime_ms.unwrap_or(0.0)).total_cmp(&(a.tract_ms + a.onnxruntime_ms.unwrap_or(0.0)))
    });
    by_ort_op.sort_by(|a, b| b.ms.total_cmp(&a.ms));
    ThreadsProfile {
        threads,
        tract_wall_ms: ms(p.wall),
        tract_nodes_ms: ms(p.nodes_total()),
        onnxruntime_nodes_ms: ort.map(|n| n.iter().map(|n| n.ms).sum()),
        by_kind,
        by_tract_op: p
            .grouped(|n| n.op.clone())
            .into_iter()
            .map(|(op, d, nodes)| OpRow { op, ms: ms(d), nodes })
            .collect(),
        by_ort_op,
        top_tract_nodes: p
            .top(10)
            .into_iter()
            .map(|n| NodeRow {
                name: n.name.clone(),
                op: n.op.clone(),
                kind: tract_kind(n),
                output: tidy_fact(&n.output),
                ms: ms(n.mean),
            })
            .collect(),
    }
}

/// A tract fact as printed by `Debug`, with a packed operand (`… DynPackedExoticFact { k:
/// Val(144), mn: Val(5625), … }`) shortened to `packed k=144 mn=5625`.
fn tidy_fact(fact: &str) -> String {
    let Some(at) = fact.find("DynPackedExoticFact") else {
        return fact.to_owned();
    };
    let val = |key: &str| {
        let rest = &fact[at..];
        let from = rest.find(&format!("{key}: Val("))? + key.len() + 6;
        Some(rest[from..].split(')').next()?.to_owned())
    };
    format!("packed k={} mn={}", val("k").unwrap_or_default(), val("mn").unwrap_or_default())
}

/// tract's operators that carry a convolution's arithmetic.
fn is_conv_kernel(op: &str) -> bool {
    op.starts_with("OptMatMul") || op.starts_with("LazyIm2col") || op.starts_with("DepthWise") || op == "Im2col"
}

fn pct(part: f64, total: f64) -> f64 {
    if total > 0.0 { 100.0 * part / total } else { 0.0 }
}

fn print(r: &ProfileReport) {
    println!(
        "per-operator profile: {} ({}), {} frames per thread count, one input tensor (the first photo)",
        r.cpu,
        r.onnxruntime.as_deref().map_or_else(|| "no onnxruntime".to_owned(), |v| format!("onnxruntime {v}")),
        r.frames
    );
    for t in &r.runs {
        let ort_total = t.onnxruntime_nodes_ms.unwrap_or(0.0);
        println!();
        println!(
            "== {} thread{}: tract nodes {:.2} ms (wall {:.2} ms while profiled){}",
            t.threads,
            if t.threads == 1 { "" } else { "s" },
            t.tract_nodes_ms,
            t.tract_wall_ms,
            t.onnxruntime_nodes_ms.map_or_else(String::new, |o| format!(
                "; onnxruntime kernels {o:.2} ms; tract/onnxruntime = {:.2}x",
                t.tract_nodes_ms / o
            ))
        );
        println!(
            "  {:<34} {:>9} {:>6} {:>5}  {:>9} {:>6} {:>5}  {:>7}",
            "by ONNX operator", "tract ms", "share", "nodes", "ort ms", "share", "nodes", "ratio"
        );
        for k in &t.by_kind {
            let ort = k.onnxruntime_ms.map_or_else(
                || format!("{:>9} {:>6} {:>5}", "-", "-", "-"),
                |o| format!("{o:>9.2} {:>5.1}% {:>5}", pct(o, ort_total), k.onnxruntime_nodes),
            );
            let ratio = match k.onnxruntime_ms {
                Some(o) if o > 0.005 && k.tract_ms > 0.0 => format!("{:>6.2}x", k.tract_ms / o),
                _ => format!("{:>7}", "-"),
            };
            println!(
                "  {:<34} {:>9.2} {:>5.1}% {:>5}  {ort}  {ratio}",
                k.kind,
                k.tract_ms,
                pct(k.tract_ms, t.tract_nodes_ms),
                k.tract_nodes
            );
        }
        println!("  {:<34} {:>9} {:>6} {:>5}", "by tract operator (what runs)", "ms", "share", "nodes");
        for o in &t.by_tract_op {
            println!("  {:<34} {:>9.2} {:>5.1}% {:>5}", o.op, o.ms, pct(o.ms, t.tract_nodes_ms), o.nodes);
        }
        if !t.by_ort_op.is_empty() {
            println!("  {:<34} {:>9} {:>6} {:>5}", "by onnxruntime operator", "ms", "share", "nodes");
            for o in &t.by_ort_op {
                println!("  {:<34} {:>9.2} {:>5.1}% {:>5}", o.op, o.ms, pct(o.ms, ort_total), o.nodes);
            }
        }
        println!("  10 most expensive tract nodes:");
        for n in &t.top_tract_nodes {
            println!(
                "    {:>6.2} ms {:>5.1}%  {:<16} {:<15} {:<28} {}",
                n.ms,
                pct(n.ms, t.tract_nodes_ms),
                n.op,
                n.kind,
                n.output,
                n.name
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_facts_are_shortened() {
        let f = ",F32 🔍 DynPackedExoticFact { k: Val(144), mn: Val(5625), packers: [PackedF32[16]@256+1] }";
        assert_eq!(tidy_fact(f), "packed k=144 mn=5625");
        assert_eq!(tidy_fact("1,100,1,546,F32"), "1,100,1,546,F32");
    }
}
