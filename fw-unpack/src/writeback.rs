//! Early writeback of the files written (see [`Writeback`]).

use std::fs::File;

/// Starts writing each finished file's pages to disk, in a thread of its
/// own, so that fw-fixate's syncfs finds most of the tree already written
/// instead of paying for all of it after the unpack (on ext4 this is also
/// when blocks are allocated: work taken off the extracting thread). Only
/// a hint: errors are ignored, syncfs reports them.
pub(crate) struct Writeback {
    files: Option<std::sync::mpsc::SyncSender<File>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writeback {
    pub(crate) fn start() -> Writeback {
        let (tx, rx) = std::sync::mpsc::sync_channel::<File>(256);
        let thread = std::thread::Builder::new()
            .name("fw-writeback".into())
            .spawn(move || {
                use std::os::fd::AsRawFd;
                for file in rx {
                    // SAFETY: a plain syscall on a descriptor we own; no memory
                    // is passed.
                    unsafe {
                        nix::libc::sync_file_range(
                            file.as_raw_fd(),
                            0,
                            0,
                            nix::libc::SYNC_FILE_RANGE_WRITE,
                        );
                    }
                }
            });
        Writeback {
            files: Some(tx),
            thread: thread.ok(),
        }
    }

    pub(crate) fn push(&self, file: File) {
        if let Some(files) = &self.files {
            let _ = files.send(file);
        }
    }
}

impl Drop for Writeback {
    fn drop(&mut self) {
        self.files.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
