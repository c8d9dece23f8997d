//! The repository handle: a backend, the opened keys, the config and the local index cache.
//!
//! [`init`] creates a repository; [`Repository::open`] opens one with a password. Everything
//! else in the engine reads and writes objects through the methods here, which enforce the
//! rules of SPEC.md §2 (object names are the hash of their bytes, checked on every read) and
//! §12 (write order is the caller's job: packs, then index files, then the snapshot).
//!
//! The engine's surface is synchronous; the handle owns a tokio runtime and drives backend
//! futures on it, so CPU work can run on plain threads and rayon while I/O overlaps.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use repo_format::{
    BlobId, ChunkerProfile, Config, Id, IndexFile, IndexId, KdfParams, KeyFile, MasterKey,
    RepoKeys, Snapshot, SnapshotId, object_id,
};

use crate::backend::{Backend, BackendErrorKind, FileType, open_backend};
use crate::error::{Error, ErrorKind, Result};
use crate::index::cache::{BlobLocation, CacheError, IndexCache, IndexFileRecord};
use crate::memory::ReleaseEvery;
use crate::rollback::RollbackWarning;

/// How many objects are fetched at once when loading many small ones (snapshots, index files).
const FETCH_CONCURRENCY: usize = 8;

/// Options for [`init`].
#[derive(Clone, Debug)]
pub struct InitOptions {
    /// Argon2id parameters for the first key file.
    pub kdf: KdfParams,
    /// zstd level (0 stores raw); `None` keeps the SPEC default.
    pub compression_level: Option<i32>,
    /// Host name recorded in the key file.
    pub hostname: String,
    /// User name recorded in the key file.
    pub username: String,
    /// Prune's grace period in seconds (SPEC §6 tag 6); `None` keeps the default (12 h).
    /// It must be longer than a backup may pause between its last check and its snapshot.
    pub prune_grace_secs: Option<u64>,
    /// Chunker profiles to write instead of SPEC §6's three (`None`); validated as any config.
    pub profiles: Option<Vec<ChunkerProfile>>,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            kdf: KdfParams::DEFAULT,
            compression_level: None,
            hostname: crate::host::hostname(),
            username: crate::host::username(),
            prune_grace_secs: None,
            profiles: None,
        }
    }
}

/// Options for [`Repository::open`].
#[derive(Clone, Debug, Default)]
pub struct OpenOptions {
    /// Where the local index cache lives; `None` means [`default_cache_dir`].
    pub cache_dir: Option<PathBuf>,
}

/// What [`init`] created.
#[derive(Clone, Debug)]
pub struct InitResult {
    /// The new repository's id.
    pub repo_id: Id,
    /// The id of the first key file.
    pub key_id: Id,
    /// Whether the storage refused to overwrite the config (create-only writes work). Where it
    /// does not, concurrent writers and deletion are not safe; callers should warn.
    pub create_only: bool,
}

/// Random bytes from the OS; failing to get them is fatal for whatever needed them.
pub fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| {
        Error::new(
            ErrorKind::Io,
            format!("the operating system's random number generator failed: {e}"),
        )
    })?;
    Ok(b)
}

/// The current time in Unix seconds.
pub fn now_unix() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// This machine's time, Unix nanoseconds.
pub fn now_ns() -> i64 {
    i64::try_from(jiff::Timestamp::now().as_nanosecond()).unwrap_or(i64::MAX)
}

/// The one id in `ids` that `spec` names: the full hex id or a unique prefix, in any case.
/// `what` names the kind in errors ("snapshot", "key"), `other` is what else the user could give
/// (shown when `spec` is not hex), `location` is the repository's.
pub fn match_prefix(ids: &[Id], spec: &str, what: &str, other: &str, location: &str) -> Result<Id> {
    if spec.is_empty() || !spec.bytes().all(|b| b.is_ascii_hexdigit()) || spec.len() > 64 {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("'{spec}' is not a {what} id: give a hex id or unique prefix, or {other}"),
        ));
    }
    let lower = spec.to_ascii_lowercase();
    let mut matches: Vec<Id> = ids
        .iter()
        .filter(|id| id.to_hex().starts_with(&lower))
        .copied()
        .collect();
    matches.sort();
    match matches.as_slice() {
        [] => Err(Error::new(
            ErrorKind::NotFound,
            format!("no {what} matches '{spec}' in {location}"),
        )),
        [one] => Ok(*one),
        many => Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "'{spec}' matches {} {what}s ({}); give more digits",
                many.len(),
                many.iter().map(Id::to_hex).collect::<Vec<_>>().join(", ")
            ),
        )),
    }
}

/// What [`Repository::sync_index_report`] did.
#[derive(Clone, Copy, Debug, Default)]
pub struct SyncReport {
    /// Index files loaded into the cache.
    pub loaded: usize,
    /// The cache was cleared and rebuilt: an index file it had loaded is gone, or another
    /// listed index file supersedes it (a prune's sweep rewrote the index meanwhile).
    pub rebuilt: bool,
    /// Listed index files that another listed index file supersedes (SPEC §8): left by a sweep
    /// that has not deleted them yet, or put back by the storage. Their entries serve only blobs
    /// that no current index file names.
    pub superseded: usize,
}

/// The cache directory: `$CAIRN_CACHE_DIR`, else `$XDG_CACHE_HOME/cairn`, else `~/.cache/cairn`.
pub fn default_cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("CAIRN_CACHE_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(d).join("cairn");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".cache").join("cairn"),
        None => std::env::temp_dir().join("cairn-cache"),
    }
}

fn new_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("cairn-io")
        .enable_all()
        .build()
        .map_err(|e| Error::io("cannot start the I/O runtime", e))
}

/// Creates a new repository at `location` with one key file for `password`.
///
/// Write order: the key file, then the config. A crash between the two leaves a key file and
/// no config: not a repository, and a later `init` simply writes a fresh one.
pub fn init(location: &str, password: &[u8], opts: &InitOptions) -> Result<InitResult> {
    let backend =
        open_backend(location).map_err(|e| Error::backend(format!("cannot open {location}"), e))?;
    init_with_backend(backend, location, password, opts)
}

/// Like [`init`], over an already-built backend (tests, wrappers).
pub fn init_with_backend(
    backend: Arc<dyn Backend>,
    location: &str,
    password: &[u8],
    opts: &InitOptions,
) -> Result<InitResult> {
    let rt = new_runtime()?;
    rt.block_on(async {
        match backend.exists(FileType::Config, "config").await {
            Ok(Some(_)) => Err(Error::new(
                ErrorKind::AlreadyExists,
                format!(
                    "a repository already exists at {location}; use it, or choose another location"
                ),
            )),
            Ok(None) => Ok(()),
            Err(e) => Err(Error::backend(format!("cannot access {location}"), e)),
        }
    })?;
    opts.kdf.validate().map_err(|e| {
        Error::with_source(
            ErrorKind::InvalidInput,
            "invalid key derivation parameters",
            e,
        )
    })?;
    let repo_id = Id(random_bytes::<32>()?);
    let master = MasterKey::from_bytes(random_bytes::<72>()?);
    let keys = RepoKeys::new(repo_id, master.clone());
    let mut config = Config::new(repo_id, now_unix());
    if let Some(grace) = opts.prune_grace_secs {
        config.prune_grace_secs = grace;
    }
    if let Some(level) = opts.compression_level {
        config.compression_level = level;
    }
    if let Some(profiles) = &opts.profiles {
        config.profiles = profiles.clone();
    }
    let key_bytes = KeyFile::create(
        &repo_id,
        &master,
        password,
        opts.kdf,
        random_bytes::<32>()?,
        random_bytes::<16>()?,
        now_unix(),
        &opts.hostname,
        &opts.username,
    )
    .map_err(|e| Error::format("cannot create the key file", e))?;
    let config_bytes = config.encode(&keys, random_bytes::<16>()?).map_err(|e| {
        Error::with_source(ErrorKind::InvalidInput, "invalid repository settings", e)
    })?;
    let key_id = object_id(&key_bytes);
    rt.block_on(async {
        backend
            .put(FileType::Key, &key_id.to_hex(), Bytes::from(key_bytes))
            .await
            .map_err(|e| Error::backend("cannot write the key file", e))?;
        let config_bytes = Bytes::from(config_bytes);
        backend
            .put(FileType::Config, "config", config_bytes.clone())
            .await
            .map_err(|e| Error::backend("cannot write the config", e))?;
        // Probe create-only writes for free: writing the same config again must be refused.
        // If the storage accepts it, it silently overwrites objects (the bytes are identical,
        // so this probe itself changes nothing).
        match backend.put(FileType::Config, "config", config_bytes).await {
            Ok(()) => Ok(false),
            Err(e) if e.kind() == BackendErrorKind::AlreadyExists => Ok(true),
            Err(e) => Err(Error::backend(
                "cannot probe create-only writes on the config",
                e,
            )),
        }
    })
    .map(|create_only| InitResult {
        repo_id,
        key_id,
        create_only,
    })
}

/// An open repository.
pub struct Repository {
    backend: Arc<dyn Backend>,
    keys: RepoKeys,
    config: Config,
    /// Always `Some` until drop (taken there so the database closes before its directory goes).
    cache: Option<IndexCache>,
    /// A private cache directory used because the shared one was locked; removed on drop.
    private_cache: Option<PathBuf>,
    cache_dir: PathBuf,
    location: String,
    key_id: Id,
    damaged_index: std::sync::Mutex<Vec<(IndexId, String)>>,
    damaged_snapshots: std::sync::Mutex<Vec<(SnapshotId, String)>>,
    /// What the last listing of every snapshot found about a rolled-back `latest`.
    rollback: std::sync::Mutex<Option<RollbackWarning>>,
    rollback_handler: std::sync::Mutex<Option<RollbackHandler>>,
    /// The compression groups opened last (restore and copy come back to them).
    recent_groups: crate::recent_groups::RecentGroups,
    rt: tokio::runtime::Runtime,
}

/// Called with each [`RollbackWarning`] as a listing finds it (see
/// [`Repository::set_rollback_handler`]).
pub type RollbackHandler = Arc<dyn Fn(&RollbackWarning) + Send + Sync>;

impl std::fmt::Debug for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repository")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl Repository {
    /// Opens the repository at `location`: reads the config, finds a key file that opens with
    /// `password`, and brings the local index cache up to date with the index files.
    pub fn open(location: &str, password: &[u8], opts: &OpenOptions) -> Result<Repository> {
        let backend = open_backend(location)
            .map_err(|e| Error::backend(format!("cannot open {location}"), e))?;
        Self::open_with_backend(backend, location, password, opts)
    }

    /// Like [`Repository::open`], over an already-built backend (tests, wrappers).
    pub fn open_with_backend(
        backend: Arc<dyn Backend>,
        location: &str,
        password: &[u8],
        opts: &OpenOptions,
    ) -> Result<Repository> {
        let rt = new_runtime()?;
        let config_bytes = rt.block_on(backend.get(FileType::Config, "config")).map_err(|e| {
            if e.kind() == BackendErrorKind::NotFound {
                Error::with_source(
                    ErrorKind::NotFound,
                    format!("no cairn repository at {location} (no config file); create one with `cairn init`"),
                    e,
                )
            } else {
                Error::backend(format!("cannot read the config of {location}"), e)
            }
        })?;
        let repo_id = Config::peek_repo_id(&config_bytes).map_err(|e| {
            Error::format(
                format!("{location}/config is not a cairn repository config"),
                e,
            )
        })?;
        let (master, key_id) = rt.block_on(find_key(&*backend, &repo_id, password, location))?;
        let keys = RepoKeys::new(repo_id, master);
        let config = Config::decode(&config_bytes, &keys)
            .map_err(|e| Error::format(format!("{location}/config is damaged"), e))?;
        let cache_dir = opts
            .cache_dir
            .clone()
            .unwrap_or_else(default_cache_dir)
            .join(repo_id.to_hex());
        let (cache, private_cache) = open_cache(&cache_dir)?;
        let repo = Repository {
            backend,
            keys,
            config,
            cache: Some(cache),
            private_cache,
            cache_dir,
            location: location.to_string(),
            key_id,
            damaged_index: std::sync::Mutex::new(Vec::new()),
            damaged_snapshots: std::sync::Mutex::new(Vec::new()),
            rollback: std::sync::Mutex::new(None),
            rollback_handler: std::sync::Mutex::new(None),
            recent_groups: Default::default(),
            rt,
        };
        repo.sync_index()?;
        Ok(repo)
    }

    /// Where the repository is, as the user named it.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The repository's keys.
    pub fn keys(&self) -> &RepoKeys {
        &self.keys
    }

    /// The repository's config.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The key file that opened the repository.
    pub fn key_id(&self) -> &Id {
        &self.key_id
    }

    /// The local index cache.
    pub fn cache(&self) -> &IndexCache {
        // Invariant: `cache` is Some from construction until `drop`.
        self.cache
            .as_ref()
            .unwrap_or_else(|| unreachable!("the index cache is only taken in drop"))
    }

    /// Whether this handle uses a private, temporary cache (the shared one was in use).
    pub fn uses_private_cache(&self) -> bool {
        self.private_cache.is_some()
    }

    /// This repository's cache directory.
    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// Runs a backend future to completion from synchronous code (never from a runtime thread).
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// A handle to spawn backend work on.
    pub fn runtime(&self) -> &tokio::runtime::Handle {
        self.rt.handle()
    }

    /// Stores an object under the hash of its bytes; an object that already exists under that
    /// name has the same bytes, so that counts as success.
    pub fn put_object(&self, t: FileType, bytes: Vec<u8>) -> Result<Id> {
        let id = object_id(&bytes);
        self.block_on(put_content_addressed(
            &*self.backend,
            t,
            id,
            Bytes::from(bytes),
        ))?;
        Ok(id)
    }

    /// Reads a whole object and checks that its bytes hash to its name.
    pub fn get_object(&self, t: FileType, id: &Id) -> Result<Bytes> {
        self.block_on(get_verified(&*self.backend, t, id))
    }

    /// The ids of every object of type `t` (names that are not ids are skipped).
    pub fn list_ids(&self, t: FileType) -> Result<Vec<Id>> {
        let infos = self
            .block_on(self.backend.list(t))
            .map_err(|e| Error::backend(format!("cannot list {}/", t.dir()), e))?;
        Ok(infos
            .iter()
            .filter_map(|i| Id::from_hex(&i.name).ok())
            .collect())
    }

    /// Loads and decrypts one snapshot.
    pub fn load_snapshot(&self, id: &SnapshotId) -> Result<Snapshot> {
        let bytes = self.get_object(FileType::Snapshot, &id.0)?;
        Snapshot::decode(&self.keys, &bytes)
            .map_err(|e| Error::format(format!("snapshot {} is damaged", id.0.short()), e))
    }

    /// Every snapshot, oldest first (ties by id). A snapshot deleted between the listing and
    /// its read (a concurrent `forget`) is left out.
    pub fn list_snapshots(&self) -> Result<Vec<(SnapshotId, Snapshot)>> {
        Ok(self.list_snapshots_report()?.0)
    }

    /// [`list_snapshots`](Self::list_snapshots), also counting the snapshots that vanished
    /// between the listing and their read: a caller that needs every snapshot that existed at
    /// one moment (prune) lists again while that count is not zero.
    ///
    /// Each listing is also compared with the newest snapshot this machine saw before (see
    /// [`crate::rollback`]): when that one is gone, [`rollback_warning`](Self::rollback_warning)
    /// says so and the [handler](Self::set_rollback_handler) is called.
    pub fn list_snapshots_report(&self) -> Result<(Vec<(SnapshotId, Snapshot)>, usize)> {
        let ids = self.list_ids(FileType::Snapshot)?;
        let listed: HashSet<Id> = ids.iter().copied().collect();
        let backend = &self.backend;
        let keys = &self.keys;
        // A damaged snapshot must not hide the others (nor `latest`, nor a backup's parent):
        // it is left out and remembered, see `damaged_snapshots`. Storage failures still fail.
        let loaded: Vec<(Id, Result<Snapshot>)> = self.block_on(
            futures::stream::iter(ids.into_iter().map(|id| async move {
                let snap = match get_verified(&**backend, FileType::Snapshot, &id).await {
                    Ok(bytes) => Snapshot::decode(keys, &bytes).map_err(|e| {
                        Error::format(format!("snapshot {} is damaged", id.short()), e)
                    }),
                    Err(e) => Err(e),
                };
                (id, snap)
            }))
            .buffer_unordered(FETCH_CONCURRENCY)
            .collect(),
        );
        let mut all = Vec::with_capacity(loaded.len());
        let mut damaged = Vec::new();
        let mut vanished = 0;
        for (id, snap) in loaded {
            match snap {
                Ok(s) => all.push((SnapshotId(id), s)),
                Err(e) if e.kind() == ErrorKind::Corrupt => {
                    damaged.push((SnapshotId(id), crate::restorer::error_chain(&e)));
                }
                Err(e) if e.kind() == ErrorKind::NotFound => vanished += 1,
                Err(e) => return Err(e),
            }
        }
        damaged.sort();
        *self
            .damaged_snapshots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = damaged;
        all.sort_by_key(|a| (a.1.time_ns, a.0));
        let warning = crate::rollback::observe_listing(
            &self.cache_dir,
            &self.location,
            &listed,
            all.iter().map(|(id, s)| (*id, s.time_ns)),
            // The recorded snapshot, missing from the listing: gone, or written by another
            // process on this machine after the listing began? A storage error is no answer
            // (no warning; the next listing asks again).
            |id| {
                !matches!(
                    self.block_on(self.backend.exists(FileType::Snapshot, &id.0.to_hex())),
                    Ok(None)
                )
            },
        );
        self.note_rollback(warning);
        Ok((all, vanished))
    }

    fn note_rollback(&self, warning: Option<RollbackWarning>) {
        if let Some(w) = &warning {
            let handler = self
                .rollback_handler
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            if let Some(h) = handler {
                h(w);
            }
        }
        *self
            .rollback
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = warning;
    }

    /// What the last [`list_snapshots`](Self::list_snapshots) found about a rolled-back
    /// `latest`: the newest snapshot this machine saw before is gone and nothing as new took
    /// its place. A warning, not an error: another machine may have forgotten it. Each such
    /// removal is reported by one listing only (the state then moves on).
    pub fn rollback_warning(&self) -> Option<RollbackWarning> {
        self.rollback
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Calls `handler` with each [`RollbackWarning`] a listing finds, as it finds it (the CLI
    /// prints it on stderr before going on with `latest`).
    pub fn set_rollback_handler(&self, handler: impl Fn(&RollbackWarning) + Send + Sync + 'static) {
        *self
            .rollback_handler
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::new(handler));
    }

    /// Snapshots the last [`list_snapshots`](Self::list_snapshots) left out because they are
    /// damaged, with the reason (`cairn check` says more; `forget` removes them).
    pub fn damaged_snapshots(&self) -> Vec<(SnapshotId, String)> {
        self.damaged_snapshots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Finds a snapshot by full id, unique id prefix, or `latest`.
    pub fn resolve_snapshot(&self, spec: &str) -> Result<(SnapshotId, Snapshot)> {
        if spec == "latest" {
            return self.list_snapshots()?.pop().ok_or_else(|| {
                Error::new(
                    ErrorKind::NotFound,
                    format!("there are no snapshots in {}", self.location),
                )
            });
        }
        let id =
            SnapshotId(self.resolve_prefix(FileType::Snapshot, spec, "snapshot", "`latest`")?);
        Ok((id, self.load_snapshot(&id)?))
    }

    /// The one object of type `t` whose id `spec` names (see [`match_prefix`]).
    pub fn resolve_prefix(&self, t: FileType, spec: &str, what: &str, other: &str) -> Result<Id> {
        match_prefix(&self.list_ids(t)?, spec, what, other, &self.location)
    }

    /// Encrypts and stores a snapshot; call only after every index file it needs is stored.
    pub fn save_snapshot(&self, snapshot: &Snapshot) -> Result<SnapshotId> {
        let bytes = snapshot
            .encode(&self.keys, random_bytes::<16>()?)
            .map_err(|e| {
                Error::with_source(ErrorKind::InvalidInput, "cannot encode the snapshot", e)
            })?;
        let id = SnapshotId(self.put_object(FileType::Snapshot, bytes)?);
        crate::rollback::observe_written(&self.cache_dir, id, snapshot.time_ns);
        Ok(id)
    }

    /// Encrypts and stores an index file and records it in the local cache.
    pub fn save_index(&self, file: &IndexFile) -> Result<IndexId> {
        let bytes = file
            .encode(
                &self.keys,
                self.config.compression_level,
                random_bytes::<16>()?,
            )
            .map_err(|e| {
                Error::with_source(ErrorKind::InvalidInput, "cannot encode an index file", e)
            })?;
        let id = IndexId(self.put_object(FileType::Index, bytes)?);
        self.cache()
            .add_index_file(id, file)
            .map_err(|e| Error::cache("cannot update the index cache", e))?;
        Ok(id)
    }

    /// Loads and decrypts one index file (from the repository, not the cache).
    pub fn load_index(&self, id: &IndexId) -> Result<IndexFile> {
        let bytes = self.get_object(FileType::Index, &id.0)?;
        IndexFile::decode(&self.keys, &bytes)
            .map_err(|e| Error::format(format!("index file {} is damaged", id.0.short()), e))
    }

    /// Brings the local cache up to date with the repository's index files: loads the ones it
    /// has not seen, and rebuilds from scratch if one it had loaded is gone. A listed file that
    /// another listed file supersedes never overrides a current file's entries (SPEC §8).
    /// Returns how many index files were loaded (downloaded).
    pub fn sync_index(&self) -> Result<usize> {
        Ok(self.sync_index_report()?.loaded)
    }

    /// [`sync_index`](Self::sync_index), also saying whether the cache was rebuilt because an
    /// index file it had loaded is gone (a prune's sweep rewrote the index meanwhile).
    ///
    /// A listed file that is gone by the time it is read was superseded and deleted by a
    /// prune's sweep: the listing is taken again (the file that replaces it was written first).
    pub fn sync_index_report(&self) -> Result<SyncReport> {
        let mut total = SyncReport::default();
        for _ in 0..5 {
            let (r, vanished) = self.sync_index_once()?;
            total.loaded += r.loaded;
            total.rebuilt |= r.rebuilt;
            total.superseded = r.superseded;
            if !vanished {
                return Ok(total);
            }
        }
        Err(Error::new(
            ErrorKind::Backend,
            format!(
                "index files of {} keep vanishing while they are read; is a prune deleting them? Try again",
                self.location
            ),
        ))
    }

    /// One pass of [`sync_index_report`](Self::sync_index_report); the `bool` says whether a
    /// listed file vanished before it could be read (then the caller lists again).
    ///
    /// Superseded files (SPEC §8, §13): for a blob that a current file names (one no other
    /// listed file supersedes), the cache answers with a current file's location; a superseded
    /// file's entries only fill in blobs no other file names (the cache sees to that, in any
    /// order, see [`IndexCache::add_superseded_index_file`]). Usually nothing is superseded and
    /// this costs what loading the new files costs. Otherwise:
    ///
    /// ```text
    /// records := the files the cache holds (each with its role and supersedes list)
    /// if a recorded file is not listed, or an add was interrupted: clear, records := {}
    /// S := ∪ supersedes over the records
    /// for each listed file without a record, in the order the downloads finish:
    ///     S ∪= its supersedes; add it as superseded if it is in S, else as current
    /// if a file added as current is in S (its superseder came later): clear the cache and
    ///     add every recorded file again in its right role
    /// ```
    ///
    /// The last step is rare (a reader that syncs between a sweep's S1 and S2, or storage that
    /// puts an old index file back before the file that supersedes it was seen) and downloads
    /// the index files again, which keeps memory to the records (ids) rather than holding every
    /// index file.
    fn sync_index_once(&self) -> Result<(SyncReport, bool)> {
        let listed: HashSet<IndexId> = self
            .list_ids(FileType::Index)?
            .into_iter()
            .map(IndexId)
            .collect();
        let cache = self.cache();
        let update_err = |e| Error::cache("cannot update the index cache", e);
        let (mut records, corrupt) = match cache.index_files() {
            Ok(records) => (records, false),
            // Only a copy: a record this version cannot read is rebuilt from the index files.
            Err(CacheError::Corrupt { .. }) => (HashMap::new(), true),
            Err(e) => return Err(Error::cache("cannot read the index cache", e)),
        };
        let interrupted = cache
            .interrupted()
            .map_err(|e| Error::cache("cannot read the index cache", e))?;
        // A file whose entries are in the cache is gone (a sweep's S2, after S1 wrote the files
        // that replace it): those entries may name packs that S3 deletes. Start over.
        let mut rebuilt = corrupt || interrupted || records.keys().any(|id| !listed.contains(id));
        if rebuilt {
            cache
                .clear()
                .map_err(|e| Error::cache("cannot reset the index cache", e))?;
            records.clear();
        }
        let mut superseded: HashSet<IndexId> = records
            .values()
            .flat_map(|r| r.supersedes.iter().copied())
            .collect();

        let missing: Vec<IndexId> = listed
            .iter()
            .filter(|id| !records.contains_key(*id))
            .copied()
            .collect();
        let mut loaded = missing.len();
        let (mut damaged, mut vanished) = self.fetch_index_files(missing, &mut |id, file| {
            superseded.extend(file.supersedes.iter().copied());
            let current = !superseded.contains(&id);
            if current {
                cache.add_index_file(id, &file)
            } else {
                cache.add_superseded_index_file(id, &file)
            }
            .map_err(update_err)?;
            let record = IndexFileRecord {
                entries: file.blob_count() as u64,
                current,
                supersedes: file.supersedes,
            };
            records.insert(id, record);
            Ok(())
        })?;

        if records
            .iter()
            .any(|(id, r)| r.current && superseded.contains(id))
        {
            cache
                .clear()
                .map_err(|e| Error::cache("cannot reset the index cache", e))?;
            rebuilt = true;
            let again: Vec<IndexId> = records.keys().copied().collect();
            loaded += again.len();
            let (more_damaged, more_vanished) =
                self.fetch_index_files(again, &mut |id, file| {
                    if superseded.contains(&id) {
                        cache.add_superseded_index_file(id, &file)
                    } else {
                        cache.add_index_file(id, &file)
                    }
                    .map_err(update_err)
                })?;
            damaged.extend(more_damaged);
            vanished |= more_vanished;
            for (id, r) in &mut records {
                r.current = !superseded.contains(id);
            }
        }
        damaged.sort();
        damaged.dedup_by_key(|d| d.0);
        *self
            .damaged_index
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = damaged;
        let report = SyncReport {
            loaded,
            rebuilt,
            superseded: records.values().filter(|r| !r.current).count(),
        };
        Ok((report, vanished))
    }

    /// Fetches, checks and decodes index files `ids`, a few at a time, and hands each to `add`
    /// as it arrives, one at a time (inside [`block_on`](Self::block_on): `add` must not call
    /// it again).
    ///
    /// A damaged index file must not lock the user out (`repair index` needs to open the
    /// repository): it is returned with the reason instead, and tried again on the next sync.
    /// A file that is gone is not an error either (the `bool`: a prune deleted it meanwhile).
    /// Storage failures and errors from `add` are.
    fn fetch_index_files(
        &self,
        ids: Vec<IndexId>,
        add: &mut dyn FnMut(IndexId, IndexFile) -> Result<()>,
    ) -> Result<(Vec<(IndexId, String)>, bool)> {
        let backend = &self.backend;
        let keys = &self.keys;
        self.block_on(async {
            let mut files = futures::stream::iter(ids.into_iter().map(|id| async move {
                let loaded = match get_verified(&**backend, FileType::Index, &id.0).await {
                    Ok(bytes) => IndexFile::decode(keys, &bytes).map_err(|e| {
                        Error::format(format!("index file {} is damaged", id.0.short()), e)
                    }),
                    Err(e) => Err(e),
                };
                (id, loaded)
            }))
            .buffer_unordered(FETCH_CONCURRENCY);
            let mut damaged = Vec::new();
            let mut vanished = false;
            let mut release = ReleaseEvery::default();
            while let Some((id, loaded)) = files.next().await {
                match loaded {
                    Ok(file) => {
                        let entries = file.blob_count() as u64;
                        add(id, file)?;
                        // A rebuild loads every file: give the decoded ones' pages back.
                        release.handled(entries);
                    }
                    Err(e) if e.kind() == ErrorKind::Corrupt => {
                        damaged.push((id, crate::restorer::error_chain(&e)));
                    }
                    Err(e) if e.kind() == ErrorKind::NotFound => vanished = true,
                    Err(e) => return Err(e),
                }
            }
            Ok((damaged, vanished))
        })
    }

    /// Index files the last [`sync_index`](Self::sync_index) could not use, with the reason.
    /// Their blobs look missing until `repair index` rebuilds the index from the packs.
    pub fn damaged_index_files(&self) -> Vec<(IndexId, String)> {
        self.damaged_index
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Where a blob is stored, from the cache.
    pub fn lookup_blob(&self, id: &BlobId) -> Result<Option<BlobLocation>> {
        self.cache()
            .lookup(id)
            .map_err(|e| Error::cache("cannot read the index cache", e))
    }

    /// Where a blob is stored; a blob that should exist but is not indexed is damage.
    pub fn locate_blob(&self, id: &BlobId) -> Result<BlobLocation> {
        self.lookup_blob(id)?.ok_or_else(|| {
            Error::new(
                ErrorKind::Corrupt,
                format!(
                    "blob {} is referenced but no index file names it (run `cairn check`)",
                    id.0.short()
                ),
            )
        })
    }

    /// Reads `len` bytes at `offset` of a pack.
    pub fn read_pack_range(
        &self,
        pack: &repo_format::PackId,
        offset: u64,
        len: u64,
    ) -> Result<Bytes> {
        let name = pack.0.to_hex();
        let bytes = match self.block_on(self.backend.get_range(FileType::Pack, &name, offset, len))
        {
            Ok(b) => b,
            Err(e) => {
                // A range past the end of the pack is damage (a truncated pack), not a storage
                // failure: ask for the size to tell them apart.
                let short = e.kind() != BackendErrorKind::NotFound
                    && matches!(self.block_on(self.backend.exists(FileType::Pack, &name)), Ok(Some(size)) if size < offset + len);
                let kind = if short {
                    ErrorKind::Corrupt
                } else {
                    Error::backend_kind(&e)
                };
                return Err(Error::with_source(
                    kind,
                    format!("cannot read pack {}", pack.0.short()),
                    e,
                ));
            }
        };
        if bytes.len() as u64 != len {
            return Err(Error::new(
                ErrorKind::Corrupt,
                format!(
                    "pack {} is shorter than the index says (wanted {len} bytes at {offset})",
                    pack.0.short()
                ),
            ));
        }
        Ok(bytes)
    }

    /// Reads, decrypts, decompresses and verifies one blob.
    pub fn load_blob(&self, loc: &BlobLocation) -> Result<Vec<u8>> {
        let bytes = self.read_pack_range(
            &loc.pack,
            u64::from(loc.entry.offset),
            u64::from(loc.entry.stored_len),
        )?;
        self.open_blob(loc, &bytes)
    }

    /// Decrypts and verifies a blob whose envelope bytes are already read.
    pub fn open_blob(&self, loc: &BlobLocation, envelope: &[u8]) -> Result<Vec<u8>> {
        self.open_blob_cached(&mut repo_format::GroupCache::new(), loc, envelope)
    }

    /// The compression groups this repository opened last.
    pub fn recent_groups(&self) -> &crate::recent_groups::RecentGroups {
        &self.recent_groups
    }

    /// Takes the blob `loc` names out of its group's plaintext (opened before), verified.
    pub fn blob_from_group(&self, loc: &BlobLocation, group: &[u8]) -> Result<Vec<u8>> {
        repo_format::blob_in_group(&self.keys, &loc.entry, group).map_err(|e| damaged_blob(loc, e))
    }

    /// [`Repository::open_blob`] for one of several blobs of one pack read in offset order:
    /// `groups` opens each compression group once. `envelope` is the blob's (or its group's).
    /// A based group (SPEC §7) is opened with its base, loaded first, and kept among the
    /// [`Repository::recent_groups`] for its other members.
    pub fn open_blob_cached(
        &self,
        groups: &mut repo_format::GroupCache,
        loc: &BlobLocation,
        envelope: &[u8],
    ) -> Result<Vec<u8>> {
        if loc.entry.compression == repo_format::Compression::Based {
            let group = self.group_plain(loc, Some(envelope), 0)?;
            return self.blob_from_group(loc, &group);
        }
        groups
            .open(&self.keys, &loc.entry, envelope)
            .map_err(|e| damaged_blob(loc, e))
    }

    /// The base of the based group `loc` is in (SPEC §7): its base blobs' plaintexts,
    /// concatenated in the order the index names them. A base blob in a based group itself
    /// (the same blob stored again elsewhere) is followed, to [`MAX_BASE_DEPTH`] groups.
    pub fn load_base(&self, loc: &BlobLocation) -> Result<Vec<u8>> {
        self.load_base_at(loc, 1)
    }

    fn load_base_at(&self, loc: &BlobLocation, depth: usize) -> Result<Vec<u8>> {
        let group = || {
            format!(
                "the based compression group at offset {} of pack {}",
                loc.entry.offset,
                loc.pack.0.short()
            )
        };
        if depth > MAX_BASE_DEPTH {
            return Err(Error::new(
                ErrorKind::Corrupt,
                format!(
                    "the bases of {} nest more than {MAX_BASE_DEPTH} groups deep (SPEC §7; run `cairn check`)",
                    group()
                ),
            ));
        }
        let ids = self.group_base_ids(loc)?;
        let located = ids
            .iter()
            .map(|id| {
                self.locate_blob(id).map_err(|e| {
                    Error::with_source(e.kind(), format!("cannot read the base of {}", group()), e)
                })
            })
            .collect::<Result<Vec<_>>>()?;
        // Sized once: growing it by doubling copied up to 4 MiB again for every based group.
        let planned: u64 = located.iter().map(|b| u64::from(b.entry.raw_len)).sum();
        let mut base =
            Vec::with_capacity(planned.min(repo_format::format::MAX_BASE_RAW as u64) as usize);
        for (id, b) in ids.iter().zip(&located) {
            self.append_base_blob_at(b, &mut base, depth).map_err(|e| {
                Error::with_source(
                    e.kind(),
                    format!(
                        "cannot read blob {} of the base of {}",
                        id.0.short(),
                        group()
                    ),
                    e,
                )
            })?;
            if base.len() > repo_format::format::MAX_BASE_RAW {
                return Err(Error::new(
                    ErrorKind::Corrupt,
                    format!("the base of {} is over 4 MiB", group()),
                ));
            }
        }
        Ok(base)
    }

    /// The ids of the base of the based group `loc` is in, from the index cache; none is
    /// damage.
    fn group_base_ids(&self, loc: &BlobLocation) -> Result<Vec<BlobId>> {
        self.cache()
            .group_base(&loc.pack, loc.entry.offset)
            .map_err(|e| Error::cache("cannot read the index cache", e))?
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Corrupt,
                    format!(
                        "the based compression group at offset {} of pack {} has no base in any index file (run `cairn check`)",
                        loc.entry.offset,
                        loc.pack.0.short()
                    ),
                )
            })
    }

    /// The packs holding the base of the based group `loc` is in (SPEC §7): what a snapshot
    /// that uses the group's members relies on besides the group's own pack.
    /// A base in a based group itself brings that group's base packs too, as deep as readers
    /// follow bases. A base blob only a superseded index file names counts as missing: its
    /// pack may be one a sweep deleted (SPEC §8).
    pub fn base_packs(&self, loc: &BlobLocation) -> Result<Vec<repo_format::PackId>> {
        let mut packs = Vec::new();
        let mut groups = vec![(*loc, 1usize)];
        let mut seen = std::collections::HashSet::new();
        while let Some((g, depth)) = groups.pop() {
            if !seen.insert((g.pack, g.entry.offset)) || depth > MAX_BASE_DEPTH {
                continue;
            }
            for id in &self.group_base_ids(&g)? {
                let b = self
                    .cache()
                    .lookup_for_dedup(id)
                    .map_err(|e| Error::cache("cannot read the index cache", e))?
                    .ok_or_else(|| {
                        Error::new(
                            ErrorKind::NotFound,
                            format!(
                                "base blob {} is named by no current index file",
                                id.0.short()
                            ),
                        )
                    })?;
                packs.push(b.pack);
                if b.entry.compression == repo_format::Compression::Based {
                    groups.push((b, depth + 1));
                }
            }
        }
        packs.sort_unstable();
        packs.dedup();
        Ok(packs)
    }

    /// Appends the plaintext of base blob `loc` to `out`. A member of a group is taken from
    /// its authenticated group (kept among the recent groups) without checking its own id: the
    /// based group's members are checked after decompression, and a base that is not what was
    /// compressed against makes them fail (SPEC §7). Hashing every base again cost a restore
    /// of pg's day 2 a fifth of its time.
    pub(crate) fn append_base_blob(&self, loc: &BlobLocation, out: &mut Vec<u8>) -> Result<()> {
        self.append_base_blob_at(loc, out, 1)
    }

    /// [`Repository::append_base_blob`] for a base `depth` groups down.
    fn append_base_blob_at(
        &self,
        loc: &BlobLocation,
        out: &mut Vec<u8>,
        depth: usize,
    ) -> Result<()> {
        if !loc.entry.is_grouped() {
            out.extend_from_slice(&self.load_blob(loc)?);
            return Ok(());
        }
        let group = self.group_plain(loc, None, depth)?;
        let bytes = group.get(loc.entry.group_range()).ok_or_else(|| {
            Error::new(
                ErrorKind::Corrupt,
                format!(
                    "blob {} lies outside its compression group in pack {}",
                    loc.entry.id.0.short(),
                    loc.pack.0.short()
                ),
            )
        })?;
        out.extend_from_slice(bytes);
        Ok(())
    }

    /// The plaintext of the group (plain or based) `loc` is in: from the recent groups, or
    /// opened from `envelope` (read here when `None`; a based group with its base, `depth`
    /// groups down) and kept there.
    fn group_plain(
        &self,
        loc: &BlobLocation,
        envelope: Option<&[u8]>,
        depth: usize,
    ) -> Result<std::sync::Arc<Vec<u8>>> {
        if let Some(group) = self.recent_groups.get(loc) {
            return Ok(group);
        }
        let read;
        let envelope = match envelope {
            Some(e) => e,
            None => {
                read = self.read_pack_range(
                    &loc.pack,
                    u64::from(loc.entry.offset),
                    u64::from(loc.entry.stored_len),
                )?;
                &read[..]
            }
        };
        let group = if loc.entry.compression == repo_format::Compression::Based {
            let base = self.load_base_at(loc, depth + 1)?;
            repo_format::open_based_group(&self.keys, &loc.entry, envelope, &base)
        } else {
            repo_format::open_group(&self.keys, &loc.entry, envelope)
        }
        .map_err(|e| damaged_blob(loc, e))?;
        let group = std::sync::Arc::new(group);
        self.recent_groups.put(loc, std::sync::Arc::clone(&group));
        Ok(group)
    }

    /// Loads a tree blob and decodes it.
    ///
    /// The blob may be indexed as a data blob: dedup is by id, and an id names exact bytes
    /// (keyed hash), so a file chunk that happens to equal an encoded tree is the same blob.
    /// The type only decides which packs a blob goes to.
    pub fn load_tree(&self, id: &BlobId) -> Result<repo_format::Tree> {
        let loc = self.locate_blob(id)?;
        let plain = self.load_blob(&loc)?;
        repo_format::Tree::decode(&plain)
            .map_err(|e| Error::format(format!("tree {} is damaged", id.0.short()), e))
    }

    /// Loads a content list blob and decodes it.
    pub fn load_content_list(&self, id: &BlobId) -> Result<repo_format::ContentList> {
        let loc = self.locate_blob(id)?;
        let plain = self.load_blob(&loc)?;
        repo_format::ContentList::decode(&plain)
            .map_err(|e| Error::format(format!("content list {} is damaged", id.0.short()), e))
    }
}

/// How many based groups deep readers follow bases (SPEC §7): writers choose bases outside
/// based groups, but the same blob may be stored again later in one (by another host, or
/// while a prune plan marks its first copy), and the index then names that copy.
pub const MAX_BASE_DEPTH: usize = 4;

/// The error for a blob at `loc` that failed to open or verify.
fn damaged_blob(loc: &BlobLocation, e: repo_format::FormatError) -> Error {
    Error::format(
        format!(
            "blob {} in pack {} is damaged",
            loc.entry.id.0.short(),
            loc.pack.0.short()
        ),
        e,
    )
}

impl Drop for Repository {
    fn drop(&mut self) {
        let cache = self.cache.take();
        if let Some(dir) = &self.private_cache {
            if let Some(cache) = cache {
                cache.discard();
            }
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Opens the shared cache of a repository. If another cairn process holds it, uses a private
/// one for this process (rebuilt from the index files, removed afterwards); if it is damaged,
/// deletes and recreates it. The cache is only ever a copy, so both cost time, not data.
fn open_cache(cache_dir: &Path) -> Result<(IndexCache, Option<PathBuf>)> {
    let shared = cache_dir.join("index");
    match IndexCache::open(&shared) {
        Ok(c) => Ok((c, None)),
        Err(CacheError::Locked { .. }) => {
            let private = cache_dir.join(format!(
                "index-private-{}-{}",
                std::process::id(),
                hex::encode(random_bytes::<4>()?)
            ));
            let c = IndexCache::open(&private).map_err(|e| {
                Error::cache(
                    format!("cannot open a private index cache in {}", private.display()),
                    e,
                )
            })?;
            Ok((c, Some(private)))
        }
        Err(_) => {
            let _ = IndexCache::destroy(&shared);
            let _ = std::fs::remove_dir_all(&shared);
            let c = IndexCache::open(&shared).map_err(|e| {
                Error::cache(
                    format!("cannot open the index cache in {}", shared.display()),
                    e,
                )
            })?;
            Ok((c, None))
        }
    }
}

/// Stores a content-addressed object; "already exists" means the same bytes are there.
pub(crate) async fn put_content_addressed(
    backend: &dyn Backend,
    t: FileType,
    id: Id,
    bytes: Bytes,
) -> Result<()> {
    match backend.put(t, &id.to_hex(), bytes).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == BackendErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::backend(
            format!("cannot store a new object in {}/", t.dir()),
            e,
        )),
    }
}

/// Reads a whole object and checks its name.
pub(crate) async fn get_verified(backend: &dyn Backend, t: FileType, id: &Id) -> Result<Bytes> {
    let path = t.path(&id.to_hex());
    let bytes = backend
        .get(t, &id.to_hex())
        .await
        .map_err(|e| Error::backend(format!("cannot read {path}"), e))?;
    let actual = object_id(&bytes);
    if actual != *id {
        return Err(Error::new(
            ErrorKind::Corrupt,
            format!(
                "{path} is damaged or was replaced: its contents hash to {}",
                actual.short()
            ),
        ));
    }
    Ok(bytes)
}

/// Tries every key file until one opens with `password`.
async fn find_key(
    backend: &dyn Backend,
    repo_id: &Id,
    password: &[u8],
    location: &str,
) -> Result<(MasterKey, Id)> {
    let infos = backend
        .list(FileType::Key)
        .await
        .map_err(|e| Error::backend("cannot list keys/", e))?;
    if infos.is_empty() {
        return Err(Error::new(
            ErrorKind::Corrupt,
            format!("{location} has no key files: the repository cannot be opened"),
        ));
    }
    let mut damaged = Vec::new();
    let mut tried = 0usize;
    let mut unreadable: Option<Error> = None;
    for info in infos {
        let Ok(id) = Id::from_hex(&info.name) else {
            continue;
        };
        let bytes = match get_verified(backend, FileType::Key, &id).await {
            Ok(b) => b,
            Err(e) => {
                damaged.push(format!(
                    "{}: {}",
                    id.short(),
                    crate::restorer::error_chain(&e)
                ));
                if e.kind() != ErrorKind::Corrupt && unreadable.is_none() {
                    unreadable = Some(e);
                }
                continue;
            }
        };
        let file = match KeyFile::decode(&bytes) {
            Ok(f) => f,
            Err(e) => {
                damaged.push(format!("{}: {e}", id.short()));
                continue;
            }
        };
        // The KDF is deliberately slow and memory-hard: run it off the I/O threads.
        let repo_id = *repo_id;
        let password = password.to_vec();
        let opened = tokio::task::spawn_blocking(move || file.open(&repo_id, &password))
            .await
            .map_err(|e| Error::new(ErrorKind::Io, format!("key derivation task failed: {e}")))?;
        tried += 1;
        match opened {
            Ok(master) => return Ok((master, id)),
            Err(repo_format::FormatError::AuthenticationFailed { .. }) => {}
            Err(e) => damaged.push(format!("{}: {e}", id.short())),
        }
    }
    let mut msg = format!("no key file in {location} opens with this password");
    if !damaged.is_empty() {
        msg.push_str(&format!(
            " ({} key files could not be read: {})",
            damaged.len(),
            damaged.join("; ")
        ));
    }
    // If no key file could even be tried because the storage failed, that is the problem,
    // not the password.
    if tried == 0
        && let Some(e) = unreadable
    {
        return Err(Error::with_source(
            ErrorKind::Backend,
            format!("cannot read the key files of {location}; no key could be tried"),
            e,
        ));
    }
    Err(Error::new(ErrorKind::WrongPassword, msg))
}
