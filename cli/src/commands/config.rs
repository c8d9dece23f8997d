//! `cairn config check`: finds cairn.toml (`--config`, `$CAIRN_CONFIG`, `./cairn.toml`, the
//! user's config directory), parses and validates it, and prints a summary of the repositories
//! and stores, or every problem with its file, line and key (exit 1). [`find`] and [`load`]
//! are what other commands use to read the file.

use std::path::PathBuf;

use anyhow::{Context, Result, anyhow};
use engine::stores::{
    self, CommandLine, Config, ConfigErrors, PasswordSource, Retention, Store, StoreKind,
    format_duration, looks_secret,
};
use serde_json::{Map, Value, json};

use super::print_json;
use crate::Outcome;
use crate::args::{ConfigCommand, GlobalArgs};

/// Runs `cairn config …`.
pub fn run(g: &GlobalArgs, c: &ConfigCommand) -> Result<Outcome> {
    match c {
        ConfigCommand::Check => check(g),
    }
}

/// cairn's environment, for `${VAR}` and `CAIRN_CONFIG` (variables that are not UTF-8 count
/// as unset).
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The cairn.toml the global flags and the environment select.
pub fn find(g: &GlobalArgs) -> Result<PathBuf> {
    let cwd = std::env::current_dir().context("cannot determine the working directory")?;
    let dir = stores::user_config_dir(&env);
    Ok(stores::find_config(
        g.config.as_deref(),
        &env,
        &cwd,
        dir.as_deref(),
    )?)
}

/// Finds and loads cairn.toml; an invalid file is an error listing every problem.
#[allow(dead_code)] // for `cairn run`, `restore --store` and `status`
pub fn load(g: &GlobalArgs) -> Result<Config> {
    let path = find(g)?;
    stores::load(&path, &env).map_err(|e| {
        anyhow!(e).context(format!(
            "{} is not valid (`cairn config check` lists every problem)",
            path.display()
        ))
    })
}

fn check(g: &GlobalArgs) -> Result<Outcome> {
    let path = find(g)?;
    match stores::load(&path, &env) {
        Ok(c) if g.json => {
            print_json(&config_json(&c))?;
            Ok(Outcome::Ok)
        }
        Ok(c) => {
            if !g.quiet {
                print_summary(&c);
            }
            Ok(Outcome::Ok)
        }
        Err(e) if g.json => {
            print_json(&errors_json(&path, &e))?;
            Ok(Outcome::Partial)
        }
        Err(e) => {
            for err in e.errors() {
                eprintln!("error: {err}");
                if let Some(cause) = std::error::Error::source(err) {
                    eprintln!("  caused by: {cause}");
                }
            }
            let n = e.errors().len();
            eprintln!(
                "{}: {n} problem{}; examples/cairn.toml shows every setting",
                path.display(),
                if n == 1 { "" } else { "s" }
            );
            Ok(Outcome::Partial)
        }
    }
}

fn password_text(p: &PasswordSource) -> String {
    match p {
        PasswordSource::File(f) => format!("password from the file {}", f.display()),
        PasswordSource::Command(c) => format!("password from `{c}`"),
    }
}

fn print_summary(c: &Config) {
    let copies = match c.copies.len() {
        1 => "1 copy".to_owned(),
        n => format!("{n} copies"),
    };
    let stores = match c.stores.len() {
        1 => "1 store".to_owned(),
        n => format!("{n} stores"),
    };
    println!(
        "{} is valid: a repository, {copies}, {stores}.",
        c.file.display()
    );
    println!();
    println!(
        "repository  {}  ({})",
        c.repository.location,
        password_text(&c.repository.password)
    );
    if let Some(d) = &c.repository.cache_dir {
        println!("cache       {}", d.display());
    }
    for copy in &c.copies {
        println!(
            "copy        {}: {}  ({})",
            copy.name,
            copy.location,
            password_text(&copy.password)
        );
    }
    for s in &c.stores {
        println!();
        print_store(s);
    }
}

fn print_store(s: &Store) {
    let order = s
        .restore_order
        .map_or(String::new(), |o| format!(", restore order {o}"));
    println!(
        "store {}: {}, expected every {}{order}",
        s.name,
        s.kind.type_name(),
        format_duration(s.interval)
    );
    let line = |label: &str, value: String| println!("  {label:<10} {value}");
    match &s.kind {
        StoreKind::Command(k) => {
            line("dump", format!("{}  ->  {}", k.command, k.file_name));
            if let Some(r) = &k.restore_command {
                line("restore", r.to_string());
            }
        }
        StoreKind::Redis(r) => {
            line(
                "rdb",
                format!("{}  ->  {}", r.rdb_path.display(), r.file_name),
            );
            line(
                "bgsave",
                format!(
                    "{} BGSAVE, waiting up to {}",
                    r.redis_cli,
                    format_duration(r.bgsave_timeout)
                ),
            );
            if let Some(c) = &r.restore_command {
                line("restore", c.to_string());
            }
        }
        StoreKind::Directory(d) => {
            let paths: Vec<String> = d.paths.iter().map(|p| p.display().to_string()).collect();
            line("paths", paths.join(", "));
            if !d.exclude.is_empty() {
                line("exclude", d.exclude.join(", "));
            }
        }
    }
    line("retention", s.retention.to_string());
    if !s.tags.is_empty() {
        line("tags", s.tags.join(", "));
    }
    if !s.env.is_empty() {
        let vars: Vec<String> = s
            .env
            .iter()
            .map(|(k, v)| {
                if looks_secret(k) {
                    format!("{k}=(hidden)")
                } else {
                    format!("{k}={v}")
                }
            })
            .collect();
        line("env", vars.join(" "));
    }
    for (name, hook) in hooks(s) {
        if let Some(h) = hook {
            line(name, h.to_string());
        }
    }
    if let Some(c) = &s.chunker {
        line("chunker", c.clone());
    }
}

fn hooks(s: &Store) -> [(&'static str, &Option<CommandLine>); 3] {
    [
        ("before", &s.hooks.before),
        ("after", &s.hooks.after),
        ("on_failure", &s.hooks.on_failure),
    ]
}

fn argv(c: &CommandLine) -> Value {
    json!(c.argv())
}

fn password_json(p: &PasswordSource) -> Value {
    match p {
        PasswordSource::File(f) => json!({ "file": f.display().to_string() }),
        PasswordSource::Command(c) => json!({ "command": argv(c) }),
    }
}

/// The parsed config as JSON. It holds no secret: passwords are only ever named by their
/// source, and secret-looking `env` values are `null`.
fn config_json(c: &Config) -> Value {
    json!({
        "file": c.file.display().to_string(),
        "valid": true,
        "repository": {
            "location": c.repository.location,
            "password": password_json(&c.repository.password),
            "cache_dir": c.repository.cache_dir.as_ref().map(|d| d.display().to_string()),
        },
        "copies": c.copies.iter().map(|k| json!({
            "name": k.name,
            "location": k.location,
            "password": password_json(&k.password),
        })).collect::<Vec<_>>(),
        "stores": c.stores.iter().map(store_json).collect::<Vec<_>>(),
    })
}

fn store_json(s: &Store) -> Value {
    let mut o = Map::new();
    o.insert("name".into(), json!(s.name));
    o.insert("type".into(), json!(s.kind.type_name()));
    match &s.kind {
        StoreKind::Command(k) => {
            o.insert("command".into(), argv(&k.command));
            o.insert(
                "restore_command".into(),
                json!(k.restore_command.as_ref().map(argv)),
            );
            o.insert("file_name".into(), json!(k.file_name));
        }
        StoreKind::Redis(r) => {
            o.insert("rdb_path".into(), json!(r.rdb_path.display().to_string()));
            o.insert("redis_cli".into(), argv(&r.redis_cli));
            o.insert(
                "bgsave_timeout_seconds".into(),
                json!(r.bgsave_timeout.as_secs()),
            );
            o.insert(
                "restore_command".into(),
                json!(r.restore_command.as_ref().map(argv)),
            );
            o.insert("file_name".into(), json!(r.file_name));
        }
        StoreKind::Directory(d) => {
            let paths: Vec<String> = d.paths.iter().map(|p| p.display().to_string()).collect();
            o.insert("paths".into(), json!(paths));
            o.insert("exclude".into(), json!(d.exclude));
        }
    }
    o.insert("retention".into(), retention_json(&s.retention));
    o.insert("retention_text".into(), json!(s.retention.to_string()));
    o.insert("interval_seconds".into(), json!(s.interval.as_secs()));
    o.insert("tags".into(), json!(s.tags));
    let env: Map<String, Value> = s
        .env
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                if looks_secret(k) {
                    Value::Null
                } else {
                    json!(v)
                },
            )
        })
        .collect();
    o.insert("env".into(), Value::Object(env));
    let hooks: Map<String, Value> = hooks(s)
        .into_iter()
        .map(|(name, h)| (name.to_owned(), json!(h.as_ref().map(argv))))
        .collect();
    o.insert("hooks".into(), Value::Object(hooks));
    o.insert("restore_order".into(), json!(s.restore_order));
    o.insert("chunker".into(), json!(s.chunker_profile()));
    Value::Object(o)
}

/// `"forever"`, or the rules with the keys of the file.
fn retention_json(r: &Retention) -> Value {
    let Some(p) = r.policy() else {
        return json!("forever");
    };
    let mut o = Map::new();
    for (k, v) in [
        ("keep_last", p.last),
        ("keep_hourly", p.hourly),
        ("keep_daily", p.daily),
        ("keep_weekly", p.weekly),
        ("keep_monthly", p.monthly),
        ("keep_yearly", p.yearly),
    ] {
        if let Some(v) = v {
            o.insert(k.into(), json!(v));
        }
    }
    for (k, v) in [
        ("keep_within", p.within),
        ("keep_within_hourly", p.within_hourly),
        ("keep_within_daily", p.within_daily),
        ("keep_within_weekly", p.within_weekly),
        ("keep_within_monthly", p.within_monthly),
        ("keep_within_yearly", p.within_yearly),
    ] {
        if let Some(v) = v {
            o.insert(k.into(), json!(v.to_string()));
        }
    }
    if !p.tags.is_empty() {
        o.insert("keep_tag".into(), json!(p.tags));
    }
    Value::Object(o)
}

fn errors_json(path: &std::path::Path, e: &ConfigErrors) -> Value {
    json!({
        "file": path.display().to_string(),
        "valid": false,
        "errors": e.errors().iter().map(|err| json!({
            "file": err.file.display().to_string(),
            "line": err.line,
            "column": err.column,
            "key": err.key,
            "message": err.message,
            "text": err.to_string(),
        })).collect::<Vec<_>>(),
    })
}
