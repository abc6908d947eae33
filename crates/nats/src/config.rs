//! How a role reaches the broker: URL, credentials, TLS, inbox prefix, reconnect policy.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use async_nats::ServerAddr;
use serde::{Deserialize, Serialize};

use crate::ConnectError;

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
    /// The configured URL list (or the default), as given.
    #[must_use]
    pub fn url_text(&self) -> &str {
        self.url.as_deref().filter(|u| !u.trim().is_empty()).unwrap_or(DEFAULT_URL)
    }

    /// The configured server addresses (or the default).
    pub fn addrs(&self) -> Result<Vec<ServerAddr>, ConnectError> {
        self.url_text()
            .split(',')
            .map(|u| {
                u.trim()
                    .parse::<ServerAddr>()
                    .map_err(|source| ConnectError::BadUrl { url: u.trim().to_owned(), source })
            })
            .collect()
    }

    /// Connects as `name` (shown in the server's connection list).
    ///
    /// `wait_for_server`: long-running roles (workers, sink, cameras) keep trying while no server
    /// answers, as pods starting before NATS must: one WARN says what is wrong and how to fix
    /// it, then a summary every [`UNREACHABLE_SUMMARY_EVERY`] (the caller stops the wait by
    /// dropping the future, e.g. in a `select!` with its shutdown signal). One-shot commands
    /// fail at once. Refused credentials and TLS failures always fail at once: retrying cannot
    /// fix them.
    ///
    /// Once connected, the client reconnects forever; the connection's ups and downs are
    /// logged by [`ConnectionLog`]: one WARN when it drops, a summary with the retry count while
    /// it stays down, one INFO when it is back.
    pub async fn connect(&self, name: &str, wait_for_server: bool) -> Result<async_nats::Client, ConnectError> {
        let addrs = self.addrs()?;
        let url = self.url_text().to_owned();
        let creds = match &self.creds {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|source| ConnectError::Credentials { path: path.clone(), source })?,
            ),
            None => None,
        };
        let log = ConnectionLog::new(url.clone());
        let started = std::time::Instant::now();
        let mut attempts = 0u64;
        let mut last_summary = started;
        loop {
            attempts += 1;
            let opts = self.options(name, creds.as_deref(), &log)?;
            match opts.connect(addrs.clone()).await {
                Ok(client) => {
                    if attempts > 1 {
                        tracing::info!(%url, attempts, waited_s = started.elapsed().as_secs(), "connected to NATS");
                    }
                    return Ok(client);
                }
                Err(source) => {
                    let err = ConnectError::classify(&url, source);
                    if !wait_for_server || !err.is_unreachable() {
                        return Err(err);
                    }
                    if attempts == 1 {
                        tracing::warn!("{err}; waiting for it (retrying every second)");
                    } else if last_summary.elapsed() >= UNREACHABLE_SUMMARY_EVERY {
                        last_summary = std::time::Instant::now();
                        tracing::warn!(%url, attempts, waited_s = started.elapsed().as_secs(), "still no NATS server");
                    }
                    tokio::time::sleep(INITIAL_RETRY).await;
                }
            }
        }
    }

    fn options(
        &self,
        name: &str,
        creds: Option<&str>,
        log: &ConnectionLog,
    ) -> Result<async_nats::ConnectOptions, ConnectError> {
        let mut opts = match (creds, &self.creds) {
            (Some(text), Some(path)) => async_nats::ConnectOptions::with_credentials(text)
                .map_err(|source| ConnectError::Credentials { path: path.clone(), source })?,
            _ => async_nats::ConnectOptions::new(),
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
        let log = log.clone();
        Ok(opts
            .name(name)
            .custom_inbox_prefix(self.inbox_prefix.as_str())
            .connection_timeout(CONNECT_TIMEOUT)
            // Reconnect forever: a broker restart must never end a worker.
            .max_reconnects(None)
            .reconnect_delay_callback(reconnect_delay)
            .event_callback(move |event| {
                let log = log.clone();
                async move {
                    log.event(&event);
                }
            }))
    }
}

/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between attempts while no server answers at start-up.
const INITIAL_RETRY: Duration = Duration::from_secs(1);
/// How often a role still waiting for (or reconnecting to) the broker says so.
pub const UNREACHABLE_SUMMARY_EVERY: Duration = Duration::from_secs(30);

/// Logs a connection's life without a line per reconnect attempt (async-nats logs each event
/// at INFO under the `async_nats` target; the roles' default filter keeps those at WARN).
#[derive(Debug, Clone)]
pub struct ConnectionLog(std::sync::Arc<std::sync::Mutex<LogState>>);

#[derive(Debug)]
struct LogState {
    url: String,
    down_since: Option<std::time::Instant>,
    failed_attempts: u64,
    last_summary: std::time::Instant,
}

impl ConnectionLog {
    fn new(url: String) -> Self {
        Self(std::sync::Arc::new(std::sync::Mutex::new(LogState {
            url,
            down_since: None,
            failed_attempts: 0,
            last_summary: std::time::Instant::now(),
        })))
    }

    /// Folds one connection event into the log; returns what it logged, for tests.
    pub fn event(&self, event: &async_nats::Event) -> Option<String> {
        let mut s = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = std::time::Instant::now();
        match event {
            async_nats::Event::Disconnected => {
                if s.down_since.is_none() {
                    s.down_since = Some(now);
                    s.failed_attempts = 0;
                    s.last_summary = now;
                    let line = format!("lost the NATS connection to {}; reconnecting", s.url);
                    tracing::warn!("{line}");
                    Some(line)
                } else {
                    None
                }
            }
            async_nats::Event::Connected => s.down_since.take().map(|since| {
                let line = format!(
                    "NATS connection to {} is back after {:.1} s ({} failed attempts)",
                    s.url,
                    since.elapsed().as_secs_f64(),
                    s.failed_attempts
                );
                tracing::info!("{line}");
                line
            }),
            async_nats::Event::ClientError(_) if s.down_since.is_some() => {
                s.failed_attempts += 1;
                if now.duration_since(s.last_summary) >= UNREACHABLE_SUMMARY_EVERY {
                    s.last_summary = now;
                    let down = s.down_since.map_or(0.0, |d| d.elapsed().as_secs_f64());
                    let line = format!(
                        "NATS at {} still unreachable: down {down:.0} s, {} reconnect attempts",
                        s.url, s.failed_attempts
                    );
                    tracing::warn!("{line}");
                    Some(line)
                } else {
                    None
                }
            }
            // Server errors include permission violations, e.g. a subscription to an inbox
            // prefix the user is not granted (`nats.inbox_prefix`).
            async_nats::Event::SlowConsumer(_)
            | async_nats::Event::LameDuckMode
            | async_nats::Event::ServerError(_)
            | async_nats::Event::ClientError(_) => {
                tracing::warn!(%event, "nats connection");
                Some(event.to_string())
            }
            _ => {
                tracing::debug!(%event, "nats connection");
                None
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn connection_log_warns_once_then_summarizes_then_says_it_is_back() {
        let log = ConnectionLog::new("nats://127.0.0.1:4222".into());
        let io = || async_nats::Event::ClientError(async_nats::ClientError::Other("nats: IO error".into()));
        let first = log.event(&async_nats::Event::Disconnected).unwrap();
        assert!(first.contains("lost the NATS connection"), "{first}");
        assert!(log.event(&async_nats::Event::Disconnected).is_none(), "one warning per outage");
        for _ in 0..50 {
            assert!(log.event(&io()).is_none(), "no line per attempt");
        }
        log.0.lock().unwrap().last_summary -= UNREACHABLE_SUMMARY_EVERY;
        let summary = log.event(&io()).unwrap();
        assert!(summary.contains("51 reconnect attempts"), "{summary}");
        let back = log.event(&async_nats::Event::Connected).unwrap();
        assert!(back.contains("is back") && back.contains("51 failed attempts"), "{back}");
        assert!(log.event(&async_nats::Event::Connected).is_none(), "nothing to say when already up");
    }

    #[test]
    fn bad_urls_are_named() {
        let cfg = NatsConfig { url: Some("nats://ok:4222, nats://[bad".into()), ..Default::default() };
        let err = cfg.addrs().unwrap_err();
        assert!(err.to_string().contains("nats://[bad"), "{err}");
    }
}
