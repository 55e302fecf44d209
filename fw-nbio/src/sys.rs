//! Thin wrappers over the system calls the engine needs.

use std::{
    io,
    os::fd::{AsFd, FromRawFd, OwnedFd},
    time::Duration,
};

use nix::{
    errno::Errno,
    fcntl::{fcntl, FcntlArg, OFlag},
    sys::signal::{kill, killpg, SigSet, SigmaskHow, Signal},
    unistd::Pid,
};

/// A pipe whose ends are closed on exec, so only the child we hand an end to gets it.
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(nix::unistd::pipe2(OFlag::O_CLOEXEC)?)
}

pub(crate) fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

/// Outcome of one non-blocking read or write.
pub(crate) enum Io {
    Done(usize),
    WouldBlock,
}

pub(crate) fn read(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<Io> {
    loop {
        match nix::unistd::read(fd.as_fd(), buf) {
            Ok(n) => return Ok(Io::Done(n)),
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => return Ok(Io::WouldBlock),
            Err(e) => return Err(e.into()),
        }
    }
}

pub(crate) fn write(fd: &OwnedFd, buf: &[u8]) -> io::Result<Io> {
    loop {
        match nix::unistd::write(fd.as_fd(), buf) {
            Ok(n) => return Ok(Io::Done(n)),
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => return Ok(Io::WouldBlock),
            Err(e) => return Err(e.into()),
        }
    }
}

/// A pollable fd that becomes readable when `pid` exits (Linux 5.3+), so exits are seen
/// promptly and in order; `None` where the kernel lacks pidfds (the engine then ticks).
pub(crate) fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the kernel just gave us this fd (with O_CLOEXEC, as pidfds always are).
    Some(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// SIGTERM the process group led by `pid`, and `pid` itself in case it left the group.
pub(crate) fn term_group(pid: u32) {
    let pid = Pid::from_raw(pid as i32);
    let _ = killpg(pid, Signal::SIGTERM);
    let _ = kill(pid, Signal::SIGTERM);
}

/// SIGKILL the process group led by `pid`, and `pid` itself in case it left the group.
pub(crate) fn kill_group(pid: u32) {
    let pid = Pid::from_raw(pid as i32);
    let _ = killpg(pid, Signal::SIGKILL);
    let _ = kill(pid, Signal::SIGKILL);
}

/// SIGKILL the (possibly leaderless) process group `pgid`: what a reaped leader left behind.
pub(crate) fn kill_leftovers(pgid: u32) {
    let _ = killpg(Pid::from_raw(pgid as i32), Signal::SIGKILL);
}

/// Whether writing to a pipe with no reader would kill us, or just fail with EPIPE.
/// Rust binaries ignore SIGPIPE, but a library cannot count on running in one.
pub(crate) fn sigpipe_is_fatal() -> bool {
    // SAFETY: querying (not changing) the disposition into a zeroed struct.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(libc::SIGPIPE, std::ptr::null(), &mut old) == 0
            && old.sa_sigaction != libc::SIG_IGN
    }
}

fn sigpipe_set() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGPIPE);
    set
}

/// Block SIGPIPE in this thread for good: for the feeder threads, which end with it.
pub(crate) fn block_sigpipe_for_thread() {
    let _ = sigpipe_set().thread_block();
}

/// Blocks SIGPIPE in this thread while alive, so a write to a closed pipe returns EPIPE;
/// on drop discards the SIGPIPE that write left pending and restores the mask.
pub(crate) struct SigpipeBlock {
    unblock: bool,
}

impl SigpipeBlock {
    pub(crate) fn new(needed: bool) -> Self {
        if !needed {
            return Self { unblock: false };
        }
        let old = sigpipe_set().thread_swap_mask(SigmaskHow::SIG_BLOCK);
        Self {
            unblock: old.is_ok_and(|old| !old.contains(Signal::SIGPIPE)),
        }
    }
}

impl Drop for SigpipeBlock {
    fn drop(&mut self) {
        if !self.unblock {
            return;
        }
        let set = sigpipe_set();
        let zero = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: sigtimedwait with a valid set and a zero timeout only dequeues a pending
        // SIGPIPE (ours); it returns -1/EAGAIN when none is pending.
        unsafe { while libc::sigtimedwait(set.as_ref(), std::ptr::null_mut(), &zero) > 0 {} }
        let _ = set.thread_unblock();
    }
}

/// Round up to whole milliseconds so poll never spins on a sub-millisecond timeout.
pub(crate) fn poll_millis(d: Duration) -> i32 {
    let ms = d.as_nanos().div_ceil(1_000_000);
    ms.min(i32::MAX as u128) as i32
}

/// Write one byte to a non-blocking wake pipe; a full pipe already means "wake up".
pub(crate) fn wake(fd: &OwnedFd) {
    let _ = nix::unistd::write(fd.as_fd(), &[1]);
}

/// Empty a non-blocking wake pipe.
pub(crate) fn drain(fd: &OwnedFd) {
    let mut buf = [0u8; 64];
    while matches!(nix::unistd::read(fd.as_fd(), &mut buf), Ok(n) if n > 0) {}
}

/// Duplicate our own stdout, for a child whose stderr is merged into an inherited stdout.
pub(crate) fn dup_stdout() -> io::Result<OwnedFd> {
    io::stdout().as_fd().try_clone_to_owned()
}
