use super::*;
use crate::crypto::MasterKey;
use proptest::prelude::*;

fn keys() -> RepoKeys {
    RepoKeys::new(Id([0x33; 32]), MasterKey::from_bytes([8; 72]))
}

fn pack(n: u8) -> PackId {
    PackId(Id([n; 32]))
}

fn plan() -> Plan {
    Plan {
        created_ns: 1_700_000_000_000_000_000,
        lease: 7,
        packs: vec![pack(1), pack(2), pack(9)],
        hostname: "host".into(),
        index_files: vec![IndexId(Id([4; 32]))],
    }
}

/// A body with the given fields (after the version byte), for decoder tests.
fn body(fields: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut w = TlvWriter::new(vec![PLAN_VERSION], WHAT);
    for (tag, v) in fields {
        w.field(*tag, v).unwrap();
    }
    w.finish()
}

fn ids(ids: &[u8]) -> Vec<u8> {
    let mut v = (ids.len() as u32).to_le_bytes().to_vec();
    for &i in ids {
        v.extend_from_slice(&[i; 32]);
    }
    v
}

fn required() -> Vec<(u16, Vec<u8>)> {
    vec![
        (TAG_CREATED, 5i64.to_le_bytes().to_vec()),
        (TAG_LEASE, 3u64.to_le_bytes().to_vec()),
        (TAG_PACKS, ids(&[1, 2])),
    ]
}

#[test]
fn round_trip() {
    let k = keys();
    let minimal = Plan {
        hostname: String::new(),
        index_files: vec![],
        ..plan()
    };
    for p in [plan(), minimal] {
        let b = p.encode(&k, [0x44; 16]).unwrap();
        assert_eq!(Plan::decode(&k, &b).unwrap(), p);
        assert_eq!(Plan::decode_body(&p.encode_body().unwrap()).unwrap(), p);
    }
}

#[test]
fn compressed_when_smaller() {
    let k = keys();
    let many = Plan {
        packs: (0..=255).map(pack).collect(),
        ..plan()
    };
    let b = many.encode(&k, [1; 16]).unwrap();
    let plain = k.open_object(ObjectType::Plan, &b, WHAT).unwrap();
    assert_eq!(plain[0], Compression::Zstd as u8);
    assert!(b.len() < many.encode_body().unwrap().len());
    assert_eq!(Plan::decode(&k, &b).unwrap(), many);
    // Ids that look random do not compress: stored raw.
    let mut random = Plan {
        packs: (0..3u8)
            .map(|i| PackId(crate::id::object_id(&[i])))
            .collect(),
        index_files: vec![],
        ..plan()
    };
    random.canonicalize();
    let b = random.encode(&k, [1; 16]).unwrap();
    let plain = k.open_object(ObjectType::Plan, &b, WHAT).unwrap();
    assert_eq!(plain[0], Compression::Raw as u8);
    assert_eq!(plain[1..], random.encode_body().unwrap());
    assert_eq!(Plan::decode(&k, &b).unwrap(), random);
}

#[test]
fn encode_rejects_non_canonical_and_canonicalize_fixes_it() {
    let bad = [
        Plan {
            packs: vec![],
            ..plan()
        },
        Plan {
            packs: vec![pack(2), pack(1)],
            ..plan()
        },
        Plan {
            packs: vec![pack(1), pack(1)],
            ..plan()
        },
        Plan {
            index_files: vec![IndexId(Id([5; 32])), IndexId(Id([4; 32]))],
            ..plan()
        },
        Plan {
            index_files: vec![IndexId(Id([5; 32])), IndexId(Id([5; 32]))],
            ..plan()
        },
    ];
    for p in bad {
        assert!(
            matches!(
                p.encode(&keys(), [0; 16]),
                Err(FormatError::Corrupted { .. })
            ),
            "{p:?}"
        );
        let mut c = p.clone();
        c.canonicalize();
        if !c.packs.is_empty() {
            assert_eq!(
                Plan::decode(&keys(), &c.encode(&keys(), [0; 16]).unwrap()).unwrap(),
                c
            );
        }
    }
    let mut p = Plan {
        packs: vec![pack(3), pack(1), pack(3)],
        index_files: vec![IndexId(Id([2; 32])), IndexId(Id([1; 32]))],
        ..plan()
    };
    p.canonicalize();
    assert_eq!(p.packs, vec![pack(1), pack(3)]);
    assert_eq!(
        p.index_files,
        vec![IndexId(Id([1; 32])), IndexId(Id([2; 32]))]
    );
}

#[test]
fn decode_rejects_non_ascending_and_empty_lists() {
    let ok = Plan::decode_body(&body(&required())).unwrap();
    assert_eq!(
        (ok.created_ns, ok.lease, ok.packs.as_slice()),
        (5, 3, &[pack(1), pack(2)][..])
    );
    // Absent 4 and 5: empty.
    assert!(ok.hostname.is_empty() && ok.index_files.is_empty());
    let with_packs = |v: Vec<u8>| {
        let mut f = required();
        f[2].1 = v;
        Plan::decode_body(&body(&f))
    };
    for bad in [ids(&[2, 1]), ids(&[1, 1]), ids(&[]), ids(&[1, 3, 2])] {
        assert!(
            matches!(with_packs(bad.clone()), Err(FormatError::Corrupted { .. })),
            "{bad:?}"
        );
    }
    // A count that does not match the value's length.
    let mut long = ids(&[1, 2]);
    long.push(0);
    assert!(with_packs(long).is_err());
    let mut short = ids(&[1, 2]);
    short.pop();
    assert!(matches!(
        with_packs(short),
        Err(FormatError::Truncated { .. })
    ));
    let mut huge = ids(&[1]);
    huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        with_packs(huge),
        Err(FormatError::Truncated { .. })
    ));

    let with_index_files = |v: Vec<u8>| {
        let mut f = required();
        f.push((TAG_INDEX_FILES, v));
        Plan::decode_body(&body(&f))
    };
    assert!(with_index_files(ids(&[])).unwrap().index_files.is_empty());
    assert_eq!(with_index_files(ids(&[1, 2])).unwrap().index_files.len(), 2);
    assert!(with_index_files(ids(&[2, 1])).is_err());
    assert!(with_index_files(ids(&[2, 2])).is_err());
}

#[test]
fn decode_rejects_bad_records() {
    // Each required tag missing.
    for i in 0..3 {
        let mut f = required();
        let (tag, _) = f.remove(i);
        assert_eq!(
            Plan::decode_body(&body(&f)),
            Err(FormatError::corrupted(
                WHAT,
                format!("required tag {tag} is missing")
            ))
        );
    }
    // Wrong lengths.
    for i in 0..2 {
        let mut f = required();
        f[i].1.push(0);
        assert!(Plan::decode_body(&body(&f)).is_err());
    }
    // Hostname not UTF-8.
    let mut f = required();
    f.push((TAG_HOSTNAME, vec![0xff]));
    assert!(Plan::decode_body(&body(&f)).is_err());
    // Unknown critical tag, unknown optional tag.
    let mut f = required();
    f.push((6, vec![]));
    assert_eq!(
        Plan::decode_body(&body(&f)),
        Err(FormatError::UnknownCriticalTag { what: WHAT, tag: 6 })
    );
    let mut f = required();
    f.push((0x8000, vec![1, 2]));
    assert!(Plan::decode_body(&body(&f)).is_ok());
    // Version.
    let mut b = body(&required());
    b[0] = 2;
    assert!(matches!(
        Plan::decode_body(&b),
        Err(FormatError::UnsupportedVersion { .. })
    ));
    assert!(matches!(
        Plan::decode_body(&[]),
        Err(FormatError::Truncated { .. })
    ));
}

#[test]
fn tampering_wrong_type_wrong_repo() {
    let k = keys();
    let b = plan().encode(&k, [0x44; 16]).unwrap();
    for i in 0..b.len() {
        let mut bad = b.clone();
        bad[i] ^= 0x10;
        assert!(Plan::decode(&k, &bad).is_err(), "byte {i}");
    }
    let plain = k.open_object(ObjectType::Plan, &b, WHAT).unwrap();
    let as_snapshot = k.seal_object(ObjectType::Snapshot, [0x44; 16], &plain);
    assert_eq!(
        Plan::decode(&k, &as_snapshot),
        Err(FormatError::AuthenticationFailed { what: WHAT })
    );
    let other = RepoKeys::new(Id([0x34; 32]), k.master().clone());
    assert!(matches!(
        Plan::decode(&other, &b),
        Err(FormatError::AuthenticationFailed { .. })
    ));
    assert!(matches!(
        Plan::decode(&k, &b[..20]),
        Err(FormatError::Truncated { .. })
    ));
    // A bad compression byte.
    let mut plain = plain;
    plain[0] = 2;
    assert!(Plan::decode(&k, &k.seal_object(ObjectType::Plan, [0; 16], &plain)).is_err());
}

#[test]
fn body_too_large() {
    // vec![0; n] is zeroed memory the checks never touch.
    let big = vec![0u8; MAX_PLAN_BODY + 1];
    assert!(matches!(
        Plan::decode_body(&big),
        Err(FormatError::OutOfBounds { .. })
    ));
    let big = vec![0u8; 1 + MAX_PLAN_BODY + ENVELOPE_OVERHEAD + 1];
    assert!(matches!(
        Plan::decode(&keys(), &big),
        Err(FormatError::OutOfBounds { .. })
    ));
    // A small zstd frame announcing more than 256 MiB is refused before it is decompressed.
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
    enc.set_pledged_src_size(Some(MAX_PLAN_BODY as u64 + 1))
        .unwrap();
    enc.include_contentsize(true).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..256 {
        std::io::Write::write_all(&mut enc, &zeros).unwrap();
    }
    std::io::Write::write_all(&mut enc, &[0]).unwrap();
    let frame = enc.finish().unwrap();
    assert!(frame.len() < 100_000);
    let mut plain = vec![Compression::Zstd as u8];
    plain.extend_from_slice(&frame);
    let k = keys();
    assert_eq!(
        Plan::decode(&k, &k.seal_object(ObjectType::Plan, [0; 16], &plain)),
        Err(FormatError::OutOfBounds {
            what: WHAT,
            field: "decompressed size",
            value: MAX_PLAN_BODY as u64 + 1
        })
    );
}

fn arb_plan() -> impl Strategy<Value = Plan> {
    (
        any::<i64>(),
        any::<u64>(),
        proptest::collection::btree_set(any::<[u8; 32]>(), 1..20),
        "\\PC{0,20}",
        proptest::collection::btree_set(any::<[u8; 32]>(), 0..5),
    )
        .prop_map(|(created_ns, lease, packs, hostname, index_files)| Plan {
            created_ns,
            lease,
            packs: packs.into_iter().map(|p| PackId(Id(p))).collect(),
            hostname,
            index_files: index_files.into_iter().map(|i| IndexId(Id(i))).collect(),
        })
}

proptest! {
    #[test]
    fn round_trip_prop(p in arb_plan(), salt: [u8; 16]) {
        let k = keys();
        prop_assert_eq!(Plan::decode(&k, &p.encode(&k, salt).unwrap()).unwrap(), p.clone());
        let body = p.encode_body().unwrap();
        prop_assert_eq!(Plan::decode_body(&body).unwrap(), p);
    }

    #[test]
    fn decoded_bodies_are_canonical(b: Vec<u8>) {
        let mut v = vec![PLAN_VERSION];
        v.extend_from_slice(&b);
        if let Ok(p) = Plan::decode_body(&v) {
            prop_assert_eq!(Plan::decode_body(&p.encode_body().unwrap()).unwrap(), p);
        }
    }

    #[test]
    fn decode_never_panics(b: Vec<u8>) {
        let _ = Plan::decode_body(&b);
        let mut v = vec![PLAN_VERSION];
        v.extend_from_slice(&b);
        let _ = Plan::decode_body(&v);
        let _ = Plan::decode(&keys(), &b);
        let k = keys();
        let _ = Plan::decode(&k, &k.seal_object(ObjectType::Plan, [0; 16], &b));
        // After a valid prefix, so that the later tags are reached.
        let mut v = body(&required());
        v.extend_from_slice(&b);
        let _ = Plan::decode_body(&v);
    }
}
