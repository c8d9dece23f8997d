//! `s3://bucket/prefix` locations: Amazon S3 or an S3-compatible store, through
//! [`ObjectStoreBackend`] over `object_store`'s `AmazonS3`.
//!
//! Everything but the bucket and prefix comes from the environment, never from the location
//! (so no secret ends up in a command line or a message):
//!
//! | variable | meaning |
//! |---|---|
//! | `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN` | static credentials |
//! | `AWS_REGION` / `AWS_DEFAULT_REGION` | the bucket's region (default `us-east-1`) |
//! | `AWS_ENDPOINT_URL` / `AWS_ENDPOINT` | an S3-compatible server, e.g. `http://127.0.0.1:9000`; requests are then path-style |
//! | `AWS_ALLOW_HTTP=true` | allow a plain-HTTP endpoint |
//! | `AWS_WEB_IDENTITY_TOKEN_FILE`, `AWS_CONTAINER_CREDENTIALS_*`, `AWS_METADATA_ENDPOINT` | other credential sources `object_store` understands |
//!
//! Requests time out (connect 10 s, whole request 5 min: a 1 GiB pack at ~4 MB/s), and
//! transient failures (connection errors, timeouts, 5xx, 429) are retried up to 8 times with
//! exponential backoff and jitter (`object_store`'s decorrelated jitter, 100 ms to 15 s, at most
//! 10 min in all). At most 32 requests are in flight per repository. These settings are shared
//! with GCS and Azure (`cloud.rs`). Packs are at most 1 GiB (SPEC §6) and go up in one PUT (S3
//! allows 5 GiB), which keeps every write a single conditional request; a retried PUT whose
//! first attempt did succeed gets "exists", which for a content-addressed object is success.
//!
//! Puts are conditional (`If-None-Match: *`, `S3ConditionalPut::ETagMatch`) whatever
//! `AWS_CONDITIONAL_PUT` says: the create-only contract depends on it. A store that ignores the
//! header (some S3 clones do) cannot keep that contract.

use std::sync::Arc;

use ::object_store::ClientConfigKey;
use ::object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey, S3ConditionalPut};

use super::cloud::{self, CONNECT_TIMEOUT, REQUEST_TIMEOUT, retry_config};
use super::{Backend, BackendError, BackendErrorKind};

/// Opens `s3://bucket[/prefix]`; `location` is the whole location string.
pub(crate) fn open(location: &str) -> Result<Arc<dyn Backend>, BackendError> {
    open_with_env(location, |k| std::env::var(k).ok())
}

/// [`open`], with the environment passed in (for tests).
fn open_with_env(
    location: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Arc<dyn Backend>, BackendError> {
    let bad = |detail: String| {
        BackendError::new(BackendErrorKind::Other, "open", "", location).with_detail(detail)
    };
    let rest = location
        .split_once("://")
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    if rest.contains(['?', '#']) {
        return Err(bad(
            "an s3:// location takes no query or fragment; configure S3 through AWS_* environment variables"
                .to_owned(),
        ));
    }
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(bad(
            "missing bucket: expected s3://BUCKET or s3://BUCKET/PREFIX".to_owned(),
        ));
    }
    if bucket.contains(['@', ':']) {
        return Err(bad(
            "the bucket name must not contain '@' or ':'; credentials are read from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, never from the location"
                .to_owned(),
        ));
    }
    check_credentials(&env).map_err(bad)?;

    let set = |k: &str| env(k).filter(|v| !v.is_empty());
    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_conditional_put(S3ConditionalPut::ETagMatch)
        .with_retry(retry_config())
        // Set key by key: `with_client_options` would drop what `from_env` read (AWS_ALLOW_HTTP).
        .with_config(
            AmazonS3ConfigKey::Client(ClientConfigKey::ConnectTimeout),
            CONNECT_TIMEOUT,
        )
        .with_config(
            AmazonS3ConfigKey::Client(ClientConfigKey::Timeout),
            REQUEST_TIMEOUT,
        );
    if set("AWS_REGION").is_none() && set("AWS_DEFAULT_REGION").is_none() {
        builder = builder.with_region("us-east-1");
    }
    if let Some(endpoint) = set("AWS_ENDPOINT_URL").or_else(|| set("AWS_ENDPOINT")) {
        // S3-compatible servers rarely resolve bucket host names: address buckets by path.
        builder = builder
            .with_endpoint(endpoint)
            .with_virtual_hosted_style_request(false);
    }
    let store = builder
        .build()
        .map_err(|e| super::object_store::map_error(e, "open", "", location))?;
    // S3 answers a missing bucket and a missing object both with 404; the body tells them
    // apart (see ContainerBackend).
    cloud::backend_for(
        store,
        prefix,
        location,
        "<Code>NoSuchBucket</Code>",
        format!("bucket {bucket:?} does not exist; create it first (cairn never creates buckets)"),
    )
}

/// Checks that some credential source is configured, so a missing key is an error now rather
/// than a timeout against the instance metadata service later.
fn check_credentials(env: &impl Fn(&str) -> Option<String>) -> Result<(), String> {
    let set = |k: &str| env(k).is_some_and(|v| !v.is_empty());
    match (set("AWS_ACCESS_KEY_ID"), set("AWS_SECRET_ACCESS_KEY")) {
        (true, true) => return Ok(()),
        (true, false) => {
            return Err("AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not".to_owned());
        }
        (false, true) => {
            return Err("AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not".to_owned());
        }
        (false, false) => {}
    }
    let others = [
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_METADATA_ENDPOINT",
    ];
    if others.iter().any(|k| set(k)) || env("AWS_SKIP_SIGNATURE").is_some_and(|v| v == "true") {
        return Ok(());
    }
    Err("no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_WEB_IDENTITY_TOKEN_FILE, AWS_CONTAINER_CREDENTIALS_*; for the EC2 instance metadata service set AWS_METADATA_ENDPOINT=http://169.254.169.254)".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    #[test]
    fn bad_locations_and_credentials_are_clear_errors() {
        let keys = env_of(&[("AWS_ACCESS_KEY_ID", "a"), ("AWS_SECRET_ACCESS_KEY", "b")]);
        for (loc, needle) in [
            ("s3://", "missing bucket"),
            ("s3:///prefix", "missing bucket"),
            ("s3://key:secret@bucket/p", "never from the location"),
            ("s3://bucket/p?region=x", "no query"),
        ] {
            let e = open_with_env(loc, &keys).expect_err(loc);
            assert!(e.to_string().contains(needle), "{loc}: {e}");
        }
        for (vars, needle) in [
            (&[][..], "no S3 credentials"),
            (
                &[("AWS_ACCESS_KEY_ID", "a")][..],
                "AWS_SECRET_ACCESS_KEY is not",
            ),
            (
                &[("AWS_SECRET_ACCESS_KEY", "b")][..],
                "AWS_ACCESS_KEY_ID is not",
            ),
        ] {
            let e = open_with_env("s3://bucket/p", env_of(vars)).expect_err(needle);
            assert!(e.to_string().contains(needle), "{e}");
            assert!(e.to_string().contains("s3://bucket/p"), "{e}");
        }
        assert!(check_credentials(&keys).is_ok());
        assert!(check_credentials(&env_of(&[("AWS_WEB_IDENTITY_TOKEN_FILE", "/t")])).is_ok());
    }
}
