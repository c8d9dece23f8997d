//! `cairn stats`: how big the selected snapshots are, and what they cost in the repository.
//!
//! For a selection of snapshots (and, with [`StatsOptions::by`], for each group of it):
//!
//! | figure | meaning |
//! |---|---|
//! | restore size | the sizes of every file of every snapshot, summed: what restoring them all writes |
//! | unique blobs | the distinct data blobs, trees and content lists the snapshots reference |
//! | raw / stored | their plaintext bytes, and their bytes in the packs (compressed, encrypted; a compression group they use counts whole, once) |
//! | dedup ratio | restore size / raw bytes of the unique data blobs: what deduplication saves |
//! | compression ratio | raw / stored over the unique blobs: what zstd saves (envelopes included) |
//! | space ratio | restore size / stored bytes: both together |
//!
//! Distinct blobs are counted in [`UsedSet`]s (RocksDB on disk, under the cache directory):
//! one for the whole selection and one for the group being counted, so memory does not grow
//! with the number of blobs. Subtree sizes are memoized (bounded), so a tree shared by many
//! snapshots is loaded once per set that has not seen it. The repository's own totals (packs,
//! index files and their bytes) come from listing the storage.
//!
//! [`UsedSet`]: crate::prune::used::UsedSet

mod count;

use repo_format::{Snapshot, SnapshotId};

use crate::backend::FileType;
use crate::error::{Error, Result};
use crate::repository::Repository;
use count::{BlobCounter, Walker};

/// How [`stats`] groups the snapshots besides the total.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatsGroupBy {
    /// Each snapshot on its own.
    Snapshot,
    /// By store: see [`store_of`].
    Store,
    /// By host name.
    Host,
}

/// Options for [`stats`].
#[derive(Clone, Debug, Default)]
pub struct StatsOptions {
    /// Also give the figures per group.
    pub by: Option<StatsGroupBy>,
    /// The configured store names: a snapshot's tag naming one of them is its store.
    pub stores: Vec<String>,
}

/// Counts of nodes and the restore size below a tree (or of a set of snapshots).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TreeSize {
    /// Regular files.
    pub files: u64,
    /// Directories (not counting the snapshot roots).
    pub dirs: u64,
    /// Symlinks, devices, fifos, sockets.
    pub others: u64,
    /// The files' sizes summed.
    pub bytes: u64,
}

impl TreeSize {
    fn add(&mut self, o: &TreeSize) {
        self.files += o.files;
        self.dirs += o.dirs;
        self.others += o.others;
        self.bytes += o.bytes;
    }
}

/// The distinct blobs a set of snapshots references.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlobFigures {
    /// Distinct data blobs (file content).
    pub data_blobs: u64,
    /// Their plaintext bytes.
    pub data_raw: u64,
    /// Their bytes in the packs.
    pub data_stored: u64,
    /// Distinct trees and content lists.
    pub tree_blobs: u64,
    /// Their plaintext bytes.
    pub tree_raw: u64,
    /// Their bytes in the packs.
    pub tree_stored: u64,
    /// Referenced blobs no index file names (damage: `cairn check` says more); not in the
    /// byte counts.
    pub missing: u64,
}

/// The figures of one set of snapshots.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Figures {
    /// Snapshots counted.
    pub snapshots: u64,
    /// Nodes and restore size, over every snapshot (shared files count once per snapshot).
    pub size: TreeSize,
    /// The distinct blobs (shared ones count once).
    pub blobs: BlobFigures,
}

fn ratio(a: u64, b: u64) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

impl Figures {
    /// What restoring every snapshot would write.
    pub fn restore_size(&self) -> u64 {
        self.size.bytes
    }

    /// Distinct blobs of every kind.
    pub fn unique_blobs(&self) -> u64 {
        self.blobs.data_blobs + self.blobs.tree_blobs
    }

    /// Plaintext bytes of the distinct blobs.
    pub fn raw_bytes(&self) -> u64 {
        self.blobs.data_raw + self.blobs.tree_raw
    }

    /// Bytes the distinct blobs take in the packs.
    pub fn stored_bytes(&self) -> u64 {
        self.blobs.data_stored + self.blobs.tree_stored
    }

    /// Restore size / plaintext of the distinct data blobs (`None` without data).
    pub fn dedup_ratio(&self) -> Option<f64> {
        ratio(self.restore_size(), self.blobs.data_raw)
    }

    /// Plaintext / stored bytes of the distinct blobs.
    pub fn compression_ratio(&self) -> Option<f64> {
        ratio(self.raw_bytes(), self.stored_bytes())
    }

    /// Restore size / stored bytes: deduplication and compression together.
    pub fn space_ratio(&self) -> Option<f64> {
        ratio(self.restore_size(), self.stored_bytes())
    }
}

/// The figures of one group.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupStats {
    /// The group's name: a snapshot id, a store or a host.
    pub key: String,
    /// Its snapshots, oldest first.
    pub snapshots: Vec<SnapshotId>,
    /// Its figures (blobs shared with other groups count in each).
    pub figures: Figures,
}

/// What the repository holds, whichever snapshots were selected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RepoTotals {
    /// Snapshot files.
    pub snapshots: u64,
    /// Pack files.
    pub packs: u64,
    /// Their bytes.
    pub pack_bytes: u64,
    /// Index files.
    pub index_files: u64,
    /// Their bytes.
    pub index_bytes: u64,
}

/// What [`stats`] found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StatsReport {
    /// All the selected snapshots together.
    pub total: Figures,
    /// Per group, in the order of each group's first snapshot (empty without grouping).
    pub groups: Vec<GroupStats>,
    /// The repository's totals.
    pub repository: RepoTotals,
}

/// The store a snapshot belongs to: its first tag that names a configured store, else the
/// series `cairn backup` continues (host and paths, as `host:path,path`).
pub fn store_of(s: &Snapshot, stores: &[String]) -> String {
    if let Some(t) = s.tags.iter().find(|t| stores.contains(t)) {
        return t.clone();
    }
    let paths: Vec<String> = s
        .paths
        .iter()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    format!("{}:{}", s.hostname, paths.join(","))
}

/// The group key of a snapshot.
fn key_of(by: StatsGroupBy, id: &SnapshotId, s: &Snapshot, stores: &[String]) -> String {
    match by {
        StatsGroupBy::Snapshot => id.0.short(),
        StatsGroupBy::Store => store_of(s, stores),
        StatsGroupBy::Host => s.hostname.clone(),
    }
}

/// Counts the figures of `snapshots` (and of each group of them); `on_snapshot(done, total)`
/// is called after each snapshot.
pub fn stats(
    repo: &Repository,
    snapshots: &[(SnapshotId, Snapshot)],
    opts: &StatsOptions,
    on_snapshot: &mut dyn FnMut(usize, usize),
) -> Result<StatsReport> {
    let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
    match opts.by {
        None => groups.push((String::new(), (0..snapshots.len()).collect())),
        Some(by) => {
            for (i, (id, s)) in snapshots.iter().enumerate() {
                let key = key_of(by, id, s, &opts.stores);
                match groups.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, members)) => members.push(i),
                    None => groups.push((key, vec![i])),
                }
            }
        }
    }
    let dir = repo.cache_dir().join("stats");
    let mut total = BlobCounter::new(&dir)?;
    let mut walker = Walker::new(repo);
    let mut report = StatsReport::default();
    let mut done = 0;
    for (key, members) in groups {
        let mut group = match opts.by {
            Some(_) => Some(BlobCounter::new(&dir)?),
            None => None,
        };
        let mut size = TreeSize::default();
        for &i in &members {
            let (id, snap) = &snapshots[i];
            let mut counters: Vec<&mut BlobCounter> = vec![&mut total];
            if let Some(g) = group.as_mut() {
                counters.push(g);
            }
            let s = walker.visit(&snap.tree, &mut counters).map_err(|e| {
                Error::with_source(
                    e.kind(),
                    format!(
                        "snapshot {} cannot be read completely, so its figures cannot be counted (run `cairn check`)",
                        id.0.short()
                    ),
                    e,
                )
            })?;
            size.add(&s);
            done += 1;
            on_snapshot(done, snapshots.len());
        }
        report.total.size.add(&size);
        if let Some(g) = group {
            report.groups.push(GroupStats {
                key,
                snapshots: members.iter().map(|&i| snapshots[i].0).collect(),
                figures: Figures {
                    snapshots: members.len() as u64,
                    size,
                    blobs: g.figures,
                },
            });
        }
    }
    report.total.snapshots = snapshots.len() as u64;
    report.total.blobs = total.figures;
    report.repository = repo_totals(repo)?;
    Ok(report)
}

/// Lists the storage for the repository's totals.
pub fn repo_totals(repo: &Repository) -> Result<RepoTotals> {
    let list = |t: FileType| -> Result<(u64, u64)> {
        let infos = repo
            .block_on(repo.backend().list(t))
            .map_err(|e| Error::backend(format!("cannot list {}/", t.dir()), e))?;
        Ok((infos.len() as u64, infos.iter().map(|i| i.size).sum()))
    };
    let (snapshots, _) = list(FileType::Snapshot)?;
    let (packs, pack_bytes) = list(FileType::Pack)?;
    let (index_files, index_bytes) = list(FileType::Index)?;
    Ok(RepoTotals {
        snapshots,
        packs,
        pack_bytes,
        index_files,
        index_bytes,
    })
}
