//! Writes N MiB of deterministic dump-like data to standard output.
//!
//! ```text
//! gen-dump [--day2] [--seed N] [MIB]      (MIB defaults to 64)
//! ```
//!
//! `--day2` gives the same stream with about 0.5 % of its rows' numbers edited in place; see
//! [`cairn_benches`] for what the data looks like. `benches/compare.sh` and `scripts/demo` use
//! it, so their input matches the criterion benches'.

use std::io::{self, Write};
use std::process::ExitCode;

use cairn_benches::{DEFAULT_SEED, Variant, write_dump};

const USAGE: &str = "usage: gen-dump [--day2] [--seed N] [MIB]\n\
    Writes MIB MiB (default 64) of deterministic dump-like SQL to stdout.\n";

fn main() -> ExitCode {
    let mut variant = Variant::Day1;
    let mut seed = DEFAULT_SEED;
    let mut mib: u64 = 64;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let parsed = match arg.as_str() {
            "--day2" => {
                variant = Variant::Day2;
                Ok(())
            }
            "--seed" => args
                .next()
                .and_then(|s| s.parse().ok())
                .map(|s| seed = s)
                .ok_or("--seed needs a number"),
            "-h" | "--help" => {
                print!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => other
                .parse()
                .map(|m| mib = m)
                .map_err(|_| "unknown argument"),
        };
        if let Err(msg) = parsed {
            eprint!("gen-dump: {msg}: {arg}\n{USAGE}");
            return ExitCode::from(2);
        }
    }
    let mut out = io::stdout().lock();
    match write_dump(&mut out, mib << 20, seed, variant).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        // `gen-dump | head` is normal use: stop quietly when the reader goes away.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gen-dump: {e}");
            ExitCode::FAILURE
        }
    }
}
