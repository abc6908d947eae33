//! `edgepool model push` and `list`: storing model files in the bucket, idempotently.

use std::collections::HashMap;
use std::path::Path;

use async_nats::jetstream::{
    self,
    object_store::{self, ObjectMetadata},
};
use futures::StreamExt;
use serde::Serialize;

use super::{BUCKET, META_SHA256, META_SIZE, ModelError, ModelName, nats_digest, open_bucket, sha256_file};

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PushChange {
    /// No object had this name.
    Created,
    /// The name held other bytes (`previous` is their sha256); workers hot-swap to the new ones.
    Updated { previous: Option<String> },
    /// The name already held exactly these bytes: nothing was written.
    Unchanged,
}

/// The outcome of [`push`].
#[derive(Debug, Clone, Serialize)]
pub struct Pushed {
    pub name: String,
    pub sha256: String,
    pub size: u64,
    /// The model string results will carry (`<name>@sha256:<12 hex>`).
    pub version: String,
    pub change: PushChange,
}

/// One model in the bucket, as [`list`] reports it.
#[derive(Debug, Clone, Serialize)]
pub struct StoredModel {
    pub name: String,
    /// `None` when the object was not pushed by `edgepool model push`: workers refuse it.
    pub sha256: Option<String>,
    pub size: usize,
    #[serde(with = "time::serde::rfc3339::option")]
    pub modified: Option<time::OffsetDateTime>,
}

/// Stores `file` under `name` in the `MODELS` bucket, creating the bucket with `replicas` if it
/// does not exist. Pushing the bytes the name already holds writes nothing.
pub async fn push(
    js: &jetstream::Context,
    file: &Path,
    name: &ModelName,
    replicas: usize,
) -> Result<Pushed, ModelError> {
    let (sha256, size) = sha256_file(file).await?;
    let store = match open_bucket(js).await {
        Ok(s) => s,
        Err(ModelError::NoBucket) => js
            .create_object_store(object_store::Config {
                bucket: BUCKET.to_owned(),
                description: Some("edgepool models, pushed by `edgepool model push`".to_owned()),
                num_replicas: replicas.max(1),
                ..Default::default()
            })
            .await
            .map_err(|e| ModelError::store(format!("creating bucket {BUCKET}"), e))?,
        Err(e) => return Err(e),
    };
    let version = name.version(&sha256);
    let previous = match store.info(name.as_str()).await {
        Ok(info) if !info.deleted => Some(info.metadata.get(META_SHA256).cloned()),
        Ok(_) => None,
        Err(e) if e.kind() == object_store::InfoErrorKind::NotFound => None,
        Err(e) => return Err(ModelError::store(format!("reading {BUCKET}/{name}"), e)),
    };
    if previous.as_ref().is_some_and(|p| p.as_deref() == Some(sha256.as_str())) {
        return Ok(Pushed { name: name.to_string(), sha256, size, version, change: PushChange::Unchanged });
    }

    let meta = ObjectMetadata {
        name: name.to_string(),
        description: file.file_name().map(|f| format!("pushed from {}", f.to_string_lossy())),
        metadata: HashMap::from([(META_SHA256.to_owned(), sha256.clone()), (META_SIZE.to_owned(), size.to_string())]),
        ..Default::default()
    };
    let mut reader = tokio::fs::File::open(file).await.map_err(ModelError::io(file))?;
    let info = store.put(meta, &mut reader).await.map_err(|e| ModelError::store(format!("storing {file:?}"), e))?;
    // The server-side digest covers the bytes actually sent; if the file changed after it was
    // hashed, the metadata is wrong and workers would refuse the object: say so now.
    if info.digest != nats_digest(&sha256) || info.size as u64 != size {
        return Err(ModelError::DigestMismatch {
            name: name.to_string(),
            expected: sha256,
            actual: format!(
                "{:?} ({} bytes sent; the file changed while it was pushed, push again)",
                info.digest, info.size
            ),
        });
    }
    let change = match previous {
        None => PushChange::Created,
        Some(previous) => PushChange::Updated { previous },
    };
    Ok(Pushed { name: name.to_string(), sha256, size, version, change })
}

/// Every model in the bucket (empty when the bucket does not exist), sorted by name.
pub async fn list(js: &jetstream::Context) -> Result<Vec<StoredModel>, ModelError> {
    let store = match open_bucket(js).await {
        Ok(s) => s,
        Err(ModelError::NoBucket) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut objects = store.list().await.map_err(|e| ModelError::store(format!("listing {BUCKET}"), e))?;
    let mut out = Vec::new();
    while let Some(next) = objects.next().await {
        let info = next.map_err(|e| ModelError::store(format!("listing {BUCKET}"), e))?;
        out.push(StoredModel {
            sha256: info.metadata.get(META_SHA256).cloned(),
            size: info.size,
            modified: info.modified,
            name: info.name,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}
