//! `az://container/prefix` (or `azure://…`) locations: Azure Blob Storage, through
//! [`ObjectStoreBackend`] over `object_store`'s `MicrosoftAzure`
//! (`MicrosoftAzureBuilder::from_env`).
//!
//! The container and prefix come from the location; the storage account, credentials and
//! endpoint from the environment, never from the location (so no secret ends up in a command
//! line or a message). One credential source must be configured, else opening fails and names
//! them:
//!
//! | variable | meaning |
//! |---|---|
//! | `AZURE_STORAGE_ACCOUNT_NAME` | the storage account (required, except for the emulator) |
//! | `AZURE_STORAGE_ACCOUNT_KEY` | a shared key |
//! | `AZURE_STORAGE_SAS_TOKEN` | a shared access signature (`sv=…&sig=…`) |
//! | `AZURE_STORAGE_TOKEN` | a bearer token |
//! | `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`, `AZURE_TENANT_ID` | a service principal |
//! | `AZURE_CLIENT_ID`, `AZURE_TENANT_ID`, `AZURE_FEDERATED_TOKEN_FILE` | workload identity (AKS) |
//! | `AZURE_USE_AZURE_CLI=true` | the `az` command line's login |
//! | `AZURE_MSI_ENDPOINT` / `IDENTITY_ENDPOINT` | a managed identity (for a VM: `http://169.254.169.254/metadata/identity/oauth2/token`) |
//! | `AZURE_STORAGE_ENDPOINT` | another endpoint than `https://ACCOUNT.blob.core.windows.net` |
//! | `AZURE_STORAGE_USE_EMULATOR=true` | Azurite, at `AZURITE_BLOB_STORAGE_URL` (default `http://127.0.0.1:10000`), account `devstoreaccount1` and its well-known key unless set |
//! | `AZURE_ALLOW_HTTP=true` | allow a plain-HTTP endpoint |
//!
//! (`object_store`'s other spellings, e.g. `AZURE_STORAGE_ACCESS_KEY`, `AZURE_STORAGE_CLIENT_ID`,
//! work too.) A container in the environment (`AZURE_CONTAINER_NAME`) is ignored: the location
//! names it.
//!
//! Timeouts, retries and the request limit are those of every cloud backend (`cloud.rs`).
//!
//! Puts are create-only: `object_store` sends [`PutMode::Create`] to Azure as
//! `If-None-Match: *`, which Azure refuses with 409 (`BlobAlreadyExists`) when the blob exists,
//! reported as `AlreadyExists` (object_store 0.12, `azure/client.rs`). `cairn init` probes it.
//!
//! [`PutMode::Create`]: ::object_store::PutMode::Create

use std::sync::Arc;

use ::object_store::ClientConfigKey;
use ::object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};

use super::cloud::{self, Env, is_set, is_true};
use super::{Backend, BackendError, BackendErrorKind};

/// Where the settings come from, for messages about the location.
const CONFIG: &str = "the account is read from AZURE_STORAGE_ACCOUNT_NAME and credentials from AZURE_STORAGE_ACCOUNT_KEY, AZURE_STORAGE_SAS_TOKEN or AZURE_CLIENT_*";

/// Opens `az://container[/prefix]` or `azure://…`; `location` is the whole location string.
pub(crate) fn open(location: &str) -> Result<Arc<dyn Backend>, BackendError> {
    open_with_env(location, &|k| std::env::var(k).ok())
}

/// [`open`], with the environment passed in for cairn's own checks (tests);
/// `object_store` reads the process environment itself.
fn open_with_env(location: &str, env: Env<'_>) -> Result<Arc<dyn Backend>, BackendError> {
    let (container, prefix) = cloud::split_location(location, "container", CONFIG)?;
    check_credentials(env).map_err(|detail| {
        BackendError::new(BackendErrorKind::Other, "open", "", location).with_detail(detail)
    })?;
    let store = MicrosoftAzureBuilder::from_env()
        .with_container_name(container)
        .with_retry(cloud::retry_config())
        .with_config(
            AzureConfigKey::Client(ClientConfigKey::ConnectTimeout),
            cloud::CONNECT_TIMEOUT,
        )
        .with_config(
            AzureConfigKey::Client(ClientConfigKey::Timeout),
            cloud::REQUEST_TIMEOUT,
        )
        .build()
        .map_err(|e| super::object_store::map_error(e, "open", "", location))?;
    cloud::backend_for(
        store,
        prefix,
        location,
        "<Code>ContainerNotFound</Code>",
        format!(
            "container {container:?} does not exist in the storage account; create it first (cairn never creates containers)"
        ),
    )
}

/// The first of `keys` that is set, if any.
fn first_set<'k>(env: Env<'_>, keys: &[&'k str]) -> Option<&'k str> {
    keys.iter().copied().find(|k| is_set(env, k))
}

/// Checks that the account and some credential source are configured, so a missing key is an
/// error now rather than a timeout against the instance metadata service later.
fn check_credentials(env: Env<'_>) -> Result<(), String> {
    if is_true(env, "AZURE_STORAGE_USE_EMULATOR") {
        return Ok(());
    }
    if !is_set(env, "AZURE_STORAGE_ACCOUNT_NAME") {
        return Err("AZURE_STORAGE_ACCOUNT_NAME is not set: name the storage account that holds the container (for the Azurite emulator set AZURE_STORAGE_USE_EMULATOR=true instead)".to_owned());
    }
    let statics = [
        "AZURE_STORAGE_ACCOUNT_KEY",
        "AZURE_STORAGE_ACCESS_KEY",
        "AZURE_STORAGE_MASTER_KEY",
        "AZURE_STORAGE_SAS_TOKEN",
        "AZURE_STORAGE_SAS_KEY",
        "AZURE_STORAGE_TOKEN",
        "AZURE_MSI_ENDPOINT",
        "AZURE_IDENTITY_ENDPOINT",
        "IDENTITY_ENDPOINT",
    ];
    if first_set(env, &statics).is_some()
        || is_true(env, "AZURE_USE_AZURE_CLI")
        || is_true(env, "AZURE_SKIP_SIGNATURE")
    {
        return Ok(());
    }
    let client_id = first_set(env, &["AZURE_CLIENT_ID", "AZURE_STORAGE_CLIENT_ID"]);
    let secret = first_set(env, &["AZURE_CLIENT_SECRET", "AZURE_STORAGE_CLIENT_SECRET"]);
    let tenant = first_set(
        env,
        &[
            "AZURE_TENANT_ID",
            "AZURE_STORAGE_TENANT_ID",
            "AZURE_AUTHORITY_ID",
            "AZURE_STORAGE_AUTHORITY_ID",
        ],
    );
    let federated = first_set(env, &["AZURE_FEDERATED_TOKEN_FILE"]);
    if client_id.is_some() && tenant.is_some() && (secret.is_some() || federated.is_some()) {
        return Ok(());
    }
    if client_id.is_some() || secret.is_some() || tenant.is_some() || federated.is_some() {
        let missing: Vec<&str> = [
            (client_id, "AZURE_CLIENT_ID"),
            (tenant, "AZURE_TENANT_ID"),
            (
                secret.or(federated),
                "AZURE_CLIENT_SECRET (or AZURE_FEDERATED_TOKEN_FILE)",
            ),
        ]
        .into_iter()
        .filter(|(set, _)| set.is_none())
        .map(|(_, name)| name)
        .collect();
        return Err(format!(
            "incomplete Azure service principal: {} not set",
            missing.join(", ")
        ));
    }
    Err("no Azure credentials: set AZURE_STORAGE_ACCOUNT_KEY (a shared key) or AZURE_STORAGE_SAS_TOKEN, or AZURE_CLIENT_ID, AZURE_CLIENT_SECRET and AZURE_TENANT_ID (a service principal; AZURE_FEDERATED_TOKEN_FILE instead of the secret for workload identity), or AZURE_USE_AZURE_CLI=true; for a managed identity set AZURE_MSI_ENDPOINT (on a VM: http://169.254.169.254/metadata/identity/oauth2/token); for the Azurite emulator set AZURE_STORAGE_USE_EMULATOR=true".to_owned())
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
        let account = ("AZURE_STORAGE_ACCOUNT_NAME", "acct");
        for (vars, needles) in [
            (
                &[][..],
                &[
                    "AZURE_STORAGE_ACCOUNT_NAME is not set",
                    "AZURE_STORAGE_USE_EMULATOR",
                ][..],
            ),
            (
                &[account][..],
                &[
                    "no Azure credentials",
                    "AZURE_STORAGE_ACCOUNT_KEY",
                    "AZURE_STORAGE_SAS_TOKEN",
                    "AZURE_CLIENT_SECRET",
                    "AZURE_MSI_ENDPOINT",
                    "AZURE_STORAGE_USE_EMULATOR=true",
                ][..],
            ),
            (
                &[account, ("AZURE_CLIENT_ID", "id")][..],
                &["incomplete", "AZURE_TENANT_ID, AZURE_CLIENT_SECRET"][..],
            ),
            (
                &[
                    account,
                    ("AZURE_CLIENT_SECRET", "s"),
                    ("AZURE_TENANT_ID", "t"),
                ][..],
                &["incomplete", "AZURE_CLIENT_ID not set"][..],
            ),
            (
                &[account, ("AZURE_STORAGE_USE_EMULATOR", "false")][..],
                &["no Azure credentials"][..],
            ),
        ] {
            let e = check_credentials(&env_of(vars)).expect_err("no credentials");
            for needle in needles {
                assert!(e.contains(needle), "{vars:?}: {e}");
            }
        }
        for vars in [
            &[("AZURE_STORAGE_USE_EMULATOR", "true")][..],
            &[account, ("AZURE_STORAGE_ACCOUNT_KEY", "k")][..],
            &[account, ("AZURE_STORAGE_ACCESS_KEY", "k")][..],
            &[account, ("AZURE_STORAGE_SAS_TOKEN", "sv=1&sig=x")][..],
            &[account, ("AZURE_STORAGE_TOKEN", "t")][..],
            &[account, ("AZURE_USE_AZURE_CLI", "true")][..],
            &[account, ("AZURE_MSI_ENDPOINT", "http://169.254.169.254/x")][..],
            &[account, ("IDENTITY_ENDPOINT", "http://x")][..],
            &[
                account,
                ("AZURE_CLIENT_ID", "i"),
                ("AZURE_CLIENT_SECRET", "s"),
                ("AZURE_TENANT_ID", "t"),
            ][..],
            &[
                account,
                ("AZURE_STORAGE_CLIENT_ID", "i"),
                ("AZURE_FEDERATED_TOKEN_FILE", "/f"),
                ("AZURE_STORAGE_TENANT_ID", "t"),
            ][..],
        ] {
            assert!(check_credentials(&env_of(vars)).is_ok(), "{vars:?}");
        }
        let e = open_with_env("az://c/p", &env_of(&[])).expect_err("no account");
        assert!(e.to_string().contains("az://c/p"), "{e}");
    }

    #[test]
    fn bad_locations_fail_before_credentials() {
        for (loc, needle) in [
            ("az://", "missing container: expected az://CONTAINER"),
            ("azure://", "missing container: expected azure://CONTAINER"),
            ("az:///prefix", "missing container"),
            (
                "az://container@account.blob.core.windows.net/p",
                "never from the location",
            ),
            ("az://key:secret@container/p", "never from the location"),
            ("az://container/p?sv=2020&sig=x", "no query"),
        ] {
            let e = open_with_env(loc, &env_of(&[])).expect_err(loc);
            assert!(e.to_string().contains(needle), "{loc}: {e}");
        }
    }
}
