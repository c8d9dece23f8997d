use super::*;
use crate::crypto::MasterKey;
use proptest::prelude::*;

fn keys() -> RepoKeys {
    RepoKeys::new(Id([0x33; 32]), MasterKey::from_bytes([8; 72]))
}

fn lease() -> Lease {
    Lease {
        number: 42,
        holder: [0xaa; 16],
        state: LeaseState::Held,
        created_ns: 1_700_000_000_000_000_000,
        ttl_secs: 3600,
        hostname: "host".into(),
        pid: 4321,
    }
}

fn fields() -> Vec<(u16, Vec<u8>)> {
    vec![
        (TAG_NUMBER, 42u64.to_le_bytes().to_vec()),
        (TAG_HOLDER, vec![0xaa; 16]),
        (TAG_STATE, vec![0]),
        (
            TAG_CREATED,
            1_700_000_000_000_000_000i64.to_le_bytes().to_vec(),
        ),
        (TAG_TTL, 3600u64.to_le_bytes().to_vec()),
        (TAG_HOSTNAME, b"host".to_vec()),
        (TAG_PID, 4321u32.to_le_bytes().to_vec()),
    ]
}

fn body(fields: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut w = TlvWriter::new(vec![LEASE_VERSION], WHAT);
    for (tag, v) in fields {
        w.field(*tag, v).unwrap();
    }
    w.finish()
}

/// Seals a plaintext as lease `n`, bypassing the encoder's checks.
fn seal_as(n: u64, plain: &[u8]) -> Vec<u8> {
    let k = keys();
    seal(
        &k.master().enc_key,
        &aad(ObjectType::Lease, k.repo_id(), &lease_aad_id(n)),
        [0x44; 16],
        plain,
    )
}

#[test]
fn names() {
    assert_eq!(lease_name(0), "00000000000000000000");
    assert_eq!(lease_name(42), "00000000000000000042");
    assert_eq!(lease_name(u64::MAX), "18446744073709551615");
    for n in [0, 1, 42, 1 << 40, u64::MAX] {
        assert_eq!(lease_name(n).len(), 20);
        assert_eq!(parse_lease_name(&lease_name(n)), Some(n));
    }
    assert!(lease_name(9) < lease_name(10));
    for bad in [
        "",
        "42",
        "0000000000000000042",
        "000000000000000000042",
        "99999999999999999999",
        "18446744073709551616",
        "+0000000000000000042",
        "0000000000000000004a",
        " 0000000000000000042",
        "０000000000000000042",
        ".tmp-000000000000000",
    ] {
        assert_eq!(parse_lease_name(bad), None, "{bad:?}");
    }
}

#[test]
fn aad_id_is_number_le_padded() {
    let id = lease_aad_id(0x0102_0304_0506_0708);
    assert_eq!(id.0[..8], [8, 7, 6, 5, 4, 3, 2, 1]);
    assert_eq!(id.0[8..], [0; 24]);
    assert_eq!(lease_aad_id(0), Id::ZERO);
}

#[test]
fn round_trip() {
    let k = keys();
    let released = Lease {
        state: LeaseState::Released,
        hostname: String::new(),
        ..lease()
    };
    for l in [lease(), released] {
        let b = l.encode(&k, [0x44; 16]).unwrap();
        assert_eq!(Lease::decode(&k, &b, l.number).unwrap(), l);
        assert_eq!(Lease::decode_body(&l.encode_body().unwrap()).unwrap(), l);
    }
    assert_eq!(Lease::decode_body(&body(&fields())).unwrap(), lease());
}

#[test]
fn wrong_number_fails() {
    let k = keys();
    let b = lease().encode(&k, [0x44; 16]).unwrap();
    // Copied under another name: the AAD differs.
    for n in [0, 41, 43, 42 + (1 << 32), u64::MAX] {
        assert_eq!(
            Lease::decode(&k, &b, n),
            Err(FormatError::AuthenticationFailed { what: WHAT })
        );
    }
    // Authenticated under 43 but saying 42: a writer's bug, still refused.
    assert!(matches!(
        Lease::decode(&k, &seal_as(43, &lease().encode_body().unwrap()), 43),
        Err(FormatError::Corrupted { .. })
    ));
    // Another object type, another repository, zero id.
    let body = lease().encode_body().unwrap();
    assert!(Lease::decode(&k, &k.seal_object(ObjectType::Lease, [0; 16], &body), 42).is_err());
    assert!(Lease::decode(&k, &k.seal_object(ObjectType::Plan, [0; 16], &body), 42).is_err());
    let other = RepoKeys::new(Id([0x34; 32]), k.master().clone());
    assert!(Lease::decode(&other, &b, 42).is_err());
}

#[test]
fn tampering_and_truncation() {
    let k = keys();
    let b = lease().encode(&k, [0x44; 16]).unwrap();
    for i in 0..b.len() {
        let mut bad = b.clone();
        bad[i] ^= 0x01;
        assert!(Lease::decode(&k, &bad, 42).is_err(), "byte {i}");
    }
    assert!(matches!(
        Lease::decode(&k, &b[..31], 42),
        Err(FormatError::Truncated { .. })
    ));
}

#[test]
fn rejects_unknown_state_and_zero_ttl() {
    for state in [2u8, 255] {
        let mut f = fields();
        f[2].1 = vec![state];
        assert_eq!(
            Lease::decode(&keys(), &seal_as(42, &body(&f)), 42),
            Err(FormatError::corrupted(
                WHAT,
                format!("unknown state {state}")
            ))
        );
    }
    let mut f = fields();
    f[4].1 = 0u64.to_le_bytes().to_vec();
    assert!(matches!(
        Lease::decode_body(&body(&f)),
        Err(FormatError::OutOfBounds { .. })
    ));
    assert!(matches!(
        Lease {
            ttl_secs: 0,
            ..lease()
        }
        .encode(&keys(), [0; 16]),
        Err(FormatError::OutOfBounds { .. })
    ));
}

#[test]
fn rejects_bad_records() {
    // Every tag is required.
    for i in 0..7 {
        let mut f = fields();
        let (tag, _) = f.remove(i);
        assert_eq!(
            Lease::decode_body(&body(&f)),
            Err(FormatError::corrupted(
                WHAT,
                format!("required tag {tag} is missing")
            )),
            "tag {tag}"
        );
    }
    // Wrong lengths for every fixed-size tag.
    for i in [0, 1, 2, 3, 4, 6] {
        let mut f = fields();
        f[i].1.push(0);
        assert!(Lease::decode_body(&body(&f)).is_err(), "tag {}", f[i].0);
        let mut f = fields();
        f[i].1.pop();
        assert!(Lease::decode_body(&body(&f)).is_err(), "tag {}", f[i].0);
    }
    let mut f = fields();
    f[5].1 = vec![0xc3];
    assert!(Lease::decode_body(&body(&f)).is_err());
    // Unknown tags.
    let mut f = fields();
    f.push((8, vec![]));
    assert_eq!(
        Lease::decode_body(&body(&f)),
        Err(FormatError::UnknownCriticalTag { what: WHAT, tag: 8 })
    );
    let mut f = fields();
    f.push((0xffff, vec![9]));
    assert_eq!(Lease::decode_body(&body(&f)).unwrap(), lease());
    // Out of order.
    let mut f = fields();
    f.swap(0, 1);
    let mut swapped = vec![LEASE_VERSION];
    for (tag, v) in &f {
        swapped.extend_from_slice(&tag.to_le_bytes());
        swapped.extend_from_slice(&(v.len() as u32).to_le_bytes());
        swapped.extend_from_slice(v);
    }
    assert!(matches!(
        Lease::decode_body(&swapped),
        Err(FormatError::Corrupted { .. })
    ));
    let mut b = body(&fields());
    b[0] = 0;
    assert!(matches!(
        Lease::decode_body(&b),
        Err(FormatError::UnsupportedVersion { .. })
    ));
}

#[test]
fn body_too_large() {
    let long = Lease {
        hostname: "h".repeat(MAX_LEASE_BODY),
        ..lease()
    };
    assert!(matches!(
        long.encode(&keys(), [0; 16]),
        Err(FormatError::OutOfBounds { .. })
    ));
    // The largest host name that fits.
    let fixed = lease().encode_body().unwrap().len() - 4;
    let fits = Lease {
        hostname: "h".repeat(MAX_LEASE_BODY - fixed),
        ..lease()
    };
    let b = fits.encode(&keys(), [0; 16]).unwrap();
    assert_eq!(b.len(), MAX_LEASE_BODY + 32);
    assert_eq!(Lease::decode(&keys(), &b, 42).unwrap(), fits);
    // One byte more, sealed anyway: refused before and after opening.
    let mut f = fields();
    f[5].1 = vec![b'h'; MAX_LEASE_BODY - fixed + 1];
    let plain = body(&f);
    assert_eq!(plain.len(), MAX_LEASE_BODY + 1);
    assert!(matches!(
        Lease::decode_body(&plain),
        Err(FormatError::OutOfBounds { .. })
    ));
    assert!(matches!(
        Lease::decode(&keys(), &seal_as(42, &plain), 42),
        Err(FormatError::OutOfBounds { .. })
    ));
}

fn arb_lease() -> impl Strategy<Value = Lease> {
    (
        any::<u64>(),
        any::<[u8; 16]>(),
        any::<bool>(),
        any::<i64>(),
        1u64..,
        "\\PC{0,30}",
        any::<u32>(),
    )
        .prop_map(
            |(number, holder, released, created_ns, ttl_secs, hostname, pid)| Lease {
                number,
                holder,
                state: if released {
                    LeaseState::Released
                } else {
                    LeaseState::Held
                },
                created_ns,
                ttl_secs,
                hostname,
                pid,
            },
        )
}

proptest! {
    #[test]
    fn round_trip_prop(l in arb_lease(), salt: [u8; 16]) {
        let k = keys();
        let b = l.encode(&k, salt).unwrap();
        prop_assert_eq!(Lease::decode(&k, &b, l.number).unwrap(), l.clone());
        prop_assert!(Lease::decode(&k, &b, l.number ^ 1).is_err());
        prop_assert_eq!(Lease::decode_body(&l.encode_body().unwrap()).unwrap(), l);
    }

    #[test]
    fn name_round_trip(n: u64) {
        let name = lease_name(n);
        prop_assert_eq!(name.len(), 20);
        prop_assert_eq!(parse_lease_name(&name), Some(n));
    }

    #[test]
    fn parse_name_never_panics(s: String) {
        if let Some(n) = parse_lease_name(&s) {
            prop_assert_eq!(lease_name(n), s);
        }
    }

    #[test]
    fn decode_never_panics(b: Vec<u8>, n: u64) {
        let _ = Lease::decode_body(&b);
        let mut v = vec![LEASE_VERSION];
        v.extend_from_slice(&b);
        let _ = Lease::decode_body(&v);
        let _ = Lease::decode(&keys(), &b, n);
        let _ = Lease::decode(&keys(), &seal_as(n, &v), n);
        // After a valid record, so that unknown and duplicate tags are reached.
        let mut v = body(&fields());
        v.extend_from_slice(&b);
        let _ = Lease::decode_body(&v);
    }
}
