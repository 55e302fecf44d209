//! Rust sources (bytes, iterators, readers) are written into the pipe by a feeder thread
//! each, since iterators and readers may block.

use std::{
    fs::File,
    io::{self, Write},
    os::fd::OwnedFd,
    panic::{self, AssertUnwindSafe},
    sync::{mpsc, Arc},
    thread,
};

use crate::{source::Feed, sys};

pub(super) struct Feeder {
    rx: mpsc::Receiver<FeedResult>,
    pub(super) done: bool,
}

/// A feeder's error comes with its write end, so the child sees no EOF (and cannot take
/// truncated input for complete) until we have killed it.
type FeedResult = Result<(), (io::Error, OwnedFd)>;

/// What a feeder came to, when it has come to something.
pub(super) enum Fed {
    Running,
    Done,
    /// Its error, and the write end to close once the reader is killed.
    Failed(io::Error, Option<OwnedFd>),
}

impl Feeder {
    /// Run `feed` on a thread writing into `w`.
    pub(super) fn start(feed: Feed, w: OwnedFd, wake: Arc<OwnedFd>) -> io::Result<Feeder> {
        let (tx, rx) = mpsc::channel();
        thread::Builder::new()
            .name("fw-nbio-feed".into())
            .spawn(move || {
                sys::block_sigpipe_for_thread();
                let _wake = sys::WakeOnDrop(wake);
                let mut out = FeedWriter {
                    file: File::from(w),
                    reader_gone: false,
                };
                // A panicking source is a failed one: its reader must not see a clean EOF.
                let fed = panic::catch_unwind(AssertUnwindSafe(|| feed(&mut out)))
                    .unwrap_or_else(|_| Err(io::Error::other("the input source panicked")));
                let result = match fed {
                    // Downstream stopped reading: not our failure (nor anyone's, by itself).
                    Err(_) if out.reader_gone => Ok(()),
                    Err(e) => Err((e, OwnedFd::from(out.file))),
                    Ok(()) => {
                        drop(out); // EOF for the reader before we report
                        Ok(())
                    }
                };
                let _ = tx.send(result);
            })?;
        Ok(Feeder { rx, done: false })
    }

    pub(super) fn check(&mut self) -> Fed {
        if self.done {
            return Fed::Done;
        }
        let fed = match self.rx.try_recv() {
            Ok(Ok(())) => Fed::Done,
            Ok(Err((e, write_end))) => Fed::Failed(e, Some(write_end)),
            Err(mpsc::TryRecvError::Empty) => return Fed::Running,
            Err(mpsc::TryRecvError::Disconnected) => {
                Fed::Failed(io::Error::other("the input feeder died"), None)
            }
        };
        self.done = true;
        fed
    }
}

/// The feeder's end of a pipe; notes whether a write failed because the reader went away.
struct FeedWriter {
    file: File,
    reader_gone: bool,
}

impl Write for FeedWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf).inspect_err(|e| {
            self.reader_gone |= e.kind() == io::ErrorKind::BrokenPipe;
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

pub(super) fn reader_feed(mut reader: impl io::Read + Send + 'static) -> Feed {
    Box::new(move |w| io::copy(&mut reader, w).map(drop))
}
