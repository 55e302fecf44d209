use std::{
    fmt,
    fs::File,
    io,
    ops::BitOr,
    path::Path,
    process::{ChildStdin, ChildStdout},
    time::Duration,
};

use crate::{
    engine::Engine, source::SourceKind, Error, Killer, Output, Process, Running, Sink, Source,
};

/// A closure called with each chunk (or line) flowing past it.
pub(crate) type Tap = Box<dyn FnMut(&[u8]) + Send>;

pub(crate) enum Stage {
    Process(Box<Process>),
    Tap(Tap),
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

    /// Run to completion, taking a failed process as an outcome rather than an error:
    /// for commands whose exit status is an answer (a gate's "not now", `grep`'s "no
    /// match", a hook's "retry later"). The pipe runs exactly as with [`run`](Self::run)
    /// (the first failure still stops the rest); the output is whatever came before it,
    /// with every exit status, and the failure in [`Output::failure`]. `Err` is left for
    /// what is not a process's own failure: a spawn, the source, the sink, the pipe's
    /// timeout, a kill.
    pub fn run_unchecked(self) -> Result<Output, Error> {
        self.spawn()?.wait_unchecked()
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

into_sink!(Sink, File, io::Stdout, io::Stderr, io::Sink, ChildStdin);

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
