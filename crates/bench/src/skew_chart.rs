//! The PNG chart of `edgepool bench skew`: throughput per worker, cluster throughput, and share
//! of work, pull vs round-robin — readable without any other tool.

use std::path::Path;

use anyhow::Context as _;
use image::{Rgb, RgbImage};

use crate::report::SkewReport;
use edgepool::draw::{GLYPH_H, SCALE, draw_text, fill, text_width};

const W: u32 = 1200;
const H: u32 = 560;
const BG: Rgb<u8> = Rgb([255, 255, 255]);
const INK: Rgb<u8> = Rgb([40, 40, 40]);
const GRID: Rgb<u8> = Rgb([225, 225, 225]);
const CAPACITY: Rgb<u8> = Rgb([150, 150, 150]);
const PULL: Rgb<u8> = Rgb([0, 114, 178]);
const RR: Rgb<u8> = Rgb([230, 120, 0]);

/// One bar group: a label and `(value, colour)` bars.
struct Group {
    label: String,
    bars: Vec<(f64, Rgb<u8>)>,
}

/// Draws grouped bars in the box `(x, y, w, h)` with a title and value labels.
fn panel(
    img: &mut RgbImage,
    (x, y, w, h): (u32, u32, u32, u32),
    title: &str,
    groups: &[Group],
    fmt: &dyn Fn(f64) -> String,
) {
    draw_text(img, x, y, title, INK);
    let top = y + 30;
    let bottom = y + h - 30;
    let max = groups.iter().flat_map(|g| g.bars.iter().map(|b| b.0)).fold(0.0_f64, f64::max).max(1e-9) * 1.15;
    for k in 0..=4 {
        let gy = bottom - (bottom - top) * k / 4;
        fill(img, (x, gy, x + w, gy + 1), GRID);
    }
    fill(img, (x, bottom, x + w, bottom + 2), INK);
    let slot = w / groups.len().max(1) as u32;
    for (gi, g) in groups.iter().enumerate() {
        let gx = x + slot * gi as u32;
        let n = g.bars.len().max(1) as u32;
        let bar_w = (slot * 3 / 4) / n;
        let start = gx + (slot - bar_w * n) / 2;
        for (bi, (v, c)) in g.bars.iter().enumerate() {
            let bh = ((bottom - top) as f64 * (v / max)).round() as u32;
            let bx = start + bar_w * bi as u32;
            fill(img, (bx + 2, bottom - bh, bx + bar_w - 2, bottom), *c);
            let label = fmt(*v);
            let lx = bx + bar_w / 2 - text_width(&label).min(bar_w) / 2;
            draw_text(img, lx, bottom.saturating_sub(bh + (GLYPH_H + 3) * SCALE), &label, INK);
        }
        let lw = text_width(&g.label);
        draw_text(img, gx + slot / 2 - lw.min(slot) / 2, bottom + 10, &g.label, INK);
    }
}

fn legend(img: &mut RgbImage, x: u32, y: u32) {
    let mut cx = x;
    for (name, c) in [("capacity alone", CAPACITY), ("pull (pooled)", PULL), ("round-robin", RR)] {
        fill(img, (cx, y, cx + 18, y + 14), c);
        draw_text(img, cx + 24, y, name, INK);
        cx += 24 + text_width(name) + 30;
    }
}

/// Writes the chart for `r` to `path` (PNG).
pub fn write(r: &SkewReport, path: &Path) -> anyhow::Result<()> {
    let mut img = RgbImage::from_pixel(W, H, BG);
    let skew: Vec<String> = r.workers.iter().map(|f| format!("{f}")).collect();
    let title = format!(
        "edgepool bench skew {}: pull {:.2} fps = {:.0}% of sum, {:.2}x round-robin",
        skew.join(":"),
        r.pull_fps,
        r.efficiency * 100.0,
        r.pull_over_rr
    );
    draw_text(&mut img, 20, 16, &title, INK);
    legend(&mut img, 20, 44);

    let per_worker: Vec<Group> = r
        .per_worker
        .iter()
        .map(|w| Group {
            label: format!("x{}", w.slowdown),
            bars: vec![
                (w.capacity_fps, CAPACITY),
                (w.pull_frames as f64 / r.pull.seconds, PULL),
                (w.rr_frames as f64 / r.rr.seconds, RR),
            ],
        })
        .collect();
    let fps = |v: f64| format!("{v:.1}");
    panel(&mut img, (20, 90, 500, 440), "frames/s per worker", &per_worker, &fps);

    let cluster = vec![Group {
        label: "cluster".into(),
        bars: vec![(r.sum_capacity_fps, CAPACITY), (r.pull_fps, PULL), (r.rr_fps, RR)],
    }];
    panel(&mut img, (560, 90, 240, 440), "cluster frames/s", &cluster, &fps);

    let share: Vec<Group> = r
        .per_worker
        .iter()
        .map(|w| Group {
            label: format!("x{}", w.slowdown),
            bars: vec![
                (w.capacity_fps / r.sum_capacity_fps * 100.0, CAPACITY),
                (w.pull_share * 100.0, PULL),
                (w.rr_share * 100.0, RR),
            ],
        })
        .collect();
    panel(&mut img, (840, 90, 340, 440), "share of work (%)", &share, &|v| format!("{v:.0}%"));

    img.save_with_format(path, image::ImageFormat::Png).with_context(|| format!("writing {}", path.display()))
}
