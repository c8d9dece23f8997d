use super::*;
use crate::chunker::ChunkerParams;
use crate::crypto::MasterKey;
use crate::id::Id;
use proptest::prelude::*;

fn keys() -> RepoKeys {
    RepoKeys::new(Id([0x33; 32]), MasterKey::from_bytes([8; 72]))
}

fn minimal() -> Snapshot {
    Snapshot {
        time_ns: 1_700_000_000_000_000_000,
        utc_offset: 3600,
        tree: BlobId(Id([1; 32])),
        paths: vec![b"/home/user".to_vec()],
        hostname: "host".into(),
        username: "user".into(),
        tags: vec![],
        parent: None,
        summary: None,
        status: SnapshotStatus::Complete,
        chunker: None,
        program: "cairn 0.1.0".into(),
        original: None,
        protected: false,
        failure: None,
        store: None,
        copied_from: None,
    }
}

fn full() -> Snapshot {
    Snapshot {
        tags: vec!["daily".into(), "work".into()],
        parent: Some(SnapshotId(Id([2; 32]))),
        summary: Some(Summary {
            start_ns: 1,
            end_ns: 2,
            files_new: 3,
            total_files: 13,
            ..Summary::default()
        }),
        status: SnapshotStatus::Failed,
        chunker: Some(ChunkerProfile {
            name: "file".into(),
            params: ChunkerParams::FILE,
        }),
        original: Some(SnapshotId(Id([3; 32]))),
        protected: true,
        failure: Some("exit status 1; stderr: pg_dump: error: connection refused".into()),
        store: Some("postgres".into()),
        copied_from: Some(SnapshotId(Id([4; 32]))),
        ..minimal()
    }
}

#[test]
fn round_trip_and_tags_canonicalized() {
    let k = keys();
    for s in [minimal(), full()] {
        let b = s.encode(&k, [0x44; 16]).unwrap();
        assert_eq!(Snapshot::decode(&k, &b).unwrap(), s);
    }
    let messy = Snapshot {
        tags: vec!["b".into(), "a".into(), "b".into()],
        ..minimal()
    };
    let back = Snapshot::decode_body(&messy.encode_body().unwrap()).unwrap();
    assert_eq!(back.tags, vec!["a".to_string(), "b".to_string()]);
    assert!(
        Snapshot {
            tags: vec![String::new()],
            ..minimal()
        }
        .encode_body()
        .is_err()
    );
}

#[test]
fn status_written_only_when_failed() {
    let body = minimal().encode_body().unwrap();
    let failed = Snapshot {
        status: SnapshotStatus::Failed,
        ..minimal()
    }
    .encode_body()
    .unwrap();
    assert_eq!(failed.len(), body.len() + 7);
    // An explicit "complete" (0) reads as complete; 2 is an error.
    let mut tlv = TlvWriter::new(vec![SNAPSHOT_VERSION], WHAT);
    tlv.field(TAG_TIME, &[0; 12]).unwrap();
    tlv.field(TAG_TREE, &[0; 32]).unwrap();
    tlv.field(TAG_STATUS, &[0]).unwrap();
    let b = tlv.finish();
    assert_eq!(
        Snapshot::decode_body(&b).unwrap().status,
        SnapshotStatus::Complete
    );
    let mut bad = b.clone();
    *bad.last_mut().unwrap() = 2;
    assert!(Snapshot::decode_body(&bad).is_err());
}

#[test]
fn flags_written_only_when_protected() {
    let body = minimal().encode_body().unwrap();
    let protected = Snapshot {
        protected: true,
        ..minimal()
    };
    let pbody = protected.encode_body().unwrap();
    // Tag 13 is the last field: tag u16, len u32 = 8, value u64 = 1.
    assert_eq!(pbody.len(), body.len() + 6 + 8);
    assert_eq!(
        pbody[body.len()..],
        [13, 0, 8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]
    );
    assert_eq!(Snapshot::decode_body(&pbody).unwrap(), protected);
    let with_flags = |flags: u64| {
        let mut b = body.clone();
        b.extend_from_slice(&[13, 0, 8, 0, 0, 0]);
        b.extend_from_slice(&flags.to_le_bytes());
        Snapshot::decode_body(&b)
    };
    // An explicit zero reads as not protected.
    assert_eq!(with_flags(0).unwrap(), minimal());
    assert_eq!(with_flags(1).unwrap(), protected);
    // Any bit but bit 0 is an error: the flag cannot be understood safely.
    for bad in [2, 3, 1 << 63, u64::MAX] {
        assert!(
            matches!(with_flags(bad), Err(FormatError::Corrupted { .. })),
            "{bad:#x}"
        );
    }
    // Wrong length.
    let mut short = body.clone();
    short.extend_from_slice(&[13, 0, 1, 0, 0, 0, 1]);
    assert!(Snapshot::decode_body(&short).is_err());
}

#[test]
fn copied_from_is_an_optional_tag_written_last() {
    let body = minimal().encode_body().unwrap();
    let copy = Snapshot {
        copied_from: Some(SnapshotId(Id([9; 32]))),
        ..minimal()
    };
    let cbody = copy.encode_body().unwrap();
    // Tag 0x8000 after every critical tag: tag u16, len u32 = 32, the source snapshot's id.
    let mut field = vec![0x00, 0x80, 32, 0, 0, 0];
    field.extend_from_slice(&[9; 32]);
    assert_eq!(cbody[..body.len()], body[..]);
    assert_eq!(cbody[body.len()..], field[..]);
    assert_eq!(Snapshot::decode_body(&cbody).unwrap(), copy);
    // After tag 13 too (tags strictly ascend).
    let both = Snapshot {
        protected: true,
        ..copy.clone()
    };
    assert_eq!(
        Snapshot::decode_body(&both.encode_body().unwrap()).unwrap(),
        both
    );
    // Wrong length.
    let mut short = body.clone();
    short.extend_from_slice(&[0x00, 0x80, 31, 0, 0, 0]);
    short.extend_from_slice(&[9; 31]);
    assert!(matches!(
        Snapshot::decode_body(&short),
        Err(FormatError::Corrupted { .. })
    ));
}

#[test]
fn failure_and_store_are_critical_tags_written_only_when_set() {
    let body = minimal().encode_body().unwrap();
    let failed = Snapshot {
        status: SnapshotStatus::Failed,
        failure: Some("exit 2".into()),
        store: Some("redis".into()),
        ..minimal()
    };
    let fbody = failed.encode_body().unwrap();
    // Tag 9 (status), then tags 14 and 15 after every earlier tag: tag u16, len u32, UTF-8.
    let status = Snapshot {
        status: SnapshotStatus::Failed,
        ..minimal()
    }
    .encode_body()
    .unwrap();
    let mut tail = vec![14, 0, 6, 0, 0, 0];
    tail.extend_from_slice(b"exit 2");
    tail.extend_from_slice(&[15, 0, 5, 0, 0, 0]);
    tail.extend_from_slice(b"redis");
    assert_eq!(fbody[..status.len()], status[..]);
    assert_eq!(fbody[status.len()..], tail[..]);
    assert_eq!(Snapshot::decode_body(&fbody).unwrap(), failed);
    // Before tag 0x8000 (tags strictly ascend).
    let copy = Snapshot {
        copied_from: Some(SnapshotId(Id([9; 32]))),
        ..failed.clone()
    };
    assert_eq!(
        Snapshot::decode_body(&copy.encode_body().unwrap()).unwrap(),
        copy
    );
    // A failure may be empty; a store may not.
    let empty_failure = Snapshot {
        failure: Some(String::new()),
        ..minimal()
    };
    assert_eq!(
        Snapshot::decode_body(&empty_failure.encode_body().unwrap()).unwrap(),
        empty_failure
    );
    assert!(
        Snapshot {
            store: Some(String::new()),
            ..minimal()
        }
        .encode_body()
        .is_err()
    );
    let with = |tag: u8, value: &[u8]| {
        let mut b = body.clone();
        b.extend_from_slice(&[tag, 0]);
        b.extend_from_slice(&u32::try_from(value.len()).unwrap().to_le_bytes());
        b.extend_from_slice(value);
        Snapshot::decode_body(&b)
    };
    assert!(matches!(with(15, b""), Err(FormatError::Corrupted { .. })));
    assert!(matches!(
        with(14, &[0xff, 0xfe]),
        Err(FormatError::Corrupted { .. })
    ));
    assert!(matches!(
        with(15, &[0xc3]),
        Err(FormatError::Corrupted { .. })
    ));
    assert_eq!(with(15, b"n8n").unwrap().store.as_deref(), Some("n8n"));
}

#[test]
fn tlv_rules() {
    let body = minimal().encode_body().unwrap();
    let mut opt = body.clone();
    opt.extend_from_slice(&[0x34, 0x92, 2, 0, 0, 0, 1, 2]);
    assert_eq!(Snapshot::decode_body(&opt).unwrap(), minimal());
    let mut crit = body.clone();
    crit.extend_from_slice(&[16, 0, 0, 0, 0, 0]);
    assert_eq!(
        Snapshot::decode_body(&crit),
        Err(FormatError::UnknownCriticalTag {
            what: WHAT,
            tag: 16
        })
    );
    // Only the time: the tree is missing.
    assert!(Snapshot::decode_body(&body[..1 + 6 + 12]).is_err());
    // Wrong length for the time field.
    let mut short = body.clone();
    short[3] = 11;
    assert!(Snapshot::decode_body(&short).is_err());
    // Unsorted tags inside the tags field.
    let mut tlv = TlvWriter::new(vec![SNAPSHOT_VERSION], WHAT);
    tlv.field(TAG_TIME, &[0; 12]).unwrap();
    tlv.field(TAG_TREE, &[0; 32]).unwrap();
    tlv.field(TAG_TAGS, &[2, 0, 0, 0, 1, 0, b'b', 1, 0, b'a'])
        .unwrap();
    assert!(Snapshot::decode_body(&tlv.finish()).is_err());
    let mut v2 = body.clone();
    v2[0] = 2;
    assert!(matches!(
        Snapshot::decode_body(&v2),
        Err(FormatError::UnsupportedVersion { .. })
    ));
}

#[test]
fn tampering_wrong_repo_truncation() {
    let k = keys();
    let b = full().encode(&k, [0x44; 16]).unwrap();
    for i in 0..b.len() {
        let mut bad = b.clone();
        bad[i] ^= 0x02;
        assert!(Snapshot::decode(&k, &bad).is_err(), "byte {i}");
    }
    let other = RepoKeys::new(Id([0x34; 32]), k.master().clone());
    assert!(matches!(
        Snapshot::decode(&other, &b),
        Err(FormatError::AuthenticationFailed { .. })
    ));
    assert!(matches!(
        Snapshot::decode(&k, &b[..10]),
        Err(FormatError::Truncated { .. })
    ));
    let body = full().encode_body().unwrap();
    // A body cut at a field boundary is a valid, shorter record (the envelope is what detects
    // truncation); cut anywhere else it is an error.
    for n in 0..body.len() {
        if let Ok(s) = Snapshot::decode_body(&body[..n]) {
            assert_ne!(s, full(), "{n}");
        }
    }
}

fn arb_snapshot() -> impl Strategy<Value = Snapshot> {
    (
        (any::<i64>(), any::<i32>(), any::<[u8; 32]>()),
        proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..30), 0..5),
        ("\\PC{0,20}", "\\PC{0,20}", "\\PC{0,20}"),
        proptest::collection::btree_set("\\PC{1,10}", 0..5),
        (
            proptest::option::of(any::<[u8; 32]>()),
            proptest::option::of(any::<[u8; 32]>()),
            proptest::option::of(any::<[u8; 32]>()),
        ),
        proptest::option::of(any::<[u64; 13]>()),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        (
            proptest::option::of("\\PC{0,40}"),
            proptest::option::of("\\PC{1,20}"),
        ),
    )
        .prop_map(
            |(
                (time_ns, utc_offset, tree),
                paths,
                (hostname, username, program),
                tags,
                (parent, original, copied_from),
                summary,
                failed,
                chunker,
                protected,
                (failure, store),
            )| {
                Snapshot {
                    time_ns,
                    utc_offset,
                    tree: BlobId(Id(tree)),
                    paths,
                    hostname,
                    username,
                    tags: tags.into_iter().collect(),
                    parent: parent.map(|p| SnapshotId(Id(p))),
                    original: original.map(|p| SnapshotId(Id(p))),
                    copied_from: copied_from.map(|p| SnapshotId(Id(p))),
                    summary: summary.map(|v| Summary {
                        start_ns: v[0] as i64,
                        end_ns: v[1] as i64,
                        files_new: v[2],
                        files_changed: v[3],
                        files_unmodified: v[4],
                        dirs: v[5],
                        bytes_read: v[6],
                        total_bytes: v[7],
                        blobs_added: v[8],
                        data_added_raw: v[9],
                        data_added_stored: v[10],
                        warnings: v[11],
                        total_files: v[12],
                    }),
                    status: if failed {
                        SnapshotStatus::Failed
                    } else {
                        SnapshotStatus::Complete
                    },
                    chunker: chunker.then(ChunkerProfile::stream),
                    program,
                    protected,
                    failure,
                    store,
                }
            },
        )
}

proptest! {
    #[test]
    fn round_trip(s in arb_snapshot(), salt: [u8; 16]) {
        let k = keys();
        prop_assert_eq!(Snapshot::decode(&k, &s.encode(&k, salt).unwrap()).unwrap(), s.clone());
        prop_assert_eq!(Snapshot::decode_body(&s.encode_body().unwrap()).unwrap(), s);
    }

    #[test]
    fn decode_never_panics(b: Vec<u8>) {
        let _ = Snapshot::decode_body(&b);
        let mut v = vec![SNAPSHOT_VERSION];
        v.extend_from_slice(&b);
        let _ = Snapshot::decode_body(&v);
        let _ = Snapshot::decode(&keys(), &b);
    }
}
