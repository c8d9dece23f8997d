//! Golden test vectors (SPEC §15): every object kind built from fixed inputs, compared byte for
//! byte with `tests/golden/v1/`, then decoded again with field values checked, so that format
//! version 1 stays readable forever.
//!
//! Regenerate only for a new format version: `CAIRN_UPDATE_GOLDEN=1 cargo nextest run -p
//! cairn-repo-format --test vectors`.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed test

use std::path::PathBuf;

use repo_format::*;

// ---- the fixed inputs of SPEC §15 ----

const ENC_KEY: [u8; 32] = [0x11; 32];
const ID_KEY: [u8; 32] = [0x22; 32];
const REPO_ID: Id = Id([0x33; 32]);
const CHUNKER_SEED: u64 = 0x0123_4567_89ab_cdef;
/// Every envelope of the vectors uses this salt. Real envelopes never share one.
const NONCE_SALT: [u8; 16] = [0x44; 16];
const KDF_SALT: [u8; 32] = [0x55; 32];
const PASSWORD: &[u8] = b"password";
const CREATED: i64 = 1_700_000_000;

fn master() -> MasterKey {
    MasterKey {
        enc_key: ENC_KEY,
        id_key: ID_KEY,
        chunker_seed: CHUNKER_SEED,
    }
}

fn keys() -> RepoKeys {
    RepoKeys::new(REPO_ID, master())
}

/// The second blob of the pack: 4 KiB of text, which zstd compresses.
fn text_blob() -> Vec<u8> {
    b"cairn ".iter().copied().cycle().take(4096).collect()
}

/// A deterministic pseudo-random buffer: xorshift64, low byte of each step.
fn xorshift_bytes(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn node(name: &[u8], kind: NodeKind, size: u64) -> Node {
    Node {
        name: name.to_vec(),
        kind,
        mode: 0o644,
        uid: 1000,
        gid: 1000,
        mtime: Timestamp {
            sec: CREATED,
            nsec: 123_456_789,
        },
        ctime: Timestamp {
            sec: CREATED + 1,
            nsec: 0,
        },
        inode: 4242,
        device: 66,
        nlink: 1,
        size,
    }
}

fn tree() -> Tree {
    let k = keys();
    Tree {
        nodes: vec![
            node(
                b"hello.txt",
                NodeKind::File {
                    content: Content::Direct(vec![k.blob_id(b"hello")]),
                },
                5,
            ),
            node(
                b"link",
                NodeKind::Symlink {
                    target: b"hello.txt".to_vec(),
                },
                0,
            ),
            node(
                b"sub",
                NodeKind::Dir {
                    subtree: k.blob_id(&Tree::default().encode().unwrap()),
                },
                0,
            ),
        ],
    }
}

fn content_list() -> ContentList {
    let k = keys();
    ContentList {
        ids: vec![k.blob_id(b"hello"), k.blob_id(&text_blob())],
    }
}

fn snapshot() -> Snapshot {
    Snapshot {
        time_ns: CREATED * 1_000_000_000,
        utc_offset: 3600,
        tree: keys().blob_id(&tree().encode().unwrap()),
        paths: vec![b"/data".to_vec()],
        hostname: "host".into(),
        username: "user".into(),
        tags: vec!["daily".into(), "test".into()],
        parent: None,
        summary: Some(Summary {
            start_ns: CREATED * 1_000_000_000,
            end_ns: CREATED * 1_000_000_000 + 2_500_000_000,
            files_new: 1,
            dirs: 2,
            bytes_read: 4101,
            total_bytes: 4101,
            blobs_added: 4,
            data_added_raw: 4101,
            data_added_stored: 200,
            total_files: 1,
            ..Summary::default()
        }),
        status: SnapshotStatus::Complete,
        chunker: Some(ChunkerProfile::file()),
        program: "cairn 0.1.0".into(),
        original: None,
        protected: false,
        failure: None,
        store: None,
        copied_from: None,
    }
}

fn pack() -> FinishedPack {
    let k = keys();
    let mut w = PackWriter::new();
    for data in [b"hello".to_vec(), text_blob()] {
        w.add(seal_blob(
            &k,
            BlobType::Data,
            k.blob_id(&data),
            &data,
            3,
            NONCE_SALT,
        ));
    }
    w.finish(&k, NONCE_SALT).unwrap()
}

/// The same two blobs as one compression group (SPEC §7).
fn pack_group() -> FinishedPack {
    let k = keys();
    let (hello, text) = (b"hello".to_vec(), text_blob());
    let blobs = [
        (k.blob_id(&hello), hello.as_slice()),
        (k.blob_id(&text), text.as_slice()),
    ];
    let mut w = PackWriter::new();
    w.add_group(seal_group(&k, BlobType::Data, &blobs, 3, NONCE_SALT).unwrap());
    w.finish(&k, NONCE_SALT).unwrap()
}

fn index() -> IndexFile {
    index_of(pack())
}

/// An index file naming the one pack `p`.
fn index_of(p: FinishedPack) -> IndexFile {
    IndexFile {
        supersedes: vec![],
        packs: vec![IndexPack {
            id: p.id,
            entries: p.entries,
            bases: p.bases,
        }],
    }
}

/// The base of the `pack_based_group` vector: `hello` and the 4096-byte text blob.
fn based_base() -> Vec<Vec<u8>> {
    vec![b"hello".to_vec(), text_blob()]
}

/// Its members: the text blob with byte 100 set to `X`, and `hello, cairn`.
fn based_members() -> Vec<Vec<u8>> {
    let mut edited = text_blob();
    edited[100] = b'X';
    vec![edited, b"hello, cairn".to_vec()]
}

/// The members as one based compression group on that base (SPEC §7).
fn pack_based_group() -> FinishedPack {
    let k = keys();
    let (members, base) = (based_members(), based_base());
    let m: Vec<(BlobId, &[u8])> = members.iter().map(|d| (k.blob_id(d), &d[..])).collect();
    let b: Vec<(BlobId, &[u8])> = base.iter().map(|d| (k.blob_id(d), &d[..])).collect();
    let mut w = PackWriter::new();
    w.add_group(seal_based_group(&k, &m, &b, 3, NONCE_SALT).unwrap());
    w.finish(&k, NONCE_SALT).unwrap()
}

/// A plan deleting the golden pack, written under lease 1, naming the golden index file.
fn plan() -> Plan {
    let k = keys();
    let mut packs = vec![pack().id, PackId(object_id(b"another pack"))];
    packs.sort();
    Plan {
        created_ns: CREATED * 1_000_000_000,
        lease: 1,
        packs,
        hostname: "host".into(),
        index_files: vec![IndexId(object_id(
            &index().encode(&k, 3, NONCE_SALT).unwrap(),
        ))],
    }
}

fn lease() -> Lease {
    Lease {
        number: 1,
        holder: [0x66; 16],
        state: LeaseState::Held,
        created_ns: CREATED * 1_000_000_000,
        ttl_secs: 3600,
        hostname: "host".into(),
        pid: 4242,
    }
}

// ---- golden file handling ----

fn golden_path(name: &str) -> PathBuf {
    // Cargo and nextest set it when they run the test: a binary built in another clone that
    // shares the target directory (CI's fresh clones do) still reads this clone's files.
    let dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    dir.join("tests/golden/v1").join(name)
}

fn updating() -> bool {
    std::env::var_os("CAIRN_UPDATE_GOLDEN").is_some_and(|v| v == "1")
}

/// Hex, 32 bytes per line.
fn to_hex_lines(bytes: &[u8]) -> String {
    bytes.chunks(32).map(|c| hex::encode(c) + "\n").collect()
}

/// Compares `actual` with the golden file (or writes it when updating).
fn golden_text(name: &str, actual: &str) {
    let path = golden_path(name);
    if updating() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run with CAIRN_UPDATE_GOLDEN=1 to create it",
            path.display()
        )
    });
    assert!(
        expected == actual,
        "{name} changed: the bytes of format version 1 must not change (SPEC §15).\nexpected:\n{expected}\nactual:\n{actual}"
    );
}

fn golden(name: &str, actual: &[u8]) -> Vec<u8> {
    golden_text(&format!("{name}.hex"), &to_hex_lines(actual));
    read_golden(name)
}

/// The bytes of `<name>.hex`.
fn read_golden(name: &str) -> Vec<u8> {
    let text = std::fs::read_to_string(golden_path(&format!("{name}.hex"))).unwrap();
    hex::decode(text.split_whitespace().collect::<String>()).unwrap()
}

// ---- the vectors ----

#[test]
fn small_vectors() {
    let k = keys();
    let hello_id = golden("blob_id_hello", &k.blob_id(b"hello").0.0);
    assert_eq!(
        BlobId(Id(hello_id.try_into().unwrap())),
        k.blob_id(b"hello")
    );
    let aad_bytes = golden(
        "aad_data_blob_hello",
        &aad(ObjectType::DataBlob, &REPO_ID, &k.blob_id(b"hello").0),
    );
    assert_eq!(&aad_bytes[..7], b"CAIRN\x01\x03");
    let env = golden(
        "envelope_hello",
        &seal(&ENC_KEY, &aad_bytes, NONCE_SALT, b"hello"),
    );
    assert_eq!(
        open(&ENC_KEY, &aad_bytes, &env, "envelope").unwrap(),
        b"hello"
    );
    assert_eq!(env.len(), 5 + 32);
    let mk = golden("master_key", &master().encode());
    assert_eq!(MasterKey::decode(&mk).unwrap(), master());
    assert_eq!(
        golden("object_id_empty", &object_id(b"").0),
        blake3::hash(b"").as_bytes()
    );
}

#[test]
fn key_file() {
    let bytes = KeyFile::create(
        &REPO_ID,
        &master(),
        PASSWORD,
        KdfParams::TEST,
        KDF_SALT,
        NONCE_SALT,
        CREATED,
        "host",
        "user",
    )
    .unwrap();
    let bytes = golden("key_file", &bytes);
    let kf = KeyFile::decode(&bytes).unwrap();
    assert_eq!(kf.params, KdfParams::TEST);
    assert_eq!(kf.kdf_salt, KDF_SALT);
    assert_eq!(
        (kf.created, kf.hostname.as_str(), kf.username.as_str()),
        (CREATED, "host", "user")
    );
    assert_eq!(kf.open(&REPO_ID, PASSWORD).unwrap(), master());
    assert!(matches!(
        kf.open(&REPO_ID, b"wrong"),
        Err(FormatError::AuthenticationFailed { .. })
    ));
}

#[test]
fn config() {
    let c = Config::new(REPO_ID, CREATED);
    let body = golden("config_body", &c.encode_body());
    assert_eq!(Config::decode_body(REPO_ID, &body).unwrap(), c);
    let bytes = golden("config", &c.encode(&keys(), NONCE_SALT).unwrap());
    assert_eq!(Config::peek_repo_id(&bytes).unwrap(), REPO_ID);
    let back = Config::decode(&bytes, &keys()).unwrap();
    assert_eq!(back.created, CREATED);
    assert_eq!(back.prune_grace_secs, 43_200);
    assert_eq!(back.compression_level, 3);
    assert_eq!(
        (back.data_pack_size, back.tree_pack_size),
        (16 << 20, 4 << 20)
    );
    assert_eq!(back.profile("redis").unwrap().params, ChunkerParams::REDIS);
    assert_eq!(
        back.profile("file").unwrap().params,
        ChunkerParams {
            min: 256 << 10,
            avg: 1 << 20,
            max: 8 << 20
        }
    );
    assert_eq!(
        back.profile("stream").unwrap().params,
        ChunkerParams {
            min: 16 << 10,
            avg: 64 << 10,
            max: 256 << 10
        }
    );
    assert_eq!(
        back.profile("redis").unwrap().params,
        ChunkerParams {
            min: 16 << 10,
            avg: 64 << 10,
            max: 256 << 10
        }
    );
}

#[test]
fn pack_and_index() {
    let k = keys();
    let p = pack();
    let bytes = golden("pack", &p.bytes);
    assert_eq!(object_id(&bytes), p.id.0);
    let plain: Vec<PackEntry> = p.entries.iter().map(IndexEntry::pack_entry).collect();
    golden("pack_header_plain", &encode_header_plain(&plain, &[]));
    let len = bytes.len();
    let hl = header_len(&bytes[len - 4..].try_into().unwrap(), len as u64).unwrap() as usize;
    let entries = decode_header(&k, &bytes[len - 4 - hl..len - 4], len as u64)
        .unwrap()
        .entries;
    assert_eq!(entries.len(), 2);
    assert_eq!(
        (
            entries[0].compression,
            entries[0].offset,
            entries[0].raw_len
        ),
        (Compression::Raw, 0, 5)
    );
    assert_eq!(
        (entries[1].compression, entries[1].raw_len),
        (Compression::Zstd, 4096)
    );
    for (e, data) in entries.iter().zip([b"hello".to_vec(), text_blob()]) {
        assert_eq!(e.blob_type, BlobType::Data);
        assert_eq!(
            open_blob(
                &k,
                e,
                &bytes[e.offset as usize..(e.offset + e.stored_len) as usize]
            )
            .unwrap(),
            data
        );
    }

    let idx = index();
    let body = golden("index_body", &idx.encode_body().unwrap());
    assert_eq!(IndexFile::decode_body(&body).unwrap(), idx);
    let bytes = golden("index", &idx.encode(&k, 3, NONCE_SALT).unwrap());
    let back = IndexFile::decode(&k, &bytes).unwrap();
    assert_eq!(back.packs[0].id, PackId(object_id(&read_golden("pack"))));
    assert_eq!(back.packs[0].entries, entries);
}

/// Compression, offset, plaintext length and group offset of each entry.
fn group_fields(entries: &[IndexEntry]) -> Vec<(Compression, u32, u32, u32)> {
    entries
        .iter()
        .map(|e| (e.compression, e.offset, e.raw_len, e.group_offset))
        .collect()
}

#[test]
fn pack_group_and_its_index() {
    let k = keys();
    let p = pack_group();
    let bytes = golden("pack_group", &p.bytes);
    assert_eq!(object_id(&bytes), p.id.0);
    let entries = decode_pack_header(&k, &bytes).unwrap().entries;
    assert_eq!(
        group_fields(&entries),
        vec![
            (Compression::Group, 0, 5, 0),
            (Compression::Group, 0, 4096, 5)
        ]
    );
    assert_eq!(entries[0].stored_len, entries[1].stored_len);
    // Header entries: the second member carries stored_len 0.
    let plain: Vec<PackEntry> = entries.iter().map(IndexEntry::pack_entry).collect();
    assert_eq!(plain[1].stored_len, 0);
    let group = &bytes[..entries[0].stored_len as usize];
    for (e, data) in entries.iter().zip([b"hello".to_vec(), text_blob()]) {
        assert_eq!(open_blob(&k, e, group).unwrap(), data);
    }
    let idx = index_of(p);
    let body = golden("index_group_body", &idx.encode_body().unwrap());
    assert_eq!(
        IndexFile::decode_body(&body).unwrap().packs[0].entries,
        entries
    );
}

#[test]
fn pack_based_group_and_its_index() {
    let k = keys();
    let p = pack_based_group();
    let bytes = golden("pack_based_group", &p.bytes);
    assert_eq!(object_id(&bytes), p.id.0);
    let header = decode_pack_header(&k, &bytes).unwrap();
    assert_eq!(
        group_fields(&header.entries),
        vec![
            (Compression::Based, 0, 4096, 0),
            (Compression::Based, 0, 12, 4096)
        ]
    );
    let base = based_base();
    let ids: Vec<BlobId> = base.iter().map(|b| k.blob_id(b)).collect();
    assert_eq!(header.bases, vec![GroupBase { offset: 0, ids }]);
    let e = &header.entries[0];
    let envelope = &bytes[..e.stored_len as usize];
    assert!(
        open_group(&k, e, envelope).is_err(),
        "a based group needs its base"
    );
    let group = open_based_group(&k, e, envelope, &base.concat()).unwrap();
    for (e, data) in header.entries.iter().zip(based_members()) {
        assert_eq!(blob_in_group(&k, e, &group).unwrap(), data);
    }
    let idx = index_of(p);
    let body = golden("index_based_body", &idx.encode_body().unwrap());
    let back = IndexFile::decode_body(&body).unwrap();
    assert_eq!(back.packs[0].entries, header.entries);
    assert_eq!(back.packs[0].bases, header.bases);
}

#[test]
fn tree_and_content_list() {
    let bytes = golden("tree", &tree().encode().unwrap());
    let t = Tree::decode(&bytes).unwrap();
    assert_eq!(t, tree());
    let hello = t.find(b"hello.txt").unwrap();
    assert_eq!(hello.size, 5);
    assert_eq!(
        hello.mtime,
        Timestamp {
            sec: CREATED,
            nsec: 123_456_789
        }
    );
    assert_eq!(
        t.find(b"link").unwrap().kind,
        NodeKind::Symlink {
            target: b"hello.txt".to_vec()
        }
    );
    let bytes = golden("content_list", &content_list().encode().unwrap());
    assert_eq!(
        ContentList::decode(&bytes).unwrap().ids[0],
        keys().blob_id(b"hello")
    );
}

#[test]
fn snapshot_vector() {
    let s = snapshot();
    let body = golden("snapshot_body", &s.encode_body().unwrap());
    assert_eq!(Snapshot::decode_body(&body).unwrap(), s);
    let bytes = golden("snapshot", &s.encode(&keys(), NONCE_SALT).unwrap());
    let back = Snapshot::decode(&keys(), &bytes).unwrap();
    assert_eq!(back.time_ns, 1_700_000_000_000_000_000);
    assert_eq!(back.tree, keys().blob_id(&read_golden("tree")));
    assert_eq!(back.tags, vec!["daily".to_string(), "test".to_string()]);
    assert_eq!(
        back.summary.unwrap().end_ns - back.summary.unwrap().start_ns,
        2_500_000_000
    );
    assert_eq!(back.chunker.unwrap().name, "file");
    assert_eq!(back.status, SnapshotStatus::Complete);
}

/// A snapshot written by `cairn copy`: the `snapshot` vector plus tag 0x8000 `copied_from`
/// (the id of the `snapshot` vector's stored bytes).
#[test]
fn snapshot_copied_vector() {
    let source = object_id(&read_golden("snapshot"));
    let s = Snapshot {
        copied_from: Some(SnapshotId(source)),
        ..snapshot()
    };
    let body = golden("snapshot_copied_body", &s.encode_body().unwrap());
    assert_eq!(Snapshot::decode_body(&body).unwrap(), s);
    // The same bytes as the plain vector, then the optional tag.
    let plain = read_golden("snapshot_body");
    assert_eq!(body[..plain.len()], plain[..]);
    assert_eq!(
        body[plain.len()..plain.len() + 6],
        [0x00, 0x80, 32, 0, 0, 0]
    );
}

/// A failed snapshot of a cairn.toml store: the `snapshot` vector with status failed (tag 9),
/// tag 14 `failure` and tag 15 `store`.
#[test]
fn snapshot_failed_vector() {
    let s = Snapshot {
        status: SnapshotStatus::Failed,
        failure: Some("exit status 1; stderr: pg_dump: error: lost connection".into()),
        store: Some("postgres".into()),
        ..snapshot()
    };
    let body = golden("snapshot_failed_body", &s.encode_body().unwrap());
    let back = Snapshot::decode_body(&body).unwrap();
    assert_eq!(back, s);
    assert_eq!(back.status, SnapshotStatus::Failed);
    assert_eq!(back.store.as_deref(), Some("postgres"));
    // Tags 14 and 15 are the last two fields.
    let store_field = [&[15u8, 0, 8, 0, 0, 0][..], b"postgres"].concat();
    assert_eq!(body[body.len() - store_field.len()..], store_field[..]);
}

#[test]
fn plan_vector() {
    let p = plan();
    let body = golden("plan_body", &p.encode_body().unwrap());
    assert_eq!(Plan::decode_body(&body).unwrap(), p);
    let bytes = golden("plan", &p.encode(&keys(), NONCE_SALT).unwrap());
    let back = Plan::decode(&keys(), &bytes).unwrap();
    assert_eq!(back.created_ns, 1_700_000_000_000_000_000);
    assert_eq!(back.lease, 1);
    assert!(
        back.packs
            .contains(&PackId(object_id(&read_golden("pack"))))
    );
    assert_eq!(
        back.index_files,
        vec![IndexId(object_id(&read_golden("index")))]
    );
    assert_eq!(back.hostname, "host");
}

#[test]
fn lease_vector() {
    let l = lease();
    assert_eq!(lease_name(1), "00000000000000000001");
    let body = golden("lease_body", &l.encode_body().unwrap());
    assert_eq!(Lease::decode_body(&body).unwrap(), l);
    let bytes = golden("lease", &l.encode(&keys(), NONCE_SALT).unwrap());
    let back = Lease::decode(&keys(), &bytes, 1).unwrap();
    assert_eq!(back, l);
    assert!(matches!(
        Lease::decode(&keys(), &bytes, 2),
        Err(FormatError::AuthenticationFailed { .. })
    ));
}

#[test]
fn chunk_cut_points() {
    let data = xorshift_bytes(1 << 20);
    // The `stream` profile of repositories made before its sizes were raised (SPEC §15): the
    // cut points test FastCDC and the seed's gear table, not today's defaults.
    let params = ChunkerParams {
        min: 4 << 10,
        avg: 16 << 10,
        max: 64 << 10,
    };
    let c = Chunker::new(params, CHUNKER_SEED).unwrap();
    let text: String = c
        .chunks(&data)
        .map(|r| format!("{} {}\n", r.start, r.len()))
        .collect();
    golden_text("chunks_stream.txt", &text);
    assert!(text.lines().count() > 30);
}
