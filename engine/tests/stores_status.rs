//! Per-store views of a real repository: `status` (fresh, overdue, failed, never), `forget`
//! with each store's own retention (snapshots of no store untouched), and `check --store`
//! (only the named stores' data, also with read-data).

mod common;
mod stores_common;

use std::time::Duration;

use common::{Rng, env};
use engine::backend::FileType;
use engine::checker::{CheckOptions, FindingKind, ReadData, check, check_where};
use engine::forget::KEPT_FOREVER;
use engine::progress::NoProgress;
use engine::restorer::find_node;
use engine::retention::KeepPolicy;
use engine::stores::forget::{Rules, forget_stores};
use engine::stores::select::{belongs, check_names};
use engine::stores::status::{Health, status};
use repo_format::{Content, NodeKind, Snapshot, SnapshotId};
use stores_common::{H, config, dump, fail, ids, plain};

const T0: i64 = 1_793_534_400_000_000_000;

fn four_stores() -> engine::stores::Config {
    let store = |name: &str, interval: &str| {
        format!(
            "[stores.{name}]\ntype = \"command\"\ncommand = \"dump {name}\"\n\
             retention = {{ keep_last = 2 }}\ninterval = \"{interval}\"\n"
        )
    };
    config(
        &[
            store("fresh", "24h"),
            store("late", "24h"),
            store("broken", "6h"),
            store("new", "1h"),
        ]
        .join("\n"),
    )
}

#[test]
fn status_tells_fresh_overdue_failed_and_never_apart() {
    let env = env();
    let repo = env.open();
    let mut rng = Rng(21);
    let cfg = four_stores();
    let now = T0 + 100 * H;
    let data = rng.bytes(20_000);
    // fresh: 29 h old with a 24 h interval is within the 25% grace (30 h).
    dump(&repo, "fresh", "fresh.dump", &data, now - 40 * H);
    let newest = dump(&repo, "fresh", "fresh.dump", &data, now - 29 * H);
    // late: 31 h old.
    dump(&repo, "late", "late.dump", &data, now - 31 * H);
    // broken: a good backup 1 h ago, then a failed one.
    dump(&repo, "broken", "broken.dump", &data, now - H);
    fail(
        &repo,
        dump(&repo, "broken", "broken.dump", b"half", now - H / 2),
        "pg_dump: connection refused",
    );
    // new: only a failed run; and a snapshot of no store, ignored.
    fail(
        &repo,
        dump(&repo, "new", "new.dump", b"", now - H),
        "before hook failed",
    );
    plain(&repo, b"not a store", now);

    let all = repo.list_snapshots().expect("list");
    let s = status(&cfg, &all, now);
    let health: Vec<(&str, Health)> = s.iter().map(|x| (x.name.as_str(), x.health)).collect();
    assert_eq!(
        health,
        [
            ("fresh", Health::Fresh),
            ("late", Health::Overdue),
            ("broken", Health::Failed),
            ("new", Health::Never),
        ]
    );
    let fresh = &s[0];
    assert_eq!(fresh.newest.as_ref().map(|n| n.id), Some(newest));
    assert_eq!(fresh.age, Some(Duration::from_secs(29 * 3600)));
    assert_eq!(fresh.overdue_after, Duration::from_secs(30 * 3600));
    assert_eq!(fresh.size, Some(data.len() as u64));
    assert_eq!((fresh.snapshots, fresh.failed_snapshots), (2, 0));
    assert!(s[1].is_overdue());
    let broken = &s[2];
    assert!(
        !broken.is_overdue(),
        "its newest complete snapshot is recent"
    );
    assert_eq!(
        broken.last_failure.as_ref().map(|(_, why)| why.as_str()),
        Some("pg_dump: connection refused")
    );
    assert_eq!((broken.snapshots, broken.failed_snapshots), (2, 1));
    assert!(s[3].newest.is_none() && s[3].last_failure.is_some());
    assert!(s.iter().filter(|x| x.health.is_alarm()).count() == 3);

    // A snapshot from the future (a clock ahead) counts as age zero.
    let s = status(&cfg, &all, now - 35 * H);
    assert_eq!(s[0].age, Some(Duration::ZERO));
    assert_eq!(s[0].health, Health::Fresh);
}

#[test]
fn forget_by_store_applies_each_stores_retention_and_leaves_other_snapshots_alone() {
    let env = env();
    let repo = env.open();
    let mut rng = Rng(22);
    let cfg = config(
        "[stores.db]\ntype = \"command\"\ncommand = \"dump\"\nretention = { keep_last = 2 }\n\
         interval = \"1h\"\n\n[stores.keep]\ntype = \"command\"\ncommand = \"dump\"\n\
         retention = \"forever\"\ninterval = \"1h\"\n",
    );
    let db: Vec<SnapshotId> = (0..4)
        .map(|i| dump(&repo, "db", "db.dump", &rng.bytes(5_000), T0 + i * H))
        .collect();
    // A failed run between the last two: keep_last neither counts nor keeps it.
    let failed = fail(
        &repo,
        dump(&repo, "db", "db.dump", b"x", T0 + 3 * H - 1),
        "dump failed",
    );
    let keep: Vec<SnapshotId> = (0..3)
        .map(|i| dump(&repo, "keep", "keep.dump", &rng.bytes(5_000), T0 + i * H))
        .collect();
    let unmanaged: Vec<SnapshotId> = (0..3)
        .map(|i| plain(&repo, &rng.bytes(1_000), T0 + i * H))
        .collect();
    // Snapshots of a store no longer in cairn.toml.
    let gone = dump(&repo, "gone", "gone.dump", b"g", T0);
    let before = ids(&repo);
    let now = T0 + 10 * H;

    let dry = forget_stores(&repo, Some(&cfg), &[], Rules::Own, true, now).expect("dry run");
    assert_eq!(ids(&repo), before, "a dry run deletes nothing");
    assert_eq!(dry.without_store, 3);
    assert_eq!(dry.other_stores, [("gone".to_owned(), 1)]);
    assert_eq!(dry.report.removed(), 3, "db[0], db[1] and the failed run");
    let forever = dry
        .report
        .groups
        .iter()
        .find(|g| g.key.store.as_deref() == Some("keep"))
        .expect("keep group");
    assert!(
        forever
            .entries
            .iter()
            .all(|e| e.decision.keep && e.decision.reasons == [KEPT_FOREVER])
    );

    forget_stores(&repo, Some(&cfg), &[], Rules::Own, false, now).expect("forget");
    let removed = dry
        .report
        .groups
        .iter()
        .flat_map(|g| &g.entries)
        .filter(|e| !e.decision.keep)
        .map(|e| e.id);
    let mut removed: Vec<SnapshotId> = removed.collect();
    removed.sort();
    let mut want = vec![db[0], db[1], failed];
    want.sort();
    assert_eq!(removed, want);
    let mut expect: Vec<SnapshotId> = [db[2], db[3], gone]
        .into_iter()
        .chain(keep.iter().copied())
        .chain(unmanaged.iter().copied())
        .collect();
    expect.sort();
    assert_eq!(
        ids(&repo),
        expect,
        "db keeps its 2 newest complete snapshots"
    );

    // --store with rules given: only that store, by those rules.
    let last1 = KeepPolicy {
        last: Some(1),
        ..KeepPolicy::default()
    };
    let r = forget_stores(
        &repo,
        Some(&cfg),
        &["keep".to_owned()],
        Rules::Given(&last1),
        false,
        now,
    )
    .expect("forget keep");
    assert_eq!(r.report.removed(), 2);
    assert!(r.other_stores.iter().any(|(n, c)| n == "db" && *c == 2));
    // Unknown stores are an error naming the known ones; a store of cairn.toml with no
    // snapshots, or one only in the repository, is accepted.
    let e = forget_stores(&repo, Some(&cfg), &["nope".into()], Rules::Own, true, now)
        .expect_err("unknown store");
    assert!(
        e.to_string().contains("known stores: db, keep, gone"),
        "{e}"
    );
    let e = forget_stores(&repo, Some(&cfg), &["gone".into()], Rules::Own, true, now)
        .expect_err("no retention for a store outside the config");
    assert!(e.to_string().contains("give --keep-* rules"), "{e}");
    forget_stores(
        &repo,
        None,
        &["gone".into()],
        Rules::Given(&last1),
        true,
        now,
    )
    .expect("rules for a store only in the repository");
}

/// The pack holding the first data blob of `file` in snapshot `id`.
fn pack_of(repo: &engine::repository::Repository, id: &SnapshotId, file: &str) -> String {
    let snap = repo.load_snapshot(id).expect("load");
    let node = find_node(repo, &snap.tree, file.as_bytes()).expect("node");
    let NodeKind::File {
        content: Content::Direct(blobs),
    } = node.kind
    else {
        panic!("{file} is not a small file");
    };
    repo.locate_blob(&blobs[0]).expect("locate").pack.to_hex()
}

#[test]
fn check_by_store_checks_only_those_stores_data() {
    let env = env();
    let repo = env.open();
    let mut rng = Rng(23);
    let a = dump(&repo, "a", "a.dump", &rng.bytes(50_000), T0);
    let b = dump(&repo, "b", "b.dump", &rng.bytes(50_000), T0 + H);
    dump(&repo, "c", "c.dump", &rng.bytes(50_000), T0 + 2 * H);
    let pack_b = pack_of(&repo, &b, "b.dump");
    assert_ne!(
        pack_a(&repo, &a),
        pack_b,
        "each backup writes its own packs"
    );
    repo.block_on(repo.backend().delete(FileType::Pack, &pack_b))
        .expect("lose b's data");

    let all = repo.list_snapshots().expect("list");
    let names = check_names(&["a".into()], None, &all).expect("a has snapshots");
    let only_a = |s: &Snapshot| belongs(s, &names);
    let opts = CheckOptions::default();
    let report = check_where(&repo, &opts, Some(&only_a), &NoProgress).expect("check a");
    assert!(
        report.errors_of(FindingKind::MissingPack).count() == 1,
        "the structure check still sees the missing pack"
    );
    assert!(
        report
            .errors
            .iter()
            .all(|f| f.affects.iter().all(|p| !p.contains(&b.short()))),
        "nothing of b is walked: {:?}",
        report.errors
    );
    assert_eq!(report.stats.snapshots_checked, 1);
    let whole = check(&repo, &opts, &NoProgress).expect("check all");
    assert_eq!(whole.stats.snapshots_checked, 3);
    assert!(
        whole
            .errors
            .iter()
            .any(|f| f.affects.iter().any(|p| p.contains(&b.short())))
    );

    // read-data reads only a's packs.
    let read = CheckOptions {
        read_data: ReadData::All,
    };
    let ra = check_where(&repo, &read, Some(&only_a), &NoProgress).expect("read a");
    let rall = check(&repo, &read, &NoProgress).expect("read all");
    assert!(ra.stats.packs_read > 0 && ra.stats.packs_read < rall.stats.packs_read);
    assert_eq!(
        ra.errors.len(),
        report.errors.len(),
        "the first walk's findings are not reported twice"
    );

    let e = check_names(&["d".into()], None, &all).expect_err("no store d");
    assert!(e.to_string().contains("known stores: a, b, c"), "{e}");
}

fn pack_a(repo: &engine::repository::Repository, a: &SnapshotId) -> String {
    pack_of(repo, a, "a.dump")
}
