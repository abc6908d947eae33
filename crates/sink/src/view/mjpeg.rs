//! `GET /cameras/{id}/stream.mjpeg`: `multipart/x-mixed-replace` JPEGs, the format a browser
//! `<img>`, VLC, ffmpeg and Home Assistant's `mjpeg` camera read.
//!
//! Each stream sends the camera's latest snapshot at once, then every new one, and repeats the
//! latest every [`KEEPALIVE`] when the camera is quiet (clients time out otherwise). A stream
//! follows the store's broadcast channel: when its client stops reading, the server stops
//! polling the stream, its receiver falls behind and skips. The store never waits for a viewer,
//! and the memory a viewer can hold is one part plus the channel's shared slots.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, Bytes, BytesMut};
use tokio::sync::{OwnedSemaphorePermit, broadcast};

use super::{RenderKey, Snapshot, View, error, render_key, unknown_camera};

/// The multipart boundary.
pub const BOUNDARY: &str = "edgepoolframe";

/// A quiet camera's latest frame is sent again this often.
pub const KEEPALIVE: Duration = Duration::from_secs(10);

/// Holds a viewer slot and keeps the open-streams gauge right, however the stream ends.
struct Slot {
    _permit: OwnedSemaphorePermit,
    gauge: prometheus::IntGauge,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

struct Viewer {
    view: Arc<View>,
    camera: String,
    key: RenderKey,
    rx: broadcast::Receiver<Arc<Snapshot>>,
    first: Option<Arc<Snapshot>>,
    _slot: Slot,
}

pub(super) async fn stream(
    State(view): State<Arc<View>>,
    Path(id): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let key = match render_key(&q) {
        Ok(k) => k,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let Some(first) = view.store.get(&id) else { return unknown_camera(&id) };
    let Ok(permit) = Arc::clone(&view.viewers).try_acquire_owned() else {
        view.viewers_refused.inc();
        let mut r = error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{} streams are open, the limit (sink.max_stream_viewers)", view.cfg.max_stream_viewers),
        );
        r.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("10"));
        return r;
    };
    view.viewers_open.inc();
    let slot = Slot { _permit: permit, gauge: view.viewers_open.clone() };
    let viewer = Viewer {
        rx: view.store.subscribe(),
        view: Arc::clone(&view),
        camera: id,
        key,
        first: Some(first),
        _slot: slot,
    };
    let parts = futures::stream::unfold(viewer, |mut v| async move {
        let snap = next(&mut v).await?;
        match v.view.render(snap, v.key).await {
            Ok(jpeg) => Some((Ok::<Bytes, std::io::Error>(part(&jpeg)), v)),
            Err(e) => {
                tracing::debug!(camera = %v.camera, error = %e, "MJPEG stream: snapshot does not render; ending");
                None
            }
        }
    });
    (
        [
            (header::CONTENT_TYPE, format!("multipart/x-mixed-replace; boundary={BOUNDARY}")),
            (header::CACHE_CONTROL, "no-cache, no-store".to_owned()),
        ],
        Body::from_stream(parts),
    )
        .into_response()
}

/// The next snapshot to send: the first, a new one of this camera, or the latest again after
/// [`KEEPALIVE`]. `None` ends the stream (sink stopping, camera gone).
async fn next(v: &mut Viewer) -> Option<Arc<Snapshot>> {
    if let Some(s) = v.first.take() {
        return Some(s);
    }
    loop {
        tokio::select! {
            r = v.rx.recv() => match r {
                Ok(s) if s.camera == v.camera => return Some(s),
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return None,
            },
            () = tokio::time::sleep(KEEPALIVE) => return v.view.store.get(&v.camera),
            () = v.view.closing.cancelled() => return None,
        }
    }
}

/// One part: boundary, headers, the JPEG.
fn part(jpeg: &[u8]) -> Bytes {
    let head = format!("--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n", jpeg.len());
    let mut b = BytesMut::with_capacity(head.len() + jpeg.len() + 2);
    b.put_slice(head.as_bytes());
    b.put_slice(jpeg);
    b.put_slice(b"\r\n");
    b.freeze()
}
