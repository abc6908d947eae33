//! Models over NATS: ONNX files in the JetStream Object Store bucket `MODELS`, pushed by
//! `edgepool model push`, loaded by name, verified, cached and hot-swapped by workers.
//!
//! The sha256 of the file travels with the object as metadata ([`META_SHA256`]), computed by the
//! pusher from the file on disk; a worker refuses any download whose bytes do not hash to it. The
//! object store's own chunk digest only proves the chunks arrived as stored, not that what was
//! stored is what was meant to be pushed. See `docs/models.md`.

mod push;
mod source;

use std::path::{Path, PathBuf};

use async_nats::jetstream::{self, object_store::ObjectStore};

pub use crate::model_name::ModelName;
pub(crate) use crate::model_name::{hex, sha256_file_blocking};
pub use push::{PushChange, Pushed, StoredModel, list, push};
pub use source::{Fetched, HotSwap, ModelSource};

/// The Object Store bucket holding models (stream `OBJ_MODELS`).
pub const BUCKET: &str = "MODELS";
/// Object metadata key: lowercase hex sha256 of the model file.
pub const META_SHA256: &str = "edgepool-sha256";
/// Object metadata key: size of the model file in bytes.
pub const META_SIZE: &str = "edgepool-size";

/// What can go wrong with models over NATS. Each variant is a decision: at worker start all of
/// them stop the worker (Kubernetes restarts it); during a hot-swap the worker keeps the model
/// it has and tries again on the next push ([`ModelError::is_transient`] only changes the log).
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("object store bucket {BUCKET} does not exist: push a model first (`edgepool model push FILE --name NAME`)")]
    NoBucket,
    #[error("model {name:?} is not in bucket {BUCKET}: push it with `edgepool model push FILE --name {name}`")]
    NotFound { name: String },
    #[error("model {name:?} in bucket {BUCKET} has no {META_SHA256} metadata: push it with `edgepool model push`")]
    NoDigest { name: String },
    /// The bytes do not hash to the digest stored with the object: tampered or corrupt. The
    /// file is deleted and never loaded.
    #[error(
        "digest mismatch for model {name:?}: the object says sha256 {expected} but its bytes hash to {actual}; \
         refusing to load it (push the model again)"
    )]
    DigestMismatch { name: String, expected: String, actual: String },
    /// Talking to the object store failed (connection, timeout, permissions): try again later.
    #[error("{what}: {source}")]
    Store {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Load(#[from] edgepool_detector::LoadError),
}

impl ModelError {
    /// Whether the same call may succeed later without anyone pushing anything.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Store { .. } | Self::Io { .. })
    }

    fn store(what: impl Into<String>, e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Store { what: what.into(), source: Box::new(e) }
    }

    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |source| Self::Io { path: path.to_owned(), source }
    }
}

/// The `MODELS` bucket, which must exist.
pub(crate) async fn open_bucket(js: &jetstream::Context) -> Result<ObjectStore, ModelError> {
    use async_nats::jetstream::ErrorCode;
    use async_nats::jetstream::context::GetStreamErrorKind;
    // Asked first so that "no bucket" can be told apart from "cannot reach JetStream".
    if let Err(e) = js.get_stream(format!("OBJ_{BUCKET}")).await {
        return match e.kind() {
            GetStreamErrorKind::JetStream(j) if j.error_code() == ErrorCode::STREAM_NOT_FOUND => {
                Err(ModelError::NoBucket)
            }
            _ => Err(ModelError::store(format!("opening bucket {BUCKET}"), e)),
        };
    }
    js.get_object_store(BUCKET).await.map_err(|e| ModelError::store(format!("opening bucket {BUCKET}"), e))
}

/// Lowercase hex sha256 and size of a file, hashed on a blocking thread.
pub(crate) async fn sha256_file(path: &Path) -> Result<(String, u64), ModelError> {
    let p = path.to_owned();
    let out = tokio::task::spawn_blocking(move || sha256_file_blocking(&p))
        .await
        .map_err(|e| ModelError::Io { path: path.to_owned(), source: std::io::Error::other(e) })?;
    out.map_err(ModelError::io(path))
}

/// A valid digest value: 64 lowercase hex digits.
pub(crate) fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The object store's own digest format for the same bytes (`SHA-256=<base64url, padded>`),
/// to compare with what the server computed while storing.
pub(crate) fn nats_digest(sha256_hex: &str) -> Option<String> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    if !is_sha256_hex(sha256_hex) {
        return None;
    }
    let bytes: Vec<u8> =
        (0..32).filter_map(|i| u8::from_str_radix(sha256_hex.get(2 * i..2 * i + 2)?, 16).ok()).collect();
    let mut out = String::from("SHA-256=");
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_safe_file_names() {
        for ok in ["ssd_mobilenet_v2_coco", "a", "yolo-v8.n", "X_1"] {
            assert!(ModelName::new(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".hidden", "-x", "a/b", "../x", "a b", "é", &"x".repeat(129)] {
            assert!(ModelName::new(bad).is_err(), "{bad}");
        }
        let n = ModelName::new("m").unwrap();
        assert_eq!(n.version(&"ab".repeat(32)), "m@sha256:abababababab");
        assert_eq!(n.cache_file(Path::new("/c"), "ff"), PathBuf::from("/c/m-ff.onnx"));
    }

    #[test]
    fn nats_digest_matches_the_object_store_format() {
        // sha256("") in hex and as async-nats writes it (base64 URL-safe, padded).
        let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(nats_digest(empty).unwrap(), "SHA-256=47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU=");
        assert_eq!(nats_digest("xyz"), None);
        assert!(is_sha256_hex(empty));
        assert_eq!(hex(&[0, 15, 255]), "000fff");
    }
}
