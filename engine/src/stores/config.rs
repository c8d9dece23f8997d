//! The typed cairn.toml ([`Config`]) and [`parse`], which builds it from the file's text and
//! reports every problem it finds (see the [module documentation](super) for the schema).
//!
//! [`parse`] is pure: the caller passes the text, the file name for messages, and the
//! environment lookup for `${VAR}`; [`load`] reads the file first.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::de::{DeTable, DeValue};

use super::command::{self, CommandLine};
use super::error::ConfigErrors;
use super::reader::{Ctx, Table, Val, join};
use super::retention::Retention;
use super::store;

/// A parsed and validated cairn.toml.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The file it was read from, as the caller named it (for messages).
    pub file: PathBuf,
    /// `[repository]`: the primary repository, where `cairn run` writes.
    pub repository: Repository,
    /// `[[copy]]`: further repositories snapshots are copied to (the 3-2-1 rule), in file order.
    pub copies: Vec<CopyTarget>,
    /// `[stores.NAME]`: what to back up, in file order (at least one).
    pub stores: Vec<Store>,
}

impl Config {
    /// The store named `name`.
    pub fn store(&self, name: &str) -> Option<&Store> {
        self.stores.iter().find(|s| s.name == name)
    }

    /// The stores in disaster-recovery order (`restore --all`): those with a `restore_order`
    /// first, lowest first, then the others; ties keep file order.
    pub fn restore_order(&self) -> Vec<&Store> {
        let mut v: Vec<&Store> = self.stores.iter().collect();
        v.sort_by_key(|s| s.restore_order.unwrap_or(u32::MAX));
        v
    }
}

/// The primary repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Repository {
    /// Where it is: an absolute path, `file:///path`, `s3://bucket/prefix` or `memory://`.
    pub location: String,
    /// Where its password comes from.
    pub password: PasswordSource,
    /// The local cache directory (default: `$XDG_CACHE_HOME/cairn` or `~/.cache/cairn`).
    pub cache_dir: Option<PathBuf>,
}

/// A repository that snapshots are copied to (`[[copy]]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyTarget {
    /// Its name (`[a-z0-9_-]+`), unique among the copies.
    pub name: String,
    /// Where it is, as for [`Repository::location`]; different from every other repository.
    pub location: String,
    /// Where its password comes from (its own: copies are re-encrypted).
    pub password: PasswordSource,
}

/// Where a repository password comes from; never the password itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PasswordSource {
    /// `password_file`: the first line of this file (an absolute path).
    File(PathBuf),
    /// `password_command`: what this command prints (its first line).
    Command(CommandLine),
}

/// One `[stores.NAME]` table: a thing to back up, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Store {
    /// The table's name (`[a-z0-9_-]+`); `cairn run` tags each snapshot of the store with it.
    pub name: String,
    /// What the store is and its type's settings.
    pub kind: StoreKind,
    /// How long its snapshots are kept.
    pub retention: Retention,
    /// The expected time between good backups: `cairn status` alarms when the newest snapshot
    /// is older than this.
    pub interval: Duration,
    /// Extra tags for its snapshots.
    pub tags: Vec<String>,
    /// Commands run around its backup.
    pub hooks: Hooks,
    /// Environment variables set for its commands and hooks (on top of cairn's own), sorted by
    /// name.
    pub env: Vec<(String, String)>,
    /// Its place in `restore --all` (lower first; stores without one come last).
    pub restore_order: Option<u32>,
    /// The repository's chunker profile to use (default: [`Store::chunker_profile`]).
    pub chunker: Option<String>,
}

impl Store {
    /// The chunker profile name: `chunker`, or `file` for directories, `redis` for Redis stores
    /// and `stream` for the other dumps.
    pub fn chunker_profile(&self) -> &str {
        match (&self.chunker, &self.kind) {
            (Some(c), _) => c,
            (None, StoreKind::Directory(_)) => "file",
            (None, StoreKind::Redis(_)) => "redis",
            (None, _) => "stream",
        }
    }

    /// [`Store::chunker_profile`] in a repository with `config`: a default profile the
    /// repository lacks (`redis` came after the first repositories were made) falls back to
    /// `stream`; a profile named in the store's `chunker` is used as it is.
    pub fn chunker_profile_in<'a>(&'a self, config: &repo_format::Config) -> &'a str {
        let name = self.chunker_profile();
        if self.chunker.is_none() && config.profile(name).is_none() {
            return "stream";
        }
        name
    }

    /// The name of the dump inside the snapshot, for the stores that produce one.
    pub fn file_name(&self) -> Option<&str> {
        match &self.kind {
            StoreKind::Command(c) => Some(&c.file_name),
            StoreKind::Redis(r) => Some(&r.file_name),
            StoreKind::Directory(_) => None,
        }
    }
}

/// The three kinds of store (`type = "command" | "redis" | "directory"`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreKind {
    /// `type = "command"`: a dump command's standard output.
    Command(CommandStore),
    /// `type = "redis"`: the RDB file after a `BGSAVE`.
    Redis(RedisStore),
    /// `type = "directory"`: files and directories.
    Directory(DirectoryStore),
}

impl StoreKind {
    /// The `type` as written in the file.
    pub fn type_name(&self) -> &'static str {
        match self {
            StoreKind::Command(_) => "command",
            StoreKind::Redis(_) => "redis",
            StoreKind::Directory(_) => "directory",
        }
    }
}

/// A store backed up from a command's standard output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandStore {
    /// The dump command; a non-zero exit fails the backup.
    pub command: CommandLine,
    /// Reads the dump on standard input to restore it; without one, `restore --store` only
    /// writes the dump to a file.
    pub restore_command: Option<CommandLine>,
    /// The dump's name inside the snapshot (default `<store>.dump`).
    pub file_name: String,
}

/// A Redis instance, backed up through its RDB file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisStore {
    /// The RDB file Redis writes (`dir` + `dbfilename` of redis.conf).
    pub rdb_path: PathBuf,
    /// `redis-cli` and its connection options (`-h`, `-p`, `--tls` …); `BGSAVE`, `LASTSAVE`
    /// and `INFO persistence` are appended. The password comes from `REDISCLI_AUTH` in `env`.
    pub redis_cli: CommandLine,
    /// How long to wait for the `BGSAVE` to finish (default 10 minutes).
    pub bgsave_timeout: Duration,
    /// Reads the RDB on standard input to restore it; without one, restore writes the file.
    pub restore_command: Option<CommandLine>,
    /// The RDB's name inside the snapshot (default `<store>.rdb`).
    pub file_name: String,
}

/// Files and directories.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectoryStore {
    /// Absolute paths to back up (at least one).
    pub paths: Vec<PathBuf>,
    /// Patterns of what to leave out (see the module documentation).
    pub exclude: Vec<String>,
}

/// Commands run around a store's backup, with the store's `env`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hooks {
    /// Runs first; if it fails, the store's backup is not attempted (and counts as failed).
    pub before: Option<CommandLine>,
    /// Runs after a successful backup.
    pub after: Option<CommandLine>,
    /// Runs after a failed `before` or backup.
    pub on_failure: Option<CommandLine>,
}

/// Reads and parses a cairn.toml (see [`parse`]); a file that cannot be read is one error
/// without a line, keeping the I/O error as its cause.
pub fn load(file: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigErrors> {
    let bytes = std::fs::read(file).map_err(|e| {
        let what = if e.kind() == std::io::ErrorKind::NotFound {
            "does not exist: check the path, or create it (examples/cairn.toml shows every setting)"
        } else {
            "cannot be read: check its permissions"
        };
        ConfigErrors::whole_file(file, what.to_owned(), Some(e))
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        ConfigErrors::whole_file(
            file,
            format!(
                "is not UTF-8 text (invalid byte at offset {}): save it as UTF-8",
                e.utf8_error().valid_up_to()
            ),
            None,
        )
    })?;
    parse(&text, file, env)
}

/// Parses and validates the text of a cairn.toml. `file` names it in messages; `env` looks up
/// the variables of `${VAR}` references. Returns every problem found, in file order: syntax
/// errors alone when the TOML does not parse, otherwise every unknown key, missing key, bad
/// value and conflict.
pub fn parse(
    text: &str,
    file: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let cx = Ctx::new(text, file, env);
    let (root, syntax) = DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        for e in &syntax {
            let span = e.span().unwrap_or(0..0);
            let key = path_at(root.get_ref(), span.start, "").unwrap_or_default();
            let found = cx.source(span.clone());
            let mut message = format!("invalid TOML: {}", e.message());
            let bare_word =
                !found.is_empty() && found.chars().all(|c| c.is_alphanumeric() || c == '_');
            if bare_word && !message.contains("quote") {
                message.push_str(&format!(
                    " (found `{found}`; a string needs quotes: \"{found}\")"
                ));
            }
            cx.error(&span, &key, message);
        }
        return Err(ConfigErrors(cx.into_errors()));
    }
    let top = Table {
        cx: &cx,
        table: root.get_ref(),
        span: 0..0,
        path: String::new(),
    };
    let config = read_config(&top, file);
    match config {
        Some(c) if !cx.has_errors() => Ok(c),
        _ => Err(ConfigErrors(cx.into_errors())),
    }
}

/// The key path of the innermost entry whose key or value holds `offset` (tables are searched
/// whatever their own span: a `[a.b]` header's span covers the header only).
fn path_at(table: &DeTable<'_>, offset: usize, path: &str) -> Option<String> {
    for (k, v) in table.iter() {
        let here = join(path, k.get_ref());
        let inner = match v.get_ref() {
            DeValue::Table(t) => path_at(t, offset, &here),
            DeValue::Array(a) => a.iter().enumerate().find_map(|(i, e)| match e.get_ref() {
                DeValue::Table(t) => path_at(t, offset, &format!("{here}[{i}]")),
                _ => None,
            }),
            _ => None,
        };
        if inner.is_some() {
            return inner;
        }
        if k.span().contains(&offset) || v.span().contains(&offset) {
            return Some(here);
        }
    }
    None
}

const TOP_KEYS: [&str; 3] = ["repository", "copy", "stores"];

fn read_config(top: &Table<'_, '_>, file: &Path) -> Option<Config> {
    top.check_keys(&TOP_KEYS, &|key| match key {
        "copies" | "copy_to" | "copies_to" => {
            Some("write one [[copy]] table (double brackets) per copy".to_owned())
        }
        "repo" | "repositories" | "primary" => {
            Some("the primary repository is the [repository] table".to_owned())
        }
        _ => None,
    });
    let repository = match top.get("repository") {
        Some(v) => v
            .table("the [repository] table")
            .and_then(|t| read_repository(&t)),
        None => {
            top.missing(
                "repository",
                "add a [repository] table with location = \"/var/backups/cairn\" (or \
                 s3://bucket/prefix) and password_file = \"/etc/cairn/password\"",
            );
            None
        }
    };
    let copies = top
        .get("copy")
        .map(|v| read_copies(&v, repository.as_ref()))
        .unwrap_or_default();
    let stores = match top.get("stores") {
        Some(v) => store::read_all(&v),
        None => {
            top.missing(
                "stores",
                "add a [stores.NAME] table for each thing to back up, e.g. [stores.postgres] \
                 with type = \"command\" and command = \"pg_dump --format=custom mydb\"",
            );
            Vec::new()
        }
    };
    Some(Config {
        file: file.to_path_buf(),
        repository: repository?,
        copies,
        stores,
    })
}

const REPOSITORY_KEYS: [&str; 4] = ["location", "password_file", "password_command", "cache_dir"];

fn read_repository(t: &Table<'_, '_>) -> Option<Repository> {
    t.check_keys(&REPOSITORY_KEYS, &secret_hint);
    let location = location(t);
    let password = password(t);
    let cache_dir = t
        .get("cache_dir")
        .and_then(|v| v.abs_path("the cache directory"));
    Some(Repository {
        location: location?,
        password: password?,
        cache_dir,
    })
}

const COPY_KEYS: [&str; 4] = ["name", "location", "password_file", "password_command"];

fn read_copies(v: &Val<'_, '_>, primary: Option<&Repository>) -> Vec<CopyTarget> {
    if v.value.get_ref().is_table() {
        v.error(
            "write [[copy]] (double brackets): each copy is one entry of an array of tables, \
             with name, location and password_file or password_command",
        );
        return Vec::new();
    }
    let Some(items) = v.array("[[copy]] tables, one per copy") else {
        return Vec::new();
    };
    let mut copies = Vec::new();
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut locations: HashMap<String, String> = HashMap::new();
    if let Some(p) = primary {
        locations.insert(p.location.clone(), "the primary [repository]".to_owned());
    }
    for (i, item) in items.iter().enumerate() {
        let Some(t) = item.table("a [[copy]] table") else {
            continue;
        };
        t.check_keys(&COPY_KEYS, &secret_hint);
        let name = t
            .require("name", "give the copy a name, e.g. name = \"offsite\"")
            .and_then(|v| {
                let n = v.nonempty("a name")?;
                if let Err(e) = check_name(&n) {
                    v.error(e);
                    return None;
                }
                if let Some(first) = names.insert(n.clone(), i) {
                    v.error(format!(
                        "the name {n:?} is already used by copy[{first}]: give each copy its \
                         own name"
                    ));
                    return None;
                }
                Some(n)
            });
        let location = location(&t);
        if let (Some(loc), Some(lv)) = (&location, t.get("location")) {
            let this = format!("copy {:?}", name.as_deref().unwrap_or("?"));
            if let Some(other) = locations.insert(loc.clone(), this) {
                lv.error(format!(
                    "{loc} is already used by {other}: a copy must be another repository \
                     (another disk, host or bucket)"
                ));
            }
        }
        let password = password(&t);
        if let (Some(name), Some(location), Some(password)) = (name, location, password) {
            copies.push(CopyTarget {
                name,
                location,
                password,
            });
        }
    }
    copies
}

/// An explanation for `password` (refused) in a repository table.
fn secret_hint(key: &str) -> Option<String> {
    (key == "password").then(|| {
        "an inline password is refused: secrets never go in cairn.toml (it gets copied, \
         shared and committed); write password_file = \"/etc/cairn/password\" (a file only \
         cairn's user can read) or password_command = \"pass show cairn\""
            .to_owned()
    })
}

/// The `location` of a repository table, checked for a known form.
fn location(t: &Table<'_, '_>) -> Option<String> {
    let v = t.require(
        "location",
        "give the repository's location: an absolute path such as \"/var/backups/cairn\", \
         file:///path or s3://bucket/prefix",
    )?;
    let loc = v.nonempty("a location")?;
    check_location(&loc).map_err(|e| v.error(e)).ok()?;
    Some(loc)
}

/// Whether a location has one of the forms the backends open (without opening it).
fn check_location(loc: &str) -> Result<(), String> {
    const FORMS: &str = "an absolute path (/var/backups/cairn), file:///path, \
                         s3://bucket/prefix or memory://";
    let Some((scheme, rest)) = loc.split_once("://") else {
        if loc.starts_with('/') {
            return Ok(());
        }
        return Err(format!(
            "{loc:?} is not an absolute path or a URL: write {FORMS} (cairn runs from cron \
             and systemd, whose working directory is not this file's)"
        ));
    };
    match scheme {
        "file" | "object+file" if rest.starts_with('/') => Ok(()),
        "file" | "object+file" => Err(format!(
            "{loc:?}: a {scheme}:// location needs an absolute path, e.g. {scheme}:///srv/cairn"
        )),
        "s3" if !rest.is_empty() && !rest.starts_with('/') => Ok(()),
        "s3" => Err(format!(
            "{loc:?} names no bucket: write s3://BUCKET or s3://BUCKET/PREFIX"
        )),
        "memory" if rest.is_empty() => Ok(()),
        _ => Err(format!("{loc:?} has an unknown scheme: write {FORMS}")),
    }
}

/// The password source of a repository table: exactly one of `password_file` and
/// `password_command` (an inline `password` is reported by the key check).
fn password(t: &Table<'_, '_>) -> Option<PasswordSource> {
    let file = t.get("password_file");
    let cmd = t.get("password_command");
    match (file, cmd) {
        (Some(_), Some(c)) => {
            c.error(
                "give either password_file or password_command, not both: cairn would not \
                 know which to trust",
            );
            None
        }
        (Some(f), None) => f
            .abs_path("the password file's path")
            .map(PasswordSource::File),
        (None, Some(c)) => command::read(&c).map(PasswordSource::Command),
        (None, None) => {
            if t.get("password").is_none() {
                t.missing(
                    "password_file",
                    "give password_file = \"/etc/cairn/password\" or password_command = \
                     \"pass show cairn\"",
                );
            }
            None
        }
    }
}

/// Whether a store or copy name is `[a-z0-9][a-z0-9_-]*`, at most 64 bytes.
pub(super) fn check_name(name: &str) -> Result<(), String> {
    let ok = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid name: use lowercase letters, digits, _ and -, starting \
             with a letter or digit, at most 64 characters (e.g. \"postgres\", \"n8n-data\")"
        ))
    }
}
