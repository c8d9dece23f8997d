//! [`LatencyBackend`]: a [`Backend`] wrapper that waits a fixed time before every request, to
//! see how cairn behaves against a distant object store (benches and tests; the delay is
//! `tokio::time::sleep`, so requests in flight overlap as they would over a network).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::{Backend, BackendError, FileType, ObjectInfo};

/// Forwards every call to `inner` after `delay`.
#[derive(Debug)]
pub struct LatencyBackend {
    inner: Arc<dyn Backend>,
    delay: Duration,
}

impl LatencyBackend {
    /// Wraps `inner`, adding `delay` to every request.
    pub fn new(inner: Arc<dyn Backend>, delay: Duration) -> LatencyBackend {
        LatencyBackend { inner, delay }
    }
}

#[async_trait::async_trait]
impl Backend for LatencyBackend {
    fn location(&self) -> String {
        self.inner.location()
    }

    async fn put(&self, t: FileType, name: &str, data: Bytes) -> Result<(), BackendError> {
        tokio::time::sleep(self.delay).await;
        self.inner.put(t, name, data).await
    }

    async fn get(&self, t: FileType, name: &str) -> Result<Bytes, BackendError> {
        tokio::time::sleep(self.delay).await;
        self.inner.get(t, name).await
    }

    async fn get_range(
        &self,
        t: FileType,
        name: &str,
        offset: u64,
        len: u64,
    ) -> Result<Bytes, BackendError> {
        tokio::time::sleep(self.delay).await;
        self.inner.get_range(t, name, offset, len).await
    }

    async fn list(&self, t: FileType) -> Result<Vec<ObjectInfo>, BackendError> {
        tokio::time::sleep(self.delay).await;
        self.inner.list(t).await
    }

    async fn delete(&self, t: FileType, name: &str) -> Result<(), BackendError> {
        tokio::time::sleep(self.delay).await;
        self.inner.delete(t, name).await
    }

    async fn stat(&self, t: FileType, name: &str) -> Result<Option<ObjectInfo>, BackendError> {
        tokio::time::sleep(self.delay).await;
        self.inner.stat(t, name).await
    }
}
