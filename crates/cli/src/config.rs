//! Layered configuration: compiled-in defaults < `--config FILE` (TOML) < `EDGEPOOL_*`
//! environment < command-line flags. Unknown keys and bad values are errors naming the key.
//!
//! Environment variables are `EDGEPOOL_<SECTION>_<KEY>`; the section is one word, so the first
//! `_` after the prefix separates it, and `__` separates deeper levels:
//! `EDGEPOOL_NATS_URL` → `nats.url`, `EDGEPOOL_WORKER_STALE_AFTER=10s` → `worker.stale_after`,
//! `EDGEPOOL_DETECTOR_LIMITS__MAX_BYTES` → `detector.limits.max_bytes`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Value};
use figment::{Figment, Profile};
use serde::{Deserialize, Serialize};

use edgepool_camera::PublisherConfig;
use edgepool_camera::config::{CameraEntry, VideoConfig};
use edgepool_detector::DetectorConfig;
use edgepool_gateway::GatewayConfig;
use edgepool_nats::NatsConfig;
use edgepool_runtime::telemetry::LogConfig;
use edgepool_sink::SinkConfig;
use edgepool_worker::WorkerConfig;

/// Where the model comes from.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// The ONNX file. Default: `<dir>/ssd_mobilenet_v2_coco.onnx`.
    pub path: Option<PathBuf>,
    /// The model cache directory (also used by `tools/model/fetch_model.py`).
    /// Default: `$XDG_CACHE_HOME/edgepool/models` or `~/.cache/edgepool/models`.
    /// Models fetched by `name` are cached here as `<name>-<sha256>.onnx`.
    pub dir: Option<PathBuf>,
    /// Load this model by name from the NATS Object Store bucket `MODELS` (pushed with
    /// `edgepool model push`) instead of `path`, verify its digest, and hot-swap when a new
    /// version is pushed. See docs/models.md.
    pub name: Option<edgepool_worker::models::ModelName>,
}

impl ModelConfig {
    /// The model file this configuration points at.
    #[must_use]
    pub fn resolved_path(&self) -> PathBuf {
        if let Some(p) = &self.path {
            return p.clone();
        }
        match &self.dir {
            Some(d) => d.join(edgepool_detector::MODEL_FILE),
            None => edgepool_detector::default_model_path(),
        }
    }
}

/// The whole configuration. Each subcommand reads the sections it needs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub nats: NatsConfig,
    pub model: ModelConfig,
    pub detector: DetectorConfig,
    pub worker: WorkerConfig,
    pub publisher: PublisherConfig,
    pub sink: SinkConfig,
    /// `edgepool gateway`: the DeepStack / CodeProject.AI API.
    pub gateway: GatewayConfig,
    pub log: LogConfig,
    /// Defaults for video cameras (`edgepool camera`).
    pub video: VideoConfig,
    /// Video cameras by id (`[cameras.<id>]`), run by `edgepool camera` without `--source`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub cameras: BTreeMap<String, CameraEntry>,
}

/// The environment prefix.
pub const ENV_PREFIX: &str = "EDGEPOOL_";

/// Env variables that are not config keys (read by tools, not by the binary).
const NOT_CONFIG: &[&str] = &["EDGEPOOL_BLESS", "EDGEPOOL_TEST_PYTHON", crate::alloc::MARK];

/// Turns `EDGEPOOL_*` variables into a nested dictionary (see the module docs).
fn env_dict(vars: impl IntoIterator<Item = (String, String)>) -> anyhow::Result<Dict> {
    let mut root = Dict::new();
    for (name, raw) in vars {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else { continue };
        if NOT_CONFIG.contains(&name.as_str()) || rest.is_empty() {
            continue;
        }
        let lower = rest.to_ascii_lowercase();
        let (section, key) = lower
            .split_once('_')
            .with_context(|| format!("environment variable {name} names no key: use EDGEPOOL_<SECTION>_<KEY>"))?;
        let mut path: Vec<&str> = vec![section];
        path.extend(key.split("__"));
        let value: Value = raw.parse().unwrap_or_else(|e: std::convert::Infallible| match e {});
        insert(&mut root, &path, value);
    }
    Ok(root)
}

fn insert(dict: &mut Dict, path: &[&str], value: Value) {
    match path {
        [] => {}
        [last] => {
            dict.insert((*last).to_owned(), value);
        }
        [first, rest @ ..] => {
            let entry = dict.entry((*first).to_owned()).or_insert_with(|| Value::from(Dict::new()));
            if !matches!(entry, Value::Dict(..)) {
                *entry = Value::from(Dict::new());
            }
            if let Value::Dict(_, inner) = entry {
                insert(inner, rest, value);
            }
        }
    }
}

/// Flag overrides: `(dotted.key, value)` pairs from the command line.
#[derive(Debug, Default, Clone)]
pub struct Overrides(Vec<(String, Value)>);

impl Overrides {
    /// Sets `key` when the flag was given.
    pub fn set<T: Into<Value>>(&mut self, key: &str, value: Option<T>) -> &mut Self {
        if let Some(v) = value {
            self.0.push((key.to_owned(), v.into()));
        }
        self
    }

    /// Sets `key` to a path when the flag was given.
    pub fn path(&mut self, key: &str, value: Option<&Path>) -> &mut Self {
        self.set(key, value.map(|p| p.to_string_lossy().into_owned()))
    }

    /// True when no flag set a key.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The keys set, in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(k, _)| k.as_str())
    }

    /// Appends `other`'s overrides (they win over earlier ones).
    pub fn extend(&mut self, other: &Self) {
        self.0.extend(other.0.iter().cloned());
    }

    fn dict(&self) -> Dict {
        let mut root = Dict::new();
        for (k, v) in &self.0 {
            let path: Vec<&str> = k.split('.').collect();
            insert(&mut root, &path, v.clone());
        }
        root
    }
}

/// Loads the configuration from the layers, in order. `env` is the process environment in
/// `main` and a fixed list in tests.
pub fn load(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
    flags: &Overrides,
) -> anyhow::Result<Config> {
    let mut fig = Figment::from(Serialized::defaults(Config::default()));
    if let Some(f) = file {
        anyhow::ensure!(f.is_file(), "config file {} does not exist", f.display());
        fig = fig.merge(Toml::file_exact(f));
    }
    let env = env_dict(env)?;
    fig = fig.merge(Serialized::from(env, Profile::Default));
    fig = fig.merge(Serialized::from(flags.dict(), Profile::Default));
    let cfg: Config = fig.extract().map_err(describe)?;
    cfg.worker.validate().map_err(anyhow::Error::msg)?;
    cfg.gateway.validate()?;
    Ok(cfg)
}

/// Figment's errors, one per line, each naming the key and where its value came from.
fn describe(err: figment::Error) -> anyhow::Error {
    let lines: Vec<String> = err
        .into_iter()
        .map(|e| {
            let key = if e.path.is_empty() { String::new() } else { format!("{}: ", e.path.join(".")) };
            let from = e.metadata.as_ref().map(|m| format!(" (from {})", m.name)).unwrap_or_default();
            format!("{key}{}{from}", e.kind)
        })
        .collect();
    anyhow::anyhow!("invalid configuration:\n  {}", lines.join("\n  "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn layers_apply_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("edgepool.toml");
        std::fs::write(
            &file,
            "[nats]\nurl = \"nats://file:4222\"\n[worker]\nslots = 3\nlabel = \"from-file\"\nstale_after = \"10s\"\n",
        )
        .unwrap();

        let cfg = load(None, env(&[]), &Overrides::default()).unwrap();
        assert_eq!(cfg.worker.slots, 1, "compiled-in default");

        let cfg = load(Some(&file), env(&[]), &Overrides::default()).unwrap();
        assert_eq!(cfg.worker.slots, 3);
        assert_eq!(cfg.worker.stale_after, std::time::Duration::from_secs(10));

        let e = env(&[("EDGEPOOL_WORKER_SLOTS", "4"), ("EDGEPOOL_NATS_URL", "nats://env:4222"), ("PATH", "/bin")]);
        let cfg = load(Some(&file), e.clone(), &Overrides::default()).unwrap();
        assert_eq!(cfg.worker.slots, 4, "env beats file");
        assert_eq!(cfg.nats.url.as_deref(), Some("nats://env:4222"));
        assert_eq!(cfg.worker.label.as_deref(), Some("from-file"), "file keys env does not set survive");

        let mut flags = Overrides::default();
        flags.set("worker.slots", Some(2u32));
        let cfg = load(Some(&file), e, &flags).unwrap();
        assert_eq!(cfg.worker.slots, 2, "flags beat env");
        assert_eq!(cfg.nats.url.as_deref(), Some("nats://env:4222"));
    }

    #[test]
    fn nested_env_keys() {
        let cfg = load(None, env(&[("EDGEPOOL_DETECTOR_LIMITS__MAX_BYTES", "1234")]), &Overrides::default()).unwrap();
        assert_eq!(cfg.detector.limits.max_bytes, 1234);
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let err = load(None, env(&[("EDGEPOOL_WORKER_SLOTZ", "2")]), &Overrides::default()).unwrap_err();
        assert!(format!("{err:#}").contains("slotz"), "{err:#}");

        let err = load(None, env(&[("EDGEPOOL_WORKER_STALE_AFTER", "soon")]), &Overrides::default()).unwrap_err();
        assert!(format!("{err:#}").contains("worker.stale_after"), "{err:#}");

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "[sink]\nlisten = \"not an address\"\n").unwrap();
        let err = load(Some(&file), env(&[]), &Overrides::default()).unwrap_err();
        assert!(format!("{err:#}").contains("sink.listen"), "{err:#}");

        let err = load(None, env(&[("EDGEPOOL_WORKER_SLOTS", "0")]), &Overrides::default()).unwrap_err();
        assert!(format!("{err:#}").contains("worker.slots"), "{err:#}");

        let err = load(None, env(&[("EDGEPOOL_NOSECTION", "x")]), &Overrides::default()).unwrap_err();
        assert!(format!("{err:#}").contains("EDGEPOOL_NOSECTION"), "{err:#}");
    }

    #[test]
    fn secrets_do_not_print() {
        let cfg = load(None, env(&[("EDGEPOOL_NATS_PASSWORD", "hunter2")]), &Overrides::default()).unwrap();
        assert_eq!(cfg.nats.password.as_ref().map(|s| s.expose()), Some("hunter2"));
        assert!(!format!("{cfg:?}").contains("hunter2"));
        assert!(!toml_like(&cfg).contains("hunter2"));
    }

    fn toml_like(cfg: &Config) -> String {
        serde_json::to_string(cfg).unwrap()
    }
}
