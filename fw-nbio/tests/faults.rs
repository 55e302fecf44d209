//! Faults a review of the engine found (issue 15), each shown to hang or to give a wrong
//! answer before its fix.

mod common;

use std::{
    io::Read,
    process::Command,
    time::{Duration, Instant},
};

use common::{bounded, dies_soon};
use fw_nbio::{Error, Failure, Process as P, Sink};

/// A shell that ignores SIGTERM, and so does the sleep it starts (ignored signals are
/// inherited), then says it is ready.
const DEAF: &str = "trap '' TERM; sleep 100 & echo $!; wait";

#[test]
fn dropping_a_pipe_kills_what_ignores_sigterm() {
    let mut running = P::shell(DEAF).by_line().spawn().unwrap();
    let sleeper: i32 = String::from_utf8(running.next().unwrap().unwrap())
        .unwrap()
        .parse()
        .unwrap();
    let leader = running.pids()[0] as i32;
    let started = Instant::now();
    bounded("drop of a pipe whose child ignores SIGTERM", move || {
        drop(running)
    });
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the drop waited for the sleeper"
    );
    assert!(dies_soon(leader) && dies_soon(sleeper));
}

#[test]
fn a_stalled_sink_does_not_stop_timeouts_or_kills() {
    // A sink writer whose reader never reads, as a stderr nobody drains: the writes block
    // once the pipe is full. The process's timeout must still fire.
    let (reader, writer) = nix::unistd::pipe().unwrap();
    let err = bounded("timeout with a stalled sink", move || {
        (P::shell("head -c 1000000 /dev/zero; exec sleep 100").timeout(Duration::from_millis(500))
            | Sink::writer(std::fs::File::from(writer)))
        .run()
    })
    .unwrap_err();
    assert!(
        matches!(
            err.process().map(|p| &p.failure),
            Some(Failure::TimedOut(_))
        ),
        "{err}"
    );

    // And a kill from another thread.
    let (reader2, writer) = nix::unistd::pipe().unwrap();
    let mut pipe = P::shell("head -c 1000000 /dev/zero; exec sleep 100")
        | Sink::writer(std::fs::File::from(writer));
    let killer = pipe.killer();
    let err = bounded("kill with a stalled sink", move || {
        let running = pipe.spawn().unwrap();
        std::thread::spawn(move || killer.kill());
        running.wait()
    })
    .unwrap_err();
    assert!(matches!(err, Error::Killed), "{err}");
    drop((reader, reader2));
}

#[test]
fn sigpipe_of_the_last_stage_is_a_failure_when_its_output_is_ours() {
    // Nothing downstream stopped reading: we collect every byte. Its SIGPIPE came from
    // somewhere else, and is a failure like any other signal.
    let err = bounded("last stage killed by SIGPIPE", || {
        P::shell("echo before; kill -PIPE $$").run()
    })
    .unwrap_err();
    assert_eq!(
        err.process().unwrap().failure,
        Failure::Signal(libc::SIGPIPE)
    );
    let err = bounded("same, through a closure", || {
        (P::shell("echo x") | P::shell("cat; kill -PIPE $$") | (|_: &[u8]| {})).run()
    })
    .unwrap_err();
    assert_eq!(err.process().unwrap().stage, 1);

    // Upstream of a process that stopped reading, it is still no failure.
    let out = bounded("yes | head", || {
        (P::argv(["yes"]) | (|_: &[u8]| {}) | P::argv(["head", "-c", "3"])).run()
    })
    .unwrap();
    assert_eq!(out.stdout, b"y\ny");
}

#[test]
fn captured_stderr_keeps_a_bounded_tail() {
    let out = bounded("10 MB of stderr", || {
        P::shell("head -c 10000000 /dev/zero | tr '\\0' x >&2; echo >&2; echo the end >&2")
            .capture_stderr()
            .run()
    })
    .unwrap();
    assert!(
        out.stderr.len() <= 64 * 1024,
        "{} bytes kept",
        out.stderr.len()
    );
    assert!(out.stderr.ends_with(b"x\nthe end\n"));

    let err = bounded("and its error", || {
        P::shell("head -c 10000000 /dev/zero | tr '\\0' x >&2; echo >&2; echo died >&2; exit 1")
            .capture_stderr()
            .run()
    })
    .unwrap_err();
    assert_eq!(err.process().unwrap().stderr_tail, "died");
}

#[test]
fn by_line_delivers_the_partial_last_line_before_the_error() {
    let items: Vec<Result<Vec<u8>, Error>> = bounded("partial line, then exit 2", || {
        P::shell("printf 'a\\nlast words'; exit 2")
            .by_line()
            .spawn()
            .unwrap()
            .collect()
    });
    assert_eq!(items.len(), 3, "{items:?}");
    assert_eq!(items[0].as_ref().unwrap(), b"a");
    assert_eq!(items[1].as_ref().unwrap(), b"last words");
    assert_eq!(
        items[2].as_ref().unwrap_err().process().unwrap().failure,
        Failure::Exit(2)
    );
}

/// Set in the copy of this test binary that runs on a terminal of its own.
const TTY_HELPER: &str = "FW_NBIO_TEST_TTY_HELPER";

#[test]
fn a_child_that_reads_the_terminal_is_not_stopped() {
    if std::env::var_os(TTY_HELPER).is_some() {
        // Here we lead a session whose controlling terminal is a pty, in its foreground
        // process group; the child runs in a process group of its own, the background.
        let result = P::shell("read line </dev/tty; echo read=$?")
            .timeout(Duration::from_secs(20))
            .run_text();
        println!("RESULT {result:?}");
        return;
    }
    let pty = nix::pty::openpty(None, None).unwrap();
    let exe = std::env::current_exe().unwrap();
    let out = bounded("a child reading its terminal", move || {
        Command::new("setsid")
            .args(["--ctty", "--wait"])
            .arg(exe)
            .args([
                "--exact",
                "a_child_that_reads_the_terminal_is_not_stopped",
                "--nocapture",
            ])
            .env(TTY_HELPER, "1")
            .stdin(std::fs::File::from(pty.slave))
            .output()
            .unwrap()
    });
    let stdout = String::from_utf8_lossy(&out.stdout);
    let result = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("no result from the helper: {stdout}"));
    // The read fails (EIO) at once instead of stopping the child on SIGTTIN.
    assert!(
        result.starts_with("Ok(\"read=") && !result.starts_with("Ok(\"read=0"),
        "{result}"
    );
    let mut master = std::fs::File::from(pty.master);
    let _ = nix::fcntl::fcntl(
        &master,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    );
    let _ = master.read(&mut [0u8; 64]);
}
