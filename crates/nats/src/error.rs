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
        let io = std::error::Error::source(&source).and_then(|e| e.downcast_ref::<std::io::Error>());
        let io_kind = io.map(std::io::Error::kind);
        // A failed handshake (unknown issuer, bad signature, wrong host name) comes back as an
        // IO error wrapping rustls' error, not as `ConnectErrorKind::Tls`.
        let handshake = io.and_then(std::io::Error::get_ref).is_some_and(|e| e.is::<async_nats::rustls::Error>());
        if handshake {
            return Self::Tls { url, source };
        }
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// async-nats' error for one attempt at `url`, with a short connect timeout.
    async fn attempt(url: &str) -> async_nats::ConnectError {
        async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_millis(500))
            .connect(url)
            .await
            .err()
            .unwrap()
    }

    #[tokio::test]
    async fn nothing_listening_is_unreachable_connection_refused() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = format!("nats://127.0.0.1:{port}");
        let err = ConnectError::classify(&url, attempt(&url).await);
        assert!(err.is_unreachable(), "{err:?}");
        assert!(matches!(err, ConnectError::Unreachable { reason: "connection refused", .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains(&format!("no NATS server answers at {url} (connection refused)")), "{text}");
        let source = std::error::Error::source(&err).unwrap().downcast_ref::<async_nats::ConnectError>().unwrap();
        assert_eq!(source.kind(), ConnectErrorKind::Io, "async-nats' error is kept as the source");
    }

    #[tokio::test]
    async fn a_silent_listener_is_unreachable_timed_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("nats://{}", listener.local_addr().unwrap());
        // Accept and never answer, so the client's connect timeout fires.
        let held = tokio::spawn(async move {
            let mut streams = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                streams.push(s);
            }
        });
        let err = ConnectError::classify(&url, attempt(&url).await);
        held.abort();
        assert!(matches!(err, ConnectError::Unreachable { reason: "timed out", .. }), "{err:?}");
    }

    #[test]
    fn kinds_map_to_what_a_person_can_act_on() {
        let url = "nats://h:4222";
        let make = |kind| async_nats::ConnectError::new(kind);
        let refused = ConnectError::classify(url, make(ConnectErrorKind::AuthorizationViolation));
        assert!(matches!(refused, ConnectError::Refused { .. }) && !refused.is_unreachable(), "{refused:?}");
        assert!(refused.to_string().contains("refused the credentials"), "{refused}");
        let auth = ConnectError::classify(url, make(ConnectErrorKind::Authentication));
        assert!(matches!(auth, ConnectError::Refused { .. }), "{auth:?}");
        let tls = ConnectError::classify(url, make(ConnectErrorKind::Tls));
        assert!(matches!(tls, ConnectError::Tls { .. }) && !tls.is_unreachable(), "{tls:?}");
        assert!(tls.to_string().contains(&format!("TLS with the NATS server at {url} failed")), "{tls}");
        let dns = ConnectError::classify(url, make(ConnectErrorKind::Dns));
        assert!(matches!(dns, ConnectError::Unreachable { reason: "host name not found", .. }), "{dns:?}");
        let handshake = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            async_nats::rustls::Error::InvalidCertificate(async_nats::rustls::CertificateError::UnknownIssuer),
        );
        let bad_cert =
            ConnectError::classify(url, async_nats::ConnectError::with_source(ConnectErrorKind::Io, handshake));
        assert!(matches!(bad_cert, ConnectError::Tls { .. }), "a failed handshake is TLS: {bad_cert:?}");
        let other = ConnectError::classify(url, make(ConnectErrorKind::Io));
        assert!(matches!(other, ConnectError::Other { .. }), "an IO error of unknown kind: {other:?}");
    }
}
