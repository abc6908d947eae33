//! Frigate's `zmq` detector protocol (`frigate/detectors/plugins/zmq_ipc.py`): Frigate connects a
//! REQ socket and sends `[header JSON, tensor bytes]`, the header holding `shape`, `dtype` and
//! `model_type`, the tensor a C-order uint8 NHWC RGB image (`[1, H, W, 3]`); the answer is one
//! frame of 480 bytes, a `[20, 6]` float32 array of rows `[label, score, y_min, x_min, y_max,
//! x_max]` (normalized; `label` is Frigate's default labelmap index, COCO id − 1), highest score
//! first, unused rows zero.
//!
//! The gateway binds a ROUTER socket, so many Frigate instances (or detector processes) are
//! served at once; each request is answered by its own task. The tensor enters the pool as it
//! is, `image/x-raw-rgb` with its size in headers: no encoding step, lossy or not, touches the
//! pixels Frigate chose. Newer Frigate versions
//! first send `{"model_request": true, ...}` and send no frames until told the model is there:
//! that is answered `{"model_available": true, "model_loaded": true}` (the pool's own model).
//! A bad request is answered with one JSON frame `{"error": "…"}`; Frigate logs it as an
//! unexpected reply and counts no detections, and the gateway keeps serving.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use zeromq::{Socket as _, SocketRecv as _, SocketSend as _, ZmqMessage};

use edgepool_wire::{ContentType, ResultMessage, Status};

use crate::config::GatewayConfig;
use crate::deepstack::Metrics;
use crate::pool::{Pool, PoolError};

/// Rows of Frigate's detection array.
pub const ROWS: usize = 20;
/// The largest side of a tensor the gateway accepts.
pub const MAX_SIDE: usize = 4096;

/// Why a request was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RequestError {
    #[error("expected [header JSON, tensor bytes], got {0} frames")]
    Frames(usize),
    #[error("the header is not JSON: {0}")]
    Header(String),
    #[error("shape must be [1, height, width, 3] or [height, width, 3] (NHWC RGB), got {0}")]
    Shape(String),
    #[error("dtype must be uint8, got {0:?}")]
    Dtype(String),
    #[error("the tensor has {got} bytes; shape {shape:?} needs {want}")]
    Size { got: usize, want: usize, shape: Vec<usize> },
}

/// A checked request: the image's width and height.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tensor {
    pub width: u32,
    pub height: u32,
}

/// Checks a `[header, tensor]` request against what the pool can take.
pub fn check(header: &[u8], tensor: &[u8]) -> Result<Tensor, RequestError> {
    let h: Value = serde_json::from_slice(header).map_err(|e| RequestError::Header(e.to_string()))?;
    let shape_text = h.get("shape").map_or_else(|| "nothing".to_owned(), Value::to_string);
    let shape: Vec<usize> = h
        .get("shape")
        .and_then(Value::as_array)
        .and_then(|a| a.iter().map(|v| v.as_u64().and_then(|n| usize::try_from(n).ok())).collect())
        .ok_or_else(|| RequestError::Shape(shape_text.clone()))?;
    let (height, width) = match shape.as_slice() {
        [1, h, w, 3] | [h, w, 3] if (1..=MAX_SIDE).contains(h) && (1..=MAX_SIDE).contains(w) => (*h, *w),
        _ => return Err(RequestError::Shape(shape_text)),
    };
    let dtype = h.get("dtype").and_then(Value::as_str).unwrap_or_default();
    if dtype != "uint8" {
        return Err(RequestError::Dtype(dtype.to_owned()));
    }
    let want = height * width * 3;
    if tensor.len() != want {
        return Err(RequestError::Size { got: tensor.len(), want, shape });
    }
    let side = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    Ok(Tensor { width: side(width), height: side(height) })
}

/// Frigate's `[20, 6]` float32 array (little-endian) of a result: highest score first.
#[must_use]
pub fn rows(r: &ResultMessage) -> Vec<u8> {
    let mut dets: Vec<_> = r.detections.iter().collect();
    dets.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut out = Vec::with_capacity(ROWS * 6 * 4);
    for i in 0..ROWS {
        let row = dets.get(i).map_or([0.0; 6], |d| {
            // Frigate's default labelmap is indexed by COCO category id − 1 (0 person, 2 car).
            let label = f32::from(d.class_id.saturating_sub(1));
            [label, d.score, d.bbox.y_min, d.bbox.x_min, d.bbox.y_max, d.bbox.x_max]
        });
        for v in row {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out
}

fn error_frame(why: &str) -> Bytes {
    Bytes::from(json!({ "error": why }).to_string())
}

/// Binds `endpoint` (`tcp://host:port` or `ipc:///path`) and serves until `shutdown`; returns
/// the bound endpoint (the port chosen for `:0`).
pub async fn serve(
    endpoint: &str,
    pool: Arc<OnceLock<Pool>>,
    cfg: GatewayConfig,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> anyhow::Result<String> {
    let mut socket = zeromq::RouterSocket::new();
    let bound = socket.bind(endpoint).await.map_err(|e| anyhow::anyhow!("binding the zmq endpoint {endpoint}: {e}"))?;
    let (send, mut recv) = socket.split();
    let cfg = Arc::new(cfg);
    tokio::spawn(async move {
        loop {
            let msg = tokio::select! {
                m = recv.recv() => m,
                () = shutdown.cancelled() => break,
            };
            let Ok(msg) = msg else { continue };
            let (pool, cfg, metrics, mut send) = (pool.clone(), cfg.clone(), metrics.clone(), send.clone());
            tokio::spawn(async move {
                let started = Instant::now();
                let frames = msg.into_vec();
                // [peer, "", body...] from a REQ peer; [peer, body...] from a DEALER.
                let split = if frames.len() > 1 && frames[1].is_empty() { 2 } else { 1 };
                let (envelope, body) = frames.split_at(split.min(frames.len()));
                let (reply, outcome) = answer(&pool, &cfg, body, started).await;
                metrics.record("zmq", outcome, started);
                let mut out = envelope.to_vec();
                out.push(reply);
                if let Ok(m) = ZmqMessage::try_from(out) {
                    // A peer that gave up (Frigate recreates its socket on a timeout) is gone.
                    let _ = send.send(m).await;
                }
            });
        }
    });
    Ok(bound.to_string())
}

/// The reply to one request body and its outcome label.
async fn answer(pool: &OnceLock<Pool>, cfg: &GatewayConfig, body: &[Bytes], started: Instant) -> (Bytes, &'static str) {
    if let [only] = body {
        let handshake = serde_json::from_slice::<Value>(only).ok();
        if handshake.as_ref().and_then(|h| h.get("model_request")).and_then(Value::as_bool) == Some(true) {
            // The pool serves its own model; Frigate need not send one.
            return (Bytes::from(json!({"model_available": true, "model_loaded": true}).to_string()), "ok");
        }
        return (error_frame(&RequestError::Frames(1).to_string()), "bad_request");
    }
    let [header, tensor] = body else {
        return (error_frame(&RequestError::Frames(body.len()).to_string()), "bad_request");
    };
    let t = match check(header, tensor) {
        Ok(t) => t,
        Err(e) => return (error_frame(&e.to_string()), "bad_request"),
    };
    let Some(pool) = pool.get() else {
        return (error_frame("the gateway is not connected to the broker yet"), "unavailable");
    };
    let raw = Some((t.width, t.height));
    match pool.detect(tensor.clone(), ContentType::RawRgb, raw, started + cfg.timeout).await {
        Ok(r) if r.status == Status::Ok => (Bytes::from(rows(&r)), "ok"),
        Ok(r) if r.status == Status::Stale => (error_frame("the request timed out in the queue"), "timeout"),
        Ok(r) => {
            let why = r.error.map_or_else(|| "the worker refused the image".to_owned(), |e| e.message);
            (error_frame(&why), "bad_request")
        }
        Err(PoolError::Timeout) => (error_frame("no result within gateway.timeout"), "timeout"),
        Err(e) => (error_frame(&e.to_string()), "unavailable"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_checked_like_frigate_sends_them() {
        let ok = br#"{"shape": [1, 320, 320, 3], "dtype": "uint8", "model_type": "ssd"}"#;
        assert_eq!(check(ok, &vec![0; 320 * 320 * 3]), Ok(Tensor { width: 320, height: 320 }));
        let hwc = br#"{"shape": [300, 200, 3], "dtype": "uint8"}"#;
        assert_eq!(check(hwc, &vec![0; 300 * 200 * 3]), Ok(Tensor { width: 200, height: 300 }));
        let bad = |h: &[u8], n: usize| check(h, &vec![0; n]).unwrap_err().to_string();
        assert!(bad(br#"{"shape": [1, 3, 320, 320], "dtype": "uint8"}"#, 307_200).starts_with("shape"));
        assert!(bad(br#"{"shape": [1, 320, 320], "dtype": "uint8"}"#, 102_400).starts_with("shape"));
        assert!(bad(br#"{"shape": [1, 320, 320, 3], "dtype": "float32"}"#, 307_200).starts_with("dtype"));
        assert!(bad(br#"{"shape": [1, 320, 320, 3], "dtype": "uint8"}"#, 100).contains("needs 307200"));
        assert!(bad(b"not json", 3).starts_with("the header"));
    }

    #[test]
    fn the_answer_is_twenty_rows_of_six_floats_best_first() {
        let r: ResultMessage = serde_json::from_value(json!({
        "schema_version": 1, "camera": "gateway", "seq": 1, "stream_seq": 1, "captured_at": null,
        "processed_at": "2026-11-30T00:00:00Z", "worker": "w", "arch": "x86_64", "slowdown": 1.0, "model": "m",
        "width": 320, "height": 320, "delivery": 1, "timings": {"queue_wait_ms": 0, "decode_ms": 0,
        "preprocess_ms": 0, "inference_ms": 0, "postprocess_ms": 0, "total_ms": 0}, "status": "ok",
        "detections": [
            {"label": "car", "class_id": 3, "score": 0.5,
             "bbox": {"x_min": 0.1, "y_min": 0.2, "x_max": 0.3, "y_max": 0.4}},
            {"label": "person", "class_id": 1, "score": 0.9,
             "bbox": {"x_min": 0.5, "y_min": 0.6, "x_max": 0.7, "y_max": 0.8}}
        ]}))
        .unwrap();
        let b = rows(&r);
        assert_eq!(b.len(), 480);
        let f: Vec<f32> = b.chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
        assert_eq!(&f[..6], &[0.0, 0.9, 0.6, 0.5, 0.8, 0.7], "person first, label 0, [y_min, x_min, y_max, x_max]");
        assert_eq!(&f[6..12], &[2.0, 0.5, 0.2, 0.1, 0.4, 0.3], "car: label 2");
        assert!(f[12..].iter().all(|v| *v == 0.0));
    }
}
