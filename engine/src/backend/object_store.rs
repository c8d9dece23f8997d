//! [`ObjectStoreBackend`]: the single adapter from [`Backend`] to the `object_store` crate.
//!
//! Every cloud store (S3, GCS, Azure) will come through here, as do the in-memory store of the
//! tests (`memory://`) and `object_store`'s `LocalFileSystem` (`object+file://`).
//!
//! - Objects live at `<prefix>/<FileType::path(name)>`, e.g. `backups/data/ab/ab12…`.
//! - `put` uses [`PutMode::Create`], i.e. a conditional write (`If-None-Match: *` on S3); a
//!   store that reports the conflict as `AlreadyExists` or `Precondition` gives
//!   [`BackendErrorKind::AlreadyExists`]. Stores without conditional writes cannot keep the
//!   create-only contract; that is a property of the store, checked by the conformance suite.
//! - Packs of at least [`MULTIPART_THRESHOLD`] bytes (only with a `data_pack_size` configured
//!   above it; the default is 16 MiB) are uploaded in parts of [`PART_SIZE`], a few at once, and
//!   completed as one object; an upload that fails is aborted. A completed multipart upload
//!   overwrites (object_store completes it unconditionally), which is harmless for packs only:
//!   a pack's name is the hash of its bytes, so any two writers of one name write the same bytes.
//! - `list` lists the type's prefix recursively and keeps only names at the right depth (packs:
//!   `data/<shard>/<name>` with a matching shard), skipping names that start with a dot.

use std::sync::Arc;

use ::object_store::path::Path as StorePath;
use ::object_store::{ObjectStore, PutMode, PutPayload, WriteMultipart};
use bytes::Bytes;
use futures::TryStreamExt;

use super::{
    Backend, BackendError, BackendErrorKind, CONFIG_NAME, FileType, ObjectInfo, check_name,
    range_end, range_past_end, shard_of,
};

/// Packs at least this large are uploaded in parts.
pub const MULTIPART_THRESHOLD: usize = 64 << 20;

/// The size of each part of a multipart upload (S3's minimum is 5 MiB; the last part may be
/// smaller).
pub const PART_SIZE: usize = 16 << 20;

/// Parts of one upload in flight at once.
const PARTS_IN_FLIGHT: usize = 4;

/// A repository in an [`ObjectStore`], under a prefix.
#[derive(Debug, Clone)]
pub struct ObjectStoreBackend {
    store: Arc<dyn ObjectStore>,
    prefix: StorePath,
    location: String,
}

impl ObjectStoreBackend {
    /// A backend over `store`, with every object under `prefix` (`""` for the store's root; a
    /// `/`-separated path such as `backups/host1`). `location` is what messages show; it must
    /// not contain secrets.
    pub fn new(
        store: Arc<dyn ObjectStore>,
        prefix: &str,
        location: String,
    ) -> Result<ObjectStoreBackend, BackendError> {
        let prefix = StorePath::parse(prefix.trim_matches('/')).map_err(|e| {
            BackendError::new(BackendErrorKind::Other, "open", "", &location)
                .with_detail(format!("invalid prefix {prefix:?}"))
                .with_source(e)
        })?;
        Ok(ObjectStoreBackend {
            store,
            prefix,
            location,
        })
    }

    /// The store path of a relative `/`-separated path (already validated names only).
    fn store_path(&self, rel: &str) -> StorePath {
        rel.split('/')
            .filter(|part| !part.is_empty())
            .fold(self.prefix.clone(), |path, part| path.child(part))
    }

    /// The store path of (`t`, `name`).
    fn object_path(&self, t: FileType, name: &str) -> StorePath {
        self.store_path(&t.path(name))
    }

    fn err(&self, e: ::object_store::Error, op: &'static str, rel: &str) -> BackendError {
        map_error(e, op, rel, &self.location)
    }

    /// Uploads `data` to `path` in parts of [`PART_SIZE`], [`PARTS_IN_FLIGHT`] at once; aborts
    /// the upload (so no parts linger in the bucket) when a part or the completion fails.
    async fn put_in_parts(
        &self,
        path: &StorePath,
        rel: &str,
        data: Bytes,
    ) -> Result<(), BackendError> {
        let upload = self
            .store
            .put_multipart(path)
            .await
            .map_err(|e| self.err(e, "write", rel))?;
        let mut w = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let mut at = 0;
        while at < data.len() {
            if let Err(e) = w.wait_for_capacity(PARTS_IN_FLIGHT).await {
                // The abort's own failure only leaves parts the bucket's lifecycle rules expire.
                let _ = w.abort().await;
                return Err(self.err(e, "write", rel));
            }
            let end = (at + PART_SIZE).min(data.len());
            w.put(data.slice(at..end));
            at = end;
        }
        // finish() aborts when the completion fails, not when a part does: wait for the parts
        // here first.
        if let Err(e) = w.wait_for_capacity(0).await {
            let _ = w.abort().await;
            return Err(self.err(e, "write", rel));
        }
        w.finish()
            .await
            .map(|_| ())
            .map_err(|e| self.err(e, "write", rel))
    }
}

/// Maps an `object_store` error to a [`BackendError`] of the matching kind.
pub(crate) fn map_error(
    e: ::object_store::Error,
    op: &'static str,
    rel: &str,
    location: &str,
) -> BackendError {
    use ::object_store::Error as E;
    let kind = match &e {
        E::NotFound { .. } => BackendErrorKind::NotFound,
        E::AlreadyExists { .. } | E::Precondition { .. } => BackendErrorKind::AlreadyExists,
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => {
            BackendErrorKind::PermissionDenied
        }
        E::Generic { .. } => BackendErrorKind::Io,
        _ => BackendErrorKind::Other,
    };
    let err = BackendError::new(kind, op, rel, location);
    let err = match &e {
        E::NotImplemented | E::NotSupported { .. } => {
            err.with_detail("not supported by this store")
        }
        _ => err,
    };
    err.with_source(e)
}

#[async_trait::async_trait]
impl Backend for ObjectStoreBackend {
    fn location(&self) -> String {
        self.location.clone()
    }

    async fn put(&self, t: FileType, name: &str, data: Bytes) -> Result<(), BackendError> {
        check_name(t, name, "write", &self.location)?;
        let rel = t.path(name);
        if t == FileType::Pack && data.len() >= MULTIPART_THRESHOLD {
            return self
                .put_in_parts(&self.object_path(t, name), &rel, data)
                .await;
        }
        self.store
            .put_opts(
                &self.object_path(t, name),
                PutPayload::from_bytes(data),
                PutMode::Create.into(),
            )
            .await
            .map(|_| ())
            .map_err(|e| self.err(e, "write", &rel))
    }

    async fn get(&self, t: FileType, name: &str) -> Result<Bytes, BackendError> {
        check_name(t, name, "read", &self.location)?;
        let rel = t.path(name);
        let result = self
            .store
            .get(&self.object_path(t, name))
            .await
            .map_err(|e| self.err(e, "read", &rel))?;
        result.bytes().await.map_err(|e| self.err(e, "read", &rel))
    }

    async fn get_range(
        &self,
        t: FileType,
        name: &str,
        offset: u64,
        len: u64,
    ) -> Result<Bytes, BackendError> {
        check_name(t, name, "read", &self.location)?;
        let rel = t.path(name);
        let end = range_end(t, name, offset, len, &self.location)?;
        let path = self.object_path(t, name);
        if len == 0 {
            // object_store rejects empty ranges; check the object and the offset instead.
            let size = self.exists(t, name).await?.ok_or_else(|| {
                BackendError::new(BackendErrorKind::NotFound, "read", &rel, &self.location)
            })?;
            if offset > size {
                return Err(range_past_end(t, name, offset, len, size, &self.location));
            }
            return Ok(Bytes::new());
        }
        match self.store.get_range(&path, offset..end).await {
            // Stores clamp a range that ends past the object: a short answer means "past the end".
            Ok(bytes) if bytes.len() as u64 == len => Ok(bytes),
            Ok(bytes) => Err(range_past_end(
                t,
                name,
                offset,
                len,
                offset.saturating_add(bytes.len() as u64),
                &self.location,
            )),
            Err(e) => {
                let err = self.err(e, "read", &rel);
                if err.is_not_found() {
                    return Err(err);
                }
                // A range that starts past the end is an opaque error in object_store; name it.
                match self.store.head(&path).await {
                    Ok(meta) if end > meta.size => Err(range_past_end(
                        t,
                        name,
                        offset,
                        len,
                        meta.size,
                        &self.location,
                    )),
                    _ => Err(err),
                }
            }
        }
    }

    async fn list(&self, t: FileType) -> Result<Vec<ObjectInfo>, BackendError> {
        if t == FileType::Config {
            return Ok(self.stat(t, CONFIG_NAME).await?.into_iter().collect());
        }
        let dir = self.store_path(t.dir());
        let depth = if t == FileType::Pack { 2 } else { 1 };
        let mut out = Vec::new();
        let mut stream = self.store.list(Some(&dir));
        while let Some(meta) = stream
            .try_next()
            .await
            .map_err(|e| self.err(e, "list", t.dir()))?
        {
            let Some(parts) = meta.location.prefix_match(&dir) else {
                continue;
            };
            let parts: Vec<String> = parts.map(|p| p.as_ref().to_owned()).collect();
            if parts.len() != depth {
                continue;
            }
            let Some(name) = parts.last() else {
                continue;
            };
            if name.starts_with('.') || check_name(t, name, "list", "").is_err() {
                continue;
            }
            if t == FileType::Pack && parts.first().map(String::as_str) != Some(shard_of(name)) {
                continue;
            }
            out.push(ObjectInfo {
                name: name.clone(),
                size: meta.size,
                modified: meta.last_modified.timestamp_nanos_opt(),
            });
        }
        Ok(out)
    }

    async fn delete(&self, t: FileType, name: &str) -> Result<(), BackendError> {
        check_name(t, name, "delete", &self.location)?;
        let rel = t.path(name);
        match self.store.delete(&self.object_path(t, name)).await {
            Ok(()) | Err(::object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err(e, "delete", &rel)),
        }
    }

    async fn stat(&self, t: FileType, name: &str) -> Result<Option<ObjectInfo>, BackendError> {
        check_name(t, name, "stat", &self.location)?;
        let rel = t.path(name);
        match self.store.head(&self.object_path(t, name)).await {
            Ok(meta) => Ok(Some(ObjectInfo {
                name: if t == FileType::Config {
                    CONFIG_NAME.to_owned()
                } else {
                    name.to_owned()
                },
                size: meta.size,
                modified: meta.last_modified.timestamp_nanos_opt(),
            })),
            Err(::object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err(e, "stat", &rel)),
        }
    }
}
