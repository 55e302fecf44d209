//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::{
    sync::mpsc::{self, RecvTimeoutError},
    thread,
    time::{Duration, Instant},
};

/// Generous: these pipes take milliseconds; only a hang gets near it.
pub const HANG: Duration = Duration::from_secs(60);

/// Run `f` on a thread and fail (instead of hanging the suite) if it takes longer than `HANG`.
pub fn bounded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(HANG) {
        Ok(value) => value,
        Err(RecvTimeoutError::Timeout) => panic!("{what}: still running after {HANG:?}: deadlock?"),
        Err(RecvTimeoutError::Disconnected) => panic!("{what}: panicked"),
    }
}

/// Whether `pid` is dead: no such process, or a zombie waiting for its (new) parent.
pub fn is_dead(pid: i32) -> bool {
    use nix::{errno::Errno, sys::signal::kill, unistd::Pid};
    if kill(Pid::from_raw(pid), None) == Err(Errno::ESRCH) {
        return true;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // State is the field after the parenthesised command name.
        Ok(stat) => matches!(
            stat.rsplit(')')
                .next()
                .map(str::trim_start)
                .and_then(|s| s.chars().next()),
            Some('Z' | 'X')
        ),
        Err(_) => true,
    }
}

/// SIGKILL is delivered asynchronously, and a killed grandchild is reaped by init, not
/// us: give the kernel a bounded while to finish the job.
pub fn dies_soon(pid: i32) -> bool {
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        if is_dead(pid) {
            return true;
        }
        thread::sleep(Duration::from_millis(5));
    }
    false
}
