use super::*;
use crate::crypto::MasterKey;
use crate::id::Id;
use proptest::prelude::*;

fn keys() -> RepoKeys {
    RepoKeys::new(Id([0x33; 32]), MasterKey::from_bytes([6; 72]))
}

fn node(name: &[u8], kind: NodeKind) -> Node {
    let size = if let NodeKind::File { .. } = kind {
        12
    } else {
        0
    };
    Node {
        name: name.to_vec(),
        kind,
        mode: 0o644,
        uid: 1000,
        gid: 100,
        mtime: Timestamp {
            sec: 1_700_000_000,
            nsec: 5,
        },
        ctime: Timestamp {
            sec: -1,
            nsec: 999_999_999,
        },
        inode: 42,
        device: 7,
        nlink: 1,
        size,
    }
}

fn sample() -> Tree {
    Tree {
        nodes: vec![
            node(
                b"zeta",
                NodeKind::File {
                    content: Content::Direct(vec![BlobId(Id([1; 32]))]),
                },
            ),
            node(
                b"\xffbin",
                NodeKind::Symlink {
                    target: b"../x".to_vec(),
                },
            ),
            node(
                b"dir",
                NodeKind::Dir {
                    subtree: BlobId(Id([2; 32])),
                },
            ),
            node(
                b"big",
                NodeKind::File {
                    content: Content::Indirect(vec![BlobId(Id([3; 32]))]),
                },
            ),
            node(b"fifo", NodeKind::Fifo),
            node(b"tty", NodeKind::CharDevice { rdev: 0x0501 }),
            node(b"sda", NodeKind::BlockDevice { rdev: 0x0800 }),
            node(b"sock", NodeKind::Socket),
        ],
    }
}

#[test]
fn encode_sorts_and_decode_round_trips() {
    let t = sample();
    let b = t.encode().unwrap();
    let back = Tree::decode(&b).unwrap();
    let mut sorted = t.nodes.clone();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(back.nodes, sorted);
    assert_eq!(back.encode().unwrap(), b);
    assert_eq!(
        back.find(b"dir").unwrap().kind,
        NodeKind::Dir {
            subtree: BlobId(Id([2; 32]))
        }
    );
    assert!(back.find(b"nope").is_none());
    assert!(t.find(b"sock").is_some());
    assert_eq!(
        Tree::decode(&Tree::default().encode().unwrap()).unwrap(),
        Tree::default()
    );
}

#[test]
fn invalid_names_and_duplicates_are_rejected() {
    for name in [&b""[..], b".", b"..", b"a/b", b"a\0b", &vec![b'x'; 65_536]] {
        let t = Tree {
            nodes: vec![node(name, NodeKind::Fifo)],
        };
        assert!(t.encode().is_err(), "{name:?}");
    }
    for name in [&b"..."[..], b".a", b"\xff\xfe", &vec![b'x'; 65_535]] {
        let t = Tree {
            nodes: vec![node(name, NodeKind::Fifo)],
        };
        assert!(t.encode().is_ok(), "{name:?}");
    }
    let dup = Tree {
        nodes: vec![node(b"a", NodeKind::Fifo), node(b"a", NodeKind::Socket)],
    };
    assert!(dup.encode().is_err());
}

#[test]
fn invalid_fields_are_rejected() {
    let mut n = node(b"a", NodeKind::Fifo);
    n.mtime.nsec = 1_000_000_000;
    assert!(Tree { nodes: vec![n] }.encode().is_err());
    let mut n = node(b"a", NodeKind::Fifo);
    n.mode = 0o100644;
    assert!(Tree { nodes: vec![n] }.encode().is_err());
    let mut n = node(
        b"a",
        NodeKind::Symlink {
            target: vec![b'x'; 65_537],
        },
    );
    assert!(
        Tree {
            nodes: vec![n.clone()]
        }
        .encode()
        .is_err()
    );
    n.kind = NodeKind::Symlink {
        target: vec![b'x'; 65_536],
    };
    assert!(
        Tree {
            nodes: vec![n.clone()]
        }
        .encode()
        .is_ok()
    );
    n.size = 4;
    assert!(Tree { nodes: vec![n] }.encode().is_err());
}

/// Byte offset of the kind byte of the first node with a one-byte name.
const KIND_AT: usize = 6 + 3;

#[test]
fn decode_rejects_bad_bytes() {
    let one = Tree {
        nodes: vec![node(b"a", NodeKind::Fifo)],
    }
    .encode()
    .unwrap();
    assert_eq!(one.len(), 6 + MIN_NODE_LEN);
    let mut bad = one.clone();
    bad[KIND_AT] = 8;
    assert!(Tree::decode(&bad).is_err());
    bad[KIND_AT] = 0;
    assert!(Tree::decode(&bad).is_err());
    let mut v2 = one.clone();
    v2[1] = 2;
    assert!(matches!(
        Tree::decode(&v2),
        Err(FormatError::UnsupportedVersion { .. })
    ));
    let mut list = one.clone();
    list[0] = CONTENT_LIST_KIND;
    assert!(Tree::decode(&list).is_err());
    let mut nsec = one.clone();
    nsec[KIND_AT + 13 + 8..KIND_AT + 13 + 12].copy_from_slice(&1_000_000_000u32.to_le_bytes());
    assert!(Tree::decode(&nsec).is_err());
    let mut huge = one.clone();
    huge[2..6].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        Tree::decode(&huge),
        Err(FormatError::Truncated { .. })
    ));
    for n in 0..one.len() {
        assert!(Tree::decode(&one[..n]).is_err());
    }
    let mut long = one.clone();
    long.push(0);
    assert!(Tree::decode(&long).is_err());
    // Two nodes out of order, encoded by hand.
    let a = Tree {
        nodes: vec![node(b"a", NodeKind::Fifo)],
    }
    .encode()
    .unwrap();
    let b = Tree {
        nodes: vec![node(b"b", NodeKind::Fifo)],
    }
    .encode()
    .unwrap();
    let mut two = vec![TREE_KIND, TREE_VERSION, 2, 0, 0, 0];
    two.extend_from_slice(&b[6..]);
    two.extend_from_slice(&a[6..]);
    assert!(Tree::decode(&two).is_err());
    two[6..].rotate_left(a.len() - 6);
    assert!(Tree::decode(&two).is_ok());
    let mut dup = vec![TREE_KIND, TREE_VERSION, 2, 0, 0, 0];
    dup.extend_from_slice(&a[6..]);
    dup.extend_from_slice(&a[6..]);
    assert!(Tree::decode(&dup).is_err());
}

#[test]
fn content_list_rules() {
    let l = ContentList {
        ids: vec![BlobId(Id([1; 32])), BlobId(Id([2; 32]))],
    };
    let b = l.encode().unwrap();
    assert_eq!(ContentList::decode(&b).unwrap(), l);
    assert!(ContentList { ids: vec![] }.encode().is_err());
    assert!(
        ContentList {
            ids: vec![BlobId(Id::ZERO); 8193]
        }
        .encode()
        .is_err()
    );
    assert!(ContentList::decode(&[CONTENT_LIST_KIND, 1, 0, 0, 0, 0]).is_err());
    assert!(ContentList::decode(&b[..b.len() - 1]).is_err());
    assert!(ContentList::decode(&Tree::default().encode().unwrap()).is_err());
    let mut over = vec![CONTENT_LIST_KIND, 1];
    over.extend_from_slice(&8193u32.to_le_bytes());
    over.extend_from_slice(&vec![0; 8193 * 32]);
    assert!(matches!(
        ContentList::decode(&over),
        Err(FormatError::OutOfBounds { .. })
    ));
}

fn ids(n: usize) -> Vec<BlobId> {
    (0..n as u32)
        .map(|i| {
            let mut b = [0u8; 32];
            b[..4].copy_from_slice(&i.to_le_bytes());
            BlobId(Id(b))
        })
        .collect()
}

fn build(k: &RepoKeys, input: &[BlobId]) -> (Content, Vec<(BlobId, Vec<u8>)>) {
    let mut b = ContentBuilder::new();
    let mut lists = Vec::new();
    for id in input {
        lists.extend(b.push(k, *id).unwrap());
    }
    let (content, last) = b.finish(k).unwrap();
    lists.extend(last);
    (content, lists)
}

#[test]
fn content_builder_shapes() {
    let k = keys();
    for n in [0, 1, 1024, 1025, 8192, 8193, 20_000] {
        let input = ids(n);
        let (content, lists) = build(&k, &input);
        if n <= DIRECT_CONTENT_MAX {
            assert_eq!(content, Content::Direct(input.clone()), "{n}");
            assert!(lists.is_empty());
            continue;
        }
        let Content::Indirect(list_ids) = &content else {
            panic!("{n}: expected indirect")
        };
        assert_eq!(list_ids.len(), n.div_ceil(CONTENT_LIST_LEN), "{n}");
        assert_eq!(
            list_ids,
            &lists.iter().map(|(id, _)| *id).collect::<Vec<_>>()
        );
        let mut all = Vec::new();
        for (i, (id, plain)) in lists.iter().enumerate() {
            assert_eq!(k.blob_id(plain), *id);
            let l = ContentList::decode(plain).unwrap();
            if i + 1 < lists.len() {
                assert_eq!(l.ids.len(), CONTENT_LIST_LEN);
            }
            all.extend(l.ids);
        }
        assert_eq!(all, input, "{n}");
        // Deterministic.
        assert_eq!(build(&k, &input).0, content);
    }
}

fn arb_ts() -> impl Strategy<Value = Timestamp> {
    (any::<i64>(), 0u32..1_000_000_000).prop_map(|(sec, nsec)| Timestamp { sec, nsec })
}

fn arb_id() -> impl Strategy<Value = BlobId> {
    any::<[u8; 32]>().prop_map(|b| BlobId(Id(b)))
}

fn arb_kind() -> impl Strategy<Value = NodeKind> {
    prop_oneof![
        proptest::collection::vec(arb_id(), 0..5).prop_map(|v| NodeKind::File {
            content: Content::Direct(v)
        }),
        proptest::collection::vec(arb_id(), 0..3).prop_map(|v| NodeKind::File {
            content: Content::Indirect(v)
        }),
        arb_id().prop_map(|subtree| NodeKind::Dir { subtree }),
        proptest::collection::vec(any::<u8>(), 0..100)
            .prop_map(|target| NodeKind::Symlink { target }),
        Just(NodeKind::Fifo),
        any::<u64>().prop_map(|rdev| NodeKind::CharDevice { rdev }),
        any::<u64>().prop_map(|rdev| NodeKind::BlockDevice { rdev }),
        Just(NodeKind::Socket),
    ]
}

fn arb_name() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        any::<u8>().prop_filter("no / or NUL", |b| *b != b'/' && *b != 0),
        1..20,
    )
    .prop_filter("not . or ..", |n| n != b"." && n != b"..")
}

fn arb_node() -> impl Strategy<Value = Node> {
    (
        arb_name(),
        arb_kind(),
        0u32..=0o7777,
        any::<(u32, u32)>(),
        arb_ts(),
        arb_ts(),
        any::<(u64, u64, u64, u64)>(),
    )
        .prop_map(
            |(name, kind, mode, (uid, gid), mtime, ctime, (inode, device, nlink, size))| {
                let size = if matches!(kind, NodeKind::File { .. }) {
                    size
                } else {
                    0
                };
                Node {
                    name,
                    kind,
                    mode,
                    uid,
                    gid,
                    mtime,
                    ctime,
                    inode,
                    device,
                    nlink,
                    size,
                }
            },
        )
}

proptest! {
    #[test]
    fn tree_round_trip(nodes in proptest::collection::btree_map(arb_name(), arb_node(), 0..20)) {
        // Unique names, in arbitrary (reversed) order: encode sorts.
        let nodes: Vec<Node> = nodes.into_iter().rev().map(|(name, n)| Node { name, ..n }).collect();
        let t = Tree { nodes };
        let b = t.encode().unwrap();
        let back = Tree::decode(&b).unwrap();
        let mut sorted = t.nodes.clone();
        sorted.sort_by(|a, b| a.name.cmp(&b.name));
        prop_assert_eq!(&back.nodes, &sorted);
        prop_assert_eq!(back.encode().unwrap(), b);
    }

    #[test]
    fn content_list_round_trip(ids in proptest::collection::vec(arb_id(), 1..100)) {
        let l = ContentList { ids };
        prop_assert_eq!(ContentList::decode(&l.encode().unwrap()).unwrap(), l);
    }

    #[test]
    fn decoders_never_panic(b: Vec<u8>, kind in 0u8..3) {
        let _ = Tree::decode(&b);
        let _ = ContentList::decode(&b);
        let mut v = vec![kind, 1];
        v.extend_from_slice(&b);
        let _ = Tree::decode(&v);
        let _ = ContentList::decode(&v);
    }
}
