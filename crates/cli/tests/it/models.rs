//! Models over NATS against a real nats-server: push, load by name, digest verification and
//! hot-swap under load (docs/models.md).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, object_store::ObjectMetadata};
use edgepool::config::{Config, ModelConfig};
use edgepool_harness::Broker;
use edgepool_nats::FRAMES;
use edgepool_wire::Status;
use edgepool_worker::models::{self, META_SHA256, META_SIZE, ModelError, ModelName, ModelSource, PushChange};
use edgepool_worker::{Engine, WorkerConfig};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::common::{add_worker, cluster, expected_labels, labels, publish_photos, results, wait_results};

const NAME: &str = "ssd_mobilenet_v2_coco";

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs `edgepool model push FILE --name NAME --json` and returns its JSON output.
fn cli_push(url: &str, file: &Path, name: &str) -> serde_json::Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_edgepool"))
        .args(["model", "push", "--json", "--name", name, "--nats-url", url])
        .arg(file)
        .output()
        .unwrap();
    assert!(out.status.success(), "push failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn worker_config(name: &str, dir: &Path) -> Config {
    Config {
        model: ModelConfig { name: Some(ModelName::new(name).unwrap()), dir: Some(dir.to_owned()), path: None },
        ..Config::default()
    }
}

/// Files in `dir`, by name.
fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = match std::fs::read_dir(dir) {
        Ok(rd) => rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_stores_digest_and_size_and_the_same_bytes_twice_are_a_no_op() {
    let server = Broker::single().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("small.onnx");
    // Not a model: push does not parse the file, and several chunks exercise the streaming.
    let bytes: Vec<u8> = (0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(&file, &bytes).unwrap();
    let sha = sha256_hex(&bytes);

    let url = server.url();
    let (f, u) = (file.clone(), url.clone());
    let first = tokio::task::spawn_blocking(move || cli_push(&u, &f, "tiny")).await.unwrap();
    assert_eq!(first["change"], "created", "{first}");
    assert_eq!(first["sha256"], sha.as_str());
    assert_eq!(first["size"], bytes.len());
    assert_eq!(first["version"], format!("tiny@sha256:{}", &sha[..12]));
    let (f, u) = (file.clone(), url.clone());
    let second = tokio::task::spawn_blocking(move || cli_push(&u, &f, "tiny")).await.unwrap();
    assert_eq!(second["change"], "unchanged", "{second}");

    let js = jetstream::new(async_nats::connect(&url).await.unwrap());
    let store = js.get_object_store(models::BUCKET).await.unwrap();
    let info = store.info("tiny").await.unwrap();
    assert_eq!(info.metadata.get(META_SHA256), Some(&sha));
    assert_eq!(info.metadata.get(META_SIZE), Some(&bytes.len().to_string()));
    let stream = js.get_stream("OBJ_MODELS").await.unwrap().get_info().await.unwrap();
    let chunks = stream.state.messages;

    // Unchanged wrote nothing; other bytes under the same name are a new version.
    let name = ModelName::new("tiny").unwrap();
    let again = models::push(&js, &file, &name, 1).await.unwrap();
    assert_eq!(again.change, PushChange::Unchanged);
    assert_eq!(js.get_stream("OBJ_MODELS").await.unwrap().get_info().await.unwrap().state.messages, chunks);
    std::fs::write(&file, b"other bytes").unwrap();
    let updated = models::push(&js, &file, &name, 1).await.unwrap();
    assert_eq!(updated.change, PushChange::Updated { previous: Some(sha) });

    let list = models::list(&js).await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!((list[0].name.as_str(), list[0].sha256.as_deref()), ("tiny", Some(updated.sha256.as_str())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_loads_the_model_by_name_and_results_name_its_version() {
    let mut p = cluster().await;
    let cache = tempfile::tempdir().unwrap();
    let pushed = models::push(&p.js, &edgepool_harness::fixtures::model_path(), &ModelName::new(NAME).unwrap(), 1)
        .await
        .unwrap();
    assert_eq!(pushed.change, PushChange::Created);
    let version = format!("{NAME}@sha256:{}", &pushed.sha256[..12]);

    let watching = CancellationToken::new();
    let engine = edgepool::cmd::worker::model_from_nats(&p.js, &worker_config(NAME, cache.path()), watching.clone())
        .await
        .unwrap();
    assert_eq!(engine.version(), version);
    assert_eq!(files(cache.path()), [format!("{NAME}-{}.onnx", pushed.sha256)], "cached as <name>-<sha256>.onnx");
    add_worker(&mut p, "by-name", WorkerConfig::default(), engine).await;

    let sent = publish_photos(&p, "cam-m", 6, 1).await;
    wait_results(&p, 6, Duration::from_secs(120)).await;
    let results = results(&p.js).await;
    assert_eq!(results.len(), 6);
    for r in &results {
        assert_eq!(r.status, Status::Ok, "{r:?}");
        assert_eq!(r.model, version);
        assert_eq!(labels(r), expected_labels(&sent[&r.seq.unwrap()]));
    }

    // A restart finds the verified file in the cache and downloads nothing.
    let source = ModelSource::open(&p.js, ModelName::new(NAME).unwrap(), cache.path().to_owned(), Default::default())
        .await
        .unwrap();
    let fetched = source.fetch().await.unwrap();
    assert!(fetched.from_cache, "{fetched:?}");
    watching.cancel();
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_mismatch_is_refused_and_a_corrupt_cache_is_replaced() {
    let server = Broker::single().unwrap();
    let js = jetstream::new(async_nats::connect(server.url().as_str()).await.unwrap());
    let tmp = tempfile::tempdir().unwrap();
    let name = ModelName::new("blob").unwrap();
    let open = |dir: &Path| ModelSource::open(&js, name.clone(), dir.to_owned(), Default::default());

    // No bucket, then no such name: clear errors that say what to do.
    let err = open(tmp.path()).await.unwrap_err();
    assert!(matches!(err, ModelError::NoBucket), "{err}");
    assert!(err.to_string().contains("edgepool model push"), "{err}");
    let good: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let file = tmp.path().join("good.onnx");
    std::fs::write(&file, &good).unwrap();
    models::push(&js, &file, &ModelName::new("other").unwrap(), 1).await.unwrap();
    let err = open(tmp.path()).await.unwrap().fetch().await.unwrap_err();
    assert!(matches!(err, ModelError::NotFound { .. }), "{err}");

    // An honest push is downloaded and verified once, then served from the cache.
    let pushed = models::push(&js, &file, &name, 1).await.unwrap();
    let cache = tmp.path().join("cache");
    let source = open(&cache).await.unwrap();
    let first = source.fetch().await.unwrap();
    assert!(!first.from_cache);
    assert_eq!(std::fs::read(&first.path).unwrap(), good);
    assert!(source.fetch().await.unwrap().from_cache);

    // A corrupt cached file is not used: it is downloaded again and verified.
    std::fs::write(&first.path, b"bit rot").unwrap();
    let again = source.fetch().await.unwrap();
    assert!(!again.from_cache);
    assert_eq!(std::fs::read(&again.path).unwrap(), good);

    // Tampered: other bytes under the name, claiming the honest digest.
    let meta = ObjectMetadata {
        name: name.to_string(),
        metadata: HashMap::from([
            (META_SHA256.to_owned(), pushed.sha256.clone()),
            (META_SIZE.to_owned(), good.len().to_string()),
        ]),
        ..Default::default()
    };
    let store = js.get_object_store(models::BUCKET).await.unwrap();
    store.put(meta, &mut &b"evil bytes that are not the model"[..]).await.unwrap();
    let fresh = tmp.path().join("fresh-cache");
    let err = open(&fresh).await.unwrap().fetch().await.unwrap_err();
    match &err {
        ModelError::DigestMismatch { expected, actual, .. } => {
            assert_eq!(expected, &pushed.sha256);
            assert_eq!(actual, &sha256_hex(b"evil bytes that are not the model"));
        }
        other => panic!("expected a digest mismatch, got {other}"),
    }
    assert!(err.to_string().contains("digest mismatch") && err.to_string().contains("refusing"), "{err}");
    assert!(files(&fresh).is_empty(), "the refused download left no file: {:?}", files(&fresh));

    // A worker refuses to start on it, with the same clear error.
    let err = edgepool::cmd::worker::model_from_nats(&js, &worker_config("blob", &fresh), CancellationToken::new())
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("digest mismatch"), "{err:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_swap_under_load_loses_no_frame_and_results_name_the_version_that_ran() {
    let mut p = cluster().await;
    let tmp = tempfile::tempdir().unwrap();
    let name = ModelName::new(NAME).unwrap();
    let v1 = models::push(&p.js, &edgepool_harness::fixtures::model_path(), &name, 1).await.unwrap();
    let v2_file = crate::common::second_model_version(tmp.path());

    let watching = CancellationToken::new();
    let cfg = worker_config(NAME, &tmp.path().join("cache"));
    let engine = edgepool::cmd::worker::model_from_nats(&p.js, &cfg, watching.clone()).await.unwrap();
    let Engine::Live(live) = engine.clone() else { panic!("a model by name is a live engine") };
    // One slot: processing order is result order, so "before" and "after" the swap are exact.
    let wcfg = WorkerConfig { slots: 1, stale_after: Duration::from_secs(600), ..Default::default() };
    add_worker(&mut p, "swapper", wcfg, engine).await;

    let mut sent = publish_photos(&p, "cam-h", 10, 1).await;
    wait_results(&p, 3, Duration::from_secs(120)).await;
    let push = {
        let (js, name, file) = (p.js.clone(), name.clone(), v2_file.clone());
        tokio::spawn(async move { models::push(&js, &file, &name, 1).await })
    };
    // Keep frames coming while v2 is pushed, downloaded and loaded, then ten more.
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut swapped_at_seq = None;
    while swapped_at_seq.is_none() {
        assert!(Instant::now() < deadline, "the worker never swapped to v2");
        let next = *sent.keys().next_back().unwrap() + 1;
        sent.extend(publish_photos(&p, "cam-h", 1, next).await);
        tokio::time::sleep(Duration::from_millis(250)).await;
        if !live.current().version.contains(&v1.sha256[..12]) {
            swapped_at_seq = Some(*sent.keys().next_back().unwrap() + 1);
        }
    }
    let v2 = push.await.unwrap().unwrap();
    assert!(matches!(v2.change, PushChange::Updated { .. }), "{v2:?}");
    let first_after = swapped_at_seq.unwrap();
    sent.extend(publish_photos(&p, "cam-h", 10, first_after).await);
    let total = sent.len() as u64;
    wait_results(&p, total, Duration::from_secs(180)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let (v1_name, v2_name) = (name.version(&v1.sha256), name.version(&v2.sha256));
    let mut results = results(&p.js).await;
    results.sort_by_key(|r| r.processed_at);
    let mut per_seq: BTreeMap<u64, usize> = BTreeMap::new();
    for r in &results {
        assert_eq!(r.status, Status::Ok, "{r:?}");
        *per_seq.entry(r.seq.unwrap()).or_default() += 1;
        assert_eq!(labels(r), expected_labels(&sent[&r.seq.unwrap()]), "{} detects like v1", r.model);
    }
    assert_eq!(per_seq.keys().copied().collect::<Vec<_>>(), sent.keys().copied().collect::<Vec<_>>());
    assert!(per_seq.values().all(|&n| n == 1), "exactly one result per frame: {per_seq:?}");

    let versions: Vec<&str> = results.iter().map(|r| r.model.as_str()).collect();
    let n_v1 = versions.iter().take_while(|v| **v == v1_name).count();
    eprintln!("{} frames: {n_v1} on {v1_name}, then {} on {v2_name}", versions.len(), versions.len() - n_v1);
    assert!(n_v1 >= 3, "results before the swap name v1: {versions:?}");
    assert!(versions[n_v1..].iter().all(|v| *v == v2_name), "after the swap only v2, never back: {versions:?}");
    assert!(versions.len() - n_v1 >= 10, "results after the swap name v2: {versions:?}");
    for r in results.iter().filter(|r| r.seq.unwrap() >= first_after) {
        assert_eq!(r.model, v2_name, "frame {} was published after the swap", r.seq.unwrap());
    }

    let s = p.stats.summary();
    assert_eq!((s.results, s.duplicates, s.errors, s.stale), (total, 0, 0, 0));
    let frames = p.js.get_stream(FRAMES).await.unwrap().get_info().await.unwrap();
    assert_eq!(frames.state.messages, 0, "no frame left behind");
    let cached = files(&tmp.path().join("cache"));
    assert_eq!(cached, [format!("{NAME}-{}.onnx", v2.sha256)], "the old version's file is pruned");
    watching.cancel();
    p.shutdown().await;
}
