//! Writing regular files: the system calls of one file (exclusive create,
//! data, owner, mode, attributes, times), its record as proven, and its
//! early writeback ([`Files`]), on writer threads of their own
//! ([`Writers`]): a small file whole, a large one in pieces written at
//! their offsets (the extractor hashes it in order as it reads it).
//!
//! Why threads: on a root filesystem (median file 14 KB) creating and
//! writing files was 1.0 s of the extracting thread's 1.4 s of CPU in a
//! fresh install of the debootstrap pair (perf), and that thread is the
//! one the pipeline waits for, while the two cores were 70% busy. Every
//! check stays on the extracting thread; a writer only creates what the
//! extractor already checked, hashes it against the signed manifest and
//! reports the first failure in archive order, as if written in turn.
//! fw-unpack of that package alone: 4.8 s before, 2.4 s with one writer
//! (`tar -xzf`: 5.6-6.1 s; bench figure 4b, docs/performance.md).

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use nix::sys::time::TimeSpec;

use fw_core::target::SharedFiles;
use fw_core::{xattrs, Error, Result};

use crate::staging::Cleanup;
use crate::writeback::Writeback;

/// Files at most this large are handed to a writer thread whole; larger
/// ones in pieces of this size.
pub(crate) const SMALL: u64 = 256 << 10;
/// Bytes queued or being written, at most (fw-unpack's memory bound is
/// 32 MiB, whatever the package).
const QUEUED_BYTES: usize = 2 << 20;
const QUEUED_FILES: usize = 256;
/// Jobs a writer takes at once.
const BATCH: usize = 16;
/// The size of a large file's pieces.
pub(crate) const PIECE: usize = 256 << 10;

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

/// Work for a writer thread: everything checked but the content.
pub(crate) struct Job {
    /// Its file's place in the archive: the first failure in archive
    /// order is the one reported.
    pub(crate) seq: u64,
    pub(crate) display: String,
    pub(crate) task: Task,
}

pub(crate) enum Task {
    /// A small file, whole: checked against `finish.blake3`, then made.
    Small {
        path: PathBuf,
        create_mode: u32,
        data: Vec<u8>,
        finish: Finish,
    },
    /// A piece of a large file, at offset `at`.
    Piece {
        large: Arc<Large>,
        at: u64,
        data: Vec<u8>,
    },
}

impl Job {
    fn len(&self) -> usize {
        match &self.task {
            Task::Small { data, .. } | Task::Piece { data, .. } => data.len(),
        }
    }
}

/// A large file being written in pieces. Finished by whoever comes last:
/// the writer of its last piece, or the extractor once it read the whole
/// file and its hash matched (it may never: then nothing finishes it,
/// and the refusal removes it).
pub(crate) struct Large {
    file: File,
    path: PathBuf,
    /// Pieces handed out and not yet written, plus one until the
    /// extractor is done with the file.
    left: AtomicUsize,
    finish: Mutex<Option<Finish>>,
}

impl Large {
    pub(crate) fn new(file: File, path: PathBuf) -> Arc<Large> {
        Arc::new(Large {
            file,
            path,
            left: AtomicUsize::new(1),
            finish: Mutex::new(None),
        })
    }

    /// One more piece handed to the writers.
    pub(crate) fn piece_out(&self) {
        self.left.fetch_add(1, Ordering::AcqRel);
    }

    /// The extractor is done: its content matched. True if every piece
    /// is written too, and so the caller finishes it.
    pub(crate) fn checked(&self, finish: Finish) -> bool {
        *self.finish.lock().unwrap_or_else(|e| e.into_inner()) = Some(finish);
        self.left.fetch_sub(1, Ordering::AcqRel) == 1
    }
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
        self.apply(&file, path, finish)?;
        self.writeback.push(file);
        Ok(())
    }

    fn apply(&self, file: &File, path: &Path, finish: &Finish) -> Result<()> {
        let io = |e: io::Error| Error::io(path.display(), e);
        let _lock = self.cleanup.lock();
        if let Some((uid, gid)) = finish.owner {
            std::os::unix::fs::fchown(file, Some(uid), Some(gid)).map_err(io)?;
        }
        if let Some(mode) = finish.mode {
            file.set_permissions(std::fs::Permissions::from_mode(mode))
                .map_err(io)?;
        }
        // After the mode: an ACL then keeps the group bits its mask gives.
        if let Some(xattrs) = &finish.xattrs {
            xattrs::apply_to_file(file, xattrs).map_err(io)?;
        }
        let mtime = timespec(finish.mtime);
        nix::sys::stat::futimens(file, &mtime, &mtime).map_err(|e| io(e.into()))?;
        if let (Some(blake3), Ok(meta)) = (&finish.blake3, file.metadata()) {
            self.shared.record().insert(&meta, blake3);
        }
        Ok(())
    }

    /// Finishes a large file once every piece is written and its content
    /// checked.
    pub(crate) fn finish_large(&self, large: &Large) -> Result<()> {
        let finish = large
            .finish
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let Some(finish) = finish else {
            return Ok(());
        };
        self.apply(&large.file, &large.path, &finish)?;
        if let Ok(file) = large.file.try_clone() {
            self.writeback.push(file);
        }
        Ok(())
    }

    /// A writer thread's work.
    fn write_job(&self, job: &Job) -> Result<()> {
        match &job.task {
            Task::Small {
                path,
                create_mode,
                data,
                finish,
            } => {
                if let Some(want) = &finish.blake3 {
                    if blake3::hash(data).to_hex().as_str() != want {
                        return Err(tampered(&job.display));
                    }
                }
                let mut file = self.create(path, *create_mode)?;
                self.write(&mut file, path, data)?;
                self.finish(file, path, finish)
            }
            Task::Piece { large, at, data } => {
                {
                    let _lock = self.cleanup.lock();
                    large
                        .file
                        .write_all_at(data, *at)
                        .map_err(|e| Error::io(large.path.display(), e))?;
                }
                match large.left.fetch_sub(1, Ordering::AcqRel) == 1 {
                    true => self.finish_large(large),
                    false => Ok(()),
                }
            }
        }
    }
}

/// The error of content that differs from the signed manifest's BLAKE3.
pub(crate) fn tampered(display: &str) -> Error {
    Error::security(format!(
        "entry {display:?}: its content differs from the signed manifest's \
         BLAKE3: tampered with or damaged on the way; refusing the package"
    ))
}

/// Files (or pieces of them) waiting for, or being written by, the writer threads.
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
    /// Of the jobs queued and those being written.
    bytes: usize,
    /// Jobs taken by writers and not yet done.
    busy: usize,
    /// Writers asleep for lack of jobs.
    sleeping: usize,
    /// The extractor asleep for lack of room, or until all is done.
    extractor_waits: bool,
    closed: bool,
    /// The failure of the earliest job in archive order.
    failed: Option<(u64, Error)>,
}

impl Writers {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wait<'a>(&self, cv: &Condvar, state: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        cv.wait(state).unwrap_or_else(|e| e.into_inner())
    }

    /// A writer thread: takes jobs, a few at a time, until
    /// [`Writers::close`]. After a failure, later jobs are dropped
    /// unwritten. Each side wakes the other only when it sleeps: a
    /// hand-over per file cost more than creating a small file.
    pub(crate) fn run(&self, files: &Files) {
        let mut batch: Vec<Job> = Vec::with_capacity(BATCH);
        let mut failure: Option<(u64, Error)> = None;
        loop {
            let skip = {
                let mut state = self.state();
                state.busy -= batch.len();
                state.bytes -= batch.iter().map(Job::len).sum::<usize>();
                if state.extractor_waits && !batch.is_empty() {
                    self.done.notify_one();
                }
                batch.clear();
                if let Some((seq, e)) = failure.take() {
                    if state.failed.as_ref().is_none_or(|(first, _)| seq < *first) {
                        state.failed = Some((seq, e));
                    }
                }
                loop {
                    if !state.queue.is_empty() {
                        let take = state.queue.len().min(BATCH);
                        batch.extend(state.queue.drain(..take));
                        state.busy += take;
                        // Refilled while this batch is written.
                        if state.extractor_waits && state.queue.len() <= QUEUED_FILES / 2 {
                            self.done.notify_one();
                        }
                        break state.failed.is_some();
                    }
                    if state.extractor_waits {
                        self.done.notify_one();
                    }
                    if state.closed {
                        return;
                    }
                    state.sleeping += 1;
                    state = self.wait(&self.work, state);
                    state.sleeping -= 1;
                }
            };
            for job in batch.iter().filter(|_| !skip) {
                if let Err(e) = files.write_job(job) {
                    failure = Some((job.seq, e));
                    break;
                }
            }
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
            let fits = state.bytes + job.len() <= QUEUED_BYTES && state.queue.len() < QUEUED_FILES;
            if fits || state.queue.is_empty() {
                state.bytes += job.len();
                state.queue.push_back(job);
                if state.sleeping > 0 {
                    self.work.notify_one();
                }
                return Ok(());
            }
            state = self.wait_for_writers(state);
        }
    }

    /// Sleeps until a writer has taken all it can: room in the queue, or
    /// every job done.
    fn wait_for_writers<'a>(&self, mut state: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        if state.sleeping > 0 {
            self.work.notify_all();
        }
        state.extractor_waits = true;
        state = self.wait(&self.done, state);
        state.extractor_waits = false;
        state
    }

    /// Waits until every job queued is done: Err with the first failure
    /// in archive order, if any.
    pub(crate) fn wait_idle(&self) -> Result<()> {
        let mut state = self.state();
        while !state.queue.is_empty() || state.busy > 0 {
            state = self.wait_for_writers(state);
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

/// How many writer threads: half the cores (the other half inflates),
/// at least one. On 2 cores, one writer and two did the same within the
/// noise (fresh install of the debootstrap pair, 4 runs each), and
/// creations in one directory take its lock in turn anyway.
pub(crate) fn writer_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .div_ceil(2)
        .clamp(1, 4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn finish(blake3: String) -> Finish {
        Finish {
            owner: None,
            mode: Some(0o640),
            xattrs: None,
            mtime: 1,
            blake3: Some(blake3),
        }
    }

    fn job(seq: u64, path: PathBuf, data: &[u8], blake3: String) -> Job {
        Job {
            seq,
            display: format!("entry-{seq}"),
            task: Task::Small {
                path,
                create_mode: 0o644,
                data: data.to_vec(),
                finish: finish(blake3),
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

    #[test]
    fn a_large_file_is_finished_by_whoever_comes_last() {
        let dir = tempfile::tempdir().unwrap();
        let (cleanup, shared) = (Cleanup::new(), SharedFiles::default());
        let files = Files::new(&cleanup, &shared);
        let content: Vec<u8> = (0..3 * PIECE + 7).map(|i| (i % 251) as u8).collect();
        let hash = blake3::hash(&content).to_hex().to_string();
        // The extractor done first (its share released before the pieces
        // are written), or last.
        for (name, checked_first) in [("first", true), ("last", false)] {
            let path = dir.path().join(name);
            let large = Large::new(files.create(&path, 0o600).unwrap(), path.clone());
            let pieces: Vec<_> = content.chunks(PIECE).enumerate().collect();
            for _ in &pieces {
                large.piece_out();
            }
            if checked_first {
                assert!(!large.checked(finish(hash.clone())));
            }
            let writers = Writers::default();
            std::thread::scope(|scope| {
                let _close = CloseOnDrop(&writers);
                scope.spawn(|| writers.run(&files));
                for (i, piece) in pieces.iter().rev() {
                    let task = Task::Piece {
                        large: large.clone(),
                        at: (i * PIECE) as u64,
                        data: piece.to_vec(),
                    };
                    let display = name.to_string();
                    writers
                        .submit(Job {
                            seq: 1,
                            display,
                            task,
                        })
                        .unwrap();
                }
                writers.wait_idle().unwrap();
            });
            if !checked_first {
                assert!(large.checked(finish(hash.clone())));
                files.finish_large(&large).unwrap();
            }
            let meta = std::fs::metadata(&path).unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), content, "{name}");
            assert_eq!(meta.mode() & 0o7777, 0o640, "{name}: finished");
            assert_eq!(meta.mtime(), 1, "{name}: finished");
        }
    }
}
