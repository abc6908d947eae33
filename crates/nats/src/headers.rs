//! The contract's frame headers on an `async_nats::HeaderMap`.

use async_nats::HeaderMap;

use edgepool_wire::frame::{FrameMeta, TimeOutOfRange, format_time, header};
use edgepool_wire::ids::msg_id;
use edgepool_wire::trigger::format_regions;

/// Headers of a frame message, as the contract defines them. Fails only for a `captured_at`
/// that RFC 3339 cannot write (see [`format_time`]).
pub fn frame_headers(meta: &FrameMeta) -> Result<HeaderMap, TimeOutOfRange> {
    let mut h = HeaderMap::new();
    h.insert(header::MSG_ID, msg_id(&meta.camera, meta.seq).as_str());
    h.insert(header::CONTENT_TYPE, meta.content_type.as_str());
    h.insert(header::SEQ, meta.seq.to_string().as_str());
    h.insert(header::CAPTURED_AT, format_time(meta.captured_at)?.as_str());
    if let Some(tp) = &meta.traceparent {
        h.insert(header::TRACEPARENT, tp.as_str());
    }
    if let Some(t) = meta.trigger {
        h.insert(header::TRIGGER, t.as_str());
    }
    if !meta.motion_regions.is_empty() {
        h.insert(header::MOTION_REGIONS, format_regions(&meta.motion_regions).as_str());
    }
    if let Some(d) = meta.deadline {
        h.insert(header::DEADLINE, format_time(d)?.as_str());
    }
    if let Some((w, hgt)) = meta.raw_size {
        h.insert(header::WIDTH, w.to_string().as_str());
        h.insert(header::HEIGHT, hgt.to_string().as_str());
    }
    Ok(h)
}

/// The first value of header `name`, as a string.
#[must_use]
pub fn header_str<'a>(headers: Option<&'a HeaderMap>, name: &str) -> Option<&'a str> {
    headers?.get(name).map(async_nats::HeaderValue::as_str)
}
