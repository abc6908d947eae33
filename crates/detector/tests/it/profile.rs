//! `Session::profile_tensor` and `OnnxKinds` (behind `edgepool bench detect --profile`): the
//! per-node times account for the frame, and every node traces back to the ONNX graph.

use std::time::Duration;

use edgepool_detector::OnnxKinds;

use crate::common::{model, model_path, photo_bytes};

#[test]
fn node_times_account_for_the_frame_and_trace_back_to_onnx_operators() {
    let mut s = model().session();
    s.decode(&photo_bytes("grace_hopper.jpg")).unwrap();
    let tensor = s.preprocess().unwrap().to_vec();
    let p = s.profile_tensor(&tensor, 2).unwrap();
    assert_eq!(p.frames, 2);
    assert!(p.nodes.len() > 100, "the optimized SSD plan has hundreds of nodes, got {}", p.nodes.len());
    let (sum, wall) = (p.nodes_total(), p.wall);
    assert!(sum <= wall && sum.as_secs_f64() >= 0.8 * wall.as_secs_f64(), "nodes {sum:?} of wall {wall:?}");
    // The profiled run still computes the right answer.
    assert_eq!(s.run_tensor(&tensor).unwrap(), model().session().run_tensor(&tensor).unwrap());

    let kinds = OnnxKinds::read(&model_path()).unwrap();
    let traced: Duration = p.nodes.iter().filter(|n| kinds.kind_of(&n.name).is_some()).map(|n| n.mean).sum();
    assert!(traced.as_secs_f64() >= 0.99 * sum.as_secs_f64(), "only {traced:?} of {sum:?} traced to ONNX nodes");
    let by_kind = p.grouped(|n| kinds.kind_of(&n.name).unwrap_or("?").to_owned());
    for kind in ["Conv 1x1", "Conv 3x3", "Conv depthwise"] {
        assert!(by_kind.iter().any(|(k, d, _)| k == kind && !d.is_zero()), "{kind} missing from {by_kind:?}");
    }
    // tract fuses a 1x1 convolution into the Relu6 after it and names the kernel after the Relu6.
    let fused = p.nodes.iter().find(|n| n.name.ends_with("expand/Relu6.max.prefused")).expect("a fused expand conv");
    assert_eq!(kinds.kind_of(&fused.name), Some("Clip"));
    assert_eq!(kinds.conv_feeding(&fused.name), Some("Conv 1x1"));
}
