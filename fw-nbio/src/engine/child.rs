//! One process of a pipe: started in a process group of its own, watched by a pidfd,
//! judged by its exit, signalled with its group.
//!
//! A child that has exited is not reaped until the pipe is done: as a zombie it keeps its
//! pid, which is also its process group's id, so killing what it left behind in its group
//! can never hit another process group that got the same number after a reap.

use std::{
    io,
    os::{fd::OwnedFd, unix::process::CommandExt},
    process::{ExitStatus, Stdio},
    time::{Duration, Instant},
};

use std::os::unix::process::ExitStatusExt;

use crate::{process::Process, sys, Error, Failure};

pub(super) struct ChildState {
    pub(super) name: String,
    pub(super) pid: u32,
    pidfd: Option<OwnedFd>,
    pub(super) exit: Option<Exit>,
    good_exit: Vec<i32>,
    /// Exits that say the process before it failed (judged after that one's).
    no_input_exit: Vec<i32>,
    pub(super) deadline: Option<(Instant, Duration)>,
    /// We killed it: its death is a consequence, not a failure of its own.
    pub(super) killed: bool,
    /// Its stdout leads to a later process, so SIGPIPE means that process stopped reading.
    feeds_a_process: bool,
    /// The pump reading its stdout, which a left-behind grandchild may keep open.
    pub(super) out_pump: Option<usize>,
    pub(super) capture: Option<usize>,
}

#[derive(Clone, Copy)]
pub(super) enum Exit {
    Status(ExitStatus),
    /// Something else reaped it: its status is unknown, and its pid may be reused.
    Lost,
}

impl ChildState {
    /// Spawn `process` in a process group of its own.
    pub(super) fn start(
        process: Process,
        stdin: Stdio,
        stdout: Stdio,
        stderr: Stdio,
        feeds_a_process: bool,
        capture: Option<usize>,
    ) -> Result<ChildState, Error> {
        let name = process.display_name();
        let Process {
            mut cmd,
            good_exit,
            no_input_exit,
            timeout,
            die_with_parent,
            ..
        } = process;
        let parent = die_with_parent.then(|| std::process::id() as libc::pid_t);
        cmd.stdin(stdin)
            .stdout(stdout)
            .stderr(stderr)
            .process_group(0);
        // SAFETY: prepare_child makes only async-signal-safe system calls.
        unsafe {
            cmd.pre_exec(move || sys::prepare_child(parent));
        }
        let spawned = cmd.spawn();
        // The command holds our copies of the child's pipe ends: close them now, or
        // readers after this child would never see EOF.
        drop(cmd);
        let child = spawned.map_err(|error| Error::Spawn {
            name: name.clone(),
            error,
        })?;
        let pid = child.id();
        // Reaped by pid in `release`, not through `child`.
        drop(child);
        Ok(ChildState {
            name,
            pid,
            pidfd: sys::pidfd_open(pid),
            exit: None,
            good_exit,
            no_input_exit,
            deadline: timeout.map(|t| (Instant::now() + t, t)),
            killed: false,
            feeds_a_process,
            out_pump: None,
            capture,
        })
    }

    pub(super) fn has_exited(&self) -> bool {
        self.exit.is_some()
    }

    /// The pidfd to poll for its exit; `None` once exited, or without pidfds.
    pub(super) fn pidfd(&self) -> Option<&OwnedFd> {
        self.pidfd.as_ref().filter(|_| self.exit.is_none())
    }

    /// Whether its exit is found by looking (no pidfd) rather than by poll.
    pub(super) fn needs_tick(&self) -> bool {
        self.pidfd.is_none() && self.exit.is_none()
    }

    #[cfg(test)]
    pub(super) fn forget_pidfd(&mut self) {
        self.pidfd = None;
    }

    /// Look for its exit, leaving it a zombie. `Err` if its status was lost.
    pub(super) fn poll_exit(&mut self) -> Result<bool, io::Error> {
        if self.exit.is_some() {
            return Ok(false);
        }
        match sys::exit_status(self.pid) {
            Ok(Some(status)) => {
                self.exit = Some(Exit::Status(status));
                self.pidfd = None;
                Ok(true)
            }
            Ok(None) => Ok(false),
            Err(e) if e.raw_os_error() == Some(libc::ECHILD) => {
                self.exit = Some(Exit::Lost);
                self.pidfd = None;
                Err(io::Error::other(format!(
                    "the exit status of `{}` (pid {}) was lost: something else reaped it \
                     (is SIGCHLD ignored, or does this program wait for any child?)",
                    self.name, self.pid
                )))
            }
            Err(_) => Ok(false),
        }
    }

    /// Its failure, if its exit is one (and it was not killed by us).
    pub(super) fn failure(&self) -> Option<Failure> {
        let Some(Exit::Status(status)) = self.exit else {
            return None;
        };
        if self.killed {
            return None;
        }
        match (status.code(), status.signal()) {
            (Some(code), _) if code == 0 || self.good_exit.contains(&code) => None,
            (Some(code), _) => Some(Failure::Exit(code)),
            // SIGPIPE means a later process stopped reading: that process's own exit says
            // whether anything failed. Nothing of ours ever stops reading early.
            (None, Some(libc::SIGPIPE)) if self.feeds_a_process => None,
            (None, Some(sig)) => Some(Failure::Signal(sig)),
            (None, None) => None,
        }
    }

    /// Its failure says only that its input ended early (see `Process::no_input_exit`).
    pub(super) fn failed_for_no_input(&self) -> bool {
        matches!(self.failure(), Some(Failure::Exit(code)) if self.no_input_exit.contains(&code))
    }

    pub(super) fn status(&self) -> Option<ExitStatus> {
        match self.exit {
            Some(Exit::Status(status)) => Some(status),
            _ => None,
        }
    }

    /// Ask it to stop (SIGTERM to its group), or kill what it left behind.
    pub(super) fn terminate(&mut self) {
        match self.exit {
            None => {
                sys::term_group(self.pid);
                self.killed = true;
            }
            Some(Exit::Status(_)) => sys::kill_leftovers(self.pid),
            Some(Exit::Lost) => {} // its id may name someone else's group by now
        }
    }

    /// SIGKILL for its group, whatever is left of it.
    pub(super) fn kill(&mut self) {
        match self.exit {
            None => sys::kill_group(self.pid),
            Some(Exit::Status(_)) => sys::kill_leftovers(self.pid),
            Some(Exit::Lost) => {}
        }
    }

    /// Reap it: the pipe is done with its process group.
    pub(super) fn release(&mut self) {
        if let Some(Exit::Status(_)) = self.exit {
            sys::reap(self.pid);
        }
    }
}
