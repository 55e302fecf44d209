//! Alone in its test binary, so no other test's children are around: after every kind
//! of ending, we must have no child left, reaped or not.

mod common;

use std::time::Duration;

use common::bounded;
use fw_nbio::{Pipe, Process as P, Source};
use nix::{
    errno::Errno,
    sys::wait::{waitpid, WaitPidFlag},
    unistd::Pid,
};

#[test]
fn no_child_is_left_behind() {
    bounded("many endings", || {
        (P::shell("echo ok") | P::shell("cat")).run().unwrap();
        (P::argv(["yes"]) | P::argv(["head", "-c", "1"]))
            .run()
            .unwrap();
        (P::argv(["yes"]) | (|_: &[u8]| {}) | P::shell("exit 3"))
            .run()
            .unwrap_err();
        (P::argv(["sleep", "30"]) | P::argv(["cat"]))
            .timeout(Duration::from_millis(100))
            .run()
            .unwrap_err();
        P::shell("sleep 1000 & wait")
            .timeout(Duration::from_millis(100))
            .run()
            .unwrap_err();
        (P::shell("echo hi") | P::argv(["/nonexistent/x"]))
            .run()
            .unwrap_err();
        (Source::chunks(std::iter::repeat([0u8; 512])) | P::shell("head -c 10"))
            .run()
            .unwrap();
        let mut running = (P::argv(["yes"]) | P::argv(["cat"])).spawn().unwrap();
        running.next();
        drop(running);
        let mut pipe = Pipe::from(P::argv(["sleep", "30"]));
        let killer = pipe.killer();
        let handle = std::thread::spawn(move || pipe.run());
        killer.kill();
        handle.join().unwrap().unwrap_err();
    });
    assert_eq!(
        waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)),
        Err(Errno::ECHILD)
    );
}
