//! `forget` on a real repository: policies per group, dry runs, failed and damaged snapshots,
//! snapshots named by id, and protected snapshots (`protect` / `unprotect`).

mod common;

use std::io::Cursor;

use common::{Rng, env};
use engine::ErrorKind;
use engine::archiver::{BackupOptions, Source, backup};
use engine::backend::FileType;
use engine::forget::{forget, forget_ids};
use engine::progress::NoProgress;
use engine::protect::{ProtectChange, set_protected};
use engine::repository::Repository;
use engine::retention::{GroupBy, KeepPolicy};
use repo_format::{SnapshotId, SnapshotStatus};

const DAY: i64 = 86_400_000_000_000;
/// 2026-11-01 12:00:00 UTC.
const START: i64 = 1_793_534_400_000_000_000;

fn stream_backup(repo: &Repository, host: &str, time_ns: i64, rng: &mut Rng) -> SnapshotId {
    let mut opts = BackupOptions::new(Source::Stream {
        name: "db.sql".into(),
        reader: Box::new(Cursor::new(rng.bytes(10_000))),
    });
    opts.host = Some(host.into());
    opts.time_ns = Some(time_ns);
    backup(repo, opts, &NoProgress).expect("backup").id
}

fn ids(repo: &Repository) -> Vec<SnapshotId> {
    let mut v: Vec<SnapshotId> = repo
        .list_snapshots()
        .expect("list")
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    v.sort();
    v
}

#[test]
fn forget_applies_the_policy_per_group_and_deletes_only_when_asked() {
    let env = env();
    let repo = env.open();
    let mut rng = Rng(7);
    let a: Vec<SnapshotId> = (0..6)
        .map(|d| stream_backup(&repo, "a", START + d * DAY, &mut rng))
        .collect();
    let b: Vec<SnapshotId> = (0..2)
        .map(|d| stream_backup(&repo, "b", START + d * DAY, &mut rng))
        .collect();
    // A failed backup of host a, newer than all the others.
    let (_, mut f) = repo.resolve_snapshot(&a[5].to_hex()).expect("resolve");
    f.status = SnapshotStatus::Failed;
    f.time_ns = START + 6 * DAY;
    let failed = repo.save_snapshot(&f).expect("save failed snapshot");
    assert_eq!(ids(&repo).len(), 9);

    let policy = KeepPolicy {
        daily: Some(2),
        ..KeepPolicy::default()
    };
    let now = START + 30 * DAY;
    let dry = forget(&repo, &policy, GroupBy::default(), true, now).expect("dry run");
    assert!(dry.dry_run);
    assert_eq!((dry.kept(), dry.removed()), (4, 5));
    assert_eq!(dry.groups.len(), 2);
    assert_eq!(dry.groups[0].key.host.as_deref(), Some("a"));
    let group_a = &dry.groups[0].entries;
    // Newest first: the failed one, then days 6 and 5 (kept), then the rest.
    assert_eq!(group_a[0].id, failed);
    assert!(!group_a[0].decision.keep);
    assert!(group_a[0].decision.reasons[0].starts_with("failed backup"));
    assert_eq!(
        group_a[1..3].iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![a[5], a[4]]
    );
    assert!(group_a[1..3].iter().all(|e| e.decision.keep));
    // (The day label is in the zone of the machine that ran the backups.)
    assert!(group_a[1].decision.reasons[0].starts_with("keep-daily 2026-11-"));
    assert!(dry.groups[1].entries.iter().all(|e| e.decision.keep));
    assert_eq!(ids(&repo).len(), 9, "a dry run deletes nothing");

    let real = forget(&repo, &policy, GroupBy::default(), false, now).expect("forget");
    assert_eq!((real.kept(), real.removed()), (4, 5));
    let mut want = vec![a[4], a[5], b[0], b[1]];
    want.sort();
    assert_eq!(ids(&repo), want);
    // Running it again changes nothing.
    let again = forget(&repo, &policy, GroupBy::default(), false, now).expect("again");
    assert_eq!((again.kept(), again.removed()), (4, 0));

    // One group for everything: keep-last 1 keeps only the newest of all.
    let one = KeepPolicy {
        last: Some(1),
        ..KeepPolicy::default()
    };
    let r = forget(&repo, &one, "".parse().expect("group-by"), false, now).expect("forget");
    assert_eq!(r.groups.len(), 1);
    assert_eq!(ids(&repo), vec![a[5]]);
}

#[test]
fn an_empty_policy_is_refused() {
    let env = env();
    let repo = env.open();
    stream_backup(&repo, "a", START, &mut Rng(1));
    let e = forget(
        &repo,
        &KeepPolicy::default(),
        GroupBy::default(),
        false,
        START,
    )
    .expect_err("empty policy");
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.to_string().contains("no keep rule given"), "{e}");
    assert_eq!(ids(&repo).len(), 1);
}

#[test]
fn forget_by_id_and_prefix_including_a_damaged_snapshot() {
    let env = env();
    let repo = env.open();
    let mut rng = Rng(3);
    let s: Vec<SnapshotId> = (0..3)
        .map(|d| stream_backup(&repo, "a", START + d * DAY, &mut rng))
        .collect();

    let e = forget_ids(&repo, &["zz".into()], false).expect_err("not hex");
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    let missing = if s.iter().any(|i| i.to_hex().starts_with("0000")) {
        "ffff"
    } else {
        "0000"
    };
    let e = forget_ids(&repo, &[missing.into()], false).expect_err("no match");
    assert_eq!(e.kind(), ErrorKind::NotFound);
    // Nothing is deleted when one of the names fails.
    let e = forget_ids(&repo, &[s[0].to_hex(), missing.into()], false).expect_err("one bad");
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert_eq!(ids(&repo).len(), 3);

    let prefix = s[0].to_hex()[..10].to_string();
    let dry = forget_ids(&repo, std::slice::from_ref(&prefix), true).expect("dry run");
    assert_eq!(dry.removed(), 1);
    assert_eq!(ids(&repo).len(), 3);
    let r = forget_ids(&repo, &[prefix.clone(), s[0].to_hex()], false).expect("forget");
    assert_eq!(r.removed(), 1, "the same snapshot named twice counts once");
    let mut want = vec![s[1], s[2]];
    want.sort();
    assert_eq!(ids(&repo), want);

    // Damage s[1]: a policy leaves it alone and reports it; naming it removes it.
    let storage = env.storage();
    let file = s[1].to_hex();
    let last = storage.size(FileType::Snapshot, &file) as usize - 1;
    storage.flip_bit(FileType::Snapshot, &file, last, 0);
    let keep_none = KeepPolicy {
        last: Some(0),
        ..KeepPolicy::default()
    };
    let r = forget(
        &repo,
        &keep_none,
        GroupBy::default(),
        false,
        START + 10 * DAY,
    )
    .expect("forget with damage");
    assert_eq!(r.damaged.len(), 1);
    assert_eq!(r.damaged[0].0, s[1]);
    assert_eq!(r.removed(), 1);
    assert!(storage.exists(FileType::Snapshot, &file));
    let r = forget_ids(&repo, &[s[1].to_hex()], false).expect("forget damaged");
    assert_eq!(r.removed(), 1);
    assert!(r.groups[0].entries[0].snapshot.is_none());
    assert!(!storage.exists(FileType::Snapshot, &file));
    assert!(ids(&repo).is_empty());
}

#[test]
fn protect_rewrites_the_snapshot_and_forget_keeps_it() {
    let env = env();
    let repo = env.open();
    let mut rng = Rng(11);
    let s: Vec<SnapshotId> = (0..3)
        .map(|d| stream_backup(&repo, "a", START + d * DAY, &mut rng))
        .collect();
    let before = repo.load_snapshot(&s[0]).expect("load");
    assert!(!before.protected);

    let changes = set_protected(&repo, &[s[0].to_hex()[..12].to_string()], true).expect("protect");
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].old, s[0]);
    let p = changes[0].new.expect("a new snapshot");
    assert_ne!(p, s[0]);
    let mut want = vec![p, s[1], s[2]];
    want.sort();
    assert_eq!(
        ids(&repo),
        want,
        "the old object is gone, the new one is there"
    );
    let after = repo.load_snapshot(&p).expect("load protected");
    assert!(after.protected);
    let mut same = after.clone();
    same.protected = false;
    assert_eq!(same, before, "only the flag changed");

    // Already protected: left alone (and a snapshot named twice counts once).
    let again = set_protected(&repo, &[p.to_hex(), p.to_hex()[..10].to_string()], true)
        .expect("protect again");
    assert_eq!(again, vec![ProtectChange { old: p, new: None }]);
    assert_eq!(ids(&repo), want);

    // A policy that keeps nothing keeps the protected snapshot, and says why.
    let keep_none = KeepPolicy {
        last: Some(0),
        ..KeepPolicy::default()
    };
    let r = forget(
        &repo,
        &keep_none,
        GroupBy::default(),
        false,
        START + 10 * DAY,
    )
    .expect("forget");
    assert_eq!((r.kept(), r.removed()), (1, 2));
    let kept = r.groups[0]
        .entries
        .iter()
        .find(|e| e.decision.keep)
        .expect("a kept entry");
    assert_eq!(kept.id, p);
    assert_eq!(kept.decision.reasons, ["protected"]);
    assert_eq!(ids(&repo), vec![p]);

    // Naming it is refused, also in a dry run, and nothing is removed.
    for dry_run in [true, false] {
        let e = forget_ids(&repo, &[p.to_hex()], dry_run).expect_err("protected");
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        let msg = e.to_string();
        assert!(
            msg.contains("is protected")
                && msg.contains(&format!("cairn unprotect {}", p.to_hex())),
            "{msg}"
        );
    }
    assert_eq!(ids(&repo), vec![p]);

    // Unprotected, it is an ordinary snapshot again.
    let changes = set_protected(&repo, &["latest".to_string()], false).expect("unprotect");
    assert_eq!(changes[0].old, p);
    let u = changes[0].new.expect("a new snapshot");
    assert!(!repo.load_snapshot(&u).expect("load").protected);
    assert_eq!(ids(&repo), vec![u]);
    let r = forget_ids(&repo, &[u.to_hex()], false).expect("forget unprotected");
    assert_eq!(r.removed(), 1);
    assert!(ids(&repo).is_empty());
}

#[test]
fn protect_resolves_every_name_before_changing_anything() {
    let env = env();
    let repo = env.open();
    let mut rng = Rng(12);
    let s: Vec<SnapshotId> = (0..2)
        .map(|d| stream_backup(&repo, "a", START + d * DAY, &mut rng))
        .collect();
    let missing = if s.iter().any(|i| i.to_hex().starts_with("0000")) {
        "ffff"
    } else {
        "0000"
    };
    let e = set_protected(&repo, &[s[0].to_hex(), missing.into()], true).expect_err("no match");
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let e = set_protected(&repo, &["zz".into()], true).expect_err("not hex");
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    let e = set_protected(&repo, &[], true).expect_err("nothing named");
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    let mut want = s.clone();
    want.sort();
    assert_eq!(ids(&repo), want);
    assert!(
        repo.list_snapshots()
            .expect("list")
            .iter()
            .all(|(_, s)| !s.protected)
    );

    // Both at once: each gets its own new snapshot, in the order named.
    let changes = set_protected(&repo, &[s[1].to_hex(), s[0].to_hex()], true).expect("protect");
    assert_eq!(
        changes.iter().map(|c| c.old).collect::<Vec<_>>(),
        vec![s[1], s[0]]
    );
    let mut news: Vec<SnapshotId> = changes.iter().map(|c| c.new.expect("new")).collect();
    news.sort();
    assert_eq!(ids(&repo), news);
    // The data is untouched: the protected snapshots still pass a check.
    let report = engine::checker::check(
        &repo,
        &engine::checker::CheckOptions::default(),
        &NoProgress,
    )
    .expect("check");
    assert!(report.is_clean(), "{:?}", report.errors);
}
