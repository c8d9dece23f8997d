//! What the cloud backends (`s3.rs`, `gcs.rs`, `azure.rs`) share: retries, timeouts, the
//! limit on requests in flight, `scheme://BUCKET/PREFIX` parsing, and a wrapper that names a
//! missing bucket or container.
//!
//! Requests time out (connect 10 s, whole request 5 min: a 1 GiB pack at ~4 MB/s), and
//! transient failures (connection errors, timeouts, 5xx, 429) are retried up to 8 times with
//! exponential backoff and jitter (`object_store`'s decorrelated jitter, 100 ms to 15 s, at most
//! 10 min in all). At most [`MAX_REQUESTS`] requests are in flight per repository
//! (`object_store`'s `LimitStore`). Packs are at most 1 GiB (SPEC §6) and go up in one PUT,
//! which keeps every write a single conditional request; a retried PUT whose first attempt did
//! succeed gets "exists", which for a content-addressed object is success.

use std::time::Duration;

use ::object_store::{BackoffConfig, RetryConfig};
use bytes::Bytes;

use super::{Backend, BackendError, BackendErrorKind, FileType, ObjectInfo, ObjectStoreBackend};

/// Requests in flight at once, per repository.
pub(crate) const MAX_REQUESTS: usize = 32;

/// How long connecting may take (`object_store`'s `ClientConfigKey::ConnectTimeout`).
pub(crate) const CONNECT_TIMEOUT: &str = "10s";

/// How long one whole request may take (`ClientConfigKey::Timeout`).
pub(crate) const REQUEST_TIMEOUT: &str = "300s";

/// Retries of transient failures (see the module docs).
pub(crate) fn retry_config() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(15),
            base: 2.0,
        },
        max_retries: 8,
        retry_timeout: Duration::from_secs(600),
    }
}

/// An environment to read configuration from: `std::env::var`, or a fixed map in tests.
pub(crate) type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Whether `key` is set to something non-empty.
pub(crate) fn is_set(env: Env<'_>, key: &str) -> bool {
    env(key).is_some_and(|v| !v.is_empty())
}

/// Whether `key` is set to a value `object_store` reads as true (`true`, `1`, `yes`, `on`, `y`).
pub(crate) fn is_true(env: Env<'_>, key: &str) -> bool {
    env(key).is_some_and(|v| {
        matches!(
            v.to_ascii_lowercase().as_str(),
            "1" | "true" | "on" | "yes" | "y"
        )
    })
}

/// Splits `scheme://CONTAINER[/PREFIX]` into the container (a bucket) and the prefix.
///
/// `what` names the container (`"bucket"`, `"container"`); `config` says where settings and
/// credentials come from instead, for the messages. Refuses a query, a fragment, and anything
/// that looks like credentials or an account in the location (`@`, `:`).
pub(crate) fn split_location<'a>(
    location: &'a str,
    what: &str,
    config: &str,
) -> Result<(&'a str, &'a str), BackendError> {
    let bad = |detail: String| {
        BackendError::new(BackendErrorKind::Other, "open", "", location).with_detail(detail)
    };
    let (scheme, rest) = location.split_once("://").unwrap_or(("", location));
    if rest.contains(['?', '#']) {
        return Err(bad(format!(
            "a {scheme}:// location takes no query or fragment; {config}"
        )));
    }
    let (container, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if container.is_empty() {
        let upper = what.to_ascii_uppercase();
        return Err(bad(format!(
            "missing {what}: expected {scheme}://{upper} or {scheme}://{upper}/PREFIX"
        )));
    }
    if container.contains(['@', ':']) {
        return Err(bad(format!(
            "the {what} name must not contain '@' or ':'; {config}, never from the location"
        )));
    }
    Ok((container, prefix))
}

/// The backend of a cloud store: at most [`MAX_REQUESTS`] requests in flight, under `prefix`,
/// with a missing bucket or container (an error body containing `marker`) reported as
/// `missing` (see [`ContainerBackend`]).
pub(crate) fn backend_for(
    store: impl ::object_store::ObjectStore,
    prefix: &str,
    location: &str,
    marker: &'static str,
    missing: String,
) -> Result<std::sync::Arc<dyn Backend>, BackendError> {
    let inner = ObjectStoreBackend::new(
        std::sync::Arc::new(::object_store::limit::LimitStore::new(store, MAX_REQUESTS)),
        prefix,
        location.to_owned(),
    )?;
    Ok(std::sync::Arc::new(ContainerBackend::new(
        inner, marker, missing,
    )))
}

/// [`ObjectStoreBackend`] over a cloud store, telling a missing bucket or container apart from a
/// missing object: the store answers both with 404 and `object_store` calls both `NotFound`,
/// which would make a mistyped bucket look like an empty repository. The store's error body
/// names the case (`marker`, e.g. `<Code>ContainerNotFound</Code>`); a HEAD's 404 has no body,
/// so `stat` cannot tell them apart.
#[derive(Debug)]
pub(crate) struct ContainerBackend {
    inner: ObjectStoreBackend,
    /// Text in the error chain that means "the container does not exist".
    marker: &'static str,
    /// The detail to give instead.
    missing: String,
}

impl ContainerBackend {
    /// Wraps `inner`; an error whose sources contain `marker` becomes `missing`.
    pub(crate) fn new(
        inner: ObjectStoreBackend,
        marker: &'static str,
        missing: String,
    ) -> ContainerBackend {
        ContainerBackend {
            inner,
            marker,
            missing,
        }
    }

    fn fix(&self, e: BackendError) -> BackendError {
        let mut text = String::new();
        let mut source: Option<&dyn std::error::Error> = std::error::Error::source(&e);
        while let Some(s) = source {
            text.push_str(&s.to_string());
            source = s.source();
        }
        if !text.contains(self.marker) {
            return e;
        }
        BackendError::new(BackendErrorKind::Other, e.op(), e.path(), e.location())
            .with_detail(self.missing.clone())
            .with_source(e)
    }
}

#[async_trait::async_trait]
impl Backend for ContainerBackend {
    fn location(&self) -> String {
        self.inner.location()
    }

    async fn put(&self, t: FileType, name: &str, data: Bytes) -> Result<(), BackendError> {
        self.inner.put(t, name, data).await.map_err(|e| self.fix(e))
    }

    async fn get(&self, t: FileType, name: &str) -> Result<Bytes, BackendError> {
        self.inner.get(t, name).await.map_err(|e| self.fix(e))
    }

    async fn get_range(
        &self,
        t: FileType,
        name: &str,
        offset: u64,
        len: u64,
    ) -> Result<Bytes, BackendError> {
        let r = self.inner.get_range(t, name, offset, len).await;
        r.map_err(|e| self.fix(e))
    }

    async fn list(&self, t: FileType) -> Result<Vec<ObjectInfo>, BackendError> {
        self.inner.list(t).await.map_err(|e| self.fix(e))
    }

    async fn delete(&self, t: FileType, name: &str) -> Result<(), BackendError> {
        self.inner.delete(t, name).await.map_err(|e| self.fix(e))
    }

    async fn stat(&self, t: FileType, name: &str) -> Result<Option<ObjectInfo>, BackendError> {
        self.inner.stat(t, name).await.map_err(|e| self.fix(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_split_or_fail_clearly() {
        let cfg = "credentials come from X";
        assert_eq!(
            split_location("gs://b/p/q", "bucket", cfg).expect("ok"),
            ("b", "p/q")
        );
        assert_eq!(
            split_location("az://c", "container", cfg).expect("ok"),
            ("c", "")
        );
        for (loc, needle) in [
            (
                "gs://",
                "missing bucket: expected gs://BUCKET or gs://BUCKET/PREFIX",
            ),
            ("gs:///p", "missing bucket"),
            (
                "gs://k:s@b/p",
                "must not contain '@' or ':'; credentials come from X",
            ),
            ("gs://b/p?x=1", "no query or fragment"),
            ("gs://b/p#f", "no query or fragment"),
        ] {
            let e = split_location(loc, "bucket", cfg).expect_err(loc);
            assert!(e.to_string().contains(needle), "{loc}: {e}");
        }
    }

    #[test]
    fn truthy_values_match_object_store() {
        let env = |k: &str| Some(k.to_owned());
        for v in ["true", "TRUE", "1", "yes", "on", "y"] {
            assert!(is_true(&env, v), "{v}");
        }
        for v in ["false", "0", "", "maybe"] {
            assert!(!is_true(&env, v), "{v}");
        }
        assert!(!is_set(&|_: &str| Some(String::new()), "K"));
        assert!(!is_set(&|_: &str| None, "K"));
    }
}
