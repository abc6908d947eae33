//! The state of each video source, for `/healthz` and `/readyz`: whether ffmpeg delivers
//! frames, how often it was restarted, when the last frame came and why the source last failed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::{Value, json};

/// One source's state.
#[derive(Debug, Clone)]
pub struct SourceState {
    /// The source as shown (credentials hidden).
    pub source: String,
    pub up: bool,
    pub restarts: u64,
    /// Frames ffmpeg handed over.
    pub frames: u64,
    /// Frames published.
    pub published: u64,
    pub last_frame: Option<Instant>,
    /// Why the source last stopped or failed (credentials hidden).
    pub last_error: Option<String>,
    /// The camera task ended (a file without `loop`, or a failure that ends it).
    pub finished: bool,
}

/// Every camera's [`SourceState`], shared by the camera tasks and the HTTP probes.
#[derive(Debug, Clone, Default)]
pub struct SourceBoard(Arc<Mutex<BTreeMap<String, SourceState>>>);

impl SourceBoard {
    /// Adds a camera, down until its first frame.
    pub fn add(&self, camera: &str, shown: &str) {
        let state = SourceState {
            source: shown.to_owned(),
            up: false,
            restarts: 0,
            frames: 0,
            published: 0,
            last_frame: None,
            last_error: None,
            finished: false,
        };
        if let Ok(mut b) = self.0.lock() {
            b.insert(camera.to_owned(), state);
        }
    }

    /// Changes one camera's state.
    pub fn update(&self, camera: &str, f: impl FnOnce(&mut SourceState)) {
        if let Ok(mut b) = self.0.lock()
            && let Some(s) = b.get_mut(camera)
        {
            f(s);
        }
    }

    /// Whether any source delivers frames now.
    #[must_use]
    pub fn any_up(&self) -> bool {
        self.0.lock().is_ok_and(|b| b.values().any(|s| s.up))
    }

    /// The board as JSON: `{camera: {source, up, restarts, frames, published,
    /// last_frame_seconds_ago, last_error, finished}}`.
    #[must_use]
    pub fn report(&self) -> Value {
        let Ok(b) = self.0.lock() else { return json!({}) };
        let now = Instant::now();
        b.iter()
            .map(|(camera, s)| {
                let state = json!({
                    "source": s.source,
                    "up": s.up,
                    "restarts": s.restarts,
                    "frames": s.frames,
                    "published": s.published,
                    "last_frame_seconds_ago": s.last_frame.map(|t| (now - t).as_secs_f64()),
                    "last_error": s.last_error,
                    "finished": s.finished,
                });
                (camera.clone(), state)
            })
            .collect::<serde_json::Map<_, _>>()
            .into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_board_reports_each_camera() {
        let board = SourceBoard::default();
        board.add("a", "rtsp://***@cam/1");
        board.add("b", "/dev/video0");
        assert!(!board.any_up());
        board.update("a", |s| {
            s.up = true;
            s.frames = 3;
            s.last_frame = Some(Instant::now());
        });
        board.update("b", |s| s.last_error = Some("exit 1: No such device".into()));
        assert!(board.any_up());
        let r = board.report();
        assert_eq!(r["a"]["frames"], 3);
        assert_eq!(r["a"]["source"], "rtsp://***@cam/1");
        assert!(r["a"]["last_frame_seconds_ago"].as_f64().unwrap() < 1.0);
        assert_eq!(r["b"]["up"], false);
        assert_eq!(r["b"]["last_frame_seconds_ago"], Value::Null);
        assert_eq!(r["b"]["last_error"], "exit 1: No such device");
    }
}
