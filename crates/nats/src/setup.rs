//! `edgepool setup`: the streams, consumers and buckets of `nats/`, created or updated to match.

use std::fmt;

use async_nats::jetstream::{self, consumer, stream};
use serde::Serialize;
use serde_json::Value;

use edgepool_wire::{fleet, snapshot};

use crate::{DETECTORS, DETECTORS_FILE, FRAMES, REQUEST_DETECTORS_FILE, REQUESTS, SINK_FILE, STREAM_FILES};

/// What `apply` did to one stream or consumer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Change {
    Created,
    /// Existing, with these settings changed (`key: old -> new`).
    Updated {
        fields: Vec<String>,
    },
    Unchanged,
}

/// One line of the setup report.
#[derive(Debug, Clone, Serialize)]
pub struct Applied {
    pub kind: &'static str,
    pub name: String,
    #[serde(flatten)]
    pub change: Change,
}

impl fmt::Display for Applied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.change {
            Change::Created => write!(f, "{} {}: created", self.kind, self.name),
            Change::Unchanged => write!(f, "{} {}: unchanged", self.kind, self.name),
            Change::Updated { fields } => write!(f, "{} {}: updated {}", self.kind, self.name, fields.join(", ")),
        }
    }
}

/// Options for [`apply`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SetupOptions {
    /// Override every stream's `num_replicas` (3 on a JetStream cluster).
    pub replicas: Option<usize>,
}

/// Creates or updates FRAMES, DETECTIONS, DEADLETTER and the `detectors` consumer so they match
/// `nats/`. Safe to run any number of times; reports what it did.
pub async fn apply(js: &jetstream::Context, opts: SetupOptions) -> Result<Vec<Applied>, async_nats::Error> {
    let mut report = Vec::new();
    for (name, text) in STREAM_FILES {
        let mut desired: Value = serde_json::from_str(text)?;
        if let Some(r) = opts.replicas {
            desired["num_replicas"] = Value::from(r);
        }
        let config: stream::Config = serde_json::from_value(desired.clone())?;
        let change = match js.get_stream(name).await {
            Ok(mut s) => {
                let current = serde_json::to_value(&s.info().await?.config)?;
                let fields = diff(&desired, &current);
                if fields.is_empty() {
                    Change::Unchanged
                } else {
                    js.update_stream(&config).await?;
                    Change::Updated { fields }
                }
            }
            Err(e) if is_not_found(&e) => {
                js.create_stream(config).await?;
                Change::Created
            }
            Err(e) => return Err(e.into()),
        };
        report.push(Applied { kind: "stream", name: name.to_owned(), change });
    }

    for (stream, file) in [(FRAMES, DETECTORS_FILE), (REQUESTS, REQUEST_DETECTORS_FILE)] {
        let change = ensure_consumer(js, stream, file).await?;
        report.push(Applied { kind: "consumer", name: format!("{stream}/{DETECTORS}"), change });
    }

    // The fleet registry: a key-value bucket whose entries expire unless refreshed.
    let change = ensure_kv(
        js,
        jetstream::kv::Config {
            bucket: fleet::BUCKET.to_owned(),
            description: "edgepool workers: id, arch, slots, measured frames/s (expire when not refreshed)".into(),
            history: 1,
            max_age: fleet::TTL,
            storage: stream::StorageType::Memory,
            num_replicas: opts.replicas.unwrap_or(1),
            ..Default::default()
        },
    )
    .await?;
    report.push(Applied { kind: "kv", name: fleet::BUCKET.to_owned(), change });

    // Camera snapshots: the latest processed frame of each camera, for the sink's page and
    // image endpoints. On disk, so a restarted broker still shows every camera at once.
    let change = ensure_kv(
        js,
        jetstream::kv::Config {
            bucket: snapshot::BUCKET.to_owned(),
            description: "edgepool camera snapshots: latest result + frame per camera (key = camera id)".into(),
            history: 1,
            max_age: snapshot::MAX_AGE,
            storage: stream::StorageType::File,
            num_replicas: opts.replicas.unwrap_or(1),
            ..Default::default()
        },
    )
    .await?;
    report.push(Applied { kind: "kv", name: snapshot::BUCKET.to_owned(), change });
    Ok(report)
}

/// Creates or updates the pull consumer of `file` on `stream`.
async fn ensure_consumer(js: &jetstream::Context, stream: &str, file: &str) -> Result<Change, async_nats::Error> {
    let desired: Value = serde_json::from_str(file)?;
    let config: consumer::pull::Config = serde_json::from_value(desired.clone())?;
    let name = config.durable_name.clone().unwrap_or_default();
    let stream = js.get_stream(stream).await?;
    Ok(match stream.consumer_info(&name).await {
        Ok(info) => {
            let current = serde_json::to_value(&info.config)?;
            let fields = diff(&desired, &current);
            if fields.is_empty() {
                Change::Unchanged
            } else {
                stream.update_consumer(config).await?;
                Change::Updated { fields }
            }
        }
        Err(e) if matches!(e.kind(), jetstream::context::ConsumerInfoErrorKind::NotFound) => {
            stream.create_consumer(config).await?;
            Change::Created
        }
        Err(e) => return Err(e.into()),
    })
}

/// Creates the bucket unless it exists (an existing bucket is left as it is).
async fn ensure_kv(
    js: &jetstream::Context,
    config: jetstream::kv::Config,
) -> Result<Change, jetstream::context::CreateKeyValueError> {
    if js.get_key_value(&config.bucket).await.is_ok() {
        return Ok(Change::Unchanged);
    }
    js.create_key_value(config).await?;
    Ok(Change::Created)
}

fn is_not_found(e: &jetstream::context::GetStreamError) -> bool {
    matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(js)
        if js.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND)
}

/// Keys of `desired` whose value differs on the server (the server fills in defaults for keys
/// the file leaves out; those are not ours to compare).
fn diff(desired: &Value, current: &Value) -> Vec<String> {
    let Some(obj) = desired.as_object() else { return Vec::new() };
    let mut out = Vec::new();
    for (k, want) in obj {
        let have = current.get(k).unwrap_or(&Value::Null);
        let same = match (want, have) {
            (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
            (Value::String(a), Value::Null) | (Value::Null, Value::String(a)) => a.is_empty(),
            (Value::Bool(false), Value::Null) => true,
            _ => want == have,
        };
        if !same {
            out.push(format!("{k}: {have} -> {want}"));
        }
    }
    out
}

/// The sink's consumer on DETECTIONS, from `nats/consumers/DETECTIONS.sink.json`, under the
/// durable name `durable`; `replay` delivers the whole stream (`all`) instead of only results
/// that arrive from now on (`new`).
pub fn sink_consumer(durable: &str, replay: bool) -> Result<consumer::pull::Config, serde_json::Error> {
    let mut config: consumer::pull::Config = serde_json::from_str(SINK_FILE)?;
    config.durable_name = Some(durable.to_owned());
    config.deliver_policy = if replay { consumer::DeliverPolicy::All } else { consumer::DeliverPolicy::New };
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_parse_into_typed_configs() {
        for (name, text) in STREAM_FILES {
            let c: stream::Config = serde_json::from_str(text).unwrap();
            assert_eq!(c.name, name);
        }
        let c: consumer::pull::Config = serde_json::from_str(DETECTORS_FILE).unwrap();
        assert_eq!(c.durable_name.as_deref(), Some(DETECTORS));
        assert_eq!(c.ack_policy, consumer::AckPolicy::Explicit);
        let c = sink_consumer("sink-2", true).unwrap();
        assert_eq!(c.durable_name.as_deref(), Some("sink-2"));
        assert_eq!(c.deliver_policy, consumer::DeliverPolicy::All);
        assert_eq!(c.ack_policy, consumer::AckPolicy::Explicit);
        assert_eq!(sink_consumer("sink", false).unwrap().deliver_policy, consumer::DeliverPolicy::New);
    }

    #[test]
    fn diff_reports_only_changed_keys() {
        let want = serde_json::json!({"max_age": 5, "subjects": ["a"], "description": ""});
        let have = serde_json::json!({"max_age": 5, "subjects": ["b"], "extra": 1});
        assert_eq!(diff(&want, &have), vec![r#"subjects: ["b"] -> ["a"]"#.to_owned()]);
    }
}
