//! Progress bars on stderr: bytes, rate and ETA (when the size is known).
//! Shown by default only when stderr is a terminal, messages are human
//! and not quieted; `--progress` forces them (even into a file or a
//! pipe), `--no-progress` hides them. Never on stdout.

use std::io::{IsTerminal, Read};

pub use indicatif::ProgressBar;
use indicatif::{ProgressDrawTarget, ProgressStyle};

/// `--progress` / `--no-progress`.
#[derive(clap::Args, Debug, Clone, Copy, Default)]
pub struct ProgressArgs {
    /// Show a progress bar on stderr even when it is not a terminal.
    #[arg(long, overrides_with = "no_progress")]
    pub progress: bool,
    /// Never show a progress bar.
    #[arg(long)]
    pub no_progress: bool,
}

impl ProgressArgs {
    /// A bar for `total` bytes (a spinner with bytes and rate when the
    /// total is unknown), or a hidden one.
    pub fn bar(self, label: &str, total: Option<u64>) -> ProgressBar {
        let wanted = if self.no_progress {
            false
        } else if self.progress {
            true
        } else {
            std::io::stderr().is_terminal()
                && crate::log::enabled(crate::log::Level::Info)
                && std::env::var("FW_LOG_FORMAT").as_deref() != Ok("json")
        };
        if !wanted {
            return ProgressBar::hidden();
        }
        let bar = match total {
            Some(total) => ProgressBar::with_draw_target(Some(total), target(self.progress))
                .with_style(
                ProgressStyle::with_template(
                    "{prefix} {wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
                )
                .expect("a valid template"),
            ),
            None => ProgressBar::with_draw_target(None, target(self.progress)).with_style(
                ProgressStyle::with_template(
                    "{prefix} {spinner} {bytes} {binary_bytes_per_sec} {elapsed}",
                )
                .expect("a valid template"),
            ),
        };
        bar.with_prefix(label.to_string())
    }
}

/// Forced bars draw whatever stderr is; others only on a terminal.
fn target(forced: bool) -> ProgressDrawTarget {
    if forced {
        ProgressDrawTarget::term_like_with_hz(Box::new(console::Term::stderr()), 10)
    } else {
        ProgressDrawTarget::stderr_with_hz(10)
    }
}

/// The size of a reader that is a regular file (stdin redirected from a
/// file), for the bar's total.
pub fn stdin_size() -> Option<u64> {
    std::fs::metadata("/proc/self/fd/0")
        .ok()
        .filter(|m| m.is_file())
        .map(|m| m.len())
}

/// Counts what passes through into a bar.
pub struct ProgressReader<R> {
    inner: R,
    bar: ProgressBar,
}

impl<R> ProgressReader<R> {
    pub fn new(inner: R, bar: ProgressBar) -> Self {
        ProgressReader { inner, bar }
    }
}

impl<R: Read> Read for ProgressReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 {
            self.bar.finish_and_clear();
        } else {
            self.bar.inc(n as u64);
        }
        Ok(n)
    }
}
