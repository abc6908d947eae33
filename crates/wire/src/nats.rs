//! NATS glue for the contract: connection settings, frame headers, and the stream and consumer
//! definitions of `nats/`, applied idempotently.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use async_nats::{HeaderMap, ServerAddr};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::frame::{FrameMeta, TimeOutOfRange, format_time, header};
use crate::ids::msg_id;

/// The FRAMES work queue.
pub const FRAMES: &str = "FRAMES";
/// Results, replayable.
pub const DETECTIONS: &str = "DETECTIONS";
/// Frames that failed for good.
pub const DEADLETTER: &str = "DEADLETTER";
/// The one durable pull consumer every worker shares.
pub const DETECTORS: &str = "detectors";

/// The definitions in `nats/`, compiled in so every binary applies the same thing.
pub const STREAM_FILES: [(&str, &str); 3] = [
    (FRAMES, include_str!("../../../nats/streams/FRAMES.json")),
    (DETECTIONS, include_str!("../../../nats/streams/DETECTIONS.json")),
    (DEADLETTER, include_str!("../../../nats/streams/DEADLETTER.json")),
];
/// `nats/consumers/FRAMES.detectors.json`.
pub const DETECTORS_FILE: &str = include_str!("../../../nats/consumers/FRAMES.detectors.json");
/// `nats/nats-server.conf`, for the embedded broker.
pub const SERVER_CONF: &str = include_str!("../../../nats/nats-server.conf");

/// A secret string: never printed by `Debug`, `Display` or `Serialize`.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    #[must_use]
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

/// The prefix of a client's reply subjects (`<prefix>.<id>`): where JetStream publish acks, API
/// replies and pull-consumer deliveries arrive. Default `_INBOX`, NATS's own. With the users of
/// `nats/auth.conf` each user may subscribe only to its own `_INBOX_<user>.>`, so no role can
/// read another's replies; each then connects with that prefix (docs/security.md).
///
/// One or more `.`-separated subject tokens without wildcards or whitespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct InboxPrefix(String);

/// Why an inbox prefix was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid inbox prefix {0:?}: want `.`-separated subject tokens without `*`, `>` or spaces")]
pub struct InboxPrefixError(String);

impl InboxPrefix {
    /// NATS's default prefix.
    pub const DEFAULT: &str = "_INBOX";

    pub fn new(prefix: impl Into<String>) -> Result<Self, InboxPrefixError> {
        let prefix = prefix.into();
        let token_ok = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic() && b != b'*' && b != b'>');
        if prefix.split('.').all(token_ok) { Ok(Self(prefix)) } else { Err(InboxPrefixError(prefix)) }
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for InboxPrefix {
    fn default() -> Self {
        Self(Self::DEFAULT.to_owned())
    }
}

impl<'de> Deserialize<'de> for InboxPrefix {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::new(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// How to reach the broker. Every subcommand takes these (`[nats]` in the config file,
/// `EDGEPOOL_NATS_*` in the environment, `--nats-*` flags).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsConfig {
    /// Server URL(s), comma separated. Empty means "start an embedded server" where a command
    /// supports it (`edgepool demo`), and `nats://127.0.0.1:4222` elsewhere.
    pub url: Option<String>,
    /// A `.creds` file (JWT + NKey seed).
    pub creds: Option<PathBuf>,
    pub user: Option<String>,
    pub password: Option<Secret>,
    pub token: Option<Secret>,
    /// CA bundle to verify the server's certificate; setting it requires TLS.
    pub tls_ca: Option<PathBuf>,
    /// Client certificate and key for mutual TLS.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Require TLS even without a custom CA.
    pub tls_required: bool,
    /// Prefix of this client's reply subjects; under `nats/auth.conf`, `_INBOX_<user>`.
    pub inbox_prefix: InboxPrefix,
    /// Path of the `nats-server` binary for the embedded broker (default: PATH, then the one
    /// `cargo xtask` installed).
    pub server: Option<PathBuf>,
}

/// The default URL when none is configured.
pub const DEFAULT_URL: &str = "nats://127.0.0.1:4222";

impl NatsConfig {
    /// The configured server addresses (or the default).
    pub fn addrs(&self) -> Result<Vec<ServerAddr>, async_nats::Error> {
        let url = self.url.as_deref().filter(|u| !u.trim().is_empty()).unwrap_or(DEFAULT_URL);
        url.split(',').map(|u| u.trim().parse::<ServerAddr>().map_err(Into::into)).collect()
    }

    /// Connects as `name` (shown in the server's connection list).
    ///
    /// `wait_for_server`: long-running roles (workers, sink, cameras) keep retrying until the
    /// broker is up, as pods starting before NATS must; one-shot commands fail fast.
    pub async fn connect(&self, name: &str, wait_for_server: bool) -> Result<async_nats::Client, async_nats::Error> {
        let mut opts = match &self.creds {
            Some(path) => async_nats::ConnectOptions::with_credentials_file(path).await?,
            None => async_nats::ConnectOptions::new(),
        };
        if let (Some(user), Some(pass)) = (&self.user, &self.password) {
            opts = opts.user_and_password(user.clone(), pass.expose().to_owned());
        }
        if let Some(token) = &self.token {
            opts = opts.token(token.expose().to_owned());
        }
        if let Some(ca) = &self.tls_ca {
            opts = opts.add_root_certificates(ca.clone()).require_tls(true);
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            opts = opts.add_client_certificate(cert.clone(), key.clone());
        }
        if self.tls_required {
            opts = opts.require_tls(true);
        }
        opts = opts
            .name(name)
            .custom_inbox_prefix(self.inbox_prefix.as_str())
            .connection_timeout(Duration::from_secs(5))
            // Reconnect forever: a broker restart must never end a worker.
            .max_reconnects(None)
            .reconnect_delay_callback(reconnect_delay)
            .event_callback(|event| async move {
                match event {
                    async_nats::Event::Connected | async_nats::Event::Disconnected => {
                        tracing::info!(%event, "nats connection");
                    }
                    // Server errors include permission violations, e.g. a subscription to an
                    // inbox prefix the user is not granted (`nats.inbox_prefix`).
                    async_nats::Event::SlowConsumer(_)
                    | async_nats::Event::LameDuckMode
                    | async_nats::Event::ServerError(_) => {
                        tracing::warn!(%event, "nats connection");
                    }
                    _ => tracing::debug!(%event, "nats connection"),
                }
            });
        if wait_for_server {
            opts = opts.retry_on_initial_connect();
        }
        Ok(opts.connect(self.addrs()?).await?)
    }
}

/// Delay before reconnect attempt `attempts` (1-based): none for the first, then 50 ms doubling
/// to a cap of 1 s, each with up to 25 % random jitter so a fleet does not reconnect in lockstep.
///
/// async-nats' default caps at 4 s: measured with `edgepool bench chaos broker-kill`, results
/// flowed again ~5 s after a restarted broker was up, most of it clients sleeping in backoff.
/// A second is cheap for an edge fleet of tens of clients, and the broker is back sooner.
#[must_use]
pub fn reconnect_delay(attempts: usize) -> Duration {
    if attempts <= 1 {
        return Duration::ZERO;
    }
    let exp = u32::try_from(attempts - 2).unwrap_or(u32::MAX).min(5);
    let base = Duration::from_millis(50 * 2u64.pow(exp)).min(Duration::from_secs(1));
    // Randomness without a dependency: every RandomState is seeded afresh.
    let random = {
        use std::hash::{BuildHasher as _, Hasher as _};
        std::collections::hash_map::RandomState::new().build_hasher().finish()
    };
    base + base.mul_f64((random % 1000) as f64 / 4000.0)
}

/// Headers of a frame message, as the contract defines them. Fails only for a `captured_at`
/// that RFC 3339 cannot write (see [`format_time`]).
pub fn frame_headers(meta: &FrameMeta) -> Result<HeaderMap, TimeOutOfRange> {
    let mut h = HeaderMap::new();
    h.insert(header::MSG_ID, msg_id(&meta.camera, meta.seq).as_str());
    h.insert(header::CONTENT_TYPE, meta.content_type.as_str());
    h.insert(header::SEQ, meta.seq.to_string().as_str());
    h.insert(header::CAPTURED_AT, format_time(meta.captured_at)?.as_str());
    if let Some(tp) = &meta.traceparent {
        h.insert(header::TRACEPARENT, tp.as_str());
    }
    Ok(h)
}

/// The first value of header `name`, as a string.
#[must_use]
pub fn header_str<'a>(headers: Option<&'a HeaderMap>, name: &str) -> Option<&'a str> {
    headers?.get(name).map(async_nats::HeaderValue::as_str)
}

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

    let desired: Value = serde_json::from_str(DETECTORS_FILE)?;
    let config: consumer::pull::Config = serde_json::from_value(desired.clone())?;
    let frames = js.get_stream(FRAMES).await?;
    let change = match frames.consumer_info(DETECTORS).await {
        Ok(info) => {
            let current = serde_json::to_value(&info.config)?;
            let fields = diff(&desired, &current);
            if fields.is_empty() {
                Change::Unchanged
            } else {
                frames.update_consumer(config).await?;
                Change::Updated { fields }
            }
        }
        Err(e) if matches!(e.kind(), jetstream::context::ConsumerInfoErrorKind::NotFound) => {
            frames.create_consumer(config).await?;
            Change::Created
        }
        Err(e) => return Err(e.into()),
    };
    report.push(Applied { kind: "consumer", name: format!("{FRAMES}/{DETECTORS}"), change });

    // The fleet registry: a key-value bucket whose entries expire unless refreshed.
    let change = match js.get_key_value(crate::fleet::BUCKET).await {
        Ok(_) => Change::Unchanged,
        Err(_) => {
            js.create_key_value(jetstream::kv::Config {
                bucket: crate::fleet::BUCKET.to_owned(),
                description: "edgepool workers: id, arch, slots, measured frames/s (expire when not refreshed)".into(),
                history: 1,
                max_age: crate::fleet::TTL,
                storage: stream::StorageType::Memory,
                num_replicas: opts.replicas.unwrap_or(1),
                ..Default::default()
            })
            .await?;
            Change::Created
        }
    };
    report.push(Applied { kind: "kv", name: crate::fleet::BUCKET.to_owned(), change });
    Ok(report)
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
    }

    #[test]
    fn reconnects_back_off_to_a_second_with_jitter() {
        assert_eq!(reconnect_delay(0), Duration::ZERO);
        assert_eq!(reconnect_delay(1), Duration::ZERO);
        let d2 = reconnect_delay(2);
        assert!(d2 >= Duration::from_millis(50) && d2 <= Duration::from_micros(62_500), "{d2:?}");
        for attempts in [7, 8, 50, usize::MAX] {
            let d = reconnect_delay(attempts);
            assert!(d >= Duration::from_secs(1) && d <= Duration::from_millis(1250), "{attempts}: {d:?}");
        }
        let spread: std::collections::BTreeSet<Duration> = (0..20).map(|_| reconnect_delay(9)).collect();
        assert!(spread.len() > 1, "no jitter");
    }

    #[test]
    fn inbox_prefixes_are_subject_tokens() {
        assert_eq!(NatsConfig::default().inbox_prefix.as_str(), "_INBOX");
        for ok in ["_INBOX", "_INBOX_worker", "_INBOX_cam-1", "_I.cam_1"] {
            assert_eq!(InboxPrefix::new(ok).unwrap().as_str(), ok);
        }
        for bad in ["", "_INBOX.>", "_INBOX.*", "a b", "a..b", ".a", "a.", "_INBOX\n"] {
            assert!(InboxPrefix::new(bad).is_err(), "{bad:?}");
        }
        let cfg: NatsConfig = serde_json::from_str(r#"{"inbox_prefix": "_INBOX_sink"}"#).unwrap();
        assert_eq!(cfg.inbox_prefix.as_str(), "_INBOX_sink");
        let err = serde_json::from_str::<NatsConfig>(r#"{"inbox_prefix": "_INBOX.>"}"#).unwrap_err();
        assert!(err.to_string().contains("invalid inbox prefix"), "{err}");
    }

    #[test]
    fn secrets_never_print() {
        let cfg = NatsConfig { password: Some(Secret::new("hunter2")), ..Default::default() };
        assert!(!format!("{cfg:?}").contains("hunter2"));
        assert!(!serde_json::to_string(&cfg).unwrap().contains("hunter2"));
    }

    #[test]
    fn diff_reports_only_changed_keys() {
        let want = serde_json::json!({"max_age": 5, "subjects": ["a"], "description": ""});
        let have = serde_json::json!({"max_age": 5, "subjects": ["b"], "extra": 1});
        assert_eq!(diff(&want, &have), vec![r#"subjects: ["b"] -> ["a"]"#.to_owned()]);
    }
}
