//! `download`: the entry's package into `TARGET/.fw/downloads/BLAKE3.fw`, resumed from a
//! partial file with HTTP Range, fsynced as it comes, checked against the index's size
//! and BLAKE3; interrupted transfers (network, 5xx, a stall) retried with back-off.

use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use fw_core::retry::Backoff;
use fw_core::{detail, note, Error, Result};

use crate::events::{Progress, State};
use crate::gate::Gate;
use crate::http;
use crate::index::Entry;
use crate::updater::Updater;

/// Why one download attempt stopped.
enum Stop {
    /// Worth retrying after a back-off (network, 5xx); the partial file is
    /// kept.
    Transient(String),
    /// Start again from byte 0 at once (416, a server that ignored Range).
    Restart(String),
    /// The server's file is not the signed index's (its size or BLAKE3,
    /// and why): the partial file is dropped.
    Mismatch(String),
    Fatal(Error),
}

impl Updater {
    fn package_paths(&self, entry: &Entry) -> (PathBuf, PathBuf) {
        let hex = entry.blake3.to_ascii_lowercase();
        (
            self.downloads.join(format!("{hex}.fw")),
            self.downloads.join(format!("{hex}.fw.part")),
        )
    }

    /// True if `path` has the entry's size and BLAKE3.
    fn matches(path: &Path, entry: &Entry) -> Result<bool> {
        match std::fs::metadata(path) {
            Ok(m) if m.len() != entry.size => return Ok(false),
            Ok(_) => {}
            Err(e) => return Err(Error::io(path.display(), e)),
        }
        let (_, hash) =
            fw_core::manifest::hash_file(path).map_err(|e| Error::io(path.display(), e))?;
        Ok(hash.eq_ignore_ascii_case(&entry.blake3))
    }

    /// Removes downloads other than `keep` (older packages, partial files).
    fn prune(&self, keep: &[&Path]) {
        let Ok(dir) = std::fs::read_dir(&self.downloads) else {
            return;
        };
        for item in dir.flatten() {
            let path = item.path();
            let name = item.file_name().to_string_lossy().into_owned();
            let ours = name.ends_with(".fw") || name.ends_with(".fw.part");
            if ours && !keep.contains(&path.as_path()) {
                detail!("removing the old download {}", path.display());
                let _ = std::fs::remove_file(&path);
            }
        }
    }

    /// Whether the entry's package is downloaded whole already.
    pub(crate) fn downloaded(&self, entry: &Entry) -> bool {
        let (done, _) = self.package_paths(entry);
        std::fs::metadata(&done).is_ok_and(|m| m.len() == entry.size)
    }

    /// `download`: the entry's package into TARGET/.fw/downloads/, resumed
    /// from a partial file, checked against the index. Emits
    /// `downloading` (with progress) and `update_ready`, or
    /// `download_failed`.
    pub fn download(&mut self, entry: &Entry) -> Result<PathBuf> {
        let result = self.download_inner(entry);
        self.failing(State::DownloadFailed, result)
    }

    fn download_inner(&mut self, entry: &Entry) -> Result<PathBuf> {
        let (done, part) = self.package_paths(entry);
        if done.exists() {
            if Self::matches(&done, entry)? {
                detail!("{} is downloaded already", done.display());
                self.prune(&[&done]);
                self.events.emit(State::UpdateReady, "", None)?;
                return Ok(done);
            }
            note!(
                "refused the downloaded {}: its size or BLAKE3 differs from the signed index; \
                 downloading it again",
                done.display()
            );
            std::fs::remove_file(&done).map_err(|e| Error::io(done.display(), e))?;
        }
        self.prune(&[&part]);
        self.gate(Gate::Download, entry, None)?;
        let mut failures = 0u32;
        let mut fresh_mismatches = 0u32;
        let mut restarts = 0u32;
        loop {
            let from_zero = std::fs::metadata(&part)
                .map(|m| m.len() == 0)
                .unwrap_or(true);
            let stop = match self.attempt(entry, &part) {
                Ok(()) => {
                    if Self::matches(&part, entry)? {
                        std::fs::rename(&part, &done).map_err(|e| Error::io(done.display(), e))?;
                        fw_core::target::sync_dir(&self.downloads)?;
                        note!(
                            "downloaded {} {} ({} bytes)",
                            entry.name,
                            entry.version,
                            entry.size
                        );
                        self.events.emit(State::UpdateReady, "", None)?;
                        return Ok(done);
                    }
                    Stop::Mismatch("its BLAKE3 differs".into())
                }
                Err(stop) => stop,
            };
            match stop {
                Stop::Restart(why) => {
                    restarts += 1;
                    if restarts > 3 {
                        return Err(Error::failed(format!(
                            "{why}, {restarts} times: the server mishandles Range requests; \
                             fix the server, or use --stream"
                        )));
                    }
                    note!("{why}: downloading from the start");
                    let _ = std::fs::remove_file(&part);
                }
                Stop::Fatal(err) => return Err(err),
                // Not the package of the index: wrong size or BLAKE3.
                Stop::Mismatch(why) => {
                    let _ = std::fs::remove_file(&part);
                    if from_zero {
                        fresh_mismatches += 1;
                    }
                    if fresh_mismatches >= 2 {
                        return Err(Error::security(format!(
                            "{} does not match the signed index ({why}; the index says {} \
                             bytes, BLAKE3 {}) even when downloaded afresh: it was replaced or \
                             tampered with; tell the publisher",
                            entry.url, entry.size, entry.blake3
                        )));
                    }
                    note!(
                        "refused the download of {}: it does not match the signed index \
                         ({why}); downloading it again",
                        entry.url
                    );
                }
                Stop::Transient(why) => {
                    failures += 1;
                    if failures > self.config.download_retries() {
                        return Err(Error::failed(format!(
                            "downloading {} failed {failures} times ({why}); the partial file \
                             {} is kept and the next run resumes it",
                            entry.url,
                            part.display()
                        )));
                    }
                    let wait =
                        Backoff::transfer(self.config.download_backoff()).delay(failures - 1);
                    note!(
                        "download of {} interrupted ({why}); retry {failures} of {} in {:.1}s",
                        entry.url,
                        self.config.download_retries(),
                        wait.as_secs_f64()
                    );
                    std::thread::sleep(wait);
                }
            }
        }
    }

    /// One transfer into `part`, from where it ends.
    fn attempt(&mut self, entry: &Entry, part: &Path) -> std::result::Result<(), Stop> {
        let io = |e: std::io::Error| Stop::Fatal(Error::io(part.display(), e));
        let mut offset = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
        if offset > entry.size {
            std::fs::remove_file(part).map_err(io)?;
            offset = 0;
        }
        if offset == entry.size {
            return Ok(());
        }
        let progress = |bytes| {
            Some(Progress {
                bytes,
                total: entry.size,
            })
        };
        self.events
            .emit(State::Downloading, "", progress(offset))
            .map_err(Stop::Fatal)?;
        let extra: Vec<String> = if offset > 0 {
            detail!("resuming {} from byte {offset}", entry.url);
            vec!["-r".into(), format!("{offset}-")]
        } else {
            Vec::new()
        };
        let (mut transfer, response) =
            http::start(&entry.url, &extra, self.config.stall(), None).map_err(Stop::Fatal)?;
        let Some(response) = response else {
            return Err(Stop::Transient(transfer.finish().why()));
        };
        let truncate = match response.status {
            206 if response.range_start() == Some(offset) => false,
            200 => {
                if offset > 0 {
                    detail!("the server ignored the Range request: starting over");
                }
                true
            }
            206 => {
                transfer.kill();
                return Err(Stop::Restart(format!(
                    "{} answered with an unexpected range ({:?})",
                    entry.url,
                    response.header("content-range")
                )));
            }
            416 => {
                transfer.kill();
                return Err(Stop::Restart(format!(
                    "{} answered 416 (range not satisfiable) for the partial download",
                    entry.url
                )));
            }
            status @ 400..=499 => {
                transfer.kill();
                return Err(Stop::Fatal(Error::failed(format!(
                    "{}: the server answered HTTP {status}: the package is not published where \
                     the signed index says; tell the publisher",
                    entry.url
                ))));
            }
            status => {
                transfer.kill();
                return Err(Stop::Transient(format!("HTTP {status}")));
            }
        };
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(part)
            .map_err(io)?;
        if truncate {
            file.set_len(0).map_err(io)?;
            offset = 0;
        }
        file.seek(std::io::SeekFrom::Start(offset)).map_err(io)?;
        let mut buf = vec![0u8; 256 << 10];
        let step = (entry.size / 10).max(1);
        let mut next_report = (offset / step + 1) * step;
        let mut unsynced = 0u64;
        let read_error = loop {
            let n = match transfer.read(&mut buf) {
                Ok(0) => break None,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => break Some(e.to_string()),
            };
            if offset + n as u64 > entry.size {
                transfer.kill();
                drop(file);
                return Err(Stop::Mismatch(format!(
                    "the server sent more than {} bytes",
                    entry.size
                )));
            }
            file.write_all(&buf[..n]).map_err(io)?;
            offset += n as u64;
            unsynced += n as u64;
            if unsynced >= 8 << 20 {
                file.sync_data().map_err(io)?;
                unsynced = 0;
            }
            if offset >= next_report && offset < entry.size {
                next_report = (offset / step + 1) * step;
                self.events
                    .emit(State::Downloading, "", progress(offset))
                    .map_err(Stop::Fatal)?;
            }
        };
        // What arrived is kept, durably, for the next attempt to resume.
        file.sync_all().map_err(io)?;
        drop(file);
        let ended = transfer.finish();
        if let Some(e) = read_error {
            return Err(Stop::Transient(e));
        }
        if !ended.ok() {
            return Err(Stop::Transient(ended.why()));
        }
        if offset < entry.size {
            // curl read all of the answer's Content-Length (it fails
            // otherwise): if the answer reaches the end of the server's file
            // (a 200, or a 206 to its Content-Range total), that file is
            // shorter than the index's. Not a dropped connection to resume.
            let ends_the_file = response.content_length().is_some()
                && (truncate
                    || response
                        .header("content-range")
                        .and_then(fw_core::http::parse_content_range)
                        .is_some_and(|(_, end, total)| end == total));
            if ends_the_file {
                return Err(Stop::Mismatch(format!(
                    "the server's file is {offset} bytes, as its complete answer says"
                )));
            }
            return Err(Stop::Transient(format!(
                "the connection closed after {offset} of {} bytes",
                entry.size
            )));
        }
        self.events
            .emit(State::Downloading, "", progress(offset))
            .map_err(Stop::Fatal)?;
        Ok(())
    }
}
