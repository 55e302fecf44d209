//! `install`: the package (by delta, downloaded, or streamed from its URL) through
//! the install gate and `fw-install`, run by fw-nbio. fw-install checks the package's
//! signed manifest against the index's entry (name, version, security_version)
//! before it switches, in every mode; its exit 3 (a hook said not now) is retried
//! like a gate's.
//!
//! A delta (the default when a version is installed and the package is not
//! downloaded already) is `fw-install --delta URL`: fw-fetch fetches by HTTP
//! Range only the files no installed version holds, resumable from
//! TARGET/.fw/fetch/ by the next run; the download gate runs before it. The
//! index's size and BLAKE3 of the package cannot be checked then (the
//! package is not downloaded whole): its signed manifest is the root of
//! trust, checked with every file against it, and its name, version and
//! security_version against the index's entry.

use std::path::PathBuf;

use fw_core::retry::{self, Attempt, Backoff};
use fw_core::{detail, note, Error, Exit, Result};
use fw_nbio::{Failure, Process, Sink};

use crate::events::State;
use crate::gate::Gate;
use crate::index::Entry;
use crate::tools::{exe_dir, find_fw_install};
use crate::updater::Updater;

/// Where fw-install takes the package from.
enum Source {
    /// Downloaded whole, checked against the index.
    File(PathBuf),
    /// Streamed from its URL (`stream = true`).
    Url,
    /// By HTTP Range, only what the device lacks.
    Delta,
}

impl Updater {
    /// `install`: a delta, or download (unless `--stream`); the install
    /// gate, then fw-install. Emits `updating`, then `updated` or
    /// `update_failed`.
    pub fn install(&mut self, entry: &Entry) -> Result<()> {
        let source = if self.delta_for(entry) {
            let gated = self.gate(Gate::Download, entry, None);
            self.failing(State::DownloadFailed, gated)?;
            Source::Delta
        } else if self.config.stream() {
            Source::Url
        } else {
            Source::File(self.download(entry)?)
        };
        let result = self.install_from(entry, &source);
        self.failing(State::UpdateFailed, result)
    }

    /// Whether to install `entry` by delta: asked for (the default) and not
    /// streamed whole, a version installed to be its base, and no complete
    /// download of it.
    fn delta_for(&self, entry: &Entry) -> bool {
        self.config.delta()
            && !self.config.stream()
            && self
                .installed()
                .is_ok_and(|installed| installed.version.is_some())
            && !self.downloaded(entry)
    }

    fn install_from(&mut self, entry: &Entry, source: &Source) -> Result<()> {
        let file = match source {
            Source::File(path) => Some(path.as_path()),
            _ => None,
        };
        let max = self.config.max_retries();
        let done = retry::until_done(
            max,
            Backoff::not_now(self.config.retry_interval()),
            |_| {
                self.gate(Gate::Install, entry, file)?;
                self.events.emit(State::Updating, "", None)?;
                self.fw_install(entry, source)
            },
            |attempt, delay| {
                note!(
                    "fw-install says retry later (a hook exited 3); retry {attempt} of {max} in \
                     {:.1}s",
                    delay.as_secs_f64()
                );
                std::thread::sleep(delay);
                Ok(())
            },
        )?;
        if done.is_none() {
            return Err(Error::new(
                Exit::RetryLater,
                format!(
                    "installing {} {}: a hook kept asking to retry later (exit 3), {} times: \
                     the next check tries again",
                    entry.name,
                    entry.version,
                    max + 1
                ),
            ));
        }
        if let Ok(now) = self.installed() {
            self.events.current_version = now.version.unwrap_or_default();
        }
        if let Some(path) = file {
            let _ = std::fs::remove_file(path);
            let _ = fw_core::target::sync_dir(&self.downloads);
        }
        note!("updated to {} {}", entry.name, entry.version);
        self.events.emit(State::Updated, "", None)
    }

    /// One run of fw-install; its stdout and stderr go to our stderr.
    fn fw_install(&self, entry: &Entry, source: &Source) -> Result<Attempt<()>> {
        let fw_install = find_fw_install(self.config.fw_install.as_deref());
        let stall = self.config.stall();
        let mut process = Process::new(&fw_install)
            .arg("--target")
            .arg(&self.target)
            .arg("--keyring")
            .arg(self.config.keyring())
            .arg("--stall-speed")
            .arg(stall.speed.to_string())
            .arg("--stall-time")
            .arg(stall.secs.to_string())
            .arg("--max-time")
            .arg(self.config.max_time_secs().to_string())
            // Whatever the server sent, it must be what the signed index lists.
            .arg("--expect-name")
            .arg(&entry.name)
            .arg("--expect-version")
            .arg(&entry.version)
            .arg("--expect-security-version")
            .arg(entry.security_version.to_string());
        if fw_core::log::level() < 0 {
            process = process.arg("-q");
        }
        process = match source {
            Source::File(path) => process.arg(path),
            Source::Url => process.arg(&entry.url),
            Source::Delta => process.arg("--delta").arg(&entry.url),
        };
        // The same build's tools, when fw-install would not know them.
        if std::env::var_os("FW_BIN").is_none() {
            if let Some(dir) = exe_dir().filter(|d| d.join("fw-unseal").is_file()) {
                process = process.env("FW_BIN", dir);
            }
        }
        detail!("running {}", process.display_name());
        // Not die_with_parent: an install under way finishes (or rolls back) on its own.
        let output = (process | Sink::stderr())
            .run_unchecked()
            .map_err(|e| match e {
                fw_nbio::Error::Spawn { error, .. } => Error::failed(format!(
                    "cannot run {} ({error}): install fw-install, or give --fw-install PATH \
                     (or set FW_INSTALL)",
                    fw_install.display()
                )),
                other => Error::failed(format!("{}: {other}", fw_install.display())),
            })?;
        let Some(failed) = output.failure else {
            return Ok(Attempt::Done(()));
        };
        let installing = format!(
            "installing {} {} with {}",
            entry.name,
            entry.version,
            fw_install.display()
        );
        let code = match failed.failure {
            Failure::Exit(3) => return Ok(Attempt::NotNow),
            Failure::Exit(code) => code,
            other => return Err(Error::failed(format!("{installing}: it {other}"))),
        };
        let what = match code {
            7 => "the new version failed and the previous one is back",
            8 => "the new version and the previous one failed: the failsafe runs",
            6 => "the target is busy with another install",
            4 => {
                "the package was refused: it is not what the signed index lists (name, \
                  version, security_version), or its signature or the device's policy failed"
            }
            5 => "the package was refused as invalid",
            _ => "it failed",
        };
        Err(Error::new(
            Exit::from_status(code),
            format!("{installing}: {what} (exit {code}); see its messages above"),
        ))
    }
}
