//! A backup compresses a dump with the zstd setting its trials chose (SPEC §3): read back from
//! the packs, each compression group's frame is exactly what zstd makes at the config's level
//! with one of the candidate settings (minimum match length, match-finder tables), and on a dump
//! mostly with a longer minimum and smaller tables than the level's own.

mod common;

use common::env;
use common::grace::stream;
use engine::backend::FileType;
use repo_format::{Compression, Id, ObjectType, Zstd, aad, compress, decompress_bounded, open};

/// pg_dump-like rows: a number, two random columns, wide padding.
fn dump(rows: u64) -> Vec<u8> {
    let mut out = Vec::new();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for i in 0..rows {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(
            format!("{i}\t{}\t{}\t{:>84}\n", x % 100_000, (x >> 20) % 1000, "").as_bytes(),
        );
    }
    out
}

#[test]
fn groups_are_compressed_with_the_chosen_minimum_match_length_and_tables() {
    let env = env();
    let repo = env.open();
    stream(&repo, dump(200_000));
    let level = repo.config().compression_level;
    let keys = repo.keys();
    let storage = env.storage();
    let (mut groups, mut longer, mut small) = (0, 0, 0);
    for file in repo.list_ids(FileType::Index).expect("list") {
        let file = repo
            .load_index(&repo_format::IndexId(file))
            .expect("index file");
        for pack in &file.packs {
            let bytes = storage.read(FileType::Pack, &pack.id.0.to_hex());
            for e in pack
                .entries
                .iter()
                .filter(|e| e.compression == Compression::Group && e.group_offset == 0)
            {
                let envelope = &bytes[e.offset as usize..][..e.stored_len as usize];
                let aad = aad(ObjectType::DataBlob, keys.repo_id(), &Id::ZERO);
                let frame = open(&keys.master().enc_key, &aad, envelope, "group").expect("opens");
                let plain = decompress_bounded(&frame, 16 << 20, "group").expect("decodes");
                let made = |min_match, tables| {
                    compress(
                        Zstd {
                            level,
                            min_match,
                            tables,
                        },
                        &plain,
                    )
                    .expect("compresses")
                };
                let own = made(None, None);
                let long = [made(Some(6), None), made(Some(7), None)];
                let small_tables = [made(Some(6), Some((15, 14))), made(Some(7), Some((15, 14)))];
                assert!(
                    frame == own || long.contains(&frame) || small_tables.contains(&frame),
                    "a group's frame is none of the candidates' ({} bytes)",
                    frame.len()
                );
                assert!(
                    long.iter().chain(&small_tables).all(|l| l != &own),
                    "the settings made the same frame"
                );
                groups += 1;
                longer += usize::from(frame != own);
                small += usize::from(small_tables.contains(&frame));
            }
        }
    }
    // The first group is the trial; a group sealed on the other worker before it finished may
    // use the level's own setting. The rest use the winner: small tables, on these rows.
    assert!(groups >= 4, "only {groups} groups");
    assert!(
        longer * 2 > groups,
        "{longer} of {groups} groups used 6 or 7"
    );
    assert!(
        small * 2 > groups,
        "{small} of {groups} groups used the small tables"
    );
}
