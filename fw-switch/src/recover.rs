//! `recover`: run at every boot, and by fw-install before it starts and
//! after any failure. It finishes or undoes whatever the journal names,
//! and is idempotent (killed while it runs, it is simply run again).

use std::path::PathBuf;

use fw_core::journal::{Journal, Phase};
use fw_core::target::{state_dir, sync_dir, CURRENT, FAILSAFE, PREVIOUS};
use fw_core::verified::is_verified;
use fw_core::{Error, Result};

use crate::clean::remove_tree;
use crate::failed::Failed;
use crate::target::{dir_name, Target, Version};

/// How `recover` runs.
#[derive(Debug, Clone)]
pub struct RecoverOptions {
    /// Count a boot of a pending version (false when fw-install calls it).
    pub count_boot: bool,
    /// Boots a pending version gets before it is rolled back.
    pub max_boots: u32,
    /// How the hooks of a rollback are run.
    pub hooks: fw_hook::Settings,
}

impl Default for RecoverOptions {
    fn default() -> Self {
        RecoverOptions {
            count_boot: true,
            max_boots: 3,
            hooks: fw_hook::Settings::default(),
        }
    }
}

/// How a recovery ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing was in flight (or only a count of boots).
    Consistent,
    /// A transaction that had not switched was undone.
    Undone,
    /// Back on the previous version (exit 7).
    RolledBack(PathBuf),
    /// On the failsafe version (exit 8).
    Failsafe(PathBuf),
    /// Every version to go back to is below the security floor: the
    /// failed version stays current, marked failed (exit 4).
    BelowFloor(String),
    /// Nothing could be re-enabled (exit 1).
    Stuck(String),
}

/// What `recover` did, for the report.
#[derive(Debug, Clone)]
pub struct Recovered {
    pub done: Vec<String>,
    pub outcome: Outcome,
}

/// Files an interrupted writer leaves in `TARGET/.fw`: fw-install's
/// `install.XXXXXX` (its exit trap never runs after a power cut) and the
/// temporary files of fw_core::atomic.
fn is_leftover(name: &str) -> bool {
    fw_core::atomic::is_temporary(name)
        || name
            .strip_prefix("install.")
            .is_some_and(|tail| tail.len() == 6 && tail.bytes().all(|b| b.is_ascii_alphanumeric()))
}

impl Target {
    /// Removes temporary links (`.current.tmp-PID`) in the target and the
    /// leftovers of interrupted writers in its state directory. Only under
    /// the lock: no writer runs then.
    fn remove_leftovers(&self, done: &mut Vec<String>) -> Result<()> {
        let state = state_dir(&self.root);
        for (dir, symlinks) in [(&self.root, true), (&state, false)] {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let kind = entry
                    .file_type()
                    .map_err(|e| Error::io(entry.path().display(), e))?;
                let wanted = if symlinks {
                    kind.is_symlink() && fw_core::atomic::is_temporary(&name)
                } else {
                    kind.is_file() && is_leftover(&name)
                };
                if wanted {
                    std::fs::remove_file(entry.path())
                        .map_err(|e| Error::io(entry.path().display(), e))?;
                    done.push(format!("removed {}", entry.path().display()));
                }
            }
        }
        Ok(())
    }

    /// `recover`: adopts a hand-made `current`, removes leftovers of
    /// interrupted writers and dead staging directories, then finishes or
    /// undoes the transaction the journal names:
    ///
    /// - before the switch (unpacking … pre-install, or switching with
    ///   `current` still the old version): undone, the new version removed,
    ///   a version that was pending before it began pending again;
    /// - after the switch (switching with `current` on the new version,
    ///   post-install, rolling-back): the new version is marked failed and
    ///   rolled back, as fw-install does when a post-install fails (see
    ///   [`Target::roll_back`]). (Re-running the new version's post-install
    ///   instead would trust a version that never proved itself.)
    /// - pending (installed, not committed): a boot is counted, and after
    ///   `max_boots` boots without `fw-switch commit` it is rolled back.
    ///
    /// Idempotent: killed at any point and run again, it ends the same way.
    pub fn recover(&self, options: &RecoverOptions) -> Result<Recovered> {
        let mut done = Vec::new();
        if let Some(adopted) = self.adopt()? {
            done.push(format!("adopted {}", adopted.display()));
        }
        self.remove_leftovers(&mut done)?;
        let staging = self.clean_staging()?;
        if staging > 0 {
            done.push(format!("removed {staging} dead staging directories"));
        }

        let mut outcome = Outcome::Consistent;
        if let Some(mut journal) = Journal::load(&self.root)? {
            let current = self.link_name(CURRENT);
            let on_new = journal.to.is_some() && current == journal.to;
            match journal.phase {
                Phase::Unpacking | Phase::Fixating | Phase::Fixated | Phase::PreInstall => {
                    outcome = self.undo(journal, &mut done)?;
                }
                Phase::Switching if !on_new => outcome = self.undo(journal, &mut done)?,
                Phase::Switching | Phase::PostInstall | Phase::RollingBack => {
                    let why = match journal.phase {
                        Phase::PostInstall => {
                            "failed after the switch (post-install or health check)"
                        }
                        _ => "failed after the switch (its install was interrupted)",
                    };
                    outcome = self.roll_back(&mut journal, why, options, &mut done)?;
                }
                Phase::Pending if !on_new => {
                    // Switched away by hand: nothing is on probation any more.
                    Journal::clear(&self.root)?;
                    done.push("probation ended: current is no longer the pending version".into());
                }
                Phase::Pending if options.count_boot => {
                    journal.boots += 1;
                    let to = journal.to.clone().unwrap_or_default();
                    if journal.boots >= options.max_boots {
                        let why = format!("not committed after {} boots", journal.boots);
                        done.push(format!("{to} was {why}"));
                        outcome = self.roll_back(&mut journal, &why, options, &mut done)?;
                    } else {
                        journal.save(&self.root)?;
                        done.push(format!(
                            "{to} pending: boot {} of {} without a commit",
                            journal.boots, options.max_boots
                        ));
                    }
                }
                Phase::Pending => {}
            }
        }

        if self.link(CURRENT).is_none() && matches!(outcome, Outcome::Consistent) {
            if let Some(version) = self.fallback()? {
                self.set_link(CURRENT, &version)?;
                done.push(format!("current -> {}", version.display()));
            }
        }
        Ok(Recovered { done, outcome })
    }

    /// A version for a lost `current`: the failsafe, else previous, else
    /// the newest verified version; never a failed one or one below the
    /// security floor.
    fn fallback(&self) -> Result<Option<PathBuf>> {
        let floor = fw_core::floor::read(&self.root)?;
        let failed = Failed::load(&self.root)?;
        let linked = [FAILSAFE, PREVIOUS]
            .into_iter()
            .filter_map(|l| self.link(l));
        let verified = self
            .versions()
            .into_iter()
            .map(|v| v.dir)
            .filter(|d| is_verified(d));
        Ok(linked.chain(verified).find(|dir| {
            let version = Version::read(dir);
            version.security_version() >= floor && !failed.contains(&version)
        }))
    }

    /// Undoes a transaction that had not switched: removes its new version.
    fn undo(&self, journal: Journal, done: &mut Vec<String>) -> Result<Outcome> {
        if let Some(to) = &journal.to {
            let dir = self.root.join(to);
            let linked = [CURRENT, PREVIOUS, FAILSAFE]
                .iter()
                .any(|l| self.link(l).as_deref() == Some(dir.as_path()));
            if dir.is_dir() && !linked {
                self.remove_version(&dir)?;
                done.push(format!("removed the unfinished install {to}"));
            }
        }
        done.push(format!(
            "undid the install interrupted in phase {}",
            journal.phase.as_str()
        ));
        if let Some(pending) = journal.pending() {
            done.push(format!(
                "{} stays on probation",
                pending.to.as_deref().unwrap_or("?")
            ));
        }
        journal.undone(&self.root, self.link_name(CURRENT).as_deref())?;
        Ok(Outcome::Undone)
    }

    /// Goes back from the journal's new version, marked failed for `why`:
    /// to its previous version (link, then pre- and post-install with
    /// FW_DIRECTION=rollback), else to the failsafe the same way; never
    /// past the failsafe, never to a failed version or one below the
    /// security floor. When every candidate is below the floor, the failed
    /// version stays current.
    fn roll_back(
        &self,
        journal: &mut Journal,
        why: &str,
        options: &RecoverOptions,
        done: &mut Vec<String>,
    ) -> Result<Outcome> {
        let floor = fw_core::floor::read(&self.root)?;
        let failed = journal.to.as_ref().map(|n| self.root.join(n));
        if let Some(failed) = failed.as_deref().filter(|f| f.is_dir()) {
            Failed::mark(&self.root, &Version::read(failed), why)?;
        }
        journal.phase = Phase::RollingBack;
        journal.save(&self.root)?;
        let marks = Failed::load(&self.root)?;
        let from = journal
            .from
            .as_ref()
            .map(|n| self.root.join(n))
            .filter(|p| p.is_dir() && Some(p) != failed.as_ref());
        let failsafe = self
            .link(FAILSAFE)
            .filter(|p| Some(p) != failed.as_ref() && Some(p) != from.as_ref());

        let mut below_floor = Vec::new();
        let mut tried_any = false;
        for (dir, is_failsafe) in [(from, false), (failsafe, true)] {
            let Some(dir) = dir else { continue };
            let version = Version::read(&dir);
            let role = if is_failsafe { "failsafe" } else { "previous" };
            if let Some(mark) = marks.get(&version) {
                done.push(format!(
                    "passed over the {role} {}: {}",
                    version.label(),
                    mark.reason
                ));
                continue;
            }
            if version.security_version() < floor {
                below_floor.push(format!(
                    "the {role} {} has security_version {}",
                    version.label(),
                    version.security_version()
                ));
                continue;
            }
            tried_any = true;
            let enabled = match self.switch_to(&dir) {
                Ok(_) => match self.run_rollback_hooks(&dir, failed.as_deref(), &options.hooks) {
                    Ok(()) => true,
                    Err(e) => {
                        fw_core::warn!("{}", e.message);
                        false
                    }
                },
                Err(e) => {
                    fw_core::note!("cannot switch back to {}: {}", dir.display(), e.message);
                    false
                }
            };
            if is_failsafe {
                Journal::clear(&self.root)?;
                let hooks = if enabled {
                    ""
                } else {
                    " (its hooks failed too)"
                };
                done.push(format!("on the failsafe {}{hooks}", dir.display()));
                return Ok(Outcome::Failsafe(dir));
            }
            if enabled {
                Journal::clear(&self.root)?;
                done.push(format!("rolled back to {}", dir.display()));
                return Ok(Outcome::RolledBack(dir));
            }
        }
        if journal.from.is_none() && !tried_any && below_floor.is_empty() {
            // A first install: nothing to go back to but nothing at all.
            let _ = std::fs::remove_file(self.root.join(CURRENT));
            if let Some(failed) = &failed {
                remove_tree(failed)?;
                Failed::unmark(&self.root, &dir_name(failed))?;
            }
            sync_dir(&self.root)?;
            Journal::clear(&self.root)?;
            done.push("undid a first install".into());
            return Ok(Outcome::Undone);
        }
        Journal::clear(&self.root)?;
        let current = self.link_name(CURRENT).unwrap_or_else(|| "unset".into());
        if !tried_any && !below_floor.is_empty() {
            return Ok(Outcome::BelowFloor(format!(
                "{} {why}, but {}, below the security floor {floor}: staying on {current}, \
                 marked failed; install a fixed version (security_version {floor} or more)",
                journal.to.as_deref().unwrap_or("the new version"),
                below_floor.join(" and ")
            )));
        }
        Ok(Outcome::Stuck(format!(
            "neither the previous version nor a failsafe could be re-enabled; current is {current}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftovers_are_recognised() {
        assert!(is_leftover("install.AbC123"));
        assert!(is_leftover(".journal.tmp-5-0"));
        assert!(!is_leftover("install.lock"));
        assert!(!is_leftover("journal"));
        assert!(!is_leftover("lock"));
    }
}
