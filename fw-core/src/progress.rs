//! Progress bars on stderr: bytes, rate and ETA (when the size is known).
//! Shown by default only when stderr is a terminal, messages are human
//! and not quieted; `--progress` forces them (even into a file or a
//! pipe), `--no-progress` hides them. Never on stdout.
//!
//! The owner of a bar ends it ([`finish`]): readers and hashers only count
//! into it, so a bar over many files runs to its total once.

use std::io::{IsTerminal, Read};
use std::time::Duration;

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
    /// A bar for `total` bytes (a spinner with bytes and rate until a
    /// total is known: [`set_total`]), or a hidden one.
    pub fn bar(self, label: &str, total: Option<u64>) -> ProgressBar {
        let wanted = if self.no_progress {
            false
        } else if self.progress {
            true
        } else {
            std::io::stderr().is_terminal()
                && crate::log::enabled(crate::log::Level::Info)
                && crate::log::format() == crate::log::Format::Human
        };
        if !wanted {
            return ProgressBar::hidden();
        }
        let target = if self.progress {
            // Forced bars draw whatever stderr is; others only on a terminal.
            ProgressDrawTarget::term_like_with_hz(Box::new(console::Term::stderr()), 10)
        } else {
            ProgressDrawTarget::stderr_with_hz(10)
        };
        let bar = ProgressBar::with_draw_target(None, target).with_prefix(label.to_string());
        match total {
            Some(total) => set_total(&bar, total),
            None => bar.set_style(
                ProgressStyle::with_template(
                    "{prefix} {spinner} {bytes} {binary_bytes_per_sec} {elapsed}",
                )
                .expect("a valid template"),
            ),
        }
        bar
    }
}

/// Gives `bar` its total: from here on it draws a bar with the bytes done
/// of the total, the rate and the time left.
pub fn set_total(bar: &ProgressBar, total: u64) {
    bar.set_length(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix} {wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
        )
        .expect("a valid template"),
    );
}

/// Ends `bar`: draws it once more as it stands (at its total when the work
/// is done), then takes it off the screen for the next line.
pub fn finish(bar: &ProgressBar) {
    if !bar.is_hidden() {
        bar.force_draw();
    }
    bar.finish_and_clear();
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
        self.bar.inc(n as u64);
        Ok(n)
    }
}

/// Runs `work` (a syncfs, fsyncs) while `bar` shows the system's data
/// waiting for the disk being written: its total is what was dirty or
/// under writeback when `work` began (/proc/meminfo), its position how
/// much of that has gone. A measure of the whole system, not only of what
/// `work` flushes, which is why the bar is set to its total once `work`
/// returns; no bar when nothing waited.
pub fn flushing<T>(bar: ProgressBar, work: impl FnOnce() -> T) -> T {
    let start = if bar.is_hidden() { None } else { unwritten() };
    let Some(start) = start.filter(|&n| n > 0) else {
        return work();
    };
    set_total(&bar, start);
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let watcher = {
        let bar = bar.clone();
        std::thread::spawn(move || {
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                stopped.recv_timeout(Duration::from_millis(100))
            {
                if let Some(now) = unwritten() {
                    bar.set_position(start.saturating_sub(now));
                }
            }
        })
    };
    let result = work();
    drop(stop);
    let _ = watcher.join();
    bar.set_position(start);
    finish(&bar);
    result
}

/// Bytes dirty or under writeback in the page cache (/proc/meminfo).
fn unwritten() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    meminfo_unwritten(&text)
}

fn meminfo_unwritten(text: &str) -> Option<u64> {
    let kib = |key: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(key))?;
        line[key.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    };
    Some((kib("Dirty:")? + kib("Writeback:")?) * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_counts_dirty_and_writeback() {
        let text = "MemFree:  100 kB\nDirty:     12 kB\nWriteback:  4 kB\nWritebackTmp: 9 kB\n";
        assert_eq!(meminfo_unwritten(text), Some(16 * 1024));
        assert_eq!(meminfo_unwritten("MemFree: 1 kB\n"), None);
    }

    #[test]
    fn a_reader_counts_without_ending_the_bar() {
        let bar = ProgressBar::hidden();
        let mut first = ProgressReader::new(&b"abc"[..], bar.clone());
        std::io::copy(&mut first, &mut std::io::sink()).unwrap();
        let mut second = ProgressReader::new(&b"de"[..], bar.clone());
        std::io::copy(&mut second, &mut std::io::sink()).unwrap();
        assert_eq!(bar.position(), 5);
        assert!(
            !bar.is_finished(),
            "a reader at its end must not end the bar"
        );
    }
}
