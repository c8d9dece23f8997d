//! `gs://bucket/prefix` locations: Google Cloud Storage, through [`ObjectStoreBackend`] over
//! `object_store`'s `GoogleCloudStorage` (`GoogleCloudStorageBuilder::from_env`).
//!
//! The bucket and prefix come from the location; everything else from the environment and the
//! files it names, never from the location (so no secret ends up in a command line or a
//! message). One credential source must be configured, else opening fails and names them:
//!
//! | variable or file | meaning |
//! |---|---|
//! | `GOOGLE_APPLICATION_CREDENTIALS` | a credentials JSON file: a service-account key or an authorized user |
//! | `GOOGLE_SERVICE_ACCOUNT` / `GOOGLE_SERVICE_ACCOUNT_PATH` | a service-account key file |
//! | `GOOGLE_SERVICE_ACCOUNT_KEY` | the service-account key JSON itself |
//! | `~/.config/gcloud/application_default_credentials.json` | what `gcloud auth application-default login` writes |
//! | `GCE_METADATA_HOST` (e.g. `metadata.google.internal`) | the instance's service account, on Google Compute Engine or GKE |
//! | `GOOGLE_SKIP_SIGNATURE=true` | anonymous requests (a public bucket; writes will be refused) |
//!
//! A bucket in the environment (`GOOGLE_BUCKET`) is ignored: the location names it. Another
//! server (an emulator) is reached by a service-account file with `"gcs_base_url"` (and
//! `"disable_oauth": true`), as `object_store` reads it; `GOOGLE_ALLOW_HTTP=true` allows plain
//! HTTP.
//!
//! Timeouts, retries and the request limit are those of every cloud backend (`cloud.rs`).
//!
//! Puts are create-only: `object_store` sends [`PutMode::Create`] to GCS as
//! `x-goog-if-generation-match: 0`, which GCS refuses with 412 when the object exists, and
//! reports that as `AlreadyExists` (object_store 0.12, `gcp/client.rs`). `cairn init` probes
//! it; an emulator that ignores the precondition cannot keep the create-only contract.
//!
//! [`PutMode::Create`]: ::object_store::PutMode::Create

use std::sync::Arc;

use ::object_store::ClientConfigKey;
use ::object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};

use super::cloud::{self, Env, is_set, is_true};
use super::{Backend, BackendError, BackendErrorKind};

/// Where the settings come from, for messages about the location.
const CONFIG: &str = "credentials are read from GOOGLE_APPLICATION_CREDENTIALS, GOOGLE_SERVICE_ACCOUNT or GOOGLE_SERVICE_ACCOUNT_KEY";

/// Opens `gs://bucket[/prefix]`; `location` is the whole location string.
pub(crate) fn open(location: &str) -> Result<Arc<dyn Backend>, BackendError> {
    open_with_env(location, &|k| std::env::var(k).ok())
}

/// [`open`], with the environment passed in for cairn's own checks (tests);
/// `object_store` reads the process environment itself.
fn open_with_env(location: &str, env: Env<'_>) -> Result<Arc<dyn Backend>, BackendError> {
    let (bucket, prefix) = cloud::split_location(location, "bucket", CONFIG)?;
    check_credentials(env).map_err(|detail| {
        BackendError::new(BackendErrorKind::Other, "open", "", location).with_detail(detail)
    })?;
    let store = GoogleCloudStorageBuilder::from_env()
        .with_bucket_name(bucket)
        .with_retry(cloud::retry_config())
        .with_config(
            GoogleConfigKey::Client(ClientConfigKey::ConnectTimeout),
            cloud::CONNECT_TIMEOUT,
        )
        .with_config(
            GoogleConfigKey::Client(ClientConfigKey::Timeout),
            cloud::REQUEST_TIMEOUT,
        )
        .build()
        .map_err(|e| super::object_store::map_error(e, "open", "", location))?;
    cloud::backend_for(
        store,
        prefix,
        location,
        // GCS's XML API, which object_store speaks.
        "<Code>NoSuchBucket</Code>",
        format!("bucket {bucket:?} does not exist; create it first (cairn never creates buckets)"),
    )
}

/// Checks that some credential source is configured, so a missing key is an error now rather
/// than a timeout against the instance metadata server later.
fn check_credentials(env: Env<'_>) -> Result<(), String> {
    let vars = [
        "GOOGLE_APPLICATION_CREDENTIALS",
        "GOOGLE_SERVICE_ACCOUNT",
        "GOOGLE_SERVICE_ACCOUNT_PATH",
        "SERVICE_ACCOUNT",
        "GOOGLE_SERVICE_ACCOUNT_KEY",
        "GCE_METADATA_HOST",
        "GCE_METADATA_ROOT",
        "GCE_METADATA_IP",
    ];
    if vars.iter().any(|k| is_set(env, k)) || is_true(env, "GOOGLE_SKIP_SIGNATURE") {
        return Ok(());
    }
    // object_store reads gcloud's application default credentials from $HOME too.
    let adc = env("HOME").filter(|h| !h.is_empty()).map(|home| {
        std::path::Path::new(&home).join(".config/gcloud/application_default_credentials.json")
    });
    if adc.as_ref().is_some_and(|p| p.exists()) {
        return Ok(());
    }
    Err("no Google Cloud Storage credentials: set GOOGLE_APPLICATION_CREDENTIALS (or GOOGLE_SERVICE_ACCOUNT) to a service-account key file, or GOOGLE_SERVICE_ACCOUNT_KEY to the key itself; `gcloud auth application-default login` writes ~/.config/gcloud/application_default_credentials.json, which is read too; on Compute Engine or GKE set GCE_METADATA_HOST=metadata.google.internal to use the instance's service account".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    #[test]
    fn credentials_are_required_and_named() {
        let e = check_credentials(&env_of(&[("HOME", "/nonexistent/cairn")])).expect_err("none");
        for var in [
            "GOOGLE_APPLICATION_CREDENTIALS",
            "GOOGLE_SERVICE_ACCOUNT",
            "GOOGLE_SERVICE_ACCOUNT_KEY",
            "GCE_METADATA_HOST",
        ] {
            assert!(e.contains(var), "{e}");
        }
        let e = open_with_env("gs://bucket/p", &env_of(&[])).expect_err("no credentials");
        assert!(e.to_string().contains("gs://bucket/p"), "{e}");
        assert!(
            e.to_string()
                .contains("no Google Cloud Storage credentials"),
            "{e}"
        );
        for var in [
            "GOOGLE_APPLICATION_CREDENTIALS",
            "GOOGLE_SERVICE_ACCOUNT",
            "GOOGLE_SERVICE_ACCOUNT_PATH",
            "GOOGLE_SERVICE_ACCOUNT_KEY",
            "GCE_METADATA_HOST",
        ] {
            assert!(check_credentials(&env_of(&[(var, "x")])).is_ok(), "{var}");
        }
        assert!(check_credentials(&env_of(&[("GOOGLE_APPLICATION_CREDENTIALS", "")])).is_err());
        assert!(check_credentials(&env_of(&[("GOOGLE_SKIP_SIGNATURE", "true")])).is_ok());
        assert!(check_credentials(&env_of(&[("GOOGLE_SKIP_SIGNATURE", "false")])).is_err());

        let home = tempfile::tempdir().expect("tempdir");
        let home_env = env_of(&[("HOME", &home.path().display().to_string())]);
        assert!(check_credentials(&home_env).is_err());
        let gcloud = home.path().join(".config/gcloud");
        std::fs::create_dir_all(&gcloud).expect("mkdir");
        std::fs::write(gcloud.join("application_default_credentials.json"), "{}").expect("write");
        assert!(check_credentials(&home_env).is_ok());
    }

    #[test]
    fn bad_locations_fail_before_credentials() {
        for (loc, needle) in [
            ("gs://", "missing bucket"),
            ("gs:///prefix", "missing bucket"),
            ("gs://key:secret@bucket/p", "never from the location"),
            ("gs://bucket/p?project=x", "no query"),
        ] {
            let e = open_with_env(loc, &env_of(&[])).expect_err(loc);
            assert!(e.to_string().contains(needle), "{loc}: {e}");
        }
    }
}
