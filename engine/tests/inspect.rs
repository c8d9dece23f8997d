//! Engine tests of the read-only inspection commands on small real repositories:
//! - `diff`: adds, removals, content and metadata changes, type changes, and unchanged subtrees
//!   that are skipped without being loaded;
//! - `find`: glob patterns over several snapshots, pruning by anchored patterns, and the
//!   no-match memo across snapshots;
//! - `stats`: exact figures on a constructed case (two snapshots sharing a file: dedup ratio 2),
//!   groups, and agreement with a naive recount on random trees.

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use engine::archiver::{BackupOptions, BackupResult, Source, backup};
use engine::backend::FileType;
use engine::diff::{ChangeKind, DiffOptions, DiffSummary, diff};
use engine::find::{FindCounts, Finder};
use engine::glob::Glob;
use engine::progress::NoProgress;
use engine::repository::Repository;
use engine::stats::{StatsGroupBy, StatsOptions, StatsReport, stats, store_of};
use repo_format::{BlobId, Content, NodeKind, Snapshot, SnapshotId};

mod common;

use common::{Rng, env};

fn backup_dir(repo: &Repository, dir: &Path, tags: &[&str]) -> BackupResult {
    let mut opts = BackupOptions::new(Source::Paths(vec![dir.to_path_buf()]));
    opts.tags = tags.iter().map(|t| t.to_string()).collect();
    let r = backup(repo, opts, &NoProgress).expect("backup");
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    r
}

fn write(path: &Path, bytes: &[u8]) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("mkdir");
    }
    fs::write(path, bytes).expect("write");
}

// ---------------------------------------------------------------------------------------------
// diff

/// Runs a diff and returns its changes as `(mark, path)` and its summary.
fn changes(
    repo: &Repository,
    a: &Snapshot,
    b: &Snapshot,
    metadata: bool,
) -> (Vec<(char, String)>, DiffSummary) {
    let mut out = Vec::new();
    let summary = diff(
        repo,
        &a.tree,
        &b.tree,
        &DiffOptions { metadata },
        &mut |c| {
            out.push((c.kind.mark(), String::from_utf8_lossy(c.path).into_owned()));
            Ok(())
        },
    )
    .expect("diff");
    (out, summary)
}

#[test]
fn diff_reports_every_kind_of_change_and_skips_unchanged_subtrees() {
    let env = env();
    let data = env.root.join("data");
    let mut rng = Rng(11);
    // An unchanged subtree 12 directories deep: skipping it must load none of them.
    let mut same = data.join("same");
    for i in 0..12 {
        write(&same.join(format!("f{i}")), &rng.bytes(100));
        same = same.join(format!("d{i}"));
    }
    write(&data.join("keep.txt"), b"kept");
    write(&data.join("gone.txt"), &rng.bytes(1000));
    write(&data.join("gonedir/x"), &rng.bytes(10));
    write(&data.join("gonedir/y"), &rng.bytes(20));
    let mut big = rng.bytes(12 << 20);
    write(&data.join("mod.bin"), &big);
    write(&data.join("meta.txt"), b"metadata only");
    write(&data.join("swap"), &rng.bytes(7));
    write(&data.join("d2f/c"), &rng.bytes(5));
    std::os::unix::fs::symlink("old-target", data.join("link")).expect("symlink");
    let repo = env.open();
    let a = backup_dir(&repo, &data, &[]);

    fs::remove_file(data.join("gone.txt")).expect("rm");
    fs::remove_dir_all(data.join("gonedir")).expect("rm -r");
    big[6 << 20] ^= 0xff;
    write(&data.join("mod.bin"), &big);
    fs::set_permissions(data.join("meta.txt"), fs::Permissions::from_mode(0o600)).expect("chmod");
    fs::remove_file(data.join("swap")).expect("rm");
    write(&data.join("swap/inner"), &rng.bytes(30));
    fs::remove_dir_all(data.join("d2f")).expect("rm -r");
    write(&data.join("d2f"), &rng.bytes(40));
    fs::remove_file(data.join("link")).expect("rm");
    std::os::unix::fs::symlink("new-target", data.join("link")).expect("symlink");
    write(&data.join("new.txt"), &rng.bytes(300));
    write(&data.join("newdir/z"), &rng.bytes(50));
    let b = backup_dir(&repo, &data, &[]);

    let (got, sum) = changes(&repo, &a.snapshot, &b.snapshot, false);
    let want: Vec<(char, String)> = [
        ('T', "data/d2f"),
        ('-', "data/d2f/c"),
        ('-', "data/gone.txt"),
        ('-', "data/gonedir"),
        ('-', "data/gonedir/x"),
        ('-', "data/gonedir/y"),
        ('M', "data/link"),
        ('M', "data/mod.bin"),
        ('+', "data/new.txt"),
        ('+', "data/newdir"),
        ('+', "data/newdir/z"),
        ('T', "data/swap"),
        ('+', "data/swap/inner"),
    ]
    .iter()
    .map(|(m, p)| (*m, p.to_string()))
    .collect();
    assert_eq!(got, want);
    assert_eq!(
        (
            sum.added,
            sum.removed,
            sum.modified,
            sum.type_changed,
            sum.metadata
        ),
        (4, 5, 2, 2, 2),
        "{sum:?}"
    );
    assert_eq!(sum.bytes_added, 300 + 50 + 30 + 40);
    assert_eq!(sum.bytes_removed, 1000 + 10 + 20 + 7 + 5);
    // One flipped byte re-chunks a chunk or two (1 MiB average), never the whole file.
    assert!(sum.data_added > 0 && sum.data_added < 10 << 20, "{sum:?}");
    assert!(
        sum.data_removed > 0 && sum.data_removed < 10 << 20,
        "{sum:?}"
    );
    assert_eq!(sum.data_unknown, 0);
    // Both roots, both `data`, the removed d2f and gonedir, the added newdir and swap.
    assert_eq!(sum.trees_loaded, 8, "{sum:?}");
    assert_eq!(sum.trees_skipped, 1, "`same` is skipped by its tree id");

    // With --metadata, the chmod and the directory's own mtime show as U.
    let (got, _) = changes(&repo, &a.snapshot, &b.snapshot, true);
    let u: Vec<&str> = got
        .iter()
        .filter(|(m, _)| *m == 'U')
        .map(|(_, p)| p.as_str())
        .collect();
    assert_eq!(u, ["data", "data/meta.txt"]);
    assert_eq!(
        got.first(),
        Some(&('U', "data".to_string())),
        "parents first"
    );

    // Backwards, additions and removals trade places.
    let (_, back) = changes(&repo, &b.snapshot, &a.snapshot, false);
    assert_eq!((back.added, back.removed), (sum.removed, sum.added));
    assert_eq!(
        (back.bytes_added, back.bytes_removed),
        (sum.bytes_removed, sum.bytes_added)
    );
    assert_eq!(
        (back.data_added, back.data_removed),
        (sum.data_removed, sum.data_added)
    );

    // A snapshot against itself: nothing loaded, nothing reported.
    let (got, same_sum) = changes(&repo, &a.snapshot, &a.snapshot, true);
    assert!(got.is_empty());
    assert_eq!((same_sum.trees_loaded, same_sum.trees_skipped), (0, 1));
}

#[test]
fn diff_change_records_carry_both_nodes() {
    let env = env();
    let data = env.root.join("data");
    write(&data.join("f"), b"one");
    let repo = env.open();
    let a = backup_dir(&repo, &data, &[]);
    write(&data.join("f"), b"two!");
    let b = backup_dir(&repo, &data, &[]);
    let mut seen = Vec::new();
    diff(
        &repo,
        &a.snapshot.tree,
        &b.snapshot.tree,
        &DiffOptions::default(),
        &mut |c| {
            if c.kind == ChangeKind::Modified {
                let (before, after) = (c.before.expect("before"), c.after.expect("after"));
                seen.push((before.size, after.size, c.data.expect("small file: sized")));
            }
            Ok(())
        },
    )
    .expect("diff");
    assert_eq!(seen.len(), 1);
    let (before, after, delta) = seen[0];
    assert_eq!((before, after), (3, 4));
    assert_eq!((delta.added, delta.removed), (4, 3), "one chunk each side");
}

// ---------------------------------------------------------------------------------------------
// find

fn find(finder: &mut Finder, repo: &Repository, snap: &Snapshot) -> (Vec<String>, FindCounts) {
    let mut found = Vec::new();
    let counts = finder
        .find(
            repo,
            &snap.tree,
            &mut |path, _| {
                found.push(String::from_utf8_lossy(path).into_owned());
                Ok(())
            },
            &mut |path, e| panic!("damage at {path:?}: {e}"),
        )
        .expect("find");
    (found, counts)
}

#[test]
fn find_matches_names_and_paths_across_snapshots() {
    let env = env();
    let data = env.root.join("data");
    write(&data.join("a.dump"), b"a");
    write(&data.join("sub/b.dump"), b"b");
    write(&data.join("sub/notes.txt"), b"n");
    write(&data.join("c.txt"), b"c");
    let mut deep = data.join("other");
    for i in 0..6 {
        write(&deep.join(format!("f{i}.txt")), b"x");
        deep = deep.join(format!("d{i}"));
    }
    let repo = env.open();
    let s1 = backup_dir(&repo, &data, &[]);
    fs::remove_file(data.join("sub/b.dump")).expect("rm");
    write(&data.join("new.dump"), b"new");
    let s2 = backup_dir(&repo, &data, &[]);

    let mut finder = Finder::new(Glob::new("*.dump").expect("glob"));
    let (m1, c1) = find(&mut finder, &repo, &s1.snapshot);
    assert_eq!(m1, ["data/a.dump", "data/sub/b.dump"]);
    assert_eq!(c1.matches, 2);
    assert_eq!(
        c1.trees_loaded,
        3 + 6,
        "root, data, sub, other and its 5 subdirectories"
    );
    let (m2, c2) = find(&mut finder, &repo, &s2.snapshot);
    assert_eq!(m2, ["data/a.dump", "data/new.dump"]);
    // `other` is unchanged and held no match: not loaded again.
    assert!(c2.trees_skipped >= 1, "{c2:?}");
    assert_eq!(c2.trees_loaded, 3, "root, data, sub: {c2:?}");

    // Anchored: only the directories on the pattern's path are loaded.
    let mut finder = Finder::new(Glob::new("/data/sub/*").expect("glob"));
    let (m, c) = find(&mut finder, &repo, &s1.snapshot);
    assert_eq!(m, ["data/sub/b.dump", "data/sub/notes.txt"]);
    assert_eq!(c.trees_loaded, 3, "{c:?}");
    assert!(c.trees_skipped >= 1, "`other` is pruned: {c:?}");

    // `**` and relative paths with a `/`.
    let mut finder = Finder::new(Glob::new("/data/other/**/f3.txt").expect("glob"));
    let (m, _) = find(&mut finder, &repo, &s2.snapshot);
    assert_eq!(m, ["data/other/d0/d1/d2/f3.txt"]);
    let mut finder = Finder::new(Glob::new("sub/*.txt").expect("glob"));
    let (m, _) = find(&mut finder, &repo, &s2.snapshot);
    assert_eq!(m, ["data/sub/notes.txt"]);
    // A directory matches too.
    let mut finder = Finder::new(Glob::new("d4").expect("glob"));
    let (m, _) = find(&mut finder, &repo, &s1.snapshot);
    assert_eq!(m, ["data/other/d0/d1/d2/d3/d4"]);
    let mut finder = Finder::new(Glob::new("*.nothing").expect("glob"));
    let (m, c) = find(&mut finder, &repo, &s1.snapshot);
    assert!(m.is_empty());
    assert_eq!(c.matches, 0);
}

// ---------------------------------------------------------------------------------------------
// stats

/// The figures recounted naively: every tree walked, every blob in a hash set.
#[derive(Debug, Default, PartialEq)]
struct Naive {
    files: u64,
    dirs: u64,
    restore: u64,
    trees: BTreeSet<BlobId>,
    data: BTreeSet<BlobId>,
}

fn naive(repo: &Repository, snaps: &[&Snapshot]) -> Naive {
    let mut n = Naive::default();
    for s in snaps {
        n.trees.insert(s.tree);
        engine::ls::walk(repo, &s.tree, &mut |_, node| {
            match &node.kind {
                NodeKind::File { content } => {
                    n.files += 1;
                    n.restore += node.size;
                    match content {
                        Content::Direct(ids) => n.data.extend(ids.iter().copied()),
                        Content::Indirect(lists) => {
                            for l in lists {
                                n.trees.insert(*l);
                                n.data.extend(repo.load_content_list(l)?.ids);
                            }
                        }
                    }
                }
                NodeKind::Dir { subtree } => {
                    n.dirs += 1;
                    n.trees.insert(*subtree);
                }
                _ => {}
            }
            Ok(())
        })
        .expect("walk");
    }
    n
}

/// (raw, stored) bytes of blobs, from the index.
/// Plaintext and stored bytes of `ids`: a compression group's envelope counts once, however
/// many of its members are among them.
fn sizes(repo: &Repository, ids: &BTreeSet<BlobId>) -> (u64, u64) {
    let mut groups = HashSet::new();
    ids.iter().fold((0, 0), |(r, s), id| {
        let loc = repo.locate_blob(id).expect("indexed");
        let first = !loc.entry.is_grouped() || groups.insert((loc.pack, loc.entry.offset));
        (
            r + u64::from(loc.entry.raw_len),
            s + if first {
                u64::from(loc.entry.stored_len)
            } else {
                0
            },
        )
    })
}

fn assert_figures(repo: &Repository, f: &engine::stats::Figures, snaps: &[&Snapshot]) {
    let n = naive(repo, snaps);
    assert_eq!(f.snapshots, snaps.len() as u64);
    assert_eq!((f.size.files, f.size.dirs), (n.files, n.dirs));
    assert_eq!(f.restore_size(), n.restore);
    assert_eq!(f.blobs.data_blobs, n.data.len() as u64);
    assert_eq!(f.blobs.tree_blobs, n.trees.len() as u64);
    assert_eq!(
        (f.blobs.data_raw, f.blobs.data_stored),
        sizes(repo, &n.data)
    );
    assert_eq!(
        (f.blobs.tree_raw, f.blobs.tree_stored),
        sizes(repo, &n.trees)
    );
    assert_eq!(f.blobs.missing, 0);
}

fn run_stats(
    repo: &Repository,
    snaps: &[(SnapshotId, Snapshot)],
    by: Option<StatsGroupBy>,
) -> StatsReport {
    let mut calls = 0;
    let r = stats(
        repo,
        snaps,
        &StatsOptions {
            by,
            stores: vec!["pg".to_string()],
        },
        &mut |done, total| {
            calls += 1;
            assert_eq!((done, total), (calls, snaps.len()));
        },
    )
    .expect("stats");
    assert_eq!(calls, snaps.len());
    r
}

#[test]
fn stats_of_two_snapshots_sharing_a_file_give_dedup_ratio_two() {
    let env = env();
    let shared = Rng(3).bytes(3 << 20);
    let (d1, d2) = (env.root.join("d1"), env.root.join("d2"));
    write(&d1.join("f.bin"), &shared);
    write(&d2.join("copy.bin"), &shared);
    let repo = env.open();
    let s1 = backup_dir(&repo, &d1, &["pg", "nightly"]);
    let s2 = backup_dir(&repo, &d2, &[]);
    let snaps = vec![(s1.id, s1.snapshot.clone()), (s2.id, s2.snapshot.clone())];

    let r = run_stats(&repo, &snaps, None);
    let t = &r.total;
    assert_eq!(t.restore_size(), 2 * (3 << 20));
    assert_eq!(t.blobs.data_raw, 3 << 20, "the file is stored once");
    assert_eq!(t.dedup_ratio(), Some(2.0));
    // Random data does not compress: stored is raw plus the envelopes.
    let c = t.compression_ratio().expect("ratio");
    assert!(c > 0.99 && c < 1.01, "{c}");
    let space = t.space_ratio().expect("ratio");
    assert!(space > 1.98 && space < 2.02, "{space}");
    // Roots and the two directories (their trees differ: inodes, names).
    assert_eq!(t.blobs.tree_blobs, 4);
    assert_eq!((t.size.files, t.size.dirs, t.size.others), (2, 2, 0));
    assert_figures(&repo, t, &[&s1.snapshot, &s2.snapshot]);
    assert!(r.groups.is_empty());

    // Per snapshot: each alone has no duplication; the shared blobs count in both.
    let r = run_stats(&repo, &snaps, Some(StatsGroupBy::Snapshot));
    assert_eq!(r.total, *t);
    assert_eq!(r.groups.len(), 2);
    for (g, s) in r.groups.iter().zip([&s1, &s2]) {
        assert_eq!(g.key, s.id.0.short());
        assert_eq!(g.snapshots, [s.id]);
        assert_eq!(g.figures.dedup_ratio(), Some(1.0));
        assert_figures(&repo, &g.figures, &[&s.snapshot]);
    }

    // By store: the tag naming a configured store, else host and paths.
    assert_eq!(store_of(&s1.snapshot, &["pg".to_string()]), "pg");
    let r = run_stats(&repo, &snaps, Some(StatsGroupBy::Store));
    let keys: Vec<&str> = r.groups.iter().map(|g| g.key.as_str()).collect();
    let d2_key = format!(
        "{}:{}",
        s2.snapshot.hostname,
        String::from_utf8_lossy(&s2.snapshot.paths[0])
    );
    assert_eq!(keys, ["pg", d2_key.as_str()]);
    // By host: one group, the same as the total.
    let r = run_stats(&repo, &snaps, Some(StatsGroupBy::Host));
    assert_eq!(r.groups.len(), 1);
    assert_eq!(r.groups[0].figures, r.total);

    let totals = r.repository;
    assert_eq!(totals.snapshots, 2);
    assert_eq!(
        totals.packs,
        repo.list_ids(FileType::Pack).expect("list").len() as u64
    );
    assert!(totals.pack_bytes >= t.stored_bytes());
    assert!(totals.index_files >= 2 && totals.index_bytes > 0);
}

#[test]
fn stats_count_compression_and_agree_with_a_naive_recount() {
    let env = env();
    let data = env.root.join("data");
    let mut rng = Rng(77);
    // Compressible but not periodic (a periodic text would deduplicate within itself).
    let text: Vec<u8> = (0..30_000)
        .flat_map(|i| format!("INSERT INTO t VALUES ({i}, 'hello');\n").into_bytes())
        .collect();
    write(&data.join("dump.sql"), &text);
    for i in 0..20 {
        let len = rng.below(50_000) as usize;
        write(&data.join(format!("dir{}/f{i}", i % 4)), &rng.bytes(len));
    }
    fs::create_dir_all(data.join("empty1")).expect("mkdir");
    fs::create_dir_all(data.join("empty2")).expect("mkdir");
    std::os::unix::fs::symlink("dump.sql", data.join("link")).expect("symlink");
    let repo = env.open();
    let mut snaps = vec![backup_dir(&repo, &data, &[])];
    for round in 0..3 {
        write(
            &data.join(format!("dir{round}/f-new")),
            &rng.bytes(10_000 + round as usize),
        );
        fs::remove_file(data.join(format!("dir{}/f{}", round + 1, round + 1))).expect("rm");
        snaps.push(backup_dir(&repo, &data, &[]));
    }
    let list: Vec<(SnapshotId, Snapshot)> =
        snaps.iter().map(|s| (s.id, s.snapshot.clone())).collect();
    let all: Vec<&Snapshot> = snaps.iter().map(|s| &s.snapshot).collect();

    let r = run_stats(&repo, &list, Some(StatsGroupBy::Snapshot));
    assert_figures(&repo, &r.total, &all);
    assert_eq!(r.total.size.others, 4, "one symlink per snapshot");
    for (g, s) in r.groups.iter().zip(&all) {
        assert_figures(&repo, &g.figures, &[s]);
    }
    let dedup = r.total.dedup_ratio().expect("ratio");
    assert!(
        dedup > 3.0 && dedup <= 4.0,
        "four nearly equal snapshots: {dedup}"
    );
    let compression = r.total.compression_ratio().expect("ratio");
    assert!(compression > 1.3, "the SQL text compresses: {compression}");

    // A subset, and the empty selection.
    let r = run_stats(&repo, &list[1..3], None);
    assert_figures(&repo, &r.total, &all[1..3]);
    let r = run_stats(&repo, &[], None);
    assert_eq!(r.total.unique_blobs(), 0);
    assert_eq!(r.total.dedup_ratio(), None);
    assert_eq!(r.repository.snapshots, 4);

    // No work directories are left behind.
    let left: HashSet<_> = fs::read_dir(repo.cache_dir().join("stats"))
        .expect("stats dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

// ---------------------------------------------------------------------------------------------
// damage

#[test]
fn find_reports_a_lost_subtree_and_goes_on_while_diff_and_stats_fail() {
    let env = env();
    let data = env.root.join("data");
    write(&data.join("old/a.txt"), b"a");
    let repo = env.open();
    let s1 = backup_dir(&repo, &data, &[]);
    write(&data.join("new/b.txt"), b"b");
    let s2 = backup_dir(&repo, &data, &[]);
    // The first backup's tree pack holds `old`; the second's holds the new root and `data`.
    let pack_of = |path: &str| {
        let node =
            engine::restorer::find_node(&repo, &s2.snapshot.tree, path.as_bytes()).expect("node");
        let NodeKind::Dir { subtree } = node.kind else {
            panic!("{path} is not a directory")
        };
        repo.locate_blob(&subtree).expect("indexed").pack
    };
    let lost = pack_of("data/old");
    assert_ne!(lost, pack_of("data"), "separate tree packs");
    env.storage().delete(FileType::Pack, &lost.0.to_hex());

    let mut finder = Finder::new(Glob::new("*.txt").expect("glob"));
    let mut found = Vec::new();
    let mut damaged = Vec::new();
    let counts = finder
        .find(
            &repo,
            &s2.snapshot.tree,
            &mut |path, _| {
                found.push(String::from_utf8_lossy(path).into_owned());
                Ok(())
            },
            &mut |path, e| {
                assert_eq!(e.kind(), engine::ErrorKind::NotFound, "{e}");
                damaged.push(String::from_utf8_lossy(path).into_owned());
            },
        )
        .expect("find goes on");
    assert_eq!(found, ["data/new/b.txt"]);
    assert_eq!(damaged, ["data/old"]);
    assert_eq!(counts.damaged, 1);

    let e = diff(
        &repo,
        &s1.snapshot.tree,
        &s2.snapshot.tree,
        &DiffOptions::default(),
        &mut |_| Ok(()),
    )
    .expect_err("diff cannot read the first snapshot");
    assert_eq!(e.kind(), engine::ErrorKind::NotFound);
    let e = stats(
        &repo,
        &[(s2.id, s2.snapshot.clone())],
        &StatsOptions::default(),
        &mut |_, _| {},
    )
    .expect_err("stats cannot count a lost subtree");
    assert!(
        e.to_string().contains("cannot be read completely") && e.to_string().contains("check"),
        "{e}"
    );
}
