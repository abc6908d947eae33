//! Why a connection failed, in words a person can act on, with the underlying error kept.

use std::path::PathBuf;

use async_nats::ConnectErrorKind;

/// A failed connection to the broker.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// `nats.url` does not parse.
    #[error("invalid NATS URL {url:?}: want nats://HOST:PORT (or tls://), comma separated")]
    BadUrl {
        url: String,
        #[source]
        source: std::io::Error,
    },
    /// The credentials file is missing or malformed.
    #[error("cannot use the NATS credentials file {}", path.display())]
    Credentials {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Nothing answers at the URL: refused, timed out, or the host is unknown.
    #[error(
        "no NATS server answers at {url} ({reason}).\n  Start one (`cargo xtask tools` installs \
         nats-server; `nats-server -js` runs it), or point --nats-url / EDGEPOOL_NATS_URL at a \
         running server"
    )]
    Unreachable {
        url: String,
        reason: &'static str,
        #[source]
        source: async_nats::ConnectError,
    },
    /// The server refused our credentials (or we gave none and it requires some).
    #[error(
        "the NATS server at {url} refused the credentials ({reason}).\n  Check nats.user and \
         EDGEPOOL_NATS_PASSWORD, nats.creds or nats.token (docs/security.md)"
    )]
    Refused {
        url: String,
        reason: &'static str,
        #[source]
        source: async_nats::ConnectError,
    },
    /// The TLS handshake failed, or TLS was required by one side only.
    #[error(
        "TLS with the NATS server at {url} failed.\n  Check nats.tls_ca (the CA that signed the \
         server's certificate), the host name in the URL, and that both sides use TLS"
    )]
    Tls {
        url: String,
        #[source]
        source: async_nats::ConnectError,
    },
    /// Anything else.
    #[error("connecting to NATS at {url}")]
    Other {
        url: String,
        #[source]
        source: async_nats::ConnectError,
    },
}

impl ConnectError {
    /// Sorts async-nats' error into what a person can act on.
    #[must_use]
    pub fn classify(url: &str, source: async_nats::ConnectError) -> Self {
        let url = url.to_owned();
        let io_kind = std::error::Error::source(&source)
            .and_then(|e| e.downcast_ref::<std::io::Error>())
            .map(std::io::Error::kind);
        match source.kind() {
            ConnectErrorKind::TimedOut => Self::Unreachable { url, reason: "timed out", source },
            ConnectErrorKind::Dns => Self::Unreachable { url, reason: "host name not found", source },
            ConnectErrorKind::Io => {
                let reason = match io_kind {
                    Some(std::io::ErrorKind::ConnectionRefused) => "connection refused",
                    Some(std::io::ErrorKind::TimedOut) => "timed out",
                    Some(std::io::ErrorKind::ConnectionReset) => "connection reset",
                    Some(std::io::ErrorKind::HostUnreachable | std::io::ErrorKind::NetworkUnreachable) => {
                        "host unreachable"
                    }
                    _ => return Self::Other { url, source },
                };
                Self::Unreachable { url, reason, source }
            }
            ConnectErrorKind::AuthorizationViolation => {
                Self::Refused { url, reason: "authorization violation", source }
            }
            ConnectErrorKind::Authentication => Self::Refused { url, reason: "authentication failed", source },
            ConnectErrorKind::Tls => Self::Tls { url, source },
            _ => Self::Other { url, source },
        }
    }

    /// Whether waiting may help: nothing answers (yet).
    #[must_use]
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Self::Unreachable { .. })
    }
}
