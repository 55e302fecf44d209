//! The worker threads that compress ([`crate::GzWriter`]) and inflate
//! ([`crate::GzReader`]) members, and how many there are.

use std::io;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// One inflating thread per core (at most 16).
pub fn threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 16)
}

type Job = Box<dyn FnOnce() + Send>;

/// A few worker threads taking jobs off one queue; they exit when the
/// pool is dropped.
pub(crate) struct Pool {
    jobs: Option<SyncSender<Job>>,
    workers: Vec<JoinHandle<()>>,
}

impl Pool {
    pub(crate) fn new(size: usize) -> Pool {
        // The callers bound what is in flight; the queue only must not block them.
        let (tx, rx) = mpsc::sync_channel::<Job>(1024);
        let rx = Arc::new(Mutex::new(rx));
        let workers = (0..size)
            .map(|_| {
                let rx = Arc::clone(&rx);
                // Named, for profilers and `top -H`.
                std::thread::Builder::new()
                    .name("fw-gz".into())
                    .spawn(move || loop {
                        let job = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    })
                    .expect("a worker thread starts")
            })
            .collect();
        Pool {
            jobs: Some(tx),
            workers,
        }
    }

    /// Runs `work` on a worker; its result arrives on the receiver.
    pub(crate) fn submit<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> io::Result<Receiver<T>> {
        let (tx, rx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move || {
            let _ = tx.send(work());
        });
        self.jobs
            .as_ref()
            .expect("the pool is open until dropped")
            .send(job)
            .map_err(|_| io::Error::other("the gzip worker threads are gone"))?;
        Ok(rx)
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.jobs.take();
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}
