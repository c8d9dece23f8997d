//! Backend-neutral access to a test repository's objects, for the tests that read, count,
//! damage or replace them: everything goes through the repository's [`Backend`] (whatever
//! `CAIRN_TEST_REPO` makes it: a local directory, S3, ...), never through `std::fs`.
//!
//! Objects are immutable on every backend ([`Backend::put`] is create-only), so "overwriting"
//! one is a delete followed by a put. Every helper panics with the object's path on failure:
//! these are test fixtures, and a failed manipulation must never pass for a detected one.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use engine::backend::{Backend, FileType, ObjectInfo, open_backend};

/// A repository's storage, opened from its location, with a small runtime of its own to drive
/// the backend from synchronous test code (never call it from inside another runtime).
pub struct Storage {
    // Declared before the runtime: the backend (and its connections) is dropped first.
    backend: Arc<dyn Backend>,
    rt: tokio::runtime::Runtime,
}

/// The object types a repository holds, each listed once (the config included).
const TYPES: [FileType; 7] = FileType::ALL;

impl Storage {
    /// Opens the storage at `location` (a path, `s3://...`, ...), as `Repository::open` would.
    pub fn open(location: &str) -> Storage {
        let backend = open_backend(location).unwrap_or_else(|e| panic!("open {location}: {e}"));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("test-storage")
            .enable_all()
            .build()
            .expect("runtime");
        Storage { backend, rt }
    }

    /// The backend itself (to wrap it, for example).
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    fn run<F: Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// Every object of type `t`, sorted by name.
    pub fn list(&self, t: FileType) -> Vec<ObjectInfo> {
        let mut l = self
            .run(self.backend.list(t))
            .unwrap_or_else(|e| panic!("list {}: {e}", t.dir()));
        l.sort();
        l
    }

    /// The names of the objects of type `t`, sorted (for packs: the full id, without the shard).
    pub fn names(&self, t: FileType) -> Vec<String> {
        self.list(t).into_iter().map(|i| i.name).collect()
    }

    /// How many objects of type `t` there are.
    pub fn count(&self, t: FileType) -> usize {
        self.list(t).len()
    }

    /// Every object of the repository, as its path relative to the repository root
    /// (`config`, `keys/<id>`, `data/<2 hex>/<id>`, ...; SPEC §2).
    pub fn all_objects(&self) -> BTreeSet<String> {
        TYPES
            .iter()
            .flat_map(|&t| self.names(t).into_iter().map(move |n| t.path(&n)))
            .collect()
    }

    /// Whether the object exists.
    pub fn exists(&self, t: FileType, name: &str) -> bool {
        self.run(self.backend.exists(t, name))
            .unwrap_or_else(|e| panic!("stat {}: {e}", t.path(name)))
            .is_some()
    }

    /// The object's size; panics if it does not exist.
    pub fn size(&self, t: FileType, name: &str) -> u64 {
        self.run(self.backend.exists(t, name))
            .unwrap_or_else(|e| panic!("stat {}: {e}", t.path(name)))
            .unwrap_or_else(|| panic!("{} does not exist", t.path(name)))
    }

    /// The object's bytes; panics if it does not exist.
    pub fn read(&self, t: FileType, name: &str) -> Vec<u8> {
        self.run(self.backend.get(t, name))
            .unwrap_or_else(|e| panic!("read {}: {e}", t.path(name)))
            .to_vec()
    }

    /// Stores a new object; panics if it exists already (puts are create-only).
    pub fn put(&self, t: FileType, name: &str, bytes: impl Into<Vec<u8>>) {
        let bytes = Bytes::from(bytes.into());
        self.run(self.backend.put(t, name, bytes))
            .unwrap_or_else(|e| panic!("write {}: {e}", t.path(name)));
    }

    /// Deletes an existing object; panics if it does not exist (as `fs::remove_file` would), so
    /// a test never "damages" an object that was not there.
    pub fn delete(&self, t: FileType, name: &str) {
        assert!(
            self.exists(t, name),
            "cannot delete {}: it does not exist",
            t.path(name)
        );
        self.run(self.backend.delete(t, name))
            .unwrap_or_else(|e| panic!("delete {}: {e}", t.path(name)));
    }

    /// Replaces an existing object's bytes: delete, then put.
    pub fn replace(&self, t: FileType, name: &str, bytes: impl Into<Vec<u8>>) {
        self.delete(t, name);
        self.put(t, name, bytes);
    }

    /// Flips bit `bit` (0 = least significant) of byte `offset` of the object.
    pub fn flip_bit(&self, t: FileType, name: &str, offset: usize, bit: u8) {
        let mut bytes = self.read(t, name);
        assert!(
            offset < bytes.len(),
            "offset {offset} is past the end of the {}-byte {}",
            bytes.len(),
            t.path(name)
        );
        bytes[offset] ^= 1 << bit;
        self.replace(t, name, bytes);
    }

    /// Cuts the object to its first `len` bytes.
    pub fn truncate(&self, t: FileType, name: &str, len: usize) {
        let mut bytes = self.read(t, name);
        assert!(len <= bytes.len(), "{} is shorter than {len}", t.path(name));
        bytes.truncate(len);
        self.replace(t, name, bytes);
    }

    /// Copies every object into `to` (an empty storage), the config last: a whole repository,
    /// byte for byte.
    pub fn copy_all_to(&self, to: &Storage) {
        for t in TYPES.into_iter().filter(|&t| t != FileType::Config) {
            for name in self.names(t) {
                to.put(t, &name, self.read(t, &name));
            }
        }
        for name in self.names(FileType::Config) {
            to.put(FileType::Config, &name, self.read(FileType::Config, &name));
        }
    }
}

impl super::Env {
    /// The storage of this repository.
    pub fn storage(&self) -> Storage {
        Storage::open(&self.repo_path)
    }
}

impl super::grace::GraceEnv {
    /// The storage of this repository.
    pub fn storage(&self) -> Storage {
        Storage::open(&self.path)
    }
}
