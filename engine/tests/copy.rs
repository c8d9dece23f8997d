//! `engine::copy`: snapshots into a second repository with another password, master key,
//! `id_key` and chunker seed. Contents are cut again and re-hashed there; the copies restore
//! byte-exact with their metadata, a second run copies nothing, a new snapshot costs only what
//! changed, and the destination checks clean. The last test copies to `s3://` (moto, as in
//! `s3.rs`).

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io::Cursor;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use engine::ErrorKind;
use engine::archiver::{BackupOptions, Source, backup};
use engine::checker::{CheckOptions, ReadData, check};
use engine::copy::{CopyReport, copy, origin};
use engine::progress::NoProgress;
use engine::repository::{InitOptions, OpenOptions, Repository, init};
use engine::restorer::{RestoreOptions, dump_content, for_each_batch, restore};
use repo_format::{BlobId, Content, KdfParams, NodeKind, Snapshot, SnapshotId};

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use common::intercept::{Intercept, Intercepted};
use common::{Rng, env};
use engine::backend::{Backend, BackendError, FileType, open_backend};

/// The destination's password: nothing is shared with the source.
const OTHER_PASSWORD: &[u8] = b"another password entirely";

/// Creates and opens a second repository at `location` (cache under `cache`).
fn destination(location: &str, cache: &Path) -> Repository {
    let opts = InitOptions {
        kdf: KdfParams::TEST,
        ..InitOptions::default()
    };
    init(location, OTHER_PASSWORD, &opts).expect("init destination");
    Repository::open(
        location,
        OTHER_PASSWORD,
        &OpenOptions {
            cache_dir: Some(cache.to_path_buf()),
        },
    )
    .expect("open destination")
}

/// A tree with small, empty, duplicate and multi-chunk files, a symlink, odd modes and times.
fn write_tree(root: &Path, rng: &mut Rng) {
    fs::create_dir_all(root.join("sub/deeper")).expect("mkdir");
    fs::create_dir_all(root.join("empty-dir")).expect("mkdir");
    let big = rng.bytes(9 << 20);
    let files: Vec<(&str, Vec<u8>, u32)> = vec![
        ("empty", Vec::new(), 0o644),
        ("small.txt", b"hello, copy\n".to_vec(), 0o600),
        ("big.bin", big.clone(), 0o644),
        ("sub/same-as-big.bin", big, 0o640),
        ("sub/deeper/random", rng.bytes(300_000), 0o755),
        ("sub/deeper/tiny", b"t".to_vec(), 0o400),
    ];
    for (name, data, mode) in &files {
        let p = root.join(name);
        fs::write(&p, data).expect("write");
        fs::set_permissions(&p, fs::Permissions::from_mode(*mode)).expect("chmod");
        let t = filetime_of(1_600_000_000 + data.len() as i64);
        filetime::set_file_mtime(&p, t).expect("mtime");
    }
    std::os::unix::fs::symlink("../small.txt", root.join("sub/link")).expect("symlink");
}

fn filetime_of(secs: i64) -> filetime::FileTime {
    filetime::FileTime::from_unix_time(secs, 123_456_789)
}

/// Everything restore reproduces, per relative path: kind, content hash, mode, mtime, target.
fn describe(root: &Path) -> BTreeMap<Vec<u8>, String> {
    fn rec(base: &Path, dir: &Path, out: &mut BTreeMap<Vec<u8>, String>) {
        for e in fs::read_dir(dir).expect("read_dir") {
            let p = e.expect("entry").path();
            let rel = p
                .strip_prefix(base)
                .expect("prefix")
                .as_os_str()
                .as_bytes()
                .to_vec();
            let m = fs::symlink_metadata(&p).expect("lstat");
            let desc = if m.file_type().is_symlink() {
                format!("link {:?}", fs::read_link(&p).expect("readlink"))
            } else if m.is_dir() {
                rec(base, &p, out);
                format!(
                    "dir {:o} mtime {}.{}",
                    m.mode() & 0o7777,
                    m.mtime(),
                    m.mtime_nsec()
                )
            } else {
                let data = fs::read(&p).expect("read");
                format!(
                    "file {:o} mtime {}.{} hash {}",
                    m.mode() & 0o7777,
                    m.mtime(),
                    m.mtime_nsec(),
                    blake3::hash(&data).to_hex()
                )
            };
            out.insert(rel, desc);
        }
    }
    let mut out = BTreeMap::new();
    rec(root, root, &mut out);
    out
}

/// Walks the source and destination trees side by side: same names, kinds and metadata
/// (owner, times, inode, links, size: what restore cannot show), content ids all different.
fn assert_same_trees(src: &Repository, s: &BlobId, dst: &Repository, d: &BlobId) {
    let (st, dt) = (
        src.load_tree(s).expect("src tree"),
        dst.load_tree(d).expect("dst tree"),
    );
    assert_eq!(st.nodes.len(), dt.nodes.len());
    for (a, b) in st.nodes.iter().zip(&dt.nodes) {
        let meta = |n: &repo_format::Node| {
            (
                n.name.clone(),
                n.mode,
                n.uid,
                n.gid,
                n.mtime,
                n.ctime,
                n.inode,
                n.device,
                n.nlink,
                n.size,
            )
        };
        assert_eq!(meta(a), meta(b));
        match (&a.kind, &b.kind) {
            (NodeKind::Dir { subtree: x }, NodeKind::Dir { subtree: y }) => {
                assert_same_trees(src, x, dst, y);
            }
            (NodeKind::File { content: x }, NodeKind::File { content: y }) => {
                let xs = data_ids(src, x);
                let ys = data_ids(dst, y);
                assert_eq!(xs.is_empty(), ys.is_empty());
                assert!(xs.is_disjoint(&ys), "a blob id carried over unchanged");
            }
            (x, y) => assert_eq!(x, y),
        }
    }
}

fn data_ids(repo: &Repository, c: &Content) -> HashSet<BlobId> {
    let mut out = HashSet::new();
    for_each_batch(repo, c, |ids| {
        out.extend(ids.iter().copied());
        Ok(())
    })
    .expect("content ids");
    out
}

fn restore_to(repo: &Repository, snap: &Snapshot, target: &Path) {
    let opts = RestoreOptions {
        target: target.to_path_buf(),
        ..Default::default()
    };
    let r = restore(repo, snap, &opts, &NoProgress).expect("restore");
    assert!(r.failed.is_empty(), "{:?}", r.failed);
}

fn dump_stream(repo: &Repository, snap: &Snapshot) -> Vec<u8> {
    let tree = repo.load_tree(&snap.tree).expect("root");
    let mut out = Vec::new();
    dump_content(repo, &tree.nodes[0], &mut out, &NoProgress).expect("dump");
    out
}

fn all_ids(repo: &Repository) -> Vec<SnapshotId> {
    repo.list_snapshots()
        .expect("list")
        .into_iter()
        .map(|(id, _)| id)
        .collect()
}

fn copied(report: &CopyReport) -> Vec<SnapshotId> {
    report.copied.iter().map(|c| c.source).collect()
}

fn check_clean(repo: &Repository) {
    let r = check(
        repo,
        &CheckOptions {
            read_data: ReadData::All,
        },
        &NoProgress,
    )
    .expect("check");
    assert!(r.is_clean(), "{:?}", r.errors);
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
}

#[test]
fn copies_restore_byte_exact_resume_and_dedup_at_the_destination() {
    let env = env();
    let src = env.open();
    let dst = destination(&env.root.join("dst").to_string_lossy(), &env.cache);
    assert_ne!(src.keys().chunker_seed(), dst.keys().chunker_seed());
    let mut rng = Rng(0xC0B1_0001);
    let data = env.root.join("data");
    write_tree(&data, &mut rng);

    let tree1 = backup(
        &src,
        BackupOptions {
            tags: vec!["nightly".into(), "n8n".into()],
            host: Some("box1".into()),
            ..BackupOptions::new(Source::Paths(vec![data.clone()]))
        },
        &NoProgress,
    )
    .expect("backup tree");
    // A stream long enough for content lists (more than 1024 chunks of ~16 KiB).
    let stream = rng.bytes(24 << 20);
    let dump1 = backup(
        &src,
        BackupOptions::new(Source::Stream {
            name: "db.dump".into(),
            reader: Box::new(Cursor::new(stream.clone())),
        }),
        &NoProgress,
    )
    .expect("backup stream");

    // First run: both, oldest first.
    let report = copy(&src, &dst, &all_ids(&src), &NoProgress).expect("copy");
    assert_eq!(copied(&report), vec![tree1.id, dump1.id]);
    assert!(report.present.is_empty());
    let total = tree1.snapshot.summary.expect("summary").total_bytes + stream.len() as u64;
    assert_eq!(
        report.bytes_read(),
        total - (9 << 20),
        "the duplicate big file is read once"
    );
    assert!(report.data_added_raw() > 0);

    let dst_snaps = dst.list_snapshots().expect("list dst");
    assert_eq!(dst_snaps.len(), 2);
    let (c1_id, c1) = &dst_snaps[0];
    let (_, c2) = &dst_snaps[1];
    assert_eq!(c1.copied_from, Some(tree1.id));
    assert_eq!(c2.copied_from, Some(dump1.id));
    for (orig, copy) in [(&tree1.snapshot, c1), (&dump1.snapshot, c2)] {
        assert_eq!(copy.time_ns, orig.time_ns);
        assert_eq!(copy.utc_offset, orig.utc_offset);
        assert_eq!(copy.paths, orig.paths);
        assert_eq!(copy.hostname, orig.hostname);
        assert_eq!(copy.username, orig.username);
        assert_eq!(copy.tags, orig.tags);
        assert_eq!(copy.status, orig.status);
        assert_eq!(
            copy.chunker, orig.chunker,
            "the destination has profiles of the same names"
        );
        assert_eq!(copy.parent, None);
        let (s, o) = (
            copy.summary.expect("summary"),
            orig.summary.expect("summary"),
        );
        assert_eq!(
            (s.total_files, s.total_bytes, s.start_ns),
            (o.total_files, o.total_bytes, o.start_ns)
        );
        assert_ne!(copy.tree, orig.tree);
    }
    assert_eq!(c1.hostname, "box1");
    assert_same_trees(&src, &tree1.snapshot.tree, &dst, &c1.tree);
    assert_same_trees(&src, &dump1.snapshot.tree, &dst, &c2.tree);

    // Byte-exact restores, with metadata.
    let out = env.root.join("restored1");
    restore_to(&dst, c1, &out);
    assert_eq!(describe(&out.join("data")), describe(&data));
    assert_eq!(dump_stream(&dst, c2), stream);

    // Second run: nothing to do.
    let again = copy(&src, &dst, &all_ids(&src), &NoProgress).expect("copy again");
    assert!(again.copied.is_empty());
    assert_eq!(again.present.len(), 2);
    assert_eq!(dst.list_snapshots().expect("list").len(), 2);

    // A new source snapshot: one small file changed, one added. Only it is copied; the
    // unchanged files are not read again, and little is added.
    fs::write(data.join("small.txt"), b"hello, copy, changed\n").expect("write");
    fs::write(data.join("sub/new.txt"), rng.bytes(5000)).expect("write");
    let tree2 = backup(
        &src,
        BackupOptions {
            host: Some("box1".into()),
            ..BackupOptions::new(Source::Paths(vec![data.clone()]))
        },
        &NoProgress,
    )
    .expect("backup 2");
    assert_eq!(tree2.snapshot.parent, Some(tree1.id));
    let third = copy(&src, &dst, &all_ids(&src), &NoProgress).expect("copy 3");
    assert_eq!(copied(&third), vec![tree2.id]);
    assert_eq!(third.present.len(), 2);
    let c3 = &third.copied[0];
    assert_eq!(
        c3.snapshot.parent,
        Some(*c1_id),
        "parent: the copy of the source's parent"
    );
    assert_eq!(c3.stats.files_read, 2, "{:?}", c3.stats);
    assert_eq!(c3.stats.files_reused, 5, "{:?}", c3.stats);
    assert!(third.bytes_read() < 10_000, "{}", third.bytes_read());
    assert!(
        c3.data_added_raw < 64 << 10,
        "added {} bytes",
        c3.data_added_raw
    );
    assert_eq!(
        c3.snapshot.summary.expect("summary").data_added_raw,
        c3.data_added_raw
    );
    let out = env.root.join("restored3");
    restore_to(&dst, &c3.snapshot, &out);
    assert_eq!(describe(&out.join("data")), describe(&data));

    check_clean(&dst);

    // Copying back: the source already holds every origin.
    let back = copy(&dst, &src, &all_ids(&dst), &NoProgress).expect("copy back");
    assert!(back.copied.is_empty());
    assert_eq!(back.present.len(), 3);
}

#[test]
fn a_stream_cut_again_dedups_against_an_earlier_copy_without_a_parent() {
    let env = env();
    let src = env.open();
    let dst = destination(&env.root.join("dst").to_string_lossy(), &env.cache);
    let mut rng = Rng(0xC0B1_0002);
    let mut stream = rng.bytes(4 << 20);
    let stream_backup = |bytes: &[u8]| {
        backup(
            &src,
            BackupOptions::new(Source::Stream {
                name: "db.dump".into(),
                reader: Box::new(Cursor::new(bytes.to_vec())),
            }),
            &NoProgress,
        )
        .expect("stream backup")
    };
    let first = stream_backup(&stream);
    let r1 = copy(&src, &dst, &[first.id], &NoProgress).expect("copy 1");
    assert_eq!(copied(&r1), vec![first.id]);
    // Change 1 KiB in the middle: the whole stream is read again (streams have no parent), but
    // the destination's chunker cuts it again into mostly known chunks.
    for b in &mut stream[2 << 20..(2 << 20) + 1024] {
        *b ^= 0x5a;
    }
    let second = stream_backup(&stream);
    let r2 = copy(&src, &dst, &all_ids(&src), &NoProgress).expect("copy 2");
    assert_eq!(copied(&r2), vec![second.id]);
    assert_eq!(r2.bytes_read(), stream.len() as u64);
    // The chunks around the change are new: the one holding it, and the next ones until the
    // cuts meet the old ones again, each at most 256 KiB (the stream profile's maximum; two
    // were 258 KiB in one run of about 40). Without dedup all 4 MiB would be.
    assert!(
        r2.data_added_raw() <= 3 * (256 << 10),
        "added {} of {} bytes",
        r2.data_added_raw(),
        stream.len()
    );
    let copy2 = &r2.copied[0].snapshot;
    assert_eq!(copy2.parent, None);
    assert_eq!(dump_stream(&dst, copy2), stream);
    check_clean(&dst);
}

#[test]
fn a_subset_first_then_the_rest_and_bad_requests_are_clear() {
    let env = env();
    let src = env.open();
    let dst = destination(&env.root.join("dst").to_string_lossy(), &env.cache);
    let mut rng = Rng(0xC0B1_0003);
    let data = env.root.join("data");
    let mut ids = Vec::new();
    for i in 0..3 {
        fs::create_dir_all(&data).expect("mkdir");
        fs::write(data.join(format!("f{i}")), rng.bytes(100_000)).expect("write");
        let r = backup(
            &src,
            BackupOptions::new(Source::Paths(vec![data.clone()])),
            &NoProgress,
        )
        .expect("backup");
        ids.push(r.id);
    }
    // Only the middle one (as an interrupted run would leave it), then everything: the rest
    // is copied, in time order, with parents mapped when the parent's copy exists.
    let first = copy(&src, &dst, &[ids[1], ids[1]], &NoProgress).expect("copy one");
    assert_eq!(copied(&first), vec![ids[1]]);
    assert_eq!(
        first.copied[0].snapshot.parent, None,
        "the parent was not copied yet"
    );
    let rest = copy(&src, &dst, &[ids[2], ids[0], ids[1]], &NoProgress).expect("copy rest");
    assert_eq!(copied(&rest), vec![ids[0], ids[2]]);
    assert_eq!(rest.present, vec![(ids[1], first.copied[0].id)]);
    assert_eq!(rest.copied[1].snapshot.parent, Some(first.copied[0].id));
    let origins: HashSet<SnapshotId> = dst
        .list_snapshots()
        .expect("list")
        .iter()
        .map(|(id, s)| origin(id, s))
        .collect();
    assert_eq!(origins, ids.iter().copied().collect());

    // A repository cannot be copied into itself.
    let e = copy(&src, &src, &ids, &NoProgress).expect_err("same repository");
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.to_string().contains("same repository"), "{e}");
    // An unknown snapshot id is an error naming it, before anything is copied.
    let missing = SnapshotId(repo_format::Id([0xab; 32]));
    let e = copy(&src, &dst, &[missing], &NoProgress).expect_err("missing");
    let chain = format!("{e:?}");
    assert!(chain.contains("snapshots/abab"), "{chain}");
}

// ---- a prune of the destination while the copy runs (SPEC §18, as for a backup) ----

/// Runs `f` once, at the first file the copy finishes.
struct AtFirstFile(std::sync::Mutex<Option<Box<dyn FnOnce() + Send>>>);

impl engine::progress::Progress for AtFirstFile {
    fn file_done(&self) {
        let f = self.0.lock().map(|mut f| f.take()).unwrap_or(None);
        if let Some(f) = f {
            f();
        }
    }
}

fn prune_at(location: &str, cache: &Path) -> engine::prune::PruneReport {
    let repo = Repository::open(
        location,
        OTHER_PASSWORD,
        &OpenOptions {
            cache_dir: Some(cache.to_path_buf()),
        },
    )
    .expect("open for prune");
    let opts = engine::prune::PruneOptions {
        max_unused: engine::prune::MaxUnused::Percent(0.0),
        ..engine::prune::PruneOptions::default()
    };
    engine::prune::prune(&repo, &opts, &NoProgress).expect("prune")
}

#[test]
fn a_prune_that_marks_what_the_copy_deduplicated_against_loses_nothing() {
    let env = env();
    let src = env.open();
    let dst_loc = env.root.join("dst").to_string_lossy().into_owned();
    let grace = std::time::Duration::from_secs(2);
    let wait_grace = || std::thread::sleep(grace + std::time::Duration::from_millis(1100));
    init(
        &dst_loc,
        OTHER_PASSWORD,
        &InitOptions {
            kdf: KdfParams::TEST,
            prune_grace_secs: Some(grace.as_secs()),
            ..InitOptions::default()
        },
    )
    .expect("init destination");
    let dst = Repository::open(
        &dst_loc,
        OTHER_PASSWORD,
        &OpenOptions {
            cache_dir: Some(env.cache.clone()),
        },
    )
    .expect("open destination");
    let data = Rng(0xC0B1_0005).bytes(3 << 20);
    let s = backup(
        &src,
        BackupOptions::new(Source::Stream {
            name: "db.dump".into(),
            reader: Box::new(Cursor::new(data.clone())),
        }),
        &NoProgress,
    )
    .expect("backup");
    // A first copy, forgotten at the destination: its packs are garbage old enough to mark.
    let first = copy(&src, &dst, &[s.id], &NoProgress).expect("copy");
    engine::forget::forget_ids(&dst, &[first.copied[0].id.0.to_hex()], false).expect("forget");
    wait_grace();

    // Copy again: the copy deduplicates against that garbage, and a prune marks it meanwhile.
    let cache = env.cache.clone();
    let loc = dst_loc.clone();
    let progress = AtFirstFile(std::sync::Mutex::new(Some(Box::new(move || {
        let r = prune_at(&loc, &cache);
        assert!(
            r.plan.is_some(),
            "prune marks the packs the copy reuses: {r:?}"
        );
    }))));
    let second =
        copy(&src, &dst, &[s.id], &progress).expect("the copy stores the marked blobs again");
    assert_eq!(second.copied.len(), 1);
    assert!(
        second
            .warnings
            .iter()
            .any(|w| w.message.contains("a prune marked")),
        "{:?}",
        second.warnings
    );
    // The sweep deletes every marked pack: the copy does not rely on them any more.
    wait_grace();
    let r = prune_at(&dst_loc, &env.cache);
    assert!(r.sweep.packs_deleted >= 1, "{r:?}");
    assert_eq!(r.sweep.packs_kept, 0, "{r:?}");
    check_clean(&dst);
    assert_eq!(dump_stream(&dst, &second.copied[0].snapshot), data);
}

// ---- s3:// destination (moto; same rules as s3.rs) ----

/// The moto endpoint, or `None` when the developer opted out with `CAIRN_SKIP_S3=1`.
fn s3_endpoint() -> Option<String> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let Some(endpoint) = var("CAIRN_S3_ENDPOINT") else {
        if var("CAIRN_SKIP_S3").as_deref() == Some("1") {
            eprintln!("SKIPPED: S3 copy test (CAIRN_SKIP_S3=1 and no CAIRN_S3_ENDPOINT)");
            return None;
        }
        panic!(
            "CAIRN_S3_ENDPOINT is not set: run through scripts/test (which starts moto), or skip \
             with CAIRN_SKIP_S3=1 (see engine/tests/s3.rs)"
        );
    };
    assert_eq!(
        var("AWS_ENDPOINT_URL")
            .or_else(|| var("AWS_ENDPOINT"))
            .as_deref(),
        Some(endpoint.as_str()),
        "AWS_ENDPOINT_URL must equal CAIRN_S3_ENDPOINT so the test never reaches real S3"
    );
    Some(endpoint)
}

#[test]
fn copy_from_local_to_s3_and_back_is_exact() {
    let Some(endpoint) = s3_endpoint() else {
        return;
    };
    let env = env();
    let src = env.open();
    let loc = format!(
        "s3://{}/copies/box1",
        common::s3::test_bucket(&endpoint, "copy")
    );
    let dst = destination(&loc, &env.cache);
    let mut rng = Rng(0xC0B1_0004);
    let data = env.root.join("data");
    write_tree(&data, &mut rng);
    let tree = backup(
        &src,
        BackupOptions::new(Source::Paths(vec![data.clone()])),
        &NoProgress,
    )
    .expect("backup");
    let stream = rng.bytes(2 << 20);
    let dump = backup(
        &src,
        BackupOptions::new(Source::Stream {
            name: "db.dump".into(),
            reader: Box::new(Cursor::new(stream.clone())),
        }),
        &NoProgress,
    )
    .expect("backup stream");
    let report = copy(&src, &dst, &all_ids(&src), &NoProgress).expect("copy to s3");
    assert_eq!(copied(&report), vec![tree.id, dump.id]);
    let again = copy(&src, &dst, &all_ids(&src), &NoProgress).expect("copy to s3 again");
    assert!(again.copied.is_empty());
    let snaps = dst.list_snapshots().expect("list s3");
    let out = env.root.join("restored");
    restore_to(&dst, &snaps[0].1, &out);
    assert_eq!(describe(&out.join("data")), describe(&data));
    assert_eq!(dump_stream(&dst, &snaps[1].1), stream);
    check_clean(&dst);

    // And from s3:// into a third, local repository.
    let third = destination(&env.root.join("third").to_string_lossy(), &env.cache);
    let r = copy(&dst, &third, &all_ids(&dst), &NoProgress).expect("copy from s3");
    assert_eq!(r.copied.len(), 2);
    let snaps = third.list_snapshots().expect("list third");
    assert_eq!(
        snaps[0].1.copied_from,
        Some(tree.id),
        "the origin carries over"
    );
    let out = env.root.join("restored-third");
    restore_to(&third, &snaps[0].1, &out);
    assert_eq!(describe(&out.join("data")), describe(&data));
}

/// A backend that counts the pack bytes it serves and the pack reads asked of it, and fails
/// the reads of the packs in `fail` (as a storage outage would).
#[derive(Debug)]
struct PackReads {
    inner: Arc<dyn Backend>,
    bytes: AtomicU64,
    reads: AtomicU64,
    fail: std::sync::Mutex<HashSet<String>>,
}

impl PackReads {
    fn new(env: &common::Env) -> Arc<Intercepted<PackReads>> {
        Arc::new(Intercepted(PackReads {
            inner: open_backend(&env.repo_path).expect("backend"),
            bytes: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            fail: std::sync::Mutex::new(HashSet::new()),
        }))
    }

    fn served(
        &self,
        t: FileType,
        name: &str,
        b: bytes::Bytes,
    ) -> Result<bytes::Bytes, BackendError> {
        if t == FileType::Pack {
            if self.fail.lock().expect("lock").contains(name) {
                self.reads.fetch_add(1, Ordering::Relaxed);
                return Err(BackendError::new(
                    engine::backend::BackendErrorKind::Io,
                    "read",
                    format!("data/{name} (the storage is down)"),
                    "test",
                ));
            }
            self.bytes.fetch_add(b.len() as u64, Ordering::Relaxed);
        }
        Ok(b)
    }
}

#[async_trait::async_trait]
impl Intercept for PackReads {
    fn inner(&self) -> &dyn Backend {
        &*self.inner
    }
    async fn get(&self, t: FileType, name: &str) -> Result<bytes::Bytes, BackendError> {
        let b = self.inner.get(t, name).await?;
        self.served(t, name, b)
    }
    async fn get_range(
        &self,
        t: FileType,
        name: &str,
        offset: u64,
        len: u64,
    ) -> Result<bytes::Bytes, BackendError> {
        let b = self.inner.get_range(t, name, offset, len).await?;
        self.served(t, name, b)
    }
}

#[test]
fn small_files_sharing_compression_groups_are_read_once() {
    let env = env();
    let data = env.root.join("data");
    let mut rng = Rng(0xC0B1_0002);
    // 3000 small text files: their blobs share ~1 MiB compression groups (SPEC §7).
    for i in 0..3000usize {
        let dir = data.join(format!("d{}", i % 30));
        fs::create_dir_all(&dir).expect("mkdir");
        fs::write(dir.join(format!("f{i}")), rng.text(150 + i % 200)).expect("write");
    }
    backup(
        &env.open(),
        BackupOptions::new(Source::Paths(vec![data.clone()])),
        &NoProgress,
    )
    .expect("backup");
    let counter = PackReads::new(&env);
    let src = Repository::open_with_backend(
        counter.clone(),
        &env.repo_path,
        common::PASSWORD,
        &OpenOptions {
            cache_dir: Some(env.cache.clone()),
        },
    )
    .expect("open source");
    let stored: u64 = src
        .block_on(src.backend().list(FileType::Pack))
        .expect("list packs")
        .iter()
        .map(|o| o.size)
        .sum();
    let dst = destination(
        &env.root.join("dst").to_string_lossy(),
        &env.root.join("dst-cache"),
    );
    copy(&src, &dst, &all_ids(&src), &NoProgress).expect("copy");
    let read = counter.bytes.load(Ordering::Relaxed);
    // Groups are read once and kept among the recent ones while every directory's files are
    // loaded (tree blobs are read besides): about what is stored, not once per file or per
    // directory (3000 or 30 times).
    assert!(
        read <= stored,
        "read {read} bytes of packs holding {stored}"
    );
    let copied_snap = dst.list_snapshots().expect("list").remove(0).1;
    let target = env.root.join("restored");
    restore_to(&dst, &copied_snap, &target);
    assert_eq!(describe(&target.join("data")), describe(&data));
}

#[test]
fn a_storage_outage_stops_a_copy_of_small_files_at_once() {
    let env = env();
    let data = env.root.join("data");
    fs::create_dir_all(&data).expect("mkdir");
    let mut rng = Rng(0xC0B1_0003);
    // 500 small files in one directory: one batch, their blobs in one compression group.
    for i in 0..500usize {
        fs::write(data.join(format!("f{i}")), rng.text(150)).expect("write");
    }
    backup(
        &env.open(),
        BackupOptions::new(Source::Paths(vec![data.clone()])),
        &NoProgress,
    )
    .expect("backup");
    let storage = PackReads::new(&env);
    let src = Repository::open_with_backend(
        storage.clone(),
        &env.repo_path,
        common::PASSWORD,
        &OpenOptions {
            cache_dir: Some(env.cache.clone()),
        },
    )
    .expect("open source");
    let dst = destination(
        &env.root.join("dst").to_string_lossy(),
        &env.root.join("dst-cache"),
    );
    // Tree packs stay readable; every read of a data pack fails.
    let mut data_packs = HashSet::new();
    for id in src.list_ids(FileType::Index).expect("list") {
        let file = src.load_index(&repo_format::IndexId(id)).expect("index");
        for p in file.packs {
            if p.entries[0].blob_type == repo_format::BlobType::Data {
                data_packs.insert(p.id.0.to_hex());
            }
        }
    }
    assert!(!data_packs.is_empty());
    *storage.fail.lock().expect("lock") = data_packs;
    let e = copy(&src, &dst, &all_ids(&src), &NoProgress).expect_err("the storage is down");
    let chain = engine::restorer::error_chain(&e);
    assert!(chain.contains("the storage is down"), "{chain}");
    // One failed read for the batch, not one per file (each with its own retries on S3).
    let reads = storage.reads.load(Ordering::Relaxed);
    assert!((1..=2).contains(&reads), "{reads} failed pack reads");
}
