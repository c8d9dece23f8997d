//! Terminal progress: a bar on stderr when it is a terminal, nothing when piped. Warnings
//! always go to stderr, above the bar.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Counts and, on a terminal, draws.
pub struct TermProgress {
    bar: Option<ProgressBar>,
    bytes: AtomicU64,
    files: AtomicU64,
}

impl TermProgress {
    /// A progress display for `verb` ("backup", "restore"); hidden unless stderr is a terminal
    /// and `quiet` is off.
    pub fn new(verb: &str, quiet: bool) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(8));
            let style = ProgressStyle::with_template(&format!(
                "{verb} {{spinner}} [{{elapsed_precise}}] {{bytes}}/{{total_bytes}} {{bytes_per_sec}} eta {{eta}} {{msg}}"
            ))
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
            bar.set_style(style);
            bar.enable_steady_tick(Duration::from_millis(125));
            bar
        });
        TermProgress {
            bar,
            bytes: AtomicU64::new(0),
            files: AtomicU64::new(0),
        }
    }

    /// Prints a line on stderr, above the bar when there is one.
    pub fn note(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }

    /// Removes the bar before the summary is printed.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl engine::progress::Progress for TermProgress {
    fn shows_totals(&self) -> bool {
        self.bar.is_some()
    }

    fn set_total(&self, _files: u64, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.set_length(bytes);
        }
    }

    fn file_started(&self, path: &Path) {
        if let Some(bar) = &self.bar {
            let files = self.files.load(Ordering::Relaxed);
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            bar.set_message(format!("{files} files, {name}"));
        }
    }

    fn file_done(&self) {
        self.files.fetch_add(1, Ordering::Relaxed);
    }

    fn bytes_done(&self, n: u64) {
        let total = self.bytes.fetch_add(n, Ordering::Relaxed) + n;
        if let Some(bar) = &self.bar {
            bar.set_position(total);
        }
    }

    fn command_stderr(&self, line: &str) {
        self.note(line);
    }

    fn warning(&self, path: &Path, message: &str) {
        let line = format!("warning: {}: {message}", path.display());
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }
}
