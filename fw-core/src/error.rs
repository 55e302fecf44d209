//! Exit codes shared by every binary, and the error that carries one.

use std::fmt;

/// The exit codes of docs/design.md. Scripts rely on the numbers. Named
/// `Exit`, not `Exit`, so that it never shadows `std::process::ExitCode`
/// in a main.rs that returns one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Exit {
    Done = 0,
    Failed = 1,
    Usage = 2,
    RetryLater = 3,
    Security = 4,
    Invalid = 5,
    Busy = 6,
    RolledBack = 7,
    Failsafe = 8,
    /// No input: stdin was a pipe that ended before its first byte (or
    /// before the path line), because the stage before failed and said
    /// why. Reported quietly (a detail, with -v), never as a usage error.
    NoInput = 9,
    /// The reader of stdout went away: not this stage's failure, but a
    /// consequence of a later one. 128 + SIGPIPE, as a shell reports a
    /// process killed by SIGPIPE.
    BrokenPipe = 141,
}

impl Exit {
    pub fn code(self) -> u8 {
        self as u8
    }

    /// A short name of the code, for logs (`"security"`, `"no_input"`).
    pub fn name(self) -> &'static str {
        match self {
            Exit::Done => "done",
            Exit::Failed => "failed",
            Exit::Usage => "usage",
            Exit::RetryLater => "retry_later",
            Exit::Security => "security",
            Exit::Invalid => "invalid",
            Exit::Busy => "busy",
            Exit::RolledBack => "rolled_back",
            Exit::Failsafe => "failsafe",
            Exit::NoInput => "no_input",
            Exit::BrokenPipe => "broken_pipe",
        }
    }

    /// The code a child fw tool (or fw-install) exited with, as ours: any number
    /// outside DESIGN.md's table is a failure.
    pub fn from_status(code: i32) -> Exit {
        [
            Exit::Done,
            Exit::Failed,
            Exit::Usage,
            Exit::RetryLater,
            Exit::Security,
            Exit::Invalid,
            Exit::Busy,
            Exit::RolledBack,
            Exit::Failsafe,
            Exit::NoInput,
            Exit::BrokenPipe,
        ]
        .into_iter()
        .find(|c| i32::from(c.code()) == code)
        .unwrap_or(Exit::Failed)
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(code: Exit) -> Self {
        std::process::ExitCode::from(code.code())
    }
}

/// An error a tool reports in one line on stderr and maps to an exit code.
/// The message names what failed and, where it can, what to do.
#[derive(Debug)]
pub struct Error {
    pub code: Exit,
    pub message: String,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(code: Exit, message: impl Into<String>) -> Self {
        Error {
            code,
            message: message.into(),
        }
    }
    pub fn failed(message: impl Into<String>) -> Self {
        Self::new(Exit::Failed, message)
    }
    pub fn security(message: impl Into<String>) -> Self {
        Self::new(Exit::Security, message)
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(Exit::Invalid, message)
    }
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(Exit::Usage, message)
    }
    /// stdin, a pipe, ended before anything came: the stage before failed.
    pub fn no_input(message: impl Into<String>) -> Self {
        Self::new(Exit::NoInput, message)
    }

    /// An I/O failure on `what` (a path, "stdin", "stdout").
    pub fn io(what: impl fmt::Display, err: std::io::Error) -> Self {
        if err.kind() == std::io::ErrorKind::BrokenPipe {
            return Self::new(Exit::BrokenPipe, format!("{what}: {err}"));
        }
        const ENOSPC: i32 = 28;
        let hint = match err.raw_os_error() {
            Some(ENOSPC) => ": the disk is full, free some space",
            _ => "",
        };
        Self::failed(format!("{what}: {err}{hint}"))
    }

    /// Prefixes the message with context, keeping the exit code.
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// Reports `result` the way every fw binary does: nothing on success, one
/// line `TOOL: error: MESSAGE` on stderr otherwise, and the matching exit code.
/// A stage that lost its reader (141), or got no input because the stage
/// before failed (9), leaves the report to the stage that failed: one
/// failure, one line.
pub fn report(tool: &str, result: Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => Exit::Done.into(),
        Err(err) if err.code == Exit::BrokenPipe => err.code.into(),
        Err(err) => {
            let level = match err.code {
                Exit::NoInput => crate::log::Level::Debug,
                _ => crate::log::Level::Error,
            };
            crate::log::Record::new(level, "error")
                .field("code", err.code.code())
                .field("exit", err.code.name())
                .emit(tool, &err.message);
            err.code.into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_design() {
        assert_eq!(Exit::Security.code(), 4);
        assert_eq!(Exit::Invalid.code(), 5);
        assert_eq!(Exit::Failsafe.code(), 8);
        assert_eq!(Exit::from_status(7), Exit::RolledBack);
        assert_eq!(Exit::from_status(141), Exit::BrokenPipe);
        assert_eq!(Exit::from_status(9), Exit::NoInput);
        assert_eq!(Exit::from_status(10), Exit::Failed);
        assert_eq!(Exit::from_status(-1), Exit::Failed);
    }

    #[test]
    fn enospc_says_disk_full() {
        let err = Error::io("out.tar", std::io::Error::from_raw_os_error(28));
        assert!(err.message.contains("disk is full"), "{}", err.message);
        assert_eq!(err.code, Exit::Failed);
    }

    #[test]
    fn context_keeps_code() {
        let err = Error::invalid("bad entry").context("pkg.fw");
        assert_eq!(err.code, Exit::Invalid);
        assert_eq!(err.message, "pkg.fw: bad entry");
    }
}
