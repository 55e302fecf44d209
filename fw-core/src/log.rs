//! Messages on stderr (stdout belongs to the next stage of the pipeline).
//!
//! - Level: `-q`/`-v`, else `FW_LOG` (or `RUST_LOG`): error, warn, info
//!   (the default) or debug.
//! - Format: human one-liners (`fw-unseal: …`), or with `--log-format json`
//!   (or `FW_LOG_FORMAT=json`) one JSON object per line, a [`Record`]:
//!   `timestamp` (RFC 3339, UTC, milliseconds), `level`, `tool`, `event`,
//!   `message`, then the event's own fields (`name`, `version`, `path`,
//!   `code`, …). fw(7) lists the events and their fields.
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

impl Format {
    /// `FW_LOG_FORMAT`: `json`, else human.
    pub fn from_env() -> Format {
        match std::env::var("FW_LOG_FORMAT").as_deref() {
            Ok("json") => Format::Json,
            _ => Format::Human,
        }
    }
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
    set_format(format.unwrap_or_else(Format::from_env));
}

/// The old interface: -v and -q counts.
pub fn set_verbosity(verbose: u8, quiet: u8) {
    configure(verbose, quiet, None);
}

/// Sets the format alone (before the command line is parsed: its errors).
pub fn set_format(format: Format) {
    FORMAT.store(format as u8, Ordering::Relaxed);
    JOURNAL.store(stderr_is_journal() as u8, Ordering::Relaxed);
}

/// The format lines are written in.
pub fn format() -> Format {
    if FORMAT.load(Ordering::Relaxed) == Format::Json as u8 {
        Format::Json
    } else {
        Format::Human
    }
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
    Record::new(level, "message").emit(tool, message);
}

/// One log line: a level, an event (what happened, for machines: `error`,
/// `verified`, `switched`, …) and its fields, beside the message for
/// people. Human lines show the message; JSON lines show everything.
#[derive(Debug, Clone)]
pub struct Record {
    level: Level,
    event: &'static str,
    /// Each field as `"key":value`, in the order given.
    fields: Vec<String>,
    /// Shown whatever the level (a child's own output).
    always: bool,
}

/// Keys every JSON line has; fields may not reuse them.
const RESERVED: [&str; 5] = ["timestamp", "level", "tool", "event", "message"];

impl Record {
    pub fn new(level: Level, event: &'static str) -> Record {
        Record {
            level,
            event,
            fields: Vec::new(),
            always: false,
        }
    }

    /// Adds a field (`name`, `version`, `path`, `bytes`, …).
    pub fn field(mut self, key: &str, value: impl serde::Serialize) -> Record {
        debug_assert!(!RESERVED.contains(&key), "{key} is a reserved log key");
        if let Ok(value) = serde_json::to_string(&value) {
            self.fields
                .push(format!("{}:{value}", serde_json::Value::from(key)));
        }
        self
    }

    /// Writes the record for `tool`, if its level is enabled.
    pub fn emit(self, tool: &str, message: &str) {
        if !(self.always || enabled(self.level)) {
            return;
        }
        let prefix = if JOURNAL.load(Ordering::Relaxed) == 1 {
            format!("<{}>", self.level.priority())
        } else {
            String::new()
        };
        let line = match format() {
            Format::Json => {
                let mut line = format!(
                    "{{\"timestamp\":\"{}\",\"level\":\"{}\",\"tool\":{},\"event\":{},\"message\":{}",
                    rfc3339_millis(std::time::SystemTime::now()),
                    self.level.name(),
                    serde_json::Value::from(tool),
                    serde_json::Value::from(self.event),
                    serde_json::Value::from(message),
                );
                for field in &self.fields {
                    line.push(',');
                    line.push_str(field);
                }
                line.push('}');
                line
            }
            Format::Human if self.always => message.to_string(),
            Format::Human if self.level == Level::Error => format!("{tool}: error: {message}"),
            Format::Human => format!("{tool}: {message}"),
        };
        // One write per line, so lines of concurrent stages do not interleave.
        let _ = std::io::stderr()
            .lock()
            .write_all(format!("{prefix}{line}\n").as_bytes());
    }
}

/// Where a tool sends the output of a child it runs (a hook, a gate): to
/// stderr as it is, or, with JSON logs, each line as a record (event
/// `output`, its text the message) so that stderr stays all JSON. Shown
/// whatever the level, as `-q` promises ("errors and the hooks' output").
pub fn child_output(tool: &'static str) -> Box<dyn Write + Send> {
    match format() {
        Format::Human => Box::new(std::io::stderr()),
        Format::Json => Box::new(OutputLines {
            tool,
            partial: Vec::new(),
        }),
    }
}

struct OutputLines {
    tool: &'static str,
    partial: Vec<u8>,
}

impl OutputLines {
    fn emit(&self, line: &[u8]) {
        let mut record = Record::new(Level::Info, "output");
        record.always = true;
        record.emit(self.tool, &String::from_utf8_lossy(line));
    }
}

impl Write for OutputLines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.partial.extend_from_slice(buf);
        while let Some(end) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            self.emit(&line[..end]);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for OutputLines {
    fn drop(&mut self) {
        if !self.partial.is_empty() {
            self.emit(&self.partial);
        }
    }
}

/// Seconds since 1970 as RFC 3339 UTC, e.g. `2024-05-01T12:00:00Z`.
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A time as RFC 3339 UTC with milliseconds, e.g. `2024-05-01T12:00:00.250Z`.
pub fn rfc3339_millis(time: std::time::SystemTime) -> String {
    let since = time
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let whole = rfc3339(since.as_secs());
    format!(
        "{}.{:03}Z",
        whole.trim_end_matches('Z'),
        since.subsec_millis()
    )
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

/// A message with its event and fields for JSON logs:
/// `event!(Info, "verified", { "name": n, "path": p }, "{n} verified")`.
#[macro_export]
macro_rules! event {
    ($level:ident, $event:expr, { $($key:literal : $value:expr),* $(,)? }, $($arg:tt)+) => {
        $crate::log::Record::new($crate::log::Level::$level, $event)
            $(.field($key, $value))*
            .emit(env!("CARGO_PKG_NAME"), &format!($($arg)+))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951782400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1714564800), "2024-05-01T12:00:00Z");
        let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_714_564_800_250);
        assert_eq!(rfc3339_millis(time), "2024-05-01T12:00:00.250Z");
    }

    #[test]
    fn levels_parse_like_rust_log() {
        assert_eq!(Level::parse("debug"), Some(Level::Debug));
        assert_eq!(Level::parse("fw_unseal=debug,warn"), Some(Level::Warn));
        assert_eq!(Level::parse("nonsense"), None);
    }
}
