use std::{
    fmt,
    fs::File,
    io::{self, Read, Write},
    ops::BitOr,
    os::fd::OwnedFd,
    path::{Path, PathBuf},
    process::{ChildStdin, ChildStdout},
    time::Duration,
};

use crate::{engine::Engine, Error, Killer, Output, Process, Running};

/// A closure called with each chunk (or line) flowing past it.
pub(crate) type Tap = Box<dyn FnMut(&[u8]) + Send>;

/// Writes a Rust source's data into the pipe; runs on a feeder thread of its own, since
/// iterators and readers may block.
pub(crate) type Feed = Box<dyn FnOnce(&mut dyn Write) -> io::Result<()> + Send>;

pub(crate) enum Stage {
    Process(Box<Process>),
    Tap(Tap),
}

/// What a pipe reads: bytes, an iterator of chunks, a reader, a file, or nothing.
///
/// Usually made implicitly: `"text" | process`, `vec | process`, `file | process`.
pub struct Source(pub(crate) SourceKind);

pub(crate) enum SourceKind {
    Empty,
    /// Our own stdin.
    Inherit,
    /// An fd handed straight to the first process: a file, another child's stdout.
    Fd(OwnedFd),
    Path(PathBuf),
    Feed(Feed),
}

impl Source {
    /// No input: the first process reads `/dev/null`.
    pub fn empty() -> Self {
        Source(SourceKind::Empty)
    }

    pub fn bytes(bytes: impl Into<Vec<u8>>) -> Self {
        let bytes = bytes.into();
        Source(SourceKind::Feed(Box::new(move |w| w.write_all(&bytes))))
    }

    /// Each item of `chunks`, in order, as it is produced (a generator, a download's chunks).
    pub fn chunks<I>(chunks: I) -> Self
    where
        I: IntoIterator + Send + 'static,
        I::Item: AsRef<[u8]>,
    {
        Source(SourceKind::Feed(Box::new(move |w| {
            chunks
                .into_iter()
                .try_for_each(|chunk| w.write_all(chunk.as_ref()))
        })))
    }

    /// Everything `reader` yields: a socket, a decoder, anything [`Read`].
    pub fn reader(mut reader: impl Read + Send + 'static) -> Self {
        Source(SourceKind::Feed(Box::new(move |w| {
            io::copy(&mut reader, w).map(drop)
        })))
    }

    /// An open file (or pipe), given to the first process as its stdin: no copying.
    pub fn file(file: File) -> Self {
        Source(SourceKind::Fd(file.into()))
    }

    /// The file at `path`, opened when the pipe runs (Fussy's `<`).
    pub fn path(path: impl AsRef<Path>) -> Self {
        Source(SourceKind::Path(path.as_ref().to_owned()))
    }

    /// Our own stdin, inherited by the first process.
    pub fn stdin() -> Self {
        Source(SourceKind::Inherit)
    }
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            SourceKind::Empty => f.write_str("Source::Empty"),
            SourceKind::Inherit => f.write_str("Source::Stdin"),
            SourceKind::Fd(fd) => write!(f, "Source::Fd({fd:?})"),
            SourceKind::Path(p) => write!(f, "Source::Path({p:?})"),
            SourceKind::Feed(_) => f.write_str("Source::Feed"),
        }
    }
}

macro_rules! source_from {
    ($($ty:ty => |$v:ident| $make:expr;)*) => {$(
        impl From<$ty> for Source {
            fn from($v: $ty) -> Self {
                $make
            }
        }
    )*};
}

source_from! {
    &str => |s| Source::bytes(s);
    String => |s| Source::bytes(s);
    &[u8] => |b| Source::bytes(b);
    Vec<u8> => |b| Source::bytes(b);
    File => |f| Source::file(f);
    ChildStdout => |s| Source(SourceKind::Fd(s.into()));
    io::Stdin => |_s| Source::stdin();
}

impl<const N: usize> From<&[u8; N]> for Source {
    fn from(b: &[u8; N]) -> Self {
        Source::bytes(b.as_slice())
    }
}

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

    /// An open file, given to the last process as its stdout: no copying.
    pub fn file(file: File) -> Self {
        Sink(SinkKind::Fd(file.into()))
    }

    /// The file at `path`, created or truncated when the pipe runs (Fussy's `>`).
    pub fn path(path: impl AsRef<Path>) -> Self {
        Sink(SinkKind::Path(path.as_ref().to_owned()))
    }

    /// Any writer; the pipe copies the output into it.
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

/// Processes and Rust closures running in parallel, each one's output the next one's input,
/// between a [`Source`] and a [`Sink`].
///
/// Build it with `|` or the methods below; run it with [`run`](Self::run), or iterate it
/// (or the [`Running`] from [`spawn`](Self::spawn)) to get its output as it is produced.
/// Adjacent processes are joined by an OS pipe: their data never passes through us.
///
/// # Panics
/// Composition panics when it cannot make sense: adding to a pipe that already has a
/// sink, or joining a pipe that has a source after another.
pub struct Pipe {
    pub(crate) source: Source,
    pub(crate) stages: Vec<Stage>,
    pub(crate) sink: Option<Sink>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) by_line: bool,
    pub(crate) killers: Vec<Killer>,
}

impl Default for Pipe {
    fn default() -> Self {
        Self::new()
    }
}

impl Pipe {
    /// An empty pipe: no input, no stages, output collected.
    pub fn new() -> Self {
        Pipe {
            source: Source::empty(),
            stages: Vec::new(),
            sink: None,
            timeout: None,
            by_line: false,
            killers: Vec::new(),
        }
    }

    /// A pipe reading `source` (see [`Source`] for what converts).
    pub fn from_source(source: impl Into<Source>) -> Self {
        Pipe {
            source: source.into(),
            ..Pipe::new()
        }
    }

    /// Number of stages (processes and closures).
    pub fn len(&self) -> usize {
        self.stages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.stages.is_empty()
    }

    /// Append a process.
    pub fn process(mut self, process: Process) -> Self {
        self.assert_open("a process");
        self.stages.push(Stage::Process(Box::new(process)));
        self
    }

    /// Append a closure called with each chunk (or line, after a [`Process::by_line`]) of
    /// the data at this point; the data flows on unchanged to what follows, and into the
    /// collected output if nothing does.
    pub fn tap<F: FnMut(&[u8]) + Send + 'static>(mut self, f: F) -> Self {
        self.assert_open("a closure");
        self.stages.push(Stage::Tap(Box::new(f)));
        self
    }

    /// Send the output to `sink` instead of collecting it.
    pub fn sink(mut self, sink: impl Into<Sink>) -> Self {
        self.assert_open("a sink");
        self.sink = Some(sink.into());
        self
    }

    /// Read the input from the file at `path` (Fussy's `<`), replacing any source.
    pub fn from_file(mut self, path: impl AsRef<Path>) -> Self {
        self.source = Source::path(path);
        self
    }

    /// Write the output to the file at `path` (Fussy's `>`).
    pub fn to_file(self, path: impl AsRef<Path>) -> Self {
        self.sink(Sink::path(path))
    }

    /// Kill every process group and fail with [`Error::TimedOut`] if the pipe is not done
    /// this long after it starts.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Deliver the output to an iterating caller one line at a time, without the `\n`
    /// (as if the last process were [`Process::by_line`]).
    pub fn by_line(mut self) -> Self {
        self.by_line = true;
        self
    }

    /// A handle that can kill this pipe from another thread while it runs.
    pub fn killer(&mut self) -> Killer {
        let killer = Killer::default();
        self.killers.push(killer.clone());
        killer
    }

    /// Start every stage; the returned [`Running`] yields the output as it comes.
    pub fn spawn(self) -> Result<Running, Error> {
        let by_line = self.by_line || self.last_process_by_line();
        Ok(Running::new(Engine::spawn(self)?, by_line))
    }

    /// Run to completion; the output, collected (empty if it went to a sink).
    pub fn run(self) -> Result<Output, Error> {
        self.spawn()?.wait()
    }

    /// Run to completion; the output as text (invalid UTF-8 replaced by U+FFFD).
    pub fn run_text(self) -> Result<String, Error> {
        Ok(self.run()?.text())
    }

    fn last_process_by_line(&self) -> bool {
        self.stages.iter().rev().find_map(|s| match s {
            Stage::Process(p) => Some(p.by_line),
            Stage::Tap(_) => None,
        }) == Some(true)
    }

    fn assert_open(&self, what: &str) {
        assert!(
            self.sink.is_none(),
            "fw-nbio: cannot add {what} after the pipe's sink"
        );
    }

    /// `self | other`: `other`'s stages run after ours.
    fn join(mut self, other: Pipe) -> Self {
        self.assert_open("a pipe");
        assert!(
            matches!(other.source.0, SourceKind::Empty),
            "fw-nbio: cannot join a pipe that has its own input after another"
        );
        self.stages.extend(other.stages);
        self.sink = other.sink;
        self.timeout = match (self.timeout, other.timeout) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.by_line |= other.by_line;
        self.killers.extend(other.killers);
        self
    }
}

impl From<Process> for Pipe {
    fn from(process: Process) -> Self {
        Pipe::new().process(process)
    }
}

impl fmt::Debug for Pipe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let stages: Vec<String> = self
            .stages
            .iter()
            .map(|s| match s {
                Stage::Process(p) => p.display_name(),
                Stage::Tap(_) => "<closure>".to_owned(),
            })
            .collect();
        f.debug_struct("Pipe")
            .field("source", &self.source)
            .field("stages", &stages)
            .field("sink", &self.sink)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl IntoIterator for Pipe {
    type Item = Result<Vec<u8>, Error>;
    type IntoIter = Running;

    /// Start the pipe and iterate its output; a failure to start is the one item.
    fn into_iter(self) -> Running {
        self.spawn().unwrap_or_else(Running::failed)
    }
}

// `x | y` for every pair that makes sense. A closure needs parentheses (its body would
// swallow a following `| ...`) and its argument type spelled out (`(|chunk: &[u8]| ...)`),
// because `|` has several right-hand sides; `.tap(f)` needs neither.

impl BitOr<Process> for Pipe {
    type Output = Pipe;
    fn bitor(self, rhs: Process) -> Pipe {
        self.process(rhs)
    }
}

impl BitOr<Pipe> for Pipe {
    type Output = Pipe;
    fn bitor(self, rhs: Pipe) -> Pipe {
        self.join(rhs)
    }
}

impl<F: FnMut(&[u8]) + Send + 'static> BitOr<F> for Pipe {
    type Output = Pipe;
    fn bitor(self, rhs: F) -> Pipe {
        self.tap(rhs)
    }
}

impl<F: FnMut(&[u8]) + Send + 'static> BitOr<F> for Process {
    type Output = Pipe;
    fn bitor(self, rhs: F) -> Pipe {
        Pipe::from(self).tap(rhs)
    }
}

impl BitOr<Process> for Process {
    type Output = Pipe;
    fn bitor(self, rhs: Process) -> Pipe {
        Pipe::from(self).process(rhs)
    }
}

impl BitOr<Pipe> for Process {
    type Output = Pipe;
    fn bitor(self, rhs: Pipe) -> Pipe {
        Pipe::from(self).join(rhs)
    }
}

macro_rules! into_sink {
    ($($ty:ty),*) => {$(
        impl BitOr<$ty> for Pipe {
            type Output = Pipe;
            fn bitor(self, rhs: $ty) -> Pipe {
                self.sink(rhs)
            }
        }
        impl BitOr<$ty> for Process {
            type Output = Pipe;
            fn bitor(self, rhs: $ty) -> Pipe {
                Pipe::from(self).sink(rhs)
            }
        }
    )*};
}

into_sink!(Sink, File, io::Stdout, io::Sink, ChildStdin);

macro_rules! from_source {
    ($(impl[$($gen:tt)*] $ty:ty;)*) => {$(
        impl<$($gen)*> BitOr<Process> for $ty {
            type Output = Pipe;
            fn bitor(self, rhs: Process) -> Pipe {
                Pipe::from_source(self).process(rhs)
            }
        }
        impl<$($gen)*> BitOr<Pipe> for $ty {
            type Output = Pipe;
            fn bitor(self, rhs: Pipe) -> Pipe {
                Pipe::from_source(self).join(rhs)
            }
        }
    )*};
}

from_source! {
    impl[] Source;
    impl['a] &'a str;
    impl[] String;
    impl['a] &'a [u8];
    impl[] Vec<u8>;
    impl['a, const N: usize] &'a [u8; N];
    impl[] File;
    impl[] ChildStdout;
    impl[] io::Stdin;
}
