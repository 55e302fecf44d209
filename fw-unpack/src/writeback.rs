//! Early writeback of the files written (see [`Writeback`]).

use std::fs::File;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// Files handed over before the thread is woken: waking it for each file
/// cost more than the hint saves on small files.
const WAKE_AT: usize = 32;
/// Files (open descriptors) waiting, at most.
const MAX_WAITING: usize = 256;
/// The smallest file whose pages are dropped once written: waiting for
/// each tiny file's write is a wait per file for little memory, and it
/// showed when the disk was busy with other work (35,000 one-line files:
/// fw-unpack 4.4–5.8 s keeping their pages, 5.3–6.1 s dropping them, the
/// test suite running beside it; on an idle machine 1.15–1.29 s either
/// way). Files of 64 KiB or more are 16% of the debootstrap tree's files
/// and 82% of its bytes.
const DROP_AT: u64 = 64 << 10;

/// Starts writing each finished file's pages to disk, in a thread of its
/// own, so that fw-fixate's syncfs finds most of the tree already written
/// instead of paying for all of it after the unpack (on ext4 this is also
/// when blocks are allocated: work taken off the writing threads). Only
/// a hint: errors are ignored, syncfs reports them.
///
/// Once a file of [`DROP_AT`] bytes or more is on disk its pages leave
/// the page cache (`POSIX_FADV_DONTNEED`): nothing reads a new version
/// before it boots, and a device's memory is mostly page cache already,
/// so every page a large install leaves cached must be reclaimed from
/// the device's running programs, and every page it writes waits for one
/// to be reclaimed. Dropping its own pages lets fw-unpack reuse them.
/// Measured here on a fresh install of the debootstrap tree (650 MB; 24
/// GiB of memory, 22 GiB of it page cache; 4 alternating runs, every
/// file dropped): fw-unpack 1.9–2.6 s with 1.0–1.2 s of system time,
/// against 2.5–5.3 s and 2.4–3.7 s keeping them; dropping only files of
/// 64 KiB or more measured the same (2.04–2.28 s against 1.86–3.37 s).
pub(crate) struct Writeback {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    /// Files to write, or the end: for the thread.
    work: Condvar,
    /// Room: for those handing files over.
    room: Condvar,
}

#[derive(Default)]
struct State {
    files: Vec<File>,
    asleep: bool,
    full: bool,
    closed: bool,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Writeback {
    pub(crate) fn start() -> Writeback {
        let shared = Arc::new(Shared::default());
        let worker = shared.clone();
        let thread = std::thread::Builder::new()
            .name("fw-writeback".into())
            .spawn(move || run(&worker));
        Writeback {
            shared,
            thread: thread.ok(),
        }
    }

    pub(crate) fn push(&self, file: File) {
        if self.thread.is_none() {
            return;
        }
        let mut state = self.shared.state();
        while state.files.len() >= MAX_WAITING && !state.closed {
            state.full = true;
            self.shared.work.notify_one();
            state = self
                .shared
                .room
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
        }
        state.files.push(file);
        if state.asleep && state.files.len() >= WAKE_AT {
            self.shared.work.notify_one();
        }
    }
}

fn run(shared: &Shared) {
    loop {
        let files = {
            let mut state = shared.state();
            while state.files.is_empty() && !state.closed {
                state.asleep = true;
                state = shared.work.wait(state).unwrap_or_else(|e| e.into_inner());
                state.asleep = false;
            }
            if state.files.is_empty() {
                return;
            }
            if std::mem::take(&mut state.full) {
                shared.room.notify_all();
            }
            std::mem::take(&mut state.files)
        };
        // Start writing the whole batch, then wait for each file of
        // DROP_AT bytes or more and drop its pages from the page cache.
        for file in &files {
            sync_file_range(file, nix::libc::SYNC_FILE_RANGE_WRITE);
        }
        for file in &files {
            if file.metadata().map_or(true, |meta| meta.len() < DROP_AT) {
                continue;
            }
            sync_file_range(
                file,
                nix::libc::SYNC_FILE_RANGE_WAIT_BEFORE
                    | nix::libc::SYNC_FILE_RANGE_WRITE
                    | nix::libc::SYNC_FILE_RANGE_WAIT_AFTER,
            );
            let _ = nix::fcntl::posix_fadvise(
                file,
                0,
                0,
                nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
            );
        }
    }
}

fn sync_file_range(file: &File, flags: u32) {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain syscall on a descriptor we own; no memory is
    // passed. Errors are ignored: a hint (syncfs reports them).
    unsafe {
        nix::libc::sync_file_range(file.as_raw_fd(), 0, 0, flags);
    }
}

impl Drop for Writeback {
    fn drop(&mut self) {
        self.shared.state().closed = true;
        self.shared.work.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
