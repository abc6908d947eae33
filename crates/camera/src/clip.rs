//! A camera clip with a known answer, made from two photos: the scene stands still, an object
//! (the second photo, scaled down) crosses it, then the scene stands still again. Encoded to
//! H.264 by ffmpeg, it is what `edgepool demo` plays through the real video path, and what the
//! tests and `edgepool bench camera` check motion gating against: motion frames may only fall
//! in the crossing.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::Context as _;
use image::RgbImage;
use image::imageops::{FilterType, overlay};

/// The clip's shape.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClipPlan {
    pub width: u32,
    pub height: u32,
    /// Frames per second of the encoded video.
    pub fps: u32,
    /// Seconds of still scene before the crossing.
    pub still_before: u32,
    /// Seconds the object takes to cross the frame.
    pub crossing: u32,
    /// Seconds of still scene after it.
    pub still_after: u32,
}

impl Default for ClipPlan {
    /// 640x360 at 10 fps: 4 s still, 4 s crossing, 4 s still.
    fn default() -> Self {
        Self { width: 640, height: 360, fps: 10, still_before: 4, crossing: 4, still_after: 4 }
    }
}

impl ClipPlan {
    #[must_use]
    pub fn frames(&self) -> u32 {
        self.fps * (self.still_before + self.crossing + self.still_after)
    }

    /// The frames (by index) during which the object moves.
    #[must_use]
    pub fn crossing_frames(&self) -> std::ops::Range<u32> {
        self.fps * self.still_before..self.fps * (self.still_before + self.crossing)
    }

    /// Frame `i`: the background with the object where it is at that moment (off frame before
    /// the crossing, past the right edge after it).
    #[must_use]
    pub fn frame(&self, i: u32, background: &RgbImage, object: &RgbImage) -> RgbImage {
        let mut frame = background.clone();
        let crossing = self.crossing_frames();
        if crossing.contains(&i) {
            let travel = i64::from(self.width + object.width());
            let x = travel * i64::from(i - crossing.start) / i64::from(crossing.len() as u32).max(1)
                - i64::from(object.width());
            overlay(&mut frame, object, x, i64::from(self.height - object.height()) / 2);
        }
        frame
    }

    /// The background scaled to the clip and the object scaled to 2/3 of its height.
    #[must_use]
    pub fn scale(&self, background: &RgbImage, object: &RgbImage) -> (RgbImage, RgbImage) {
        let bg = image::imageops::resize(background, self.width, self.height, FilterType::Triangle);
        let h = self.height * 2 / 3;
        let w = (u64::from(object.width()) * u64::from(h) / u64::from(object.height().max(1))).max(1) as u32;
        (bg, image::imageops::resize(object, w, h, FilterType::Triangle))
    }

    /// Encodes the clip to H.264 in an MP4 at `out` with `ffmpeg` (blocking: run it off async
    /// threads). Every frame is a keyframe candidate at most 1 s apart, as cameras send them.
    pub fn encode(&self, ffmpeg: &Path, background: &RgbImage, object: &RgbImage, out: &Path) -> anyhow::Result<()> {
        let (bg, obj) = self.scale(background, object);
        let size = format!("{}x{}", self.width, self.height);
        let mut child = Command::new(ffmpeg)
            .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24"])
            .args(["-s", &size, "-r", &self.fps.to_string(), "-i", "-"])
            // No B-frames, a keyframe a second: what IP cameras send, so a client joining a live
            // stream mid-way decodes from the next second on.
            .args(["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-bf", "0"])
            .args(["-g", &self.fps.to_string()])
            .args(["-movflags", "+faststart", "-y"])
            .arg(out)
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", ffmpeg.display()))?;
        let mut stdin = child.stdin.take().context("ffmpeg has no stdin")?;
        for i in 0..self.frames() {
            stdin.write_all(self.frame(i, &bg, &obj).as_raw()).context("writing frames to ffmpeg")?;
        }
        drop(stdin);
        let out = child.wait_with_output()?;
        anyhow::ensure!(
            out.status.success(),
            "ffmpeg could not encode the clip: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_object_moves_only_in_the_crossing() {
        let plan = ClipPlan { width: 64, height: 36, fps: 2, still_before: 2, crossing: 2, still_after: 2 };
        let bg = RgbImage::from_pixel(64, 36, image::Rgb([40, 40, 40]));
        let obj = RgbImage::from_pixel(12, 24, image::Rgb([250, 250, 250]));
        let frames: Vec<RgbImage> = (0..plan.frames()).map(|i| plan.frame(i, &bg, &obj)).collect();
        assert_eq!(frames.len(), 12);
        assert_eq!(plan.crossing_frames(), 4..8);
        for (i, f) in frames.iter().enumerate() {
            let changed = f != &bg;
            // The first crossing frame has the object just outside the left edge.
            assert_eq!(changed, (5..8).contains(&i), "frame {i}");
        }
        assert_ne!(frames[5], frames[6], "it moves");
    }
}
