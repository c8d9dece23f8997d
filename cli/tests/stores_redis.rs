//! Redis, end to end with the real `cairn` binary and a real, private `redis-server`: fill it
//! with keys of every common type (some binary, some with a TTL), BGSAVE, back up the RDB
//! file, change 1% of the keys, back up again, then load each snapshot's RDB into a fresh
//! server and compare every key's type and value with what the server held at that backup.
//!
//! The servers come from `common::servers`; the test skips with a notice when Redis is not
//! installed, and fails under `CI=true`.

mod common;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::process::Stdio;

use common::servers::{RedisConn, RedisServer, Reply};
use common::{Phases, Repo, mib};

/// Keys loaded. With values of ~1.5 KiB on average the RDB is ~25 MiB, ~400 chunks of the
/// `stream` profile; 1% of the keys changed (one key in a hundred, spread evenly) touches
/// about half of them.
const KEYS: u64 = 20_000;

/// A deterministic xorshift generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn range(&mut self, lo: u64, hi: u64) -> usize {
        (lo + self.below(hi - lo)) as usize
    }
    /// Random bytes: every value from 0 to 255, CR and LF included.
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next().to_le_bytes()[3]).collect()
    }
    /// Text that compresses (as JSON-ish application data does).
    fn text(&mut self, n: usize) -> Vec<u8> {
        const WORDS: [&str; 12] = [
            "workflow",
            "node",
            "status",
            "ok",
            "retry",
            "agent",
            "skill",
            "token",
            "user",
            "\"id\":",
            "{\"run\":",
            "},",
        ];
        let mut s = Vec::with_capacity(n + 16);
        while s.len() < n {
            s.extend_from_slice(WORDS[self.below(WORDS.len() as u64) as usize].as_bytes());
            s.extend_from_slice(format!(" {} ", self.below(100_000)).as_bytes());
        }
        s.truncate(n);
        s
    }
    /// Mostly text, one value in four random bytes.
    fn value(&mut self, n: usize) -> Vec<u8> {
        if self.below(4) == 0 {
            self.bytes(n)
        } else {
            self.text(n)
        }
    }
}

/// The kind of key number `i`.
fn kind(i: u64) -> &'static str {
    match i % 4 {
        _ if i % 50 == 5 => "zset",
        0 => "string",
        1 => "hash",
        2 => "list",
        _ => "set",
    }
}

/// Key names are binary-safe too: some carry bytes that are not UTF-8.
fn key(i: u64) -> Vec<u8> {
    let mut k = format!("{}:{i:06}", kind(i)).into_bytes();
    if i.is_multiple_of(13) {
        k.extend_from_slice(&[0xff, 0x00, b'\n', 0x80]);
    }
    k
}

fn fill(conn: &mut RedisConn) {
    let mut rng = Rng(0x5EED_0000_0000_0001);
    let mut cmds: Vec<Vec<Vec<u8>>> = Vec::new();
    for i in 0..KEYS {
        let k = key(i);
        match kind(i) {
            "string" => {
                let n = rng.range(200, 5000);
                cmds.push(vec![b"SET".to_vec(), k.clone(), rng.value(n)]);
            }
            "hash" => {
                let mut c = vec![b"HSET".to_vec(), k.clone()];
                for f in 0..rng.range(4, 24) {
                    c.push(format!("field{f}").into_bytes());
                    let n = rng.range(10, 200);
                    c.push(rng.value(n));
                }
                cmds.push(c);
            }
            "list" => {
                let mut c = vec![b"RPUSH".to_vec(), k.clone()];
                for _ in 0..rng.range(4, 24) {
                    let n = rng.range(10, 150);
                    c.push(rng.value(n));
                }
                cmds.push(c);
            }
            "set" => {
                let mut c = vec![b"SADD".to_vec(), k.clone()];
                for j in 0..rng.range(4, 24) {
                    let mut m = format!("member-{i}-{j}-").into_bytes();
                    let n = rng.range(0, 80);
                    m.extend(rng.value(n));
                    c.push(m);
                }
                cmds.push(c);
            }
            "zset" => {
                let mut c = vec![b"ZADD".to_vec(), k.clone()];
                for j in 0..rng.range(4, 24) {
                    c.push(format!("{}.{}", rng.below(10_000), rng.below(1000)).into_bytes());
                    c.push(format!("player-{j}").into_bytes());
                }
                cmds.push(c);
            }
            _ => unreachable!(),
        }
        if i % 97 == 0 {
            // A TTL far in the future: it survives the RDB round trip.
            cmds.push(vec![b"EXPIRE".to_vec(), k, b"604800".to_vec()]);
        }
    }
    conn.pipeline(&cmds);
}

/// Changes key `i` for every `i % 100 == 37`: 1% of the keys, spread evenly, each in place
/// (a few bytes of a string, one hash field, one list element, one new set or zset member).
fn change_one_percent(conn: &mut RedisConn) -> usize {
    let mut rng = Rng(0x5EED_0000_0000_0002);
    let mut cmds: Vec<Vec<Vec<u8>>> = Vec::new();
    for i in (0..KEYS).filter(|i| i % 100 == 37) {
        let k = key(i);
        cmds.push(match kind(i) {
            "string" => vec![b"SETRANGE".to_vec(), k, b"100".to_vec(), rng.bytes(16)],
            "hash" => vec![b"HSET".to_vec(), k, b"field0".to_vec(), rng.text(60)],
            "list" => vec![b"LSET".to_vec(), k, b"0".to_vec(), rng.bytes(40)],
            "set" => vec![b"SADD".to_vec(), k, rng.text(30)],
            "zset" => vec![b"ZADD".to_vec(), k, b"1.5".to_vec(), b"newcomer".to_vec()],
            _ => unreachable!(),
        });
    }
    conn.pipeline(&cmds);
    cmds.len()
}

/// One key's logical content: type, whether it has a TTL, and its value in a canonical order
/// (hash pairs and set members sorted; list and zset order as the server returns them).
#[derive(Debug, PartialEq, Eq)]
struct Entry {
    kind: String,
    has_ttl: bool,
    value: Vec<Vec<u8>>,
}

/// Every key of the server and its content.
fn record(conn: &mut RedisConn) -> BTreeMap<Vec<u8>, Entry> {
    let mut keys = Vec::new();
    let mut cursor = b"0".to_vec();
    loop {
        let mut r = conn
            .cmd(&[&"SCAN", &cursor, &"COUNT", &"1000"])
            .array()
            .into_iter();
        cursor = r.next().and_then(Reply::bulk).expect("SCAN cursor");
        keys.extend(r.next().expect("SCAN keys").bulks());
        if cursor == b"0" {
            break;
        }
    }
    keys.sort();
    keys.dedup();
    let types = conn.pipeline(
        &keys
            .iter()
            .map(|k| vec![b"TYPE".to_vec(), k.clone()])
            .collect::<Vec<_>>(),
    );
    let types: Vec<String> = types
        .into_iter()
        .map(|t| match t {
            Reply::Status(s) => s,
            other => panic!("TYPE replied {other:?}"),
        })
        .collect();
    let fetch: Vec<Vec<Vec<u8>>> = keys
        .iter()
        .zip(&types)
        .map(|(k, t)| {
            let k = k.clone();
            match t.as_str() {
                "string" => vec![b"GET".to_vec(), k],
                "hash" => vec![b"HGETALL".to_vec(), k],
                "list" => vec![b"LRANGE".to_vec(), k, b"0".to_vec(), b"-1".to_vec()],
                "set" => vec![b"SMEMBERS".to_vec(), k],
                "zset" => vec![
                    b"ZRANGE".to_vec(),
                    k,
                    b"0".to_vec(),
                    b"-1".to_vec(),
                    b"WITHSCORES".to_vec(),
                ],
                other => panic!("unexpected type {other}"),
            }
        })
        .collect();
    let values = conn.pipeline(&fetch);
    let ttls = conn.pipeline(
        &keys
            .iter()
            .map(|k| vec![b"PTTL".to_vec(), k.clone()])
            .collect::<Vec<_>>(),
    );
    keys.into_iter()
        .zip(types)
        .zip(values.into_iter().zip(ttls))
        .map(|((k, kind), (v, ttl))| {
            let value = match kind.as_str() {
                "string" => vec![v.bulk().expect("GET of an existing key")],
                "hash" => {
                    let flat = v.bulks();
                    let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = flat
                        .chunks(2)
                        .map(|p| (p[0].clone(), p[1].clone()))
                        .collect();
                    pairs.sort();
                    pairs.into_iter().flat_map(|(f, v)| [f, v]).collect()
                }
                "set" => {
                    let mut m = v.bulks();
                    m.sort();
                    m
                }
                _ => v.bulks(),
            };
            let ttl = ttl.int();
            assert!(ttl != -2, "key vanished while being recorded");
            (
                k,
                Entry {
                    kind,
                    has_ttl: ttl >= 0,
                    value,
                },
            )
        })
        .collect()
}

/// Asserts two records are equal, naming the first differing key instead of printing both.
fn assert_same(what: &str, want: &BTreeMap<Vec<u8>, Entry>, got: &BTreeMap<Vec<u8>, Entry>) {
    assert_eq!(got.len(), want.len(), "{what}: number of keys");
    for (k, w) in want {
        let name = String::from_utf8_lossy(k);
        let g = got
            .get(k)
            .unwrap_or_else(|| panic!("{what}: key {name:?} missing"));
        assert!(
            g == w,
            "{what}: key {name:?} differs: want {w:?}, got {g:?}"
        );
    }
}

#[test]
fn redis_rdb_backup_change_restore_into_fresh_instance() {
    let mut t = Phases::new("redis");
    let Some(redis) = RedisServer::start_or_skip("stores_redis") else {
        return;
    };
    let repo = Repo::new();
    t.mark("server start + cairn init");

    let mut conn = redis.conn();
    fill(&mut conn);
    t.mark(&format!("fill {KEYS} keys"));
    let day1 = record(&mut conn);
    assert_eq!(day1.len() as u64, KEYS);
    let ttl_keys = day1.values().filter(|e| e.has_ttl).count();
    assert!(ttl_keys > 100, "{ttl_keys} keys with a TTL");
    t.mark("record every key");

    redis.bgsave_and_wait();
    let rdb1 = fs::read(redis.rdb_path()).expect("read dump.rdb after BGSAVE");
    t.mark("BGSAVE");
    let backup_args = ["--stdin", "--stdin-name", "dump.rdb", "--tag", "redis"];
    let b1 = repo.backup(
        &backup_args,
        Stdio::from(File::open(redis.rdb_path()).expect("open dump.rdb")),
    );
    assert_eq!(b1.bytes_read, rdb1.len() as u64);
    eprintln!("[redis] {}", b1.describe("backup 1 (RDB)"));
    t.mark("backup 1");

    let changed = change_one_percent(&mut conn);
    let day2 = record(&mut conn);
    assert_ne!(day1, day2);
    redis.bgsave_and_wait();
    let rdb2 = fs::read(redis.rdb_path()).expect("read dump.rdb after the second BGSAVE");
    let b2 = repo.backup(
        &backup_args,
        Stdio::from(File::open(redis.rdb_path()).expect("open dump.rdb")),
    );
    eprintln!(
        "[redis] {} -- {changed} of {KEYS} keys changed; RDB {}",
        b2.describe("backup 2 (1% of keys changed)"),
        mib(rdb2.len() as u64)
    );
    t.mark("change 1% + BGSAVE + backup 2");
    // 1 % of the keys touch about half the chunks of the RDB, but each changed chunk is stored
    // against the one it replaces (based groups, SPEC §7): the bytes stored stay small.
    assert!(
        b2.data_added_stored * 20 < b1.data_added_stored,
        "the second backup stored {} against the first's {}: the changed chunks were not \
         stored as their differences",
        mib(b2.data_added_stored),
        mib(b1.data_added_stored)
    );
    drop(conn);
    drop(redis);
    t.mark("stop the source server");

    // Restore each snapshot's RDB onto a fresh server, as after losing the machine.
    for (backup, rdb, want, what) in [
        (&b1, &rdb1, &day1, "snapshot 1"),
        (&b2, &rdb2, &day2, "snapshot 2"),
    ] {
        let restored_rdb = repo.dump(&backup.id, "dump.rdb");
        assert!(
            restored_rdb == *rdb,
            "{what}: dumped RDB differs from the file backed up"
        );
        let fresh = RedisServer::start_with_rdb(&restored_rdb);
        let mut c = fresh.conn();
        assert_eq!(
            fresh.cli(&["DBSIZE"]),
            KEYS.to_string(),
            "{what}: keys loaded"
        );
        assert_same(what, want, &record(&mut c));
        t.mark(&format!("restore {what} into a fresh server + compare"));
    }
}

#[test]
fn redis_servers_run_side_by_side_and_clean_up() {
    let Some(a) = RedisServer::start_or_skip("stores_redis") else {
        return;
    };
    let b = std::thread::spawn(RedisServer::start)
        .join()
        .expect("start a second Redis");
    assert_ne!(a.port(), b.port());
    a.conn().cmd(&[&"SET", &"only-in-a", &"1"]);
    assert_eq!(a.cli(&["EXISTS", "only-in-a"]), "1");
    assert_eq!(b.cli(&["EXISTS", "only-in-a"]), "0");
    a.bgsave_and_wait();
    assert!(a.rdb_path().is_file());
    // Twice in a row: the second save must be waited for too, not mistaken for the first.
    a.conn().cmd(&[&"SET", &"second", &"2"]);
    a.bgsave_and_wait();
    let reloaded = RedisServer::start_with_rdb(&fs::read(a.rdb_path()).expect("read rdb"));
    assert_eq!(reloaded.cli(&["GET", "second"]), "2");

    let dirs = [a.dir().to_path_buf(), b.dir().to_path_buf()];
    drop(a);
    drop(b);
    for d in &dirs {
        assert!(!d.exists(), "{} left behind", d.display());
    }
}
