//! `TARGET/.fw/journal`: the install transaction in flight, so that
//! `fw-switch recover` (run at every boot) can finish or undo whatever a
//! power cut, a `kill -9` or a full disk interrupted.
//!
//! The journal is replaced atomically at each phase change (write a
//! temporary file, fsync, rename, fsync the directory: [`crate::atomic`]).
//! No journal means no transaction: the target is as its links say.
//!
//! A version on probation (`pending`) stays on probation until another
//! version has actually been switched to, or it is committed: a
//! transaction that begins while one is pending carries it along
//! (`probation`), and undoing that transaction before its switch puts it
//! back.
//!
//! ```text
//!             begin                 fw-fixate                hooks ok
//!  (none) ─────────▶ unpacking ─▶ fixating ─▶ fixated ─▶ pre-install
//!                      │             │           │           │
//!                      └─────────────┴───────────┴───────────┴──▶ undo: remove NEW
//!                                                                  (pending stays pending)
//!  pre-install ─▶ switching ─▶ post-install ─▶ pending ──commit──▶ (none)
//!                    │              │             │ N boots
//!                    └──────────────┴─────────────┴──▶ rolling-back ─▶ (none)
//!                 (current = NEW)                       NEW failed; previous, else failsafe
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
    /// The pending journal this transaction began over: restored if the
    /// transaction is undone before its switch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probation: Option<Box<Journal>>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Journal {
    /// Begins a transaction from the version `from` (a directory name)
    /// and saves it. A pending version's probation is carried along; any
    /// other transaction in flight must be recovered first.
    pub fn begin(target: &Path, from: Option<String>) -> Result<Journal> {
        let probation = match Journal::load(target)? {
            None => None,
            Some(pending) if pending.phase == Phase::Pending => Some(Box::new(pending)),
            Some(other) => {
                return Err(Error::failed(format!(
                    "a transaction is in flight in {} (phase {}): run fw-switch recover first",
                    target.display(),
                    other.phase.as_str()
                )))
            }
        };
        let t = now();
        let mut journal = Journal {
            phase: Phase::Unpacking,
            from,
            to: None,
            boots: 0,
            started: t,
            updated: t,
            probation,
        };
        journal.save(target)?;
        Ok(journal)
    }

    /// The version on probation, if any: this journal's `to` when it is
    /// pending, else the pending version it began over.
    pub fn pending(&self) -> Option<&Journal> {
        match (&self.phase, &self.probation) {
            (Phase::Pending, _) => Some(self),
            (_, Some(pending)) => Some(pending),
            _ => None,
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
        let mut json = serde_json::to_vec_pretty(self).expect("a journal serializes");
        json.push(b'\n');
        crate::atomic::write(&dir, JOURNAL, &json)
            .map_err(|e| e.context(format!("journal {}", dir.join(JOURNAL).display())))
    }

    /// Ends a transaction that was undone before its switch, with
    /// `current` (a directory name) the version current now: a pending
    /// version it began over goes back on probation if it is still
    /// current; otherwise nothing is left in flight.
    pub fn undone(self, target: &Path, current: Option<&str>) -> Result<()> {
        match self.probation {
            Some(mut pending) if pending.to.as_deref() == current && current.is_some() => {
                pending.save(target)
            }
            _ => Journal::clear(target),
        }
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
            if phase == Phase::Pending {
                // The new version was switched to: its probation replaces
                // any other.
                journal.probation = None;
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
        Journal::begin(target.path(), Some("fw".into())).unwrap();
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
    fn a_transaction_begun_over_a_pending_version_keeps_its_probation() {
        let target = tempfile::tempdir().unwrap();
        let t = target.path();
        Journal::begin(t, Some("fw".into())).unwrap();
        Journal::advance(t, Phase::Pending, Some("fw-1")).unwrap();
        let mut pending = Journal::load(t).unwrap().unwrap();
        pending.boots = 2;
        pending.save(t).unwrap();

        // Undone before its switch: fw-1 is pending again, boots kept.
        let journal = Journal::begin(t, Some("fw-1".into())).unwrap();
        assert_eq!(journal.pending().unwrap().to.as_deref(), Some("fw-1"));
        Journal::advance(t, Phase::Fixated, Some("fw-2")).unwrap();
        Journal::load(t)
            .unwrap()
            .unwrap()
            .undone(t, Some("fw-1"))
            .unwrap();
        let back = Journal::load(t).unwrap().unwrap();
        assert_eq!(
            (back.phase, back.to.as_deref(), back.boots),
            (Phase::Pending, Some("fw-1"), 2)
        );

        // Switched to another version: the old probation is gone.
        Journal::begin(t, Some("fw-1".into())).unwrap();
        Journal::advance(t, Phase::Pending, Some("fw-2")).unwrap();
        let now = Journal::load(t).unwrap().unwrap();
        assert_eq!((now.to.as_deref(), now.boots), (Some("fw-2"), 0));
        assert!(now.probation.is_none());
        // Undone while current is another version: nothing left.
        Journal::begin(t, Some("fw".into())).unwrap();
        Journal::load(t)
            .unwrap()
            .unwrap()
            .undone(t, Some("fw"))
            .unwrap();
        assert_eq!(Journal::load(t).unwrap(), None);
    }

    #[test]
    fn a_transaction_in_flight_must_be_recovered_before_another_begins() {
        let target = tempfile::tempdir().unwrap();
        Journal::begin(target.path(), None).unwrap();
        let err = Journal::begin(target.path(), None).unwrap_err();
        assert!(err.message.contains("fw-switch recover"), "{}", err.message);
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
