//! Minimal raster drawing: detections on a frame (`edgepool detect --annotate`, the sink's
//! camera snapshots and MJPEG streams) and benchmark charts, with a tiny embedded 5x7 bitmap
//! font so nothing needs a font-rendering dependency.

use image::{Rgb, RgbImage};

use crate::Detection;

/// Distinct, saturated colours; a class keeps its colour across images and tools.
pub const PALETTE: [[u8; 3]; 8] = [
    [230, 25, 75],
    [60, 180, 75],
    [0, 130, 200],
    [245, 130, 48],
    [145, 30, 180],
    [240, 50, 230],
    [0, 128, 128],
    [170, 110, 40],
];

/// The colour of a class's box and label.
#[must_use]
pub fn class_color(class_id: u16) -> Rgb<u8> {
    Rgb(PALETTE[usize::from(class_id) % PALETTE.len()])
}

/// Outline thickness for an image: 2 px, thicker on large frames so boxes stay visible when the
/// image is shown scaled down.
#[must_use]
pub fn box_thickness(img: &RgbImage) -> u32 {
    (img.width().min(img.height()) / 200).max(2)
}

/// Draws each detection's box (normalized coordinates scaled to `img`) and a `label score`
/// caption. Lowest score first, so the most confident box and label end up on top.
pub fn detections(img: &mut RgbImage, detections: &[Detection]) {
    let (w, h) = (img.width() as f32, img.height() as f32);
    let thickness = box_thickness(img);
    let mut sorted: Vec<&Detection> = detections.iter().collect();
    sorted.sort_by(|a, b| a.score.total_cmp(&b.score));
    for d in sorted {
        let color = class_color(d.class_id);
        let b = &d.bbox;
        let (x0, y0) = ((b.x_min * w) as u32, (b.y_min * h) as u32);
        let (x1, y1) = ((b.x_max * w) as u32, (b.y_max * h) as u32);
        rect_outline(img, (x0, y0, x1, y1), thickness, color);
        let text = format!("{} {:.2}", d.label, d.score);
        let text_w = text_width(&text) + SCALE * 2;
        let text_h = (GLYPH_H + 2) * SCALE;
        // Above the box when there is room, else just inside its top edge.
        let ty = if y0 >= text_h { y0 - text_h } else { y0 };
        fill(img, (x0, ty, x0 + text_w, ty + text_h), color);
        draw_text(img, x0 + SCALE, ty + SCALE, &text, Rgb([255, 255, 255]));
    }
}

/// Glyph pixels are drawn as SCALE x SCALE squares.
pub const SCALE: u32 = 2;
pub const GLYPH_W: u32 = 5;
pub const GLYPH_H: u32 = 7;

/// Width in pixels of `text` drawn with [`draw_text`].
#[must_use]
pub fn text_width(text: &str) -> u32 {
    text.chars().count() as u32 * (GLYPH_W + 1) * SCALE
}

/// Sets a pixel if it is inside the image; everything drawn is clipped this way.
pub fn put(img: &mut RgbImage, x: u32, y: u32, c: Rgb<u8>) {
    if x < img.width() && y < img.height() {
        img.put_pixel(x, y, c);
    }
}

/// Fills `[x0, x1) x [y0, y1)`, clipped.
pub fn fill(img: &mut RgbImage, (x0, y0, x1, y1): (u32, u32, u32, u32), c: Rgb<u8>) {
    for y in y0..y1.min(img.height()) {
        for x in x0..x1.min(img.width()) {
            img.put_pixel(x, y, c);
        }
    }
}

/// A `t`-pixel-wide outline drawn inside `[x0, x1] x [y0, y1]`.
pub fn rect_outline(img: &mut RgbImage, (x0, y0, x1, y1): (u32, u32, u32, u32), t: u32, c: Rgb<u8>) {
    let (x1, y1) = (x1.min(img.width().saturating_sub(1)), y1.min(img.height().saturating_sub(1)));
    fill(img, (x0, y0, x1 + 1, y0 + t), c);
    fill(img, (x0, (y1 + 1).saturating_sub(t), x1 + 1, y1 + 1), c);
    fill(img, (x0, y0, x0 + t, y1 + 1), c);
    fill(img, ((x1 + 1).saturating_sub(t), y0, x1 + 1, y1 + 1), c);
}

pub fn draw_text(img: &mut RgbImage, x: u32, y: u32, text: &str, c: Rgb<u8>) {
    for (i, ch) in text.chars().enumerate() {
        let gx = x + i as u32 * (GLYPH_W + 1) * SCALE;
        for (row, bits) in glyph(ch).iter().enumerate() {
            for col in 0..GLYPH_W {
                if bits & (1 << (GLYPH_W - 1 - col)) != 0 {
                    for dy in 0..SCALE {
                        for dx in 0..SCALE {
                            put(img, gx + col * SCALE + dx, y + row as u32 * SCALE + dy, c);
                        }
                    }
                }
            }
        }
    }
}

/// 5x7 glyphs, one row per byte (bit 4 is the leftmost pixel). Letters are drawn as
/// capitals, which read better at this size; anything else draws as a blank.
pub fn glyph(c: char) -> [u8; 7] {
    match c.to_ascii_lowercase() {
        'a' => [0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'b' => [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E],
        'c' => [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E],
        'd' => [0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C],
        'e' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F],
        'f' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10],
        'g' => [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F],
        'h' => [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'i' => [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E],
        'j' => [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C],
        'k' => [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11],
        'l' => [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F],
        'm' => [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11],
        'n' => [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11],
        'o' => [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'p' => [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10],
        'q' => [0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D],
        'r' => [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11],
        's' => [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E],
        't' => [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        'u' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'v' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04],
        'w' => [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A],
        'x' => [0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11],
        'y' => [0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04],
        'z' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F],
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        '.' => [0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C],
        ',' => [0x00, 0x00, 0x00, 0x00, 0x0C, 0x04, 0x08],
        ':' => [0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00],
        '-' => [0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00],
        '/' => [0x01, 0x01, 0x02, 0x04, 0x08, 0x10, 0x10],
        '%' => [0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03],
        '(' => [0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02],
        ')' => [0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08],
        '=' => [0x00, 0x00, 0x1F, 0x00, 0x1F, 0x00, 0x00],
        _ => [0; 7],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_label_character_has_a_glyph() {
        for id in 0..=90u16 {
            for c in crate::coco_label(id).unwrap_or_default().chars() {
                assert!(c == ' ' || glyph(c) != [0; 7], "no glyph for {c:?}");
            }
        }
        for c in "0123456789.,:-/%()=".chars() {
            assert_ne!(glyph(c), [0; 7]);
        }
    }

    #[test]
    fn drawing_is_clipped_at_the_edges() {
        let mut img = RgbImage::new(10, 10);
        draw_text(&mut img, 8, 8, "person 0.99", Rgb([255, 255, 255]));
        rect_outline(&mut img, (5, 5, 50, 50), 3, Rgb([255, 0, 0]));
        assert_eq!(img.get_pixel(9, 9), &Rgb([255, 0, 0]));
    }
}
