//! Building each case of the corpus: shared buffers made once, then one frame per call with
//! its random variation.

use std::time::Duration;

use async_nats::HeaderMap;
use bytes::Bytes;
use edgepool_wire::frame::{FRAMES_PREFIX, header};
use edgepool_wire::{CameraId, ContentType};
use time::OffsetDateTime;

use super::craft::{self, PngColor, Rng};
use super::{BadFrame, Case, Clock, Spec, headers_wire_size, rfc3339};

/// Shared inputs and buffers of one corpus.
pub(super) struct Gen {
    rng: Rng,
    camera: String,
    now: OffsetDateTime,
    max_payload: usize,
    jpegs: Vec<Bytes>,
    pngs: Vec<Bytes>,
    /// Valid all-zero PNGs declaring far more pixels than the detector allows.
    bombs: Vec<Bytes>,
    /// `pngs` with a broken IHDR CRC, one each.
    bad_crc: Vec<Bytes>,
    /// JPEG magic and junk, `max_payload + 64 KiB` long: at/over-limit frames are slices of it.
    big: Bytes,
}

/// Pixel counts beyond `DecodeLimits::default().max_pixels` (40 M), from barely to absurdly.
const HUGE_JPEG: &[(u16, u16)] = &[(65000, 65000), (65535, 65535), (8000, 5001), (65535, 700)];
const HUGE_PNG: &[(u32, u32, PngColor)] = &[
    (100_000, 100_000, PngColor::Gray8),
    (20_000, 20_000, PngColor::Rgba16),
    (0x7FFF_FFFF, 1, PngColor::Gray8),
    (1, 40_000_001, PngColor::Rgb8),
];

impl Gen {
    pub(super) fn new(
        good: &[(String, ContentType, Bytes)],
        camera: &CameraId,
        max_payload: usize,
        seed: u64,
        now: OffsetDateTime,
    ) -> Self {
        let mut rng = Rng::new(seed);
        let of = |ct| good.iter().filter(|(_, c, _)| *c == ct).map(|(_, _, b)| b.clone()).collect::<Vec<_>>();
        let (mut jpegs, mut pngs) = (of(ContentType::Jpeg), of(ContentType::Png));
        if jpegs.is_empty() || pngs.is_empty() {
            let (jpeg, png) = fallback_images();
            if jpegs.is_empty() {
                jpegs.push(jpeg);
            }
            if pngs.is_empty() {
                pngs.push(png);
            }
        }
        // Built once: ~390 KB, ~140 KB and ~40 KB, decoding to 400 MB, 144 MB and 41 MB.
        let bombs = [(20_000, 20_000, PngColor::Gray8), (8000, 6000, PngColor::Rgb8), (6400, 6400, PngColor::Gray8)]
            .into_iter()
            .map(|(w, h, c)| Bytes::from(craft::zero_png(w, h, c)))
            .collect();
        let bad_crc = pngs
            .iter()
            .map(|p| {
                let mut v = p.to_vec();
                // IHDR's CRC is at 8 (signature) + 8 (length, type) + 13 (data).
                if let Some(b) = v.get_mut(29 + rng.range(0, 4)) {
                    *b ^= 1 << rng.range(0, 8);
                }
                Bytes::from(v)
            })
            .collect();
        let mut big = vec![0xFF, 0xD8, 0xFF, 0xFE, 0x00, 0x10];
        big.extend(rng.bytes(max_payload.saturating_add(64 * 1024)).into_iter().map(no_marker));
        Self { rng, camera: camera.to_string(), now, max_payload, jpegs, pngs, bombs, bad_crc, big: Bytes::from(big) }
    }

    pub(super) fn build(&mut self, spec: &Spec, seq: u64) -> BadFrame {
        let cam = self.camera.clone();
        let now = rfc3339(self.now);
        let seq_s = seq.to_string();
        let msg_id = format!("{cam}-{seq}");
        // The contract's four headers, with this content type and payload.
        let frame = |ct: &str, payload: Bytes| Parts {
            token: cam.clone(),
            headers: vec![
                (header::MSG_ID, msg_id.clone()),
                (header::CONTENT_TYPE, ct.to_owned()),
                (header::SEQ, seq_s.clone()),
                (header::CAPTURED_AT, now.clone()),
            ],
            payload,
            clock: Clock::Now,
        };
        let (jpeg, png) = (self.rng.pick(&self.jpegs).clone(), self.rng.pick(&self.pngs).clone());
        let (ct_jpeg, ct_png) = (ContentType::Jpeg.as_str(), ContentType::Png.as_str());
        let any_good = if self.rng.range(0, 2) == 0 { (ct_jpeg, jpeg.clone()) } else { (ct_png, png.clone()) };
        let r = &mut self.rng;
        let parts = match spec.case {
            Case::TruncatedJpeg => {
                // Keep the magic, lose at least the end-of-image marker's second byte.
                let eoi = craft::jpeg_last_eoi(&jpeg).unwrap_or(jpeg.len().saturating_sub(1));
                frame(ct_jpeg, jpeg.slice(..r.range(3, eoi + 2)))
            }
            Case::TruncatedPng => {
                // Cut before the last 64 bytes of image data, so rows are really missing (a PNG
                // cut only in its trailing CRC or IEND still decodes).
                let end = craft::png_last_idat_end(&png).unwrap_or(png.len()).saturating_sub(64);
                frame(ct_png, png.slice(..r.range(8, end)))
            }
            Case::ZeroBytes => frame(if r.range(0, 2) == 0 { ct_jpeg } else { ct_png }, Bytes::new()),
            Case::RandomBytes => {
                let len = r.range(1, 64 * 1024);
                let mut b = r.bytes(len);
                b[0] &= 0x7F; // neither JPEG's 0xFF nor PNG's 0x89
                frame(if r.range(0, 2) == 0 { ct_jpeg } else { ct_png }, b.into())
            }
            Case::JunkAfterJpegMagic => {
                // SOI, then a comment segment, then junk without a single marker byte.
                let mut b = vec![0xFF, 0xD8, 0xFF, 0xFE, 0x00, 0x10];
                let len = r.range(16, 64 * 1024);
                b.extend(r.bytes(len).into_iter().map(no_marker));
                frame(ct_jpeg, b.into())
            }
            Case::JunkAfterPngMagic => {
                let mut b = craft::PNG_SIGNATURE.to_vec();
                let len = r.range(1, 64 * 1024);
                b.extend(r.bytes(len));
                frame(ct_png, b.into())
            }
            Case::BombPng => frame(ct_png, r.pick(&self.bombs).clone()),
            Case::HugePngHeader => {
                let &(w, h, color) = r.pick(HUGE_PNG);
                frame(ct_png, craft::png(w, h, color, &craft::zlib_zeros(4096)).into())
            }
            Case::HugeJpegHeader => {
                let &(w, h) = r.pick(HUGE_JPEG);
                frame(ct_jpeg, craft::jpeg_with_size(&jpeg, w, h).map_or(jpeg, Bytes::from))
            }
            Case::ZeroSizePng => {
                let (w, h) = *r.pick(&[(0, 480), (640, 0), (0, 0)]);
                frame(ct_png, craft::png(w, h, PngColor::Rgb8, &craft::zlib_zeros(4096)).into())
            }
            Case::ZeroSizeJpeg => {
                let (w, h) = *r.pick(&[(0, 480), (640, 0), (0, 0)]);
                frame(ct_jpeg, craft::jpeg_with_size(&jpeg, w, h).map_or(jpeg, Bytes::from))
            }
            Case::BadCrcPng => frame(ct_png, r.pick(&self.bad_crc).clone()),
            Case::WrongContentType => {
                let ct = *r.pick(&[
                    "text/plain",
                    "application/octet-stream",
                    "image/gif",
                    "image/webp",
                    "jpeg",
                    "image/jpeg2000",
                ]);
                frame(ct, any_good.1)
            }
            Case::SwappedContentType => {
                if r.range(0, 2) == 0 {
                    frame(ct_png, jpeg)
                } else {
                    frame(ct_jpeg, png)
                }
            }
            Case::DuplicateContentType => {
                // The first value counts; a second, valid one does not rescue the frame.
                let mut p = frame("text/plain", any_good.1);
                p.headers.push((header::CONTENT_TYPE, any_good.0.to_owned()));
                p
            }
            Case::MissingSeq | Case::MissingCapturedAt | Case::MissingContentType => {
                let drop = match spec.case {
                    Case::MissingSeq => header::SEQ,
                    Case::MissingCapturedAt => header::CAPTURED_AT,
                    _ => header::CONTENT_TYPE,
                };
                let mut p = frame(any_good.0, any_good.1);
                p.headers.retain(|(name, _)| *name != drop);
                p
            }
            Case::OnlyMsgId => {
                let mut p = frame(any_good.0, any_good.1);
                p.headers.retain(|(name, _)| *name == header::MSG_ID);
                p
            }
            Case::LowercaseHeaderNames => {
                // NATS header names are case-sensitive: these are not the contract's headers.
                let mut p = frame(any_good.0, any_good.1);
                p.lowercase_header_names();
                p
            }
            Case::BadSeq => {
                let mut p = frame(any_good.0, any_good.1);
                let bad = r.pick(&["-3", "abc", "18446744073709551616", "1e9", "0x10", "１２", "4 2", "+-1"]);
                p.set(header::SEQ, (*bad).to_owned());
                p
            }
            Case::HugeHeaderValue => {
                let mut p = frame(any_good.0, any_good.1);
                let len = r.range(4096, 32 * 1024);
                p.set(header::SEQ, "9".repeat(len));
                p
            }
            Case::AbsurdCapturedAt => {
                let mut p = frame(any_good.0, any_good.1);
                let bad = r.pick(&[
                    "yesterday",
                    "2026-13-45T25:61:61Z",
                    "1732700000",
                    "2026-11-27 18:00:00",
                    "2026-11-27T18:00:00",
                    "0000-01-01T00:00:00+00:01",
                    "99999-01-01T00:00:00Z",
                ]);
                p.set(header::CAPTURED_AT, (*bad).to_owned());
                p.clock = Clock::Fixed;
                p
            }
            Case::FutureCapturedAt => {
                // Well beyond the worker's 5 min skew bound, so a frame published late still is.
                let mut p = frame(any_good.0, any_good.1);
                let ahead = *r.pick(&[None, Some(1800), Some(86_400), Some(365 * 86_400)]);
                match ahead {
                    Some(s) => {
                        p.clock = Clock::Ahead(Duration::from_secs(s));
                        p.set(header::CAPTURED_AT, rfc3339(self.now + Duration::from_secs(s)));
                    }
                    None => {
                        p.clock = Clock::Fixed;
                        p.set(header::CAPTURED_AT, "9999-12-31T23:59:59.999999999Z".to_owned());
                    }
                }
                p
            }
            Case::BadMsgId => {
                // Unique, and never another frame's `<camera>-<seq>`.
                let mut p = frame(any_good.0, any_good.1);
                let id = match r.range(0, 4) {
                    0 => format!("{cam}-{seq}-retry"),
                    1 => format!("{cam}-0{seq}"),
                    2 => format!("{seq}-{cam}"),
                    _ => format!("other-{seq}"),
                };
                p.set(header::MSG_ID, id);
                p
            }
            Case::InvalidCamera => {
                // One subject token (FRAMES takes `frames.*` only), never a wildcard or space.
                let token = match r.range(0, 8) {
                    0 => "_reserved".to_owned(),
                    1 => "_invalid".to_owned(),
                    2 => "x".repeat(65),
                    3 => "cam%1".to_owned(),
                    4 => "cam!1".to_owned(),
                    5 => "kamera-ü".to_owned(),
                    6 => "cam#1".to_owned(),
                    _ => "a:b/c".to_owned(),
                };
                let mut p = frame(any_good.0, any_good.1);
                p.set(header::MSG_ID, format!("{token}-{seq}"));
                p.token = token;
                p
            }
            Case::HugeHeadersAtMaxPayload => {
                let mut p = frame(ct_jpeg, Bytes::new());
                p.headers.push(("X-Camera-Notes", "n".repeat(r.range(8 * 1024, 32 * 1024))));
                let room = self.max_payload.saturating_sub(p.wire_size());
                p.payload = self.big.slice(..room.min(self.big.len()));
                p
            }
            Case::AtMaxPayload | Case::OverMaxPayload => {
                let mut p = frame(ct_jpeg, Bytes::new());
                let room = self.max_payload.saturating_sub(p.wire_size());
                let len = match spec.case {
                    Case::AtMaxPayload => room,
                    _ => room + 1 + r.range(0, 64 * 1024),
                };
                p.payload = self.big.slice(..len.min(self.big.len()));
                p
            }
        };
        parts.into_frame(spec)
    }
}

/// A frame under construction: headers as an ordered list, so cases can drop or repeat one.
struct Parts {
    token: String,
    headers: Vec<(&'static str, String)>,
    payload: Bytes,
    clock: Clock,
}

impl Parts {
    fn set(&mut self, name: &'static str, value: String) {
        for (n, v) in &mut self.headers {
            if *n == name {
                *v = value.clone();
            }
        }
    }

    fn lowercase_header_names(&mut self) {
        for (name, _) in &mut self.headers {
            *name = match *name {
                header::CONTENT_TYPE => "content-type",
                header::SEQ => "edgepool-seq",
                header::CAPTURED_AT => "edgepool-captured-at",
                other => other,
            };
        }
        self.clock = Clock::Fixed;
    }

    fn header_map(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in &self.headers {
            h.append(*name, value.as_str());
        }
        h
    }

    fn wire_size(&self) -> usize {
        headers_wire_size(&self.header_map()) + self.payload.len()
    }

    fn into_frame(self, spec: &Spec) -> BadFrame {
        let has_time = self.headers.iter().any(|(n, _)| *n == header::CAPTURED_AT);
        BadFrame {
            case: spec.name,
            subject: format!("{FRAMES_PREFIX}.{}", self.token),
            headers: self.header_map(),
            payload: self.payload,
            expect: spec.expect,
            clock: if has_time { self.clock } else { Clock::Fixed },
        }
    }
}

/// Junk that cannot contain a JPEG marker (every marker starts with 0xFF).
fn no_marker(b: u8) -> u8 {
    if b == 0xFF { 0x00 } else { b }
}

/// A small JPEG and PNG of our own, for a `good` set that lacks one of the formats.
fn fallback_images() -> (Bytes, Bytes) {
    let img = image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([(x * 4) as u8, (y * 5) as u8, 128]));
    let encode = |format| {
        let mut out = std::io::Cursor::new(Vec::new());
        // Encoding a small in-memory RGB image into a Vec cannot fail for JPEG or PNG.
        img.write_to(&mut out, format).map_or_else(|_| Bytes::new(), |()| Bytes::from(out.into_inner()))
    };
    (encode(image::ImageFormat::Jpeg), encode(image::ImageFormat::Png))
}
