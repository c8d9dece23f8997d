//! Tests of the index cache: round trips, superseded files, based groups, corruption, closing.

use super::*;
use proptest::prelude::*;
use repo_format::IndexPack;

fn id(tag: u8, n: u32) -> Id {
    let mut b = [tag; 32];
    b[..4].copy_from_slice(&n.to_le_bytes());
    Id(b)
}

fn entry(n: u32, offset: u32) -> IndexEntry {
    IndexEntry {
        blob_type: if n.is_multiple_of(3) {
            BlobType::Tree
        } else {
            BlobType::Data
        },
        compression: if n.is_multiple_of(2) {
            Compression::Zstd
        } else {
            Compression::Raw
        },
        offset,
        stored_len: 100 + n,
        raw_len: 1000 + n,
        id: BlobId(id(0xb1, n)),
        group_offset: 0,
    }
}

/// An index file with `packs` packs of `per_pack` blobs, blob numbers from `first`.
fn index_file(first: u32, packs: u32, per_pack: u32) -> IndexFile {
    let mut file = IndexFile::default();
    for p in 0..packs {
        let mut offset = 0;
        let entries = (0..per_pack)
            .map(|i| {
                let e = entry(first + p * per_pack + i, offset);
                offset += e.stored_len;
                e
            })
            .collect();
        file.packs.push(IndexPack {
            id: PackId(id(0xa0, first + p)),
            entries,
            bases: Vec::new(),
        });
    }
    file
}

fn all_locations(file: &IndexFile) -> Vec<BlobLocation> {
    file.packs
        .iter()
        .flat_map(|p| {
            p.entries.iter().map(|e| BlobLocation {
                pack: p.id,
                entry: *e,
            })
        })
        .collect()
}

fn open(dir: &tempfile::TempDir) -> IndexCache {
    IndexCache::open(&dir.path().join("cache")).expect("open")
}

/// Bytes in the write-ahead logs (`NNNNNN.log`) and the number of table files in `dir`.
fn wal_bytes_and_tables(dir: &Path) -> (u64, usize) {
    let (mut wal, mut tables) = (0, 0);
    for e in std::fs::read_dir(dir).expect("list the cache") {
        let e = e.expect("entry");
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".log") {
            wal += e.metadata().expect("stat").len();
        } else if name.ends_with(".sst") {
            tables += 1;
        }
    }
    (wal, tables)
}

#[test]
fn closing_a_written_cache_leaves_no_log_to_replay() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cache");
    let file = index_file(0, 4, 50);
    let id1 = IndexId(id(0x11, 1));
    {
        let cache = IndexCache::open(&path).expect("open");
        cache.add_index_file(id1, &file).expect("add");
        let (wal, _) = wal_bytes_and_tables(&path);
        assert!(wal > 0, "the entries are in the log before closing");
    }
    let (wal, tables) = wal_bytes_and_tables(&path);
    assert_eq!(
        wal, 0,
        "closing flushed the memtables: the next open replays nothing"
    );
    assert!(tables > 0);

    // A run that only reads writes no table.
    {
        let cache = IndexCache::open(&path).expect("reopen");
        for loc in all_locations(&file) {
            assert_eq!(cache.lookup(&loc.entry.id).expect("lookup"), Some(loc));
        }
        assert_eq!(
            cache.known_index_files().expect("known"),
            HashSet::from([id1])
        );
    }
    assert_eq!(wal_bytes_and_tables(&path), (0, tables));
}

#[test]
fn add_lookup_known_clear() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = open(&dir);
    assert!(cache.known_index_files().expect("known").is_empty());
    assert_eq!(cache.blob_count_estimate().expect("count"), 0);

    let (f1, f2) = (index_file(0, 3, 10), index_file(1000, 2, 7));
    let (i1, i2) = (IndexId(id(0x11, 1)), IndexId(id(0x11, 2)));
    cache.add_index_file(i1, &f1).expect("add 1");
    cache.add_index_file(i2, &f2).expect("add 2");
    assert_eq!(
        cache.known_index_files().expect("known"),
        HashSet::from([i1, i2])
    );

    let locs: Vec<BlobLocation> = all_locations(&f1)
        .into_iter()
        .chain(all_locations(&f2))
        .collect();
    assert_eq!(locs.len(), 44);
    for loc in &locs {
        assert_eq!(cache.lookup(&loc.entry.id).expect("lookup"), Some(*loc));
        assert!(cache.contains(&loc.entry.id).expect("contains"));
    }
    let unknown = BlobId(id(0xee, 5));
    assert_eq!(cache.lookup(&unknown).expect("lookup"), None);
    assert!(!cache.contains(&unknown).expect("contains"));

    // Batched: order kept, unknown ids None, duplicates fine, empty input fine.
    let mut ids: Vec<BlobId> = locs.iter().rev().map(|l| l.entry.id).collect();
    ids.insert(3, unknown);
    ids.push(locs[0].entry.id);
    let found = cache.lookup_many(&ids).expect("lookup_many");
    assert_eq!(found.len(), ids.len());
    for (id, found) in ids.iter().zip(&found) {
        assert_eq!(*found, cache.lookup(id).expect("lookup"));
    }
    assert_eq!(found[3], None);
    assert!(cache.lookup_many(&[]).expect("empty").is_empty());
    assert!(cache.blob_count_estimate().expect("count") > 0);

    cache.clear().expect("clear");
    assert!(cache.known_index_files().expect("known").is_empty());
    for loc in &locs {
        assert_eq!(cache.lookup(&loc.entry.id).expect("lookup"), None);
    }
    assert!(
        cache
            .lookup_many(&ids)
            .expect("many")
            .iter()
            .all(Option::is_none)
    );
    // Usable after a clear.
    cache.add_index_file(i2, &f2).expect("add again");
    assert_eq!(
        cache.known_index_files().expect("known"),
        HashSet::from([i2])
    );
    assert_eq!(
        cache.lookup(&locs[40].entry.id).expect("lookup"),
        Some(locs[40])
    );
}

#[test]
fn bases_are_kept_by_pack_and_group_offset_and_cleared_with_the_rest() {
    use repo_format::GroupBase;
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = open(&dir);
    let mut f = index_file(0, 2, 3);
    let base = |n: u32| GroupBase {
        offset: n,
        ids: vec![BlobId(id(0xba, n)), BlobId(id(0xbb, n))],
    };
    f.packs[1].bases = vec![base(0), base(7)];
    let (p0, p1) = (f.packs[0].id, f.packs[1].id);
    cache.add_index_file(IndexId(id(0x13, 1)), &f).expect("add");
    assert_eq!(cache.group_base(&p1, 0).expect("read"), Some(base(0).ids));
    assert_eq!(cache.group_base(&p1, 7).expect("read"), Some(base(7).ids));
    assert_eq!(cache.group_base(&p1, 1).expect("read"), None);
    assert_eq!(cache.group_base(&p0, 0).expect("read"), None);
    drop(cache);
    let cache = open(&dir);
    assert_eq!(
        cache.group_base(&p1, 7).expect("reopened"),
        Some(base(7).ids)
    );
    cache.clear().expect("clear");
    assert_eq!(cache.group_base(&p1, 7).expect("cleared"), None);
}

#[test]
fn a_long_lookup_is_split_and_keeps_its_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = open(&dir);
    let f = index_file(0, 3, 3000);
    cache.add_index_file(IndexId(id(0x12, 1)), &f).expect("add");
    let locs = all_locations(&f);
    // Known ids in reverse, an unknown one every 7th place: more than two batches.
    let mut ids = Vec::new();
    for (i, loc) in locs.iter().rev().enumerate() {
        if i % 7 == 0 {
            ids.push(BlobId(id(0xee, i as u32)));
        }
        ids.push(loc.entry.id);
    }
    assert!(ids.len() > 2 * PARALLEL_LOOKUP_BATCH);
    let found = cache.lookup_many(&ids).expect("lookup_many");
    assert_eq!(found.len(), ids.len());
    for (id, found) in ids.iter().zip(&found) {
        assert_eq!(*found, cache.lookup(id).expect("lookup"));
    }
    assert_eq!(found.iter().filter(|f| f.is_some()).count(), locs.len());
}

#[test]
fn a_later_index_file_wins_for_a_duplicate_blob() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = open(&dir);
    let f1 = index_file(0, 1, 2);
    let mut f2 = f1.clone();
    f2.packs[0].id = PackId(id(0xcc, 0));
    cache.add_index_file(IndexId(id(1, 1)), &f1).expect("add");
    cache.add_index_file(IndexId(id(1, 2)), &f2).expect("add");
    let blob = f1.packs[0].entries[1].id;
    assert_eq!(
        cache.lookup(&blob).expect("lookup").map(|l| l.pack),
        Some(f2.packs[0].id)
    );
}

#[test]
fn large_index_file_spans_several_batches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = open(&dir);
    let file = index_file(0, 3, (ENTRIES_PER_BATCH as u32) / 2 + 7);
    cache.add_index_file(IndexId(id(2, 2)), &file).expect("add");
    let locs = all_locations(&file);
    let ids: Vec<BlobId> = locs.iter().map(|l| l.entry.id).collect();
    let found = cache.lookup_many(&ids).expect("lookup_many");
    assert!(found.iter().zip(&locs).all(|(f, l)| *f == Some(*l)));
    assert_eq!(cache.known_index_files().expect("known").len(), 1);
}

#[test]
fn reopen_persists() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = index_file(7, 2, 5);
    let i = IndexId(id(3, 3));
    {
        let cache = open(&dir);
        cache.add_index_file(i, &file).expect("add");
    }
    let cache = open(&dir);
    assert_eq!(
        cache.known_index_files().expect("known"),
        HashSet::from([i])
    );
    for loc in all_locations(&file) {
        assert_eq!(cache.lookup(&loc.entry.id).expect("lookup"), Some(loc));
    }
}

#[test]
fn a_second_open_of_the_same_cache_is_locked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _cache = open(&dir);
    let e = IndexCache::open(&dir.path().join("cache")).expect_err("second open");
    assert!(matches!(e, CacheError::Locked { .. }), "{e:?}");
    assert!(e.to_string().contains("in use"), "{e}");
    assert!(std::error::Error::source(&e).is_some());
}

#[test]
fn corrupt_values_are_errors_not_panics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = open(&dir);
    let file = index_file(0, 1, 3);
    cache.add_index_file(IndexId(id(4, 4)), &file).expect("add");
    let good = file.packs[0].entries[0].id;
    let blobs = cache.cf(CF_BLOBS).expect("cf");
    let bad_ids = [
        BlobId(id(0xd0, 1)),
        BlobId(id(0xd0, 2)),
        BlobId(id(0xd0, 3)),
    ];
    let mut bad_type = encode_location(&file.packs[0].id, &file.packs[0].entries[0]);
    bad_type[32] = 7;
    let mut bad_compression = bad_type;
    bad_compression[32] = 0;
    bad_compression[33] = 9;
    cache
        .db
        .put_cf(blobs, bad_ids[0].0.0, [1u8; 45])
        .expect("put");
    cache
        .db
        .put_cf(blobs, bad_ids[1].0.0, bad_type)
        .expect("put");
    cache
        .db
        .put_cf(blobs, bad_ids[2].0.0, bad_compression)
        .expect("put");

    for (bad, needle) in bad_ids
        .iter()
        .zip(["45 bytes", "blob type 7", "compression 9"])
    {
        let e = cache.lookup(bad).expect_err("corrupt");
        match &e {
            CacheError::Corrupt { key, cf, .. } => {
                assert_eq!(key, &bad.0.to_hex());
                assert_eq!(*cf, CF_BLOBS);
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
        assert!(e.to_string().contains(needle), "{e}");
        assert!(e.to_string().contains(&bad.0.to_hex()), "{e}");
        // contains() only asks whether the key is there.
        assert!(cache.contains(bad).expect("contains"));
        assert!(cache.lookup_many(&[good, *bad]).is_err());
    }
    assert!(cache.lookup(&good).expect("good").is_some());

    // A malformed key in `files`.
    let files = cache.cf(CF_FILES).expect("cf");
    cache.db.put_cf(files, b"short", b"").expect("put");
    let e = cache.known_index_files().expect_err("corrupt key");
    assert!(
        matches!(e, CacheError::Corrupt { cf: CF_FILES, .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains(&hex::encode(b"short")), "{e}");

    // clear() removes the damage too.
    cache.clear().expect("clear");
    assert!(cache.known_index_files().expect("known").is_empty());
    assert_eq!(cache.lookup(&bad_ids[0]).expect("lookup"), None);
}

#[test]
fn another_format_version_is_wiped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cache");
    let file = index_file(0, 1, 3);
    {
        let cache = open(&dir);
        cache.add_index_file(IndexId(id(5, 5)), &file).expect("add");
        cache
            .db
            .put(FORMAT_VERSION_KEY, 999u32.to_le_bytes())
            .expect("put");
    }
    let cache = IndexCache::open(&path).expect("reopen");
    assert!(cache.known_index_files().expect("known").is_empty());
    assert_eq!(
        cache.lookup(&file.packs[0].entries[0].id).expect("lookup"),
        None
    );
    drop(cache);
    // And the new version sticks.
    let cache = IndexCache::open(&path).expect("reopen");
    cache.add_index_file(IndexId(id(5, 5)), &file).expect("add");
    drop(cache);
    let cache = IndexCache::open(&path).expect("reopen");
    assert_eq!(cache.known_index_files().expect("known").len(), 1);
}

#[test]
fn unknown_column_families_and_missing_version_are_wiped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cache");
    {
        // A "future" layout: an extra column family, data but no version key.
        let opts = db_options().expect("opts");
        let names = [
            "default".to_owned(),
            "blobs".to_owned(),
            "files".to_owned(),
            "future".to_owned(),
        ];
        let db = open_db(&opts, &path, &names).expect("open");
        let files = db.cf_handle("files").expect("cf");
        db.put_cf(files, [9u8; 32], 1u64.to_le_bytes())
            .expect("put");
    }
    let cache = IndexCache::open(&path).expect("open");
    assert!(cache.known_index_files().expect("known").is_empty());
    drop(cache);
    let opts = db_options().expect("opts");
    let mut cfs = DB::list_cf(&opts, &path).expect("list");
    cfs.sort();
    assert_eq!(cfs, ["bases", "blobs", "default", "files"]);
}

#[test]
fn destroy_removes_the_cache() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cache");
    {
        let cache = open(&dir);
        cache
            .add_index_file(IndexId(id(6, 6)), &index_file(0, 1, 1))
            .expect("add");
    }
    IndexCache::destroy(&path).expect("destroy");
    let cache = IndexCache::open(&path).expect("open");
    assert!(cache.known_index_files().expect("known").is_empty());
}

#[test]
fn a_superseded_file_only_fills_in_whatever_the_order() {
    // `old` names blobs 0..5 in pack a0:0, blob 4 only it names; `new` supersedes it and
    // names blobs 0..4 in another pack.
    let (old_id, new_id) = (IndexId(id(0x21, 1)), IndexId(id(0x21, 2)));
    let old = index_file(0, 1, 5);
    let mut new = index_file(0, 1, 4);
    new.packs[0].id = PackId(id(0xcc, 0));
    new.supersedes = vec![old_id];
    for old_first in [true, false] {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = open(&dir);
        if old_first {
            cache.add_superseded_index_file(old_id, &old).expect("add");
            cache.add_index_file(new_id, &new).expect("add");
        } else {
            cache.add_index_file(new_id, &new).expect("add");
            cache.add_superseded_index_file(old_id, &old).expect("add");
        }
        for loc in all_locations(&new) {
            assert_eq!(cache.lookup(&loc.entry.id).expect("lookup"), Some(loc));
        }
        let only_old = all_locations(&old)[4];
        assert_eq!(
            cache.lookup(&only_old.entry.id).expect("lookup"),
            Some(only_old)
        );
        // Reads use a filled-in entry; deduplication never does.
        assert_eq!(
            cache.lookup_for_dedup(&only_old.entry.id).expect("lookup"),
            None
        );
        let ids: Vec<BlobId> = all_locations(&old).iter().map(|l| l.entry.id).collect();
        let for_dedup = cache.lookup_many_for_dedup(&ids).expect("lookup");
        assert_eq!(for_dedup[4], None);
        assert!(for_dedup[..4].iter().all(Option::is_some), "{for_dedup:?}");
        assert_eq!(cache.lookup_many(&ids).expect("lookup")[4], Some(only_old));
        for loc in all_locations(&new) {
            assert_eq!(
                cache.lookup_for_dedup(&loc.entry.id).expect("lookup"),
                Some(loc)
            );
        }
        let records = cache.index_files().expect("records");
        assert_eq!(
            records,
            HashMap::from([
                (
                    new_id,
                    IndexFileRecord {
                        entries: 4,
                        current: true,
                        supersedes: vec![old_id],
                    }
                ),
                (
                    old_id,
                    IndexFileRecord {
                        entries: 5,
                        current: false,
                        supersedes: Vec::new(),
                    }
                ),
            ])
        );
        assert_eq!(
            cache.known_index_files().expect("known"),
            HashSet::from([old_id, new_id])
        );
        // Records survive a reopen, and clear() drops them with the entries.
        drop(cache);
        let cache = open(&dir);
        assert_eq!(cache.index_files().expect("records"), records);
        cache.clear().expect("clear");
        assert!(cache.index_files().expect("records").is_empty());
    }
}

#[test]
fn an_interrupted_add_is_noticed_until_a_clear() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = open(&dir);
    assert!(!cache.interrupted().expect("interrupted"));
    // Several batches, completed: no flag left.
    let file = index_file(0, 2, (ENTRIES_PER_BATCH as u32) / 2 + 3);
    cache
        .add_index_file(IndexId(id(0x22, 1)), &file)
        .expect("add");
    cache
        .add_superseded_index_file(IndexId(id(0x22, 2)), &file)
        .expect("add");
    assert!(!cache.interrupted().expect("interrupted"));
    // What a crash after the first batch leaves.
    let flag = [ADDING_PREFIX, &[0x33; 32][..]].concat();
    cache.db.put(&flag, []).expect("put");
    drop(cache);
    let cache = open(&dir);
    assert!(cache.interrupted().expect("interrupted"));
    cache.clear().expect("clear");
    assert!(!cache.interrupted().expect("interrupted"));
    assert!(
        cache.db.get(FORMAT_VERSION_KEY).expect("get").is_some(),
        "the version stays"
    );
}

#[test]
fn a_corrupt_index_file_record_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = open(&dir);
    let files = cache.cf(CF_FILES).expect("cf");
    let key = [7u8; 32];
    for (value, needle) in [
        (vec![0u8; 8], "8 bytes"),
        ([vec![0u8; 8], vec![2], vec![0; 4]].concat(), "role 2"),
        (
            [
                vec![0u8; 8],
                vec![1],
                2u32.to_le_bytes().to_vec(),
                vec![0; 32],
            ]
            .concat(),
            "2 superseded ids",
        ),
    ] {
        cache.db.put_cf(files, key, value).expect("put");
        let e = cache.index_files().expect_err("corrupt");
        assert!(
            matches!(e, CacheError::Corrupt { cf: CF_FILES, .. }),
            "{e:?}"
        );
        assert!(e.to_string().contains(needle), "{e}");
        assert!(e.to_string().contains(&hex::encode(key)), "{e}");
    }
}

/// Writes a cache in the layout of format version 1 (`files` value: the entry count only).
fn write_version_1(path: &Path, files: &[([u8; 32], u64)], blobs: &[[u8; 32]]) {
    write_old_version(path, 1, files, blobs);
}

/// Writes a cache marked with an older format `version` (entries unmarked, as before
/// version 3 marked filled-in ones).
fn write_old_version(path: &Path, version: u32, files: &[([u8; 32], u64)], blobs: &[[u8; 32]]) {
    let opts = db_options().expect("opts");
    let names: Vec<String> = COLUMN_FAMILIES.iter().map(|s| (*s).to_owned()).collect();
    let db = open_db(&opts, path, &names).expect("open");
    db.put(FORMAT_VERSION_KEY, version.to_le_bytes())
        .expect("put version");
    let (cf_files, cf_blobs) = (
        db.cf_handle(CF_FILES).expect("cf"),
        db.cf_handle(CF_BLOBS).expect("cf"),
    );
    for (file, count) in files {
        db.put_cf(cf_files, file, count.to_le_bytes()).expect("put");
    }
    let entry = entry(1, 0);
    for blob in blobs {
        db.put_cf(
            cf_blobs,
            blob,
            encode_location(&PackId(Id([1; 32])), &entry),
        )
        .expect("put");
    }
}

#[test]
fn caches_of_older_versions_are_rebuilt() {
    for old in 1..CACHE_FORMAT_VERSION {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cache");
        write_old_version(&path, old, &[([4; 32], 3)], &[[5; 32]]);
        let cache = IndexCache::open(&path).expect("open");
        assert!(cache.index_files().expect("records").is_empty());
        assert_eq!(cache.lookup(&BlobId(Id([5; 32]))).expect("lookup"), None);
        let version = cache.db.get(FORMAT_VERSION_KEY).expect("get");
        assert_eq!(
            version.as_deref(),
            Some(&CACHE_FORMAT_VERSION.to_le_bytes()[..])
        );
    }
}

#[test]
fn cache_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<IndexCache>();
}

fn arb_entry() -> impl Strategy<Value = (PackId, IndexEntry)> {
    (
        any::<[u8; 32]>(),
        any::<[u8; 32]>(),
        any::<bool>(),
        any::<bool>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
    )
        .prop_map(|(pack, blob, tree, zstd, offset, stored_len, raw_len)| {
            (
                PackId(Id(pack)),
                IndexEntry {
                    blob_type: if tree { BlobType::Tree } else { BlobType::Data },
                    compression: match offset % 3 {
                        0 => Compression::Group,
                        _ if zstd => Compression::Zstd,
                        _ => Compression::Raw,
                    },
                    offset,
                    stored_len,
                    raw_len,
                    id: BlobId(Id(blob)),
                    group_offset: if offset % 3 == 0 { raw_len / 3 } else { 0 },
                },
            )
        })
}

proptest! {
    #[test]
    fn location_encoding_round_trips((pack, entry) in arb_entry()) {
        let bytes = encode_location(&pack, &entry);
        prop_assert_eq!(decode_location(entry.id, &bytes), Ok(BlobLocation { pack, entry }));
    }

    #[test]
    fn any_value_decodes_or_errs(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
        let id = BlobId(Id([3; 32]));
        match decode_location(id, &bytes) {
            Ok(loc) => {
                prop_assert_eq!(bytes.len(), LOCATION_LEN);
                prop_assert_eq!(&encode_location(&loc.pack, &loc.entry)[..], &bytes[..]);
            }
            Err(detail) => prop_assert!(!detail.is_empty()),
        }
    }

    #[test]
    fn index_file_records_round_trip(
        entries in any::<u64>(),
        current in any::<bool>(),
        supersedes in proptest::collection::vec(any::<[u8; 32]>(), 0..20),
    ) {
        let record = IndexFileRecord {
            entries,
            current,
            supersedes: supersedes.into_iter().map(|s| IndexId(Id(s))).collect(),
        };
        let bytes = encode_record(&record).expect("encode");
        prop_assert_eq!(decode_record(&bytes), Ok(record));
    }

    #[test]
    fn any_record_value_decodes_or_errs(bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
        match decode_record(&bytes) {
            Ok(record) => prop_assert_eq!(encode_record(&record).expect("encode"), bytes),
            Err(detail) => prop_assert!(!detail.is_empty()),
        }
    }
}

proptest! {
    // Each case creates, wipes and recreates a database: a few dozen are plenty.
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Whatever a version 1 cache holds, opening it gives an empty cache of this version:
    /// the caller then loads every index file again.
    #[test]
    fn any_version_1_cache_is_rebuilt(
        files in proptest::collection::vec((any::<[u8; 32]>(), any::<u64>()), 0..8),
        blobs in proptest::collection::vec(any::<[u8; 32]>(), 0..8),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cache");
        write_version_1(&path, &files, &blobs);
        let cache = IndexCache::open(&path).expect("open");
        prop_assert!(cache.index_files().expect("records").is_empty());
        for blob in &blobs {
            prop_assert!(!cache.contains(&BlobId(Id(*blob))).expect("contains"));
        }
        let (file, other) = (index_file(0, 1, 2), IndexId(Id([9; 32])));
        cache.add_index_file(other, &file).expect("usable");
        prop_assert_eq!(cache.known_index_files().expect("known"), HashSet::from([other]));
    }
}
