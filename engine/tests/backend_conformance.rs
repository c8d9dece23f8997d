//! One conformance suite for every [`Backend`], after restic's `internal/backend/test/suite.go`:
//! [`conformance`] takes any backend and checks the whole contract of `engine::backend`; it runs
//! against a [`LocalBackend`] on a temporary directory, `memory://`, and `object+file://` (the
//! object_store adapter on disk). Backend-specific behaviour (temp files, directory layout,
//! errors from a broken path) is tested below it, per backend.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use engine::backend::{
    Backend, BackendErrorKind, FileType, LocalBackend, ObjectInfo, open_backend,
};

// ---------------------------------------------------------------------------------------------
// helpers

/// A 64-hex-digit name whose first byte is `shard`, distinct for each `n`.
fn id_name(shard: u8, n: u32) -> String {
    format!("{shard:02x}{n:062x}")
}

/// Deterministic, distinct test bytes.
fn payload(seed: u32, len: usize) -> Bytes {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(12345);
    let v: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x.to_le_bytes()[0]
        })
        .collect();
    Bytes::from(v)
}

async fn sorted_list(b: &dyn Backend, t: FileType) -> Vec<ObjectInfo> {
    let mut l = b.list(t).await.expect("list");
    l.sort();
    l
}

// ---------------------------------------------------------------------------------------------
// the suite

/// The whole [`Backend`] contract, on an empty repository.
async fn conformance(b: Arc<dyn Backend>) {
    let loc = b.location();
    assert!(!loc.is_empty());

    // An empty repository lists nothing.
    for t in FileType::ALL {
        assert!(
            b.list(t).await.expect("list empty").is_empty(),
            "{t:?} in {loc}"
        );
    }

    round_trip_every_type(&*b).await;
    create_only(&*b).await;
    missing_objects(&*b).await;
    ranges(&*b).await;
    listing(&*b).await;
    deleting(&*b).await;
    invalid_names(&*b).await;
    concurrent_distinct_puts(b.clone()).await;
    concurrent_same_name_puts(b.clone()).await;
}

async fn round_trip_every_type(b: &dyn Backend) {
    for (i, t) in FileType::ALL.into_iter().enumerate() {
        let name = id_name(0x10 + i as u8, 1);
        let data = payload(i as u32, 1000 + i);
        b.put(t, &name, data.clone()).await.expect("put");
        assert_eq!(b.get(t, &name).await.expect("get"), data, "{t:?}");
        assert_eq!(
            b.exists(t, &name).await.expect("exists"),
            Some(data.len() as u64)
        );
    }
    // An empty object is an object.
    let empty = id_name(0x20, 0);
    b.put(FileType::Snapshot, &empty, Bytes::new())
        .await
        .expect("put empty");
    assert_eq!(
        b.get(FileType::Snapshot, &empty)
            .await
            .expect("get empty")
            .len(),
        0
    );
    assert_eq!(
        b.exists(FileType::Snapshot, &empty).await.expect("exists"),
        Some(0)
    );
    // The config ignores names: there is only one.
    assert!(b.get(FileType::Config, "anything").await.is_ok());
    for (i, t) in FileType::ALL.into_iter().enumerate() {
        b.delete(t, &id_name(0x10 + i as u8, 1))
            .await
            .expect("delete");
    }
    b.delete(FileType::Snapshot, &empty)
        .await
        .expect("delete empty");
    for t in FileType::ALL {
        assert!(
            b.list(t).await.expect("list").is_empty(),
            "{t:?} not cleaned up"
        );
    }
}

async fn create_only(b: &dyn Backend) {
    let name = id_name(0xab, 2);
    let original = payload(1, 4096);
    b.put(FileType::Pack, &name, original.clone())
        .await
        .expect("first put");
    let e = b
        .put(FileType::Pack, &name, payload(2, 10))
        .await
        .expect_err("second put of the same name must fail");
    assert_eq!(e.kind(), BackendErrorKind::AlreadyExists, "{e}");
    assert!(e.to_string().contains("already exists"), "{e}");
    assert!(e.to_string().contains(&name), "{e}");
    assert_eq!(b.get(FileType::Pack, &name).await.expect("get"), original);
    assert_eq!(
        b.exists(FileType::Pack, &name).await.expect("exists"),
        Some(4096)
    );
    // Config too.
    b.put(FileType::Config, "config", payload(3, 50))
        .await
        .expect("config");
    let e = b
        .put(FileType::Config, "config", payload(4, 50))
        .await
        .expect_err("config twice");
    assert_eq!(e.kind(), BackendErrorKind::AlreadyExists);
    assert_eq!(
        b.get(FileType::Config, "config").await.expect("get config"),
        payload(3, 50)
    );
    b.delete(FileType::Pack, &name).await.expect("delete");
    b.delete(FileType::Config, "config")
        .await
        .expect("delete config");
}

async fn missing_objects(b: &dyn Backend) {
    for t in FileType::ALL {
        let name = id_name(0xcd, 3);
        let e = b.get(t, &name).await.expect_err("get missing");
        assert_eq!(e.kind(), BackendErrorKind::NotFound, "{t:?}: {e}");
        assert!(e.to_string().contains("not found"), "{e}");
        assert!(e.to_string().contains(&t.path(&name)), "{e}");
        let e = b
            .get_range(t, &name, 0, 1)
            .await
            .expect_err("range of missing");
        assert_eq!(e.kind(), BackendErrorKind::NotFound, "{t:?}: {e}");
        let e = b
            .get_range(t, &name, 0, 0)
            .await
            .expect_err("empty range of missing");
        assert_eq!(e.kind(), BackendErrorKind::NotFound, "{t:?}: {e}");
        assert_eq!(b.exists(t, &name).await.expect("exists"), None);
        b.delete(t, &name)
            .await
            .expect("delete of a missing object is Ok");
    }
}

async fn ranges(b: &dyn Backend) {
    let name = id_name(0x42, 4);
    let data = payload(5, 1000);
    b.put(FileType::Pack, &name, data.clone())
        .await
        .expect("put");
    let get = |off: u64, len: u64| b.get_range(FileType::Pack, &name, off, len);

    assert_eq!(get(0, 10).await.expect("start"), data.slice(0..10));
    assert_eq!(get(400, 123).await.expect("middle"), data.slice(400..523));
    assert_eq!(get(996, 4).await.expect("end"), data.slice(996..1000));
    assert_eq!(get(0, 1000).await.expect("whole"), data);
    assert_eq!(get(0, 0).await.expect("empty at start").len(), 0);
    assert_eq!(get(1000, 0).await.expect("empty at end").len(), 0);

    for (off, len) in [
        (1000, 1),
        (996, 5),
        (0, 1001),
        (5000, 10),
        (1001, 0),
        (u64::MAX, 2),
        (2, u64::MAX),
    ] {
        let e = get(off, len).await.expect_err("out of range");
        assert_eq!(e.kind(), BackendErrorKind::Other, "{off}+{len}: {e}");
        assert!(e.to_string().contains(&name), "{e}");
    }
    // Still intact.
    assert_eq!(b.get(FileType::Pack, &name).await.expect("get"), data);
    b.delete(FileType::Pack, &name).await.expect("delete");
}

async fn listing(b: &dyn Backend) {
    // Packs in many shards, including the first and last.
    let mut packs = BTreeMap::new();
    for (i, shard) in [0x00u8, 0x01, 0x7f, 0xab, 0xab, 0xff]
        .into_iter()
        .enumerate()
    {
        let name = id_name(shard, 100 + i as u32);
        let size = 10 * i + 1;
        b.put(FileType::Pack, &name, payload(i as u32, size))
            .await
            .expect("put pack");
        packs.insert(name, size as u64);
    }
    let mut others = BTreeMap::new();
    for (i, t) in [FileType::Key, FileType::Index, FileType::Snapshot]
        .into_iter()
        .enumerate()
    {
        for j in 0..3u32 {
            let name = id_name(0x55, 1000 * (i as u32 + 1) + j);
            let size = 7 + j as u64;
            b.put(t, &name, payload(j, size as usize))
                .await
                .expect("put");
            others.insert((t.dir(), name), size);
        }
    }
    b.put(FileType::Config, "config", payload(9, 33))
        .await
        .expect("config");

    let listed = sorted_list(b, FileType::Pack).await;
    let expected: Vec<ObjectInfo> = packs
        .iter()
        .map(|(name, size)| ObjectInfo {
            name: name.clone(),
            size: *size,
        })
        .collect();
    assert_eq!(listed, expected);

    for t in [FileType::Key, FileType::Index, FileType::Snapshot] {
        let expected: Vec<ObjectInfo> = others
            .iter()
            .filter(|((dir, _), _)| *dir == t.dir())
            .map(|((_, name), size)| ObjectInfo {
                name: name.clone(),
                size: *size,
            })
            .collect();
        assert_eq!(sorted_list(b, t).await, expected, "{t:?}");
    }
    assert_eq!(
        sorted_list(b, FileType::Config).await,
        vec![ObjectInfo {
            name: "config".into(),
            size: 33
        }]
    );

    for name in packs.keys() {
        b.delete(FileType::Pack, name).await.expect("delete pack");
    }
    for (dir, name) in others.keys() {
        let t = [FileType::Key, FileType::Index, FileType::Snapshot]
            .into_iter()
            .find(|t| t.dir() == *dir)
            .expect("type");
        b.delete(t, name).await.expect("delete");
    }
    b.delete(FileType::Config, "config")
        .await
        .expect("delete config");
    for t in FileType::ALL {
        assert!(b.list(t).await.expect("list").is_empty(), "{t:?}");
    }
}

async fn deleting(b: &dyn Backend) {
    let name = id_name(0x99, 5);
    b.put(FileType::Index, &name, payload(1, 64))
        .await
        .expect("put");
    assert_eq!(
        b.exists(FileType::Index, &name).await.expect("exists"),
        Some(64)
    );
    b.delete(FileType::Index, &name).await.expect("delete");
    assert_eq!(
        b.exists(FileType::Index, &name).await.expect("exists"),
        None
    );
    assert_eq!(
        b.get(FileType::Index, &name)
            .await
            .expect_err("gone")
            .kind(),
        BackendErrorKind::NotFound
    );
    b.delete(FileType::Index, &name)
        .await
        .expect("second delete is Ok");
    assert!(b.list(FileType::Index).await.expect("list").is_empty());
    // A deleted name can be written again.
    b.put(FileType::Index, &name, payload(2, 8))
        .await
        .expect("put again");
    assert_eq!(
        b.get(FileType::Index, &name).await.expect("get"),
        payload(2, 8)
    );
    b.delete(FileType::Index, &name).await.expect("delete");
}

async fn invalid_names(b: &dyn Backend) {
    for (t, name) in [
        (FileType::Key, ""),
        (FileType::Key, "../config"),
        (FileType::Index, "a/b"),
        (FileType::Snapshot, ".tmp-123"),
        (FileType::Snapshot, "name with spaces"),
        (FileType::Pack, "a"),
        (FileType::Pack, ".."),
    ] {
        let e = b
            .put(t, name, Bytes::from_static(b"x"))
            .await
            .expect_err(name);
        assert_eq!(e.kind(), BackendErrorKind::Other, "{name:?}: {e}");
        assert!(e.to_string().contains("invalid object name"), "{e}");
        assert!(b.get(t, name).await.is_err());
        assert!(b.get_range(t, name, 0, 1).await.is_err());
        assert!(b.exists(t, name).await.is_err());
        assert!(b.delete(t, name).await.is_err());
    }
    for t in FileType::ALL {
        assert!(b.list(t).await.expect("list").is_empty(), "{t:?}");
    }
}

async fn concurrent_distinct_puts(b: Arc<dyn Backend>) {
    let mut tasks = Vec::new();
    for i in 0..50u32 {
        let b = b.clone();
        tasks.push(tokio::spawn(async move {
            let name = id_name((i * 37 % 256) as u8, 5000 + i);
            b.put(FileType::Pack, &name, payload(i, 100 + i as usize))
                .await
                .map(|()| name)
        }));
    }
    let mut names = Vec::new();
    for task in tasks {
        names.push(task.await.expect("task").expect("put"));
    }
    let listed = sorted_list(&*b, FileType::Pack).await;
    assert_eq!(listed.len(), 50);
    for (i, name) in names.iter().enumerate() {
        let info = listed.iter().find(|o| &o.name == name).expect("listed");
        assert_eq!(info.size, 100 + i as u64);
        assert_eq!(
            b.get(FileType::Pack, name).await.expect("get"),
            payload(i as u32, 100 + i)
        );
    }
    for name in &names {
        b.delete(FileType::Pack, name).await.expect("delete");
    }
}

async fn concurrent_same_name_puts(b: Arc<dyn Backend>) {
    let name = id_name(0xee, 6);
    let barrier = Arc::new(tokio::sync::Barrier::new(16));
    let mut tasks = Vec::new();
    for i in 0..16u32 {
        let (b, name, barrier) = (b.clone(), name.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            (
                i,
                b.put(FileType::Snapshot, &name, payload(i, 20_000)).await,
            )
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        let (i, result) = task.await.expect("task");
        match result {
            Ok(()) => winners.push(i),
            Err(e) => assert_eq!(e.kind(), BackendErrorKind::AlreadyExists, "{e}"),
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?} at {}", b.location());
    // The stored bytes are the winner's, whole.
    assert_eq!(
        b.get(FileType::Snapshot, &name).await.expect("get"),
        payload(winners[0], 20_000)
    );
    assert_eq!(sorted_list(&*b, FileType::Snapshot).await.len(), 1);
    b.delete(FileType::Snapshot, &name).await.expect("delete");
}

// ---------------------------------------------------------------------------------------------
// the suite against each backend

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_local() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("repo");
    let local = LocalBackend::new(&root);
    local.init_layout().await.expect("init layout");
    conformance(Arc::new(local)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_local_via_open_backend_without_init_layout() {
    // Only the repository directory exists; every other directory is made on demand.
    let dir = tempfile::tempdir().expect("tempdir");
    conformance(open_backend(&dir.path().display().to_string()).expect("open")).await;
    let dir = tempfile::tempdir().expect("tempdir");
    conformance(open_backend(&format!("file://{}", dir.path().display())).expect("open")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_memory() {
    conformance(open_backend("memory://").expect("open")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_object_store_local_file_system() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = open_backend(&format!("object+file://{}", dir.path().display())).expect("open");
    conformance(b).await;
}

// ---------------------------------------------------------------------------------------------
// LocalBackend specifics

/// Every file under `dir`, relative, sorted.
fn tree(dir: &std::path::Path) -> Vec<String> {
    fn walk(base: &std::path::Path, dir: &std::path::Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).expect("read_dir") {
            let entry = entry.expect("entry");
            let path = entry.path();
            let rel = path
                .strip_prefix(base)
                .expect("prefix")
                .display()
                .to_string();
            if entry.file_type().expect("type").is_dir() {
                out.push(format!("{rel}/"));
                walk(base, &path, out);
            } else {
                out.push(rel);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[tokio::test]
async fn local_layout_follows_the_spec() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("nested/repo");
    let b = LocalBackend::new(&root);
    b.init_layout().await.expect("init");
    b.init_layout().await.expect("init is idempotent");
    assert_eq!(tree(&root), ["data/", "index/", "keys/", "snapshots/"]);

    let pack = id_name(0xab, 1);
    b.put(FileType::Config, "ignored", payload(0, 3))
        .await
        .expect("config");
    b.put(FileType::Key, "k1", payload(1, 3))
        .await
        .expect("key");
    b.put(FileType::Pack, &pack, payload(2, 3))
        .await
        .expect("pack");
    b.put(FileType::Index, "i1", payload(3, 3))
        .await
        .expect("index");
    b.put(FileType::Snapshot, "s1", payload(4, 3))
        .await
        .expect("snapshot");
    // No temp files are left behind.
    assert_eq!(
        tree(&root),
        [
            "config".to_owned(),
            "data/".into(),
            "data/ab/".into(),
            format!("data/ab/{pack}"),
            "index/".into(),
            "index/i1".into(),
            "keys/".into(),
            "keys/k1".into(),
            "snapshots/".into(),
            "snapshots/s1".into(),
        ]
    );
    assert_eq!(
        std::fs::read(root.join("data/ab").join(&pack)).expect("read"),
        payload(2, 3)
    );
}

#[tokio::test]
async fn local_put_creates_missing_directories_reads_do_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("a/b/repo");
    let b = LocalBackend::new(&root);

    // Reads of a repository that does not exist create nothing.
    let e = b
        .get(FileType::Config, "config")
        .await
        .expect_err("no repo yet");
    assert_eq!(e.kind(), BackendErrorKind::NotFound, "{e}");
    assert!(
        b.list(FileType::Key)
            .await
            .expect("list of a missing repo")
            .is_empty()
    );
    assert!(
        b.list(FileType::Pack)
            .await
            .expect("list of a missing repo")
            .is_empty()
    );
    assert_eq!(b.exists(FileType::Key, "k1").await.expect("exists"), None);
    b.delete(FileType::Key, "k1").await.expect("delete");
    assert!(!root.exists(), "reads must not create the repository");

    // `init` writes the key file first: that creates the repository.
    b.put(FileType::Key, "k1", payload(1, 3))
        .await
        .expect("key creates the root");
    b.put(FileType::Config, "config", payload(0, 3))
        .await
        .expect("config");
    assert_eq!(tree(&root), ["config", "keys/", "keys/k1"]);
}

#[tokio::test]
async fn local_leftover_temp_files_are_not_listed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let b = LocalBackend::new(root);
    b.init_layout().await.expect("init");
    let pack = id_name(0x3c, 1);
    b.put(FileType::Pack, &pack, payload(1, 10))
        .await
        .expect("pack");
    b.put(FileType::Key, "k1", payload(1, 10))
        .await
        .expect("key");

    // What a crash between "create temp" and "link" leaves behind, plus other junk.
    for junk in [
        "data/3c/.tmp-0123456789abcdef01234567",
        "data/3c/ffnotthisshard",
        "data/3c/not valid",
        "data/stray-file-in-data",
        "keys/.tmp-deadbeef",
        "index/.tmp-x",
        "snapshots/.hidden",
        ".tmp-aaaa",
    ] {
        std::fs::write(root.join(junk), b"junk").expect("write junk");
    }
    std::fs::create_dir(root.join("data/.tmp-dir")).expect("mkdir");
    std::fs::create_dir(root.join("data/abc")).expect("mkdir");
    std::fs::write(root.join("data/abc/abcdef"), b"x").expect("write");
    std::fs::create_dir(root.join("keys/subdir")).expect("mkdir");

    assert_eq!(
        sorted_list(&b, FileType::Pack).await,
        vec![ObjectInfo {
            name: pack,
            size: 10
        }]
    );
    assert_eq!(
        sorted_list(&b, FileType::Key).await,
        vec![ObjectInfo {
            name: "k1".into(),
            size: 10
        }]
    );
    assert!(b.list(FileType::Index).await.expect("list").is_empty());
    assert!(b.list(FileType::Snapshot).await.expect("list").is_empty());
    assert!(b.list(FileType::Config).await.expect("list").is_empty());
}

#[tokio::test]
async fn local_path_under_a_regular_file_gives_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"not a directory").expect("write");
    let root = file.join("repo");
    let b = open_backend(&root.display().to_string()).expect("open touches nothing");

    for e in [
        b.put(FileType::Config, "config", payload(0, 3))
            .await
            .expect_err("put config"),
        b.put(FileType::Key, "k1", payload(0, 3))
            .await
            .expect_err("put key"),
        b.get(FileType::Key, "k1").await.expect_err("get"),
        b.get_range(FileType::Pack, "abcd", 0, 1)
            .await
            .expect_err("get_range"),
        b.list(FileType::Snapshot).await.expect_err("list"),
        b.list(FileType::Pack).await.expect_err("list packs"),
        b.exists(FileType::Index, "i1").await.expect_err("exists"),
        b.delete(FileType::Index, "i1").await.expect_err("delete"),
    ] {
        assert_eq!(e.kind(), BackendErrorKind::Io, "{e}");
        let msg = e.to_string();
        assert!(msg.contains("not a directory"), "{msg}");
        assert!(msg.contains(&root.display().to_string()), "{msg}");
        assert!(
            std::error::Error::source(&e).is_some(),
            "keeps the io::Error"
        );
    }
    let e = LocalBackend::new(&root)
        .init_layout()
        .await
        .expect_err("init_layout");
    assert!(e.to_string().contains("not a directory"), "{e}");
}

#[tokio::test]
async fn local_permission_denied_has_its_kind() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let b = LocalBackend::new(dir.path());
    b.init_layout().await.expect("init");
    let keys = dir.path().join("keys");
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o500)).expect("chmod");
    // root (and CAP_DAC_OVERRIDE) ignores permission bits: then there is nothing to test.
    let probe = keys.join("probe");
    if std::fs::write(&probe, b"x").is_ok() {
        let _ = std::fs::remove_file(&probe);
        eprintln!("skipped: running with privileges that ignore permission bits");
        return;
    }
    let e = b
        .put(FileType::Key, "k1", payload(0, 3))
        .await
        .expect_err("read-only dir");
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o700)).expect("chmod back");
    assert_eq!(e.kind(), BackendErrorKind::PermissionDenied, "{e}");
    assert!(e.to_string().contains("permission denied"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// open_backend

#[tokio::test]
async fn open_backend_rejects_what_it_cannot_open() {
    for (loc, needle) in [
        ("s3://bucket/prefix", "not supported yet in this build"),
        ("gs://bucket/prefix", "not supported yet in this build"),
        ("az://container/prefix", "not supported yet in this build"),
        ("nope://x", "unknown scheme"),
        ("object+file:///definitely/not/here/cairn", "cannot open"),
    ] {
        let e = open_backend(loc).expect_err(loc);
        assert!(e.to_string().contains(needle), "{loc}: {e}");
    }
}
