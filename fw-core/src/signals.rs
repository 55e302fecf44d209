//! The termination signals (SIGTERM, SIGINT, SIGHUP) handled on a thread of
//! their own, as fw-hook (kill the hook's group) and fw-unpack (remove the
//! staging directory) need: no async-signal-safety rules for the handler.

use nix::sys::signal::{SigSet, SigmaskHow, Signal};

use crate::{Error, Result};

/// Blocks the termination signals in the calling thread (call it before any
/// other thread starts, so that only the waiter sees them) and calls
/// `handler` on a waiter thread for each one that arrives. Returns the
/// signal mask from before, for children to start with (they would inherit
/// the blocked one).
pub fn on_termination(mut handler: impl FnMut(Signal) + Send + 'static) -> Result<SigSet> {
    let mut signals = SigSet::empty();
    for signal in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        signals.add(signal);
    }
    let before = signals
        .thread_swap_mask(SigmaskHow::SIG_BLOCK)
        .map_err(|e| Error::failed(format!("cannot block signals: {e}")))?;
    std::thread::spawn(move || {
        while let Ok(signal) = signals.wait() {
            handler(signal);
        }
    });
    Ok(before)
}
