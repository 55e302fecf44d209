use std::{
    borrow::Cow,
    collections::VecDeque,
    fmt,
    os::fd::OwnedFd,
    process::ExitStatus,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
};

use crate::{
    engine::{Engine, Report},
    lines::LineSplitter,
    sys, Error, ProcessError,
};

/// What a finished pipe produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    /// The output, unless it went to a sink (then empty).
    pub stdout: Vec<u8>,
    /// The stderr of every process that [captured](crate::Process::capture_stderr) it (the
    /// last 64 KiB of each), in pipe order.
    pub stderr: Vec<u8>,
    /// Each process's exit status, in pipe order.
    pub statuses: Vec<ExitStatus>,
    /// The process that failed, from an [unchecked](crate::Pipe::run_unchecked) run;
    /// always `None` from a checked one, which returns it as an error instead.
    pub failure: Option<ProcessError>,
}

impl Output {
    /// The output as text; invalid UTF-8 is replaced by U+FFFD.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Whether no process failed.
    pub fn success(&self) -> bool {
        self.failure.is_none()
    }

    /// The captured stderr as text.
    pub fn stderr_text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.stderr)
    }

    /// The output's lines, without their `\n`.
    pub fn lines(&self) -> impl Iterator<Item = &[u8]> {
        let body = self.stdout.strip_suffix(b"\n").unwrap_or(&self.stdout);
        (!self.stdout.is_empty())
            .then(|| body.split(|&b| b == b'\n'))
            .into_iter()
            .flatten()
    }
}

/// A started pipe. Iterate it for the output as it is produced (chunks, or lines when
/// the last process is [`by_line`](crate::Process::by_line)); a failure is the last item.
/// Or [`wait`](Self::wait) for all of it.
///
/// Dropping it before the end kills and reaps every process it started: SIGTERM, then
/// SIGKILL after two seconds for whatever ignores it, so a drop may take that long.
pub struct Running {
    state: State,
    /// Raw output read but not yet handed out.
    queue: VecDeque<Vec<u8>>,
    lines: Option<(LineSplitter, VecDeque<Vec<u8>>)>,
}

enum State {
    Running(Engine),
    /// What it produced, and its failure if it failed.
    Finished(Report, Option<Error>),
    /// The outcome was handed out.
    Reported,
}

impl Running {
    pub(crate) fn new(engine: Engine, by_line: bool) -> Self {
        Running {
            state: State::Running(engine),
            queue: VecDeque::new(),
            lines: by_line.then(Default::default),
        }
    }

    /// An iterator whose only item is `error`.
    pub(crate) fn failed(error: Error) -> Self {
        Running {
            state: State::Finished(Report::default(), Some(error)),
            queue: VecDeque::new(),
            lines: None,
        }
    }

    /// The process ids (each also its process group id), in pipe order.
    pub fn pids(&self) -> Vec<u32> {
        match &self.state {
            State::Running(engine) => engine.pids(),
            _ => Vec::new(),
        }
    }

    /// Kill every process group now; the pipe then ends with [`Error::Killed`] unless
    /// something had already failed.
    pub fn kill(&mut self) {
        if let State::Running(engine) = &mut self.state {
            engine.kill();
        }
    }

    /// Run to the end and return the output not yet iterated.
    pub fn wait(self) -> Result<Output, Error> {
        match self.wait_unchecked()? {
            Output {
                failure: Some(failure),
                ..
            } => Err(Error::Process(failure)),
            output => Ok(output),
        }
    }

    /// Run to the end and return the output not yet iterated, a failed process being an
    /// outcome ([`Output::failure`]) rather than an error (see
    /// [`Pipe::run_unchecked`](crate::Pipe::run_unchecked)).
    pub fn wait_unchecked(mut self) -> Result<Output, Error> {
        let mut stdout = Vec::new();
        if let Some((splitter, ready)) = &mut self.lines {
            // Lines already split but not handed out go back to being bytes.
            for line in ready.drain(..) {
                stdout.extend_from_slice(&line);
                stdout.push(b'\n');
            }
            stdout.extend_from_slice(&splitter.take_partial());
        }
        loop {
            stdout.extend(self.queue.drain(..).flatten());
            match &mut self.state {
                State::Running(engine) => {
                    if engine.step(&mut self.queue) {
                        let (report, error) = engine.finish();
                        self.state = State::Finished(report, error);
                    }
                }
                State::Finished(..) => break,
                State::Reported => return Ok(Output::default()),
            }
        }
        let State::Finished(Report { statuses, stderr }, error) =
            std::mem::replace(&mut self.state, State::Reported)
        else {
            unreachable!("the loop ends on Finished")
        };
        let failure = match error {
            None => None,
            Some(Error::Process(failure)) => Some(failure),
            Some(error) => return Err(error),
        };
        Ok(Output {
            stdout,
            stderr,
            statuses,
            failure,
        })
    }

    /// The next raw chunk, stepping the engine as needed; `None` once finished.
    fn next_raw(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(chunk) = self.queue.pop_front() {
                return Some(chunk);
            }
            let State::Running(engine) = &mut self.state else {
                return None;
            };
            if engine.step(&mut self.queue) {
                let (report, error) = engine.finish();
                self.state = State::Finished(report, error);
            }
        }
    }

    fn outcome(&mut self) -> Option<Error> {
        match std::mem::replace(&mut self.state, State::Reported) {
            State::Finished(_, error) => error,
            _ => None,
        }
    }
}

impl Iterator for Running {
    type Item = Result<Vec<u8>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.lines.is_none() {
            return match self.next_raw() {
                Some(chunk) => Some(Ok(chunk)),
                None => self.outcome().map(Err),
            };
        }
        loop {
            let (_, ready) = self.lines.as_mut().expect("by line");
            if let Some(line) = ready.pop_front() {
                return Some(Ok(line));
            }
            let chunk = self.next_raw();
            let (splitter, ready) = self.lines.as_mut().expect("by line");
            let mut emit = |line: &[u8]| ready.push_back(line.to_vec());
            match chunk {
                Some(chunk) => splitter.feed(&chunk, &mut emit),
                // At the end, a last line without `\n` comes before the outcome: it is
                // often the message the process died with.
                None => {
                    splitter.finish(&mut emit);
                    if ready.is_empty() {
                        return self.outcome().map(Err);
                    }
                }
            }
        }
    }
}

impl fmt::Debug for Running {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Running(e) if e.is_done() => "finishing",
            State::Running(_) => "running",
            State::Finished(_, None) => "succeeded",
            State::Finished(_, Some(_)) => "failed",
            State::Reported => "reported",
        };
        f.debug_struct("Running")
            .field("state", &state)
            .field("pids", &self.pids())
            .finish()
    }
}

/// Kills a pipe from any thread, before or while it runs; get one from
/// [`Pipe::killer`](crate::Pipe::killer).
#[derive(Clone, Debug, Default)]
pub struct Killer(Arc<KillState>);

#[derive(Debug, Default)]
struct KillState {
    killed: AtomicBool,
    /// Write end of the running pipe's wake pipe, to interrupt its poll.
    waker: Mutex<Option<Arc<OwnedFd>>>,
}

impl Killer {
    /// Kill every process group of the pipe; it ends with [`Error::Killed`].
    pub fn kill(&self) {
        self.0.killed.store(true, Ordering::SeqCst);
        if let Some(waker) = &*self.0.waker.lock().unwrap_or_else(|e| e.into_inner()) {
            sys::wake(waker);
        }
    }

    pub fn is_killed(&self) -> bool {
        self.0.killed.load(Ordering::SeqCst)
    }

    pub(crate) fn register(&self, waker: Option<Arc<OwnedFd>>) {
        *self.0.waker.lock().unwrap_or_else(|e| e.into_inner()) = waker;
    }
}
