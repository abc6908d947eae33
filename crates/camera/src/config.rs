//! Video cameras in the configuration file: `[video]` holds the defaults, and each
//! `[cameras.<id>]` table is one camera that may override any of them.
//!
//! ```toml
//! [video]
//! fps = 5
//! keepalive = "10s"
//!
//! [cameras.front-door]
//! source = "rtsp://${FRONT_DOOR_USER}:${FRONT_DOOR_PASSWORD}@192.168.1.64:554/stream1"
//! [cameras.front-door.motion]
//! masks = [[[0.0, 0.0], [0.35, 0.0], [0.35, 0.08], [0.0, 0.08]]]
//!
//! [cameras.garage]
//! source = "/dev/video0"
//! fps = 2
//! ```
//!
//! `${NAME}` in a source is replaced by the environment variable `NAME` when the cameras are
//! resolved, so credentials can come from a Kubernetes Secret instead of the file. Every error
//! names the camera and the key: `cameras.garage.fps: must be between 0 and 120, got 500`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use edgepool_wire::CameraId;

use crate::ffmpeg::{SourceKind, redact};
use crate::motion::MotionConfig;

/// `[video]`: what every video camera does unless its own table says otherwise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VideoConfig {
    /// The detect rate: frames per second ffmpeg hands over for the motion check (and at most
    /// publishes). 0: every decoded frame.
    pub fps: f64,
    /// Scale frames wider than this down (aspect kept) before encoding, to cut bandwidth.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_width: Option<u32>,
    /// JPEG quality of the published frames, 1-100.
    pub quality: u8,
    /// While nothing moves, publish a frame this often so subscribers know the camera lives.
    #[serde(with = "humantime_serde")]
    pub keepalive: Duration,
    /// The ffmpeg to run (default: on `PATH`, else the one `cargo xtask tools` installs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ffmpeg: Option<PathBuf>,
    /// Motion gating defaults.
    pub motion: MotionSection,
}

impl Default for VideoConfig {
    fn default() -> Self {
        Self {
            fps: 5.0,
            max_width: None,
            quality: 80,
            keepalive: Duration::from_secs(10),
            ffmpeg: None,
            motion: MotionSection::default(),
        }
    }
}

/// `[video.motion]` or `[cameras.<id>.motion]`: motion gating. A key left out comes from
/// `[video.motion]`, then from the built-in default ([`MotionConfig::default`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MotionSection {
    /// `false` publishes every sampled frame (default `true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Rows of the downscaled frame the check runs on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// Luma difference (0-255) above which a pixel counts as changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<u8>,
    /// Changed fraction of the unmasked frame (0-1) that makes a motion frame.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_area: Option<f32>,
    /// How fast the background follows the scene (0-1].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f32>,
    /// Changed fraction above which the whole scene changed (lights) and the background restarts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reset_area: Option<f32>,
    /// Polygons to ignore, `[x, y]` points normalized to 0-1 from the top left.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub masks: Option<Vec<Vec<[f64; 2]>>>,
}

impl MotionSection {
    /// `self` over `defaults` over the built-in defaults; `None` when gating is off.
    fn resolve(&self, defaults: &Self) -> Option<MotionConfig> {
        if !self.enabled.or(defaults.enabled).unwrap_or(true) {
            return None;
        }
        let d = MotionConfig::default();
        Some(MotionConfig {
            height: self.height.or(defaults.height).unwrap_or(d.height),
            threshold: self.threshold.or(defaults.threshold).unwrap_or(d.threshold),
            min_area: self.min_area.or(defaults.min_area).unwrap_or(d.min_area),
            alpha: self.alpha.or(defaults.alpha).unwrap_or(d.alpha),
            reset_area: self.reset_area.or(defaults.reset_area).unwrap_or(d.reset_area),
            masks: self
                .masks
                .as_ref()
                .or(defaults.masks.as_ref())
                .map(|polygons| {
                    // f64 in the file, so `--check` prints 0.1 back as 0.1.
                    let point = |p: &[f64; 2]| [p[0] as f32, p[1] as f32];
                    polygons.iter().map(|poly| poly.iter().map(point).collect()).collect()
                })
                .unwrap_or_default(),
        })
    }
}

/// A camera's video source as written in the file. It prints (`--check`, `Debug`) with any
/// credentials of its URL hidden.
#[derive(Clone, Default, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct SourceUrl(String);

impl SourceUrl {
    #[must_use]
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
}

impl std::fmt::Debug for SourceUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", redact(&self.0))
    }
}

impl Serialize for SourceUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&redact(&self.0))
    }
}

/// `[cameras.<id>]`: one camera. Keys left out come from `[video]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CameraEntry {
    /// `rtsp://…`, `http(s)://…`, `/dev/videoN` or a video file; `${NAME}` is replaced by the
    /// environment variable `NAME`.
    pub source: SourceUrl,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fps: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_width: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quality: Option<u8>,
    #[serde(with = "humantime_serde::option", skip_serializing_if = "Option::is_none")]
    pub keepalive: Option<Duration>,
    /// Replay a file from the start when it ends.
    #[serde(rename = "loop")]
    pub looped: bool,
    pub motion: MotionSection,
}

/// One camera, resolved and checked: what a camera task runs.
#[derive(Debug, Clone, PartialEq)]
pub struct CameraSpec {
    pub id: CameraId,
    /// With `${NAME}` expanded: may hold credentials. Show it through [`redact`] only.
    pub source: String,
    pub kind: SourceKind,
    /// `None`: every decoded frame.
    pub fps: Option<f64>,
    pub max_width: Option<u32>,
    pub quality: u8,
    pub keepalive: Duration,
    /// `None`: motion gating off.
    pub motion: Option<MotionConfig>,
    pub looped: bool,
}

impl CameraSpec {
    /// The source for logs, metrics and errors.
    #[must_use]
    pub fn shown(&self) -> String {
        redact(&self.source)
    }
}

/// A camera setting that cannot work: `cameras.<id>.<key>: <reason>` (or `video.<key>`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct CameraConfigError {
    /// The dotted key, camera included.
    pub key: String,
    pub reason: String,
}

fn err(key: impl Into<String>, reason: impl Into<String>) -> CameraConfigError {
    CameraConfigError { key: key.into(), reason: reason.into() }
}

/// Resolves every `[cameras.<id>]` over `video`, in id order. `env` looks up the variables a
/// source names.
pub fn resolve(
    video: &VideoConfig,
    cameras: &BTreeMap<String, CameraEntry>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Vec<CameraSpec>, CameraConfigError> {
    check_video(video)?;
    cameras.iter().map(|(id, entry)| resolve_one(video, id, entry, &env)).collect()
}

fn check_video(v: &VideoConfig) -> Result<(), CameraConfigError> {
    check_common("video", v.fps, v.max_width, v.quality, v.keepalive)?;
    // The defaults alone must make a valid motion check too.
    if let Some(m) = v.motion.resolve(&MotionSection::default()) {
        m.validate().map_err(|e| err(format!("video.{}", e.key()), e.reason()))?;
    }
    Ok(())
}

fn check_common(
    prefix: &str,
    fps: f64,
    max_width: Option<u32>,
    quality: u8,
    keepalive: Duration,
) -> Result<(), CameraConfigError> {
    if !(fps.is_finite() && (0.0..=120.0).contains(&fps)) {
        return Err(err(format!("{prefix}.fps"), format!("must be between 0 (every frame) and 120, got {fps}")));
    }
    if max_width.is_some_and(|w| !(16..=7680).contains(&w)) {
        return Err(err(format!("{prefix}.max_width"), format!("must be between 16 and 7680, got {max_width:?}")));
    }
    if !(1..=100).contains(&quality) {
        return Err(err(format!("{prefix}.quality"), format!("must be between 1 and 100, got {quality}")));
    }
    if keepalive < Duration::from_secs(1) {
        return Err(err(format!("{prefix}.keepalive"), format!("must be at least 1s, got {keepalive:?}")));
    }
    Ok(())
}

fn resolve_one(
    video: &VideoConfig,
    id: &str,
    entry: &CameraEntry,
    env: impl Fn(&str) -> Option<String>,
) -> Result<CameraSpec, CameraConfigError> {
    let prefix = format!("cameras.{id}");
    let camera = CameraId::new(id).map_err(|e| err(&prefix, format!("not a valid camera id: {e}")))?;
    if entry.source.0.trim().is_empty() {
        return Err(err(
            format!("{prefix}.source"),
            "missing: an rtsp:// or http(s):// URL, /dev/videoN or a video file",
        ));
    }
    let source = expand(&entry.source.0, env).map_err(|reason| err(format!("{prefix}.source"), reason))?;
    let kind = SourceKind::of(&source);
    if kind == SourceKind::File && std::path::Path::new(&source).is_dir() {
        return Err(err(
            format!("{prefix}.source"),
            format!(
                "{} is a folder; cameras in the file read video (replay images with --source DIR)",
                redact(&source)
            ),
        ));
    }
    let fps = entry.fps.unwrap_or(video.fps);
    let max_width = entry.max_width.or(video.max_width);
    let quality = entry.quality.unwrap_or(video.quality);
    let keepalive = entry.keepalive.unwrap_or(video.keepalive);
    check_common(&prefix, fps, max_width, quality, keepalive)?;
    let motion = entry.motion.resolve(&video.motion);
    if let Some(m) = &motion {
        m.validate().map_err(|e| err(format!("{prefix}.{}", e.key()), e.reason()))?;
    }
    Ok(CameraSpec {
        id: camera,
        source,
        kind,
        fps: (fps > 0.0).then_some(fps),
        max_width,
        quality,
        keepalive,
        motion,
        looped: entry.looped,
    })
}

/// Replaces each `${NAME}` in `s` with the variable's value.
fn expand(s: &str, env: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or("an unclosed ${ (write ${NAME})")?;
        let name = &after[..end];
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(format!("${{{name}}} is not a variable name (letters, digits and _)"));
        }
        let value = env(name).ok_or_else(|| {
            format!("environment variable {name} is not set (credentials come from the environment, e.g. a Secret)")
        })?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(source: &str) -> CameraEntry {
        CameraEntry { source: SourceUrl::new(source), ..CameraEntry::default() }
    }

    fn one(video: &VideoConfig, id: &str, e: CameraEntry) -> Result<CameraSpec, CameraConfigError> {
        let env = |n: &str| (n == "PASS").then(|| "s3cret".to_owned());
        resolve(video, &BTreeMap::from([(id.to_owned(), e)]), env).map(|mut v| v.remove(0))
    }

    #[test]
    fn cameras_inherit_video_defaults_key_by_key() {
        let video = VideoConfig {
            fps: 4.0,
            max_width: Some(1280),
            motion: MotionSection { min_area: Some(0.01), threshold: Some(30), ..Default::default() },
            ..VideoConfig::default()
        };
        let mut e = entry("rtsp://cam/1");
        e.fps = Some(2.0);
        e.motion.min_area = Some(0.05);
        let s = one(&video, "front", e).unwrap();
        assert_eq!((s.fps, s.max_width, s.quality), (Some(2.0), Some(1280), 80));
        let m = s.motion.unwrap();
        assert_eq!((m.min_area, m.threshold, m.height), (0.05, 30, MotionConfig::default().height));
        let mut off = entry("/dev/video0");
        off.motion.enabled = Some(false);
        off.fps = Some(0.0);
        let s = one(&video, "usb", off).unwrap();
        assert_eq!((s.motion, s.fps, s.kind), (None, None, SourceKind::Device));
    }

    #[test]
    fn sources_expand_the_environment_and_never_print_credentials() {
        let s = one(&VideoConfig::default(), "c", entry("rtsp://admin:${PASS}@cam/1")).unwrap();
        assert_eq!(s.source, "rtsp://admin:s3cret@cam/1");
        assert_eq!(s.shown(), "rtsp://***@cam/1");
        let e = one(&VideoConfig::default(), "c", entry("rtsp://admin:${NOPE}@cam/1")).unwrap_err();
        assert_eq!(e.key, "cameras.c.source");
        assert!(e.reason.contains("NOPE is not set"), "{e}");
        assert!(one(&VideoConfig::default(), "c", entry("rtsp://${PASS@cam")).unwrap_err().reason.contains("unclosed"));
        let literal = entry("rtsp://admin:hunter2@cam/1");
        assert_eq!(format!("{literal:?}").matches("hunter2").count(), 0);
        assert_eq!(serde_json::to_string(&literal.source).unwrap(), r#""rtsp://***@cam/1""#);
    }

    #[test]
    fn every_error_names_the_camera_and_the_key() {
        let v = VideoConfig::default();
        let key = |id: &str, e: CameraEntry| one(&v, id, e).unwrap_err().key;
        assert_eq!(key("bad.id", entry("rtsp://x")), "cameras.bad.id");
        assert_eq!(key("c", entry("")), "cameras.c.source");
        let mut e = entry("rtsp://x");
        e.fps = Some(500.0);
        assert_eq!(key("c", e), "cameras.c.fps");
        let mut e = entry("rtsp://x");
        e.quality = Some(0);
        assert_eq!(key("c", e), "cameras.c.quality");
        let mut e = entry("rtsp://x");
        e.motion.min_area = Some(2.0);
        assert_eq!(key("c", e), "cameras.c.motion.min_area");
        let mut e = entry("rtsp://x");
        e.motion.masks = Some(vec![vec![[0.0, 0.0], [1.0, 1.0]]]);
        assert_eq!(key("c", e), "cameras.c.motion.masks[0]");
        let bad_video = VideoConfig { keepalive: Duration::ZERO, ..VideoConfig::default() };
        assert_eq!(one(&bad_video, "c", entry("rtsp://x")).unwrap_err().key, "video.keepalive");
        let folder = env!("CARGO_MANIFEST_DIR");
        assert_eq!(key("c", entry(folder)), "cameras.c.source");
    }
}
