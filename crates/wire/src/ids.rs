//! Identity newtypes: who sent a frame, which frame it is, which worker handled it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Why an identifier was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum IdError {
    #[error("{what} is empty")]
    Empty { what: &'static str },
    #[error("{what} is {len} bytes long; at most {max} are allowed")]
    TooLong { what: &'static str, len: usize, max: usize },
    #[error("{what} {value:?} contains {bad:?}; only A-Z, a-z, 0-9, '_' and '-' are allowed")]
    BadChar { what: &'static str, value: String, bad: char },
    #[error("{what} {value:?} starts with '_', which is reserved for edgepool's own subjects")]
    Reserved { what: &'static str, value: String },
}

const MAX_ID_LEN: usize = 64;

fn check(what: &'static str, s: &str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty { what });
    }
    if s.len() > MAX_ID_LEN {
        return Err(IdError::TooLong { what, len: s.len(), max: MAX_ID_LEN });
    }
    if s.starts_with('_') {
        return Err(IdError::Reserved { what, value: s.to_owned() });
    }
    if let Some(bad) = s.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-')) {
        return Err(IdError::BadChar { what, value: s.to_owned(), bad });
    }
    Ok(())
}

macro_rules! token_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Parses and validates: `[A-Za-z0-9_-]{1,64}`, not starting with `_` (reserved),
            /// so it is safe as one NATS subject token.
            pub fn new(s: impl Into<String>) -> Result<Self, IdError> {
                let s = s.into();
                check($what, &s)?;
                Ok(Self(s))
            }

            #[must_use]
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // `pad`, so that `{:<16}` in tables aligns as it does for a string.
                f.pad(&self.0)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::new(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

token_id!(
    /// A camera (or producer app) id. It is the last token of `frames.<camera>` and
    /// `detections.<camera>`, so it is restricted to characters that are safe in a subject.
    CameraId,
    "camera id"
);

token_id!(
    /// A worker id, unique within the fleet (defaults to the host name plus a random suffix).
    WorkerId,
    "worker id"
);

/// A camera's frame sequence number: strictly increasing per camera, starting anywhere.
/// With the camera id it is the frame's identity: `(camera, seq)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FrameSeq(pub u64);

impl fmt::Display for FrameSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The deduplication id of a frame and of its result: `<camera>-<seq>`.
///
/// JetStream drops a second publish with the same `Nats-Msg-Id` inside the stream's
/// `duplicate_window`, so a camera's retry never stores a frame twice and a redelivered frame
/// never yields a second result.
#[must_use]
pub fn msg_id(camera: &CameraId, seq: FrameSeq) -> String {
    format!("{camera}-{seq}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn camera_ids_are_subject_safe() {
        assert!(CameraId::new("front-door_2").is_ok());
        assert_eq!(CameraId::new(""), Err(IdError::Empty { what: "camera id" }));
        assert!(matches!(CameraId::new("a.b"), Err(IdError::BadChar { bad: '.', .. })));
        assert!(matches!(CameraId::new("a*"), Err(IdError::BadChar { bad: '*', .. })));
        assert!(matches!(CameraId::new("x".repeat(65)), Err(IdError::TooLong { len: 65, .. })));
        assert!(CameraId::new("x".repeat(64)).is_ok());
        assert!(matches!(CameraId::new("_invalid"), Err(IdError::Reserved { .. })));
    }

    #[test]
    fn ids_deserialize_through_validation() {
        assert!(serde_json::from_str::<CameraId>(r#""cam-1""#).is_ok());
        assert!(serde_json::from_str::<CameraId>(r#""cam 1""#).is_err());
    }

    #[test]
    fn msg_id_is_camera_dash_seq() {
        assert_eq!(msg_id(&CameraId::new("cam").unwrap(), FrameSeq(42)), "cam-42");
    }
}
