//! Round trip: any valid config, written out as TOML, parses back to itself.

use std::path::Path;
use std::time::Duration;

use proptest::prelude::*;

use super::super::*;
use crate::retention::{KeepDuration, KeepPolicy};

/// TOML text for a config (test-only writer; `$` is written as `$$`).
fn render(c: &Config) -> String {
    fn q(s: &str) -> String {
        format!("{:?}", s.replace('$', "$$"))
    }
    fn cmd(c: &CommandLine, as_string: bool) -> String {
        if as_string {
            // Display quotes every `$` inside single quotes, where it is literal.
            format!("{:?}", c.to_string())
        } else {
            let items: Vec<String> = c.argv().iter().map(|a| q(a)).collect();
            format!("[{}]", items.join(", "))
        }
    }
    fn password(p: &PasswordSource) -> String {
        match p {
            PasswordSource::File(f) => format!("password_file = {}\n", q(&f.to_string_lossy())),
            PasswordSource::Command(c) => format!("password_command = {}\n", cmd(c, false)),
        }
    }
    fn list(items: &[String]) -> String {
        let v: Vec<String> = items.iter().map(|s| q(s)).collect();
        format!("[{}]", v.join(", "))
    }
    let mut out = format!("[repository]\nlocation = {}\n", q(&c.repository.location));
    out += &password(&c.repository.password);
    if let Some(d) = &c.repository.cache_dir {
        out += &format!("cache_dir = {}\n", q(&d.to_string_lossy()));
    }
    for copy in &c.copies {
        out += &format!(
            "\n[[copy]]\nname = {}\nlocation = {}\n",
            q(&copy.name),
            q(&copy.location)
        );
        out += &password(&copy.password);
    }
    for (i, s) in c.stores.iter().enumerate() {
        let as_string = i % 2 == 0;
        out += &format!("\n[stores.{}]\ntype = {:?}\n", s.name, s.kind.type_name());
        match &s.kind {
            StoreKind::Command(k) => {
                out += &format!("command = {}\n", cmd(&k.command, as_string));
                if let Some(r) = &k.restore_command {
                    out += &format!("restore_command = {}\n", cmd(r, !as_string));
                }
                out += &format!("file_name = {}\n", q(&k.file_name));
            }
            StoreKind::Redis(r) => {
                out += &format!("rdb_path = {}\n", q(&r.rdb_path.to_string_lossy()));
                out += &format!("redis_cli = {}\n", cmd(&r.redis_cli, as_string));
                out += &format!("bgsave_timeout = {:?}\n", format_duration(r.bgsave_timeout));
                if let Some(c) = &r.restore_command {
                    out += &format!("restore_command = {}\n", cmd(c, as_string));
                }
                out += &format!("file_name = {}\n", q(&r.file_name));
            }
            StoreKind::Directory(d) => {
                let paths: Vec<String> = d
                    .paths
                    .iter()
                    .map(|p| p.to_string_lossy().into_owned())
                    .collect();
                out += &format!("paths = {}\nexclude = {}\n", list(&paths), list(&d.exclude));
            }
        }
        out += &match &s.retention {
            Retention::Forever => "retention = \"forever\"\n".to_owned(),
            Retention::Keep(p) => {
                let mut rules = Vec::new();
                for (k, v) in [
                    ("keep_last", p.last),
                    ("keep_hourly", p.hourly),
                    ("keep_daily", p.daily),
                    ("keep_weekly", p.weekly),
                    ("keep_monthly", p.monthly),
                    ("keep_yearly", p.yearly),
                ] {
                    if let Some(v) = v {
                        rules.push(format!("{k} = {v}"));
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
                        rules.push(format!("{k} = \"{v}\""));
                    }
                }
                if !p.tags.is_empty() {
                    rules.push(format!("keep_tag = {}", list(&p.tags)));
                }
                format!("retention = {{ {} }}\n", rules.join(", "))
            }
        };
        out += &format!(
            "interval = {:?}\ntags = {}\n",
            format_duration(s.interval),
            list(&s.tags)
        );
        for (k, h) in [
            ("before", &s.hooks.before),
            ("after", &s.hooks.after),
            ("on_failure", &s.hooks.on_failure),
        ] {
            if let Some(h) = h {
                out += &format!("{k} = {}\n", cmd(h, as_string));
            }
        }
        let env: Vec<String> = s
            .env
            .iter()
            .map(|(k, v)| format!("{k} = {}", q(v)))
            .collect();
        out += &format!("env = {{ {} }}\n", env.join(", "));
        if let Some(o) = s.restore_order {
            out += &format!("restore_order = {o}\n");
        }
        if let Some(c) = &s.chunker {
            out += &format!("chunker = {}\n", q(c));
        }
    }
    out
}

/// Text that survives TOML basic strings, `$` expansion and shell-like quoting.
fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 _./:$'\"|;\\\\-]{1,12}"
}

fn command_line() -> impl Strategy<Value = CommandLine> {
    ("[a-z][a-z0-9_-]{0,8}", prop::collection::vec(text(), 0..4)).prop_map(|(p, mut args)| {
        args.insert(0, p);
        CommandLine::new(args).expect("non-empty program")
    })
}

fn keep_duration() -> impl Strategy<Value = KeepDuration> {
    (0u32..3, 0u32..13, 0u32..40, 1u32..48).prop_map(|(years, months, days, hours)| KeepDuration {
        years,
        months,
        days,
        hours,
    })
}

fn retention() -> impl Strategy<Value = Retention> {
    let count = || prop::option::of(1u32..100);
    let within = || prop::option::of(keep_duration());
    prop_oneof![
        Just(Retention::Forever),
        (
            (count(), count(), count(), count(), count(), count()),
            (within(), within(), within(), within(), within(), within()),
            prop::collection::vec("[a-z]{1,6}", 0..3),
        )
            .prop_map(|((l, h, d, w, m, y), (wi, wh, wd, ww, wm, wy), tags)| {
                let mut p = KeepPolicy {
                    last: l,
                    hourly: h,
                    daily: d,
                    weekly: w,
                    monthly: m,
                    yearly: y,
                    within: wi,
                    within_hourly: wh,
                    within_daily: wd,
                    within_weekly: ww,
                    within_monthly: wm,
                    within_yearly: wy,
                    tags,
                };
                if p.is_empty() {
                    p.daily = Some(7);
                }
                Retention::Keep(p)
            }),
    ]
}

fn hooks() -> impl Strategy<Value = Hooks> {
    let h = || prop::option::of(command_line());
    (h(), h(), h()).prop_map(|(before, after, on_failure)| Hooks {
        before,
        after,
        on_failure,
    })
}

/// A store named `store<i>`: its file names and paths contain its name, so they never clash.
fn store(i: usize) -> impl Strategy<Value = Store> {
    let name = format!("store{i}");
    let n = name.clone();
    let kind = prop_oneof![
        (
            command_line(),
            prop::option::of(command_line()),
            any::<bool>()
        )
            .prop_map({
                let n = n.clone();
                move |(command, restore_command, custom)| {
                    StoreKind::Command(CommandStore {
                        command,
                        restore_command,
                        file_name: if custom {
                            format!("{n} x.sql")
                        } else {
                            format!("{n}.dump")
                        },
                    })
                }
            }),
        (
            command_line(),
            1u64..100_000,
            prop::option::of(command_line())
        )
            .prop_map({
                let n = n.clone();
                move |(redis_cli, secs, restore_command)| {
                    StoreKind::Redis(RedisStore {
                        rdb_path: format!("/var/lib/{n}/dump.rdb").into(),
                        redis_cli,
                        bgsave_timeout: Duration::from_secs(secs),
                        restore_command,
                        file_name: format!("{n}.rdb"),
                    })
                }
            }),
        (1usize..4, prop::collection::vec(text(), 0..3)).prop_map({
            let n = n.clone();
            move |(count, exclude)| {
                StoreKind::Directory(DirectoryStore {
                    paths: (0..count).map(|k| format!("/srv/{n}/{k}").into()).collect(),
                    exclude,
                })
            }
        }),
    ];
    let env = prop::collection::btree_map("[A-Z][A-Z0-9_]{0,6}", text(), 0..3).prop_map(|m| {
        m.into_iter()
            .filter(|(k, _)| !looks_secret(k))
            .collect::<Vec<_>>()
    });
    (
        kind,
        retention(),
        1u64..10_000_000,
        prop::collection::btree_set("[a-z]{1,6}", 0..3),
        hooks(),
        env,
        prop::option::of(1u32..100),
        prop::option::of(prop_oneof![
            Just("file".to_owned()),
            Just("stream".to_owned())
        ]),
    )
        .prop_map(
            move |(kind, retention, secs, tags, hooks, env, restore_order, chunker)| Store {
                name: name.clone(),
                kind,
                retention,
                interval: Duration::from_secs(secs),
                // Generated tags are never `store<i>`: they hold no digit.
                tags: tags.into_iter().collect(),
                hooks,
                env,
                restore_order,
                chunker,
            },
        )
}

fn password() -> impl Strategy<Value = PasswordSource> {
    prop_oneof![
        "/[a-z]{1,8}/[a-z.]{1,8}".prop_map(|p| PasswordSource::File(p.into())),
        command_line().prop_map(PasswordSource::Command),
    ]
}

fn config() -> impl Strategy<Value = Config> {
    let stores = (1usize..5).prop_flat_map(|n| (0..n).map(store).collect::<Vec<_>>());
    let location = prop_oneof![
        "/[a-z]{1,8}/primary".prop_map(|s| s),
        "[a-z]{3,8}".prop_map(|b| format!("s3://{b}/primary")),
    ];
    let copies = prop::collection::vec(password(), 0..3).prop_map(|ps| {
        ps.into_iter()
            .enumerate()
            .map(|(i, password)| CopyTarget {
                name: format!("copy-{i}"),
                location: format!("s3://copies/{i}"),
                password,
            })
            .collect::<Vec<_>>()
    });
    (
        location,
        password(),
        prop::option::of("/[a-z]{1,8}/cache"),
        copies,
        stores,
    )
        .prop_map(|(location, password, cache_dir, copies, stores)| Config {
            file: "cairn.toml".into(),
            repository: Repository {
                location,
                password,
                cache_dir: cache_dir.map(Into::into),
            },
            copies,
            stores,
        })
}

proptest! {
    #[test]
    fn valid_configs_round_trip_through_parse(c in config()) {
        let text = render(&c);
        let back = parse(&text, Path::new("cairn.toml"), &|_| None)
            .map_err(|e| TestCaseError::fail(format!("{e}\n---\n{text}")))?;
        prop_assert_eq!(back, c, "{}", text);
    }
}
