//! Storage backends: the one small trait every repository storage implements.
//!
//! A repository is a handful of object kinds ([`FileType`]) stored under names (object ids in
//! hex, SPEC §2). A [`Backend`] stores whole objects and reads them back, whole or by range; it
//! knows nothing about encryption, packs or indexes.
//!
//! | implementation | location string | notes |
//! |---|---|---|
//! | [`LocalBackend`] | `/srv/repo`, `file:///srv/repo` | temp file + fsync + create-only hard link + directory fsync |
//! | [`ObjectStoreBackend`] over `InMemory` | `memory://` | a fresh, empty store per call; for tests |
//! | [`ObjectStoreBackend`] over `LocalFileSystem` | `object+file:///srv/repo` | exercises the `object_store` adapter on disk (tests) |
//! | [`ObjectStoreBackend`] over `AmazonS3` | `s3://bucket/prefix` | S3 or an S3-compatible server; configured by `AWS_*` variables (see `s3.rs`) |
//! | [`ObjectStoreBackend`] over `GoogleCloudStorage` | `gs://bucket/prefix` | Google Cloud Storage; configured by `GOOGLE_*` variables and credential files (see `gcs.rs`) |
//! | [`ObjectStoreBackend`] over `MicrosoftAzure` | `az://container/prefix`, `azure://…` | Azure Blob Storage or Azurite; configured by `AZURE_*` variables (see `azure.rs`) |
//!
//! The cloud backends share retries with backoff and jitter, timeouts and a limit of 32
//! requests in flight (`cloud.rs`). Each writes create-only through a conditional request
//! (S3 `If-None-Match: *`, GCS `x-goog-if-generation-match: 0`, Azure `If-None-Match: *`), and
//! each refuses credentials in the location.
//!
//! # Contract
//!
//! - Objects are immutable. [`Backend::put`] is *create-only*: when the name exists it fails with
//!   [`BackendErrorKind::AlreadyExists`] and leaves the stored bytes untouched; when it returns
//!   `Ok`, the object is durable (as durable as the storage promises: fsynced for a local
//!   directory, acknowledged for an object store) and readers see either nothing or all of it.
//! - A missing object is [`BackendErrorKind::NotFound`] for [`Backend::get`] and
//!   [`Backend::get_range`], `Ok(None)` for [`Backend::exists`] and `Ok(())` for
//!   [`Backend::delete`].
//! - [`Backend::get_range`] returns exactly `len` bytes or an error (a range that reaches past the
//!   end of the object is [`BackendErrorKind::Other`]); it never returns a short read.
//! - [`Backend::list`] returns the objects of one type (for packs: across all 256 shards), in no
//!   particular order, without temporary files.
//! - For [`FileType::Config`] the name is ignored: there is one config object, `config`.
//!
//! Names are checked before any I/O: 1 to 128 ASCII letters, digits, `-` or `_` (packs: at least
//! 2, the shard). Anything else (a `/`, a leading `.`, an empty name) is an error of kind
//! [`BackendErrorKind::Other`], so a name can never escape the repository.

mod azure;
mod cloud;
mod error;
pub mod faulty;
mod gcs;
pub mod latency;
pub mod local;
pub mod object_store;
mod s3;

use std::sync::Arc;

pub use self::error::{BackendError, BackendErrorKind};
pub use self::latency::LatencyBackend;
pub use self::local::LocalBackend;
pub use self::object_store::ObjectStoreBackend;

/// The kinds of objects in a repository; each has its own directory (SPEC §2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileType {
    /// `config`: the repository config (one object; names are ignored).
    Config,
    /// `keys/<id>`: key files.
    Key,
    /// `data/<first 2 hex>/<id>`: packs, in 256 shards.
    Pack,
    /// `index/<id>`: index files.
    Index,
    /// `snapshots/<id>`: snapshots.
    Snapshot,
    /// `plans/<id>`: prune's deletion plans (SPEC §17).
    Plan,
    /// `leases/<20-digit number>`: prune leases (SPEC §17).
    Lease,
}

impl FileType {
    /// All file types, in the order a reader needs them.
    pub const ALL: [FileType; 7] = [
        FileType::Config,
        FileType::Key,
        FileType::Index,
        FileType::Snapshot,
        FileType::Pack,
        FileType::Plan,
        FileType::Lease,
    ];

    /// The directory of this type relative to the repository root (`""` for the config).
    pub fn dir(&self) -> &'static str {
        match self {
            FileType::Config => "",
            FileType::Key => "keys",
            FileType::Pack => "data",
            FileType::Index => "index",
            FileType::Snapshot => "snapshots",
            FileType::Plan => "plans",
            FileType::Lease => "leases",
        }
    }

    /// The object's path relative to the repository root, `/`-separated: `config`, `keys/<n>`,
    /// `data/<n[..2]>/<n>`, `index/<n>`, `snapshots/<n>`.
    ///
    /// Does not validate `name` (the backends do, before any I/O); a pack name shorter than two
    /// bytes gets an empty shard rather than a panic.
    pub fn path(&self, name: &str) -> String {
        match self {
            FileType::Config => "config".to_owned(),
            FileType::Pack => format!("data/{}/{name}", shard_of(name)),
            other => format!("{}/{name}", other.dir()),
        }
    }
}

/// The shard directory of a pack name: its first two characters (`""` if it has fewer).
pub(crate) fn shard_of(name: &str) -> &str {
    name.get(..2).unwrap_or("")
}

/// The name under which the config is listed.
pub(crate) const CONFIG_NAME: &str = "config";

/// Longest accepted object name (ids are 64 hex digits; this leaves room for other names).
const MAX_NAME_LEN: usize = 128;

/// Checks an object name before it is turned into a path (see the module docs for the rule).
///
/// `op` and `location` are only used for the error message.
pub(crate) fn check_name(
    t: FileType,
    name: &str,
    op: &'static str,
    location: &str,
) -> Result<(), BackendError> {
    if t == FileType::Config {
        return Ok(());
    }
    let min = if t == FileType::Pack { 2 } else { 1 };
    let ok = name.len() >= min
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(
            BackendError::new(BackendErrorKind::Other, op, t.path(name), location).with_detail(
                format!(
                    "invalid object name {name:?}: expected {min} to {MAX_NAME_LEN} ASCII letters, digits, '-' or '_'"
                ),
            ),
        )
    }
}

/// Checks that `offset + len` does not overflow, returning the end of the range.
pub(crate) fn range_end(
    t: FileType,
    name: &str,
    offset: u64,
    len: u64,
    location: &str,
) -> Result<u64, BackendError> {
    offset.checked_add(len).ok_or_else(|| {
        BackendError::new(BackendErrorKind::Other, "read", t.path(name), location)
            .with_detail(format!("range {offset}+{len} overflows"))
    })
}

/// The error for a range that reaches past the end of an object of `size` bytes.
pub(crate) fn range_past_end(
    t: FileType,
    name: &str,
    offset: u64,
    len: u64,
    size: u64,
    location: &str,
) -> BackendError {
    BackendError::new(BackendErrorKind::Other, "read", t.path(name), location).with_detail(format!(
        "range {offset}..{} is past the end of the {size}-byte object",
        offset.saturating_add(len)
    ))
}

/// One object as listed by [`Backend::list`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectInfo {
    /// The object's name, without its directory (`config` for the config).
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// When the storage last wrote it, Unix nanoseconds on the *storage's* clock (prune
    /// measures its grace period with it, SPEC §18); `None` where the storage does not say.
    pub modified: Option<i64>,
}

/// Where a repository's objects live. See the module docs for the contract every method keeps.
#[async_trait::async_trait]
pub trait Backend: Send + Sync + std::fmt::Debug + 'static {
    /// A description of the storage for messages (a path or URL); never includes secrets.
    fn location(&self) -> String;

    /// Stores `data` under (`t`, `name`) durably before returning. Create-only: if the object
    /// exists, returns an error of kind [`BackendErrorKind::AlreadyExists`] and leaves it untouched.
    async fn put(&self, t: FileType, name: &str, data: bytes::Bytes) -> Result<(), BackendError>;

    /// Reads a whole object; [`BackendErrorKind::NotFound`] if it is missing.
    async fn get(&self, t: FileType, name: &str) -> Result<bytes::Bytes, BackendError>;

    /// Reads exactly `len` bytes at `offset`; a range past the end is an error, never a short read.
    async fn get_range(
        &self,
        t: FileType,
        name: &str,
        offset: u64,
        len: u64,
    ) -> Result<bytes::Bytes, BackendError>;

    /// Lists the objects of one type (name without directory, size), in no particular order.
    async fn list(&self, t: FileType) -> Result<Vec<ObjectInfo>, BackendError>;

    /// Deletes an object; deleting a missing object is `Ok`.
    async fn delete(&self, t: FileType, name: &str) -> Result<(), BackendError>;

    /// The object's size and modification time if it exists, `None` if it does not.
    async fn stat(&self, t: FileType, name: &str) -> Result<Option<ObjectInfo>, BackendError>;

    /// The object's size if it exists, `None` if it does not.
    async fn exists(&self, t: FileType, name: &str) -> Result<Option<u64>, BackendError> {
        Ok(self.stat(t, name).await?.map(|i| i.size))
    }
}

/// Schemes that name object stores this build cannot reach yet.
const LATER_SCHEMES: [&str; 4] = ["abfs", "abfss", "http", "https"];

/// Opens the backend a location string names:
///
/// - a plain path (relative paths are made absolute) or `file:///abs/path` → [`LocalBackend`];
/// - `memory://` → a fresh, empty in-memory store ([`ObjectStoreBackend`]), for tests;
/// - `object+file:///abs/path` → `object_store`'s `LocalFileSystem` rooted at an existing
///   directory, through [`ObjectStoreBackend`] (tests the adapter on disk);
/// - `s3://bucket[/prefix]` → S3 or an S3-compatible server through [`ObjectStoreBackend`];
///   credentials, region and endpoint come from the `AWS_*` environment variables
///   (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT_URL`,
///   `AWS_ALLOW_HTTP`), never from the location; puts are conditional (`If-None-Match: *`);
/// - `gs://bucket[/prefix]` → Google Cloud Storage through [`ObjectStoreBackend`]; credentials
///   from `GOOGLE_APPLICATION_CREDENTIALS`, `GOOGLE_SERVICE_ACCOUNT`(`_PATH`),
///   `GOOGLE_SERVICE_ACCOUNT_KEY`, gcloud's application default credentials file, or the
///   metadata server when `GCE_METADATA_HOST` is set; puts are conditional
///   (`x-goog-if-generation-match: 0`);
/// - `az://container[/prefix]` or `azure://container[/prefix]` → Azure Blob Storage through
///   [`ObjectStoreBackend`]; the account from `AZURE_STORAGE_ACCOUNT_NAME`, credentials from
///   `AZURE_STORAGE_ACCOUNT_KEY`, `AZURE_STORAGE_SAS_TOKEN`, `AZURE_CLIENT_ID` +
///   `AZURE_CLIENT_SECRET` + `AZURE_TENANT_ID` and the others `object_store` reads,
///   `AZURE_STORAGE_ENDPOINT` for another endpoint, `AZURE_STORAGE_USE_EMULATOR=true` for
///   Azurite; puts are conditional (`If-None-Match: *`);
/// - `abfs://`, `http://` … → an error: not supported yet in this build.
///
/// For the cloud schemes, the location holds only the bucket or container and the prefix: a
/// query, a fragment, or `user:secret@` in it is refused, and so is a configuration without
/// any credential source (the error names the variables to set).
///
/// Opening touches no storage except for `object+file://`, which needs its directory to exist
/// (the cloud backends read the credential files the environment names); a [`LocalBackend`]
/// directory is created when the config is written (see [`LocalBackend`]).
pub fn open_backend(location: &str) -> Result<Arc<dyn Backend>, BackendError> {
    let bad = |detail: String| {
        BackendError::new(BackendErrorKind::Other, "open", "", location).with_detail(detail)
    };
    let Some((scheme, _)) = location.split_once("://") else {
        if location.is_empty() {
            return Err(bad("empty repository location".to_owned()));
        }
        let path = std::path::absolute(location).map_err(|e| {
            BackendError::from_io("open", "", location, e)
                .with_detail("cannot make the path absolute".to_owned())
        })?;
        return Ok(Arc::new(LocalBackend::new(path)));
    };
    match scheme.to_ascii_lowercase().as_str() {
        "file" => Ok(Arc::new(LocalBackend::new(file_url_path(location)?))),
        "memory" => {
            if location.len() > "memory://".len() {
                return Err(bad("memory:// takes nothing after the scheme".to_owned()));
            }
            Ok(Arc::new(ObjectStoreBackend::new(
                Arc::new(::object_store::memory::InMemory::new()),
                "",
                "memory://".to_owned(),
            )?))
        }
        "object+file" => {
            let path = file_url_path(location.get("object+".len()..).unwrap_or(location))
                .map_err(|e| e.with_location(location))?;
            let store = ::object_store::local::LocalFileSystem::new_with_prefix(&path)
                .map_err(|e| self::object_store::map_error(e, "open", "", location))?;
            Ok(Arc::new(ObjectStoreBackend::new(
                Arc::new(store),
                "",
                location.to_owned(),
            )?))
        }
        "s3" => s3::open(location),
        "gs" => gcs::open(location),
        "az" | "azure" => azure::open(location),
        "gcs" => Err(bad(
            "Google Cloud Storage locations are written gs://BUCKET/PREFIX".to_owned(),
        )),
        s if LATER_SCHEMES.contains(&s) => Err(bad(format!(
            "{s}:// repositories are not supported yet in this build"
        ))),
        s => Err(bad(format!(
            "unknown scheme {s}://; expected a path, file://, s3://, gs://, az://, or memory://"
        ))),
    }
}

/// The local path of a `file://` URL; it must be absolute (`file:///srv/repo`).
fn file_url_path(location: &str) -> Result<std::path::PathBuf, BackendError> {
    let bad = |detail: String| {
        BackendError::new(BackendErrorKind::Other, "open", "", location).with_detail(detail)
    };
    let url = url::Url::parse(location).map_err(|e| bad(format!("not a valid URL: {e}")))?;
    url.to_file_path().map_err(|()| {
        bad("a file:// URL needs an absolute local path, e.g. file:///srv/repo".to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_spec_layout() {
        assert_eq!(FileType::Config.path("whatever"), "config");
        assert_eq!(FileType::Key.path("ab12"), "keys/ab12");
        assert_eq!(FileType::Pack.path("ab12"), "data/ab/ab12");
        assert_eq!(FileType::Index.path("ab12"), "index/ab12");
        assert_eq!(FileType::Snapshot.path("ab12"), "snapshots/ab12");
        // Never panics, even on names the backends would reject.
        assert_eq!(FileType::Pack.path("a"), "data//a");
        assert_eq!(FileType::Pack.path("é"), "data/é/é");
    }

    #[test]
    fn names_are_checked() {
        for bad in ["", ".tmp-x", "a/b", "..", "a b", "é", &"a".repeat(129)] {
            let e = check_name(FileType::Key, bad, "write", "/r").expect_err(bad);
            assert_eq!(e.kind(), BackendErrorKind::Other);
        }
        assert!(check_name(FileType::Pack, "a", "write", "/r").is_err());
        assert!(check_name(FileType::Pack, "ab", "write", "/r").is_ok());
        assert!(check_name(FileType::Config, "", "write", "/r").is_ok());
        assert!(check_name(FileType::Snapshot, &"f".repeat(64), "write", "/r").is_ok());
    }

    #[test]
    fn open_backend_schemes() {
        assert!(open_backend("memory://").is_ok());
        assert!(open_backend("/tmp/some/repo").is_ok());
        assert!(open_backend("file:///tmp/some/repo").is_ok());
        assert!(open_backend("relative/repo").is_ok());
        for (loc, needle) in [
            ("s3://", "missing bucket"),
            ("gs://", "missing bucket"),
            ("gcs://bucket", "written gs://BUCKET/PREFIX"),
            ("az://", "missing container"),
            ("azure://", "missing container"),
            ("abfs://container", "not supported yet in this build"),
            ("ftp://host/x", "unknown scheme"),
            ("file://relative", "absolute local path"),
            ("memory://x", "nothing after"),
            ("", "empty"),
        ] {
            let e = open_backend(loc).expect_err(loc);
            assert!(e.to_string().contains(needle), "{loc}: {e}");
        }
    }
}
