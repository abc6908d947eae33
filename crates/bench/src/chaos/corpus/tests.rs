//! The corpus against the real code: every frame's expected answer is what `FrameMeta::parse`,
//! the worker's clock checks and a real detector session produce.

use std::collections::{BTreeMap, HashSet};
use std::sync::OnceLock;
use std::time::Instant;

use edgepool_detector::{Model, Session};
use edgepool_nats::header_str;
use edgepool_wire::{FrameMeta, header};
use edgepool_worker::WorkerConfig;

use super::craft::{self, PngColor};
use super::*;

const MAX_PAYLOAD: usize = 8 * 1024 * 1024;

fn photos() -> Vec<(String, ContentType, Bytes)> {
    edgepool::cmd::load_images(&[edgepool_harness::fixtures::photos_dir()]).unwrap()
}

fn camera() -> CameraId {
    CameraId::new("bad").unwrap()
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// Loaded once per test binary: a few seconds.
fn model() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| Model::load(&edgepool_harness::fixtures::model_path(), &Default::default()).unwrap())
}

/// What the real code does with `f`, in the worker's order: the broker's size limit, parsing,
/// staleness and clock skew, then decoding (a poison decode error is dead-lettered).
fn verdict(f: &BadFrame, session: &mut Session, now: OffsetDateTime) -> Result<Expect, String> {
    if f.wire_size() > MAX_PAYLOAD {
        return Ok(Expect::RefusedByBroker);
    }
    let h = Some(&f.headers);
    let meta = match FrameMeta::parse(&f.subject, |k| header_str(h, k), &f.payload) {
        Ok(m) => m,
        Err(e) => return Ok(Expect::Poison { kind: e.kind() }),
    };
    let cfg = WorkerConfig::default();
    let age = now - meta.captured_at;
    if age > cfg.stale_after {
        return Err(format!("stale ({age})"));
    }
    if -age > cfg.max_clock_skew {
        return Ok(Expect::Poison { kind: "bad_header" });
    }
    match session.decode(&f.payload) {
        Err(e) if e.is_poison() => Ok(Expect::Poison { kind: e.kind() }),
        Err(e) => Err(format!("transient error {e}")),
        Ok((w, h)) => Err(format!("decodes fine to {w}x{h}")),
    }
}

#[test]
fn deterministic_for_a_seed() {
    let (good, t) = (photos(), now());
    let a = generate_at(&good, &camera(), 1, 300, MAX_PAYLOAD, 42, t);
    let b = generate_at(&good, &camera(), 1, 300, MAX_PAYLOAD, 42, t);
    let c = generate_at(&good, &camera(), 1, 300, MAX_PAYLOAD, 43, t);
    let key = |f: &BadFrame| (f.case, f.subject.clone(), f.headers.clone(), f.payload.clone(), f.expect);
    assert!(a.iter().map(key).eq(b.iter().map(key)));
    assert!(!a.iter().map(key).eq(c.iter().map(key)));
}

#[test]
fn covers_every_case_with_unique_ids() {
    let first = 1_000_000;
    let frames = generate(&photos(), &camera(), first, 1000, MAX_PAYLOAD, 7);
    assert_eq!(frames.len(), 1000);
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for f in &frames {
        *counts.entry(f.case).or_default() += 1;
    }
    println!("{counts:?}");
    assert_eq!(counts.len(), SPECS.len(), "every case appears");

    let ids: HashSet<&str> = frames.iter().filter_map(|f| f.headers.get(header::MSG_ID)).map(|v| v.as_str()).collect();
    assert_eq!(ids.len(), frames.len(), "a unique Nats-Msg-Id on every frame");
    let seqs: Vec<u64> = frames
        .iter()
        .filter(|f| f.subject == "frames.bad")
        .filter_map(|f| header_str(Some(&f.headers), header::SEQ)?.trim().parse().ok())
        .collect();
    assert_eq!(seqs.first(), Some(&first));
    assert_eq!(seqs.iter().collect::<HashSet<_>>().len(), seqs.len(), "seqs are unique");
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "seqs increase");

    let over: Vec<_> = frames.iter().filter(|f| f.expect == Expect::RefusedByBroker).collect();
    assert!(over.iter().all(|f| f.wire_size() > MAX_PAYLOAD));
    let at: Vec<_> =
        frames.iter().filter(|f| matches!(f.case, "at_max_payload" | "huge_headers_at_max_payload")).collect();
    assert!(at.iter().all(|f| f.wire_size() == MAX_PAYLOAD), "exactly at the limit");
    // Big payloads are slices of shared buffers: count each buffer once.
    let mut buffers: BTreeMap<usize, usize> = BTreeMap::new();
    for f in &frames {
        let len = buffers.entry(f.payload.as_ptr() as usize).or_default();
        *len = (*len).max(f.payload.len());
    }
    let held: usize = buffers.values().sum();
    assert!(held < 48 << 20, "the corpus holds {held} bytes of payloads");
}

#[test]
fn stamping_moves_the_time_and_keeps_the_size() {
    let t0 = OffsetDateTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let frames = generate_at(&photos(), &camera(), 1, SPECS.len(), MAX_PAYLOAD, 1, t0);
    let later = t0 + Duration::from_secs(3600) + Duration::from_nanos(5);
    for f in &frames {
        let h = f.stamped_headers(later);
        assert_eq!(headers_wire_size(&h), headers_wire_size(&f.headers), "{}", f.case);
        let at = |h: &HeaderMap| h.get(header::CAPTURED_AT).map(|v| v.as_str().to_owned());
        match f.clock {
            Clock::Now => assert_eq!(at(&h), Some(rfc3339(later))),
            Clock::Ahead(d) => assert_eq!(at(&h), Some(rfc3339(later + d))),
            Clock::Fixed => assert_eq!(at(&h), at(&f.headers)),
        }
    }
}

#[test]
fn crafted_pngs_are_valid() {
    for (w, h, color) in [(300, 200, PngColor::Gray8), (37, 11, PngColor::Rgb8), (5, 3, PngColor::Rgba16)] {
        let img = image::load_from_memory(&craft::zero_png(w, h, color)).unwrap();
        assert_eq!((img.width(), img.height()), (w, h));
        assert!(img.as_bytes().iter().all(|&b| b == 0));
    }
    // 2, 258, 259 and 516 zero bytes: the match/literal boundaries of `zlib_zeros`.
    for (w, h) in [(1, 1), (257, 1), (258, 1), (257, 2)] {
        assert!(image::load_from_memory(&craft::zero_png(w, h, PngColor::Gray8)).is_ok(), "{w}x{h}");
    }
    let bomb = craft::zero_png(20_000, 20_000, PngColor::Gray8);
    assert!(bomb.len() < 400_000, "a 400 MB image in {} bytes", bomb.len());
}

#[test]
fn worker_answers_every_frame_as_expected() {
    let good = photos();
    let started = Instant::now();
    let mut session = model().session();
    let loaded = started.elapsed();

    let t = now();
    for (name, ct, bytes) in &good {
        let mut h = HeaderMap::new();
        h.insert(header::MSG_ID, "good-1");
        h.insert(header::CONTENT_TYPE, ct.as_str());
        h.insert(header::SEQ, "1");
        h.insert(header::CAPTURED_AT, rfc3339(t).as_str());
        let meta = FrameMeta::parse("frames.good", |k| header_str(Some(&h), k), bytes);
        assert!(meta.is_ok(), "{name}: {meta:?}");
        assert!(session.decode(bytes).is_ok(), "{name} decodes");
    }

    let generated = Instant::now();
    let frames = generate(&good, &camera(), 1_000_000, 1000, MAX_PAYLOAD, 0x5eed);
    let generated = generated.elapsed();
    let checked = Instant::now();
    let t = now();
    let mut wrong = Vec::new();
    let mut seen: BTreeMap<&str, (usize, Expect)> = BTreeMap::new();
    for f in &frames {
        let got = verdict(f, &mut session, t);
        if got.as_ref() != Ok(&f.expect) {
            wrong.push(format!(
                "{} ({} bytes, {:?}): expected {:?}, got {got:?}",
                f.case,
                f.payload.len(),
                f.headers,
                f.expect
            ));
        }
        seen.entry(f.case).or_insert((0, f.expect)).0 += 1;
    }
    let checked = checked.elapsed();
    println!("model {loaded:?}, generate {generated:?}, check {checked:?}");
    for (case, (n, expect)) in &seen {
        println!("{case:24} {n:4}  {expect:?}");
    }
    assert!(
        wrong.is_empty(),
        "{} of {} frames:\n{}",
        wrong.len(),
        frames.len(),
        wrong[..wrong.len().min(30)].join("\n")
    );
}
