//! Small builders for the ONNX protobuf nodes and tensors that our graph rewrites (im2col,
//! depthwise) add, and for the test graphs that check them.

use tract_onnx::pb::attribute_proto::AttributeType;
use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::pb::{AttributeProto, TensorProto};

/// An f32 tensor (an initializer) with its values as little-endian `raw_data`.
pub(crate) fn floats(name: &str, dims: &[i64], values: &[f32]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: DataType::Float as i32,
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..TensorProto::default()
    }
}

pub(crate) fn int_attr(name: &str, i: i64) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: AttributeType::Int as i32, i, ..AttributeProto::default() }
}

pub(crate) fn float_attr(name: &str, f: f32) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: AttributeType::Float as i32, f, ..AttributeProto::default() }
}

pub(crate) fn ints_attr(name: &str, ints: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Ints as i32,
        ints: ints.to_vec(),
        ..AttributeProto::default()
    }
}

/// Deterministic values in [-1, 1), for test weights and inputs.
#[cfg(test)]
pub(crate) fn noise(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// The type of a test graph's f32 input, shape left to the input fact.
#[cfg(test)]
pub(crate) fn f32_type() -> tract_onnx::pb::TypeProto {
    use tract_onnx::pb::{TypeProto, type_proto};
    TypeProto {
        value: Some(type_proto::Value::TensorType(type_proto::Tensor {
            elem_type: DataType::Float as i32,
            shape: None,
        })),
        ..TypeProto::default()
    }
}

/// Runs a test graph through `onnx` (tract's parser, with whatever ops the test registered)
/// on `x`, of `shape`; returns every output's values.
#[cfg(test)]
pub(crate) fn run_graph(
    parser: &tract_onnx::Onnx,
    proto: &tract_onnx::pb::ModelProto,
    shape: [usize; 4],
    x: &[f32],
) -> Vec<Vec<f32>> {
    use tract_onnx::prelude::*;
    let plan = parser
        .model_for_proto_model(proto)
        .and_then(|m| m.with_input_fact(0, f32::fact(shape).into()))
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .unwrap();
    let x = Tensor::from_shape(&shape, x).unwrap();
    let out = plan.run(tvec!(x.into())).unwrap();
    out.iter().map(|t| t.try_as_plain_ram().and_then(|v| v.as_slice::<f32>()).unwrap().to_vec()).collect()
}
