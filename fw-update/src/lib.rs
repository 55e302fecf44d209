//! fw-update: pulls firmware updates from a signed release index on any
//! HTTP(S) server (docs/update.md).
//!
//! `check` fetches the index (conditional GET with the last ETag), verifies
//! its detached signature by fw's trust rule, refuses it if expired, older
//! than the last accepted one, or below the installed security_version, and
//! compares its newest entry with `fw-switch status --json`. `download`
//! fetches the package into `TARGET/.fw/downloads/`, resuming a partial file
//! with HTTP Range, fsyncing, and checking size and BLAKE3 against the
//! index. `install` hands the file (or, with `--stream`, the URL) to
//! `fw-install`. `run` does what the configuration says, every
//! `check_interval`, or once. Status events (Connhex's states) go to stdout
//! or `--status FILE`, one JSON object per line; messages go to stderr.

pub mod cli;

pub mod config;
pub mod events;
pub mod http;
pub mod index;

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fw_core::keyring::Keyring;
use fw_core::{detail, note, Error, ExitCode, Result};

use config::Settings;
use events::{Events, Progress, State};
use index::{Entry, Index};

/// The most bytes an index or its signature may have.
const INDEX_LIMIT: u64 = 1 << 20;
const SIGNATURE_LIMIT: u64 = 64 << 10;
/// The longest wait between download retries.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// What to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Check,
    Download,
    Install,
    Run,
}

/// What the device runs, from `fw-switch status --json`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Installed {
    pub name: Option<String>,
    pub version: Option<String>,
    /// The highest security_version installed, or the committed floor.
    pub security_version: u64,
}

impl Installed {
    pub fn from_status_json(json: &[u8]) -> Result<Installed> {
        let status: serde_json::Value = serde_json::from_slice(json)
            .map_err(|e| Error::failed(format!("fw-switch status --json gave bad JSON: {e}")))?;
        let current = status["current"].as_str();
        // The committed floor is added by `installed` (fw_core::floor).
        let mut installed = Installed::default();
        for version in status["versions"].as_array().into_iter().flatten() {
            if let Some(sv) = version["security_version"].as_u64() {
                installed.security_version = installed.security_version.max(sv);
            }
            if current.is_some() && version["dir"].as_str() == current {
                installed.name = version["name"].as_str().map(String::from);
                installed.version = version["version"].as_str().map(String::from);
            }
        }
        Ok(installed)
    }
}

/// A binary of fw: next to this one, else on PATH.
pub fn tool(name: &str) -> PathBuf {
    if let Some(dir) = exe_dir() {
        let path = dir.join(name);
        if path.is_file() {
            return path;
        }
    }
    PathBuf::from(name)
}

fn exe_dir() -> Option<PathBuf> {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
}

/// scripts/fw-install: `--fw-install`/`fw_install`, else `FW_INSTALL`, else
/// next to this binary, else a checkout's `scripts/` (for `cargo build`),
/// else PATH.
pub fn find_fw_install(configured: Option<&Path>) -> PathBuf {
    if let Some(path) = configured {
        return path.to_path_buf();
    }
    if let Some(value) = std::env::var_os("FW_INSTALL").filter(|v| !v.is_empty()) {
        return PathBuf::from(value);
    }
    if let Some(dir) = exe_dir() {
        for candidate in [dir.join("fw-install"), dir.join("../../scripts/fw-install")] {
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    PathBuf::from("fw-install")
}

/// A number in [0, 1) that differs between devices and calls: jitter.
fn random_unit() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    hasher.write_u32(std::process::id());
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// The wait before download retry `attempt` (1, 2, …): `base` doubled per
/// attempt, at most five minutes, times a random factor in [0.5, 1).
pub fn backoff(base: Duration, attempt: u32) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    exp.min(MAX_BACKOFF).mul_f64(0.5 + random_unit() / 2.0)
}

/// The stdout of a child: our stderr, so that our stdout stays data.
fn stderr_stdio() -> Stdio {
    use std::os::fd::AsFd;
    std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map(Stdio::from)
        .unwrap_or_else(|_| Stdio::null())
}

fn fsync_dir(dir: &Path) -> Result<()> {
    fw_core::target::sync_dir(dir)
}

/// Writes `bytes` to `path` atomically and durably.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = File::create(&tmp).map_err(|e| Error::io(tmp.display(), e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io(tmp.display(), e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path.display(), e))
}

/// Why one download attempt stopped.
enum Stop {
    /// Worth retrying after a back-off (network, 5xx); the partial file is
    /// kept.
    Transient(String),
    /// Start again from byte 0 at once (416, a server that ignored Range).
    Restart(String),
    /// The server sent more than the index's size.
    TooLong,
    Fatal(Error),
}

/// An index with its signature, as fetched or cached.
struct Signed {
    json: Vec<u8>,
    sig: Vec<u8>,
    index: Index,
    etag: Option<String>,
}

/// The result of a check.
#[derive(Debug, Clone)]
pub struct Checked {
    pub entry: Entry,
    pub installed: Installed,
    pub available: bool,
}

pub struct Updater {
    pub settings: Settings,
    keyring: Keyring,
    events: Events,
    downloads: PathBuf,
}

impl Updater {
    pub fn new(settings: Settings) -> Result<Updater> {
        if !settings.target.is_dir() {
            return Err(Error::failed(format!(
                "target {} is not a directory: create it, or give --target",
                settings.target.display()
            )));
        }
        let keyring = Keyring::load(&settings.keyring)?;
        let downloads = fw_core::target::state_dir(&settings.target).join("downloads");
        std::fs::create_dir_all(&downloads).map_err(|e| Error::io(downloads.display(), e))?;
        let events = Events::new(settings.status.clone());
        Ok(Updater {
            settings,
            keyring,
            events,
            downloads,
        })
    }

    /// One exclusive fw-update at a time per target (fw-install takes the
    /// target's own lock for the install).
    fn lock(&self) -> Result<nix::fcntl::Flock<File>> {
        use nix::fcntl::{Flock, FlockArg};
        let path = self.downloads.join(".lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(path.display(), e))?;
        Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|_| {
            Error::new(
                ExitCode::Busy,
                format!(
                    "another fw-update is running on {} ({} is locked): try again later",
                    self.settings.target.display(),
                    path.display()
                ),
            )
        })
    }

    /// Emits `state` with `err`'s message and passes the error on.
    fn failing<T>(&self, state: State, result: Result<T>) -> Result<T> {
        if let Err(err) = &result {
            let _ = self.events.emit(state, &err.message, None);
        }
        result
    }

    /// The installed version, by `fw-switch status --json`.
    pub fn installed(&self) -> Result<Installed> {
        let switch = tool("fw-switch");
        let output = Command::new(&switch)
            .arg("-q")
            .arg("--target")
            .arg(&self.settings.target)
            .args(["status", "--json"])
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| {
                Error::failed(format!(
                    "cannot run {} ({e}): install fw's tools next to fw-update or on PATH",
                    switch.display()
                ))
            })?;
        if !output.status.success() {
            return Err(Error::failed(format!(
                "fw-switch status failed ({}) on {}: fix what it says",
                output.status,
                self.settings.target.display()
            )));
        }
        let mut installed = Installed::from_status_json(&output.stdout)?;
        let floor = fw_core::floor::read(&self.settings.target)?;
        installed.security_version = installed.security_version.max(floor);
        Ok(installed)
    }

    fn cache(&self, name: &str) -> PathBuf {
        self.downloads.join(name)
    }

    /// The last index this device accepted, if it is still intact.
    fn cached_index(&self) -> Option<Signed> {
        let json = std::fs::read(self.cache("index.json")).ok()?;
        let sig = std::fs::read(self.cache("index.json.sig")).ok()?;
        let index = Index::verify(&self.keyring, &json, &sig).ok()?;
        let etag = std::fs::read_to_string(self.cache("index.etag"))
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty());
        Some(Signed {
            json,
            sig,
            index,
            etag,
        })
    }

    /// Fetches the index and its signature and verifies them. A pair that
    /// does not match is fetched once more (the publisher may have been
    /// replacing both) before it is refused.
    fn fetch_index(&self, cached_etag: Option<&str>) -> Result<Option<Signed>> {
        let url = &self.settings.index;
        let sig_url = format!("{url}.sig");
        let mut etag = cached_etag;
        for attempt in 0..2 {
            let Some((json, response)) = http::get_small(url, etag, INDEX_LIMIT)? else {
                return Ok(None);
            };
            let (sig, _) = http::get_small(&sig_url, None, SIGNATURE_LIMIT)?
                .expect("an unconditional GET is never 304");
            match Index::verify(&self.keyring, &json, &sig) {
                Ok(index) => {
                    let etag = response.header("etag").map(String::from);
                    return Ok(Some(Signed {
                        json,
                        sig,
                        index,
                        etag,
                    }));
                }
                Err(err) if attempt == 0 && err.code == ExitCode::Security => {
                    detail!("the index and its signature do not match; fetching both again");
                    etag = None;
                }
                Err(err) => return Err(err.context(url)),
            }
        }
        unreachable!("the loop returns")
    }

    /// `check`: emits `checking`, then `update_available` or `updated`
    /// (nothing new), or `check_failed`.
    pub fn check(&mut self) -> Result<Checked> {
        let last = std::fs::metadata(self.cache("index.json"))
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs());
        self.events.last_checked = self.events.last_checked.or(last);
        let installed = self.installed();
        if let Ok(installed) = &installed {
            self.events.name = installed.name.clone().unwrap_or_default();
            self.events.current_version = installed.version.clone().unwrap_or_default();
        }
        self.events.emit(State::Checking, "", None)?;
        let result = installed.and_then(|installed| self.check_with(installed));
        self.failing(State::CheckFailed, result)
    }

    fn check_with(&mut self, installed: Installed) -> Result<Checked> {
        let cached = self.cached_index();
        let fetched = self.fetch_index(cached.as_ref().and_then(|c| c.etag.as_deref()))?;
        let now = events::now();
        let last_accepted = cached.as_ref().map(|c| c.index.created);
        let (index, fresh) = match (fetched, cached) {
            (Some(new), _) => (new.index, Some((new.json, new.sig, new.etag))),
            (None, Some(Signed { index, .. })) => {
                detail!("the index has not changed (304)");
                (index, None)
            }
            (None, None) => unreachable!("a conditional GET is sent only with a cache"),
        };
        index
            .check_fresh(now, last_accepted)
            .map_err(|e| e.context(&self.settings.index))?;
        let name = self.settings.name.as_deref().or(installed.name.as_deref());
        let entry = index.latest(name)?.clone();
        index::check_not_below(&entry, installed.security_version)
            .map_err(|e| e.context(&self.settings.index))?;
        if let Some((json, sig, etag)) = fresh {
            write_atomic(&self.cache("index.json.sig"), &sig)?;
            write_atomic(&self.cache("index.json"), &json)?;
            write_atomic(
                &self.cache("index.etag"),
                etag.unwrap_or_default().as_bytes(),
            )?;
            fsync_dir(&self.downloads)?;
        }
        self.events.last_checked = Some(now);
        self.events.name = entry.name.clone();
        self.events.latest_version = entry.version.clone();
        let available = installed.version.as_deref() != Some(entry.version.as_str());
        if available {
            note!(
                "update available: {} {} (installed: {})",
                entry.name,
                entry.version,
                installed.version.as_deref().unwrap_or("none")
            );
            self.events.emit(State::UpdateAvailable, "", None)?;
        } else {
            detail!("{} {} is the latest", entry.name, entry.version);
            self.events.emit(State::Updated, "", None)?;
        }
        Ok(Checked {
            entry,
            installed,
            available,
        })
    }

    /// Runs a gate command: 0 goes on, 3 is "not now" (retried after
    /// retry_interval, up to max_retries), anything else refuses.
    fn gate(
        &self,
        which: &str,
        command: Option<&str>,
        entry: &Entry,
        file: Option<&Path>,
    ) -> Result<()> {
        let Some(command) = command else {
            return Ok(());
        };
        let started = Instant::now();
        let max = self.settings.max_retries;
        for retry in 0..=max {
            let mut cmd = Command::new("/bin/sh");
            cmd.arg("-c")
                .arg(format!("{command} \"$@\""))
                .arg(format!("fw-update-{which}-gate"))
                .arg(started.elapsed().as_secs().to_string())
                .arg(retry.to_string())
                .arg(&entry.version);
            if let Some(file) = file {
                cmd.arg(file);
            }
            cmd.env("FW_UPDATE_GATE", which)
                .env("FW_UPDATE_NAME", &entry.name)
                .env("FW_UPDATE_VERSION", &entry.version)
                .env("FW_UPDATE_CURRENT", &self.events.current_version)
                .env("FW_UPDATE_URL", &entry.url)
                .env(
                    "FW_UPDATE_FILE",
                    file.map(Path::as_os_str).unwrap_or_default(),
                )
                .env("FW_ATTEMPT", (retry + 1).to_string())
                .env("FW_TARGET", &self.settings.target)
                .stdin(Stdio::null())
                .stdout(stderr_stdio());
            let status = cmd.status().map_err(|e| {
                Error::failed(format!("cannot run the {which} gate `{command}`: {e}"))
            })?;
            match status.code() {
                Some(0) => return Ok(()),
                Some(3) if retry < max => {
                    note!(
                        "the {which} gate says not now (exit 3); retry {} of {max} in {:?}",
                        retry + 1,
                        self.settings.retry_interval
                    );
                    std::thread::sleep(self.settings.retry_interval);
                }
                Some(3) => {
                    return Err(Error::new(
                        ExitCode::RetryLater,
                        format!(
                            "the {which} gate `{command}` said not now {} times: giving up until \
                             the next check (raise max_retries or retry_interval to wait longer)",
                            max + 1
                        ),
                    ))
                }
                _ => {
                    return Err(Error::failed(format!(
                        "the {which} gate `{command}` refused ({status}): fix the gate, or \
                         remove {which}_gate from the configuration"
                    )))
                }
            }
        }
        unreachable!("the loop returns")
    }

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
        self.gate(
            "download",
            self.settings.download_gate.clone().as_deref(),
            entry,
            None,
        )?;
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
                        fsync_dir(&self.downloads)?;
                        note!(
                            "downloaded {} {} ({} bytes)",
                            entry.name,
                            entry.version,
                            entry.size
                        );
                        self.events.emit(State::UpdateReady, "", None)?;
                        return Ok(done);
                    }
                    None
                }
                Err(Stop::TooLong) => None,
                Err(Stop::Restart(why)) => {
                    restarts += 1;
                    if restarts > 3 {
                        return Err(Error::failed(format!(
                            "{why}, {restarts} times: the server mishandles Range requests; \
                             fix the server, or use --stream"
                        )));
                    }
                    note!("{why}: downloading from the start");
                    let _ = std::fs::remove_file(&part);
                    continue;
                }
                Err(Stop::Transient(why)) => Some(why),
                Err(Stop::Fatal(err)) => return Err(err),
            };
            match stop {
                // Corrupt: wrong BLAKE3, or more bytes than the index says.
                None => {
                    let _ = std::fs::remove_file(&part);
                    if from_zero {
                        fresh_mismatches += 1;
                    }
                    if fresh_mismatches >= 2 {
                        return Err(Error::security(format!(
                            "{} does not match the signed index (size {} and BLAKE3 {}) even \
                             when downloaded whole: it was replaced or tampered with; tell the \
                             publisher",
                            entry.url, entry.size, entry.blake3
                        )));
                    }
                    note!(
                        "refused the download of {}: its size or BLAKE3 differs from the signed \
                         index; downloading it again",
                        entry.url
                    );
                }
                Some(why) => {
                    failures += 1;
                    if failures > self.settings.download_retries {
                        return Err(Error::failed(format!(
                            "downloading {} failed {failures} times ({why}); the partial file \
                             {} is kept and the next run resumes it",
                            entry.url,
                            part.display()
                        )));
                    }
                    let wait = backoff(self.settings.download_backoff, failures);
                    note!(
                        "download of {} interrupted ({why}); retry {failures} of {} in {:.1}s",
                        entry.url,
                        self.settings.download_retries,
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
        let (mut transfer, response) = http::start(&entry.url, &extra).map_err(Stop::Fatal)?;
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
                transfer.finish();
                return Err(Stop::Restart(format!(
                    "{} answered 416 (range not satisfiable) for the partial download",
                    entry.url
                )));
            }
            status @ 400..=499 => {
                transfer.finish();
                return Err(Stop::Fatal(Error::failed(format!(
                    "{}: the server answered HTTP {status}: the package is not published where \
                     the signed index says; tell the publisher",
                    entry.url
                ))));
            }
            status => {
                transfer.finish();
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
            let n = match transfer.body.read(&mut buf) {
                Ok(0) => break None,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => break Some(e.to_string()),
            };
            if offset + n as u64 > entry.size {
                transfer.kill();
                drop(file);
                return Err(Stop::TooLong);
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

    /// `install`: download (unless `--stream`), the install gate, then
    /// fw-install. Emits `updating`, then `updated` or `update_failed`.
    pub fn install(&mut self, entry: &Entry) -> Result<()> {
        let source = if self.settings.stream {
            None
        } else {
            Some(self.download(entry)?)
        };
        let result = self.install_from(entry, source.as_deref());
        self.failing(State::UpdateFailed, result)
    }

    fn install_from(&mut self, entry: &Entry, file: Option<&Path>) -> Result<()> {
        let fw_install = find_fw_install(self.settings.fw_install.as_deref());
        let max = self.settings.max_retries;
        let mut retry = 0;
        loop {
            self.gate(
                "install",
                self.settings.install_gate.clone().as_deref(),
                entry,
                file,
            )?;
            self.events.emit(State::Updating, "", None)?;
            let mut cmd = Command::new(&fw_install);
            cmd.arg("--target")
                .arg(&self.settings.target)
                .arg("--keyring")
                .arg(&self.settings.keyring);
            if fw_core::log::level() < 0 {
                cmd.arg("-q");
            }
            match file {
                Some(path) => cmd.arg(path),
                None => cmd.arg(&entry.url),
            };
            // The same build's tools, when fw-install would not know them.
            if std::env::var_os("FW_BIN").is_none() {
                if let Some(dir) = exe_dir().filter(|d| d.join("fw-unseal").is_file()) {
                    cmd.env("FW_BIN", dir);
                }
            }
            cmd.stdin(Stdio::null()).stdout(stderr_stdio());
            detail!("running {:?}", cmd);
            let status = cmd.status().map_err(|e| {
                Error::failed(format!(
                    "cannot run {} ({e}): install fw-install, or give --fw-install PATH (or set \
                     FW_INSTALL)",
                    fw_install.display()
                ))
            })?;
            let code = status.code().unwrap_or(1);
            match code {
                0 => {
                    if let Ok(now) = self.installed() {
                        self.events.current_version = now.version.unwrap_or_default();
                    }
                    if let Some(path) = file {
                        let _ = std::fs::remove_file(path);
                        let _ = fsync_dir(&self.downloads);
                    }
                    note!("updated to {} {}", entry.name, entry.version);
                    self.events.emit(State::Updated, "", None)?;
                    return Ok(());
                }
                3 if retry < max => {
                    retry += 1;
                    note!(
                        "fw-install says retry later (a hook exited 3); retry {retry} of {max} in \
                         {:?}",
                        self.settings.retry_interval
                    );
                    std::thread::sleep(self.settings.retry_interval);
                }
                _ => {
                    let exit = match code {
                        3 => ExitCode::RetryLater,
                        4 => ExitCode::Security,
                        5 => ExitCode::Invalid,
                        6 => ExitCode::Busy,
                        7 => ExitCode::RolledBack,
                        8 => ExitCode::Failsafe,
                        _ => ExitCode::Failed,
                    };
                    let what = match code {
                        7 => "the new version failed and the previous one is back",
                        8 => "the new version and the previous one failed: the failsafe runs",
                        6 => "the target is busy with another install",
                        4 | 5 => "the package was refused",
                        3 => "a hook kept asking to retry later",
                        _ => "it failed",
                    };
                    return Err(Error::new(
                        exit,
                        format!(
                            "installing {} {} with {}: {what} (exit {code}); see its messages \
                             above",
                            entry.name,
                            entry.version,
                            fw_install.display()
                        ),
                    ));
                }
            }
        }
    }

    /// One cycle of `action` (under the fw-update lock).
    pub fn cycle(&mut self, action: Action) -> Result<()> {
        let _lock = self.lock()?;
        let checked = self.check()?;
        if !checked.available {
            return Ok(());
        }
        let s = &self.settings;
        match action {
            Action::Check => Ok(()),
            Action::Download => self.download(&checked.entry).map(|_| ()),
            Action::Install => self.install(&checked.entry),
            Action::Run if s.auto_install => self.install(&checked.entry),
            Action::Run if s.auto_download && !s.stream => {
                self.download(&checked.entry).map(|_| ())
            }
            Action::Run => Ok(()),
        }
    }

    /// `run` without `--once`: a cycle now, then every check_interval (with
    /// up to 10% jitter, so a fleet spreads out), forever. Failures are
    /// reported and the next cycle comes anyway.
    pub fn run_forever(&mut self) -> Result<()> {
        loop {
            if let Err(err) = self.cycle(Action::Run) {
                if err.code == ExitCode::Usage {
                    return Err(err);
                }
                eprintln!("fw-update: error: {}", err.message);
            }
            let wait = self
                .settings
                .check_interval
                .mul_f64(1.0 + random_unit() / 10.0);
            detail!("next check in {:.0}s", wait.as_secs_f64());
            std::thread::sleep(wait);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installed_from_status() {
        let json = br#"{"current":"fw-1","security_floor":1,"versions":[
            {"dir":"fw","name":"fw","version":"v1","security_version":3},
            {"dir":"fw-1","name":"fw","version":"v2","security_version":2}]}"#;
        let installed = Installed::from_status_json(json).unwrap();
        assert_eq!(installed.version.as_deref(), Some("v2"));
        assert_eq!(installed.name.as_deref(), Some("fw"));
        assert_eq!(installed.security_version, 3);
        let empty = Installed::from_status_json(br#"{"current":null,"versions":[]}"#).unwrap();
        assert_eq!(empty, Installed::default());
    }

    #[test]
    fn backoff_doubles_with_jitter_and_a_cap() {
        let base = Duration::from_secs(1);
        for attempt in 1..6 {
            let wait = backoff(base, attempt);
            let full = base * (1 << (attempt - 1));
            assert!(wait >= full / 2 && wait <= full, "{attempt}: {wait:?}");
        }
        assert!(backoff(base, 40) <= MAX_BACKOFF);
    }
}
