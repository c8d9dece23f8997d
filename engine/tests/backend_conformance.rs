//! One conformance suite for every [`Backend`], after restic's `internal/backend/test/suite.go`:
//! [`conformance`] (in `common/conformance.rs`, shared with `s3.rs`) takes any backend and checks
//! the whole contract of `engine::backend`; it runs against a [`LocalBackend`] on a temporary
//! directory, `memory://`, and `object+file://` (the object_store adapter on disk).
//! Backend-specific behaviour (temp files, directory layout, errors from a broken path) is tested
//! below it, per backend.

use std::sync::Arc;

use engine::backend::{
    Backend, BackendErrorKind, FileType, LocalBackend, ObjectInfo, open_backend,
};

#[path = "common/conformance.rs"]
mod conformance;

use conformance::{conformance, id_name, payload, sorted_list};

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
    conformance::large_pack(&*open_backend("memory://").expect("open")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_object_store_local_file_system() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = open_backend(&format!("object+file://{}", dir.path().display())).expect("open");
    conformance(b.clone()).await;
    conformance::large_pack(&*b).await;
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
    assert_eq!(
        tree(&root),
        [
            "data/",
            "index/",
            "keys/",
            "leases/",
            "plans/",
            "snapshots/"
        ]
    );

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
    b.put(FileType::Plan, "p1", payload(5, 3))
        .await
        .expect("plan");
    b.put(FileType::Lease, "00000000000000000001", payload(6, 3))
        .await
        .expect("lease");
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
            "leases/".into(),
            "leases/00000000000000000001".into(),
            "plans/".into(),
            "plans/p1".into(),
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
            size: 10,
            modified: None,
        }]
    );
    assert_eq!(
        sorted_list(&b, FileType::Key).await,
        vec![ObjectInfo {
            name: "k1".into(),
            size: 10,
            modified: None,
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
        ("s3://", "missing bucket"),
        ("gs://", "missing bucket"),
        ("az://", "missing container"),
        ("abfs://container/prefix", "not supported yet in this build"),
        ("nope://x", "unknown scheme"),
        ("object+file:///definitely/not/here/cairn", "cannot open"),
    ] {
        let e = open_backend(loc).expect_err(loc);
        assert!(e.to_string().contains(needle), "{loc}: {e}");
    }
}
