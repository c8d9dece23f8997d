//! The `cairn` binary: parses the command line, runs one command, maps the outcome to an exit
//! code. The work itself is in the `engine` crate; this crate only converts arguments into
//! engine options and results into text or JSON.

mod args;
mod commands;
mod configured;
mod output;
mod password;
mod progress;

use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Command};

/// How a command that did not fail ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything worked.
    Ok,
    /// Done, but some items were skipped (exit 3).
    Warnings,
    /// Done, but some items failed (exit 1).
    Partial,
}

/// Whether an error in the chain is a write to a closed pipe (also inside serde_json's errors).
fn is_broken_pipe(e: &(dyn std::error::Error + 'static)) -> bool {
    e.downcast_ref::<std::io::Error>()
        .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
        || e.downcast_ref::<serde_json::Error>()
            .and_then(serde_json::Error::io_error_kind)
            == Some(std::io::ErrorKind::BrokenPipe)
}

/// How `println!` panics when standard output fails.
const STDOUT_PANIC: &str = "failed printing to stdout: ";

/// Caps glibc's malloc at two arenas. By default it gives up to 8 per core to threads that
/// allocate at once (rayon, tokio, the blob workers, restore writers), and memory freed in
/// one arena is not reused by the others: measured on two cores, `prune --dry-run` of 2 M blobs
/// peaked at 265 MiB and `check --read-data` of a 1 GiB stream at 159-207 MiB; with two
/// arenas, 191 MiB and 123-125 MiB, in the same time. Must run before any other thread starts.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn limit_malloc_arenas() {
    // SAFETY: mallopt only sets an allocator parameter; it takes no pointers and is called
    // before this process starts any thread. A failure (0) leaves glibc's default.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}

/// Gives the pages of freed chunks in glibc's heaps back to the system: the engine calls it
/// during long scans (see `engine::memory`; prune at 20 M blobs peaked at 146 MiB without it,
/// 119 MiB with it).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn release_free_memory() {
    // SAFETY: malloc_trim takes no pointers and is thread-safe (it locks each arena); its
    // result (whether memory was released) needs no handling.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Grows the descriptor table once, while this process has one thread, to hold descriptor
/// min(4096, limit - 1) (8192 entries for 4096). A restore keeps up to 4096 small files open
/// at a time when the limit allows (`engine::restorer`), and Linux grows a
/// process's table by doubling it, each time waiting for an RCU grace period once threads share
/// the table: five growths cost 50-70 ms of a 1.1 s restore of 50 000 files, every other create
/// waiting meanwhile. 64 KiB of kernel memory; nothing else changes.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn reserve_descriptors() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given, which lives on this stack frame.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return;
    }
    let Ok(high) = libc::c_int::try_from(limit.rlim_cur.saturating_sub(1).min(4096)) else {
        return;
    };
    for fd in 0..3 {
        // SAFETY: F_DUPFD_CLOEXEC takes no pointers and never replaces an open descriptor (it
        // returns the lowest free one at or above `high`); the copy is closed at once. A
        // failure (the descriptor is not open, the limit is low) leaves the table as it is.
        unsafe {
            let copy = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, high);
            if copy >= 0 {
                libc::close(copy);
                return;
            }
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn reserve_descriptors() {}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_release_hook() {
    engine::memory::set_release_hook(release_free_memory);
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_release_hook() {}

fn main() -> ExitCode {
    limit_malloc_arenas();
    reserve_descriptors();
    set_release_hook();
    // `println!` panics when standard output fails (a full disk, a closed pipe): such a panic
    // ends the command as an error below, without a crash report. Other panics stay panics.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !info
            .payload_as_str()
            .is_some_and(|m| m.starts_with(STDOUT_PANIC))
        {
            default_hook(info);
        }
    }));
    let cli = Cli::parse();
    let output_only = output_only(&cli.command);
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_cli(&cli))) {
        Ok(code) => code,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or_default();
            let Some(cause) = msg.strip_prefix(STDOUT_PANIC) else {
                std::panic::resume_unwind(panic);
            };
            if cause.starts_with("Broken pipe") && output_only {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: cannot write the output\n  caused by: {cause}");
            ExitCode::from(1)
        }
    }
}

/// Commands whose only effect is their output: they may stop quietly when the reader goes away
/// (`cairn ls | head`). Any other command stopped by a closed pipe did not finish its work (e.g.
/// `run` writes its metrics file after printing its table), so for them that is an error.
fn output_only(c: &Command) -> bool {
    matches!(
        c,
        Command::Snapshots(_)
            | Command::Ls(_)
            | Command::Diff(_)
            | Command::Find(_)
            | Command::Stats(_)
            | Command::Dump(_)
            | Command::Cat(_)
    )
}

fn run_cli(cli: &Cli) -> ExitCode {
    let result = match &cli.command {
        Command::Init(a) => commands::init::run(&cli.global, a),
        Command::Backup(a) => commands::backup::run(&cli.global, a),
        Command::Run(a) => commands::run::run(&cli.global, a),
        Command::Copy(a) => commands::copy::run(&cli.global, a),
        Command::Snapshots(a) => commands::snapshots::run(&cli.global, a),
        Command::Ls(a) => commands::ls::run(&cli.global, a),
        Command::Diff(a) => commands::diff::run(&cli.global, a),
        Command::Find(a) => commands::find::run(&cli.global, a),
        Command::Stats(a) => commands::stats::run(&cli.global, a),
        Command::Restore(a) => commands::restore::run(&cli.global, a),
        Command::Dump(a) => commands::dump::run(&cli.global, a),
        Command::Cat(a) => commands::cat::run(&cli.global, a),
        Command::Check(a) => commands::check::run(&cli.global, a),
        Command::Repair(a) => commands::repair::run(&cli.global, a),
        Command::Forget(a) => commands::forget::run(&cli.global, a),
        Command::Prune(a) => commands::prune::run(&cli.global, a),
        Command::Protect(a) => commands::protect::run(&cli.global, a, true),
        Command::Unprotect(a) => commands::protect::run(&cli.global, a, false),
        Command::Status(a) => commands::status::run(&cli.global, a),
        Command::Config(a) => commands::config::run(&cli.global, a),
        Command::Key(a) => commands::key::run(&cli.global, a),
    };
    match result {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::Warnings) => ExitCode::from(3),
        Ok(Outcome::Partial) => ExitCode::from(1),
        Err(e) => {
            // A closed pipe (`cairn dump … | head`) is how the reader says "enough", not an error.
            if output_only(&cli.command) && e.chain().any(is_broken_pipe) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(1)
        }
    }
}
