//! Where a pipe's output goes.

use std::{
    fmt,
    fs::File,
    io::{self, Write},
    os::fd::OwnedFd,
    path::{Path, PathBuf},
    process::ChildStdin,
};

use crate::Lines;

/// Where a pipe's output goes when it is not collected.
///
/// Usually made implicitly: `process | file`, `process | std::io::stdout()`,
/// `process | std::io::sink()`.
pub struct Sink(pub(crate) SinkKind);

pub(crate) enum SinkKind {
    Collect,
    Discard,
    /// Our own stdout.
    Stdout,
    /// Our own stderr.
    Stderr,
    /// An fd the last process writes to directly: a file, another child's stdin.
    Fd(OwnedFd),
    Path(PathBuf),
    Writer(Box<dyn Write + Send>),
}

impl Sink {
    /// Return the output from [`Pipe::run`] / yield it when iterating: the default.
    pub fn collect() -> Self {
        Sink(SinkKind::Collect)
    }

    /// Throw the output away (like `> /dev/null`).
    pub fn discard() -> Self {
        Sink(SinkKind::Discard)
    }

    /// Our own stdout, inherited by the last process.
    pub fn stdout() -> Self {
        Sink(SinkKind::Stdout)
    }

    /// Our own stderr, given to the last process as its stdout: for a command whose
    /// output is a message for people, while our stdout stays data.
    pub fn stderr() -> Self {
        Sink(SinkKind::Stderr)
    }

    /// Call `f` with each line of the output, without its `\n`, as soon as it is
    /// complete; a last line without `\n` at the end, also when the pipe fails (see
    /// [`Lines`]). `f` runs on a thread of its own, so a slow or blocked `f` (a stderr
    /// nobody reads) holds up the processes but never their timeouts or kills.
    pub fn lines(f: impl FnMut(&[u8]) + Send + 'static) -> Self {
        Sink::writer(Lines::new(f))
    }

    /// An open file, given to the last process as its stdout: no copying.
    pub fn file(file: File) -> Self {
        Sink(SinkKind::Fd(file.into()))
    }

    /// The file at `path`, created or truncated when the pipe runs (Fussy's `>`).
    pub fn path(path: impl AsRef<Path>) -> Self {
        Sink(SinkKind::Path(path.as_ref().to_owned()))
    }

    /// Any writer; the pipe copies the output into it, on a thread of its own (so a
    /// writer that blocks holds up the processes but never their timeouts or kills; one
    /// still blocked when a failed pipe ends is left behind on that thread).
    pub fn writer(writer: impl Write + Send + 'static) -> Self {
        Sink(SinkKind::Writer(Box::new(writer)))
    }
}

impl fmt::Debug for Sink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            SinkKind::Collect => f.write_str("Sink::Collect"),
            SinkKind::Discard => f.write_str("Sink::Discard"),
            SinkKind::Stdout => f.write_str("Sink::Stdout"),
            SinkKind::Stderr => f.write_str("Sink::Stderr"),
            SinkKind::Fd(fd) => write!(f, "Sink::Fd({fd:?})"),
            SinkKind::Path(p) => write!(f, "Sink::Path({p:?})"),
            SinkKind::Writer(_) => f.write_str("Sink::Writer"),
        }
    }
}

impl From<File> for Sink {
    fn from(f: File) -> Self {
        Sink::file(f)
    }
}

impl From<io::Stdout> for Sink {
    fn from(_: io::Stdout) -> Self {
        Sink::stdout()
    }
}

impl From<io::Stderr> for Sink {
    fn from(_: io::Stderr) -> Self {
        Sink::stderr()
    }
}

impl From<io::Sink> for Sink {
    fn from(_: io::Sink) -> Self {
        Sink::discard()
    }
}

impl From<ChildStdin> for Sink {
    fn from(s: ChildStdin) -> Self {
        Sink(SinkKind::Fd(s.into()))
    }
}
