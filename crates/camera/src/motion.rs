//! Motion gating: decide, per decoded frame, whether anything in the scene changed enough to be
//! worth an inference anywhere in the pool.
//!
//! The check is the one Frigate users know, on raw RGB pixels before any JPEG encoding:
//!
//! 1. **Downscale** to [`MotionConfig::height`] rows (aspect kept), averaging a grid of up to
//!    4 x 4 samples inside each source block: a 1080p frame becomes ~160 x 90 from ~230 k
//!    sampled pixels instead of all 2 M.
//! 2. **Grayscale** (BT.601 luma, integer weights) and a 3 x 3 box **blur**, so sensor noise
//!    and compression artifacts do not count as motion.
//! 3. **Compare** with a running-average background (`bg += alpha * (frame - bg)`): a pixel has
//!    changed when it differs from the background by more than [`MotionConfig::threshold`]
//!    luma levels and is outside every mask polygon. Changed pixels follow the scene 5 times
//!    slower, so a passing object leaves no ghost in the background, while a lasting change (a
//!    parked car) still fades in.
//! 4. **Measure** the changed area as a fraction of the unmasked frame, and group changed pixels
//!    into regions (8-connected components, their bounding boxes in normalized coordinates).
//!
//! A frame shows motion when the changed fraction is at least [`MotionConfig::min_area`]. Above
//! [`MotionConfig::reset_area`] the whole scene changed (lights, an IR switch): the background
//! restarts from that frame instead. The first frame only seeds the background. The cost
//! target is 2 ms per frame at the default downscale; `edgepool bench camera` measures
//! 0.7-1.1 ms at 1080p on a 2-core x86 VM (docs/performance.md).

use std::time::Duration;

use edgepool_wire::BBox;
use serde::{Deserialize, Serialize};

/// How the motion check looks at frames. Every field has a default; `masks` is empty unless set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MotionConfig {
    /// Rows of the downscaled frame the check runs on (the width follows the aspect ratio).
    pub height: u32,
    /// Luma difference (0-255) from the background above which a pixel counts as changed.
    pub threshold: u8,
    /// Changed fraction of the unmasked frame (0-1) that makes a frame a motion frame.
    pub min_area: f32,
    /// How fast the background follows the scene, per checked frame (0-1): 0.05 forgets a
    /// change in ~20 frames.
    pub alpha: f32,
    /// Changed fraction (0-1) above which the change is taken for the whole scene changing
    /// (lights switched, the camera moved, an IR switch) rather than something moving: the
    /// background restarts from this frame and the frame is not a motion frame. Frigate calls
    /// it `lightning_threshold`. 1 turns it off.
    pub reset_area: f32,
    /// Areas to ignore (a clock overlay, a tree): polygons of at least three `[x, y]` points in
    /// normalized coordinates, 0-1 from the top left.
    pub masks: Vec<Vec<[f32; 2]>>,
}

impl Default for MotionConfig {
    fn default() -> Self {
        Self { height: 90, threshold: 25, min_area: 0.002, alpha: 0.05, reset_area: 0.8, masks: Vec::new() }
    }
}

/// A motion setting that cannot work, naming the key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MotionConfigError {
    #[error("motion.height must be between 8 and 1080, got {0}")]
    Height(u32),
    #[error("motion.min_area must be between 0 and 1, got {0}")]
    MinArea(f32),
    #[error("motion.alpha must be above 0 and at most 1, got {0}")]
    Alpha(f32),
    #[error("motion.reset_area must be above motion.min_area and at most 1, got {0}")]
    ResetArea(f32),
    #[error("motion.masks[{index}]: {reason}")]
    Mask { index: usize, reason: &'static str },
}

impl MotionConfigError {
    /// The key at fault, `motion.<field>` (`motion.masks[<i>]` for a mask).
    #[must_use]
    pub fn key(&self) -> String {
        match self {
            Self::Height(_) => "motion.height".into(),
            Self::MinArea(_) => "motion.min_area".into(),
            Self::Alpha(_) => "motion.alpha".into(),
            Self::ResetArea(_) => "motion.reset_area".into(),
            Self::Mask { index, .. } => format!("motion.masks[{index}]"),
        }
    }

    /// What is wrong with it: the message without the key.
    #[must_use]
    pub fn reason(&self) -> String {
        let full = self.to_string();
        let key = self.key();
        full.strip_prefix(&key).map(|r| r.trim_start_matches([':', ' ']).to_owned()).unwrap_or(full)
    }
}

impl MotionConfig {
    /// Checks every field; the error names the key.
    pub fn validate(&self) -> Result<(), MotionConfigError> {
        if !(8..=1080).contains(&self.height) {
            return Err(MotionConfigError::Height(self.height));
        }
        if !(0.0..=1.0).contains(&self.min_area) {
            return Err(MotionConfigError::MinArea(self.min_area));
        }
        if !(self.alpha > 0.0 && self.alpha <= 1.0) {
            return Err(MotionConfigError::Alpha(self.alpha));
        }
        if !(self.reset_area > self.min_area && self.reset_area <= 1.0) {
            return Err(MotionConfigError::ResetArea(self.reset_area));
        }
        for (index, m) in self.masks.iter().enumerate() {
            if m.len() < 3 {
                return Err(MotionConfigError::Mask { index, reason: "a polygon needs at least 3 points" });
            }
            if m.iter().flatten().any(|v| !(0.0..=1.0).contains(v)) {
                return Err(MotionConfigError::Mask { index, reason: "coordinates must be between 0 and 1" });
            }
        }
        Ok(())
    }
}

/// What the check found in one frame.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Motion {
    /// Changed fraction of the unmasked frame.
    pub area: f32,
    /// Whether `area` reached `min_area` (and stayed under `reset_area`).
    pub moving: bool,
    /// Whether the whole scene changed (`area` above `reset_area`) and the background
    /// restarted from this frame.
    pub reset: bool,
    /// The changed areas, largest first, at most [`MAX_REGIONS`].
    /// Normalized bounding boxes, as the `Edgepool-Motion-Regions` header carries them.
    pub regions: Vec<BBox>,
}

/// Share of `alpha` with which pixels that differ from the background follow the scene.
const CHANGED_ALPHA_SHARE: f32 = 0.2;

/// Regions reported per frame; smaller ones are dropped (the area still counts them).
pub const MAX_REGIONS: usize = edgepool_wire::trigger::MAX_MOTION_REGIONS;

/// The per-camera motion check. Create one per camera; it keeps that camera's background.
#[derive(Debug)]
pub struct MotionDetector {
    cfg: MotionConfig,
    /// Source size the buffers below are laid out for.
    source: (usize, usize),
    /// Downscaled size.
    w: usize,
    h: usize,
    background: Vec<f32>,
    gray: Vec<f32>,
    blurred: Vec<f32>,
    /// True where a mask covers the pixel.
    masked: Vec<bool>,
    unmasked: usize,
    changed: Vec<bool>,
    seeded: bool,
}

impl MotionDetector {
    /// A detector with a checked configuration.
    pub fn new(cfg: MotionConfig) -> Result<Self, MotionConfigError> {
        cfg.validate()?;
        Ok(Self {
            cfg,
            source: (0, 0),
            w: 0,
            h: 0,
            background: Vec::new(),
            gray: Vec::new(),
            blurred: Vec::new(),
            masked: Vec::new(),
            unmasked: 0,
            changed: Vec::new(),
            seeded: false,
        })
    }

    #[must_use]
    pub fn config(&self) -> &MotionConfig {
        &self.cfg
    }

    /// Checks one packed RGB frame (`width * height * 3` bytes, rows top to bottom). A change
    /// of frame size starts over: the first frame of a size only seeds the background. A
    /// buffer shorter than `width * height * 3` is reported as no motion.
    pub fn check(&mut self, rgb: &[u8], width: usize, height: usize) -> Motion {
        if width == 0 || height == 0 || rgb.len() < width * height * 3 {
            return Motion::default();
        }
        if self.source != (width, height) {
            self.resize(width, height);
        }
        self.downscale(rgb);
        blur3(&self.gray, &mut self.blurred, self.w, self.h);
        if !self.seeded {
            self.background.copy_from_slice(&self.blurred);
            self.seeded = true;
            return Motion::default();
        }
        let threshold = f32::from(self.cfg.threshold);
        let (alpha, alpha_changed) = (self.cfg.alpha, self.cfg.alpha * CHANGED_ALPHA_SHARE);
        let mut count = 0usize;
        for (((c, &b), bg), &m) in
            self.changed.iter_mut().zip(&self.blurred).zip(&mut self.background).zip(&self.masked)
        {
            let changed = (b - *bg).abs() > threshold;
            *c = !m && changed;
            count += usize::from(*c);
            // A passing object barely enters the background, so it leaves no ghost behind; a
            // lasting change (a parked car) still fades in, 5 times slower.
            *bg += if changed { alpha_changed } else { alpha } * (b - *bg);
        }
        let area = if self.unmasked == 0 { 0.0 } else { count as f32 / self.unmasked as f32 };
        if area > self.cfg.reset_area && self.cfg.reset_area < 1.0 {
            self.background.copy_from_slice(&self.blurred);
            return Motion { area, moving: false, reset: true, regions: Vec::new() };
        }
        let moving = count > 0 && area >= self.cfg.min_area;
        let regions = if moving { self.regions() } else { Vec::new() };
        Motion { area, moving, reset: false, regions }
    }

    fn resize(&mut self, width: usize, height: usize) {
        let h = (self.cfg.height as usize).min(height).max(1);
        let w = (width * h).div_ceil(height).clamp(1, width);
        self.source = (width, height);
        (self.w, self.h) = (w, h);
        let n = w * h;
        self.background = vec![0.0; n];
        self.gray = vec![0.0; n];
        self.blurred = vec![0.0; n];
        self.changed = vec![false; n];
        self.masked = (0..n)
            .map(|i| {
                let (x, y) = (((i % w) as f32 + 0.5) / w as f32, ((i / w) as f32 + 0.5) / h as f32);
                self.cfg.masks.iter().any(|poly| inside(poly, x, y))
            })
            .collect();
        self.unmasked = self.masked.iter().filter(|m| !**m).count();
        self.seeded = false;
    }

    /// Box-averages a grid of up to 4 x 4 samples per source block into `gray` (luma).
    fn downscale(&mut self, rgb: &[u8]) {
        let (sw, sh) = self.source;
        let (w, h) = (self.w, self.h);
        for y in 0..h {
            let (y0, y1) = (y * sh / h, ((y + 1) * sh / h).max(y * sh / h + 1));
            let ystep = (y1 - y0).div_ceil(4);
            for x in 0..w {
                let (x0, x1) = (x * sw / w, ((x + 1) * sw / w).max(x * sw / w + 1));
                let xstep = (x1 - x0).div_ceil(4);
                let (mut sum, mut n) = (0u32, 0u32);
                for sy in (y0..y1).step_by(ystep) {
                    let row = &rgb[sy * sw * 3..(sy + 1) * sw * 3];
                    for sx in (x0..x1).step_by(xstep) {
                        let p = &row[sx * 3..sx * 3 + 3];
                        sum += 77 * u32::from(p[0]) + 150 * u32::from(p[1]) + 29 * u32::from(p[2]);
                        n += 1;
                    }
                }
                self.gray[y * w + x] = sum as f32 / (256 * n.max(1)) as f32;
            }
        }
    }

    /// Bounding boxes of the 8-connected groups of changed pixels, largest first.
    fn regions(&self) -> Vec<BBox> {
        let (w, h) = (self.w, self.h);
        let mut seen = vec![false; w * h];
        let mut stack = Vec::new();
        let mut found: Vec<(usize, [usize; 4])> = Vec::new();
        for start in 0..w * h {
            if !self.changed[start] || seen[start] {
                continue;
            }
            seen[start] = true;
            stack.push(start);
            let (mut size, mut b) = (0usize, [usize::MAX, usize::MAX, 0, 0]);
            while let Some(i) = stack.pop() {
                let (x, y) = (i % w, i / w);
                size += 1;
                b = [b[0].min(x), b[1].min(y), b[2].max(x), b[3].max(y)];
                for ny in y.saturating_sub(1)..=(y + 1).min(h - 1) {
                    for nx in x.saturating_sub(1)..=(x + 1).min(w - 1) {
                        let j = ny * w + nx;
                        if self.changed[j] && !seen[j] {
                            seen[j] = true;
                            stack.push(j);
                        }
                    }
                }
            }
            found.push((size, b));
        }
        found.sort_by_key(|f| std::cmp::Reverse(f.0));
        found
            .into_iter()
            .take(MAX_REGIONS)
            .map(|(_, [x0, y0, x1, y1])| {
                let (w, h) = (w as f32, h as f32);
                BBox::new(x0 as f32 / w, y0 as f32 / h, (x1 + 1) as f32 / w, (y1 + 1) as f32 / h)
            })
            .collect()
    }
}

/// 3 x 3 box blur with the border pixels averaged over the neighbours that exist.
fn blur3(src: &[f32], dst: &mut [f32], w: usize, h: usize) {
    for y in 0..h {
        let rows = y.saturating_sub(1)..=(y + 1).min(h - 1);
        for x in 0..w {
            let cols = x.saturating_sub(1)..=(x + 1).min(w - 1);
            let (mut sum, mut n) = (0.0f32, 0u32);
            for ry in rows.clone() {
                for c in &src[ry * w + *cols.start()..=ry * w + *cols.end()] {
                    sum += c;
                    n += 1;
                }
            }
            dst[y * w + x] = sum / n as f32;
        }
    }
}

/// Even-odd rule: whether (x, y) lies inside the polygon.
fn inside(poly: &[[f32; 2]], x: f32, y: f32) -> bool {
    let mut inside = false;
    let mut j = poly.len() - 1;
    for i in 0..poly.len() {
        let ([xi, yi], [xj, yj]) = (poly[i], poly[j]);
        if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
            inside = !inside;
        }
        j = i;
    }
    inside
}

/// What to do with one decoded frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Not due at the detect rate: dropped before any other work.
    NotSampled,
    /// Sampled, but nothing moved and no keepalive is due.
    Still,
    /// Publish: something moved.
    Motion(Motion),
    /// Publish: nothing moved for `keepalive`, so the subscribers hear that the camera lives.
    Keepalive,
    /// Publish: motion gating is off.
    Every,
}

/// Sampling at the detect rate, then motion gating with keepalives, for one camera. Times are
/// the frames' own (capture or decode time from the stream's start), so a file replayed faster
/// than real time is sampled as the camera would have been.
#[derive(Debug)]
pub struct Gate {
    period: Option<Duration>,
    keepalive: Duration,
    motion: Option<MotionDetector>,
    next_sample: Option<Duration>,
    last_published: Option<Duration>,
}

impl Gate {
    /// `fps`: the detect rate (`None`: every frame); `motion`: `None` publishes every sampled
    /// frame; `keepalive`: the longest time without a published frame while nothing moves.
    #[must_use]
    pub fn new(fps: Option<f64>, motion: Option<MotionDetector>, keepalive: Duration) -> Self {
        let period = fps.filter(|f| f.is_finite() && *f > 0.0).map(|f| Duration::from_secs_f64(1.0 / f));
        Self { period, keepalive, motion, next_sample: None, last_published: None }
    }

    /// Decides for the frame at `at` (its time in the stream).
    pub fn decide(&mut self, rgb: &[u8], width: usize, height: usize, at: Duration) -> Decision {
        if let Some(period) = self.period {
            if self.next_sample.is_some_and(|due| at < due) {
                return Decision::NotSampled;
            }
            // The next slot on the grid the first sample started; after a gap in the stream,
            // a new grid from this frame, so a gap does not cause a burst.
            let next = self.next_sample.unwrap_or(at) + period;
            self.next_sample = Some(if next <= at { at + period } else { next });
        }
        let decision = match &mut self.motion {
            None => Decision::Every,
            Some(m) => {
                let motion = m.check(rgb, width, height);
                if motion.moving {
                    Decision::Motion(motion)
                } else if self.last_published.is_none_or(|last| at.saturating_sub(last) >= self.keepalive) {
                    Decision::Keepalive
                } else {
                    Decision::Still
                }
            }
        };
        if matches!(decision, Decision::Motion(_) | Decision::Keepalive | Decision::Every) {
            self.last_published = Some(at);
        }
        decision
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 640 x 360 grey scene with mild noise, and a dark square at `square` (x, y, side in
    /// pixels) when given.
    fn scene(frame: u32, square: Option<(usize, usize, usize)>) -> Vec<u8> {
        let (w, h) = (640, 360);
        let mut rgb = vec![0u8; w * h * 3];
        let mut s = u64::from(frame).wrapping_mul(2_862_933_555_777_941_757).wrapping_add(3);
        for (i, px) in rgb.chunks_exact_mut(3).enumerate() {
            s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let noise = ((s >> 60) as u8).wrapping_sub(8); // -8..7 as u8
            let (x, y) = (i % w, i / w);
            let base = 120u8.wrapping_add(noise);
            let dark =
                square.is_some_and(|(sx, sy, side)| (sx..sx + side).contains(&x) && (sy..sy + side).contains(&y));
            let v = if dark { 20 } else { base };
            px.copy_from_slice(&[v, v, v]);
        }
        rgb
    }

    #[test]
    fn a_static_scene_is_still_and_an_entering_object_moves_where_it_is() {
        let mut m = MotionDetector::new(MotionConfig::default()).unwrap();
        assert!(!m.check(&scene(0, None), 640, 360).moving, "the first frame seeds the background");
        for f in 1..30 {
            let r = m.check(&scene(f, None), 640, 360);
            assert!(!r.moving && r.area == 0.0, "noise is not motion: frame {f}, area {}", r.area);
        }
        let r = m.check(&scene(30, Some((320, 120, 80))), 640, 360);
        assert!(r.moving, "an 80 px square moved in");
        let expected = 80.0 * 80.0 / (640.0 * 360.0);
        assert!((r.area - expected).abs() < expected * 0.5, "area {} for {expected}", r.area);
        let region = r.regions[0];
        assert!((region.x_min - 0.5).abs() < 0.03 && (region.y_min - 1.0 / 3.0).abs() < 0.03, "{region:?}");
        assert!((region.width() - 0.125).abs() < 0.03 && (region.height() - 80.0 / 360.0).abs() < 0.04, "{region:?}");
        // It stays: the background learns it (at alpha / 5 for changed pixels: 100 levels fall
        // under the threshold of 25 in ~140 frames), and the scene is still again.
        let mut last = r;
        for f in 31..200 {
            last = m.check(&scene(f, Some((320, 120, 80))), 640, 360);
        }
        assert!(!last.moving, "a parked object becomes background: area {}", last.area);
    }

    #[test]
    fn a_mask_over_the_moving_area_hides_it() {
        let cfg = MotionConfig {
            masks: vec![vec![[0.45, 0.25], [0.7, 0.25], [0.7, 0.65], [0.45, 0.65]]],
            ..Default::default()
        };
        let mut m = MotionDetector::new(cfg).unwrap();
        m.check(&scene(0, None), 640, 360);
        let r = m.check(&scene(1, Some((320, 120, 80))), 640, 360);
        assert!(!r.moving && r.area == 0.0, "masked: {r:?}");
        let r = m.check(&scene(2, Some((40, 40, 80))), 640, 360);
        assert!(r.moving, "outside the mask it still counts");
    }

    #[test]
    fn a_whole_scene_change_restarts_the_background_instead_of_counting_as_motion() {
        let mut m = MotionDetector::new(MotionConfig::default()).unwrap();
        m.check(&scene(0, None), 640, 360);
        let bright: Vec<u8> = scene(1, None).iter().map(|v| v.saturating_add(60)).collect();
        let r = m.check(&bright, 640, 360);
        assert!(r.reset && !r.moving && r.area > 0.8, "{r:?}");
        let again: Vec<u8> = scene(2, None).iter().map(|v| v.saturating_add(60)).collect();
        let r = m.check(&again, 640, 360);
        assert!(!r.reset && !r.moving && r.area == 0.0, "the new scene is the background: {r:?}");
    }

    #[test]
    fn bad_settings_name_their_key() {
        let bad = |cfg: MotionConfig| MotionDetector::new(cfg).unwrap_err().to_string();
        assert!(bad(MotionConfig { height: 2, ..Default::default() }).starts_with("motion.height"));
        assert!(bad(MotionConfig { alpha: 0.0, ..Default::default() }).starts_with("motion.alpha"));
        assert!(bad(MotionConfig { min_area: 2.0, ..Default::default() }).starts_with("motion.min_area"));
        assert!(bad(MotionConfig { reset_area: 0.001, ..Default::default() }).starts_with("motion.reset_area"));
        let e = bad(MotionConfig { masks: vec![vec![], vec![[0.0, 0.0], [1.0, 0.0]]], ..Default::default() });
        assert_eq!(e, "motion.masks[0]: a polygon needs at least 3 points");
        let e = bad(MotionConfig { masks: vec![vec![[0.0, 0.0], [1.5, 0.0], [0.0, 1.0]]], ..Default::default() });
        assert_eq!(e, "motion.masks[0]: coordinates must be between 0 and 1");
    }

    #[test]
    fn short_or_empty_frames_are_no_motion() {
        let mut m = MotionDetector::new(MotionConfig::default()).unwrap();
        assert_eq!(m.check(&[], 640, 360), Motion::default());
        assert_eq!(m.check(&[0; 10], 640, 360), Motion::default());
    }

    #[test]
    fn the_gate_samples_at_the_detect_rate_and_sends_keepalives() {
        let ms = Duration::from_millis;
        // 30 fps stream, 5 fps detect rate, motion on, keepalive 1 s, nothing moving.
        let mut gate = Gate::new(Some(5.0), Some(MotionDetector::new(MotionConfig::default()).unwrap()), ms(1000));
        let mut sampled = 0;
        let mut keepalives = Vec::new();
        for f in 0..90u32 {
            let at = ms(u64::from(f) * 1000 / 30);
            match gate.decide(&scene(f, None), 640, 360, at) {
                Decision::NotSampled => {}
                Decision::Keepalive => {
                    sampled += 1;
                    keepalives.push(at);
                }
                Decision::Still => sampled += 1,
                other => panic!("frame {f}: {other:?}"),
            }
        }
        assert_eq!(sampled, 15, "3 s at 5 fps");
        assert_eq!(keepalives, [ms(0), ms(1000), ms(2000)], "the first frame, then one a second");
        // Motion off: every sampled frame.
        let mut gate = Gate::new(Some(5.0), None, ms(1000));
        let every =
            (0..30u32).filter(|f| gate.decide(&[], 0, 0, ms(u64::from(*f) * 1000 / 30)) == Decision::Every).count();
        assert_eq!(every, 5);
    }
}
