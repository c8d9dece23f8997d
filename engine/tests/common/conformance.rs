//! The [`Backend`] conformance suite, after restic's `internal/backend/test/suite.go`:
//! [`conformance`] takes any backend and checks the whole contract of `engine::backend`. Shared
//! by `backend_conformance.rs` (local, memory, object+file) and `s3.rs` (S3 against moto), each
//! of which includes it with `#[path = "common/conformance.rs"] mod conformance;`.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use engine::backend::{Backend, BackendErrorKind, FileType, ObjectInfo};

// ---------------------------------------------------------------------------------------------
// helpers

/// A 64-hex-digit name whose first byte is `shard`, distinct for each `n`.
pub fn id_name(shard: u8, n: u32) -> String {
    format!("{shard:02x}{n:062x}")
}

/// Deterministic, distinct test bytes.
pub fn payload(seed: u32, len: usize) -> Bytes {
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

/// The listing of one type, sorted, with every modification time checked against this
/// machine's clock (the storage's clock must be within 10 minutes) and then cleared, so callers
/// compare names and sizes.
pub async fn sorted_list(b: &dyn Backend, t: FileType) -> Vec<ObjectInfo> {
    let mut l = b.list(t).await.expect("list");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as i64;
    for info in &mut l {
        let m = info
            .modified
            .unwrap_or_else(|| panic!("{t:?} {} has no modification time", info.name));
        assert!(
            (m - now).abs() < 600_000_000_000,
            "{t:?} {}: modified {m} is far from now {now}",
            info.name
        );
        let stat = b
            .stat(t, &info.name)
            .await
            .expect("stat")
            .unwrap_or_else(|| panic!("{t:?} {} is listed but stat finds nothing", info.name));
        assert_eq!((stat.size, stat.modified.is_some()), (info.size, true));
        info.modified = None;
    }
    l.sort();
    l
}

// ---------------------------------------------------------------------------------------------
// the suite

/// The whole [`Backend`] contract, on an empty repository.
pub async fn conformance(b: Arc<dyn Backend>) {
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

/// The contract less create-only writes, for a server that ignores them (Garage 2.5 overwrites
/// on `If-None-Match: *`): there cairn still backs up and restores, and prune refuses to run.
pub async fn conformance_without_create_only(b: Arc<dyn Backend>) {
    for t in FileType::ALL {
        assert!(b.list(t).await.expect("list empty").is_empty(), "{t:?}");
    }
    round_trip_every_type(&*b).await;
    missing_objects(&*b).await;
    ranges(&*b).await;
    listing(&*b).await;
    deleting(&*b).await;
    invalid_names(&*b).await;
    concurrent_distinct_puts(b.clone()).await;
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
    for (i, t) in [
        FileType::Key,
        FileType::Index,
        FileType::Snapshot,
        FileType::Plan,
        FileType::Lease,
    ]
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
            modified: None,
        })
        .collect();
    assert_eq!(listed, expected);

    for t in [
        FileType::Key,
        FileType::Index,
        FileType::Snapshot,
        FileType::Plan,
        FileType::Lease,
    ] {
        let expected: Vec<ObjectInfo> = others
            .iter()
            .filter(|((dir, _), _)| *dir == t.dir())
            .map(|((_, name), size)| ObjectInfo {
                name: name.clone(),
                size: *size,
                modified: None,
            })
            .collect();
        assert_eq!(sorted_list(b, t).await, expected, "{t:?}");
    }
    assert_eq!(
        sorted_list(b, FileType::Config).await,
        vec![ObjectInfo {
            name: "config".into(),
            size: 33,
            modified: None,
        }]
    );

    for name in packs.keys() {
        b.delete(FileType::Pack, name).await.expect("delete pack");
    }
    for (dir, name) in others.keys() {
        let t = [
            FileType::Key,
            FileType::Index,
            FileType::Snapshot,
            FileType::Plan,
            FileType::Lease,
        ]
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

/// A pack larger than [`engine::backend::object_store::MULTIPART_THRESHOLD`], which object stores
/// upload in parts: it reads back whole and in ranges that cross part boundaries, lists and
/// stats with its size, and a second writer of the same (content-named) pack does no harm.
pub async fn large_pack(b: &dyn Backend) {
    use engine::backend::object_store::{MULTIPART_THRESHOLD, PART_SIZE};
    let len = MULTIPART_THRESHOLD + PART_SIZE / 2 + 17;
    let name = id_name(0x7e, 9);
    let data = payload(77, len);
    b.put(FileType::Pack, &name, data.clone())
        .await
        .expect("put a large pack");
    let back = b.get(FileType::Pack, &name).await.expect("get");
    assert!(back == data, "the large pack reads back different bytes");
    for offset in [0, PART_SIZE - 5, 2 * PART_SIZE - 1, len - 10] {
        let got = b
            .get_range(FileType::Pack, &name, offset as u64, 10)
            .await
            .expect("range");
        assert_eq!(&got[..], &data[offset..offset + 10], "range at {offset}");
    }
    assert_eq!(
        b.exists(FileType::Pack, &name).await.expect("exists"),
        Some(len as u64)
    );
    let listed = b.list(FileType::Pack).await.expect("list");
    assert!(
        listed
            .iter()
            .any(|o| o.name == name && o.size == len as u64),
        "{listed:?}"
    );
    match b.put(FileType::Pack, &name, data.clone()).await {
        Ok(()) => {}
        Err(e) => assert_eq!(e.kind(), BackendErrorKind::AlreadyExists, "{e}"),
    }
    assert!(b.get(FileType::Pack, &name).await.expect("get") == data);
    b.delete(FileType::Pack, &name).await.expect("delete");
}
