//! Runs a pipe's processes and moves its data: one poll(2) loop over non-blocking fds.
//!
//! Only edges with Rust on one side are pumped here: a closure between two processes, the
//! collected output, a sink writer (whose writes run on a thread of their own). Process-
//! to-process edges are plain OS pipes, and Rust sources are written by feeder threads
//! (iterators and readers may block), so the loop never waits on anything but poll, and
//! timeouts and kills always fire.

mod capture;
mod child;
mod feed;
mod pump;
mod setup;
mod writer;

use std::{
    collections::VecDeque,
    io,
    os::fd::{AsFd, OwnedFd},
    process::ExitStatus,
    sync::Arc,
    time::{Duration, Instant},
};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use capture::Capture;
use child::ChildState;
use feed::{Fed, Feeder};
use pump::{Pump, PumpOut};

use crate::{error::stderr_tail, sys, Error, Failure, Killer, ProcessError};

/// How often to look for exits when the kernel has no pidfds.
const TICK: Duration = Duration::from_millis(10);
/// How long processes asked to stop get before SIGKILL, and a failed pipe's sink writer
/// gets to finish writing before it is left behind.
const TERM_GRACE: Duration = Duration::from_secs(2);

pub(crate) struct Engine {
    children: Vec<ChildState>,
    pumps: Vec<Pump>,
    captures: Vec<Capture>,
    feeders: Vec<Feeder>,
    /// Read end of the pipe feeders, sink writers and killers write to, to interrupt poll.
    wake_rx: OwnedFd,
    wake_tx: Arc<OwnedFd>,
    killers: Vec<Killer>,
    deadline: Option<(Instant, Duration)>,
    /// The first failure: the one reported, whatever it set off.
    cause: Option<Cause>,
    /// Processes that exited for want of input while an earlier one still ran: judged
    /// when every earlier one has exited.
    deferred: Vec<usize>,
    /// When every process was asked to stop (SIGTERM); SIGKILL follows after TERM_GRACE.
    teardown: Option<Instant>,
    escalated: bool,
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

/// A finished pipe's exit statuses and captured stderr (the kept tail of each).
#[derive(Debug, Default)]
pub(crate) struct Report {
    pub(crate) statuses: Vec<ExitStatus>,
    pub(crate) stderr: Vec<u8>,
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
    fn new(killers: Vec<Killer>, timeout: Option<Duration>) -> Result<Engine, Error> {
        let (wake_rx, wake_tx) = sys::pipe()?;
        sys::set_nonblocking(&wake_rx)?;
        sys::set_nonblocking(&wake_tx)?;
        let engine = Engine {
            children: Vec::new(),
            pumps: Vec::new(),
            captures: Vec::new(),
            feeders: Vec::new(),
            wake_rx,
            wake_tx: Arc::new(wake_tx),
            killers,
            deadline: timeout.map(|t| (Instant::now() + t, t)),
            cause: None,
            deferred: Vec::new(),
            teardown: None,
            escalated: false,
            done: false,
            sigpipe_is_fatal: sys::sigpipe_is_fatal(),
        };
        for killer in &engine.killers {
            killer.register(Some(engine.wake_tx.clone()));
        }
        Ok(engine)
    }

    pub(crate) fn pids(&self) -> Vec<u32> {
        self.children.iter().map(|c| c.pid).collect()
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
    /// `out`. Returns true once every child has exited and every fd is closed.
    pub(crate) fn step(&mut self, out: &mut VecDeque<Vec<u8>>) -> bool {
        if self.done {
            return true;
        }
        let _sigpipe = sys::SigpipeBlock::new(self.sigpipe_is_fatal);
        let mut exited = Vec::new();
        match self.poll() {
            Ok(ready) => {
                for (token, revents) in ready {
                    match token {
                        Token::Wake => {
                            sys::drain(&self.wake_rx);
                            self.check_killers();
                            self.check_feeders();
                            self.check_sinks(out);
                        }
                        Token::PumpOut(i)
                            if !revents.contains(PollFlags::POLLOUT)
                                && revents.intersects(PollFlags::POLLERR | PollFlags::POLLHUP) =>
                        {
                            self.pumps[i].close();
                        }
                        Token::PumpIn(i) | Token::PumpOut(i) => self.pumps[i].run(out),
                        Token::Capture(i) => self.captures[i].read(),
                        Token::Child(i) => exited.push(i),
                    }
                }
            }
            Err(e) => {
                self.fail(Cause::Io(e));
                // Without poll, look for the killed children's exits directly.
                exited.extend(0..self.children.len());
            }
        }
        if self.children.iter().any(ChildState::needs_tick) {
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
            let pending = pump.pending();
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
            // A sink writer with no room wakes us when it has some.
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
            if let Some(fd) = child.pidfd() {
                tokens.push(Token::Child(i));
                fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
            }
        }
        match poll(&mut fds, self.poll_timeout()) {
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
        let mut consider = |at: Instant| {
            let d = at.saturating_duration_since(now);
            wait = Some(wait.map_or(d, |w| w.min(d)));
        };
        match self.teardown {
            // Once tearing down, deadlines have done their job (and would make us spin).
            // Then the grace period's end: SIGKILL, and sink writers are left behind.
            Some(started) => {
                if now < started + TERM_GRACE {
                    consider(started + TERM_GRACE);
                }
            }
            None => {
                if let Some((at, _)) = self.deadline {
                    consider(at);
                }
                for i in 0..self.children.len() {
                    if let (Some((at, _)), true) = (self.children[i].deadline, self.active(i)) {
                        consider(at);
                    }
                }
            }
        }
        if self.children.iter().any(ChildState::needs_tick) {
            consider(now + TICK);
        }
        match wait {
            Some(d) => PollTimeout::try_from(sys::poll_millis(d)).unwrap_or(PollTimeout::MAX),
            None => PollTimeout::NONE,
        }
    }

    /// Whether child `i`, something it left behind holding its output, or the delivery
    /// of that output to a sink writer, may still be under way.
    fn active(&self, i: usize) -> bool {
        let child = &self.children[i];
        !child.has_exited()
            || child.out_pump.is_some_and(|p| {
                let pump = &self.pumps[p];
                pump.input.is_some() || !pump.is_delivered()
            })
            || child.capture.is_some_and(|c| self.captures[c].fd.is_some())
    }

    /// Look for the exits of the children in `candidates`, and judge them.
    fn reap(&mut self, mut candidates: Vec<usize>) {
        candidates.sort_unstable();
        candidates.dedup();
        let mut newly = Vec::new();
        for i in candidates {
            match self.children[i].poll_exit() {
                Ok(true) => newly.push(i),
                Ok(false) => {}
                Err(lost) => self.fail(Cause::Io(lost)),
            }
        }
        // Exits seen in the same round are judged upstream first: an upstream failure
        // (a truncated stream) is the usual cause of a downstream one. A process that
        // says its input never came waits for every earlier one, which may be seen later.
        let upstream_done =
            |children: &[ChildState], i: usize| children[..i].iter().all(ChildState::has_exited);
        for i in newly {
            if self.children[i].failed_for_no_input() && !upstream_done(&self.children, i) {
                self.deferred.push(i);
            } else if let Some(failure) = self.children[i].failure() {
                self.fail(Cause::Process { child: i, failure });
            }
        }
        let deferred = std::mem::take(&mut self.deferred);
        for i in deferred {
            if !upstream_done(&self.children, i) {
                self.deferred.push(i);
            } else if let Some(failure) = self.children[i].failure() {
                self.fail(Cause::Process { child: i, failure });
            }
        }
    }

    fn check_deadlines(&mut self) {
        if self.teardown.is_some() {
            return;
        }
        let now = Instant::now();
        if let Some((at, after)) = self.deadline {
            if now >= at {
                return self.fail(Cause::TimedOut(after));
            }
        }
        for i in 0..self.children.len() {
            if let Some((at, after)) = self.children[i].deadline {
                if now >= at && self.active(i) {
                    let failure = Failure::TimedOut(after);
                    return self.fail(Cause::Process { child: i, failure });
                }
            }
        }
    }

    /// SIGKILL for whatever ignored the SIGTERM of a teardown.
    fn check_escalation(&mut self) {
        match self.teardown {
            Some(started) if !self.escalated && started.elapsed() >= TERM_GRACE => {
                self.escalated = true;
                self.children.iter_mut().for_each(ChildState::kill);
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
            if let Fed::Failed(e, write_end) = self.feeders[i].check() {
                self.fail(Cause::Source(e));
                // Only now, with its reader killed, may the pipe close.
                drop(write_end);
            }
        }
    }

    /// Collect sink writers' failures, and let pumps waiting for room try again.
    fn check_sinks(&mut self, out: &mut VecDeque<Vec<u8>>) {
        for i in 0..self.pumps.len() {
            if let Some(e) = self.pumps[i].sink_error() {
                self.fail(Cause::Sink(e));
            } else if matches!(self.pumps[i].out, PumpOut::Writer(_)) && self.pumps[i].pending() {
                self.pumps[i].run(out);
            }
        }
    }

    /// Record `cause` if it is the first failure, and stop everything still running.
    fn fail(&mut self, cause: Cause) {
        if self.cause.is_none() {
            self.cause = Some(cause);
        }
        if self.teardown.is_some() {
            return;
        }
        // SIGTERM first, so that a stage can remove what it half made
        // (fw-unpack its staging directory); SIGKILL after a grace period.
        self.teardown = Some(Instant::now());
        self.children.iter_mut().for_each(ChildState::terminate);
        // Closing our pipe ends unblocks feeders and anything left writing to us.
        self.pumps.iter_mut().for_each(Pump::close);
    }

    fn check_done(&mut self) -> bool {
        let exited = self.children.iter().all(ChildState::has_exited);
        let pumped = self.pumps.iter().all(Pump::is_closed);
        if !(exited && pumped) {
            return false;
        }
        // Sink writers finish what they were given; after a failure, not for long.
        for i in 0..self.pumps.len() {
            if let Some(e) = self.pumps[i].sink_error() {
                self.fail(Cause::Sink(e));
            }
        }
        let given_up = self
            .teardown
            .is_some_and(|started| started.elapsed() >= TERM_GRACE);
        if !given_up && !self.pumps.iter().all(Pump::is_delivered) {
            return false;
        }
        // Every child is gone: whatever is left in a stderr pipe is all there will be,
        // short of something they left behind, which we do not wait for.
        for capture in &mut self.captures {
            capture.read();
            capture.fd = None;
        }
        self.check_feeders();
        // Only now may their pids (and process group ids) go back to the system.
        self.children.iter_mut().for_each(ChildState::release);
        self.done = true;
        for killer in &self.killers {
            killer.register(None);
        }
        true
    }

    /// The outcome once [`step`](Self::step) has returned true: what the pipe produced,
    /// and its failure, if it failed.
    pub(crate) fn finish(&mut self) -> (Report, Option<Error>) {
        debug_assert!(self.done);
        let report = Report {
            statuses: self
                .children
                .iter()
                .filter_map(ChildState::status)
                .collect(),
            stderr: self
                .captures
                .iter()
                .flat_map(Capture::tail)
                .copied()
                .collect(),
        };
        let error = self.cause.take().map(|cause| match cause {
            Cause::Process { child, failure } => {
                let c = &self.children[child];
                let stderr_tail = c
                    .capture
                    .map(|i| stderr_tail(self.captures[i].tail()))
                    .unwrap_or_default();
                Error::Process(ProcessError {
                    name: c.name.clone(),
                    stage: child,
                    pid: c.pid,
                    failure,
                    stderr_tail,
                })
            }
            Cause::Source(e) => Error::Source(e),
            Cause::Sink(e) => Error::Sink(e),
            Cause::TimedOut(after) => Error::TimedOut(after),
            Cause::Killed => Error::Killed,
            Cause::Io(e) => Error::Io(e),
        });
        (report, error)
    }
}

impl Drop for Engine {
    /// A pipe dropped before its end (an iterator abandoned, a panicking closure) still
    /// kills and reaps everything it started: SIGTERM, then SIGKILL after the grace
    /// period for whatever ignores it, as any failure does.
    fn drop(&mut self) {
        if self.done {
            return;
        }
        self.fail(Cause::Killed);
        let mut discard = VecDeque::new();
        while !self.step(&mut discard) {
            discard.clear();
        }
    }
}

#[cfg(test)]
mod tests;
