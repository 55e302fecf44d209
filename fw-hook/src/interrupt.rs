//! Interrupting a hook run: a signal kills the running hook or ends a back-off sleep.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use fw_nbio::Killer;

/// Stops a hook run from another thread (a signal handler's thread): kills
/// the running hook's process group, or cuts a back-off sleep short.
#[derive(Debug, Default)]
pub struct Interrupt {
    state: Mutex<InterruptState>,
    wake: Condvar,
}

#[derive(Debug, Default)]
struct InterruptState {
    signal: Option<i32>,
    killer: Option<Killer>,
}

impl Interrupt {
    pub fn new() -> Self {
        Self::default()
    }

    /// Interrupts the run because of `signal`: the hook (if running) is killed
    /// with its process group and no further attempt is made.
    pub fn trigger(&self, signal: i32) {
        let mut state = self.lock();
        state.signal.get_or_insert(signal);
        if let Some(killer) = &state.killer {
            killer.kill();
        }
        self.wake.notify_all();
    }

    /// The signal that interrupted the run, if any.
    pub fn signal(&self) -> Option<i32> {
        self.lock().signal
    }

    fn lock(&self) -> MutexGuard<'_, InterruptState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers the killer of the attempt about to start, unless already interrupted.
    pub(crate) fn arm(&self, killer: Killer) -> std::result::Result<(), i32> {
        let mut state = self.lock();
        if let Some(signal) = state.signal {
            return Err(signal);
        }
        state.killer = Some(killer);
        Ok(())
    }

    pub(crate) fn disarm(&self) {
        self.lock().killer = None;
    }

    /// Sleeps for `delay` unless interrupted first.
    pub(crate) fn sleep(&self, delay: Duration) -> std::result::Result<(), i32> {
        let state = self.lock();
        let (state, _) = self
            .wake
            .wait_timeout_while(state, delay, |s| s.signal.is_none())
            .unwrap_or_else(|e| e.into_inner());
        match state.signal {
            Some(signal) => Err(signal),
            None => Ok(()),
        }
    }
}
