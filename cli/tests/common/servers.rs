//! Private PostgreSQL and Redis servers for integration tests, from Debian's packages
//! (`scripts/setup` installs `postgresql` and `redis-server`).
//!
//! Each server lives in its own temporary directory, listens on 127.0.0.1 on a free port (a
//! port another process takes first is retried with a new one), and is stopped and removed
//! when its value is dropped, so tests can run in parallel and never touch a system-wide
//! instance. If the test process dies without unwinding (SIGKILL, a harness timeout), a small
//! watchdog in its own process group stops the server and removes its directory.
//!
//! PostgreSQL refuses to run as root. When the tests run as root (containers, CI), `initdb`,
//! `pg_ctl` and the server run as the unprivileged `postgres` user that Debian's package
//! creates (`CAIRN_TEST_PG_USER` picks another; `nobody` is the fallback) through
//! `Command::uid`/`gid` (which also drops root's supplementary groups); the directory is
//! chowned to that user. The clients (`psql`, `pg_dump`, `pg_restore`, `pgbench`) run as the
//! test's own user and connect over TCP as the cluster's superuser `cairn`, with trust
//! authentication (the server only listens on 127.0.0.1 and lives for one test).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::chown;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::skip_or_fail;

/// How often a port taken between probing and binding is retried with a fresh one.
const PORT_ATTEMPTS: usize = 5;

/// A port that was free on 127.0.0.1 a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0 to find a free port")
        .port()
}

/// The named program in `PATH`, or in /usr/sbin, /usr/bin.
fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Panics with the command and its output unless it exited 0; returns stdout.
fn checked(what: &str, out: std::io::Result<Output>) -> String {
    let out = out.unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The effective uid of this process.
fn euid() -> u32 {
    let out = Command::new("id").arg("-u").output().expect("run id -u");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("id -u prints a number")
}

/// uid and gid of a local user, from `getent passwd`.
fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let out = Command::new("getent")
        .args(["passwd", name])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let line = String::from_utf8_lossy(&out.stdout).into_owned();
    let fields: Vec<&str> = line.trim().split(':').collect();
    Some((fields.get(2)?.parse().ok()?, fields.get(3)?.parse().ok()?))
}

/// The last lines of a log file, for failure messages.
fn log_tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_else(|e| format!("(no log: {e})"));
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Starts `sh` in its own process group: once this test process is gone, it sends `signal` to
/// `server_pid`, waits, kills it, and removes `dir`. Dropping the returned child (via
/// [`stop_watchdog`]) disarms it.
fn spawn_watchdog(server_pid: u32, signal: &str, dir: &Path) -> Option<Child> {
    let script = r#"
        while kill -0 "$1" 2>/dev/null; do sleep 1; done
        kill -"$3" "$2" 2>/dev/null
        i=0; while kill -0 "$2" 2>/dev/null && [ $i -lt 10 ]; do sleep 1; i=$((i+1)); done
        kill -KILL "$2" 2>/dev/null
        rm -rf "$4"
    "#;
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("cairn-test-watchdog")
        .arg(std::process::id().to_string())
        .arg(server_pid.to_string())
        .arg(signal)
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .ok()
}

fn stop_watchdog(w: &mut Option<Child>) {
    if let Some(mut c) = w.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL

/// The PostgreSQL programs the tests use, all from one bin directory.
const PG_PROGRAMS: [&str; 8] = [
    "initdb",
    "pg_ctl",
    "postgres",
    "pg_isready",
    "psql",
    "pg_dump",
    "pg_restore",
    "pgbench",
];

/// The directory holding PostgreSQL's server and client programs: `CAIRN_PG_BIN`, else the
/// newest `/usr/lib/postgresql/<version>/bin` (Debian's layout) that has all of them.
pub fn pg_bin_dir() -> Result<PathBuf, String> {
    let complete = |d: &Path| PG_PROGRAMS.iter().all(|p| d.join(p).is_file());
    if let Some(d) = std::env::var_os("CAIRN_PG_BIN") {
        let d = PathBuf::from(d);
        return if complete(&d) {
            Ok(d)
        } else {
            Err(format!(
                "CAIRN_PG_BIN={} lacks one of {PG_PROGRAMS:?}",
                d.display()
            ))
        };
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .map_err(|e| format!("PostgreSQL is not installed (/usr/lib/postgresql: {e})"))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((v, e.path().join("bin")))
        })
        .filter(|(_, d)| complete(d))
        .collect();
    versions.sort();
    versions.pop().map(|(_, d)| d).ok_or_else(|| {
        format!("no /usr/lib/postgresql/*/bin has all of {PG_PROGRAMS:?} (postgresql package)")
    })
}

/// A private PostgreSQL cluster on 127.0.0.1, stopped and deleted on drop.
pub struct PgServer {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    /// uid and gid the server runs as (when the tests run as root).
    run_as: Option<(u32, u32)>,
    watchdog: Option<Child>,
}

impl PgServer {
    /// The superuser the cluster is created with; every client connects as it.
    pub const USER: &'static str = "cairn";

    /// Starts a server, or returns `None` after [`skip_or_fail`] when PostgreSQL is missing.
    pub fn start_or_skip(test: &str) -> Option<PgServer> {
        match pg_bin_dir() {
            Ok(_) => Some(PgServer::start()),
            Err(why) => {
                skip_or_fail(test, &why);
                None
            }
        }
    }

    /// initdb in a new temporary directory, then start the server and wait until it accepts
    /// connections. Panics (with the server log) if it cannot.
    pub fn start() -> PgServer {
        let bin = pg_bin_dir().unwrap_or_else(|e| panic!("{e}"));
        let run_as = if euid() == 0 {
            let name = std::env::var("CAIRN_TEST_PG_USER").unwrap_or_else(|_| "postgres".into());
            Some(
                lookup_user(&name)
                    .or_else(|| lookup_user("nobody"))
                    .unwrap_or_else(|| {
                        panic!("running as root and neither {name} nor nobody exists to run PostgreSQL as")
                    }),
            )
        } else {
            None
        };
        let dir = tempfile::Builder::new()
            .prefix("cairn-pg-")
            .tempdir()
            .expect("create a temporary directory for PostgreSQL");
        if let Some((uid, gid)) = run_as {
            chown(dir.path(), Some(uid), Some(gid)).expect("chown the PostgreSQL directory");
        }
        let mut pg = PgServer {
            dir,
            bin,
            port: 0,
            run_as,
            watchdog: None,
        };
        let data = pg.data_dir();
        checked(
            "initdb",
            pg.as_server_user("initdb")
                .arg("-D")
                .arg(&data)
                .args(["-U", Self::USER, "--auth=trust", "--encoding=UTF8"])
                .args(["--locale=C", "--no-sync", "--no-instructions"])
                .output(),
        );
        // A throwaway cluster: durability off (faster loads), small memory, private socket.
        let conf = format!(
            "\n# cairn test harness\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n\
             shared_buffers = 32MB\nmax_connections = 20\nlogging_collector = off\n",
            pg.dir.path().display()
        );
        fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .and_then(|mut f| f.write_all(conf.as_bytes()))
            .expect("append to postgresql.conf");

        let log = pg.log_path();
        for attempt in 1..=PORT_ATTEMPTS {
            pg.port = free_port();
            let out = pg
                .as_server_user("pg_ctl")
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(&log)
                .args(["-w", "-t", "60", "-o", &format!("-p {}", pg.port), "start"])
                .stdin(Stdio::null())
                .output()
                .expect("run pg_ctl start");
            if out.status.success() {
                break;
            }
            let tail = log_tail(&log);
            if tail.contains("could not bind") && attempt < PORT_ATTEMPTS {
                continue;
            }
            panic!(
                "pg_ctl start failed ({}): {}{}\nlog:\n{tail}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        pg.wait_ready();
        if let Some(pid) = pg.postmaster_pid() {
            // SIGINT is PostgreSQL's "fast" shutdown.
            pg.watchdog = spawn_watchdog(pid, "INT", pg.dir.path());
        }
        pg
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ok = Command::new(self.bin.join("pg_isready"))
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    Self::USER,
                ])
                .args(["-d", "postgres", "-t", "5"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "PostgreSQL on port {} not ready after 60 s; log:\n{}",
                self.port,
                log_tail(&self.log_path())
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A server program (initdb, pg_ctl) run as the server's user, in the server's directory.
    fn as_server_user(&self, program: &str) -> Command {
        let mut c = Command::new(self.bin.join(program));
        c.current_dir(self.dir.path())
            .env("HOME", self.dir.path())
            .env_remove("PGDATA")
            .env_remove("PGPORT")
            .env_remove("PGHOST");
        if let Some((uid, gid)) = self.run_as {
            c.uid(uid).gid(gid);
        }
        c
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    fn postmaster_pid(&self) -> Option<u32> {
        fs::read_to_string(self.data_dir().join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    /// Always 127.0.0.1.
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The superuser clients connect as.
    pub fn user(&self) -> &'static str {
        Self::USER
    }

    /// The server's temporary directory (data directory, log, unix socket).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The directory of the PostgreSQL programs.
    pub fn bin_dir(&self) -> &Path {
        &self.bin
    }

    /// The full path of a PostgreSQL program (`pg_dump`, `pg_restore`, ...).
    pub fn bin(&self, program: &str) -> PathBuf {
        self.bin.join(program)
    }

    /// `PGHOST`, `PGPORT` and `PGUSER` for this server: what a client (or a `cairn run` store
    /// command such as `pg_dump clawdbot`) needs in its environment to reach it.
    pub fn pg_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("PGHOST", self.host().to_string()),
            ("PGPORT", self.port.to_string()),
            ("PGUSER", Self::USER.to_string()),
        ]
    }

    /// A client program with [`Self::pg_env`] set and no other `PG*` connection settings.
    pub fn client(&self, program: &str) -> Command {
        let mut c = Command::new(self.bin(program));
        for k in [
            "PGDATABASE",
            "PGPASSWORD",
            "PGSERVICE",
            "PGSSLMODE",
            "PGOPTIONS",
        ] {
            c.env_remove(k);
        }
        c.envs(self.pg_env()).stdin(Stdio::null());
        c
    }

    /// Runs SQL in database `postgres`; returns the unaligned, tuples-only output, trimmed.
    pub fn psql(&self, sql: &str) -> String {
        self.psql_db("postgres", sql)
    }

    /// Runs SQL (one or more statements) in `db`; returns the unaligned, tuples-only output of
    /// the last statement, trimmed. Panics on any SQL error.
    pub fn psql_db(&self, db: &str, sql: &str) -> String {
        let out = self
            .client("psql")
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                db,
                "-c",
                sql,
            ])
            .output();
        let shown: String = sql.chars().take(300).collect();
        checked(&format!("psql -d {db} -c {shown:?}"), out)
            .trim_end()
            .to_string()
    }

    /// `CREATE DATABASE name`.
    pub fn create_db(&self, name: &str) {
        self.psql(&format!("CREATE DATABASE \"{name}\""));
    }

    /// `DROP DATABASE name`.
    pub fn drop_db(&self, name: &str) {
        self.psql(&format!("DROP DATABASE \"{name}\""));
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let stopped = self
            .as_server_user("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-m", "fast", "-w", "-t", "30", "stop"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !stopped && let Some(pid) = self.postmaster_pid() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        stop_watchdog(&mut self.watchdog);
        // The TempDir removes the directory.
    }
}

// ---------------------------------------------------------------------------------------------
// Redis

/// `redis-server` and `redis-cli`.
pub fn redis_bins() -> Result<(PathBuf, PathBuf), String> {
    let server = find_in_path("redis-server")
        .ok_or("redis-server is not installed (redis-server package)")?;
    let cli =
        find_in_path("redis-cli").ok_or("redis-cli is not installed (redis-tools package)")?;
    Ok((server, cli))
}

/// A private Redis server on 127.0.0.1 with its directory (and `dump.rdb`) in a temporary
/// directory, no automatic saves, shut down without saving on drop.
pub struct RedisServer {
    dir: tempfile::TempDir,
    port: u16,
    child: Child,
    cli: PathBuf,
    watchdog: Option<Child>,
}

impl RedisServer {
    /// Starts a server, or returns `None` after [`skip_or_fail`] when Redis is missing.
    pub fn start_or_skip(test: &str) -> Option<RedisServer> {
        match redis_bins() {
            Ok(_) => Some(RedisServer::start()),
            Err(why) => {
                skip_or_fail(test, &why);
                None
            }
        }
    }

    /// An empty server.
    pub fn start() -> RedisServer {
        Self::start_inner(None)
    }

    /// A server that loads this RDB file at startup (written as `dump.rdb` into its directory
    /// before it starts), as a restore onto a fresh machine does.
    pub fn start_with_rdb(rdb: &[u8]) -> RedisServer {
        Self::start_inner(Some(rdb))
    }

    fn start_inner(rdb: Option<&[u8]>) -> RedisServer {
        let (server, cli) = redis_bins().unwrap_or_else(|e| panic!("{e}"));
        let dir = tempfile::Builder::new()
            .prefix("cairn-redis-")
            .tempdir()
            .expect("create a temporary directory for Redis");
        if let Some(rdb) = rdb {
            fs::write(dir.path().join("dump.rdb"), rdb).expect("write dump.rdb");
        }
        let log = dir.path().join("redis.log");
        for attempt in 1..=PORT_ATTEMPTS {
            let port = free_port();
            let mut child = Command::new(&server)
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .arg("--dir")
                .arg(dir.path())
                .args([
                    "--dbfilename",
                    "dump.rdb",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .args(["--daemonize", "no", "--protected-mode", "yes"])
                .arg("--logfile")
                .arg(&log)
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", server.display()));
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    let tail = log_tail(&log);
                    if tail.contains("Address already in use") && attempt < PORT_ATTEMPTS {
                        break;
                    }
                    panic!("redis-server exited ({status}) on port {port}; log:\n{tail}");
                }
                // PING answers -LOADING while an RDB loads; wait for +PONG.
                let pong = RedisConn::connect(port)
                    .and_then(|mut c| c.try_cmd(&[&"PING"]))
                    .is_ok_and(|r| matches!(r, Reply::Status(s) if s == "PONG"));
                if pong {
                    let watchdog = spawn_watchdog(child.id(), "TERM", dir.path());
                    return RedisServer {
                        dir,
                        port,
                        child,
                        cli,
                        watchdog,
                    };
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "redis-server on port {port} did not answer PING in 60 s; log:\n{}",
                        log_tail(&log)
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("redis-server found no free port in {PORT_ATTEMPTS} attempts");
    }

    /// The TCP port (host 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's directory (`--dir`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Where BGSAVE writes: `<dir>/dump.rdb`.
    pub fn rdb_path(&self) -> PathBuf {
        self.dir.path().join("dump.rdb")
    }

    /// A new connection speaking RESP (binary-safe; for loading and reading data).
    pub fn conn(&self) -> RedisConn {
        RedisConn::connect(self.port)
            .unwrap_or_else(|e| panic!("connect to Redis on port {}: {e}", self.port))
    }

    /// `redis-cli -h 127.0.0.1 -p PORT ARGS...`: its output, trimmed (not binary-safe; for
    /// administrative commands).
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(&self.cli)
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .stdin(Stdio::null())
            .output();
        checked(&format!("redis-cli {args:?}"), out)
            .trim_end()
            .to_string()
    }

    /// `INFO persistence` as a map.
    fn persistence(&self, conn: &mut RedisConn) -> BTreeMap<String, String> {
        let info = conn.cmd(&[&"INFO", &"persistence"]).bulk_string();
        info.lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.to_string(), v.trim().to_string()))
            .collect()
    }

    /// BGSAVE, then waits until that save has finished (`rdb_saves` grew, or LASTSAVE changed
    /// on servers without that counter, and no save is in progress) and checks it succeeded.
    pub fn bgsave_and_wait(&self) {
        let mut c = self.conn();
        let before = self.persistence(&mut c);
        let saves_before = before.get("rdb_saves").cloned();
        let lastsave_before = c.cmd(&[&"LASTSAVE"]).int();
        if saves_before.is_none() {
            // LASTSAVE has one-second resolution: make sure a new save gets a new value.
            std::thread::sleep(Duration::from_millis(1100));
        }
        match c.cmd(&[&"BGSAVE"]) {
            Reply::Status(_) => {}
            other => panic!("BGSAVE failed: {other:?}"),
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let now = self.persistence(&mut c);
            let done = now.get("rdb_bgsave_in_progress").map(String::as_str) == Some("0")
                && match &saves_before {
                    Some(b) => now.get("rdb_saves") != Some(b),
                    None => c.cmd(&[&"LASTSAVE"]).int() != lastsave_before,
                };
            if done {
                assert_eq!(
                    now.get("rdb_last_bgsave_status").map(String::as_str),
                    Some("ok"),
                    "BGSAVE failed; log:\n{}",
                    log_tail(&self.dir.path().join("redis.log"))
                );
                return;
            }
            assert!(Instant::now() < deadline, "BGSAVE did not finish in 120 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Ok(mut c) = RedisConn::connect(self.port) {
            // The server closes the connection instead of replying.
            let _ = c.try_cmd(&[&"SHUTDOWN", &"NOSAVE"]);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while !matches!(self.child.try_wait(), Ok(Some(_))) {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        stop_watchdog(&mut self.watchdog);
    }
}

/// A RESP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`
    Status(String),
    /// `-ERR ...`
    Error(String),
    /// `:1`
    Int(i64),
    /// `$n` bytes, or nil.
    Bulk(Option<Vec<u8>>),
    /// `*n` replies, or nil.
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The integer, or a panic naming what came instead.
    pub fn int(self) -> i64 {
        match self {
            Reply::Int(i) => i,
            other => panic!("expected an integer reply, got {other:?}"),
        }
    }

    /// The bulk string's bytes (nil as `None`).
    pub fn bulk(self) -> Option<Vec<u8>> {
        match self {
            Reply::Bulk(b) => b,
            other => panic!("expected a bulk reply, got {other:?}"),
        }
    }

    /// A bulk reply as text.
    pub fn bulk_string(self) -> String {
        String::from_utf8_lossy(&self.bulk().unwrap_or_default()).into_owned()
    }

    /// The array's elements as bytes (each must be a bulk string).
    pub fn bulks(self) -> Vec<Vec<u8>> {
        match self {
            Reply::Array(Some(items)) => items
                .into_iter()
                .map(|r| r.bulk().expect("nil in an array reply"))
                .collect(),
            other => panic!("expected an array reply, got {other:?}"),
        }
    }

    /// The array's elements.
    pub fn array(self) -> Vec<Reply> {
        match self {
            Reply::Array(Some(items)) => items,
            other => panic!("expected an array reply, got {other:?}"),
        }
    }
}

/// A minimal, binary-safe RESP2 client: one command at a time, or pipelined batches.
pub struct RedisConn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl RedisConn {
    /// Connects to 127.0.0.1:`port`.
    pub fn connect(port: u16) -> std::io::Result<RedisConn> {
        let writer = TcpStream::connect(("127.0.0.1", port))?;
        writer.set_nodelay(true)?;
        writer.set_read_timeout(Some(Duration::from_secs(120)))?;
        Ok(RedisConn {
            reader: BufReader::with_capacity(1 << 16, writer.try_clone()?),
            writer,
        })
    }

    fn encode(out: &mut Vec<u8>, args: &[&dyn AsRef<[u8]>]) {
        out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for a in args {
            let a = a.as_ref();
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
    }

    /// One command; I/O errors are returned, error replies are `Reply::Error`.
    pub fn try_cmd(&mut self, args: &[&dyn AsRef<[u8]>]) -> std::io::Result<Reply> {
        let mut buf = Vec::new();
        Self::encode(&mut buf, args);
        self.writer.write_all(&buf)?;
        self.read_reply()
    }

    /// One command; panics on I/O errors and error replies.
    pub fn cmd(&mut self, args: &[&dyn AsRef<[u8]>]) -> Reply {
        let r = self.try_cmd(args).expect("Redis connection failed");
        if let Reply::Error(e) = &r {
            let name = String::from_utf8_lossy(args.first().map_or(&[][..], |a| a.as_ref()));
            panic!("Redis {name}: {e}");
        }
        r
    }

    /// Sends all commands, then reads all replies (in batches, so neither side's buffers
    /// fill up); panics on I/O errors and error replies.
    pub fn pipeline(&mut self, cmds: &[Vec<Vec<u8>>]) -> Vec<Reply> {
        let mut replies = Vec::with_capacity(cmds.len());
        for batch in cmds.chunks(1000) {
            let mut buf = Vec::new();
            for c in batch {
                let args: Vec<&dyn AsRef<[u8]>> = c.iter().map(|a| a as &dyn AsRef<[u8]>).collect();
                Self::encode(&mut buf, &args);
            }
            self.writer
                .write_all(&buf)
                .expect("write to the Redis connection");
            for c in batch {
                let r = self.read_reply().expect("read from the Redis connection");
                if let Reply::Error(e) = &r {
                    panic!(
                        "Redis {}: {e}",
                        String::from_utf8_lossy(c.first().map_or(&[][..], |a| a))
                    );
                }
                replies.push(r);
            }
        }
        replies
    }

    fn read_line(&mut self) -> std::io::Result<String> {
        let mut line = Vec::new();
        self.reader.read_until(b'\n', &mut line)?;
        if !line.ends_with(b"\r\n") {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "Redis closed the connection",
            ));
        }
        line.truncate(line.len() - 2);
        Ok(String::from_utf8_lossy(&line).into_owned())
    }

    fn read_reply(&mut self) -> std::io::Result<Reply> {
        let line = self.read_line()?;
        let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "bad RESP reply");
        let (kind, rest) = line.split_at_checked(1).ok_or_else(bad)?;
        let n = || rest.parse::<i64>().map_err(|_| bad());
        Ok(match kind {
            "+" => Reply::Status(rest.to_string()),
            "-" => Reply::Error(rest.to_string()),
            ":" => Reply::Int(n()?),
            "$" => {
                let len = n()?;
                if len < 0 {
                    Reply::Bulk(None)
                } else {
                    let mut data = vec![0; len as usize + 2];
                    self.reader.read_exact(&mut data)?;
                    data.truncate(len as usize);
                    Reply::Bulk(Some(data))
                }
            }
            "*" => {
                let len = n()?;
                if len < 0 {
                    Reply::Array(None)
                } else {
                    let mut items = Vec::with_capacity(len as usize);
                    for _ in 0..len {
                        items.push(self.read_reply()?);
                    }
                    Reply::Array(Some(items))
                }
            }
            _ => return Err(bad()),
        })
    }
}
