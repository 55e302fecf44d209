use std::{fmt, io, time::Duration};

use nix::sys::signal::Signal;

/// Why a process counts as failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// It exited with a status that is neither 0 nor one of its `good_exit` codes.
    Exit(i32),
    /// It was killed by this signal (by someone other than fw-nbio).
    Signal(i32),
    /// It outlived its [`Process::timeout`](crate::Process::timeout); its process group was killed.
    TimedOut(Duration),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Exit(code) => write!(f, "exited with status {code}"),
            Failure::Signal(sig) => match Signal::try_from(*sig) {
                Ok(name) => write!(f, "was killed by signal {sig} ({})", name.as_str()),
                Err(_) => write!(f, "was killed by signal {sig}"),
            },
            Failure::TimedOut(after) => write!(f, "timed out after {after:?} and was killed"),
        }
    }
}

/// A process of a pipe failed; it is the first failure, the one that caused the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessError {
    /// The process's name: its shell script, its argv, or what [`Process::name`](crate::Process::name) set.
    pub name: String,
    /// Its position among the pipe's processes, from 0.
    pub stage: usize,
    /// Its process id (also its process group id).
    pub pid: u32,
    /// What went wrong.
    pub failure: Failure,
    /// The end of its stderr, if it was captured ([`Process::capture_stderr`](crate::Process::capture_stderr)); empty otherwise.
    pub stderr_tail: String,
}

impl fmt::Display for ProcessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` (pid {}) {}", self.name, self.pid, self.failure)?;
        if !self.stderr_tail.is_empty() {
            write!(f, "; its stderr ends with:\n{}", self.stderr_tail)?;
        }
        Ok(())
    }
}

impl std::error::Error for ProcessError {}

/// Everything that can go wrong running a [`Pipe`](crate::Pipe).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A process could not be started (not found, not executable, bad working directory...).
    #[error("failed to start `{name}`: {error}")]
    Spawn { name: String, error: io::Error },
    /// A process failed; see [`ProcessError`].
    #[error(transparent)]
    Process(#[from] ProcessError),
    /// Reading the pipe's Rust input (a reader or file) failed.
    #[error("pipe input failed: {0}")]
    Source(io::Error),
    /// Writing the pipe's output to its sink (a file, our stdout, a writer) failed.
    #[error("pipe output failed: {0}")]
    Sink(io::Error),
    /// The whole pipe outlived [`Pipe::timeout`](crate::Pipe::timeout); every process group was killed.
    #[error("pipe timed out after {0:?}; its processes were killed")]
    TimedOut(Duration),
    /// [`Running::kill`](crate::Running::kill) or a [`Killer`](crate::Killer) stopped the pipe.
    #[error("pipe was killed")]
    Killed,
    /// Setting up pipes or polling failed, or a child's exit status cannot be known
    /// (SIGCHLD is ignored, or something else reaped it).
    #[error("pipe I/O failed: {0}")]
    Io(io::Error),
}

impl Error {
    /// The failed process, if this error is about one.
    pub fn process(&self) -> Option<&ProcessError> {
        match self {
            Error::Process(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

impl From<nix::Error> for Error {
    fn from(e: nix::Error) -> Self {
        Error::Io(e.into())
    }
}

/// The last lines of `stderr`, at most about `MAX` bytes, for an error message.
pub(crate) fn stderr_tail(stderr: &[u8]) -> String {
    const MAX: usize = 2048;
    let mut tail = &stderr[stderr.len().saturating_sub(MAX)..];
    if tail.len() < stderr.len() {
        // Start at a line boundary rather than mid-line (or mid-character).
        if let Some(nl) = tail.iter().position(|&b| b == b'\n') {
            tail = &tail[nl + 1..];
        }
    }
    String::from_utf8_lossy(tail).trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_whole_last_lines() {
        let mut long = b"x".repeat(3000);
        long.extend_from_slice(b"\nlast words\n\n");
        assert_eq!(stderr_tail(&long), "last words");
        assert_eq!(stderr_tail(b"short\n"), "short");
        assert_eq!(stderr_tail(b""), "");
    }

    #[test]
    fn display_names_process_status_and_stderr() {
        let e = ProcessError {
            name: "gzip -dc".into(),
            stage: 1,
            pid: 42,
            failure: Failure::Exit(1),
            stderr_tail: "gzip: stdin: not in gzip format".into(),
        };
        let s = e.to_string();
        assert!(s.contains("`gzip -dc`") && s.contains("status 1") && s.contains("not in gzip"));
        let sig = Failure::Signal(libc::SIGTERM).to_string();
        assert!(sig.contains("SIGTERM"), "{sig}");
    }
}
