//! Pipes that deadlock when data is moved naively. Each is bounded by `common::HANG`.

mod common;

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    thread,
    time::Duration,
};

use common::bounded;
use fw_nbio::{Failure, Process as P, Source};

const MIB: usize = 1 << 20;

#[test]
fn child_fills_stderr_while_its_stdin_is_full() {
    // It writes 1 MiB to stderr before reading any of its 4 MiB of input: stderr must be
    // drained while stdin is being fed.
    let out = bounded("stderr flood", || {
        (vec![b'x'; 4 * MIB] | P::shell("head -c 1048576 /dev/zero >&2; cat").capture_stderr())
            .run()
    })
    .unwrap();
    // Its stderr was all read; the last 64 KiB of it are kept.
    assert_eq!((out.stdout.len(), out.stderr.len()), (4 * MIB, 64 * 1024));
}

#[test]
fn stderr_flood_between_a_closure_and_a_process() {
    let out = bounded("stderr flood after closure", || {
        (P::shell("head -c 4194304 /dev/zero")
            | (|_: &[u8]| {})
            | P::shell("head -c 1048576 /dev/zero >&2; wc -c").capture_stderr())
        .run_text()
    });
    assert_eq!(out.unwrap().trim(), (4 * MIB).to_string());
}

#[test]
fn consumer_slower_than_producer() {
    // The caller takes its time over each chunk; the producer must simply wait.
    let total = bounded("slow iterator", || {
        let mut total = 0;
        for chunk in P::shell("head -c 8388608 /dev/zero") {
            total += chunk.unwrap().len();
            thread::sleep(Duration::from_micros(200));
        }
        total
    });
    assert_eq!(total, 8 * MIB);

    // A slow closure between two processes.
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    let out = bounded("slow closure", move || {
        (P::shell("head -c 8388608 /dev/zero")
            | (move |chunk: &[u8]| {
                counter.fetch_add(chunk.len(), Ordering::Relaxed);
                thread::sleep(Duration::from_micros(200));
            })
            | P::shell("wc -c"))
        .run_text()
    });
    assert_eq!(out.unwrap().trim(), (8 * MIB).to_string());
    assert_eq!(seen.load(Ordering::Relaxed), 8 * MIB);
}

#[test]
fn process_never_reads_its_stdin() {
    let out = bounded("bytes | echo", || {
        (vec![0u8; 16 * MIB] | P::shell("echo done")).run_text()
    });
    assert_eq!(out.unwrap(), "done\n");

    // An endless generator: its feeder stops when the reader is gone.
    let out = bounded("endless | echo", || {
        (Source::chunks(std::iter::repeat([b'y'; 4096])) | P::shell("echo done")).run_text()
    });
    assert_eq!(out.unwrap(), "done\n");

    // Through a closure the parent pumps: it must notice the reader is gone even when it
    // has nothing to write, and close, so `yes` gets its SIGPIPE.
    let out = bounded("yes | closure | true", || {
        (P::argv(["yes"]) | (|_: &[u8]| {}) | P::argv(["true"])).run()
    });
    assert!(out.unwrap().stdout.is_empty());
}

#[test]
fn early_exit_downstream_is_not_an_upstream_failure() {
    let out = bounded("yes | head", || {
        (P::argv(["yes"]) | P::argv(["head", "-c", "5"])).run_text()
    });
    assert_eq!(out.unwrap(), "y\ny\ny");
    let out = bounded("seq | head -n1", || {
        (P::argv(["seq", "1", "1000000"]) | (|_: &[u8]| {}) | P::argv(["head", "-n", "1"]))
            .run_text()
    });
    assert_eq!(out.unwrap(), "1\n");
}

#[test]
fn later_stage_failing_first_is_the_reported_cause() {
    // `yes` dies of SIGPIPE because stage 1 failed: stage 1 is the failure reported.
    for with_closure in [false, true] {
        let err = bounded("yes | exit 3", move || {
            let pipe = P::argv(["yes"]);
            let pipe = if with_closure {
                pipe.tap(|_| {})
            } else {
                pipe.into()
            };
            (pipe | P::shell("head -c 10 >/dev/null; echo bad input >&2; exit 3").capture_stderr())
                .run()
        })
        .unwrap_err();
        let failed = err.process().unwrap_or_else(|| panic!("{err}"));
        assert_eq!(
            (failed.stage, &failed.failure),
            (1, &Failure::Exit(3)),
            "{err}"
        );
        assert_eq!(failed.stderr_tail, "bad input");
    }
}

#[test]
fn upstream_failure_is_the_cause_of_a_downstream_one() {
    // The consumer fails because its input is cut short; the producer failed first.
    let err = bounded("exit 2 | exit 5", || {
        (P::shell("printf partial; exit 2") | P::shell("cat >/dev/null; exit 5")).run()
    })
    .unwrap_err();
    let failed = err.process().unwrap();
    assert_eq!(
        (failed.stage, &failed.failure),
        (0, &Failure::Exit(2)),
        "{err}"
    );
}

#[test]
fn source_error_kills_the_reader_before_it_sees_eof() {
    // A reader that fails midway must not look like a short, complete input downstream:
    // the shell would write the marker on EOF.
    struct Failing(usize);
    impl std::io::Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0 == 0 {
                return Err(std::io::Error::other("connection reset"));
            }
            let n = buf.len().min(self.0);
            buf[..n].fill(b'z');
            self.0 -= n;
            Ok(n)
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("saw-eof");
    let script = format!("cat >/dev/null; touch {}", marker.display());
    let err = bounded("failing reader | sh", move || {
        (Source::reader(Failing(100_000)) | P::shell(script)).run()
    })
    .unwrap_err();
    assert!(matches!(err, fw_nbio::Error::Source(_)), "{err}");
    assert!(err.to_string().contains("connection reset"));
    assert!(!marker.exists(), "the reader saw a clean EOF");
}

#[test]
fn panicking_source_is_a_failure_not_an_eof() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("saw-eof");
    let script = format!("cat >/dev/null; touch {}", marker.display());
    let chunks = (0..3).map(|i| {
        if i < 2 {
            vec![b'a'; 1000]
        } else {
            panic!("generator broke")
        }
    });
    let err = bounded("panicking generator | sh", move || {
        (Source::chunks(chunks) | P::shell(script)).run()
    })
    .unwrap_err();
    assert!(err.to_string().contains("panicked"), "{err}");
    assert!(!marker.exists(), "the reader saw a clean EOF");
}
