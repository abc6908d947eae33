//! Stretching an RGB8 frame to the model's 300x300 input with a reusable, allocation-free
//! bilinear (triangle filter) resampler that reproduces `image::imageops::resize(..,
//! FilterType::Triangle)` bit for bit.
//!
//! Why not call `image` directly: it goes through a full RGBA f32 intermediate with per-pixel
//! generic accessors and allocates both buffers on every call. This does the same arithmetic in
//! the same order (so results are identical, which the tests check) on buffers the session
//! keeps, and writes the model's f32 tensor directly.

/// Model input width in pixels.
pub const INPUT_WIDTH: u32 = 300;
/// Model input height in pixels.
pub const INPUT_HEIGHT: u32 = 300;
/// Values in the NHWC input tensor `[1, 300, 300, 3]`.
pub const INPUT_LEN: usize = INPUT_WIDTH as usize * INPUT_HEIGHT as usize * 3;

/// For each output coordinate: the first input index and the normalized weights of the inputs
/// that contribute, as `image`'s `vertical_sample`/`horizontal_sample` compute them.
#[derive(Debug, Default)]
struct Taps {
    /// `(first input index, offset into weights, count)` per output index.
    spans: Vec<(usize, usize, usize)>,
    weights: Vec<f32>,
}

impl Taps {
    fn compute(&mut self, src_len: u32, dst_len: u32) {
        self.spans.clear();
        self.weights.clear();
        // Exactly `image` 0.25's arithmetic (f32 throughout), so the output is identical.
        let ratio = src_len as f32 / dst_len as f32;
        let sratio = if ratio < 1.0 { 1.0 } else { ratio };
        let support = sratio; // the triangle filter's support is 1.0
        for out in 0..dst_len {
            let center = (out as f32 + 0.5) * ratio;
            let left = ((center - support).floor() as i64).clamp(0, i64::from(src_len) - 1);
            let right = ((center + support).ceil() as i64).clamp(left + 1, i64::from(src_len));
            let center = center - 0.5;
            let start = self.weights.len();
            let mut sum = 0.0;
            for i in left..right {
                let w = triangle((i as f32 - center) / sratio);
                self.weights.push(w);
                sum += w;
            }
            for w in &mut self.weights[start..] {
                *w /= sum;
            }
            // 0 <= left < right <= src_len, all within u32, so the casts are exact.
            self.spans.push((left as usize, start, (right - left) as usize));
        }
    }

    fn get(&self, out: usize) -> (usize, &[f32]) {
        let (first, start, count) = self.spans[out];
        (first, &self.weights[start..start + count])
    }
}

fn triangle(x: f32) -> f32 {
    if x.abs() < 1.0 { 1.0 - x.abs() } else { 0.0 }
}

/// Reusable state of the resampler: filter taps and the vertical pass's f32 rows.
#[derive(Debug, Default)]
pub(crate) struct Resizer {
    rows: Taps,
    cols: Taps,
    /// The frame resized vertically only: `INPUT_HEIGHT` rows of `src_width * 3` f32.
    vertical: Vec<f32>,
    /// The source size the taps were computed for, to skip recomputing for same-size frames.
    cached_for: Option<(u32, u32)>,
}

impl Resizer {
    /// Resizes packed RGB8 `src` (`width * height * 3` bytes) to 300x300 and writes it, as
    /// f32 values 0..=255, into `out` (NHWC, `INPUT_LEN` values).
    pub(crate) fn run(&mut self, src: &[u8], width: u32, height: u32, out: &mut [f32]) {
        debug_assert_eq!(src.len(), width as usize * height as usize * 3);
        debug_assert_eq!(out.len(), INPUT_LEN);
        if self.cached_for != Some((width, height)) {
            self.rows.compute(height, INPUT_HEIGHT);
            self.cols.compute(width, INPUT_WIDTH);
            self.cached_for = Some((width, height));
        }
        let row_len = width as usize * 3;
        // Vertical pass: each output row is a weighted sum of a few input rows, accumulated
        // tap by tap exactly as `image` does per pixel (0 + p0*w0 + p1*w1 + ...).
        self.vertical.clear();
        self.vertical.resize(INPUT_HEIGHT as usize * row_len, 0.0);
        for (y, acc) in self.vertical.chunks_exact_mut(row_len).enumerate() {
            let (first, weights) = self.rows.get(y);
            for (i, &w) in weights.iter().enumerate() {
                let start = (first + i) * row_len;
                let src_row = &src[start..start + row_len];
                for (a, &p) in acc.iter_mut().zip(src_row) {
                    *a += f32::from(p) * w;
                }
            }
        }
        // Horizontal pass, rounding to the nearest integer like `image` does for u8 output.
        let out_row_len = INPUT_WIDTH as usize * 3;
        for (row, dst) in self.vertical.chunks_exact(row_len).zip(out.chunks_exact_mut(out_row_len)) {
            for (x, px) in dst.chunks_exact_mut(3).enumerate() {
                let (first, weights) = self.cols.get(x);
                let mut t = [0.0f32; 3];
                for (i, &w) in weights.iter().enumerate() {
                    let p = &row[(first + i) * 3..(first + i) * 3 + 3];
                    t[0] += p[0] * w;
                    t[1] += p[1] * w;
                    t[2] += p[2] * w;
                }
                for (d, v) in px.iter_mut().zip(t) {
                    *d = v.clamp(0.0, 255.0).round();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{RgbImage, imageops};

    fn pattern(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            let v = |k: u32| ((x * 7 + y * 13 + k * 31 + (x * y) % 17) % 256) as u8;
            image::Rgb([v(0), v(1), v(2)])
        })
    }

    #[test]
    fn identical_to_image_triangle_resize() {
        let mut r = Resizer::default();
        let mut out = vec![0.0; INPUT_LEN];
        for (w, h) in [(512, 600), (451, 300), (300, 300), (640, 427), (37, 1000), (1, 1), (3000, 17)] {
            let img = pattern(w, h);
            r.run(img.as_raw(), w, h, &mut out);
            let want = imageops::resize(&img, INPUT_WIDTH, INPUT_HEIGHT, imageops::FilterType::Triangle);
            let got: Vec<u8> = out.iter().map(|&v| v as u8).collect();
            assert!(out.iter().all(|v| v.fract() == 0.0 && (0.0..=255.0).contains(v)));
            assert_eq!(got, want.into_raw(), "{w}x{h}");
        }
    }
}
