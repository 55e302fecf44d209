//! Every command that moves a link (`to`, `rollback`, `failsafe`,
//! `set-failsafe`) and `commit`, which raises the security floor.
//!
//! Anti-rollback holds in each of them: a version whose security_version
//! is below the committed floor (`TARGET/.fw/security-floor`) is refused
//! with exit 4. `previous` moves before `current`, so at every instant
//! `current` names a complete version. Probation of a pending version
//! ends when another version has actually been switched to.

use std::path::{Path, PathBuf};

use fw_core::journal::{Journal, Phase};
use fw_core::target::{CURRENT, FAILSAFE, PREVIOUS};
use fw_core::verified::is_verified;
use fw_core::{warn, Error, Result};
use fw_hook::HookName;

use crate::failed::Failed;
use crate::target::{dir_name, Target, Version};

/// Refuses `version` below `floor` (exit 4).
pub fn check_floor(version: &Version, floor: u64) -> Result<()> {
    if version.security_version() < floor {
        return Err(Error::security(format!(
            "{} has security_version {}, below the security floor {floor} (raised by fw-switch \
             commit): moving to it would undo a security fix; choose a version with \
             security_version {floor} or more (see fw-switch status)",
            version.label(),
            version.security_version()
        )));
    }
    Ok(())
}

/// Where `rollback` went, and what it passed over on the way.
#[derive(Debug, Clone)]
pub struct RolledBack {
    pub version: PathBuf,
    /// Versions passed over because they failed after their switch.
    pub skipped: Vec<String>,
}

impl Target {
    /// `to PATH`: previous := current, current := PATH. PATH must be
    /// verified (or be the failsafe) and not below the security floor.
    pub fn switch_to(&self, version: &Path) -> Result<PathBuf> {
        self.adopt()?;
        let version = self.resolve_version(version)?;
        let floor = fw_core::floor::read(&self.root)?;
        let is_failsafe = self.link(FAILSAFE).as_deref() == Some(version.as_path());
        if !is_verified(&version) && !is_failsafe {
            return Err(Error::invalid(format!(
                "{} was not verified: run fw-verify on it first",
                version.display()
            )));
        }
        let info = Version::read(&version);
        check_floor(&info, floor)?;
        if let Some(mark) = Failed::load(&self.root)?.get(&info) {
            warn!(
                "{} is marked failed ({}): switching to it as asked; `fw-switch commit` once it \
                 proves healthy clears the mark",
                info.label(),
                mark.reason
            );
        }
        self.move_current(&version)?;
        Ok(version)
    }

    /// Moves `current` (and `previous`) to `version`, already checked, and
    /// ends the probation of a pending version that is no longer current.
    fn move_current(&self, version: &Path) -> Result<()> {
        match self.link(CURRENT) {
            Some(current) if current == version => {}
            Some(current) => {
                self.set_link(PREVIOUS, &current)?;
                self.set_link(CURRENT, version)?;
            }
            None => self.set_link(CURRENT, version)?,
        }
        let name = dir_name(version);
        if let Some(mut journal) = Journal::load(&self.root)? {
            let moved_away = |pending: &Journal| pending.to.as_deref().is_some_and(|to| to != name);
            if journal.phase == Phase::Pending && moved_away(&journal) {
                Journal::clear(&self.root)?;
            } else if journal.probation.as_deref().is_some_and(moved_away) {
                journal.probation = None;
                journal.save(&self.root)?;
            }
        }
        Ok(())
    }

    /// The version `rollback` goes to from `current`: `previous` if it is
    /// older than `current`, else the newest version older than `current`;
    /// in either case one that did not fail after its switch and is
    /// verified (or the failsafe).
    fn rollback_choice(&self, current: &Path) -> Result<(Version, Vec<String>)> {
        let failed = Failed::load(&self.root)?;
        let failsafe = self.link(FAILSAFE);
        let current = Version::read(current);
        let mut skipped = Vec::new();
        let previous = self.link(PREVIOUS).map(|p| Version::read(&p));
        // A failed previous is named even when it is newer than current
        // (as after an automatic rollback): that is why it is not the choice.
        if let Some((version, mark)) = previous.as_ref().and_then(|v| Some((v, failed.get(v)?))) {
            skipped.push(format!("{}: {}", version.label(), mark.reason));
        }
        let candidates = previous
            .into_iter()
            .chain(self.versions())
            .filter(|v| v.age() < current.age());
        for version in candidates {
            if let Some(mark) = failed.get(&version) {
                let line = format!("{}: {}", version.label(), mark.reason);
                if !skipped.contains(&line) {
                    skipped.push(line);
                }
            } else if is_verified(&version.dir) || failsafe.as_ref() == Some(&version.dir) {
                return Ok((version, skipped));
            }
        }
        Err(Error::failed(format!(
            "no healthy version older than {} to roll back to{}: choose one with fw-switch to \
             PATH (see fw-switch status)",
            current.name,
            if skipped.is_empty() {
                String::new()
            } else {
                format!(" (passed over {})", skipped.join("; "))
            }
        )))
    }

    /// `rollback`: back to the newest healthy version older than current
    /// (see [`Target::rollback_choice`]), then its pre- and post-install
    /// with FW_DIRECTION=rollback, as recover does after a failed upgrade.
    pub fn rollback(&self, hooks: &fw_hook::Settings) -> Result<RolledBack> {
        self.adopt()?;
        let current = self.link(CURRENT).ok_or_else(|| {
            Error::failed(format!(
                "{} has no current version to roll back from (see fw-switch status)",
                self.root.display()
            ))
        })?;
        let (choice, skipped) = self.rollback_choice(&current)?;
        for line in &skipped {
            fw_core::note!("passed over {line}");
        }
        let version = self.switch_to(&choice.dir)?;
        self.run_rollback_hooks(&version, Some(&current), hooks)
            .map_err(|e| {
                e.context(format!(
                    "current is {} now, but its rollback hooks failed",
                    choice.label()
                ))
            })?;
        Ok(RolledBack { version, skipped })
    }

    /// Runs `version`'s pre- and post-install with FW_DIRECTION=rollback,
    /// from the version `from`.
    pub fn run_rollback_hooks(
        &self,
        version: &Path,
        from: Option<&Path>,
        settings: &fw_hook::Settings,
    ) -> Result<()> {
        for name in [HookName::PreInstall, HookName::PostInstall] {
            let request = fw_hook::Request {
                name,
                version: version.to_path_buf(),
                target: self.root.clone(),
                given: fw_hook::GivenEnv {
                    from: Some(from.map(|f| f.as_os_str().to_owned()).unwrap_or_default()),
                    to: Some(version.as_os_str().to_owned()),
                    direction: Some("rollback".into()),
                },
                settings: settings.clone(),
            };
            fw_hook::run(
                &request,
                &fw_hook::Interrupt::new(),
                Box::new(std::io::stderr()),
            )?;
        }
        Ok(())
    }

    /// `failsafe`: to the failsafe version.
    pub fn to_failsafe(&self) -> Result<PathBuf> {
        self.adopt()?;
        let failsafe = self.link(FAILSAFE).ok_or_else(|| {
            Error::failed(format!(
                "{} has no failsafe version: set one with fw-switch set-failsafe PATH",
                self.root.display()
            ))
        })?;
        self.switch_to(&failsafe)
    }

    /// `set-failsafe PATH`: a verified version, not below the floor.
    pub fn set_failsafe(&self, version: &Path) -> Result<PathBuf> {
        self.adopt()?;
        let version = self.resolve_version(version)?;
        if !is_verified(&version) {
            return Err(Error::invalid(format!(
                "{} was not verified: run fw-verify on it first",
                version.display()
            )));
        }
        let info = Version::read(&version);
        check_floor(&info, fw_core::floor::read(&self.root)?)?;
        if let Some(mark) = Failed::load(&self.root)?.get(&info) {
            warn!(
                "{} is marked failed ({}): automatic rollbacks will not pick it",
                info.label(),
                mark.reason
            );
        }
        self.set_link(FAILSAFE, &version)?;
        Ok(version)
    }

    /// `commit`: the current version is good. Its probation ends, a failed
    /// mark on it is cleared, and the security floor rises to its
    /// security_version, so deleting newer versions cannot open the way to
    /// a downgrade. Warns when the failsafe falls below the floor. Returns
    /// the floor now in force.
    pub fn commit(&self) -> Result<u64> {
        self.adopt()?;
        let current = self
            .link(CURRENT)
            .ok_or_else(|| Error::failed("there is no current version to commit"))?;
        // An unusable floor fails here, before anything changes.
        fw_core::floor::read(&self.root)?;
        let version = Version::read(&current);
        if let Some(journal) = Journal::load(&self.root)? {
            if journal.phase == Phase::Pending && journal.to.as_deref() == Some(&version.name) {
                Journal::clear(&self.root)?;
            }
        }
        Failed::unmark(&self.root, &version.name)?;
        let floor = fw_core::floor::raise(&self.root, version.security_version())?;
        if let Some(failsafe) = self.link(FAILSAFE).map(|f| Version::read(&f)) {
            if failsafe.security_version() < floor {
                warn!(
                    "warning: the failsafe {} has security_version {}, below the security floor \
                     {floor}: `fw-switch failsafe` and automatic rollbacks will refuse it; make a \
                     newer version the failsafe (fw-switch set-failsafe current)",
                    failsafe.label(),
                    failsafe.security_version()
                );
            }
        }
        Ok(floor)
    }
}
