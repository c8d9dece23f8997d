//! PostgreSQL, end to end with the real `cairn` binary and a real, private PostgreSQL server:
//! load pgbench's tables and tables of our own (jsonb, bytea, text with escapes, NULLs, large
//! objects), back up `pg_dump --format=custom --compress=0` through
//! `cairn backup --stdin-from-command`, change 1% of the rows (clustered, then scattered) and
//! back up after each change, drop the database, and restore with
//! `cairn dump SNAPSHOT db.dump | pg_restore` into new databases: every table's row count and
//! content checksum, every sequence, every large object and the schema must equal what the
//! database held when that snapshot was taken.
//!
//! The server comes from `common::servers`; the test skips with a notice when PostgreSQL is
//! not installed, and fails under `CI=true`.

mod common;

use std::collections::BTreeMap;

use common::servers::PgServer;
use common::{Backup, Phases, Repo, mib};

/// pgbench scale: 100,000 accounts per unit. 5 gives a ~48 MiB dump; pgbench loads it in ~1 s
/// and the debug `cairn` backs it up in ~1 s (pgbench's filler compresses to nothing).
const SCALE: u32 = 5;
/// The database backed up, dropped, and restored under other names.
const DB: &str = "clawdbot";

/// Our own tables, beside pgbench's: jsonb, bytea with every byte value, text with newlines,
/// tabs, quotes and backslashes, NULLs, timestamps, a sequence, a GIN index, and large objects
/// (one empty, the others 200-600 KB) referenced from a table.
const OWN_TABLES: &str = r#"
CREATE TABLE docs (
    id bigserial PRIMARY KEY,
    doc jsonb NOT NULL,
    payload bytea NOT NULL,
    note text,
    created timestamptz NOT NULL
);
INSERT INTO docs (doc, payload, note, created)
SELECT jsonb_build_object(
           'n', i,
           'name', 'item ' || i,
           'tags', jsonb_build_array('t' || i % 7, 't' || i % 11),
           'nested', jsonb_build_object('price', i * 1.25, 'ok', i % 2 = 0, 'none', NULL),
           'text', repeat('ünïcødé ✓ ', i % 4)),
       (SELECT decode(string_agg(lpad(to_hex((i * 31 + j * 7 + j * j) % 256), 2, '0'), ''), 'hex')
          FROM generate_series(0, 50 + i % 300) j),
       CASE WHEN i % 10 = 0 THEN NULL
            ELSE 'line 1' || E'\n' || E'tab\there, a quote '' and a backslash \\ ' || i END,
       timestamptz '2026-01-01 00:00:00+00' + i * interval '37 seconds'
  FROM generate_series(1, 20000) i;
CREATE INDEX docs_doc ON docs USING gin (doc);
CREATE TABLE attachments (name text PRIMARY KEY, obj oid NOT NULL);
INSERT INTO attachments
SELECT 'attachment-' || k,
       lo_from_bytea(0, (SELECT decode(string_agg(lpad(to_hex((k * 131 + j * j * 7 + j / 3) % 256), 2, '0'), ''), 'hex')
                           FROM generate_series(1::bigint, 200000 * k) j))
  FROM generate_series(1, 3) k;
INSERT INTO attachments VALUES ('empty', lo_from_bytea(0, ''));
"#;

/// Day 2: 1% of the rows, clustered, as when one customer's or one day's rows change: a
/// contiguous 1% of the accounts (their new versions move to the table's end, so the dump
/// changes in two places), 1% of the docs, 1% as many new history rows, and a few bytes
/// inside one large object.
const CHANGE_CLUSTERED: &str = r#"
UPDATE pgbench_accounts SET abalance = abalance + 100
 WHERE aid BETWEEN (SELECT max(aid) / 2 FROM pgbench_accounts) + 1
               AND (SELECT max(aid) / 2 + max(aid) / 100 FROM pgbench_accounts);
UPDATE docs SET doc = jsonb_set(doc, '{nested,ok}', 'null'), note = coalesce(note, '') || ' (edited)'
 WHERE id BETWEEN 10001 AND 10200;
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime, filler)
SELECT 1 + i % 10, 1, i * 7, i % 1000 - 500, timestamp '2026-11-22 03:00:00' + i * interval '1 second', NULL
  FROM generate_series(1, (SELECT count(*) / 100 FROM pgbench_accounts)) i;
SELECT lo_put(obj, 100000, '\xdeadbeef'::bytea) FROM attachments WHERE name = 'attachment-2';
"#;

/// Day 3: 1% of the accounts again, scattered evenly (every hundredth row). Each 16 KiB
/// chunk of the dump holds ~160 account rows, so nearly every chunk changes: the worst case
/// for any content-defined chunker (reported, not held to a bound).
const CHANGE_SCATTERED: &str =
    "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid % 100 = 0";

/// What a database holds, in a form that compares exactly.
#[derive(Debug, PartialEq, Eq)]
struct Fingerprint {
    /// Table name to `"ROWS MD5"`: the md5 of every row's text form, sorted bytewise.
    tables: BTreeMap<String, String>,
    /// `name=last_value` of every sequence.
    sequences: String,
    /// `oid:length:md5` of every large object.
    large_objects: String,
    /// `pg_dump --schema-only` without comments and the random `\restrict` key.
    schema: String,
}

fn fingerprint(pg: &PgServer, db: &str) -> Fingerprint {
    let names = pg.psql_db(
        db,
        "SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) FROM pg_tables \
         WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1",
    );
    let tables = names
        .lines()
        .map(|t| {
            let sum = pg.psql_db(
                db,
                &format!(
                    "SELECT count(*) || ' ' || md5(coalesce(string_agg(t::text, E'\\n' \
                     ORDER BY t::text COLLATE \"C\"), '')) FROM {t} t"
                ),
            );
            (t.to_string(), sum)
        })
        .collect();
    let sequences = pg.psql_db(
        db,
        "SELECT coalesce(string_agg(schemaname || '.' || sequencename || '=' || \
         coalesce(last_value::text, 'null'), ',' ORDER BY schemaname, sequencename), '') \
         FROM pg_sequences",
    );
    let large_objects = pg.psql_db(
        db,
        "SELECT coalesce(string_agg(oid::text || ':' || length(lo_get(oid)) || ':' || \
         md5(lo_get(oid)), ',' ORDER BY oid), '') FROM pg_largeobject_metadata",
    );
    let out = pg
        .client("pg_dump")
        .args(["--schema-only", "--no-owner", db])
        .output()
        .expect("run pg_dump --schema-only");
    common::assert_success("pg_dump --schema-only", &out);
    let schema = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| {
            !l.starts_with("--") && !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict")
        })
        .collect::<Vec<_>>()
        .join("\n");
    Fingerprint {
        tables,
        sequences,
        large_objects,
        schema,
    }
}

/// Panics naming the first difference instead of printing two whole fingerprints.
fn assert_same(what: &str, want: &Fingerprint, got: &Fingerprint) {
    assert_eq!(
        got.tables.keys().collect::<Vec<_>>(),
        want.tables.keys().collect::<Vec<_>>(),
        "{what}: tables"
    );
    for (t, sum) in &want.tables {
        assert_eq!(&got.tables[t], sum, "{what}: table {t} (rows, md5)");
    }
    assert_eq!(got.sequences, want.sequences, "{what}: sequences");
    assert_eq!(
        got.large_objects, want.large_objects,
        "{what}: large objects"
    );
    assert!(
        got.schema == want.schema,
        "{what}: schema differs:\nwant:\n{}\ngot:\n{}",
        want.schema,
        got.schema
    );
}

/// `cairn backup --stdin-from-command --stdin-name db.dump -- pg_dump ... DB`.
fn backup(repo: &Repo, pg: &PgServer) -> Backup {
    let pg_dump = pg.bin("pg_dump");
    let port = pg.port().to_string();
    repo.backup(
        &[
            "--tag",
            "postgres",
            "--stdin-from-command",
            "--stdin-name",
            "db.dump",
            "--",
            pg_dump.to_str().expect("UTF-8 path of pg_dump"),
            "--format=custom",
            "--compress=0",
            "-h",
            pg.host(),
            "-p",
            &port,
            "-U",
            pg.user(),
            DB,
        ],
        std::process::Stdio::null(),
    )
}

/// `createdb TARGET; cairn dump SNAPSHOT db.dump | pg_restore --dbname TARGET`.
fn restore(repo: &Repo, pg: &PgServer, snapshot: &str, target: &str) {
    pg.create_db(target);
    let mut pg_restore = pg.client("pg_restore");
    pg_restore.args(["--exit-on-error", "--no-owner", "--dbname", target]);
    repo.dump_into(snapshot, "db.dump", pg_restore);
}

#[test]
fn postgres_dump_backup_change_drop_restore() {
    let mut t = Phases::new("postgres");
    let Some(pg) = PgServer::start_or_skip("stores_pg") else {
        return;
    };
    let repo = Repo::new();
    t.mark("initdb + server start + cairn init");

    pg.create_db(DB);
    let out = pg
        .client("pgbench")
        .args(["-i", "-q", "-s", &SCALE.to_string(), DB])
        .output()
        .expect("run pgbench -i");
    common::assert_success("pgbench -i", &out);
    pg.psql_db(DB, OWN_TABLES);
    t.mark(&format!("pgbench -i -s {SCALE} + own tables"));
    let day1 = fingerprint(&pg, DB);
    assert_eq!(
        day1.tables["public.pgbench_accounts"].split(' ').next(),
        Some((SCALE * 100_000).to_string().as_str())
    );
    assert_eq!(day1.large_objects.split(',').count(), 4);
    t.mark("fingerprint");

    let b1 = backup(&repo, &pg);
    eprintln!("[postgres] {}", b1.describe("backup 1 (pg_dump)"));
    t.mark("backup 1");

    pg.psql_db(DB, CHANGE_CLUSTERED);
    let b2 = backup(&repo, &pg);
    eprintln!(
        "[postgres] {}",
        b2.describe("backup 2 (1% of rows changed, clustered)")
    );
    t.mark("clustered 1% change + backup 2");
    assert!(
        b2.data_added * 10 < b2.bytes_read,
        "a clustered 1% change added {} of a {} dump: expected well under 10%",
        mib(b2.data_added),
        mib(b2.bytes_read)
    );

    pg.psql_db(DB, CHANGE_SCATTERED);
    let b3 = backup(&repo, &pg);
    eprintln!(
        "[postgres] {}",
        b3.describe("backup 3 (1% of rows changed, every 100th account)")
    );
    t.mark("scattered 1% change + backup 3");
    // Nearly every chunk changes; the new snapshot must still cost no more than a full copy.
    assert!(
        b3.data_added <= b3.bytes_read + b3.bytes_read / 50,
        "a scattered 1% change added {} of a {} dump",
        mib(b3.data_added),
        mib(b3.bytes_read)
    );

    let day3 = fingerprint(&pg, DB);
    assert_ne!(day1, day3);
    pg.drop_db(DB);
    t.mark("fingerprint + drop database");

    // A failing dump command (the database is gone) exits 1 and leaves no snapshot.
    let before = repo.snapshot_ids().len();
    let pg_dump = pg.bin("pg_dump");
    let port = pg.port().to_string();
    let failed = repo.run(&[
        "backup",
        "--stdin-from-command",
        "--stdin-name",
        "db.dump",
        "--",
        pg_dump.to_str().expect("UTF-8 path of pg_dump"),
        "--format=custom",
        "-h",
        pg.host(),
        "-p",
        &port,
        "-U",
        pg.user(),
        DB,
    ]);
    assert_eq!(
        failed.status.code(),
        Some(1),
        "pg_dump of a dropped database: {}",
        String::from_utf8_lossy(&failed.stderr)
    );
    assert_eq!(
        repo.snapshot_ids().len(),
        before,
        "a failed dump left a snapshot"
    );

    restore(&repo, &pg, &b3.id, "restored_latest");
    t.mark("restore snapshot 3");
    assert_same(
        "snapshot 3 restored",
        &day3,
        &fingerprint(&pg, "restored_latest"),
    );
    t.mark("compare snapshot 3");

    restore(&repo, &pg, &b1.id, "restored_day1");
    assert_same(
        "snapshot 1 restored",
        &day1,
        &fingerprint(&pg, "restored_day1"),
    );
    t.mark("restore + compare snapshot 1");
}

#[test]
fn postgres_servers_run_side_by_side_and_clean_up() {
    let Some(a) = PgServer::start_or_skip("stores_pg") else {
        return;
    };
    let b = std::thread::spawn(PgServer::start)
        .join()
        .expect("start a second PostgreSQL");
    assert_ne!(a.port(), b.port());
    a.create_db("only_in_a");
    let has =
        |pg: &PgServer| pg.psql("SELECT count(*) FROM pg_database WHERE datname = 'only_in_a'");
    assert_eq!(has(&a), "1");
    assert_eq!(has(&b), "0");
    // The environment alone reaches the server (what `cairn run` store commands rely on).
    let out = std::process::Command::new(a.bin("psql"))
        .envs(a.pg_env())
        .args([
            "-X",
            "-A",
            "-t",
            "-d",
            "only_in_a",
            "-c",
            "SELECT current_database()",
        ])
        .output()
        .expect("run psql");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "only_in_a");

    let dirs = [a.dir().to_path_buf(), b.dir().to_path_buf()];
    drop(a);
    drop(b);
    for d in &dirs {
        assert!(!d.exists(), "{} left behind", d.display());
    }
}
