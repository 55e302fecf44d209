//! Writing regular files: the system calls of one file (exclusive create,
//! data, owner, mode, attributes, times), its record as proven, and its
//! early writeback ([`Files`]); small files on writer threads of their
//! own ([`Writers`]).
//!
//! Why threads: on a root filesystem (median file 14 KB) creating and
//! writing files was 1.0 s of the extracting thread's 1.4 s of CPU in a
//! fresh install of the debootstrap pair (perf), and that thread is the
//! one the pipeline waits for, while the two cores were 70% busy. Every
//! check stays on the extracting thread; a writer only creates what the
//! extractor already checked, hashes it against the signed manifest and
//! reports the first failure in archive order, as if written in turn.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};

use nix::sys::time::TimeSpec;

use fw_core::target::SharedFiles;
use fw_core::{xattrs, Error, Result};

use crate::staging::Cleanup;
use crate::writeback::Writeback;

/// Files at most this large are handed to a writer thread (their bytes
/// read into memory first); larger ones are streamed by the extractor.
pub(crate) const SMALL: u64 = 256 << 10;
/// Bytes of small files waiting for a writer, at most.
const QUEUED_BYTES: usize = 4 << 20;
const QUEUED_FILES: usize = 256;

pub(crate) fn timespec(secs: u64) -> TimeSpec {
    TimeSpec::new(secs.min(i64::MAX as u64) as i64, 0)
}

/// What a regular file gets after its data.
pub(crate) struct Finish {
    /// fchown to this (as root, when its creation did not give it).
    pub(crate) owner: Option<(u32, u32)>,
    /// fchmod to this (when its creation did not give it).
    pub(crate) mode: Option<u32>,
    pub(crate) xattrs: Option<Box<xattrs::Xattrs>>,
    pub(crate) mtime: u64,
    /// The signed manifest's BLAKE3 of the content, which the data was
    /// checked against: the file goes into the record of proven inodes.
    pub(crate) blake3: Option<String>,
}

/// A small file for a writer thread: everything checked but its content.
pub(crate) struct Job {
    /// Its place in the archive: the first failure in archive order is
    /// the one reported.
    pub(crate) seq: u64,
    pub(crate) display: String,
    pub(crate) path: PathBuf,
    pub(crate) create_mode: u32,
    pub(crate) data: Vec<u8>,
    pub(crate) finish: Finish,
}

/// Where files are written from: the cleanup lock, the record of proven
/// inodes and the writeback thread, shared by the extractor and writers.
pub(crate) struct Files<'a> {
    cleanup: &'a Cleanup,
    pub(crate) shared: &'a SharedFiles,
    writeback: Writeback,
}

impl<'a> Files<'a> {
    pub(crate) fn new(cleanup: &'a Cleanup, shared: &'a SharedFiles) -> Self {
        Files {
            cleanup,
            shared,
            writeback: Writeback::start(),
        }
    }

    pub(crate) fn cleanup(&self) -> &'a Cleanup {
        self.cleanup
    }

    /// Creates `path` with `mode`, never following or replacing anything.
    pub(crate) fn create(&self, path: &Path, mode: u32) -> Result<File> {
        let _lock = self.cleanup.lock();
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
            .open(path)
            .map_err(|e| Error::io(path.display(), e))
    }

    pub(crate) fn write(&self, file: &mut File, path: &Path, data: &[u8]) -> Result<()> {
        let _lock = self.cleanup.lock();
        file.write_all(data)
            .map_err(|e| Error::io(path.display(), e))
    }

    /// Owner, mode, attributes and mtime of a file whose data is written,
    /// then its record as proven and its writeback. The owner goes first:
    /// chown clears setuid and setgid bits, and a capability.
    pub(crate) fn finish(&self, file: File, path: &Path, finish: &Finish) -> Result<()> {
        let io = |e: io::Error| Error::io(path.display(), e);
        let _lock = self.cleanup.lock();
        if let Some((uid, gid)) = finish.owner {
            std::os::unix::fs::fchown(&file, Some(uid), Some(gid)).map_err(io)?;
        }
        if let Some(mode) = finish.mode {
            file.set_permissions(std::fs::Permissions::from_mode(mode))
                .map_err(io)?;
        }
        // After the mode: an ACL then keeps the group bits its mask gives.
        if let Some(xattrs) = &finish.xattrs {
            xattrs::apply_to_file(&file, xattrs).map_err(io)?;
        }
        let mtime = timespec(finish.mtime);
        nix::sys::stat::futimens(&file, &mtime, &mtime).map_err(|e| io(e.into()))?;
        if let (Some(blake3), Ok(meta)) = (&finish.blake3, file.metadata()) {
            self.shared.record().insert(&meta, blake3);
        }
        self.writeback.push(file);
        Ok(())
    }

    /// A writer thread's work: the content checked against the manifest,
    /// then the file created, written and finished.
    fn write_small(&self, job: &Job) -> Result<()> {
        if let Some(want) = &job.finish.blake3 {
            if blake3::hash(&job.data).to_hex().as_str() != want {
                return Err(tampered(&job.display));
            }
        }
        let mut file = self.create(&job.path, job.create_mode)?;
        self.write(&mut file, &job.path, &job.data)?;
        self.finish(file, &job.path, &job.finish)
    }
}

/// The error of content that differs from the signed manifest's BLAKE3.
pub(crate) fn tampered(display: &str) -> Error {
    Error::security(format!(
        "entry {display:?}: its content differs from the signed manifest's \
         BLAKE3: tampered with or damaged on the way; refusing the package"
    ))
}

/// Small files waiting for, or being written by, the writer threads.
/// Bounded ([`QUEUED_BYTES`]), so memory stays flat.
#[derive(Default)]
pub(crate) struct Writers {
    state: Mutex<State>,
    /// A job queued, or no more coming: for writers.
    work: Condvar,
    /// Room in the queue, or a job done: for the extractor.
    done: Condvar,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Job>,
    bytes: usize,
    busy: usize,
    closed: bool,
    /// The failure of the earliest job in archive order.
    failed: Option<(u64, Error)>,
}

impl Writers {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A writer thread: takes jobs until [`Writers::close`]. After a
    /// failure, later jobs are dropped unwritten.
    pub(crate) fn run(&self, files: &Files) {
        loop {
            let (job, skip) = {
                let mut state = self.state();
                loop {
                    if let Some(job) = state.queue.pop_front() {
                        state.bytes -= job.data.len();
                        state.busy += 1;
                        break (job, state.failed.is_some());
                    }
                    if state.closed {
                        return;
                    }
                    state = self.work.wait(state).unwrap_or_else(|e| e.into_inner());
                }
            };
            self.done.notify_all();
            let result = if skip {
                Ok(())
            } else {
                files.write_small(&job)
            };
            let mut state = self.state();
            state.busy -= 1;
            if let Err(e) = result {
                if state.failed.as_ref().is_none_or(|(seq, _)| job.seq < *seq) {
                    state.failed = Some((job.seq, e));
                }
            }
            drop(state);
            self.done.notify_all();
        }
    }

    /// Queues `job`, waiting for room; a writer's failure instead, once
    /// every job before it is done.
    pub(crate) fn submit(&self, job: Job) -> Result<()> {
        let mut state = self.state();
        loop {
            if state.failed.is_some() {
                drop(state);
                return self.wait_idle();
            }
            let fits =
                state.bytes + job.data.len() <= QUEUED_BYTES && state.queue.len() < QUEUED_FILES;
            if fits || state.queue.is_empty() {
                state.bytes += job.data.len();
                state.queue.push_back(job);
                drop(state);
                self.work.notify_one();
                return Ok(());
            }
            state = self.done.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Waits until every job queued is done: Err with the first failure
    /// in archive order, if any.
    pub(crate) fn wait_idle(&self) -> Result<()> {
        let mut state = self.state();
        while !state.queue.is_empty() || state.busy > 0 {
            state = self.done.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        match &state.failed {
            Some((_, e)) => Err(Error::new(e.code, e.message.clone())),
            None => Ok(()),
        }
    }

    /// No more jobs: the writer threads end once the queue is empty.
    pub(crate) fn close(&self) {
        self.state().closed = true;
        self.work.notify_all();
    }
}

/// Closes the writers when dropped, so that their threads end on every
/// path out of the extraction (a panic included).
pub(crate) struct CloseOnDrop<'a>(pub(crate) &'a Writers);

impl Drop for CloseOnDrop<'_> {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// How many writer threads: one per core, up to 4 (ext4 serializes
/// creations in one directory anyway).
pub(crate) fn writer_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(seq: u64, path: PathBuf, data: &[u8], blake3: String) -> Job {
        Job {
            seq,
            display: format!("entry-{seq}"),
            path,
            create_mode: 0o644,
            data: data.to_vec(),
            finish: Finish {
                owner: None,
                mode: None,
                xattrs: None,
                mtime: 1,
                blake3: Some(blake3),
            },
        }
    }

    #[test]
    fn writers_write_in_parallel_and_report_the_first_failure_in_archive_order() {
        let dir = tempfile::tempdir().unwrap();
        let (cleanup, shared) = (Cleanup::new(), SharedFiles::default());
        let files = Files::new(&cleanup, &shared);
        let writers = Writers::default();
        let hash = |d: &[u8]| blake3::hash(d).to_hex().to_string();
        let at = |name: &str| dir.path().join(name);
        std::thread::scope(|scope| {
            let _close = CloseOnDrop(&writers);
            for _ in 0..3 {
                scope.spawn(|| writers.run(&files));
            }
            for seq in 1..=40u64 {
                let name = format!("f{seq}");
                let data = name.as_bytes();
                let job = match seq {
                    // Content that is not the manifest's, then a file that
                    // cannot be created: the first is reported.
                    30 => job(seq, at(&name), b"forged", hash(data)),
                    35 => job(seq, at("missing/f"), data, hash(data)),
                    _ => job(seq, at(&name), data, hash(data)),
                };
                if writers.submit(job).is_err() {
                    break;
                }
            }
            let err = writers.wait_idle().unwrap_err();
            assert_eq!(err.code, fw_core::Exit::Security, "{}", err.message);
            assert!(err.message.contains("\"entry-30\""), "{}", err.message);
        });
        for seq in 1..30 {
            let name = format!("f{seq}");
            assert_eq!(std::fs::read(at(&name)).unwrap(), name.as_bytes());
        }
        assert!(
            !at("f30").exists(),
            "content that does not verify is never written"
        );
    }
}
