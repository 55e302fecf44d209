//! Thin wrappers over the system calls the engine needs.

use std::{
    io,
    os::{
        fd::{AsFd, FromRawFd, OwnedFd},
        unix::process::ExitStatusExt,
    },
    process::ExitStatus,
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

/// How child `pid` ended, if it has: the status is read but the child is left a zombie
/// (`WNOWAIT`), so that its pid, which is also its process group's id, cannot be given to
/// another process while we may still signal that group. `ECHILD` means someone else
/// reaped it (or the kernel did: SIGCHLD is ignored).
pub(crate) fn exit_status(pid: u32) -> io::Result<Option<ExitStatus>> {
    loop {
        // SAFETY: a zeroed siginfo_t is valid; waitid fills it in or leaves si_pid 0.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let flags = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT;
        // SAFETY: waitid with a valid pointer to our siginfo_t.
        let r = unsafe { libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, flags) };
        if r == -1 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        // SAFETY: after a successful waitid, si_pid and si_status are the fields it set.
        let (si_pid, si_status) = unsafe { (info.si_pid(), info.si_status()) };
        if si_pid == 0 {
            return Ok(None);
        }
        // The raw wait status waitpid would have given.
        let raw = match info.si_code {
            libc::CLD_EXITED => (si_status & 0xff) << 8,
            libc::CLD_DUMPED => si_status | 0x80,
            _ => si_status,
        };
        return Ok(Some(ExitStatus::from_raw(raw)));
    }
}

/// Reap child `pid`, whose exit [`exit_status`] has already seen.
pub(crate) fn reap(pid: u32) {
    let _ = nix::sys::wait::waitpid(Pid::from_raw(pid as i32), None);
}

/// Whether this process has the kernel reap its children (SIGCHLD ignored, or
/// SA_NOCLDWAIT), which leaves no exit status to read.
pub(crate) fn children_are_autoreaped() -> bool {
    // SAFETY: querying (not changing) the disposition into a zeroed struct.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(libc::SIGCHLD, std::ptr::null(), &mut old) == 0
            && (old.sa_sigaction == libc::SIG_IGN || old.sa_flags & libc::SA_NOCLDWAIT != 0)
    }
}

/// Give SIGCHLD its default disposition (see [`crate::reset_sigchld`]).
pub(crate) fn reset_sigchld() {
    // SAFETY: a default disposition with an empty mask and no flags.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = libc::SIG_DFL;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGCHLD, &action, std::ptr::null_mut());
    }
}

/// Runs in the child between fork and exec (so only async-signal-safe calls): a child in
/// a background process group of its own that reads its terminal gets EIO rather than
/// being stopped by SIGTTIN for good (and writes to it rather than stopping on SIGTTOU);
/// with `parent`, it gets SIGKILL when the thread that started it ends.
pub(crate) fn prepare_child(parent: Option<libc::pid_t>) -> io::Result<()> {
    // SAFETY: sigaction, prctl and getppid are async-signal-safe system calls, given
    // valid arguments.
    unsafe {
        let mut ignore: libc::sigaction = std::mem::zeroed();
        ignore.sa_sigaction = libc::SIG_IGN;
        for signal in [libc::SIGTTIN, libc::SIGTTOU] {
            if libc::sigaction(signal, &ignore, std::ptr::null_mut()) == -1 {
                return Err(io::Error::last_os_error());
            }
        }
        if let Some(parent) = parent {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(io::Error::last_os_error());
            }
            // The parent died before the prctl took effect.
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
        }
    }
    Ok(())
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

/// SIGKILL the process group `pgid` whose leader has exited (and is not yet reaped, so
/// the id still names our group): what the leader left behind.
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

/// Wakes the engine when dropped: a helper thread's last word, even when it panics.
pub(crate) struct WakeOnDrop(pub(crate) std::sync::Arc<OwnedFd>);

impl Drop for WakeOnDrop {
    fn drop(&mut self) {
        wake(&self.0);
    }
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

/// Duplicate our own stderr, for a last process whose stdout goes there.
pub(crate) fn dup_stderr() -> io::Result<OwnedFd> {
    io::stderr().as_fd().try_clone_to_owned()
}
