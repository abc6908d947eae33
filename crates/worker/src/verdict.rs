//! The verdict on one frame: what its result says. Each variant carries exactly what its
//! result needs, so a result with detections and an error, or a stale result with a size,
//! cannot be built.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use edgepool_wire::{Detection, ErrorInfo, ErrorKind, ResultMessage, SCHEMA_VERSION, Status, Timings, WorkerId};

use crate::config::WorkerConfig;
use crate::envelope::Envelope;
use crate::outcome::Outcome;

/// The longest error message a result carries (the dead letter has its own, shorter limit).
const MAX_ERROR_MESSAGE: usize = 1024;

/// What a frame's result says.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Verdict {
    /// Inference ran on model version `model` and found `detections` in a `width`×`height` frame.
    Ok { model: Arc<str>, width: u32, height: u32, detections: Vec<Detection>, timings: Timings },
    /// Bad for good: dead-lettered with `kind`, error result.
    Error { kind: ErrorKind, message: String, timings: Timings },
    /// Too old when taken: no inference.
    Stale { timings: Timings },
}

impl Verdict {
    /// An error verdict with no timings but the total.
    pub fn error(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self::Error { kind, message: message.into(), timings: Timings::default() }
    }

    /// The outcome once the result (and for errors the dead letter) is stored.
    pub fn outcome(&self) -> Outcome {
        match self {
            Self::Ok { .. } => Outcome::Done,
            Self::Stale { .. } => Outcome::Stale,
            Self::Error { kind, .. } => Outcome::Poison { kind: *kind },
        }
    }

    /// The result message of this verdict for the frame `env`. `current_model` names the model
    /// when no inference ran; `total` is used when the verdict has no total of its own.
    pub fn into_result(
        self,
        env: &Envelope,
        worker: &WorkerId,
        cfg: &WorkerConfig,
        current_model: impl FnOnce() -> String,
        total: Duration,
    ) -> ResultMessage {
        let (status, model, (width, height), detections, error, mut timings) = match self {
            Self::Ok { model, width, height, detections, timings } => {
                (Status::Ok, model.to_string(), (width, height), detections, None, timings)
            }
            Self::Error { kind, message, timings } => {
                let message = message.chars().take(MAX_ERROR_MESSAGE).collect();
                (Status::Error, current_model(), (0, 0), Vec::new(), Some(ErrorInfo { kind, message }), timings)
            }
            Self::Stale { timings } => (Status::Stale, current_model(), (0, 0), Vec::new(), None, timings),
        };
        if timings.total_ms == 0.0 {
            timings.total_ms = ms(total);
        }
        ResultMessage {
            schema_version: SCHEMA_VERSION,
            camera: env.camera.clone(),
            seq: env.seq.map(|s| s.0),
            stream_seq: env.stream_seq,
            captured_at: env.captured_at,
            processed_at: OffsetDateTime::now_utc(),
            worker: worker.clone(),
            arch: crate::ARCH.to_owned(),
            device_label: cfg.label.clone(),
            slowdown: cfg.slowdown,
            model,
            width,
            height,
            delivery: env.delivered,
            timings,
            status,
            error,
            traceparent: env.traceparent.clone(),
            trigger: env.meta.as_ref().ok().and_then(|m| m.trigger),
            motion_regions: env.meta.as_ref().map(|m| m.motion_regions.clone()).unwrap_or_default(),
            detections,
        }
    }
}

/// Milliseconds, as results carry them.
pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::tests::{JPEG, good_headers, parse};

    fn result(v: Verdict) -> ResultMessage {
        let env = parse("frames.cam-1", &good_headers(), JPEG);
        let cfg = WorkerConfig { label: Some("pi4".into()), slowdown: 2.0, ..WorkerConfig::default() };
        v.into_result(&env, &WorkerId::new("w1").unwrap(), &cfg, || "current".into(), Duration::from_millis(5))
    }

    #[test]
    fn an_ok_verdict_names_the_model_that_ran() {
        let timings = Timings { total_ms: 9.0, ..Timings::default() };
        let v = Verdict::Ok { model: Arc::from("m@sha256:1"), width: 4, height: 3, detections: vec![], timings };
        assert_eq!(v.outcome(), Outcome::Done);
        let r = result(v);
        assert_eq!((r.status, r.model.as_str(), r.width, r.height), (Status::Ok, "m@sha256:1", 4, 3));
        assert_eq!((&r.error, r.timings.total_ms), (&None, 9.0));
        assert_eq!((r.camera.as_str(), r.seq, r.msg_id().as_str()), ("cam-1", Some(42), "cam-1-42"));
        assert_eq!((r.worker.as_str(), r.device_label.as_deref(), r.slowdown), ("w1", Some("pi4"), 2.0));
        assert!(r.traceparent.is_some());
    }

    /// A camera's trigger and motion regions come back in the result; a frame without them has
    /// neither field in its JSON.
    #[test]
    fn results_carry_the_trigger_and_motion_regions_of_their_frame() {
        let ok = || Verdict::Ok {
            model: Arc::from("m@sha256:1"),
            width: 4,
            height: 3,
            detections: vec![],
            timings: Timings::default(),
        };
        let json = serde_json::to_string(&result(ok())).unwrap();
        assert!(!json.contains("trigger") && !json.contains("motion_regions"), "{json}");
        let mut h = good_headers();
        h.insert(edgepool_wire::header::TRIGGER, "motion");
        h.insert(edgepool_wire::header::MOTION_REGIONS, "0.1,0.2,0.3,0.4");
        let env = parse("frames.cam-1", &h, JPEG);
        let r = ok().into_result(
            &env,
            &WorkerId::new("w1").unwrap(),
            &WorkerConfig::default(),
            String::new,
            Duration::ZERO,
        );
        assert_eq!(r.trigger, Some(edgepool_wire::Trigger::Motion));
        assert_eq!(r.motion_regions.len(), 1);
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains(r#""trigger":"motion","motion_regions":[{"x_min":0.1,"#), "{json}");
        assert_eq!(serde_json::from_str::<ResultMessage>(&json).unwrap(), r);
    }

    #[test]
    fn an_error_verdict_is_poison_with_its_kind_and_a_bounded_message() {
        let v = Verdict::error(ErrorKind::Corrupt, "x".repeat(5000));
        assert_eq!(v.outcome(), Outcome::Poison { kind: ErrorKind::Corrupt });
        let r = result(v);
        assert_eq!((r.status, r.model.as_str(), r.width), (Status::Error, "current", 0));
        let e = r.error.unwrap();
        assert_eq!((e.kind, e.message.len()), (ErrorKind::Corrupt, MAX_ERROR_MESSAGE));
        assert_eq!(r.timings.total_ms, 5.0, "the total is filled in when the verdict has none");
    }

    #[test]
    fn a_stale_verdict_has_no_inference() {
        let v = Verdict::Stale { timings: Timings { queue_wait_ms: 31_000.0, ..Timings::default() } };
        assert_eq!(v.outcome(), Outcome::Stale);
        let r = result(v);
        assert_eq!((r.status, r.error, r.detections.len()), (Status::Stale, None, 0));
        assert_eq!(r.timings.queue_wait_ms, 31_000.0);
    }
}
