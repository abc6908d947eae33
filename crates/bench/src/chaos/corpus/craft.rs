//! Byte-level tools for the bad-input corpus: a seeded PRNG, PNG chunks with real CRCs, a zlib
//! stream of zeros that is tiny for its size (decompression bombs), and JPEG/PNG surgery.

/// SplitMix64: tiny, seedable and good enough to vary test inputs; not for anything secret.
#[derive(Debug, Clone)]
pub(super) struct Rng(u64);

impl Rng {
    pub(super) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(super) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..hi` (`hi` exclusive; `lo` when the range is empty). The modulo bias is
    /// irrelevant for picking test inputs.
    pub(super) fn range(&mut self, lo: usize, hi: usize) -> usize {
        if hi <= lo {
            return lo;
        }
        lo + (self.next_u64() % (hi - lo) as u64) as usize
    }

    pub(super) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.range(0, items.len())]
    }

    pub(super) fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = vec![0; len];
        for chunk in out.chunks_mut(8) {
            chunk.copy_from_slice(&self.next_u64().to_le_bytes()[..chunk.len()]);
        }
        out
    }
}

pub(super) const PNG_SIGNATURE: &[u8; 8] = b"\x89PNG\r\n\x1a\n";

/// IHDR colour types used here, with their channel count.
#[derive(Debug, Clone, Copy)]
pub(super) enum PngColor {
    Gray8,
    Rgb8,
    Rgba16,
}

impl PngColor {
    /// (colour type, bit depth, bytes per pixel)
    fn params(self) -> (u8, u8, u64) {
        match self {
            Self::Gray8 => (0, 8, 1),
            Self::Rgb8 => (2, 8, 3),
            Self::Rgba16 => (6, 16, 8),
        }
    }
}

/// CRC-32 as PNG computes it over a chunk's type and data.
fn crc32(kind: &[u8; 4], data: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(kind);
    h.update(data);
    h.finalize()
}

fn push_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    out.extend_from_slice(&crc32(kind, data).to_be_bytes());
}

/// A PNG with a valid IHDR for `width` x `height` (any values, even 0 or 2^31-1), one IDAT
/// holding `zlib` and an IEND; every CRC is right.
pub(super) fn png(width: u32, height: u32, color: PngColor, zlib: &[u8]) -> Vec<u8> {
    let (color_type, depth, _) = color.params();
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[depth, color_type, 0, 0, 0]);
    let mut out = Vec::with_capacity(zlib.len() + 64);
    out.extend_from_slice(PNG_SIGNATURE);
    push_chunk(&mut out, b"IHDR", &ihdr);
    push_chunk(&mut out, b"IDAT", zlib);
    push_chunk(&mut out, b"IEND", &[]);
    out
}

/// A complete, valid all-black PNG: what a decompression bomb looks like. Its size is about
/// 1/1000 of the decoded image (`zlib_zeros`), so a 20000 x 20000 one is ~390 KB.
pub(super) fn zero_png(width: u32, height: u32, color: PngColor) -> Vec<u8> {
    let (_, _, bpp) = color.params();
    // Each row is a filter-type byte (0, "None") and the pixels: all zero bytes.
    let raw = (1 + u64::from(width) * bpp) * u64::from(height);
    png(width, height, color, &zlib_zeros(raw))
}

/// Where the data of the last IDAT chunk ends (its CRC starts), walking the chunks.
pub(super) fn png_last_idat_end(png: &[u8]) -> Option<usize> {
    let mut pos = PNG_SIGNATURE.len();
    let mut last = None;
    while pos + 8 <= png.len() {
        let len = u32::from_be_bytes(png[pos..pos + 4].try_into().ok()?) as usize;
        let data_end = pos.checked_add(8 + len)?;
        if &png[pos + 4..pos + 8] == b"IDAT" {
            last = Some(data_end);
        }
        pos = data_end + 4;
    }
    last.filter(|&end| end <= png.len())
}

/// LSB-first bit writer, as deflate packs its stream.
#[derive(Default)]
struct Bits {
    out: Vec<u8>,
    acc: u32,
    n: u32,
}

impl Bits {
    /// `len` bits of `v`, least significant first (header fields, extra bits).
    fn value(&mut self, v: u32, len: u32) {
        self.acc |= v << self.n;
        self.n += len;
        while self.n >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.n -= 8;
        }
    }

    /// A Huffman code: deflate sends those most significant bit first.
    fn code(&mut self, code: u32, len: u32) {
        let reversed = (0..len).fold(0, |r, i| r | (((code >> i) & 1) << (len - 1 - i)));
        self.value(reversed, len);
    }

    /// `count` zero bits, fast: a bomb has millions of them.
    fn zeros(&mut self, mut count: u64) {
        while self.n != 0 && count > 0 {
            self.value(0, 1);
            count -= 1;
        }
        self.out.resize(self.out.len() + (count / 8) as usize, 0);
        self.value(0, (count % 8) as u32);
    }

    fn finish(mut self) -> Vec<u8> {
        if self.n > 0 {
            self.out.push(self.acc as u8);
        }
        self.out
    }
}

/// A valid zlib stream that inflates to `len` (>= 1) zero bytes, at 2 bits per 258 bytes: one
/// dynamic-Huffman block whose only codes are literal 0, end of block and "copy 258 bytes from
/// distance 1". Built by hand because no deflate encoder is a dependency, and because it costs
/// nothing to build where compressing gigabytes of zeros would not.
pub(super) fn zlib_zeros(len: u64) -> Vec<u8> {
    let len = len.max(1);
    let mut b = Bits::default();
    b.out.extend_from_slice(&[0x78, 0x01]); // deflate, 32 KiB window, no dictionary
    b.value(1, 1); // BFINAL
    b.value(2, 2); // BTYPE: dynamic Huffman
    b.value(286 - 257, 5); // HLIT: literal/length codes 0..=285
    b.value(2 - 1, 5); // HDIST: distance codes 0 and 1 (a complete 1-bit code)
    b.value(18 - 4, 4); // HCLEN: code-length codes up to symbol 1 in the order below
    // Code-length code: symbol 18 (a run of zeros) = "0", 1 = "10", 2 = "11".
    const ORDER: [u32; 18] = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1];
    for sym in ORDER {
        b.value(
            match sym {
                18 => 1,
                1 | 2 => 2,
                _ => 0,
            },
            3,
        );
    }
    let zeros = |b: &mut Bits, run: u32| {
        b.code(0, 1);
        b.value(run - 11, 7);
    };
    // Literal/length code lengths: 0 -> 2, 1..=255 -> none, 256 -> 2, 257..=284 -> none,
    // 285 -> 1; then the two distance codes -> 1.
    b.code(0b11, 2);
    zeros(&mut b, 138);
    zeros(&mut b, 117);
    b.code(0b11, 2);
    zeros(&mut b, 28);
    for _ in 0..3 {
        b.code(0b10, 2);
    }
    // Canonical codes: 285 = "0", literal 0 = "10", end of block = "11"; distance 0 = "0".
    b.code(0b10, 2); // one literal zero to copy from
    let rest = len - 1;
    b.zeros(2 * (rest / 258)); // 285 + distance code 0: copy 258 bytes from 1 back
    for _ in 0..rest % 258 {
        b.code(0b10, 2);
    }
    b.code(0b11, 2);
    let mut out = b.finish();
    // Adler-32 of `len` zeros: a stays 1, b adds 1 per byte.
    let adler = ((len % 65521) << 16) | 1;
    out.extend_from_slice(&(adler as u32).to_be_bytes());
    out
}

/// The offset of the height field (then the width) in a JPEG's start-of-frame segment, found by
/// walking the marker segments from SOI rather than searching bytes that may be entropy data.
pub(super) fn jpeg_size_offset(jpeg: &[u8]) -> Option<usize> {
    let mut pos = 2;
    while pos + 4 <= jpeg.len() {
        if jpeg[pos] != 0xFF {
            return None;
        }
        match jpeg[pos + 1] {
            0xFF => pos += 1, // fill byte
            0x01 | 0xD0..=0xD7 => pos += 2,
            0xD9 | 0xDA => return None,
            // SOF0..SOF15 (C4 DHT, C8 JPG and CC DAC are not frames): FF Cn Lh Ll P Yh Yl Xh Xl
            0xC0..=0xCF if !matches!(jpeg[pos + 1], 0xC4 | 0xC8 | 0xCC) => {
                return (pos + 9 <= jpeg.len()).then_some(pos + 5);
            }
            _ => pos += 2 + usize::from(u16::from_be_bytes([jpeg[pos + 2], jpeg[pos + 3]])),
        }
    }
    None
}

/// A copy of `jpeg` whose frame header declares `width` x `height`; the rest is untouched.
pub(super) fn jpeg_with_size(jpeg: &[u8], width: u16, height: u16) -> Option<Vec<u8>> {
    let at = jpeg_size_offset(jpeg)?;
    let mut out = jpeg.to_vec();
    out[at..at + 2].copy_from_slice(&height.to_be_bytes());
    out[at + 2..at + 4].copy_from_slice(&width.to_be_bytes());
    Some(out)
}

/// Where the last end-of-image marker starts.
pub(super) fn jpeg_last_eoi(jpeg: &[u8]) -> Option<usize> {
    jpeg.windows(2).rposition(|w| w == [0xFF, 0xD9])
}
