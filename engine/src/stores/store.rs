//! Reading the `[stores.NAME]` tables: the keys every store has, each type's own keys, and the
//! checks across stores (file names and paths used twice, tags that name another store).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use super::command::{self, CommandLine};
use super::config::{
    CommandStore, DirectoryStore, Hooks, RedisStore, Store, StoreKind, check_name,
};
use super::duration;
use super::interpolate::has_reference;
use super::reader::{Table, Val, join, suggest};
use super::retention;

/// Keys every store takes.
const COMMON: [&str; 10] = [
    "type",
    "retention",
    "interval",
    "tags",
    "before",
    "after",
    "on_failure",
    "env",
    "restore_order",
    "chunker",
];
const COMMAND: [&str; 3] = ["command", "restore_command", "file_name"];
const REDIS: [&str; 5] = [
    "rdb_path",
    "redis_cli",
    "bgsave_timeout",
    "restore_command",
    "file_name",
];
const DIRECTORY: [&str; 2] = ["paths", "exclude"];
const TYPES: [&str; 3] = ["command", "redis", "directory"];

/// The default `bgsave_timeout`.
pub const DEFAULT_BGSAVE_TIMEOUT: Duration = Duration::from_secs(600);

/// What earlier stores used, for the checks across stores.
#[derive(Default)]
struct Seen {
    /// File name inside the snapshot → store.
    file_names: HashMap<String, String>,
    /// Backed-up path → store.
    paths: HashMap<PathBuf, String>,
}

/// Reads the `stores` table: every store, in file order.
pub(super) fn read_all(v: &Val<'_, '_>) -> Vec<Store> {
    let Some(t) = v.table("a table of stores: one [stores.NAME] table per store") else {
        return Vec::new();
    };
    if t.table.is_empty() {
        t.cx.error(
            &t.span,
            &t.path,
            "no stores: add a [stores.NAME] table for each thing to back up",
        );
        return Vec::new();
    }
    let names: Vec<&str> = t.table.keys().map(|k| k.get_ref().as_ref()).collect();
    let mut seen = Seen::default();
    let mut stores = Vec::new();
    for (key, v) in t.entries() {
        let name = key.get_ref().as_ref();
        if let Err(e) = check_name(name) {
            t.cx.error(&key.span(), &v.path, e);
        }
        if let Some(s) = read_one(name, &v, &names, &mut seen) {
            stores.push(s);
        }
    }
    stores
}

/// Why a key does not belong in a store of type `kind` (None: no explanation, suggest one).
fn elsewhere(key: &str, kind: Option<&str>) -> Option<String> {
    if let Some(hint) = retention::misplaced_rule(key) {
        return Some(hint);
    }
    if matches!(key, "schedule" | "cron" | "every" | "frequency") {
        return Some(
            "cairn has no scheduler: run `cairn run` from cron or a systemd timer (see docs/); \
             `interval` is how often you expect a good backup, for `cairn status`"
                .to_owned(),
        );
    }
    let kind = kind?;
    let owners: Vec<&str> = [
        ("command", &COMMAND[..]),
        ("redis", &REDIS),
        ("directory", &DIRECTORY),
    ]
    .into_iter()
    .filter(|(_, keys)| keys.contains(&key))
    .map(|(t, _)| t)
    .collect();
    (!owners.is_empty()).then(|| {
        format!(
            "`{key}` is a setting of {} stores, not of {kind} stores",
            owners.join(" and ")
        )
    })
}

fn read_one(name: &str, v: &Val<'_, '_>, names: &[&str], seen: &mut Seen) -> Option<Store> {
    let t = v.table(&format!(
        "a table: [stores.{name}] with type = \"command\", \"redis\" or \"directory\""
    ))?;
    let kind = t
        .require(
            "type",
            "give the store's type: type = \"command\" (a dump command's output), \"redis\" \
             (the RDB file after a BGSAVE) or \"directory\" (files)",
        )
        .and_then(|v| {
            let s = v.string("a store type")?;
            let k = TYPES.iter().find(|t| **t == s);
            if k.is_none() {
                let mean =
                    suggest(&s, &TYPES).map_or(String::new(), |m| format!("did you mean {m:?}? "));
                v.error(format!(
                    "unknown store type {s:?}: {mean}write \"command\", \"redis\" or \"directory\""
                ));
            }
            k.copied()
        });
    let specific: Vec<&str> = match kind {
        Some("command") => COMMAND.to_vec(),
        Some("redis") => REDIS.to_vec(),
        Some("directory") => DIRECTORY.to_vec(),
        // Without a valid type, any type's key may be meant: report only strangers.
        _ => [&COMMAND[..], &REDIS, &DIRECTORY].concat(),
    };
    let known: Vec<&str> = COMMON.iter().copied().chain(specific).collect();
    t.check_keys(&known, &|key| elsewhere(key, kind));

    let retention = t
        .require(
            "retention",
            "say how long to keep its snapshots, e.g. retention = { keep_daily = 30 }, or \
             retention = \"forever\"",
        )
        .and_then(|v| retention::read(&v));
    let interval = t
        .require(
            "interval",
            "give the expected time between good backups, e.g. interval = \"24h\" (`cairn \
             status` alarms when the newest snapshot is older)",
        )
        .and_then(|v| fixed_duration(&v));
    let tags = t
        .get("tags")
        .map(|v| tags(&v, name, names))
        .unwrap_or_default();
    let hooks = Hooks {
        before: t.get("before").and_then(|v| command::read(&v)),
        after: t.get("after").and_then(|v| command::read(&v)),
        on_failure: t.get("on_failure").and_then(|v| command::read(&v)),
    };
    let env = t.get("env").map(|v| env(&v)).unwrap_or_default();
    let restore_order = t.get("restore_order").and_then(|v| v.positive_u32());
    let chunker = t.get("chunker").and_then(|v| {
        let c = v.nonempty("a chunker profile name")?;
        check_name(&c)
            .map_err(|e| {
                v.error(format!(
                    "{e}; the profiles `cairn init` writes are file, stream and redis"
                ))
            })
            .ok()?;
        Some(c)
    });
    // With a bad or missing type, the keys still show what the store was meant to be: check
    // their values now rather than after the type is fixed.
    let meant = kind.or_else(|| {
        ["command", "rdb_path", "paths"]
            .into_iter()
            .zip(TYPES)
            .find(|(key, _)| t.get(key).is_some())
            .map(|(_, ty)| ty)
    });
    let read = match meant {
        Some("command") => read_command(name, &t, seen).map(StoreKind::Command),
        Some("redis") => read_redis(name, &t, seen).map(StoreKind::Redis),
        Some(_) => read_directory(name, &t, seen).map(StoreKind::Directory),
        None => None,
    };
    let kind = read.filter(|_| kind.is_some())?;
    Some(Store {
        name: name.to_owned(),
        kind,
        retention: retention?,
        interval: interval?,
        tags,
        hooks,
        env,
        restore_order,
        chunker,
    })
}

fn fixed_duration(v: &Val<'_, '_>) -> Option<Duration> {
    let s = v.string("a duration such as \"24h\"")?;
    duration::parse(&s).map_err(|e| v.error(e)).ok()
}

fn read_command(name: &str, t: &Table<'_, '_>, seen: &mut Seen) -> Option<CommandStore> {
    let cmd = t
        .require(
            "command",
            "give the dump command whose standard output is backed up, e.g. command = \
             \"pg_dump --format=custom mydb\"",
        )
        .and_then(|v| command::read(&v));
    let restore_command = t.get("restore_command").and_then(|v| command::read(&v));
    let file_name = file_name(name, t, "dump", seen);
    Some(CommandStore {
        command: cmd?,
        restore_command,
        file_name: file_name?,
    })
}

fn read_redis(name: &str, t: &Table<'_, '_>, seen: &mut Seen) -> Option<RedisStore> {
    let rdb_path = t
        .require(
            "rdb_path",
            "give the RDB file Redis writes (`dir` and `dbfilename` in redis.conf), e.g. \
             rdb_path = \"/var/lib/redis/dump.rdb\"",
        )
        .and_then(|v| v.abs_path("the RDB file's path"));
    let redis_cli = match t.get("redis_cli") {
        Some(v) => command::read(&v),
        None => CommandLine::new(vec!["redis-cli".to_owned()]),
    };
    let bgsave_timeout = match t.get("bgsave_timeout") {
        Some(v) => fixed_duration(&v),
        None => Some(DEFAULT_BGSAVE_TIMEOUT),
    };
    let restore_command = t.get("restore_command").and_then(|v| command::read(&v));
    let file_name = file_name(name, t, "rdb", seen);
    Some(RedisStore {
        rdb_path: rdb_path?,
        redis_cli: redis_cli?,
        bgsave_timeout: bgsave_timeout?,
        restore_command,
        file_name: file_name?,
    })
}

fn read_directory(name: &str, t: &Table<'_, '_>, seen: &mut Seen) -> Option<DirectoryStore> {
    let paths = t
        .require(
            "paths",
            "give the directories and files to back up, e.g. paths = [\"/home/node/.n8n\"]",
        )
        .and_then(|v| {
            let items = v.array("an array of absolute paths, e.g. [\"/home/node/.n8n\"]")?;
            if items.is_empty() {
                v.error("is empty: give at least one directory or file to back up");
                return None;
            }
            let mut paths = Vec::new();
            for item in &items {
                let Some(p) = item.abs_path("a path") else {
                    continue;
                };
                if let Some(other) = seen.paths.insert(p.clone(), name.to_owned()) {
                    let whose = if other == name {
                        "this store".to_owned()
                    } else {
                        format!("store {other:?}")
                    };
                    item.error(format!(
                        "{} is already backed up by {whose}: list each path once",
                        p.display()
                    ));
                    continue;
                }
                paths.push(p);
            }
            Some(paths)
        });
    let exclude = t
        .get("exclude")
        .and_then(|v| v.string_list("patterns"))
        .unwrap_or_default();
    Some(DirectoryStore {
        paths: paths?,
        exclude,
    })
}

/// `file_name`, or `<store>.<ext>`; checked to be one plain file name, used by no other store.
fn file_name(name: &str, t: &Table<'_, '_>, ext: &str, seen: &mut Seen) -> Option<String> {
    let given = t.get("file_name");
    let f = match &given {
        Some(v) => {
            let f = v.nonempty("a file name")?;
            if f.contains(['/', '\0']) || f == "." || f == ".." || f.len() > 255 {
                v.error(format!(
                    "{f:?} is not a plain file name: give a name without `/`, e.g. \"{name}.{ext}\""
                ));
                return None;
            }
            f
        }
        None => format!("{name}.{ext}"),
    };
    if let Some(other) = seen.file_names.insert(f.clone(), name.to_owned()) {
        let message = format!(
            "the file name {f:?} is also store {other:?}'s: give each store its own file_name"
        );
        match &given {
            Some(v) => v.error(message),
            None => t.cx.error(&t.span, &join(&t.path, "file_name"), message),
        }
        return None;
    }
    Some(f)
}

/// `tags`: plain words, none of them another store's name.
fn tags(v: &Val<'_, '_>, name: &str, names: &[&str]) -> Vec<String> {
    let Some(items) = v.array("an array of tags, e.g. [\"db\"]") else {
        return Vec::new();
    };
    let mut tags = Vec::new();
    for item in &items {
        let Some(tag) = item.nonempty("a tag") else {
            continue;
        };
        if tag.contains(|c: char| c.is_whitespace() || c == ',' || c.is_control()) {
            item.error(format!(
                "{tag:?} is not a valid tag: leave out blanks and commas (e.g. \"db\")"
            ));
        } else if tag != name && names.contains(&tag.as_str()) {
            item.error(format!(
                "{tag:?} is the name of another store: cairn tags each snapshot with its \
                 store's name, so the two stores' snapshots would be mixed up; choose another tag"
            ));
        } else if !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    tags
}

/// Whether an environment variable's name suggests it holds a secret (its value must then not
/// be written in the file, and is not printed).
pub fn looks_secret(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    [
        "PASSWORD",
        "PASSWD",
        "SECRET",
        "TOKEN",
        "CREDENTIAL",
        "AUTH",
    ]
    .iter()
    .any(|w| n.contains(w))
        || n.ends_with("_KEY")
        || n == "KEY"
}

/// `env`: variable names and (expanded) values, sorted by name. A secret-looking variable
/// must not have its value written in the file.
fn env(v: &Val<'_, '_>) -> Vec<(String, String)> {
    let Some(t) =
        v.table("a table of environment variables, e.g. env = { PGHOST = \"127.0.0.1\" }")
    else {
        return Vec::new();
    };
    let mut vars = Vec::new();
    for (key, val) in t.entries() {
        let k = key.get_ref().as_ref();
        let valid = k.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            t.cx.error(
                &key.span(),
                &val.path,
                format!("{k:?} is not a valid variable name: use letters, digits and _"),
            );
            continue;
        }
        let Some(raw) = val.raw_str("a string") else {
            continue;
        };
        if looks_secret(k) && !has_reference(raw) {
            val.error(format!(
                "{k} looks like a secret, and secrets never go in cairn.toml: leave it out \
                 (commands inherit cairn's environment, so set {k} where cairn runs, e.g. a \
                 systemd EnvironmentFile=) or write {k} = \"${{{k}}}\""
            ));
            continue;
        }
        if let Some(value) = val.string("a string") {
            vars.push((k.to_owned(), value));
        }
    }
    vars.sort();
    vars
}
