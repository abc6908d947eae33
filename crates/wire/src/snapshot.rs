//! Camera snapshots: the latest processed frame of each camera with its result, kept in the
//! JetStream key-value bucket [`BUCKET`] (history 1, key = camera id). Workers write it at most
//! every [`DEFAULT_INTERVAL`] per camera; the sink watches it and serves `/cameras/<id>/latest.jpg`,
//! the MJPEG streams and the live page. Any NATS client can read it
//! (`nats kv get edgepool_snapshots cam-1`); docs/wire.md, "Snapshots", is the contract.
//!
//! A value is the result message as one line of JSON, a `\n`, then the frame's bytes exactly as
//! the camera published them (JPEG or PNG). Compact JSON never contains a raw newline, so the
//! first `\n` always ends it.

use std::time::Duration;

use thiserror::Error;

use crate::ResultMessage;

/// The key-value bucket of camera snapshots.
pub const BUCKET: &str = "edgepool_snapshots";

/// How long a camera's snapshot outlives its last update (a removed camera disappears).
pub const MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// Default minimum time between two snapshots of one camera from one worker (≤ 2 per second).
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(500);

/// Why a stored value is not a snapshot.
#[derive(Debug, Error)]
pub enum SnapshotError {
    #[error("no newline after the result JSON")]
    NoSeparator,
    #[error("the result JSON does not parse: {0}")]
    Result(#[from] serde_json::Error),
    #[error("no frame bytes after the result")]
    NoImage,
}

/// `result` (compact JSON, as published on `detections.<camera>`) + `\n` + the frame's bytes.
#[must_use]
pub fn encode(result_json: &[u8], frame: &[u8]) -> Vec<u8> {
    debug_assert!(!result_json.contains(&b'\n'), "compact JSON has no raw newline");
    let mut v = Vec::with_capacity(result_json.len() + 1 + frame.len());
    v.extend_from_slice(result_json);
    v.push(b'\n');
    v.extend_from_slice(frame);
    v
}

/// Splits a value into its result and the offset where the frame's bytes start.
pub fn decode(value: &[u8]) -> Result<(ResultMessage, usize), SnapshotError> {
    let nl = value.iter().position(|b| *b == b'\n').ok_or(SnapshotError::NoSeparator)?;
    let result = serde_json::from_slice(&value[..nl])?;
    if nl + 1 >= value.len() {
        return Err(SnapshotError::NoImage);
    }
    Ok((result, nl + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result_json() -> String {
        include_str!("../../../fuzz/regressions/result_json/score-out-of-range.json")
            .replace(r#""score":7"#, r#""score":0.7"#)
            .replace('\n', "")
    }

    #[test]
    fn a_snapshot_splits_back_into_its_result_and_frame() {
        let json = result_json();
        let frame = b"\xff\xd8jpeg bytes with a \n newline\xff\xd9";
        let value = encode(json.as_bytes(), frame);
        let (result, at) = decode(&value).unwrap();
        assert_eq!(result.camera.as_str(), "cam-1");
        assert_eq!(&value[at..], frame, "the frame's own newlines are kept");
    }

    #[test]
    fn values_that_are_not_snapshots_are_refused() {
        assert!(matches!(decode(b"just bytes"), Err(SnapshotError::NoSeparator)));
        assert!(matches!(decode(b"{\"not\":\"a result\"}\nxx"), Err(SnapshotError::Result(_))));
        let no_image = encode(result_json().as_bytes(), b"");
        assert!(matches!(decode(&no_image), Err(SnapshotError::NoImage)));
    }
}
