//! A model's name and version string, and the file digest both are built from. Shared by
//! models from a file (`engine`) and models over NATS (`models`), so it depends on neither.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A model name: the object name in the bucket and the prefix of the cached file and of the
/// version string. 1 to 128 of `A-Z a-z 0-9 . _ -`, not starting with `.` or `-`, so that it is
/// always a safe file name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ModelName(String);

impl ModelName {
    pub fn new(name: impl Into<String>) -> Result<Self, String> {
        let name = name.into();
        let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if name.is_empty() || name.len() > 128 || !name.chars().all(ok_char) || name.starts_with(['.', '-']) {
            return Err(format!(
                "invalid model name {name:?}: use 1 to 128 of A-Z a-z 0-9 . _ -, not starting with . or -"
            ));
        }
        Ok(Self(name))
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The version string results carry: `<name>@sha256:<first 12 hex digits>`.
    #[must_use]
    pub fn version(&self, sha256: &str) -> String {
        format!("{}@sha256:{}", self.0, sha256.get(..12).unwrap_or(sha256))
    }

    /// The cached file of one version: `<name>-<sha256>.onnx`.
    #[must_use]
    pub fn cache_file(&self, dir: &Path, sha256: &str) -> PathBuf {
        dir.join(format!("{}-{sha256}.onnx", self.0))
    }
}

impl TryFrom<String> for ModelName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::new(s)
    }
}

impl From<ModelName> for String {
    fn from(n: ModelName) -> String {
        n.0
    }
}

impl FromStr for ModelName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::new(s)
    }
}

impl fmt::Display for ModelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Lowercase hex sha256 and size of a file, on this thread.
pub(crate) fn sha256_file_blocking(path: &Path) -> std::io::Result<(String, u64)> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let size = std::io::copy(&mut f, &mut h)?;
    Ok((hex(&h.finalize()), size))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}
