//! cairn's engine: everything that does I/O or runs concurrently.
//!
//! - [`backend`]: the one storage trait (local directory, object stores) and its adapters;
//! - [`repository`]: [`repository::init`] and [`repository::Repository`], which ties a backend, the
//!   opened keys, the config and the local [`index::cache::IndexCache`] together;
//! - [`archiver`]: backups of directories and streams ([`archiver::backup`]);
//! - [`restorer`]: verified, parallel restore and dump;
//! - [`copy`]: snapshots into another repository, re-chunked and re-encrypted there;
//! - [`ls`]: walking a snapshot's trees;
//! - [`diff`], [`find`], [`stats`]: read-only inspection: what changed between two snapshots,
//!   which snapshots hold paths matching a [`glob`] pattern, sizes and deduplication;
//! - [`checker`]: `cairn check`, which proves the repository holds what its snapshots need;
//! - [`repair`]: rebuilding the index from pack headers, and snapshots without lost data;
//! - [`retention`]: the pure retention policy, and [`forget`], which applies it or removes
//!   named snapshots;
//! - [`protect`]: setting and clearing a snapshot's protected flag (kept by every policy);
//! - [`rollback`]: noticing, per machine, that the newest snapshot it saw is gone (a
//!   rolled-back `latest`);
//! - [`keys`]: listing, adding and removing key files, and changing a password;
//! - [`prune`]: two-phase deletion of what no snapshot needs, safe beside running backups;
//! - [`stores`]: cairn.toml, the repositories and data stores `cairn run` backs up: finding,
//!   parsing and validating it;
//! - [`progress`]: how long operations report progress (the engine never prints).
//!
//! The byte formats live in the `repo_format` crate (SPEC.md); this crate never encodes a byte
//! itself. Its surface is synchronous: a [`repository::Repository`] owns a tokio runtime for
//! backend I/O, CPU work runs on threads and rayon.
//!
//! ```no_run
//! use engine::archiver::{backup, BackupOptions, Source};
//! use engine::progress::NoProgress;
//! use engine::repository::{init, InitOptions, OpenOptions, Repository};
//!
//! # fn main() -> Result<(), engine::Error> {
//! init("/tmp/repo", b"secret", &InitOptions::default())?;
//! let repo = Repository::open("/tmp/repo", b"secret", &OpenOptions::default())?;
//! let result = backup(&repo, BackupOptions::new(Source::Paths(vec!["/etc".into()])), &NoProgress)?;
//! println!("snapshot {}", result.id);
//! # Ok(()) }
//! ```

pub mod archiver;
pub mod backend;
pub mod checker;
pub mod copy;
pub mod diff;
pub mod error;
pub mod find;
pub mod forget;
pub mod glob;
pub mod host;
pub mod index;
pub mod keys;
pub mod ls;
pub mod memory;
pub mod progress;
pub mod protect;
pub mod prune;
pub mod recent_groups;
pub mod repair;
pub mod repository;
pub mod restorer;
pub mod retention;
pub mod rollback;
pub mod stats;
pub mod stores;

pub use error::{Error, ErrorKind, Result};
