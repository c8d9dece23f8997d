//! Tests of [`parse`] as a whole: the example file, one case per class of error (each message
//! with its `cairn.toml:LINE: KEY:`), `${VAR}` expansion; [`roundtrip`]: generated configs
//! written out and parsed back.

mod roundtrip;

use std::path::Path;
use std::time::Duration;

use super::*;
use crate::retention::{KeepDuration, KeepPolicy};

/// The environment the tests parse with.
fn env(name: &str) -> Option<String> {
    match name {
        "PGHOST" => Some("db.internal".into()),
        "BACKUP_ROOT" => Some("/srv/backups".into()),
        "EMPTY" => Some(String::new()),
        _ => None,
    }
}

fn parse_ok(text: &str) -> Config {
    parse(text, Path::new("cairn.toml"), &env).unwrap_or_else(|e| panic!("{e}\n---\n{text}"))
}

fn errors(text: &str) -> Vec<String> {
    match parse(text, Path::new("cairn.toml"), &env) {
        Ok(c) => panic!("parsed, but should not:\n{text}\n{c:?}"),
        Err(e) => e.errors().iter().map(ToString::to_string).collect(),
    }
}

fn dur(s: &str) -> KeepDuration {
    s.parse().expect("duration")
}

const HEAD: &str =
    "[repository]\nlocation = \"/var/backups/cairn\"\npassword_file = \"/etc/cairn/password\"\n";

/// A valid file: HEAD (lines 1-3), then `store` from line 4 on.
fn with_store(store: &str) -> String {
    format!("{HEAD}{store}")
}

const PG: &str = "[stores.pg]\ntype = \"command\"\ncommand = \"pg_dump db\"\nretention = { keep_daily = 30 }\ninterval = \"24h\"\n";

#[test]
fn the_example_holds_both_runbooks() {
    let text = include_str!("../../../../examples/cairn.toml");
    let c = parse(text, Path::new("examples/cairn.toml"), &|_| None)
        .unwrap_or_else(|e| panic!("examples/cairn.toml: {e}"));
    let names: Vec<&str> = c.stores.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "postgres",
            "redis",
            "n8n",
            "skills",
            "artifacts",
            "casare-db",
            "casare-config",
            "casare-vault",
            "casare-workflows",
            "casare-logs"
        ]
    );
    assert_eq!(c.repository.location, "/var/backups/cairn");
    assert_eq!(c.copies.len(), 1);
    assert_eq!(c.copies[0].name, "offsite");

    let store = |n: &str| c.store(n).unwrap_or_else(|| panic!("store {n}"));
    let policy = |n: &str| store(n).retention.policy().cloned();
    // Postgres daily for 30 days.
    assert_eq!(
        policy("postgres"),
        Some(KeepPolicy {
            daily: Some(30),
            ..KeepPolicy::default()
        })
    );
    let pg = store("postgres");
    assert_eq!(pg.interval, Duration::from_secs(86_400));
    assert_eq!(pg.file_name(), Some("clawdbot.dump"));
    let StoreKind::Command(cmd) = &pg.kind else {
        panic!("postgres is a command store");
    };
    assert_eq!(
        cmd.command.argv(),
        ["pg_dump", "--format=custom", "--compress=0", "clawdbot"]
    );
    assert!(pg.env.contains(&("PGHOST".into(), "localhost".into())));
    // Redis every 6 hours for 7 days.
    let redis = store("redis");
    assert_eq!(redis.interval, Duration::from_secs(6 * 3600));
    assert_eq!(
        policy("redis"),
        Some(KeepPolicy {
            within_hourly: Some(dur("7d")),
            ..KeepPolicy::default()
        })
    );
    assert!(
        matches!(&redis.kind, StoreKind::Redis(r) if r.rdb_path == Path::new("/var/lib/redis/dump.rdb"))
    );
    // Artifacts 90 days, skills forever.
    assert_eq!(
        policy("artifacts"),
        Some(KeepPolicy {
            within_daily: Some(dur("90d")),
            ..KeepPolicy::default()
        })
    );
    assert_eq!(store("skills").retention, Retention::Forever);
    assert!(
        matches!(&store("n8n").kind, StoreKind::Directory(d) if d.exclude == ["*.log", "cache/"])
    );
    // The disaster-recovery order of the runbooks; logs last.
    let order: Vec<&str> = c.restore_order().iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        order,
        [
            "postgres",
            "redis",
            "n8n",
            "skills",
            "artifacts",
            "casare-db",
            "casare-config",
            "casare-vault",
            "casare-workflows",
            "casare-logs"
        ]
    );
}

#[test]
fn a_minimal_file_and_its_defaults() {
    let c = parse_ok(&with_store(
        "[stores.cache]\ntype = \"redis\"\nrdb_path = \"/var/lib/redis/dump.rdb\"\n\
         retention = { keep_last = 3 }\ninterval = \"6h\"\n\
         [stores.files]\ntype = \"directory\"\npaths = [\"/srv\"]\nretention = \"forever\"\n\
         interval = \"1d\"\n",
    ));
    assert_eq!(
        c.repository.password,
        PasswordSource::File("/etc/cairn/password".into())
    );
    assert!(c.copies.is_empty());
    let StoreKind::Redis(r) = &c.stores[0].kind else {
        panic!("redis");
    };
    assert_eq!(r.redis_cli.argv(), ["redis-cli"]);
    assert_eq!(r.bgsave_timeout, DEFAULT_BGSAVE_TIMEOUT);
    assert_eq!(r.file_name, "cache.rdb");
    assert_eq!(c.stores[0].chunker_profile(), "redis");
    assert_eq!(c.stores[1].chunker_profile(), "file");
    // A repository made before the `redis` profile: Redis stores cut with `stream` there.
    let mut old = repo_format::Config::new(repo_format::Id([1; 32]), 0);
    assert_eq!(c.stores[0].chunker_profile_in(&old), "redis");
    old.profiles.retain(|p| p.name != "redis");
    assert_eq!(c.stores[0].chunker_profile_in(&old), "stream");
    assert_eq!(c.stores[1].chunker_profile_in(&old), "file");
    assert_eq!(c.stores[1].file_name(), None);
    let pg = parse_ok(&with_store(PG));
    assert_eq!(pg.stores[0].file_name(), Some("pg.dump"));
}

/// Every class of error: the file, the line, the key path and the substance of the message.
#[test]
fn every_error_names_file_line_and_key() {
    let cases: Vec<(String, &str)> = vec![
        // TOML syntax, with a hint for an unquoted string.
        (
            with_store("[stores.pg]\ntype = command\n"),
            "cairn.toml:5: stores.pg.type: invalid TOML: ",
        ),
        (with_store("[stores.pg]\ntype = command\n"), "quote"),
        (
            with_store("[stores.pg]\nretention = { keep_daily = thirty }\n"),
            "cairn.toml:5: stores.pg.retention.keep_daily: invalid TOML: ",
        ),
        // A bad type does not hide the problems of the other keys.
        (
            with_store(
                &PG.replace("\"command\"", "\"comand\"")
                    .replace("db\"", "db | gzip\""),
            ),
            "cairn.toml:6: stores.pg.command: `|` is shell syntax",
        ),
        // Unknown keys, with a suggestion or the list of keys.
        (
            format!("{HEAD}[store.pg]\n"),
            "cairn.toml:4: store: unknown key: did you mean `stores`?",
        ),
        (
            format!("{HEAD}[[copies]]\n"),
            "cairn.toml:4: copies: write one [[copy]] table",
        ),
        (
            with_store(&PG.replace("command = ", "comand = ")),
            "cairn.toml:6: stores.pg.comand: unknown key: did you mean `command`?",
        ),
        (
            with_store(&format!("{PG}colour = \"red\"\n")),
            "cairn.toml:9: stores.pg.colour: unknown key: the keys here are `type`",
        ),
        (
            with_store(&format!("{PG}paths = [\"/x\"]\n")),
            "cairn.toml:9: stores.pg.paths: `paths` is a setting of directory stores, not of command stores",
        ),
        (
            with_store(&format!("{PG}keep_weekly = 4\n")),
            "cairn.toml:9: stores.pg.keep_weekly: `keep_weekly` is a retention rule",
        ),
        (
            with_store(&format!("{PG}schedule = \"daily\"\n")),
            "cairn has no scheduler",
        ),
        (
            with_store(&PG.replace("keep_daily", "keep_dialy")),
            "cairn.toml:7: stores.pg.retention.keep_dialy: unknown key: did you mean `keep_daily`?",
        ),
        // Missing keys, reported at the table's line.
        (
            "[stores.pg]\ntype = \"command\"\n".to_owned(),
            "cairn.toml:1: repository: missing: add a [repository] table",
        ),
        (
            HEAD.to_owned(),
            "cairn.toml:1: stores: missing: add a [stores.NAME] table",
        ),
        (
            format!("{HEAD}[stores]\n"),
            "cairn.toml:4: stores: no stores",
        ),
        (
            with_store(
                "[stores.pg]\ncommand = \"x\"\nretention = \"forever\"\ninterval = \"1h\"\n",
            ),
            "cairn.toml:4: stores.pg.type: missing: give the store's type",
        ),
        (
            with_store(&PG.replace("command = \"pg_dump db\"\n", "")),
            "cairn.toml:4: stores.pg.command: missing: give the dump command",
        ),
        (
            with_store(&PG.replace("retention = { keep_daily = 30 }\n", "")),
            "cairn.toml:4: stores.pg.retention: missing: say how long to keep",
        ),
        (
            with_store(&PG.replace("interval = \"24h\"\n", "")),
            "cairn.toml:4: stores.pg.interval: missing: give the expected time",
        ),
        (
            with_store(
                "[stores.r]\ntype = \"redis\"\nretention = \"forever\"\ninterval = \"1h\"\n",
            ),
            "cairn.toml:4: stores.r.rdb_path: missing",
        ),
        (
            with_store(
                "[stores.d]\ntype = \"directory\"\nretention = \"forever\"\ninterval = \"1h\"\n",
            ),
            "cairn.toml:4: stores.d.paths: missing",
        ),
        (
            format!("[repository]\npassword_file = \"/p\"\n{PG}"),
            "cairn.toml:1: repository.location: missing",
        ),
        (
            format!("[repository]\nlocation = \"/r\"\n{PG}"),
            "cairn.toml:1: repository.password_file: missing: give password_file",
        ),
        // Secrets.
        (
            format!("[repository]\nlocation = \"/r\"\npassword = \"hunter2\"\n{PG}"),
            "cairn.toml:3: repository.password: an inline password is refused",
        ),
        (
            format!("{HEAD}password_command = \"pass x\"\n{PG}"),
            "cairn.toml:4: repository.password_command: give either password_file or password_command, not both",
        ),
        (
            with_store(&format!("{PG}env = {{ PGPASSWORD = \"hunter2\" }}\n")),
            "cairn.toml:9: stores.pg.env.PGPASSWORD: PGPASSWORD looks like a secret",
        ),
        (
            with_store(&format!("{PG}env = {{ \"A-B\" = \"x\" }}\n")),
            "cairn.toml:9: stores.pg.env.A-B: \"A-B\" is not a valid variable name",
        ),
        // Locations and paths.
        (
            "[repository]\nlocation = \"backups\"\npassword_file = \"/p\"\n".to_owned() + PG,
            "cairn.toml:2: repository.location: \"backups\" is not an absolute path or a URL",
        ),
        (
            "[repository]\nlocation = \"ftp://x\"\npassword_file = \"/p\"\n".to_owned() + PG,
            "has an unknown scheme",
        ),
        (
            "[repository]\nlocation = \"s3://\"\npassword_file = \"/p\"\n".to_owned() + PG,
            "names no bucket",
        ),
        (
            "[repository]\nlocation = \"/r\"\npassword_file = \"~/.pw\"\n".to_owned() + PG,
            "cairn.toml:3: repository.password_file: \"~/.pw\": `~` is not expanded",
        ),
        (
            with_store(
                "[stores.d]\ntype = \"directory\"\npaths = [\"/a\", \"rel\"]\nretention = \"forever\"\ninterval = \"1h\"\n",
            ),
            "cairn.toml:6: stores.d.paths[1]: \"rel\" is a relative path",
        ),
        (
            with_store(
                "[stores.d]\ntype = \"directory\"\npaths = []\nretention = \"forever\"\ninterval = \"1h\"\n",
            ),
            "cairn.toml:6: stores.d.paths: is empty",
        ),
        // Values of the wrong type or form.
        (
            with_store(&PG.replace("keep_daily = 30", "keep_daily = \"thirty\"")),
            "cairn.toml:7: stores.pg.retention.keep_daily: expected a positive integer, found \"thirty\"",
        ),
        (
            with_store(&PG.replace("keep_daily = 30", "keep_daily = 0")),
            "expected a positive integer, found 0",
        ),
        (
            with_store(&PG.replace("keep_daily = 30", "keep_within = \"30x\"")),
            "cairn.toml:7: stores.pg.retention.keep_within: invalid duration \"30x\": unknown unit 'x'",
        ),
        (
            with_store(&PG.replace("{ keep_daily = 30 }", "\"weekly\"")),
            "cairn.toml:7: stores.pg.retention: \"weekly\" is not a retention",
        ),
        (
            with_store(&PG.replace("{ keep_daily = 30 }", "{}")),
            "cairn.toml:7: stores.pg.retention: keeps nothing",
        ),
        (
            with_store(&PG.replace("\"24h\"", "\"1y\"")),
            "cairn.toml:8: stores.pg.interval: 'y' in \"1y\" is not a unit",
        ),
        (
            with_store(&PG.replace("\"24h\"", "24")),
            "cairn.toml:8: stores.pg.interval: expected a duration such as \"24h\", found 24",
        ),
        (
            with_store(&PG.replace("\"command\"", "\"comand\"")),
            "cairn.toml:5: stores.pg.type: unknown store type \"comand\": did you mean \"command\"?",
        ),
        (
            with_store(&PG.replace("[stores.pg]", "[stores.Pg]")),
            "cairn.toml:4: stores.Pg: \"Pg\" is not a valid name",
        ),
        (
            with_store(&format!("{PG}chunker = \"Big Chunks\"\n")),
            "cairn.toml:9: stores.pg.chunker: \"Big Chunks\" is not a valid name",
        ),
        (
            with_store(&format!("{PG}restore_order = -1\n")),
            "cairn.toml:9: stores.pg.restore_order: expected a positive integer, found -1",
        ),
        // Commands.
        (
            with_store(&PG.replace("pg_dump db", "pg_dump db | gzip")),
            "cairn.toml:6: stores.pg.command: `|` is shell syntax",
        ),
        (
            with_store(&PG.replace("\"pg_dump db\"", "[]")),
            "cairn.toml:6: stores.pg.command: the command is empty",
        ),
        (
            with_store(&PG.replace("\"pg_dump db\"", "42")),
            "cairn.toml:6: stores.pg.command: expected a command",
        ),
        (
            with_store(&format!("{PG}before = \"echo 'hi\"\n")),
            "cairn.toml:9: stores.pg.before: a ' quote is not closed",
        ),
        // Variables.
        (
            with_store(&PG.replace("pg_dump db", "pg_dump ${PGDATABASE}")),
            "cairn.toml:6: stores.pg.command: the environment variable PGDATABASE is not set",
        ),
        (
            "[repository]\nlocation = \"$BACKUP_ROOT/cairn\"\npassword_file = \"/p\"\n".to_owned()
                + PG,
            "cairn.toml:2: repository.location: `$BACKUP_ROOT` needs braces",
        ),
        // Conflicts between stores and copies.
        (
            with_store(&format!(
                "{PG}{}",
                PG.replace("[stores.pg]", "[stores.pg2]")
                    .replace("\"pg_dump db\"", "\"pg_dump db2\"\nfile_name = \"pg.dump\"")
            )),
            "cairn.toml:12: stores.pg2.file_name: the file name \"pg.dump\" is also store \"pg\"'s",
        ),
        (
            with_store(
                "[stores.a]\ntype = \"directory\"\npaths = [\"/srv\"]\nretention = \"forever\"\ninterval = \"1h\"\n\
                        [stores.b]\ntype = \"directory\"\npaths = [\"/srv\"]\nretention = \"forever\"\ninterval = \"1h\"\n",
            ),
            "cairn.toml:11: stores.b.paths[0]: /srv is already backed up by store \"a\"",
        ),
        (
            with_store(&format!(
                "{PG}tags = [\"db\", \"redis\"]\n[stores.redis]\ntype = \"redis\"\nrdb_path = \"/d.rdb\"\nretention = \"forever\"\ninterval = \"1h\"\n"
            )),
            "cairn.toml:9: stores.pg.tags[1]: \"redis\" is the name of another store",
        ),
        (
            with_store(&format!("{PG}tags = [\"two words\"]\n")),
            "cairn.toml:9: stores.pg.tags[0]: \"two words\" is not a valid tag",
        ),
        (
            format!("{HEAD}[copy]\nname = \"x\"\n{PG}"),
            "cairn.toml:4: copy: write [[copy]] (double brackets)",
        ),
        (
            format!(
                "{HEAD}[[copy]]\nname = \"off\"\nlocation = \"/var/backups/cairn\"\npassword_file = \"/q\"\n{PG}"
            ),
            "cairn.toml:6: copy[0].location: /var/backups/cairn is already used by the primary [repository]",
        ),
        (
            format!(
                "{HEAD}[[copy]]\nname = \"off\"\nlocation = \"/a\"\npassword_file = \"/q\"\n\
                 [[copy]]\nname = \"off\"\nlocation = \"/b\"\npassword_file = \"/q\"\n{PG}"
            ),
            "cairn.toml:9: copy[1].name: the name \"off\" is already used by copy[0]",
        ),
        (
            format!("{HEAD}[[copy]]\nlocation = \"/a\"\npassword_file = \"/q\"\n{PG}"),
            "cairn.toml:4: copy[0].name: missing: give the copy a name",
        ),
    ];
    for (text, want) in &cases {
        let errs = errors(text);
        assert!(
            errs.iter().any(|e| e.contains(want)),
            "wanted {want:?} among\n{}\n--- in\n{text}",
            errs.join("\n")
        );
    }
}

#[test]
fn several_problems_are_reported_together_in_file_order() {
    let text = with_store(
        "[stores.pg]\ntype = \"command\"\ncomand = \"pg_dump\"\nretention = { keep_daily = \"thirty\" }\n\
         interval = \"1y\"\n",
    );
    let errs = errors(&text);
    let lines: Vec<&str> = errs
        .iter()
        .map(|e| &e[..e.find(": ").unwrap_or(0)])
        .collect();
    assert_eq!(
        lines,
        [
            "cairn.toml:4",
            "cairn.toml:6",
            "cairn.toml:7",
            "cairn.toml:8"
        ],
        "{errs:#?}"
    );
    assert!(errs[0].contains("stores.pg.command: missing"));
    assert!(errs[1].contains("did you mean `command`"));
}

#[test]
fn variables_are_expanded_everywhere_but_keys() {
    let c = parse_ok(
        "[repository]\nlocation = \"${BACKUP_ROOT}/cairn\"\npassword_file = \"${BACKUP_ROOT}/pw\"\n\
         [stores.pg]\ntype = \"command\"\ncommand = [\"pg_dump\", \"--host=${PGHOST}\", \"$${literal}\"]\n\
         restore_command = \"pg_restore -h ${PGHOST} '${PGHOST}'\"\n\
         env = { PGHOST = \"${PGHOST:-localhost}\", PGPORT = \"${PGPORT:-5432}\", X = \"${EMPTY:-dflt}\" }\n\
         retention = { keep_tag = \"${PGHOST}\" }\ninterval = \"${INTERVAL:-12h}\"\n",
    );
    assert_eq!(c.repository.location, "/srv/backups/cairn");
    assert_eq!(
        c.repository.password,
        PasswordSource::File("/srv/backups/pw".into())
    );
    let s = &c.stores[0];
    let StoreKind::Command(cmd) = &s.kind else {
        panic!("command store");
    };
    assert_eq!(
        cmd.command.argv(),
        ["pg_dump", "--host=db.internal", "${literal}"]
    );
    let restore = cmd.restore_command.as_ref().expect("restore command");
    assert_eq!(
        restore.argv(),
        ["pg_restore", "-h", "db.internal", "${PGHOST}"]
    );
    assert_eq!(
        s.env,
        [
            ("PGHOST".to_owned(), "db.internal".to_owned()),
            ("PGPORT".to_owned(), "5432".to_owned()),
            ("X".to_owned(), "dflt".to_owned()),
        ]
    );
    assert_eq!(
        s.retention.policy().map(|p| p.tags.clone()),
        Some(vec!["db.internal".into()])
    );
    assert_eq!(s.interval, Duration::from_secs(12 * 3600));
    // A secret may come from the environment, just not stand in the file.
    parse_ok(&with_store(&format!(
        "{PG}env = {{ PGPASSWORD = \"${{PGHOST}}\" }}\n"
    )));
}

#[test]
fn a_file_that_cannot_be_read_is_one_error_with_its_cause() {
    let d = tempfile::tempdir().expect("tempdir");
    let missing = d.path().join("cairn.toml");
    let e = load(&missing, &env).expect_err("missing");
    assert_eq!(e.errors().len(), 1);
    assert!(e.to_string().contains("cairn.toml: does not exist"), "{e}");
    assert!(std::error::Error::source(&e).is_some());
    std::fs::write(&missing, b"\xff\xfe").expect("write");
    let e = load(&missing, &env).expect_err("not utf-8");
    assert!(e.to_string().contains("is not UTF-8"), "{e}");
    std::fs::write(&missing, with_store(PG)).expect("write");
    assert_eq!(load(&missing, &env).expect("loads").stores[0].name, "pg");
}
