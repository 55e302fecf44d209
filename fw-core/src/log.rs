//! Messages on stderr (stdout belongs to the next stage of the pipeline).
//!
//! - Level: `-q`/`-v`, else `FW_LOG` (or `RUST_LOG`): error, warn, info
//!   (the default) or debug.
//! - Format: human one-liners (`fw-unseal: …`), or with `--log-format json`
//!   (or `FW_LOG_FORMAT=json`) one JSON object per line: level, tool,
//!   message.
//! - Under systemd, when stderr is the journal (`JOURNAL_STREAM`), each
//!   line carries its syslog priority (`<3>` error … `<7>` debug, see
//!   sd-daemon(3)), so the journal files it right.

use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error = 0,
    Warn = 1,
    Info = 2,
    Debug = 3,
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }

    /// syslog priority, for the journal.
    fn priority(self) -> u8 {
        match self {
            Level::Error => 3,
            Level::Warn => 4,
            Level::Info => 6,
            Level::Debug => 7,
        }
    }

    fn parse(value: &str) -> Option<Level> {
        // RUST_LOG style: the last bare level of a comma list wins.
        value
            .split(',')
            .filter(|part| !part.contains('='))
            .filter_map(|part| match part.trim().to_ascii_lowercase().as_str() {
                "error" | "off" => Some(Level::Error),
                "warn" | "warning" => Some(Level::Warn),
                "info" => Some(Level::Info),
                "debug" | "trace" => Some(Level::Debug),
                _ => None,
            })
            .next_back()
    }
}

/// How lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    #[default]
    Human,
    Json,
}

static LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);
static FORMAT: AtomicU8 = AtomicU8::new(0);
static JOURNAL: AtomicU8 = AtomicU8::new(0);

/// Sets the level and format: flags first, then the environment.
pub fn configure(verbose: u8, quiet: u8, format: Option<Format>) {
    let from_env = std::env::var("FW_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|v| Level::parse(&v))
        .unwrap_or(Level::Info);
    let level = if verbose > 0 || quiet > 0 {
        (Level::Info as i16 + verbose as i16 - quiet as i16).clamp(0, 3) as u8
    } else {
        from_env as u8
    };
    LEVEL.store(level, Ordering::Relaxed);
    let format = format.unwrap_or_else(|| match std::env::var("FW_LOG_FORMAT").as_deref() {
        Ok("json") => Format::Json,
        _ => Format::Human,
    });
    FORMAT.store(format as u8, Ordering::Relaxed);
    JOURNAL.store(stderr_is_journal() as u8, Ordering::Relaxed);
}

/// The old interface: -v and -q counts.
pub fn set_verbosity(verbose: u8, quiet: u8) {
    configure(verbose, quiet, None);
}

/// systemd sets JOURNAL_STREAM=DEV:INODE for a service whose stderr is
/// the journal; it counts only if stderr is still that stream.
fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(value) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = value.split_once(':') else {
        return false;
    };
    let Ok(meta) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    dev.parse() == Ok(meta.dev()) && ino.parse() == Ok(meta.ino())
}

pub fn enabled(level: Level) -> bool {
    level as u8 <= LEVEL.load(Ordering::Relaxed)
}

/// Kept for callers that compare levels: -1 errors only, 0 normal, 1+ more.
pub fn level() -> i8 {
    LEVEL.load(Ordering::Relaxed) as i8 - Level::Info as i8
}

/// Writes one message for `tool` at `level`, if the level is enabled.
pub fn emit(level: Level, tool: &str, message: &str) {
    if !enabled(level) {
        return;
    }
    let prefix = if JOURNAL.load(Ordering::Relaxed) == 1 {
        format!("<{}>", level.priority())
    } else {
        String::new()
    };
    let line = if FORMAT.load(Ordering::Relaxed) == Format::Json as u8 {
        serde_json::json!({ "level": level.name(), "tool": tool, "message": message }).to_string()
    } else if level == Level::Error {
        format!("{tool}: error: {message}")
    } else {
        format!("{tool}: {message}")
    };
    // One write per line, so lines of concurrent stages do not interleave.
    let _ = std::io::stderr()
        .lock()
        .write_all(format!("{prefix}{line}\n").as_bytes());
}

/// A note for a person watching (shown unless `-q`).
#[macro_export]
macro_rules! note {
    ($($arg:tt)*) => {
        $crate::log::emit($crate::log::Level::Info, env!("CARGO_PKG_NAME"), &format!($($arg)*))
    };
}

/// A warning (shown unless `-qq`).
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => {
        $crate::log::emit($crate::log::Level::Warn, env!("CARGO_PKG_NAME"), &format!($($arg)*))
    };
}

/// A detail shown only with `-v`.
#[macro_export]
macro_rules! detail {
    ($($arg:tt)*) => {
        $crate::log::emit($crate::log::Level::Debug, env!("CARGO_PKG_NAME"), &format!($($arg)*))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_like_rust_log() {
        assert_eq!(Level::parse("debug"), Some(Level::Debug));
        assert_eq!(Level::parse("fw_unseal=debug,warn"), Some(Level::Warn));
        assert_eq!(Level::parse("nonsense"), None);
    }
}
