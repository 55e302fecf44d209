//! Alone in its test binary, since it changes how the whole process treats SIGCHLD: a
//! host that ignores SIGCHLD has its children reaped by the kernel, so no exit status can
//! be known. The pipe must say so at once, not spin waiting for one.

mod common;

use common::bounded;
use fw_nbio::Process as P;
use nix::sys::signal::{signal, SigHandler, Signal};

#[test]
fn ignored_sigchld_is_refused_not_spun_on() {
    // SAFETY: no handler is installed, only the disposition changed.
    unsafe { signal(Signal::SIGCHLD, SigHandler::SigIgn) }.unwrap();
    let err = bounded("a pipe with SIGCHLD ignored", || P::argv(["true"]).run()).unwrap_err();
    assert!(err.to_string().contains("SIGCHLD"), "{err}");

    // A program's main restores the default, and pipes work again.
    fw_nbio::reset_sigchld();
    bounded("after reset_sigchld", || P::argv(["true"]).run()).unwrap();
}
