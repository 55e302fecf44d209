//! A sink writer ([`Sink::writer`](crate::Sink::writer), our stdout or stderr when a
//! closure stands last, [`Sink::lines`](crate::Sink::lines)) runs on a thread of its own:
//! a write can block for good (a stderr nobody reads), and the poll loop must go on
//! timing out and killing whatever happens to it.
//!
//! Chunks go through a bounded channel; when it is full the pump stops reading, and the
//! processes upstream wait, as they would on a slow pipe. A writer still blocked when a
//! failed pipe has finished is left behind on its thread.

use std::{
    io::{self, Write},
    os::fd::OwnedFd,
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc,
    },
    thread,
};

use crate::sys;

/// Chunks queued for the writer (up to a pump's burst of 64 KiB chunks).
const QUEUE: usize = 16;

pub(super) struct SinkThread {
    /// `None` once closed: the thread then flushes and ends.
    tx: Option<mpsc::SyncSender<Vec<u8>>>,
    /// Set when a chunk found the queue full: the thread wakes the engine when it takes one.
    want_wake: Arc<AtomicBool>,
    result: mpsc::Receiver<io::Result<()>>,
    finished: bool,
}

/// What became of a chunk handed to [`SinkThread::send`].
pub(super) enum Sent {
    Yes,
    /// No room now; try again when woken.
    Full(Vec<u8>),
    /// The writer failed; its error comes from [`SinkThread::outcome`].
    Gone,
}

impl SinkThread {
    pub(super) fn start(mut writer: Box<dyn Write + Send>, wake: Arc<OwnedFd>) -> io::Result<Self> {
        let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(QUEUE);
        let (result_tx, result) = mpsc::channel();
        let want_wake = Arc::new(AtomicBool::new(false));
        let wanted = want_wake.clone();
        thread::Builder::new()
            .name("fw-nbio-sink".into())
            .spawn(move || {
                sys::block_sigpipe_for_thread();
                let _wake = sys::WakeOnDrop(wake.clone());
                let written = (|| {
                    for chunk in rx {
                        writer.write_all(&chunk)?;
                        if wanted.swap(false, Ordering::SeqCst) {
                            sys::wake(&wake);
                        }
                    }
                    writer.flush()
                })();
                // Dropped before reporting: a writer may still write on drop (`Lines`
                // passes on a last line without `\n`).
                drop(writer);
                let _ = result_tx.send(written);
            })?;
        Ok(SinkThread {
            tx: Some(tx),
            want_wake,
            result,
            finished: false,
        })
    }

    pub(super) fn send(&mut self, chunk: Vec<u8>) -> Sent {
        let Some(tx) = &self.tx else {
            return Sent::Gone;
        };
        match tx.try_send(chunk) {
            Ok(()) => Sent::Yes,
            Err(mpsc::TrySendError::Full(chunk)) => {
                self.want_wake.store(true, Ordering::SeqCst);
                // The thread may have taken a chunk between the two: try once more.
                match tx.try_send(chunk) {
                    Ok(()) => Sent::Yes,
                    Err(mpsc::TrySendError::Full(chunk)) => Sent::Full(chunk),
                    Err(mpsc::TrySendError::Disconnected(_)) => Sent::Gone,
                }
            }
            Err(mpsc::TrySendError::Disconnected(_)) => Sent::Gone,
        }
    }

    /// No more data: the thread flushes the writer and ends.
    pub(super) fn close(&mut self) {
        self.tx = None;
    }

    pub(super) fn is_closed(&self) -> bool {
        self.tx.is_none()
    }

    pub(super) fn is_finished(&self) -> bool {
        self.finished
    }

    /// The thread's error, once it has reported one.
    pub(super) fn outcome(&mut self) -> Option<io::Error> {
        if self.finished {
            return None;
        }
        match self.result.try_recv() {
            Ok(Ok(())) => {
                self.finished = true;
                None
            }
            Ok(Err(e)) => {
                self.finished = true;
                Some(e)
            }
            Err(mpsc::TryRecvError::Empty) => None,
            Err(mpsc::TryRecvError::Disconnected) => {
                self.finished = true;
                Some(io::Error::other("the output writer panicked"))
            }
        }
    }
}
