//! Test backends that change a few operations of another backend: implement [`Intercept`] with
//! just the operations that differ (the others go to [`Intercept::inner`]) and wrap the value
//! in [`Intercepted`], which is the [`Backend`]. `Intercepted` derefs to the wrapped value, so a
//! test keeps reaching its fields through the `Arc` it holds.

use std::ops::Deref;

use engine::backend::{Backend, BackendError, FileType, ObjectInfo};

/// The operations of a [`Backend`], each passing to [`Intercept::inner`] unless overridden.
#[async_trait::async_trait]
pub trait Intercept: Send + Sync + std::fmt::Debug + 'static {
    /// The backend the other operations go to.
    fn inner(&self) -> &dyn Backend;

    async fn put(&self, t: FileType, name: &str, data: bytes::Bytes) -> Result<(), BackendError> {
        self.inner().put(t, name, data).await
    }
    async fn get(&self, t: FileType, name: &str) -> Result<bytes::Bytes, BackendError> {
        self.inner().get(t, name).await
    }
    async fn get_range(
        &self,
        t: FileType,
        name: &str,
        offset: u64,
        len: u64,
    ) -> Result<bytes::Bytes, BackendError> {
        self.inner().get_range(t, name, offset, len).await
    }
    async fn list(&self, t: FileType) -> Result<Vec<ObjectInfo>, BackendError> {
        self.inner().list(t).await
    }
    async fn delete(&self, t: FileType, name: &str) -> Result<(), BackendError> {
        self.inner().delete(t, name).await
    }
    async fn stat(&self, t: FileType, name: &str) -> Result<Option<ObjectInfo>, BackendError> {
        self.inner().stat(t, name).await
    }
}

/// The [`Backend`] of an [`Intercept`].
#[derive(Debug)]
pub struct Intercepted<I>(pub I);

impl<I> Deref for Intercepted<I> {
    type Target = I;
    fn deref(&self) -> &I {
        &self.0
    }
}

#[async_trait::async_trait]
impl<I: Intercept> Backend for Intercepted<I> {
    fn location(&self) -> String {
        self.0.inner().location()
    }
    async fn put(&self, t: FileType, name: &str, data: bytes::Bytes) -> Result<(), BackendError> {
        self.0.put(t, name, data).await
    }
    async fn get(&self, t: FileType, name: &str) -> Result<bytes::Bytes, BackendError> {
        self.0.get(t, name).await
    }
    async fn get_range(
        &self,
        t: FileType,
        name: &str,
        offset: u64,
        len: u64,
    ) -> Result<bytes::Bytes, BackendError> {
        self.0.get_range(t, name, offset, len).await
    }
    async fn list(&self, t: FileType) -> Result<Vec<ObjectInfo>, BackendError> {
        self.0.list(t).await
    }
    async fn delete(&self, t: FileType, name: &str) -> Result<(), BackendError> {
        self.0.delete(t, name).await
    }
    async fn stat(&self, t: FileType, name: &str) -> Result<Option<ObjectInfo>, BackendError> {
        self.0.stat(t, name).await
    }
}
