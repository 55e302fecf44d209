//! The target lock (`TARGET/.fw/lock`): one writer at a time, by flock(2),
//! so a lock whose holder died never blocks.
//!
//! scripts/fw-install holds the lock across all its steps and hands it to
//! the tools it runs as an inherited file descriptor named by
//! `FW_LOCK_FD`; a tool given that descriptor checks that it really is the
//! target's lock file and that the lock is held, instead of deadlocking on
//! a second lock.

use std::fs::File;
use std::os::fd::BorrowedFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};

use crate::error::{Error, Exit, Result};

/// Proof that this process may write to the target.
pub enum TargetLock {
    Own(#[allow(dead_code)] Flock<File>),
    Inherited,
}

/// How long to wait for a busy lock: `None` fails at once (exit 6).
pub fn acquire(target: &Path, wait: Option<Duration>) -> Result<TargetLock> {
    let path = crate::target::lock_path(target);
    std::fs::create_dir_all(crate::target::state_dir(target))
        .map_err(|e| Error::io(crate::target::state_dir(target).display(), e))?;
    crate::target::require_real_dir(&crate::target::state_dir(target))?;
    let lock_meta = |file: &File| file.metadata().map(|m| (m.dev(), m.ino()));

    if let Some(fd) = std::env::var("FW_LOCK_FD")
        .ok()
        .and_then(|v| v.parse::<i32>().ok())
    {
        let on_disk = std::fs::metadata(&path).map(|m| (m.dev(), m.ino())).ok();
        // SAFETY: only inspected through a borrowed handle, never closed.
        let inherited = unsafe { BorrowedFd::borrow_raw(fd) };
        if let Ok(owned) = inherited.try_clone_to_owned() {
            let file = File::from(owned);
            if on_disk.is_some() && lock_meta(&file).ok() == on_disk {
                // Same open file description: flock succeeds only if it is
                // ours already or free.
                if let Ok(held) = Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                    // Keep the parent's lock: dropping the Flock would unlock
                    // the shared open file description.
                    std::mem::forget(held);
                    return Ok(TargetLock::Inherited);
                }
            }
        }
    }

    // Never through a symlink planted at the lock's name.
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(&path)
        .map_err(|e| match e.raw_os_error() {
            Some(nix::libc::ELOOP) => Error::security(format!(
                "{} is a symlink: fw takes its lock on a file of its own there; remove the \
                 link and try again",
                path.display()
            )),
            _ => Error::io(path.display(), e),
        })?;
    let deadline = wait.map(|w| Instant::now() + w);
    let mut file = file;
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return Ok(TargetLock::Own(lock)),
            Err((back, errno)) if errno == nix::errno::Errno::EWOULDBLOCK => {
                file = back;
                match deadline {
                    Some(deadline) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    _ => {
                        return Err(Error::new(
                            Exit::Busy,
                            format!(
                                "target {} is busy: another fw install or switch holds {}; \
                                 try again later, or pass --wait",
                                target.display(),
                                path.display()
                            ),
                        ))
                    }
                }
            }
            Err((_, errno)) => {
                return Err(Error::failed(format!(
                    "{}: cannot lock: {errno}",
                    path.display()
                )))
            }
        }
    }
}
