//! The examples of Fussy's manual, section 4.5, translated.

mod common;

use std::{
    io::Write,
    process::{Command, Stdio},
    sync::{Arc, Mutex},
};

use common::bounded;
use fw_nbio::{Pipe, Process as P, Source};

#[test]
fn echo() {
    let out = bounded("echo", || P::shell(r#"echo "Hello world""#).run_text());
    assert_eq!(out.unwrap(), "Hello world\n");
}

#[test]
fn echo_into_cat() {
    let out = bounded("echo | cat", || {
        (P::shell(r#"echo "Hello world""#) | P::shell("cat")).run_text()
    });
    assert_eq!(out.unwrap(), "Hello world\n");
}

#[test]
fn generator_into_cat() {
    let out = bounded("gen() | cat", || {
        let generator = (0..20).map(|i| i.to_string());
        (Source::chunks(generator) | P::shell("cat")).run_text()
    });
    assert_eq!(out.unwrap(), "012345678910111213141516171819");
}

#[test]
fn pipe_into_closure_output_still_returned() {
    let result = Arc::new(Mutex::new(Vec::<Vec<u8>>::new()));
    let seen = result.clone();
    let out = bounded("echo | closure", move || {
        (P::shell(r#"echo "Hello world""#)
            | (move |chunk: &[u8]| seen.lock().unwrap().push(chunk.to_vec())))
        .run_text()
    });
    assert_eq!(out.unwrap(), "Hello world\n");
    assert_eq!(*result.lock().unwrap(), [b"Hello world\n".to_vec()]);
}

/// Runs only when re-executed by `pipe_to_our_stdout` (our stdout is then its pipe).
#[test]
fn pipe_to_our_stdout_child() {
    if std::env::var_os("FW_NBIO_STDOUT_CHILD").is_none() {
        return;
    }
    let out = (P::shell(r#"echo "Hello world""#) | std::io::stdout())
        .run()
        .unwrap();
    assert!(
        out.stdout.is_empty(),
        "output went to stdout, not into the result"
    );
    // And through a closure first, so it is copied by us rather than inherited.
    let out = (P::shell("echo second") | (|_: &[u8]| {}) | std::io::stdout())
        .run()
        .unwrap();
    assert!(out.stdout.is_empty());
}

#[test]
fn pipe_to_our_stdout() {
    let child = bounded("re-exec", || {
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "pipe_to_our_stdout_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("FW_NBIO_STDOUT_CHILD", "1")
            .stderr(Stdio::inherit())
            .output()
            .unwrap()
    });
    let stdout = String::from_utf8_lossy(&child.stdout);
    assert!(child.status.success(), "{stdout}");
    assert!(stdout.contains("Hello world\n"), "{stdout}");
    assert!(stdout.contains("second\n"), "{stdout}");
}

#[test]
fn iterator_of_chunks_through_gzip() {
    let out = bounded("chunks | gzip -c", || {
        let chunks = (0..1000).map(|i| format!("chunk {i}\n").into_bytes());
        (Source::chunks(chunks) | P::shell("gzip -c")).run()
    })
    .unwrap();
    assert!(
        out.stdout.starts_with(&[0x1f, 0x8b]),
        "{:02x?}",
        &out.stdout[..4]
    );
    let back = bounded("gunzip", move || {
        (out.stdout | P::argv(["gzip", "-dc"])).run_text()
    });
    assert!(back.unwrap().ends_with("chunk 999\n"));
}

#[test]
fn from_file_and_to_file() {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("in"), dir.path().join("out.gz"));
    std::fs::write(&input, "blue\nred\nblue sky\n").unwrap();
    let (i, o) = (input.clone(), output.clone());
    let out = bounded("< in grep | gzip > out", move || {
        (P::argv(["grep", "blue"]) | P::shell("gzip -c"))
            .from_file(i)
            .to_file(o)
            .run()
    });
    assert!(out.unwrap().stdout.is_empty());
    let text = bounded("gunzip", move || {
        P::argv(["gzip", "-dc"]).from_file(output).run_text()
    });
    assert_eq!(text.unwrap(), "blue\nblue sky\n");
}

#[test]
fn open_files_and_child_stdout_as_source_and_sink() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    std::fs::File::create(&path)
        .unwrap()
        .write_all(b"from a file\n")
        .unwrap();
    let file = std::fs::File::open(&path).unwrap();
    assert_eq!(
        bounded("file | cat", || (file | P::shell("cat")).run_text()).unwrap(),
        "from a file\n"
    );

    // A `curl` stand-in: another program's stdout feeds the pipe directly.
    let mut producer = Command::new("printf")
        .arg("from a child")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = producer.stdout.take().unwrap();
    let out = bounded("child | tr", || {
        (stdout | P::argv(["tr", "a-z", "A-Z"])).run_text()
    });
    assert_eq!(out.unwrap(), "FROM A CHILD");
    assert!(producer.wait().unwrap().success());

    let sink = std::fs::File::create(dir.path().join("g")).unwrap();
    let out = bounded("echo > file", || (P::shell("echo to a file") | sink).run()).unwrap();
    assert!(out.stdout.is_empty());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("g")).unwrap(),
        "to a file\n"
    );
}

#[test]
fn sources_of_every_kind() {
    assert_eq!(
        bounded("str", || ("a str" | P::shell("cat")).run_text()).unwrap(),
        "a str"
    );
    assert_eq!(
        bounded("String", || (String::from("s") | P::shell("cat"))
            .run_text())
        .unwrap(),
        "s"
    );
    assert_eq!(
        bounded("bytes", || (b"b" | P::shell("cat")).run_text()).unwrap(),
        "b"
    );
    assert_eq!(
        bounded("Vec", || (vec![b'v'] | P::shell("cat")).run_text()).unwrap(),
        "v"
    );
    let reader = std::io::Cursor::new(b"read".to_vec());
    assert_eq!(
        bounded("reader", || (Source::reader(reader) | P::shell("cat"))
            .run_text())
        .unwrap(),
        "read"
    );
    // No process at all: a closure between a source and the collected output.
    let out = bounded("source | closure", || {
        (Pipe::from_source("x\ny") | (|_: &[u8]| {})).run_text()
    });
    assert_eq!(out.unwrap(), "x\ny");
}

#[test]
fn writer_sink_and_merged_stderr() {
    let buf = Arc::new(Mutex::new(Vec::new()));
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let sink = fw_nbio::Sink::writer(Shared(buf.clone()));
    let out = bounded("merge | writer", || {
        (P::shell("echo out; echo err >&2").merge_stderr() | sink).run()
    });
    assert!(out.unwrap().stdout.is_empty());
    let written = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
    assert!(
        written.contains("out\n") && written.contains("err\n"),
        "{written}"
    );
}
