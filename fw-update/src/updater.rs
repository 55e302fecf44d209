//! The updater: its settings, keyring, status events and download directory; one cycle
//! of check, download and install under its lock, or such cycles forever.

use std::fs::File;
use std::path::PathBuf;

use fw_core::keyring::Keyring;
use fw_core::{detail, Error, Exit, Result};

use crate::config::Config;
use crate::events::{Events, State};
use crate::index::Entry;
use crate::Installed;

/// What to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Check,
    Download,
    Install,
    Run,
}

/// The result of a check.
#[derive(Debug, Clone)]
pub struct Checked {
    pub entry: Entry,
    pub installed: Installed,
    pub available: bool,
}

pub struct Updater {
    /// The command line over the file.
    pub config: Config,
    pub(crate) target: PathBuf,
    pub(crate) keyring: Keyring,
    pub(crate) events: Events,
    /// `TARGET/.fw/downloads/`: the accepted index, the package being downloaded.
    pub(crate) downloads: PathBuf,
}

impl Updater {
    pub fn new(config: Config) -> Result<Updater> {
        config.validate()?;
        let target = config.target();
        if !target.is_dir() {
            return Err(Error::failed(format!(
                "target {} is not a directory: create it, or give --target",
                target.display()
            )));
        }
        let keyring = Keyring::load(&config.keyring())?;
        let downloads = fw_core::target::state_dir(&target).join("downloads");
        std::fs::create_dir_all(&downloads).map_err(|e| Error::io(downloads.display(), e))?;
        let events = Events::new(config.status.clone());
        Ok(Updater {
            config,
            target,
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
                Exit::Busy,
                format!(
                    "another fw-update is running on {} ({} is locked): try again later",
                    self.target.display(),
                    path.display()
                ),
            )
        })
    }

    /// Emits `state` with `err`'s message and passes the error on.
    pub(crate) fn failing<T>(&self, state: State, result: Result<T>) -> Result<T> {
        if let Err(err) = &result {
            let _ = self.events.emit(state, &err.message, None);
        }
        result
    }

    /// The installed version, by `fw-switch status --json`.
    pub fn installed(&self) -> Result<Installed> {
        Installed::of(&self.target)
    }

    /// One cycle of `action` (under the fw-update lock).
    pub fn cycle(&mut self, action: Action) -> Result<()> {
        let _lock = self.lock()?;
        let checked = self.check()?;
        if !checked.available {
            return Ok(());
        }
        let c = &self.config;
        match action {
            Action::Check => Ok(()),
            Action::Download => self.download(&checked.entry).map(drop),
            Action::Install => self.install(&checked.entry),
            Action::Run if c.auto_install() => self.install(&checked.entry),
            Action::Run if c.auto_download() && !c.stream() => {
                self.download(&checked.entry).map(drop)
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
                if err.code == Exit::Usage {
                    return Err(err);
                }
                fw_core::log::emit(fw_core::log::Level::Error, "fw-update", &err.message);
            }
            let jitter = 1.0 + fw_core::retry::random_unit() / 10.0;
            let wait = self.config.check_interval().mul_f64(jitter);
            detail!("next check in {:.0}s", wait.as_secs_f64());
            std::thread::sleep(wait);
        }
    }
}
