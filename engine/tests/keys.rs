//! Key management on a real repository (SPEC §4, `engine::keys`): adding a key and opening with
//! either password, listing (also damaged key files), removing (never the last key nor the
//! current one), changing the password without touching data, a crash between writing the
//! new key and deleting the old one, and key ids by prefix.

mod common;

use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::Arc;

use bytes::Bytes;
use common::intercept::{Intercept, Intercepted};
use common::{Env, PASSWORD, Rng, env};
use engine::ErrorKind;
use engine::archiver::{BackupOptions, Source, backup};
use engine::backend::faulty::FaultyBackend;
use engine::backend::{Backend, FileType, LocalBackend};
use engine::keys::{
    AddKeyOptions, KeyState, add_key, change_password, list_keys, remove_key, resolve_key,
};
use engine::progress::NoProgress;
use engine::repository::{OpenOptions, Repository};
use repo_format::{Id, KdfParams, object_id};

/// Fast KDF, fixed names: what every key these tests add uses.
fn opts() -> AddKeyOptions {
    AddKeyOptions {
        kdf: KdfParams::TEST,
        hostname: "keyhost".into(),
        username: "keyuser".into(),
    }
}

fn open_with(env: &Env, password: &[u8]) -> engine::Result<Repository> {
    let opts = OpenOptions {
        cache_dir: Some(env.cache.clone()),
    };
    Repository::open(&env.repo_path, password, &opts)
}

fn key_ids(repo: &Repository) -> Vec<Id> {
    let mut v = repo.list_ids(FileType::Key).expect("list keys");
    v.sort();
    v
}

/// Every object other than key files, by path, with its bytes: what a key operation must
/// leave exactly as it was.
fn non_key_objects(repo: &Repository) -> BTreeMap<String, Bytes> {
    let backend = repo.backend();
    let mut out = BTreeMap::new();
    for t in FileType::ALL {
        if t == FileType::Key {
            continue;
        }
        for info in repo.block_on(backend.list(t)).expect("list") {
            let bytes = repo.block_on(backend.get(t, &info.name)).expect("get");
            out.insert(t.path(&info.name), bytes);
        }
    }
    out
}

fn stream_backup(repo: &Repository, bytes: Vec<u8>) {
    let opts = BackupOptions::new(Source::Stream {
        name: "db.dump".into(),
        reader: Box::new(Cursor::new(bytes)),
    });
    backup(repo, opts, &NoProgress).expect("backup");
}

#[test]
fn an_added_key_opens_the_repository_beside_the_first_and_both_are_listed() {
    let env = env();
    let first = env.open();
    let first_id = *first.key_id();
    let added = add_key(&first, b"second password", &opts()).expect("add key");
    assert_ne!(added, first_id);
    assert_eq!(key_ids(&first), {
        let mut v = vec![first_id, added];
        v.sort();
        v
    });
    drop(first);

    let by_old = open_with(&env, PASSWORD).expect("open with the first password");
    assert_eq!(*by_old.key_id(), first_id);
    drop(by_old);
    let by_new = open_with(&env, b"second password").expect("open with the added password");
    assert_eq!(*by_new.key_id(), added);
    let e = open_with(&env, b"wrong").expect_err("a wrong password");
    assert_eq!(e.kind(), ErrorKind::WrongPassword);

    let list = list_keys(&by_new).expect("list");
    assert_eq!(list.len(), 2);
    let current: Vec<Id> = list.iter().filter(|k| k.current).map(|k| k.id).collect();
    assert_eq!(current, vec![added]);
    let new_info = list
        .iter()
        .find(|k| k.id == added)
        .expect("added key listed");
    let KeyState::Readable(d) = &new_info.state else {
        panic!("the added key is listed as damaged: {new_info:?}");
    };
    assert_eq!(
        (d.hostname.as_str(), d.username.as_str()),
        ("keyhost", "keyuser")
    );
    assert_eq!(d.params, KdfParams::TEST);
    assert!(d.created > 1_700_000_000, "{}", d.created);
    assert!(list.iter().any(|k| k.id == first_id && !k.current));
}

#[test]
fn the_last_key_and_the_current_key_are_refused_another_is_removed() {
    let env = env();
    let repo = env.open();
    let first = *repo.key_id();
    let e = remove_key(&repo, &first).expect_err("the only key");
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.to_string().contains("only key"), "{e}");
    assert_eq!(key_ids(&repo), vec![first]);

    let second = add_key(&repo, b"second", &opts()).expect("add");
    let e = remove_key(&repo, &first).expect_err("the current key");
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(
        e.to_string()
            .contains("open with another key's password to remove this one"),
        "{e}"
    );
    assert_eq!(key_ids(&repo).len(), 2);
    // Removing the other key is fine from this session.
    remove_key(&repo, &second).expect("remove the other key");
    assert_eq!(key_ids(&repo), vec![first]);
    let e = open_with(&env, b"second").expect_err("removed key");
    assert_eq!(e.kind(), ErrorKind::WrongPassword);

    // And the other way round: opened with a second key, the first one can go.
    let third = add_key(&repo, b"third", &opts()).expect("add");
    drop(repo);
    let repo = open_with(&env, b"third").expect("open with the third password");
    remove_key(&repo, &first).expect("remove the first key");
    assert_eq!(key_ids(&repo), vec![third]);
    let e = open_with(&env, PASSWORD).expect_err("first key removed");
    assert_eq!(e.kind(), ErrorKind::WrongPassword);
    let e = remove_key(&repo, &first).expect_err("already gone");
    assert_eq!(e.kind(), ErrorKind::NotFound);
}

#[test]
fn passwd_replaces_the_current_key_and_touches_no_other_object() {
    let env = env();
    let repo = env.open();
    let old = *repo.key_id();
    let mut rng = Rng(0x6b65_7973);
    let data = rng.bytes(300_000);
    stream_backup(&repo, data.clone());
    let before = non_key_objects(&repo);
    assert!(before.keys().any(|p| p.starts_with("data/")), "{before:?}");
    assert!(before.keys().any(|p| p.starts_with("index/")));
    assert!(before.keys().any(|p| p.starts_with("snapshots/")));

    let change = change_password(&repo, b"new password", &opts()).expect("passwd");
    assert_eq!(change.removed, old);
    assert_eq!(key_ids(&repo), vec![change.added]);
    assert_eq!(
        non_key_objects(&repo),
        before,
        "passwd changed a non-key object"
    );
    drop(repo);

    let e = open_with(&env, PASSWORD).expect_err("old password");
    assert_eq!(e.kind(), ErrorKind::WrongPassword);
    let repo = open_with(&env, b"new password").expect("open with the new password");
    assert_eq!(*repo.key_id(), change.added);
    let (id, _) = repo.resolve_snapshot("latest").expect("latest");
    let out = common::grace::dump(&repo, &id).expect("dump");
    assert!(out == data, "the dumped stream differs after passwd");
}

#[test]
fn a_crash_between_writing_the_new_key_and_deleting_the_old_leaves_both_working() {
    let env = env();
    let local: Arc<dyn Backend> = Arc::new(LocalBackend::new(std::path::Path::new(&env.repo_path)));
    let (faulty, plan) = FaultyBackend::wrap(local);
    let open_opts = OpenOptions {
        cache_dir: Some(env.cache.clone()),
    };
    let repo = Repository::open_with_backend(faulty.clone(), &env.repo_path, PASSWORD, &open_opts)
        .expect("open");
    let old = *repo.key_id();

    // Write 0 is the new key file, write 1 the deletion of the old one: the process "dies"
    // after the first.
    plan.reset_counters().crash_after_writes(1);
    let e = change_password(&repo, b"new password", &opts()).expect_err("crash before delete");
    let msg = format!("{e:?}");
    assert!(msg.contains("could not be deleted"), "{msg}");
    assert!(
        msg.contains(&format!("cairn key remove {}", old.to_hex())),
        "{msg}"
    );
    assert_eq!(plan.counts().writes_persisted, 1);
    drop(repo);

    let by_old = open_with(&env, PASSWORD).expect("the old password still opens");
    assert_eq!(*by_old.key_id(), old);
    assert_eq!(key_ids(&by_old).len(), 2);
    drop(by_old);
    let by_new = open_with(&env, b"new password").expect("the new password opens");
    assert_ne!(*by_new.key_id(), old);
    // Finishing by hand, as the message says.
    remove_key(&by_new, &old).expect("remove the old key");
    assert_eq!(key_ids(&by_new), vec![*by_new.key_id()]);
    drop(by_new);

    // A crash before the new key is written leaves the old key alone.
    plan.disarm().reset_counters();
    let repo = Repository::open_with_backend(faulty, &env.repo_path, b"new password", &open_opts)
        .expect("open");
    let current = *repo.key_id();
    plan.reset_counters().crash_after_writes(0);
    change_password(&repo, b"third", &opts()).expect_err("crash before the new key");
    assert_eq!(plan.counts().writes_persisted, 0);
    assert_eq!(key_ids(&repo), vec![current]);
    drop(repo);
    open_with(&env, b"new password").expect("the current password still opens");
}

#[test]
fn keys_are_found_by_unique_prefix_and_an_ambiguous_one_is_an_error() {
    let env = env();
    let repo = env.open();
    let first = *repo.key_id();
    // Add keys until two ids share their first hex digit (at most 16 more, by pigeonhole).
    let mut ids = vec![first];
    let shared = loop {
        let id = add_key(&repo, b"another", &opts()).expect("add");
        let digit = &id.to_hex()[..1];
        if ids.iter().any(|other| other.to_hex().starts_with(digit)) {
            ids.push(id);
            break digit.to_string();
        }
        ids.push(id);
    };
    let e = resolve_key(&repo, &shared).expect_err("ambiguous prefix");
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.to_string().contains("give more digits"), "{e}");
    // Nothing was removed on the ambiguous prefix.
    assert_eq!(key_ids(&repo).len(), ids.len());

    for id in &ids {
        assert_eq!(resolve_key(&repo, &id.to_hex()).expect("full id"), *id);
        assert_eq!(
            resolve_key(&repo, &id.to_hex().to_ascii_uppercase()).expect("upper case"),
            *id
        );
    }
    // The shortest unique prefix of the first key.
    let hex = first.to_hex();
    let unique = (1..=64)
        .map(|n| &hex[..n])
        .find(|p| ids.iter().filter(|i| i.to_hex().starts_with(p)).count() == 1)
        .expect("a full id is unique");
    assert_eq!(resolve_key(&repo, unique).expect("unique prefix"), first);
    assert_eq!(
        resolve_key(&repo, &"0".repeat(64))
            .expect_err("no match")
            .kind(),
        ErrorKind::NotFound
    );
    for bad in ["", "xyz", "12 34"] {
        assert_eq!(
            resolve_key(&repo, bad).expect_err(bad).kind(),
            ErrorKind::InvalidInput
        );
    }
}

#[test]
fn damaged_key_files_are_listed_as_damaged_and_can_be_removed() {
    let env = env();
    let repo = env.open();
    let current = *repo.key_id();
    // Garbage under its own hash (parses as nothing), and a valid key file under a wrong name.
    let garbage = b"not a key file".to_vec();
    let garbage_id = object_id(&garbage);
    let backend = repo.backend().clone();
    repo.block_on(backend.put(FileType::Key, &garbage_id.to_hex(), Bytes::from(garbage)))
        .expect("put garbage");
    let good = repo
        .block_on(backend.get(FileType::Key, &current.to_hex()))
        .expect("read the current key");
    let renamed = Id([0xab; 32]);
    repo.block_on(backend.put(FileType::Key, &renamed.to_hex(), good))
        .expect("put renamed");

    let list = list_keys(&repo).expect("a damaged key file does not fail the listing");
    assert_eq!(list.len(), 3);
    assert!(matches!(list[0].state, KeyState::Readable(_)) && list[0].current);
    for id in [garbage_id, renamed] {
        let k = list
            .iter()
            .find(|k| k.id == id)
            .expect("damaged key listed");
        let KeyState::Damaged(why) = &k.state else {
            panic!("{id} should be damaged: {k:?}");
        };
        assert!(!k.current);
        assert!(!why.is_empty());
    }
    drop(repo);
    // The damaged files do not stop the repository from opening, and can be removed.
    let repo = env.open();
    remove_key(&repo, &garbage_id).expect("remove garbage");
    remove_key(&repo, &renamed).expect("remove renamed");
    assert_eq!(key_ids(&repo), vec![current]);
}

#[test]
fn bad_options_write_nothing() {
    let env = env();
    let repo = env.open();
    let long = AddKeyOptions {
        hostname: "h".repeat(256),
        ..opts()
    };
    let e = add_key(&repo, b"pw", &long).expect_err("host name too long");
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.to_string().contains("255"), "{e}");
    let weak = AddKeyOptions {
        kdf: KdfParams {
            m_cost: 4,
            t_cost: 1,
            p_cost: 1,
        },
        ..opts()
    };
    let e = add_key(&repo, b"pw", &weak).expect_err("KDF memory below the minimum");
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert_eq!(key_ids(&repo), vec![*repo.key_id()]);
}

/// Simulates another process that removes this session's key between this removal's checks and
/// its delete: the first delete of a key file removes `also` first.
#[derive(Debug)]
struct RacingRemover {
    inner: Arc<dyn Backend>,
    also: std::sync::Mutex<Option<String>>,
}

#[async_trait::async_trait]
impl Intercept for RacingRemover {
    fn inner(&self) -> &dyn Backend {
        &*self.inner
    }
    async fn delete(&self, t: FileType, name: &str) -> Result<(), engine::backend::BackendError> {
        let also = self.also.lock().expect("lock").take();
        if let (FileType::Key, Some(other)) = (t, also) {
            self.inner.delete(t, &other).await?;
        }
        self.inner.delete(t, name).await
    }
}

/// Two removals opened with different keys, each removing the other's key at the same time,
/// must not leave the repository without a key: the session's key is written back.
#[test]
fn racing_removals_never_leave_no_key() {
    let env = env();
    let first = {
        let repo = env.open();
        add_key(&repo, b"second password", &opts()).expect("add");
        *repo.key_id()
    };
    let local: Arc<dyn Backend> = Arc::new(LocalBackend::new(std::path::Path::new(&env.repo_path)));
    let racing = Arc::new(Intercepted(RacingRemover {
        inner: local,
        also: std::sync::Mutex::new(None),
    }));
    // This session opened with the second key and removes the first; "another process"
    // (opened with the first) removes the second at the same moment.
    let repo = Repository::open_with_backend(
        racing.clone(),
        &env.repo_path,
        b"second password",
        &OpenOptions {
            cache_dir: Some(env.cache.clone()),
        },
    )
    .expect("open with the second key");
    let second = *repo.key_id();
    assert_ne!(first, second);
    *racing.also.lock().expect("lock") = Some(second.to_hex());
    let e = remove_key(&repo, &first).expect_err("the race is reported");
    assert!(e.to_string().contains("written back"), "{e}");
    assert_eq!(
        key_ids(&repo),
        vec![second],
        "this session's key was put back"
    );
    drop(repo);
    open_with(&env, b"second password").expect("the remaining key opens");
}
