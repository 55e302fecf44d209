//! Non-blocking process pipelines, after Fussy's `nbio`: compose processes, Rust data and
//! Rust closures with `|`, run them all in parallel, and get the output back, or iterate
//! it as it is produced.
//!
//! ```
//! use fw_nbio::{Failure, Process as P, Source};
//!
//! // A shell command line, an argv, text in, text out.
//! let out = ("hello world\n" | P::shell("cat") | P::argv(["tr", "a-z", "A-Z"])).run_text()?;
//! assert_eq!(out, "HELLO WORLD\n");
//!
//! // Chunks from an iterator, through gzip and back, watched by a closure on the way.
//! let (tx, rx) = std::sync::mpsc::channel();
//! let pipe = Source::chunks((0..20).map(|i| i.to_string()))
//!     | P::shell("gzip -c")
//!     | (move |chunk: &[u8]| tx.send(chunk.to_vec()).unwrap())
//!     | P::argv(["gzip", "-dc"]);
//! assert_eq!(pipe.run_text()?, "012345678910111213141516171819");
//! assert!(rx.iter().flatten().collect::<Vec<u8>>().starts_with(&[0x1f, 0x8b]));
//!
//! // A failure names the process, its status and the end of its stderr.
//! let err = P::shell("echo oops >&2; exit 3").capture_stderr().run().unwrap_err();
//! let failed = err.process().unwrap();
//! assert_eq!((&failed.failure, failed.stderr_tail.as_str()), (&Failure::Exit(3), "oops"));
//!
//! // Hooks: environment, working directory, a timeout that kills the process group.
//! let out = P::argv(["sh", "-c", "echo $FW_HOOK in $(pwd)"])
//!     .env("FW_HOOK", "pre-install")
//!     .current_dir("/")
//!     .timeout(std::time::Duration::from_secs(30))
//!     .capture_stderr()
//!     .run()?;
//! assert_eq!(out.text(), "pre-install in /\n");
//! # Ok::<(), fw_nbio::Error>(())
//! ```
//!
//! How data moves: adjacent processes share an OS pipe, so their data never passes
//! through us. We copy only where Rust stands in the stream (a [`Source`] of bytes, an
//! iterator or a reader, a closure, the collected output, a [`Sink`] writer): sources on a
//! feeder thread each, sink writers on a thread of their own, the rest on the calling
//! thread in one `poll(2)` loop over non-blocking fds, which never blocks on anything
//! else, so timeouts and kills fire whatever a writer does. Every process's stderr that is
//! captured is drained as it comes (keeping its last 64 KiB), so no process can stall a
//! pipe by filling a pipe nobody reads.
//!
//! How failures are reported: the first one, the one that set off the others. A process
//! killed by `SIGPIPE` because a later process stopped reading is never that cause; the
//! later process's own exit decides (our own reading never stops early, so a last
//! process killed by `SIGPIPE` did fail). A process may name the exits by which it says
//! its input never came ([`Process::no_input_exit`], fw's exit 9): such an exit is judged
//! only after every process before it has exited, so the failure that caused it is the
//! one reported. Then every process group still running gets
//! SIGTERM, and SIGKILL two seconds later if it is still there, and every child is
//! reaped before the error is returned; the same happens when a [`Running`] is dropped
//! before its end. [`Pipe::run_unchecked`] returns a failed process as an outcome
//! instead, with the output that came before it.
//!
//! Each process runs in a process group of its own (so a timeout kills what it started
//! too). A child is reaped only when the pipe is done, so the id of a group we may still
//! signal always names our own. As a consequence it is not in the terminal's foreground
//! group: it does not get the terminal's Ctrl-C itself, and reading the terminal fails
//! (EIO) rather than stopping it. [`Process::die_with_parent`] has it killed if we die.
//!
//! The children's exit statuses must reach us: a program that ignores SIGCHLD (so the
//! kernel reaps its children) gets an error from every pipe; [`reset_sigchld`] at the
//! start of its `main` fixes that.

mod engine;
mod error;
mod lines;
mod pipe;
mod process;
mod running;
mod sink;
mod source;
mod sys;

pub use error::{Error, Failure, ProcessError};
pub use lines::Lines;
pub use pipe::Pipe;
pub use process::Process;
pub use running::{Killer, Output, Running};
pub use sink::Sink;
pub use source::Source;

/// Give SIGCHLD its default disposition, for a program that may have inherited it
/// ignored (an ignored signal stays ignored across `exec`): with SIGCHLD ignored the
/// kernel reaps children at once and their exit statuses are lost, so every pipe fails.
/// Call it at the start of `main`; a library has no business changing it for its host.
pub fn reset_sigchld() {
    sys::reset_sigchld();
}
