//! Exit codes shared by every binary, and the error that carries one.

use std::fmt;

/// DESIGN.md's exit codes. Scripts rely on the numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ExitCode {
    Done = 0,
    Failed = 1,
    Usage = 2,
    RetryLater = 3,
    Security = 4,
    Invalid = 5,
    Busy = 6,
    RolledBack = 7,
    Failsafe = 8,
    /// The reader of stdout went away: not this stage's failure, but a
    /// consequence of a later one. 128 + SIGPIPE, as a shell reports a
    /// process killed by SIGPIPE.
    BrokenPipe = 141,
}

impl ExitCode {
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The code a child fw tool (or fw-install) exited with, as ours: any number
    /// outside DESIGN.md's table is a failure.
    pub fn from_status(code: i32) -> ExitCode {
        [
            ExitCode::Done,
            ExitCode::Failed,
            ExitCode::Usage,
            ExitCode::RetryLater,
            ExitCode::Security,
            ExitCode::Invalid,
            ExitCode::Busy,
            ExitCode::RolledBack,
            ExitCode::Failsafe,
            ExitCode::BrokenPipe,
        ]
        .into_iter()
        .find(|c| i32::from(c.code()) == code)
        .unwrap_or(ExitCode::Failed)
    }
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(code: ExitCode) -> Self {
        std::process::ExitCode::from(code.code())
    }
}

/// An error a tool reports in one line on stderr and maps to an exit code.
/// The message names what failed and, where it can, what to do.
#[derive(Debug)]
pub struct Error {
    pub code: ExitCode,
    pub message: String,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(code: ExitCode, message: impl Into<String>) -> Self {
        Error {
            code,
            message: message.into(),
        }
    }
    pub fn failed(message: impl Into<String>) -> Self {
        Self::new(ExitCode::Failed, message)
    }
    pub fn security(message: impl Into<String>) -> Self {
        Self::new(ExitCode::Security, message)
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ExitCode::Invalid, message)
    }
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(ExitCode::Usage, message)
    }

    /// An I/O failure on `what` (a path, "stdin", "stdout").
    pub fn io(what: impl fmt::Display, err: std::io::Error) -> Self {
        if err.kind() == std::io::ErrorKind::BrokenPipe {
            return Self::new(ExitCode::BrokenPipe, format!("{what}: {err}"));
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
pub fn report(tool: &str, result: Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => ExitCode::Done.into(),
        // A closed pipe is reported by the stage that closed it.
        Err(err) if err.code == ExitCode::BrokenPipe => err.code.into(),
        Err(err) => {
            crate::log::emit(crate::log::Level::Error, tool, &err.message);
            err.code.into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_design() {
        assert_eq!(ExitCode::Security.code(), 4);
        assert_eq!(ExitCode::Invalid.code(), 5);
        assert_eq!(ExitCode::Failsafe.code(), 8);
        assert_eq!(ExitCode::from_status(7), ExitCode::RolledBack);
        assert_eq!(ExitCode::from_status(141), ExitCode::BrokenPipe);
        assert_eq!(ExitCode::from_status(9), ExitCode::Failed);
        assert_eq!(ExitCode::from_status(-1), ExitCode::Failed);
    }

    #[test]
    fn enospc_says_disk_full() {
        let err = Error::io("out.tar", std::io::Error::from_raw_os_error(28));
        assert!(err.message.contains("disk is full"), "{}", err.message);
        assert_eq!(err.code, ExitCode::Failed);
    }

    #[test]
    fn context_keeps_code() {
        let err = Error::invalid("bad entry").context("pkg.fw");
        assert_eq!(err.code, ExitCode::Invalid);
        assert_eq!(err.message, "pkg.fw: bad entry");
    }
}
