//! Gates: optional commands that say whether to download or install now, as
//! Upparat's hooks. Run through fw-nbio by `/bin/sh` with a timeout that kills their
//! process group; exit 0 goes on, 3 is "not now" (retried with fw-core's back-off, as
//! fw-hook retries a hook), anything else refuses.

use std::path::Path;
use std::time::Instant;

use fw_core::retry::{self, Attempt, Backoff};
use fw_core::{note, Error, Exit, Result};
use fw_nbio::{Failure, Process, Sink};

use crate::index::Entry;
use crate::updater::Updater;

/// Which gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gate {
    Download,
    Install,
}

impl Gate {
    fn as_str(self) -> &'static str {
        match self {
            Gate::Download => "download",
            Gate::Install => "install",
        }
    }
}

impl Updater {
    /// Runs `gate` (if configured) until it says go, or refuses, or has said not now
    /// more than max_retries times (exit 3).
    pub(crate) fn gate(&self, gate: Gate, entry: &Entry, file: Option<&Path>) -> Result<()> {
        let which = gate.as_str();
        let command = match gate {
            Gate::Download => self.config.download_gate(),
            Gate::Install => self.config.install_gate(),
        };
        let Some(command) = command else {
            return Ok(());
        };
        let started = Instant::now();
        let max = self.config.max_retries();
        let done = retry::until_done(
            max,
            Backoff::not_now(self.config.retry_interval()),
            |attempt| self.run_gate(which, command, entry, file, started, attempt),
            |attempt, delay| {
                note!(
                    "the {which} gate says not now (exit 3); retry {attempt} of {max} in {:.1}s",
                    delay.as_secs_f64()
                );
                std::thread::sleep(delay);
                Ok(())
            },
        )?;
        done.ok_or_else(|| {
            Error::new(
                Exit::RetryLater,
                format!(
                    "the {which} gate `{command}` said not now {} times: giving up until \
                     the next check (raise max_retries or retry_interval to wait longer)",
                    max + 1
                ),
            )
        })
    }

    /// One call: `CMD ELAPSED RETRY VERSION [FILE]`, its stdout to our stderr.
    fn run_gate(
        &self,
        which: &str,
        command: &str,
        entry: &Entry,
        file: Option<&Path>,
        started: Instant,
        attempt: u32,
    ) -> Result<Attempt<()>> {
        let mut gate = Process::new("/bin/sh")
            .arg("-c")
            .arg(format!("{command} \"$@\""))
            .arg(format!("fw-update-{which}-gate"))
            .arg(started.elapsed().as_secs().to_string())
            .arg((attempt - 1).to_string())
            .arg(&entry.version)
            .args(file)
            .env("FW_UPDATE_GATE", which)
            .env("FW_UPDATE_NAME", &entry.name)
            .env("FW_UPDATE_VERSION", &entry.version)
            .env("FW_UPDATE_CURRENT", &self.events.current_version)
            .env("FW_UPDATE_URL", &entry.url)
            .env(
                "FW_UPDATE_FILE",
                file.map(Path::as_os_str).unwrap_or_default(),
            )
            .env("FW_ATTEMPT", attempt.to_string())
            .env("FW_TARGET", &self.target)
            .name(format!("the {which} gate `{command}`"))
            .die_with_parent();
        if let Some(timeout) = self.config.gate_timeout() {
            gate = gate.timeout(timeout);
        }
        // Its exit status is its answer, not an error.
        let output = (gate | Sink::stderr())
            .run_unchecked()
            .map_err(|e| Error::failed(format!("cannot run the {which} gate `{command}`: {e}")))?;
        let Some(failed) = output.failure else {
            return Ok(Attempt::Done(()));
        };
        match failed.failure {
            Failure::Exit(3) => Ok(Attempt::NotNow),
            Failure::TimedOut(after) => Err(Error::failed(format!(
                "the {which} gate `{command}` ran longer than {}s and was killed with its \
                 process group: make it answer sooner, or raise gate_timeout",
                after.as_secs_f64()
            ))),
            failure => Err(Error::failed(format!(
                "the {which} gate `{command}` refused ({failure}): fix the gate, or \
                 remove {which}_gate from the configuration"
            ))),
        }
    }
}
