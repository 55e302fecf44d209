//! A process's captured stderr: drained as it comes (so no process stalls on a full
//! stderr pipe), keeping only its last [`STDERR_KEEP`] bytes, which is all an error
//! quotes and all [`Output::stderr`](crate::Output::stderr) returns.

use std::os::fd::OwnedFd;

use crate::sys::{self, Io};

/// How much of a process's stderr is kept: its end.
pub(super) const STDERR_KEEP: usize = 64 * 1024;

pub(super) struct Capture {
    /// The read end; `None` once at its end.
    pub(super) fd: Option<OwnedFd>,
    buf: Vec<u8>,
}

impl Capture {
    pub(super) fn new(fd: OwnedFd) -> Self {
        Capture {
            fd: Some(fd),
            buf: Vec::new(),
        }
    }

    /// Read what is there without blocking.
    pub(super) fn read(&mut self) {
        let Some(fd) = &self.fd else { return };
        let mut chunk = [0u8; 8192];
        loop {
            match sys::read(fd, &mut chunk) {
                Ok(Io::Done(0)) | Err(_) => {
                    self.fd = None;
                    return;
                }
                Ok(Io::Done(n)) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    // Dropping the front only now and then keeps this linear.
                    if self.buf.len() >= 2 * STDERR_KEEP {
                        self.buf.drain(..self.buf.len() - STDERR_KEEP);
                    }
                }
                Ok(Io::WouldBlock) => return,
            }
        }
    }

    /// The last [`STDERR_KEEP`] bytes.
    pub(super) fn tail(&self) -> &[u8] {
        &self.buf[self.buf.len().saturating_sub(STDERR_KEEP)..]
    }
}
