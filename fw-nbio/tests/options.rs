//! Options that fit the library's users: unchecked runs, line and stderr sinks, children
//! that die with their parent.

mod common;

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use common::{bounded, dies_soon, is_dead};
use fw_nbio::{Error, Failure, Process as P, Sink};

#[test]
fn unchecked_run_keeps_output_status_and_failure() {
    let out = bounded("exit 3, unchecked", || {
        P::shell("echo partial; echo why >&2; exit 3")
            .capture_stderr()
            .run_unchecked()
    })
    .unwrap();
    assert_eq!(out.stdout, b"partial\n");
    assert_eq!(out.stderr, b"why\n");
    assert_eq!(out.statuses[0].code(), Some(3));
    let failure = out.failure.as_ref().unwrap();
    assert_eq!(
        (&failure.failure, failure.stderr_tail.as_str()),
        (&Failure::Exit(3), "why")
    );
    assert!(!out.success());

    // A process's timeout is its failure too; what is not a process's is still an error.
    let out = bounded("timeout, unchecked", || {
        P::shell("echo before; exec sleep 30")
            .timeout(Duration::from_millis(300))
            .run_unchecked()
    })
    .unwrap();
    assert_eq!(out.stdout, b"before\n");
    assert!(matches!(out.failure.unwrap().failure, Failure::TimedOut(_)));
    let err = bounded("spawn, unchecked", || {
        P::argv(["/nonexistent/fw-nbio"]).run_unchecked()
    })
    .unwrap_err();
    assert!(matches!(err, Error::Spawn { .. }), "{err}");

    let out = bounded("success, unchecked", || P::shell("echo ok").run_unchecked()).unwrap();
    assert!(out.success() && out.stdout == b"ok\n");
}

#[test]
fn line_sink_gets_every_line_and_the_last_one_on_failure() {
    let (tx, rx) = mpsc::channel();
    let err = bounded("lines then exit 7", move || {
        (P::shell("echo one; echo two >&2; printf 'no newline'; exit 7").merge_stderr()
            | Sink::lines(move |line| tx.send(line.to_vec()).unwrap()))
        .run()
    })
    .unwrap_err();
    assert_eq!(err.process().unwrap().failure, Failure::Exit(7));
    // Everything was delivered by the time run returned.
    assert_eq!(
        rx.try_iter().collect::<Vec<_>>(),
        [b"one".to_vec(), b"two".to_vec(), b"no newline".to_vec()]
    );
}

#[test]
fn stderr_sink_takes_the_output_off_our_stdout() {
    // The child writes into our stderr directly; nothing is collected.
    let out = bounded("to stderr", || {
        (P::shell("echo for people") | Sink::stderr()).run()
    })
    .unwrap();
    assert!(out.stdout.is_empty());
    let out = bounded("to stderr after a closure", || {
        (P::shell("echo for people") | (|_: &[u8]| {}) | std::io::stderr()).run()
    })
    .unwrap();
    assert!(out.stdout.is_empty());
}

/// Set in the copy of this test binary that starts a child and waits to be killed.
const PARENT_HELPER: &str = "FW_NBIO_TEST_PARENT_HELPER";

/// Runs this test binary as a parent of `sleep 100` (with `die_with_parent` if asked),
/// kills that parent with SIGKILL, and returns the sleeper's pid.
fn orphan_a_sleeper(die_with_parent: bool) -> i32 {
    let mut helper = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "children_die_with_their_parent", "--nocapture"])
        .env(PARENT_HELPER, if die_with_parent { "die" } else { "live" })
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(helper.stdout.take().unwrap()).lines();
    let pid: i32 = lines
        .find_map(|l| l.unwrap().strip_prefix("SLEEPER ").map(str::to_owned))
        .expect("the helper reports its child")
        .parse()
        .unwrap();
    helper.kill().unwrap();
    helper.wait().unwrap();
    pid
}

#[test]
fn children_die_with_their_parent() {
    if let Some(mode) = std::env::var_os(PARENT_HELPER) {
        let mut sleeper = P::shell("echo $$; exec sleep 100");
        if mode == "die" {
            sleeper = sleeper.die_with_parent();
        }
        let mut running = sleeper.by_line().spawn().unwrap();
        let pid = String::from_utf8(running.next().unwrap().unwrap()).unwrap();
        println!("SLEEPER {pid}");
        // Until killed.
        let _ = running.wait();
        return;
    }
    let pid = bounded("parent killed", || orphan_a_sleeper(true));
    assert!(dies_soon(pid), "the child {pid} outlived its parent");

    // Without the option it lives on (which is why the option exists).
    let pid = bounded("parent killed", || orphan_a_sleeper(false));
    assert!(!is_dead(pid));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL).unwrap();
}
