//! Status events: one JSON object per line, on stdout or appended to
//! `--status FILE`, with Connhex's states.

use std::io::Write;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use fw_core::{Error, Result};

/// Connhex's states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Checking,
    CheckFailed,
    Downloading,
    DownloadFailed,
    UpdateAvailable,
    UpdateReady,
    Updating,
    UpdateFailed,
    Updated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Progress {
    pub bytes: u64,
    pub total: u64,
}

/// One line of the status stream.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub status: State,
    /// The firmware's name.
    pub name: String,
    pub current_version: String,
    pub latest_version: String,
    /// Empty unless the state is a failure (or a gate deferred).
    pub error: String,
    /// When the index was last fetched and verified (RFC 3339, UTC), or "".
    pub last_checked: String,
    /// When this event was written, seconds since 1970.
    pub time: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
}

/// Where events go, and what every event repeats.
pub struct Events {
    file: Option<PathBuf>,
    pub name: String,
    pub current_version: String,
    pub latest_version: String,
    pub last_checked: Option<u64>,
}

impl Events {
    pub fn new(file: Option<PathBuf>) -> Events {
        Events {
            file,
            name: String::new(),
            current_version: String::new(),
            latest_version: String::new(),
            last_checked: None,
        }
    }

    pub fn emit(&self, status: State, error: &str, progress: Option<Progress>) -> Result<()> {
        let event = Event {
            status,
            name: self.name.clone(),
            current_version: self.current_version.clone(),
            latest_version: self.latest_version.clone(),
            error: error.to_string(),
            last_checked: self.last_checked.map(rfc3339).unwrap_or_default(),
            time: now(),
            progress,
        };
        let mut line = serde_json::to_string(&event).expect("an event serializes");
        line.push('\n');
        match &self.file {
            Some(path) => std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|mut f| f.write_all(line.as_bytes()))
                .map_err(|e| Error::io(format!("status file {}", path.display()), e)),
            None => {
                let mut out = std::io::stdout().lock();
                out.write_all(line.as_bytes())
                    .and_then(|()| out.flush())
                    .map_err(|e| Error::io("stdout", e))
            }
        }
    }
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub use fw_core::log::rfc3339;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_are_connhex_names() {
        let json = serde_json::to_string(&State::UpdateAvailable).unwrap();
        assert_eq!(json, "\"update_available\"");
        assert_eq!(
            serde_json::to_string(&State::CheckFailed).unwrap(),
            "\"check_failed\""
        );
    }
}
