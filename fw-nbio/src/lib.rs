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
//! feeder thread each, the rest on the calling thread in one `poll(2)` loop over
//! non-blocking fds. Every process's stderr that is captured is drained as it comes, so
//! no process can stall a pipe by filling a pipe nobody reads.
//!
//! How failures are reported: the first one, the one that set off the others. A process
//! killed by `SIGPIPE` because a later stage stopped reading is never that cause; the
//! later stage's own exit decides. Then every process group still running is killed
//! and every child reaped before the error is returned.
//!
//! Each process runs in a process group of its own (so a timeout kills what it started
//! too); as a consequence it is not in the terminal's foreground group and does not get
//! the terminal's Ctrl-C itself.

mod engine;
mod error;
mod pipe;
mod process;
mod running;
mod sys;

pub use error::{Error, Failure, ProcessError};
pub use pipe::{Pipe, Sink, Source};
pub use process::Process;
pub use running::{Killer, Output, Running};
