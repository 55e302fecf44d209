//! `TARGET/.fw/journal`: the install transaction in flight, so that
//! `fw-switch recover` (run at every boot) can finish or undo whatever a
//! power cut, a `kill -9` or a full disk interrupted.
//!
//! The journal is replaced atomically at each phase change (write a
//! temporary file, fsync, rename, fsync the directory). No journal means
//! no transaction: the target is as its links say.
//!
//! ```text
//!             begin                 fw-fixate                hooks ok
//!  (none) ─────────▶ unpacking ─▶ fixating ─▶ fixated ─▶ pre-install
//!                      │             │           │           │
//!                      └─────────────┴───────────┴───────────┴──▶ undo: remove NEW
//!  pre-install ─▶ switching ─▶ post-install ─▶ pending ──commit──▶ (none)
//!                    │              │             │ N boots
//!                    └──────────────┴─────────────┴──▶ rolling-back ─▶ (none)
//!                 (current = NEW)                       previous, else failsafe
//! ```

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub const JOURNAL: &str = "journal";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// unseal | unpack | verify running; no version made yet.
    Unpacking,
    /// fw-fixate is moving the tree to `to`.
    Fixating,
    /// `to` is installed, not yet switched to.
    Fixated,
    /// `to`'s pre-install hook is running.
    PreInstall,
    /// `current` is being moved to `to`.
    Switching,
    /// `current` is `to`; its post-install and health-check are running.
    PostInstall,
    /// Installed, on probation until `fw-switch commit`.
    Pending,
    /// Going back from `to` to `from` (or the failsafe).
    RollingBack,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Unpacking => "unpacking",
            Phase::Fixating => "fixating",
            Phase::Fixated => "fixated",
            Phase::PreInstall => "pre-install",
            Phase::Switching => "switching",
            Phase::PostInstall => "post-install",
            Phase::Pending => "pending",
            Phase::RollingBack => "rolling-back",
        }
    }

    pub fn parse(value: &str) -> Result<Phase> {
        serde_json::from_value(serde_json::Value::String(value.to_string())).map_err(|_| {
            Error::usage(format!(
                "{value:?} is not a journal phase: unpacking, fixating, fixated, pre-install, \
                 switching, post-install, pending, rolling-back"
            ))
        })
    }
}

/// The transaction in flight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    pub phase: Phase,
    /// The version `current` named when the transaction began (a
    /// directory name in the target), if any.
    pub from: Option<String>,
    /// The new version's directory name, once it has one.
    pub to: Option<String>,
    /// Boots seen while pending.
    #[serde(default)]
    pub boots: u32,
    /// Seconds since the epoch: when it began, when it last changed.
    pub started: u64,
    pub updated: u64,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Journal {
    pub fn begin(from: Option<String>) -> Journal {
        let t = now();
        Journal {
            phase: Phase::Unpacking,
            from,
            to: None,
            boots: 0,
            started: t,
            updated: t,
        }
    }

    /// Reads the target's journal; `None` when no transaction is in flight.
    /// An unreadable journal is an error: recover must not guess.
    pub fn load(target: &Path) -> Result<Option<Journal>> {
        let path = crate::target::state_dir(target).join(JOURNAL);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                Error::failed(format!(
                    "{}: unreadable journal ({e}); inspect it, then remove it and run \
                     fw-switch recover",
                    path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(path.display(), e)),
        }
    }

    /// Replaces the journal atomically and durably.
    pub fn save(&mut self, target: &Path) -> Result<()> {
        self.updated = now();
        let dir = crate::target::state_dir(target);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(dir.display(), e))?;
        let tmp = dir.join(format!(".{JOURNAL}.tmp"));
        let path = dir.join(JOURNAL);
        let mut json = serde_json::to_vec_pretty(self).expect("a journal serializes");
        json.push(b'\n');
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(&json)?;
            file.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::io(format!("journal {}", path.display()), e)
        })?;
        crate::target::sync_dir(&dir)
    }

    /// Ends the transaction: removes the journal, durably.
    pub fn clear(target: &Path) -> Result<()> {
        let dir = crate::target::state_dir(target);
        let path = dir.join(JOURNAL);
        match std::fs::remove_file(&path) {
            Ok(()) => crate::target::sync_dir(&dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(path.display(), e)),
        }
    }

    /// Moves the journal, if there is one, to `phase` (and `to`).
    pub fn advance(target: &Path, phase: Phase, to: Option<&str>) -> Result<()> {
        if let Some(mut journal) = Journal::load(target)? {
            journal.phase = phase;
            if let Some(to) = to {
                journal.to = Some(to.to_string());
            }
            journal.save(target)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_loads_advances_and_clears() {
        let target = tempfile::tempdir().unwrap();
        assert_eq!(Journal::load(target.path()).unwrap(), None);
        Journal::begin(Some("fw".into()))
            .save(target.path())
            .unwrap();
        Journal::advance(target.path(), Phase::Fixated, Some("fw-1")).unwrap();
        let journal = Journal::load(target.path()).unwrap().unwrap();
        assert_eq!(
            (
                journal.phase,
                journal.from.as_deref(),
                journal.to.as_deref()
            ),
            (Phase::Fixated, Some("fw"), Some("fw-1"))
        );
        let text = std::fs::read_to_string(target.path().join(".fw/journal")).unwrap();
        assert!(text.contains("\"phase\": \"fixated\""), "{text}");
        Journal::clear(target.path()).unwrap();
        assert_eq!(Journal::load(target.path()).unwrap(), None);
        // Advancing with no transaction in flight does nothing.
        Journal::advance(target.path(), Phase::Pending, None).unwrap();
        assert_eq!(Journal::load(target.path()).unwrap(), None);
    }

    #[test]
    fn phases_parse_by_their_names() {
        assert_eq!(Phase::parse("post-install").unwrap(), Phase::PostInstall);
        assert_eq!(
            Phase::parse("rolling-back").unwrap().as_str(),
            "rolling-back"
        );
        assert!(Phase::parse("done").is_err());
    }
}
