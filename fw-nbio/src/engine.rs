//! Starts a pipe's processes and moves its data: one poll(2) loop over non-blocking fds.
//!
//! Only edges with Rust on one side are pumped here: a closure between two processes, the
//! collected output, a sink writer. Process-to-process edges are plain OS pipes, and Rust
//! sources are written by feeder threads (iterators and readers may block), so the loop
//! never waits on anything but poll.

use std::{
    collections::VecDeque,
    fs::File,
    io::{self, Write},
    os::fd::{AsFd, OwnedFd},
    panic::{self, AssertUnwindSafe},
    process::{Child, ExitStatus, Stdio},
    sync::{mpsc, Arc},
    thread,
    time::{Duration, Instant},
};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::os::unix::process::{CommandExt, ExitStatusExt};

use crate::{
    error::stderr_tail,
    pipe::{Feed, SinkKind, SourceKind, Stage, Tap},
    process::Stderr,
    sys::{self, Io},
    Error, Failure, Killer, Pipe, ProcessError,
};

/// Bytes moved per read: a default pipe's whole capacity.
const CHUNK: usize = 64 * 1024;
/// Chunks a pump moves per wake-up before letting the others have a turn.
const BURST: usize = 16;
/// How often to look for exits when the kernel has no pidfds.
const TICK: Duration = Duration::from_millis(10);

/// How long processes asked to stop get before SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(2);
pub(crate) struct Engine {
    children: Vec<ChildState>,
    pumps: Vec<Pump>,
    captures: Vec<Capture>,
    feeders: Vec<Feeder>,
    /// Read end of the pipe feeders and killers write to, to interrupt poll.
    wake_rx: OwnedFd,
    wake_tx: Arc<OwnedFd>,
    killers: Vec<Killer>,
    deadline: Option<(Instant, Duration)>,
    /// The first failure: the one reported, whatever it set off.
    cause: Option<Cause>,
    tearing_down: bool,
    /// When the processes asked to stop (SIGTERM) get SIGKILL instead.
    escalate_at: Option<Instant>,
    done: bool,
    sigpipe_is_fatal: bool,
}

enum Cause {
    Process { child: usize, failure: Failure },
    Source(io::Error),
    Sink(io::Error),
    TimedOut(Duration),
    Killed,
    Io(io::Error),
}

struct ChildState {
    name: String,
    child: Child,
    pidfd: Option<OwnedFd>,
    status: Option<ExitStatus>,
    good_exit: Vec<i32>,
    deadline: Option<(Instant, Duration)>,
    /// We killed it: its death is a consequence, not a failure of its own.
    killed: bool,
    /// Its stdout is a pipe to a later stage, so SIGPIPE means that stage stopped reading.
    has_downstream: bool,
    /// The pump reading its stdout, which a left-behind grandchild may keep open.
    out_pump: Option<usize>,
    capture: Option<usize>,
}

struct Capture {
    fd: Option<OwnedFd>,
    buf: Vec<u8>,
}

struct Pump {
    input: Option<OwnedFd>,
    taps: Vec<Tap>,
    lines: Option<LineSplitter>,
    out: PumpOut,
    /// Read but not yet written to a child's stdin.
    buf: Vec<u8>,
    written: usize,
}

enum PumpOut {
    /// A child's stdin; `None` once closed.
    Child(Option<OwnedFd>),
    Collect,
    Discard,
    Writer(Box<dyn Write + Send>),
}

struct Feeder {
    rx: mpsc::Receiver<FeedResult>,
    done: bool,
}

/// A feeder's error comes with its write end, so the child sees no EOF (and cannot take
/// truncated input for complete) until we have killed it.
type FeedResult = Result<(), (io::Error, OwnedFd)>;

/// A successful pipe's exit statuses and captured stderr.
#[derive(Debug)]
pub(crate) struct Report {
    pub(crate) statuses: Vec<ExitStatus>,
    pub(crate) stderr: Vec<u8>,
}

/// What feeds the next stage.
enum Upstream {
    Null,
    Inherit,
    Fd(OwnedFd),
}

impl Upstream {
    fn into_stdio(self) -> Stdio {
        match self {
            Upstream::Null => Stdio::null(),
            Upstream::Inherit => Stdio::inherit(),
            Upstream::Fd(fd) => Stdio::from(fd),
        }
    }
}

/// Where a process's stdout goes.
enum Target {
    Null,
    Inherit,
    Fd(OwnedFd),
}

#[derive(Clone, Copy)]
enum Token {
    Wake,
    PumpIn(usize),
    PumpOut(usize),
    Capture(usize),
    Child(usize),
}

impl Engine {
    pub(crate) fn spawn(pipe: Pipe) -> Result<Engine, Error> {
        let Pipe {
            source,
            stages,
            sink,
            timeout,
            by_line,
            killers,
        } = pipe;
        let (wake_rx, wake_tx) = sys::pipe()?;
        sys::set_nonblocking(&wake_rx)?;
        sys::set_nonblocking(&wake_tx)?;
        let mut engine = Engine {
            children: Vec::new(),
            pumps: Vec::new(),
            captures: Vec::new(),
            feeders: Vec::new(),
            wake_rx,
            wake_tx: Arc::new(wake_tx),
            killers,
            deadline: timeout.map(|t| (Instant::now() + t, t)),
            cause: None,
            tearing_down: false,
            escalate_at: None,
            done: false,
            sigpipe_is_fatal: sys::sigpipe_is_fatal(),
        };
        for killer in &engine.killers {
            killer.register(Some(engine.wake_tx.clone()));
        }
        if engine.killers.iter().any(Killer::is_killed) {
            return Err(Error::Killed);
        }

        let first_is_process = matches!(stages.first(), Some(Stage::Process(_)));
        let mut up = match source.0 {
            SourceKind::Empty => Upstream::Null,
            SourceKind::Inherit if first_is_process => Upstream::Inherit,
            SourceKind::Fd(fd) if first_is_process => Upstream::Fd(fd),
            SourceKind::Path(path) if first_is_process => Upstream::Fd(open(&path)?.into()),
            // A closure reads first: copy the input in on a feeder thread.
            SourceKind::Inherit => engine.feed(reader_feed(io::stdin()))?,
            SourceKind::Fd(fd) => engine.feed(reader_feed(File::from(fd)))?,
            SourceKind::Path(path) => engine.feed(reader_feed(open(&path)?))?,
            SourceKind::Feed(feed) => engine.feed(feed)?,
        };

        let mut sink = sink.map_or(SinkKind::Collect, |s| s.0);
        let mut taps: Vec<Tap> = Vec::new();
        let mut lines = false;
        let mut stages = stages.into_iter().peekable();
        while let Some(stage) = stages.next() {
            let process = match stage {
                Stage::Tap(tap) => {
                    taps.push(tap);
                    continue;
                }
                Stage::Process(p) => p,
            };
            let stdin = match up {
                Upstream::Fd(input) if !taps.is_empty() => {
                    let (r, w) = sys::pipe()?;
                    engine.add_pump(
                        input,
                        std::mem::take(&mut taps),
                        lines,
                        PumpOut::Child(Some(w)),
                    )?;
                    Stdio::from(r)
                }
                up => {
                    taps.clear(); // closures with nothing to read are never called
                    up.into_stdio()
                }
            };
            // The last process writes straight into a file or /dev/null; anything else
            // reads its output from a pipe.
            let direct = match stages.peek() {
                None => direct_target(&mut sink)?,
                Some(_) => None,
            };
            let has_downstream = direct.is_none();
            let (target, next) = match direct {
                Some(target) => (target, Upstream::Null),
                None => {
                    let (r, w) = sys::pipe()?;
                    (Target::Fd(w), Upstream::Fd(r))
                }
            };
            lines = process.by_line;
            engine.start(*process, stdin, target, has_downstream)?;
            up = next;
        }

        match up {
            Upstream::Fd(input) => {
                let out = match sink {
                    SinkKind::Collect => PumpOut::Collect,
                    SinkKind::Discard => PumpOut::Discard,
                    SinkKind::Stdout => PumpOut::Writer(Box::new(io::stdout())),
                    SinkKind::Fd(fd) => PumpOut::Writer(Box::new(File::from(fd))),
                    SinkKind::Path(path) => PumpOut::Writer(Box::new(create(&path)?)),
                    SinkKind::Writer(w) => PumpOut::Writer(w),
                };
                let pump = engine.add_pump(input, taps, lines || by_line, out)?;
                if let Some(child) = engine.children.last_mut() {
                    if child.has_downstream {
                        child.out_pump = Some(pump);
                    }
                }
            }
            // Nothing produces output: the sink stays empty (or the file is just created).
            Upstream::Null | Upstream::Inherit => {
                if let SinkKind::Path(path) = sink {
                    create(&path)?;
                }
            }
        }
        Ok(engine)
    }

    /// Spawn `process` in a process group of its own.
    fn start(
        &mut self,
        process: crate::Process,
        stdin: Stdio,
        target: Target,
        has_downstream: bool,
    ) -> Result<(), Error> {
        let name = process.display_name();
        let crate::Process {
            mut cmd,
            stderr,
            good_exit,
            timeout,
            ..
        } = process;
        let mut capture = None;
        let stderr = match stderr {
            Stderr::Inherit => Stdio::inherit(),
            Stderr::Discard => Stdio::null(),
            Stderr::Merge => match &target {
                Target::Null => Stdio::null(),
                Target::Inherit => Stdio::from(sys::dup_stdout()?),
                Target::Fd(fd) => Stdio::from(fd.try_clone()?),
            },
            Stderr::Capture => {
                let (r, w) = sys::pipe()?;
                sys::set_nonblocking(&r)?;
                capture = Some(self.captures.len());
                self.captures.push(Capture {
                    fd: Some(r),
                    buf: Vec::new(),
                });
                Stdio::from(w)
            }
        };
        let stdout = match target {
            Target::Null => Stdio::null(),
            Target::Inherit => Stdio::inherit(),
            Target::Fd(fd) => Stdio::from(fd),
        };
        cmd.stdin(stdin)
            .stdout(stdout)
            .stderr(stderr)
            .process_group(0);
        let spawned = cmd.spawn();
        // The command holds our copies of the child's pipe ends: close them now, or
        // readers after this child would never see EOF.
        drop(cmd);
        let child = spawned.map_err(|error| Error::Spawn {
            name: name.clone(),
            error,
        })?;
        let pidfd = sys::pidfd_open(child.id());
        self.children.push(ChildState {
            name,
            child,
            pidfd,
            status: None,
            good_exit,
            deadline: timeout.map(|t| (Instant::now() + t, t)),
            killed: false,
            has_downstream,
            out_pump: None,
            capture,
        });
        Ok(())
    }

    fn add_pump(
        &mut self,
        input: OwnedFd,
        taps: Vec<Tap>,
        by_line: bool,
        out: PumpOut,
    ) -> Result<usize, Error> {
        sys::set_nonblocking(&input)?;
        if let PumpOut::Child(Some(fd)) = &out {
            sys::set_nonblocking(fd)?;
        }
        self.pumps.push(Pump {
            input: Some(input),
            lines: (by_line && !taps.is_empty()).then(LineSplitter::default),
            taps,
            out,
            buf: Vec::new(),
            written: 0,
        });
        Ok(self.pumps.len() - 1)
    }

    /// Run `feed` on a thread writing into a new pipe; returns the pipe's read end.
    fn feed(&mut self, feed: Feed) -> Result<Upstream, Error> {
        let (r, w) = sys::pipe()?;
        let (tx, rx) = mpsc::channel();
        let wake = self.wake_tx.clone();
        thread::Builder::new()
            .name("fw-nbio-feed".into())
            .spawn(move || {
                sys::block_sigpipe_for_thread();
                let mut out = FeedWriter {
                    file: File::from(w),
                    reader_gone: false,
                };
                // A panicking source is a failed one: its reader must not see a clean EOF.
                let fed = panic::catch_unwind(AssertUnwindSafe(|| feed(&mut out)))
                    .unwrap_or_else(|_| Err(io::Error::other("the input source panicked")));
                let result = match fed {
                    // Downstream stopped reading: not our failure (nor anyone's, by itself).
                    Err(_) if out.reader_gone => Ok(()),
                    Err(e) => Err((e, OwnedFd::from(out.file))),
                    Ok(()) => {
                        drop(out); // EOF for the reader before we report
                        Ok(())
                    }
                };
                let _ = tx.send(result);
                sys::wake(&wake);
            })?;
        self.feeders.push(Feeder { rx, done: false });
        Ok(Upstream::Fd(r))
    }

    pub(crate) fn pids(&self) -> Vec<u32> {
        self.children.iter().map(|c| c.child.id()).collect()
    }

    pub(crate) fn is_done(&self) -> bool {
        self.done
    }

    /// Kill everything now; the pipe will report [`Error::Killed`] unless it already failed.
    pub(crate) fn kill(&mut self) {
        if !self.done {
            self.fail(Cause::Killed);
        }
    }

    /// One round: wait for something to happen, then handle it. Collected output goes to
    /// `out`. Returns true once every child is reaped and every fd closed.
    pub(crate) fn step(&mut self, out: &mut VecDeque<Vec<u8>>) -> bool {
        if self.done {
            return true;
        }
        let _sigpipe = sys::SigpipeBlock::new(self.sigpipe_is_fatal);
        let mut exited = Vec::new();
        let ready = match self.poll() {
            Ok(ready) => ready,
            Err(e) => {
                self.fail(Cause::Io(e));
                // Without poll, look for the killed children's exits directly.
                exited.extend(0..self.children.len());
                Vec::new()
            }
        };
        for (token, revents) in ready {
            match token {
                Token::Wake => {
                    sys::drain(&self.wake_rx);
                    self.check_killers();
                    self.check_feeders();
                }
                Token::PumpOut(i)
                    if !revents.contains(PollFlags::POLLOUT)
                        && revents.intersects(PollFlags::POLLERR | PollFlags::POLLHUP) =>
                {
                    self.pumps[i].close();
                }
                Token::PumpIn(i) | Token::PumpOut(i) => self.pump(i, out),
                Token::Capture(i) => self.read_capture(i),
                Token::Child(i) => exited.push(i),
            }
        }
        if self
            .children
            .iter()
            .any(|c| c.pidfd.is_none() && c.status.is_none())
        {
            exited.extend(0..self.children.len());
        }
        self.reap(exited);
        self.check_deadlines();
        self.check_escalation();
        self.check_done()
    }

    fn poll(&self) -> io::Result<Vec<(Token, PollFlags)>> {
        let mut tokens = vec![Token::Wake];
        let mut fds = vec![PollFd::new(self.wake_rx.as_fd(), PollFlags::POLLIN)];
        for (i, pump) in self.pumps.iter().enumerate() {
            let pending = pump.written < pump.buf.len();
            if let PumpOut::Child(Some(fd)) = &pump.out {
                // With nothing to write, still watch for POLLERR: the next child has gone,
                // and waiting for more input to find that out could take forever.
                let events = if pending {
                    PollFlags::POLLOUT
                } else {
                    PollFlags::empty()
                };
                tokens.push(Token::PumpOut(i));
                fds.push(PollFd::new(fd.as_fd(), events));
            }
            if let (Some(fd), false) = (&pump.input, pending) {
                tokens.push(Token::PumpIn(i));
                fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
            }
        }
        for (i, capture) in self.captures.iter().enumerate() {
            if let Some(fd) = &capture.fd {
                tokens.push(Token::Capture(i));
                fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
            }
        }
        for (i, child) in self.children.iter().enumerate() {
            if let (Some(fd), None) = (&child.pidfd, child.status) {
                tokens.push(Token::Child(i));
                fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
            }
        }
        let timeout = self.poll_timeout();
        match poll(&mut fds, timeout) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        }
        Ok(tokens
            .into_iter()
            .zip(&fds)
            .filter_map(|(t, fd)| fd.revents().filter(|r| !r.is_empty()).map(|r| (t, r)))
            .collect())
    }

    fn poll_timeout(&self) -> PollTimeout {
        let now = Instant::now();
        let mut wait: Option<Duration> = None;
        let mut consider = |d: Duration| wait = Some(wait.map_or(d, |w| w.min(d)));
        if let Some(at) = self.escalate_at {
            consider(at.saturating_duration_since(now));
        }
        // Once tearing down, deadlines have done their job (and would make us spin).
        let timing = !self.tearing_down;
        if let (Some((at, _)), true) = (self.deadline, timing) {
            consider(at.saturating_duration_since(now));
        }
        for (i, child) in self.children.iter().enumerate() {
            if let (Some((at, _)), true) = (child.deadline, timing) {
                if self.child_active(i) {
                    consider(at.saturating_duration_since(now));
                }
            }
            if child.pidfd.is_none() && child.status.is_none() {
                consider(TICK);
            }
        }
        match wait {
            Some(d) => PollTimeout::try_from(sys::poll_millis(d)).unwrap_or(PollTimeout::MAX),
            None => PollTimeout::NONE,
        }
    }

    /// Whether child `i`, or something it left behind holding its output, may still run.
    fn child_active(&self, i: usize) -> bool {
        let child = &self.children[i];
        child.status.is_none()
            || child
                .out_pump
                .is_some_and(|p| self.pumps[p].input.is_some())
            || child.capture.is_some_and(|c| self.captures[c].fd.is_some())
    }

    /// Move data through pump `i` until it would block (or has had its turn).
    fn pump(&mut self, i: usize, out: &mut VecDeque<Vec<u8>>) {
        let mut sink_error = None;
        let pump = &mut self.pumps[i];
        for _ in 0..BURST {
            // First finish writing what we have to the next child.
            if let PumpOut::Child(Some(fd)) = &pump.out {
                while pump.written < pump.buf.len() {
                    match sys::write(fd, &pump.buf[pump.written..]) {
                        Ok(Io::Done(n)) => pump.written += n,
                        Ok(Io::WouldBlock) => return,
                        // The next child stopped reading: stop reading too, so the one
                        // before us gets its SIGPIPE, as in a shell pipeline.
                        Err(_) => {
                            pump.close();
                            return;
                        }
                    }
                }
            }
            let Some(input) = &pump.input else {
                pump.out.close_child();
                return;
            };
            pump.buf.resize(CHUNK, 0);
            pump.written = 0;
            let n = match sys::read(input, &mut pump.buf) {
                Ok(Io::Done(n)) => n,
                Ok(Io::WouldBlock) => {
                    pump.buf.clear();
                    return;
                }
                Err(_) => 0, // treat a broken input like its end
            };
            pump.buf.truncate(n);
            if n == 0 {
                pump.input = None;
                if let Some(lines) = &mut pump.lines {
                    let taps = &mut pump.taps;
                    lines.finish(|line| taps.iter_mut().for_each(|tap| tap(line)));
                }
                match &mut pump.out {
                    PumpOut::Child(fd) => *fd = None,
                    PumpOut::Writer(w) => {
                        if let Err(e) = w.flush() {
                            sink_error = Some(e);
                        }
                    }
                    PumpOut::Collect | PumpOut::Discard => {}
                }
                break;
            }
            let chunk = &pump.buf[..n];
            match &mut pump.lines {
                Some(lines) => {
                    let taps = &mut pump.taps;
                    lines.feed(chunk, |line| taps.iter_mut().for_each(|tap| tap(line)));
                }
                None => pump.taps.iter_mut().for_each(|tap| tap(chunk)),
            }
            match &mut pump.out {
                PumpOut::Child(_) => continue,
                PumpOut::Collect => out.push_back(chunk.to_vec()),
                PumpOut::Discard => {}
                PumpOut::Writer(w) => {
                    if let Err(e) = w.write_all(chunk) {
                        sink_error = Some(e);
                        break;
                    }
                }
            }
            pump.buf.clear();
        }
        if let Some(e) = sink_error {
            self.fail(Cause::Sink(e));
        }
    }

    fn read_capture(&mut self, i: usize) {
        let capture = &mut self.captures[i];
        let Some(fd) = &capture.fd else { return };
        let mut chunk = [0u8; 8192];
        loop {
            match sys::read(fd, &mut chunk) {
                Ok(Io::Done(0)) | Err(_) => {
                    capture.fd = None;
                    return;
                }
                Ok(Io::Done(n)) => capture.buf.extend_from_slice(&chunk[..n]),
                Ok(Io::WouldBlock) => return,
            }
        }
    }

    /// Reap the children in `candidates` that have exited, and judge their exits.
    fn reap(&mut self, mut candidates: Vec<usize>) {
        candidates.sort_unstable();
        candidates.dedup();
        let mut newly = Vec::new();
        for i in candidates {
            let child = &mut self.children[i];
            if child.status.is_some() {
                continue;
            }
            if let Ok(Some(status)) = child.child.try_wait() {
                child.status = Some(status);
                child.pidfd = None;
                newly.push(i);
            }
        }
        // Exits seen in the same round are judged upstream first: an upstream failure
        // (a truncated stream) is the usual cause of a downstream one.
        for i in newly {
            let child = &self.children[i];
            if child.killed {
                continue;
            }
            let status = child.status.expect("just reaped");
            let failure = match (status.code(), status.signal()) {
                (Some(code), _) if code == 0 || child.good_exit.contains(&code) => continue,
                (Some(code), _) => Failure::Exit(code),
                // SIGPIPE means a later stage stopped reading: that stage's own exit says
                // whether anything failed.
                (None, Some(libc::SIGPIPE)) if child.has_downstream => continue,
                (None, Some(sig)) => Failure::Signal(sig),
                (None, None) => continue,
            };
            self.fail(Cause::Process { child: i, failure });
        }
    }

    fn check_deadlines(&mut self) {
        let now = Instant::now();
        if let Some((at, after)) = self.deadline {
            if now >= at && !self.tearing_down {
                self.fail(Cause::TimedOut(after));
            }
        }
        for i in 0..self.children.len() {
            if let Some((at, after)) = self.children[i].deadline {
                if now >= at && !self.children[i].killed && self.child_active(i) {
                    self.fail(Cause::Process {
                        child: i,
                        failure: Failure::TimedOut(after),
                    });
                }
            }
        }
    }

    /// SIGKILL for whatever ignored the SIGTERM of a teardown.
    fn check_escalation(&mut self) {
        match self.escalate_at {
            Some(at) if Instant::now() >= at => {
                self.escalate_at = None;
                for child in &self.children {
                    match child.status {
                        None => sys::kill_group(child.child.id()),
                        Some(_) => sys::kill_leftovers(child.child.id()),
                    }
                }
            }
            _ => {}
        }
    }

    fn check_killers(&mut self) {
        if self.killers.iter().any(Killer::is_killed) {
            self.fail(Cause::Killed);
        }
    }

    fn check_feeders(&mut self) {
        for i in 0..self.feeders.len() {
            if self.feeders[i].done {
                continue;
            }
            match self.feeders[i].rx.try_recv() {
                Ok(Ok(())) => self.feeders[i].done = true,
                Ok(Err((e, write_end))) => {
                    self.feeders[i].done = true;
                    self.fail(Cause::Source(e));
                    // Only now, with its reader killed, may the pipe close.
                    drop(write_end);
                }
                Err(mpsc::TryRecvError::Empty) => {}
                Err(mpsc::TryRecvError::Disconnected) => {
                    self.feeders[i].done = true;
                    self.fail(Cause::Source(io::Error::other("the input feeder died")));
                }
            }
        }
    }

    /// Record `cause` if it is the first failure, and kill everything still running.
    fn fail(&mut self, cause: Cause) {
        if self.cause.is_none() {
            self.cause = Some(cause);
        }
        if self.tearing_down {
            return;
        }
        self.tearing_down = true;
        // SIGTERM first, so that a stage can remove what it half made
        // (fw-unpack its staging directory); SIGKILL after a grace period.
        self.escalate_at = Some(Instant::now() + TERM_GRACE);
        for child in &mut self.children {
            match child.status {
                None => {
                    sys::term_group(child.child.id());
                    child.killed = true;
                }
                // Its leader is gone but what it started may linger in its group.
                Some(_) => sys::kill_leftovers(child.child.id()),
            }
        }
        // Closing our pipe ends unblocks feeders and anything left writing to us.
        for pump in &mut self.pumps {
            pump.close();
        }
    }

    fn check_done(&mut self) -> bool {
        let reaped = self.children.iter().all(|c| c.status.is_some());
        let pumped = self.pumps.iter().all(Pump::is_closed);
        if !(reaped && pumped) {
            return false;
        }
        // Every child is gone: whatever is left in a stderr pipe is all there will be,
        // short of something they left behind, which we do not wait for.
        for i in 0..self.captures.len() {
            self.read_capture(i);
            self.captures[i].fd = None;
        }
        self.check_feeders();
        self.done = true;
        for killer in &self.killers {
            killer.register(None);
        }
        true
    }

    /// The outcome once [`step`](Self::step) has returned true.
    pub(crate) fn finish(&mut self) -> Result<Report, Error> {
        debug_assert!(self.done);
        match self.cause.take() {
            None => {}
            Some(Cause::Process { child, failure }) => {
                let c = &self.children[child];
                let stderr_tail = c
                    .capture
                    .map(|i| stderr_tail(&self.captures[i].buf))
                    .unwrap_or_default();
                return Err(Error::Process(ProcessError {
                    name: c.name.clone(),
                    stage: child,
                    pid: c.child.id(),
                    failure,
                    stderr_tail,
                }));
            }
            Some(Cause::Source(e)) => return Err(Error::Source(e)),
            Some(Cause::Sink(e)) => return Err(Error::Sink(e)),
            Some(Cause::TimedOut(after)) => return Err(Error::TimedOut(after)),
            Some(Cause::Killed) => return Err(Error::Killed),
            Some(Cause::Io(e)) => return Err(Error::Io(e)),
        }
        Ok(Report {
            statuses: self.children.iter().filter_map(|c| c.status).collect(),
            stderr: self
                .captures
                .iter_mut()
                .flat_map(|c| std::mem::take(&mut c.buf))
                .collect(),
        })
    }
}

impl Drop for Engine {
    /// A pipe dropped before its end (an iterator abandoned, a panicking closure) still
    /// kills and reaps everything it started.
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if !self.tearing_down {
            self.fail(Cause::Killed);
        }
        for child in &mut self.children {
            if child.status.is_none() {
                child.status = child.child.wait().ok();
            }
        }
        for killer in &self.killers {
            killer.register(None);
        }
    }
}

impl Pump {
    fn close(&mut self) {
        self.input = None;
        self.out.close_child();
        self.buf.clear();
        self.written = 0;
    }

    fn is_closed(&self) -> bool {
        self.input.is_none() && !matches!(self.out, PumpOut::Child(Some(_)))
    }
}

impl PumpOut {
    fn close_child(&mut self) {
        if let PumpOut::Child(fd) = self {
            *fd = None;
        }
    }
}

/// The feeder's end of a pipe; notes whether a write failed because the reader went away.
struct FeedWriter {
    file: File,
    reader_gone: bool,
}

impl Write for FeedWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf).inspect_err(|e| {
            self.reader_gone |= e.kind() == io::ErrorKind::BrokenPipe;
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The fd-level target for `sink`, taken out of it, if the last process can write to it
/// directly.
fn direct_target(sink: &mut SinkKind) -> Result<Option<Target>, Error> {
    Ok(Some(match std::mem::replace(sink, SinkKind::Collect) {
        SinkKind::Discard => Target::Null,
        SinkKind::Stdout => {
            // Keep what we printed before what the child prints.
            let _ = io::stdout().flush();
            Target::Inherit
        }
        SinkKind::Fd(fd) => Target::Fd(fd),
        SinkKind::Path(path) => Target::Fd(create(&path)?.into()),
        pumped @ (SinkKind::Collect | SinkKind::Writer(_)) => {
            *sink = pumped;
            return Ok(None);
        }
    }))
}

fn reader_feed(mut reader: impl io::Read + Send + 'static) -> Feed {
    Box::new(move |w| io::copy(&mut reader, w).map(drop))
}

fn open(path: &std::path::Path) -> Result<File, Error> {
    File::open(path)
        .map_err(|e| Error::Source(io::Error::new(e.kind(), format!("{}: {e}", path.display()))))
}

fn create(path: &std::path::Path) -> Result<File, Error> {
    File::create(path)
        .map_err(|e| Error::Sink(io::Error::new(e.kind(), format!("{}: {e}", path.display()))))
}

/// Splits a byte stream into lines without their `\n`.
#[derive(Default)]
pub(crate) struct LineSplitter {
    partial: Vec<u8>,
}

impl LineSplitter {
    pub(crate) fn feed(&mut self, mut chunk: &[u8], mut emit: impl FnMut(&[u8])) {
        while let Some(nl) = chunk.iter().position(|&b| b == b'\n') {
            if self.partial.is_empty() {
                emit(&chunk[..nl]);
            } else {
                self.partial.extend_from_slice(&chunk[..nl]);
                emit(&self.partial);
                self.partial.clear();
            }
            chunk = &chunk[nl + 1..];
        }
        self.partial.extend_from_slice(chunk);
    }

    /// Emit the last line if it had no `\n`.
    pub(crate) fn finish(&mut self, mut emit: impl FnMut(&[u8])) {
        if !self.partial.is_empty() {
            emit(&self.partial);
            self.partial.clear();
        }
    }

    /// Bytes of an unfinished line.
    pub(crate) fn take_partial(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.partial)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Process;

    /// Drive `pipe` as if the kernel had no pidfds: exits are found by the periodic tick.
    fn run_without_pidfds(pipe: Pipe) -> (Vec<u8>, Result<Report, Error>) {
        let mut engine = Engine::spawn(pipe).unwrap();
        for child in &mut engine.children {
            child.pidfd = None;
        }
        let mut out = VecDeque::new();
        while !engine.step(&mut out) {}
        (out.into_iter().flatten().collect(), engine.finish())
    }

    #[test]
    fn exits_are_seen_without_pidfds() {
        let (out, result) =
            run_without_pidfds(Process::shell("printf abc") | Process::shell("cat; exit 4"));
        assert_eq!(out, b"abc");
        let err = result.unwrap_err();
        assert_eq!(err.process().unwrap().failure, Failure::Exit(4));

        let (out, result) =
            run_without_pidfds(Process::argv(["yes"]) | Process::argv(["head", "-c", "2"]));
        assert_eq!(out, b"y\n");
        assert_eq!(result.unwrap().statuses.len(), 2);
    }

    fn split(chunks: &[&str]) -> Vec<String> {
        let mut lines = Vec::new();
        let mut s = LineSplitter::default();
        let mut push = |l: &[u8]| lines.push(String::from_utf8(l.to_vec()).unwrap());
        for c in chunks {
            s.feed(c.as_bytes(), &mut push);
        }
        s.finish(&mut push);
        lines
    }

    #[test]
    fn lines_across_chunks_and_partial_end() {
        assert_eq!(split(&["a\nb", "c\n\nd"]), ["a", "bc", "", "d"]);
        assert_eq!(split(&["x\n"]), ["x"]);
        assert_eq!(split(&["", "p", "q"]), ["pq"]);
        assert!(split(&[]).is_empty());
    }
}
