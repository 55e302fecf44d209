//! Exit statuses, signals, timeouts, kills, and line delivery.

mod common;

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use common::{bounded, dies_soon};
use fw_nbio::{Error, Failure, Pipe, Process as P};

#[test]
fn exit_status_is_reported_with_name_and_stderr_tail() {
    let err = bounded("exit 3", || {
        (P::shell("echo fine") | P::shell("echo something broke >&2; exit 3").capture_stderr())
            .run()
    })
    .unwrap_err();
    let failed = err.process().unwrap();
    assert_eq!(failed.name, "echo something broke >&2; exit 3");
    assert_eq!((failed.stage, &failed.failure), (1, &Failure::Exit(3)));
    assert_eq!(failed.stderr_tail, "something broke");
    let message = err.to_string();
    assert!(
        message.contains("exited with status 3") && message.contains("something broke"),
        "{message}"
    );
}

/// fw's stages exit 9 when their input ended before it began because the stage before
/// failed. Here the first stage closes its output at once (the second exits 9 at once) and
/// fails only later: the first is still the failure reported, whichever exit is seen first.
#[test]
fn a_no_input_exit_waits_for_the_failure_before_it() {
    let err = bounded("no input", || {
        (P::shell("exec >&-; sleep 0.3; exit 4")
            | P::shell("cat >/dev/null; exit 9").no_input_exit([9]))
        .run()
    })
    .unwrap_err();
    let failed = err.process().unwrap();
    assert_eq!((failed.stage, &failed.failure), (0, &Failure::Exit(4)));
    // Without an earlier failure, the exit is the failure.
    let err = bounded("no input alone", || {
        (P::shell("exec >&-; sleep 0.1") | P::shell("cat >/dev/null; exit 9").no_input_exit([9]))
            .run()
    })
    .unwrap_err();
    let failed = err.process().unwrap();
    assert_eq!((failed.stage, &failed.failure), (1, &Failure::Exit(9)));
}

#[test]
fn killed_by_a_signal() {
    let err = bounded("kill -TERM", || P::shell("kill -TERM $$").run()).unwrap_err();
    assert_eq!(
        err.process().unwrap().failure,
        Failure::Signal(libc::SIGTERM)
    );
    assert!(err.to_string().contains("SIGTERM"), "{err}");
}

#[test]
fn good_exit_codes() {
    let out = bounded("grep no match", || {
        (P::shell("echo red") | P::argv(["grep", "blue"]).good_exit([1])).run()
    })
    .unwrap();
    assert!(out.stdout.is_empty());
    assert_eq!(
        out.statuses.iter().map(|s| s.code()).collect::<Vec<_>>(),
        [Some(0), Some(1)]
    );
    let err = bounded("grep error", || {
        P::argv(["grep", "-E", "("])
            .discard_stderr()
            .good_exit([1])
            .run()
    });
    assert_eq!(
        err.unwrap_err().process().unwrap().failure,
        Failure::Exit(2)
    );
}

#[test]
fn spawn_failure_names_the_program() {
    let err = bounded("no such program", || {
        (P::shell("echo hi") | P::argv(["/nonexistent/fw-nbio-test"])).run()
    })
    .unwrap_err();
    assert!(matches!(err, Error::Spawn { .. }), "{err}");
    assert!(
        err.to_string().contains("/nonexistent/fw-nbio-test"),
        "{err}"
    );
}

#[test]
fn by_line_with_a_partial_final_line() {
    let lines: Vec<Vec<u8>> = bounded("by_line", || {
        P::shell(r"printf 'a\nbb\n\nccc'")
            .by_line()
            .spawn()
            .unwrap()
            .collect::<Result<_, _>>()
    })
    .unwrap();
    assert_eq!(lines, [&b"a"[..], b"bb", b"", b"ccc"]);

    // Lines also reach a closure; the bytes flowing on are untouched.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let tap = seen.clone();
    let out = bounded("by_line tap", move || {
        (P::shell(r"printf 'x\ny'").by_line()
            | (move |l: &[u8]| tap.lock().unwrap().push(l.to_vec())))
        .run()
    })
    .unwrap();
    assert_eq!(*seen.lock().unwrap(), [b"x".to_vec(), b"y".to_vec()]);
    assert_eq!(out.stdout, b"x\ny");
    assert_eq!(out.lines().collect::<Vec<_>>(), [&b"x"[..], b"y"]);

    // Lines arrive as they are produced, not when the process ends.
    let mut running = P::shell("echo first; exec sleep 30")
        .by_line()
        .spawn()
        .unwrap();
    let first = bounded("first line", move || {
        let first = running.next().unwrap().unwrap();
        running.kill();
        (first, running.wait())
    });
    assert_eq!(first.0, b"first");
    assert!(matches!(first.1, Err(Error::Killed)));
}

#[test]
fn process_timeout_kills_it() {
    let started = Instant::now();
    let err = bounded("sleep with timeout", || {
        P::argv(["sleep", "30"])
            .timeout(Duration::from_millis(200))
            .run()
    })
    .unwrap_err();
    assert_eq!(
        err.process().unwrap().failure,
        Failure::TimedOut(Duration::from_millis(200))
    );
    assert!(started.elapsed() < Duration::from_secs(20));
}

/// A shell that leaves a grandchild holding its stdout, and prints the grandchild's pid.
const LINGER: &str = "sleep 1000 & echo $!; wait";

#[test]
fn timeout_kills_the_whole_process_group() {
    let (pid, result) = bounded("timeout group", || {
        let mut running = P::shell(LINGER)
            .timeout(Duration::from_secs(2))
            .by_line()
            .spawn()
            .unwrap();
        let pid: i32 = String::from_utf8(running.next().unwrap().unwrap())
            .unwrap()
            .parse()
            .unwrap();
        (pid, running.wait())
    });
    assert!(matches!(
        result.unwrap_err().process().unwrap().failure,
        Failure::TimedOut(_)
    ));
    assert!(
        dies_soon(pid),
        "grandchild {pid} survived its group's timeout"
    );
}

#[test]
fn timeout_catches_a_grandchild_holding_the_output_after_its_parent_exits() {
    // The shell exits at once; the output stays open as long as the grandchild lives.
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let script = format!("sleep 1000 & echo $! > {}", pidfile.display());
    let err = bounded("orphan holds stdout", || {
        P::shell(script).timeout(Duration::from_millis(500)).run()
    })
    .unwrap_err();
    assert!(
        matches!(err.process().unwrap().failure, Failure::TimedOut(_)),
        "{err}"
    );
    let pid: i32 = std::fs::read_to_string(pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(dies_soon(pid), "grandchild {pid} survived");
}

#[test]
fn pipe_timeout_kills_every_stage() {
    let err = bounded("pipe timeout", || {
        (P::argv(["sleep", "30"]) | P::argv(["cat"]))
            .timeout(Duration::from_millis(200))
            .run()
    })
    .unwrap_err();
    assert!(matches!(err, Error::TimedOut(_)), "{err}");
}

#[test]
fn kill_from_another_thread() {
    let mut pipe = Pipe::from(P::shell(LINGER)).by_line();
    let killer = pipe.killer();
    let (pid, result) = bounded("killer", move || {
        let mut running = pipe.spawn().unwrap();
        let pid: i32 = String::from_utf8(running.next().unwrap().unwrap())
            .unwrap()
            .parse()
            .unwrap();
        std::thread::spawn(move || killer.kill());
        (pid, running.wait())
    });
    assert!(matches!(result, Err(Error::Killed)));
    assert!(dies_soon(pid), "grandchild {pid} survived the kill");
}

#[test]
fn killed_before_it_runs() {
    let mut pipe = Pipe::from(P::argv(["sleep", "30"]));
    pipe.killer().kill();
    assert!(matches!(
        bounded("pre-killed", || pipe.run()),
        Err(Error::Killed)
    ));
}

#[test]
fn failure_kills_the_other_stages() {
    // Stage 0 would run for 30 s; stage 1's failure ends the pipe at once.
    let started = Instant::now();
    let err = bounded("fail fast", || {
        (P::argv(["sleep", "30"]) | P::shell("exit 9")).run()
    })
    .unwrap_err();
    assert_eq!(err.process().unwrap().failure, Failure::Exit(9));
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[test]
fn dropping_an_iterator_early_kills_the_pipe() {
    let mut running = P::shell(LINGER).by_line().spawn().unwrap();
    let pid: i32 = String::from_utf8(running.next().unwrap().unwrap())
        .unwrap()
        .parse()
        .unwrap();
    let leader = running.pids()[0] as i32;
    bounded("drop", move || drop(running));
    assert!(dies_soon(pid) && dies_soon(leader));
}

#[test]
fn hook_style_process() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path().to_owned();
    let out = bounded("hook", move || {
        P::argv(["sh", "-c", "echo $FW_HOOK; pwd; echo warn >&2"])
            .env("FW_HOOK", "pre-install")
            .current_dir(cwd)
            .timeout(Duration::from_secs(30))
            .capture_stderr()
            .run()
    })
    .unwrap();
    let text = out.text();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("pre-install"));
    assert_eq!(
        std::path::Path::new(lines.next().unwrap())
            .canonicalize()
            .unwrap(),
        dir.path().canonicalize().unwrap()
    );
    assert_eq!(out.stderr_text(), "warn\n");
}

#[test]
fn pipe_is_send() {
    fn is_send<T: Send>() {}
    is_send::<Pipe>();
    is_send::<fw_nbio::Running>();
    is_send::<Error>();
}

#[test]
fn panicking_closure_still_kills_and_reaps() {
    let started = Instant::now();
    let panicked = bounded("panicking tap", || {
        let pipe = P::shell("echo x; exec sleep 30") | (|_: &[u8]| panic!("tap broke"));
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| pipe.run())).is_err()
    });
    assert!(panicked);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "waited for the sleeper"
    );
}
