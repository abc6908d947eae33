//! Per-camera activity from the results the sink reads: when it was last seen, its result rate,
//! its last labels and whether it is failing. At most `max_cameras` are tracked; a new camera
//! beyond that replaces the one seen least recently.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;
use time::OffsetDateTime;

use edgepool_wire::{ResultCamera, ResultMessage, Status};

/// The window of the per-camera result rate.
pub const FPS_WINDOW: Duration = Duration::from_secs(10);

/// Result times kept per camera for the rate (enough for 100 results/s over the window).
const MAX_TIMES: usize = 1000;

#[derive(Debug)]
struct Camera {
    seen: Instant,
    last_seen: OffsetDateTime,
    times: VecDeque<Instant>,
    results: u64,
    errors: u64,
    stale: u64,
    last_status: Status,
    last_error: Option<Instant>,
    last_labels: Vec<String>,
}

/// What the tracker knows about one camera, as `GET /cameras` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Activity {
    #[serde(with = "time::serde::rfc3339")]
    pub last_seen: OffsetDateTime,
    /// Results per second over the last [`FPS_WINDOW`].
    pub fps: f64,
    pub results_total: u64,
    pub errors_total: u64,
    pub stale_total: u64,
    pub last_status: &'static str,
    /// Whether an error result came within the staleness window.
    pub recent_errors: bool,
    /// Distinct labels of the last `ok` result, most confident first.
    pub last_labels: Vec<String>,
}

#[derive(Debug)]
pub struct Tracker {
    max_cameras: usize,
    error_window: Duration,
    cameras: Mutex<HashMap<String, Camera>>,
}

impl Tracker {
    #[must_use]
    pub fn new(max_cameras: usize, error_window: Duration) -> Self {
        Self { max_cameras, error_window, cameras: Mutex::default() }
    }

    /// Counts a unique result.
    pub fn observe(&self, r: &ResultMessage, now: Instant) {
        let ResultCamera::Camera(camera) = &r.camera else { return };
        let mut cams = self.cameras.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !cams.contains_key(camera.as_str())
            && cams.len() >= self.max_cameras
            && let Some(oldest) = cams.iter().min_by_key(|(_, c)| c.seen).map(|(k, _)| k.clone())
        {
            cams.remove(&oldest);
        }
        let c = cams.entry(camera.as_str().to_owned()).or_insert_with(|| Camera {
            seen: now,
            last_seen: r.processed_at,
            times: VecDeque::new(),
            results: 0,
            errors: 0,
            stale: 0,
            last_status: r.status,
            last_error: None,
            last_labels: Vec::new(),
        });
        c.seen = now;
        c.last_seen = OffsetDateTime::now_utc();
        c.times.push_back(now);
        while c.times.len() > MAX_TIMES || c.times.front().is_some_and(|t| now.duration_since(*t) > FPS_WINDOW) {
            c.times.pop_front();
        }
        c.results += 1;
        c.last_status = r.status;
        match r.status {
            Status::Ok => {
                let mut labels: Vec<String> = Vec::new();
                for d in &r.detections {
                    if !labels.contains(&d.label) {
                        labels.push(d.label.clone());
                    }
                }
                c.last_labels = labels;
            }
            Status::Error => {
                c.errors += 1;
                c.last_error = Some(now);
            }
            Status::Stale => c.stale += 1,
        }
    }

    /// Every tracked camera's activity at `now`.
    #[must_use]
    pub fn activity(&self, now: Instant) -> HashMap<String, Activity> {
        let cams = self.cameras.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        cams.iter()
            .map(|(id, c)| {
                let in_window = c.times.iter().filter(|t| now.duration_since(**t) <= FPS_WINDOW).count();
                let a = Activity {
                    last_seen: c.last_seen,
                    fps: in_window as f64 / FPS_WINDOW.as_secs_f64(),
                    results_total: c.results,
                    errors_total: c.errors,
                    stale_total: c.stale,
                    last_status: c.last_status.as_str(),
                    recent_errors: c.last_error.is_some_and(|t| now.duration_since(t) <= self.error_window),
                    last_labels: c.last_labels.clone(),
                };
                (id.clone(), a)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(camera: &str, status: Status) -> ResultMessage {
        let json = include_str!("../../../../fuzz/regressions/result_json/score-out-of-range.json")
            .replace(r#""score":7"#, r#""score":0.7"#)
            .replace(r#""camera":"cam-1""#, &format!(r#""camera":"{camera}""#));
        let mut r: ResultMessage = serde_json::from_str(&json).unwrap();
        r.status = status;
        if status != Status::Ok {
            r.detections.clear();
        }
        r
    }

    #[test]
    fn rate_labels_and_errors_per_camera() {
        let t = Tracker::new(8, Duration::from_secs(10));
        let t0 = Instant::now();
        for i in 0..20 {
            t.observe(&result("cam-1", Status::Ok), t0 + Duration::from_millis(500 * i));
        }
        t.observe(&result("cam-2", Status::Error), t0);
        let now = t0 + Duration::from_millis(9_500);
        let a = t.activity(now);
        assert!((a["cam-1"].fps - 2.0).abs() < 0.11, "{}", a["cam-1"].fps);
        assert_eq!(a["cam-1"].results_total, 20);
        assert!(!a["cam-1"].last_labels.is_empty());
        assert!(a["cam-2"].recent_errors);
        assert!(!t.activity(t0 + Duration::from_secs(11))["cam-2"].recent_errors, "the error is old news");
    }

    #[test]
    fn the_least_recently_seen_camera_makes_room() {
        let t = Tracker::new(2, Duration::from_secs(10));
        let t0 = Instant::now();
        t.observe(&result("a", Status::Ok), t0);
        t.observe(&result("b", Status::Ok), t0 + Duration::from_secs(1));
        t.observe(&result("c", Status::Ok), t0 + Duration::from_secs(2));
        let a = t.activity(t0 + Duration::from_secs(2));
        assert_eq!(a.len(), 2);
        assert!(a.contains_key("b") && a.contains_key("c"));
    }
}
