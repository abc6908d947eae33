//! Decoding untrusted JPEG/PNG bytes into a reusable RGB8 buffer, with size limits checked
//! before anything image-sized is allocated.

use std::io::Cursor;

use image::{ColorType, ImageDecoder, ImageError, ImageFormat, ImageReader, Limits};

use crate::{DecodeLimits, DetectError};

/// Decoded buffers larger than this are released before the next frame, so one huge (but
/// allowed) frame does not pin hundreds of MB in a session for the rest of its life.
const KEEP_BUFFER_BYTES: usize = 32 << 20;

/// Headroom for the decoder's own working memory (Huffman tables, PNG line buffers, ...) on
/// top of the output image when setting `image`'s `max_alloc` as a second guard.
const DECODER_WORKING_BYTES: u64 = 64 << 20;

/// The last decoded frame of a session, as tightly packed RGB8 rows.
#[derive(Debug, Default)]
pub(crate) struct Frame {
    /// `width * height * 3` bytes once `valid`.
    pub(crate) rgb: Vec<u8>,
    /// The decoder's native output (any colour type), converted into `rgb`.
    raw: Vec<u8>,
    pub(crate) width: u32,
    pub(crate) height: u32,
    /// False until a decode succeeds, and again after a failed one: `infer` must never run on
    /// a stale or half-written frame.
    pub(crate) valid: bool,
}

impl Frame {
    /// Decodes `encoded` into `self.rgb`; returns the original width and height.
    pub(crate) fn decode(&mut self, encoded: &[u8], limits: &DecodeLimits) -> Result<(u32, u32), DetectError> {
        self.valid = false;
        // One huge (but allowed) frame must not pin hundreds of MB for the session's life.
        release_if_huge(&mut self.raw);
        release_if_huge(&mut self.rgb);
        if encoded.is_empty() {
            return Err(DetectError::Empty);
        }
        if encoded.len() > limits.max_bytes {
            return Err(DetectError::TooLarge { bytes: encoded.len(), max: limits.max_bytes });
        }
        // Sniff the magic bytes ourselves: the sender's content type is not trusted, and only
        // the two formats compiled into `image` are worth a decoder.
        let format = match image::guess_format(encoded) {
            Ok(f @ (ImageFormat::Jpeg | ImageFormat::Png)) => f,
            _ => return Err(DetectError::UnsupportedFormat),
        };
        let mut reader = ImageReader::with_format(Cursor::new(encoded), format);
        // Constructing the decoder parses only the header. With `image`'s default limits an
        // absurd header would already fail here as a generic limits error; without them we
        // get the declared size and refuse it with a precise error of our own.
        reader.no_limits();
        let mut decoder = reader.into_decoder().map_err(|e| map_image_error(e, None))?;
        let (width, height) = decoder.dimensions();
        let pixels = u64::from(width) * u64::from(height);
        let too_many = DetectError::TooManyPixels { width, height, max: limits.max_pixels };
        if pixels > limits.max_pixels {
            return Err(too_many);
        }
        if pixels == 0 {
            return Err(DetectError::Corrupt(format!("zero-sized image {width}x{height}")));
        }
        // Second guard: the decoder's own allocation limit, sized for the largest accepted frame
        // at 8 bytes per pixel (RGBA16), in case a decoder allocates beyond what the header says.
        let mut guard = Limits::default();
        guard.max_alloc = Some(limits.max_pixels.saturating_mul(8).saturating_add(DECODER_WORKING_BYTES));
        decoder.set_limits(guard).map_err(|e| map_image_error(e, Some(&too_many)))?;

        let color = decoder.color_type();
        let total = usize::try_from(decoder.total_bytes()).map_err(|_| DetectError::TooManyPixels {
            width,
            height,
            max: limits.max_pixels,
        })?;
        self.raw.clear();
        self.raw.resize(total, 0);
        decoder.read_image(&mut self.raw).map_err(|e| map_image_error(e, Some(&too_many)))?;
        if format == ImageFormat::Jpeg && !jpeg_is_complete(encoded) {
            // zune-jpeg pads a truncated scan with grey and reports success; a frame cut off in
            // transit must be refused, not detected on.
            return Err(DetectError::Corrupt("truncated JPEG: no end-of-image marker".into()));
        }
        to_rgb8(color, &mut self.raw, &mut self.rgb)?;
        self.width = width;
        self.height = height;
        self.valid = true;
        Ok((width, height))
    }
}

impl Frame {
    /// Takes `pixels`, already RGB8 rows of `width` x `height` (a raw tensor), within the same
    /// limits as decoded images; returns the width and height.
    pub(crate) fn take_rgb(
        &mut self,
        pixels: &[u8],
        width: u32,
        height: u32,
        limits: &DecodeLimits,
    ) -> Result<(u32, u32), DetectError> {
        self.valid = false;
        release_if_huge(&mut self.rgb);
        if pixels.is_empty() {
            return Err(DetectError::Empty);
        }
        let count = u64::from(width) * u64::from(height);
        if count > limits.max_pixels {
            return Err(DetectError::TooManyPixels { width, height, max: limits.max_pixels });
        }
        if count == 0 || pixels.len() as u64 != count * 3 {
            return Err(DetectError::Corrupt(format!(
                "{} bytes are not a {width}x{height} RGB image ({} bytes)",
                pixels.len(),
                count * 3
            )));
        }
        self.rgb.clear();
        self.rgb.extend_from_slice(pixels);
        self.width = width;
        self.height = height;
        self.valid = true;
        Ok((width, height))
    }
}

fn release_if_huge(buf: &mut Vec<u8>) {
    if buf.capacity() > KEEP_BUFFER_BYTES {
        *buf = Vec::new();
    }
}

/// Maps `image`'s errors onto decisions. `too_many` is the error to report for a limits
/// failure once the header size is known.
fn map_image_error(e: ImageError, too_many: Option<&DetectError>) -> DetectError {
    match e {
        ImageError::Unsupported(_) => DetectError::UnsupportedFormat,
        ImageError::Limits(l) => match too_many {
            Some(t) => t.clone(),
            None => DetectError::Corrupt(l.to_string()),
        },
        other => DetectError::Corrupt(other.to_string()),
    }
}

/// True when a JPEG has an end-of-image marker after its last start-of-scan marker.
///
/// Markers are `FF xx` with `xx` not 0x00 (a stuffed byte) inside entropy-coded data, so
/// `FF D9` cannot occur inside a scan. An EXIF thumbnail's own SOS/EOI sit before the main
/// image's SOS, so they do not fool the check.
fn jpeg_is_complete(data: &[u8]) -> bool {
    let last_sos = data.windows(2).rposition(|w| w == [0xFF, 0xDA]);
    let last_eoi = data.windows(2).rposition(|w| w == [0xFF, 0xD9]);
    matches!((last_sos, last_eoi), (Some(s), Some(e)) if e > s)
}

/// Converts the decoder's native layout into packed RGB8, reusing `rgb`.
///
/// Matches `image`'s `DynamicImage::to_rgb8`: grey is replicated, alpha is dropped (not
/// composited), 16-bit samples round to 8 bits as `(v + 128) / 257`.
fn to_rgb8(color: ColorType, raw: &mut Vec<u8>, rgb: &mut Vec<u8>) -> Result<(), DetectError> {
    let from16 = |lo_hi: &[u8]| -> u8 {
        let v = u32::from(u16::from_ne_bytes([lo_hi[0], lo_hi[1]]));
        // (v + 128) / 257 <= 255 for every u16, so the cast cannot truncate.
        ((v + 128) / 257) as u8
    };
    if color == ColorType::Rgb8 {
        // Already in the right layout: swap buffers instead of copying.
        std::mem::swap(raw, rgb);
        return Ok(());
    }
    rgb.clear();
    match color {
        ColorType::L8 => raw.iter().for_each(|&v| rgb.extend_from_slice(&[v, v, v])),
        ColorType::La8 => raw.chunks_exact(2).for_each(|p| rgb.extend_from_slice(&[p[0]; 3])),
        ColorType::Rgba8 => raw.chunks_exact(4).for_each(|p| rgb.extend_from_slice(&p[..3])),
        ColorType::L16 => raw.chunks_exact(2).for_each(|p| rgb.extend_from_slice(&[from16(p); 3])),
        ColorType::La16 => {
            raw.chunks_exact(4).for_each(|p| rgb.extend_from_slice(&[from16(&p[..2]); 3]));
        }
        ColorType::Rgb16 | ColorType::Rgba16 => {
            let step = if color == ColorType::Rgb16 { 6 } else { 8 };
            raw.chunks_exact(step).for_each(|p| {
                rgb.extend_from_slice(&[from16(&p[0..2]), from16(&p[2..4]), from16(&p[4..6])]);
            });
        }
        _ => return Err(DetectError::UnsupportedFormat),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jpeg_completeness() {
        assert!(jpeg_is_complete(&[0xFF, 0xD8, 0xFF, 0xDA, 1, 2, 0xFF, 0x00, 0xFF, 0xD9]));
        assert!(!jpeg_is_complete(&[0xFF, 0xD8, 0xFF, 0xDA, 1, 2, 0xFF, 0x00]));
        // A thumbnail's EOI before the main scan does not count.
        assert!(!jpeg_is_complete(&[0xFF, 0xD8, 0xFF, 0xDA, 0xFF, 0xD9, 0xFF, 0xDA, 1, 2]));
    }

    #[test]
    fn sixteen_bit_rounding_matches_image() {
        let mut raw = Vec::new();
        for v in [0u16, 128, 65535, 32896] {
            raw.extend_from_slice(&v.to_ne_bytes());
        }
        let mut rgb = Vec::new();
        to_rgb8(ColorType::L16, &mut raw, &mut rgb).unwrap();
        assert_eq!(rgb, [0, 0, 0, 0, 0, 0, 255, 255, 255, 128, 128, 128]);
    }
}
