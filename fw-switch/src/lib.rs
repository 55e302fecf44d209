//! fw-switch: the target's links (`current`, `previous`, `failsafe`), and
//! the housekeeping around them.
//!
//! Every link is relative (`current -> sample-setup-3`) and replaced by
//! rename(2) of a freshly made link, then the target directory is fsynced,
//! so a power cut leaves either the old or the new link, never none.
//! `previous` moves before `current`, so at every instant `current` names
//! a complete version.

pub mod cli;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::Serialize;

use fw_core::journal::{Journal, Phase};
use fw_core::manifest::{Kind, Manifest, MANIFEST_PATH};
use fw_core::target::{sync_dir, CURRENT, FAILSAFE, PREVIOUS};
use fw_core::verified::is_verified;
use fw_core::{note, Error, Result};
use fw_hook::HookName;

/// A firmware target: the directory holding versions and links.
pub struct Target {
    pub root: PathBuf,
}

/// One installed version, for `status`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct VersionStatus {
    /// The directory's name in the target.
    pub dir: String,
    pub name: Option<String>,
    pub version: Option<String>,
    pub security_version: Option<u64>,
    pub created: Option<u64>,
    /// Bytes of file content in the version.
    pub size: u64,
    /// Of those, bytes in files shared (hard-linked) with another version.
    pub shared_bytes: u64,
    /// Which links name it.
    pub links: Vec<String>,
    pub verified: bool,
}

/// The whole target, for `status`.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub target: PathBuf,
    pub current: Option<String>,
    pub previous: Option<String>,
    pub failsafe: Option<String>,
    /// `current` is a real directory: a device set up by hand, not yet
    /// adopted (any mutating command adopts it).
    pub current_is_directory: bool,
    pub security_floor: u64,
    pub versions: Vec<VersionStatus>,
    /// Staging directories left by unpacks (of live or dead processes).
    pub staging: Vec<String>,
    /// The transaction in flight, or the version on probation (`pending`).
    pub transaction: Option<Journal>,
}

fn manifest_of(dir: &Path) -> Option<(Manifest, Vec<u8>)> {
    let json = std::fs::read(dir.join(MANIFEST_PATH)).ok()?;
    Manifest::from_json(&json).ok().map(|m| (m, json))
}

/// True if process `pid` runs (a zombie, killed but not yet reaped, does
/// not: it will write nothing more).
fn pid_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which ends with the last ')'.
        Ok(stat) => !matches!(
            stat.rsplit(')')
                .next()
                .and_then(|rest| rest.split_whitespace().next()),
            Some("Z" | "X" | "x")
        ),
        // With /proc mounted, no entry is no process; without it, ask kill(2).
        Err(_) if std::path::Path::new("/proc/self").exists() => false,
        Err(_) => {
            use nix::sys::signal::kill;
            use nix::unistd::Pid;
            !matches!(
                kill(Pid::from_raw(pid), None),
                Err(nix::errno::Errno::ESRCH)
            )
        }
    }
}

/// The pid in a staging directory's name (`unpack-PID-XXXX`).
fn staging_pid(name: &str) -> Option<i32> {
    name.strip_prefix("unpack-")?
        .split('-')
        .next()?
        .parse()
        .ok()
}

/// Removes a tree, making its directories writable first if needed (a
/// version may hold read-only directories; its directories are never
/// shared with another version, only its files are).
fn remove_tree(path: &Path) -> Result<()> {
    if std::fs::remove_dir_all(path).is_ok() || !path.exists() {
        return Ok(());
    }
    for entry in walkdir::WalkDir::new(path)
        .follow_links(false)
        .into_iter()
        .flatten()
    {
        if entry.file_type().is_dir() {
            let _ = std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o700));
        }
    }
    std::fs::remove_dir_all(path).map_err(|e| Error::io(format!("removing {}", path.display()), e))
}

impl Target {
    pub fn new(root: &Path) -> Result<Target> {
        if !root.is_dir() {
            return Err(Error::failed(format!(
                "target {} is not a directory: create it, or give --target",
                root.display()
            )));
        }
        let root = root
            .canonicalize()
            .map_err(|e| Error::io(root.display(), e))?;
        Ok(Target { root })
    }

    /// The version a link names, if the link exists and names a directory
    /// of the target.
    pub fn link(&self, name: &str) -> Option<PathBuf> {
        let link = self.root.join(name);
        let meta = std::fs::symlink_metadata(&link).ok()?;
        if !meta.file_type().is_symlink() {
            return None;
        }
        let dest = std::fs::read_link(&link).ok()?;
        let dir = self.root.join(dest);
        dir.is_dir().then_some(dir)
    }

    fn link_name(&self, name: &str) -> Option<String> {
        self.link(name)
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
    }

    /// Points link `name` at `version` (a directory of the target), by a
    /// relative symlink renamed into place, made durable.
    pub fn set_link(&self, name: &str, version: &Path) -> Result<()> {
        let dir_name = version
            .file_name()
            .ok_or_else(|| Error::usage(format!("{} is not a version", version.display())))?;
        let tmp = self
            .root
            .join(format!(".{name}.tmp-{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(dir_name, &tmp)
            .and_then(|()| std::fs::rename(&tmp, self.root.join(name)))
            .map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                Error::io(
                    format!("setting {} -> {}", name, dir_name.to_string_lossy()),
                    e,
                )
            })?;
        sync_dir(&self.root)
    }

    /// Resolves a version argument: a path, or a directory name in the
    /// target, or a link name. It must be a directory directly in the target.
    pub fn resolve_version(&self, arg: &Path) -> Result<PathBuf> {
        let candidate = if arg.exists() {
            arg.to_path_buf()
        } else {
            self.root.join(arg)
        };
        let path = candidate.canonicalize().map_err(|_| {
            Error::usage(format!(
                "{} is not a version of {}: give a path from fw-fixate or a directory name \
                 (see fw-switch status)",
                arg.display(),
                self.root.display()
            ))
        })?;
        if path.parent() != Some(self.root.as_path()) || !path.is_dir() {
            return Err(Error::usage(format!(
                "{} is not a version directory of {}",
                path.display(),
                self.root.display()
            )));
        }
        Ok(path)
    }

    /// Adopts a `current` that is a real directory (a device set up by hand,
    /// as Fussy did): it becomes a version and the failsafe, and `current`
    /// a link to it. Returns the adopted version.
    pub fn adopt(&self) -> Result<Option<PathBuf>> {
        let current = self.root.join(CURRENT);
        let is_dir = std::fs::symlink_metadata(&current)
            .map(|m| m.is_dir())
            .unwrap_or(false);
        if !is_dir {
            return Ok(None);
        }
        let base = manifest_of(&current)
            .map(|(m, _)| m.name)
            .unwrap_or_else(|| "factory".to_string());
        let mut adopted = None;
        for n in 0..10_000u32 {
            let name = if n == 0 {
                base.clone()
            } else {
                format!("{base}-{n}")
            };
            let dest = self.root.join(&name);
            if dest.symlink_metadata().is_ok() {
                continue;
            }
            use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};
            match renameat2(
                AT_FDCWD,
                &current,
                AT_FDCWD,
                &dest,
                RenameFlags::RENAME_NOREPLACE,
            ) {
                Ok(()) => {
                    adopted = Some(dest);
                    break;
                }
                Err(nix::errno::Errno::EEXIST) => continue,
                Err(e) => return Err(Error::io(current.display(), e.into())),
            }
        }
        let adopted = adopted.ok_or_else(|| Error::failed("no free name to adopt current"))?;
        sync_dir(&self.root)?;
        self.set_link(CURRENT, &adopted)?;
        if self.link(FAILSAFE).is_none() {
            self.set_link(FAILSAFE, &adopted)?;
        }
        note!(
            "adopted the hand-made {} as version {} and failsafe",
            current.display(),
            adopted.display()
        );
        Ok(Some(adopted))
    }

    /// `to PATH`: previous := current, current := PATH.
    pub fn switch_to(&self, version: &Path) -> Result<PathBuf> {
        self.adopt()?;
        let version = self.resolve_version(version)?;
        let is_failsafe = self.link(FAILSAFE).as_deref() == Some(version.as_path());
        if !is_verified(&version) && !is_failsafe {
            return Err(Error::invalid(format!(
                "{} was not verified: run fw-verify on it first",
                version.display()
            )));
        }
        match self.link(CURRENT) {
            Some(current) if current == version => {}
            Some(current) => {
                self.set_link(PREVIOUS, &current)?;
                self.set_link(CURRENT, &version)?;
            }
            None => self.set_link(CURRENT, &version)?,
        }
        Ok(version)
    }

    /// `rollback`: back to `previous` (which becomes the one rolled back from).
    pub fn rollback(&self) -> Result<PathBuf> {
        self.adopt()?;
        let previous = self.link(PREVIOUS).ok_or_else(|| {
            Error::failed(format!(
                "{} has no previous version to roll back to (see fw-switch status)",
                self.root.display()
            ))
        })?;
        self.switch_to(&previous)
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

    pub fn set_failsafe(&self, version: &Path) -> Result<PathBuf> {
        self.adopt()?;
        let version = self.resolve_version(version)?;
        if !is_verified(&version) {
            return Err(Error::invalid(format!(
                "{} was not verified: run fw-verify on it first",
                version.display()
            )));
        }
        self.set_link(FAILSAFE, &version)?;
        Ok(version)
    }

    /// `commit`: the current version is good; raise the anti-rollback floor
    /// to its security_version, so deleting newer versions cannot open the
    /// way to a downgrade.
    pub fn commit(&self) -> Result<u64> {
        self.adopt()?;
        let current = self
            .link(CURRENT)
            .ok_or_else(|| Error::failed("there is no current version to commit"))?;
        let security_version = manifest_of(&current)
            .map(|(m, _)| m.security_version)
            .unwrap_or(0);
        // Probation ends for the version that is current.
        if let Some(journal) = Journal::load(&self.root)? {
            let current_name = current.file_name().and_then(|n| n.to_str());
            if journal.phase == Phase::Pending && journal.to.as_deref() == current_name {
                Journal::clear(&self.root)?;
            }
        }
        let floor = self.security_floor();
        if security_version > floor {
            let state = fw_core::target::state_dir(&self.root);
            std::fs::create_dir_all(&state).map_err(|e| Error::io(state.display(), e))?;
            let tmp = state.join(".security-floor.tmp");
            let file = state.join("security-floor");
            std::fs::write(&tmp, format!("{security_version}\n"))
                .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
                .and_then(|()| std::fs::rename(&tmp, &file))
                .map_err(|e| Error::io(file.display(), e))?;
            sync_dir(&state)?;
        }
        Ok(security_version.max(floor))
    }

    pub fn security_floor(&self) -> u64 {
        std::fs::read_to_string(fw_core::target::state_dir(&self.root).join("security-floor"))
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Version directories of the target (with or without a manifest).
    fn version_dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(&self.root)
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
                    .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                    .filter(|e| e.file_name() != CURRENT)
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default();
        dirs.sort();
        dirs
    }

    fn staging_dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(fw_core::target::staging_dir(&self.root))
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        dirs.sort();
        dirs
    }

    pub fn status(&self) -> Status {
        let links = [
            (CURRENT, self.link_name(CURRENT)),
            (PREVIOUS, self.link_name(PREVIOUS)),
            (FAILSAFE, self.link_name(FAILSAFE)),
        ];
        let versions = self
            .version_dirs()
            .into_iter()
            .map(|dir| {
                let dir_name = dir
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned();
                let manifest = manifest_of(&dir).map(|(m, _)| m);
                let (size, shared_bytes) =
                    manifest.as_ref().map(|m| sizes(&dir, m)).unwrap_or((0, 0));
                VersionStatus {
                    links: links
                        .iter()
                        .filter(|(_, n)| n.as_deref() == Some(dir_name.as_str()))
                        .map(|(l, _)| l.to_string())
                        .collect(),
                    name: manifest.as_ref().map(|m| m.name.clone()),
                    version: manifest.as_ref().map(|m| m.version.clone()),
                    security_version: manifest.as_ref().map(|m| m.security_version),
                    created: manifest.as_ref().map(|m| m.created),
                    verified: is_verified(&dir),
                    dir: dir_name,
                    size,
                    shared_bytes,
                }
            })
            .collect();
        Status {
            target: self.root.clone(),
            current: links[0].1.clone(),
            previous: links[1].1.clone(),
            failsafe: links[2].1.clone(),
            current_is_directory: std::fs::symlink_metadata(self.root.join(CURRENT))
                .map(|m| m.is_dir())
                .unwrap_or(false),
            security_floor: self.security_floor(),
            versions,
            transaction: Journal::load(&self.root).ok().flatten(),
            staging: self
                .staging_dirs()
                .iter()
                .map(|p| {
                    p.file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned()
                })
                .collect(),
        }
    }

    /// Removes staging directories whose fw-unpack is gone.
    fn clean_staging(&self) -> Result<u64> {
        let mut removed = 0;
        for dir in self.staging_dirs() {
            let name = dir
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let alive = staging_pid(&name).is_some_and(pid_alive);
            if !alive {
                remove_tree(&dir)?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Takes a version out of the target by one rename (into `.fw/staging`,
    /// made durable) before removing its files: a power cut never leaves a
    /// half-removed version under its name (the power cuts of
    /// tests/powercut found one), and what is left in staging, recover
    /// removes.
    fn remove_version(&self, dir: &Path) -> Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        let staging = fw_core::target::staging_dir(&self.root);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&staging)
            .map_err(|e| Error::io(staging.display(), e))?;
        let name = dir.file_name().unwrap_or_default().to_string_lossy();
        let doomed = staging.join(format!("removing-{name}-{}", std::process::id()));
        std::fs::rename(dir, &doomed)
            .or_else(|e| {
                // Moving a directory rewrites its `..`: it must be writable.
                if e.kind() != std::io::ErrorKind::PermissionDenied {
                    return Err(e);
                }
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
                std::fs::rename(dir, &doomed)
            })
            .map_err(|e| Error::io(format!("removing {}", dir.display()), e))?;
        sync_dir(&self.root)?;
        sync_dir(&staging)?;
        remove_tree(&doomed)?;
        sync_dir(&staging)
    }

    /// `clean --keep N`: removes versions beyond the N newest, never one a
    /// link names; and dead staging directories. Returns (removed version
    /// names, bytes freed).
    pub fn clean(&self, keep: usize) -> Result<(Vec<String>, u64)> {
        self.adopt()?;
        let protected: Vec<PathBuf> = [CURRENT, PREVIOUS, FAILSAFE]
            .iter()
            .filter_map(|l| self.link(l))
            .collect();
        let mut versions: Vec<(u64, PathBuf)> = self
            .version_dirs()
            .into_iter()
            .map(|d| (manifest_of(&d).map(|(m, _)| m.created).unwrap_or(0), d))
            .collect();
        // Newest first; the directory name breaks ties (NAME-2 after NAME-1).
        versions.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| b.1.cmp(&a.1)));
        let mut removed = Vec::new();
        let mut freed = 0;
        for (_, dir) in versions.into_iter().skip(keep) {
            if protected.contains(&dir) {
                continue;
            }
            freed += manifest_of(&dir)
                .map(|(m, _)| unshared_bytes(&dir, &m))
                .unwrap_or(0);
            self.remove_version(&dir)?;
            removed.push(
                dir.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
            );
        }
        sync_dir(&self.root)?;
        self.clean_staging()?;
        Ok((removed, freed))
    }

    /// `recover` (run at every boot, and by fw-install before and after a
    /// failure): adopts a hand-made `current`, removes leftover temporary
    /// links and dead staging directories, then finishes or undoes the
    /// transaction the journal names:
    ///
    /// - before the switch (unpacking … pre-install, or switching with
    ///   `current` still the old version): undone, the new version removed;
    /// - after the switch (switching with `current` on the new version,
    ///   post-install, rolling-back): rolled back, as fw-install does when a
    ///   post-install fails: the previous version is linked and its pre- and
    ///   post-install run with FW_DIRECTION=rollback; if that fails, the
    ///   failsafe the same way. (Re-running the new version's post-install
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
        for entry in std::fs::read_dir(&self.root)
            .map_err(|e| Error::io(self.root.display(), e))?
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            let is_tmp_link = name.starts_with('.') && name.contains(".tmp-");
            if is_tmp_link && entry.file_type().map(|t| t.is_symlink()).unwrap_or(false) {
                std::fs::remove_file(entry.path())
                    .map_err(|e| Error::io(entry.path().display(), e))?;
                done.push(format!("removed {name}"));
            }
        }
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
                    outcome = self.undo(&journal, &mut done)?;
                }
                Phase::Switching if !on_new => outcome = self.undo(&journal, &mut done)?,
                Phase::Switching | Phase::PostInstall | Phase::RollingBack => {
                    outcome = self.roll_back(&mut journal, options, &mut done)?;
                }
                Phase::Pending if !on_new => {
                    // Switched away by hand: nothing is on probation any more.
                    Journal::clear(&self.root)?;
                    done.push("probation ended: current is no longer the pending version".into());
                }
                Phase::Pending if options.count_boot => {
                    journal.boots += 1;
                    if journal.boots >= options.max_boots {
                        done.push(format!(
                            "{} was not committed after {} boots",
                            journal.to.as_deref().unwrap_or("?"),
                            journal.boots
                        ));
                        outcome = self.roll_back(&mut journal, options, &mut done)?;
                    } else {
                        journal.save(&self.root)?;
                        done.push(format!(
                            "{} pending: boot {} of {} without a commit",
                            journal.to.as_deref().unwrap_or("?"),
                            journal.boots,
                            options.max_boots
                        ));
                    }
                }
                Phase::Pending => {}
            }
        }

        if self.link(CURRENT).is_none() && matches!(outcome, Outcome::Consistent) {
            let fallback = [FAILSAFE, PREVIOUS]
                .iter()
                .find_map(|l| self.link(l))
                .or_else(|| {
                    self.version_dirs()
                        .into_iter()
                        .filter(|d| is_verified(d))
                        .max_by_key(|d| manifest_of(d).map(|(m, _)| m.created).unwrap_or(0))
                });
            if let Some(version) = fallback {
                self.set_link(CURRENT, &version)?;
                done.push(format!("current -> {}", version.display()));
            }
        }
        Ok(Recovered { done, outcome })
    }

    /// Undoes a transaction that had not switched: removes its new version.
    fn undo(&self, journal: &Journal, done: &mut Vec<String>) -> Result<Outcome> {
        if let Some(to) = &journal.to {
            let dir = self.root.join(to);
            let linked = [CURRENT, PREVIOUS, FAILSAFE]
                .iter()
                .any(|l| self.link(l).as_deref() == Some(dir.as_path()));
            if dir.is_dir() && !linked {
                remove_tree(&dir)?;
                sync_dir(&self.root)?;
                done.push(format!("removed the unfinished install {to}"));
            }
        }
        Journal::clear(&self.root)?;
        done.push(format!(
            "undid the install interrupted in phase {}",
            journal.phase.as_str()
        ));
        Ok(Outcome::Undone)
    }

    /// Goes back from the journal's new version to its previous one (link,
    /// then pre- and post-install with FW_DIRECTION=rollback), else to the
    /// failsafe the same way; never past the failsafe.
    fn roll_back(
        &self,
        journal: &mut Journal,
        options: &RecoverOptions,
        done: &mut Vec<String>,
    ) -> Result<Outcome> {
        journal.phase = Phase::RollingBack;
        journal.save(&self.root)?;
        let failed = journal.to.as_ref().map(|n| self.root.join(n));
        let from = journal
            .from
            .as_ref()
            .map(|n| self.root.join(n))
            .filter(|p| p.is_dir() && Some(p) != failed.as_ref());
        let failsafe = self.link(FAILSAFE).filter(|p| Some(p) != failed.as_ref());

        let re_enable = |version: &Path| -> bool {
            if let Err(e) = self.switch_to(version) {
                fw_core::note!("cannot switch back to {}: {}", version.display(), e.message);
                return false;
            }
            [HookName::PreInstall, HookName::PostInstall]
                .into_iter()
                .all(|hook| self.run_rollback_hook(hook, version, failed.as_deref(), options))
        };
        if let Some(from) = &from {
            if re_enable(from) {
                Journal::clear(&self.root)?;
                done.push(format!("rolled back to {}", from.display()));
                return Ok(Outcome::RolledBack(from.clone()));
            }
        }
        if let Some(failsafe) = failsafe.filter(|f| Some(f) != from.as_ref()) {
            let hooks_ok = re_enable(&failsafe);
            Journal::clear(&self.root)?;
            done.push(format!(
                "on the failsafe {}{}",
                failsafe.display(),
                if hooks_ok {
                    ""
                } else {
                    " (its hooks failed too)"
                }
            ));
            return Ok(Outcome::Failsafe(failsafe));
        }
        if journal.from.is_none() {
            // A first install: nothing to go back to but nothing at all.
            let _ = std::fs::remove_file(self.root.join(CURRENT));
            if let Some(failed) = &failed {
                remove_tree(failed)?;
            }
            sync_dir(&self.root)?;
            Journal::clear(&self.root)?;
            done.push("undid a first install".into());
            return Ok(Outcome::Undone);
        }
        Journal::clear(&self.root)?;
        Ok(Outcome::Stuck(format!(
            "neither the previous version nor a failsafe could be re-enabled; current is {}",
            self.link_name(CURRENT).unwrap_or_else(|| "unset".into())
        )))
    }

    fn run_rollback_hook(
        &self,
        hook: HookName,
        version: &Path,
        failed: Option<&Path>,
        options: &RecoverOptions,
    ) -> bool {
        let request = fw_hook::Request {
            name: hook,
            version: version.to_path_buf(),
            target: self.root.clone(),
            given: fw_hook::GivenEnv {
                from: Some(failed.map(|f| f.as_os_str().to_owned()).unwrap_or_default()),
                to: Some(version.as_os_str().to_owned()),
                direction: Some("rollback".into()),
            },
            settings: options.hooks.clone(),
        };
        match fw_hook::run(
            &request,
            &fw_hook::Interrupt::new(),
            Box::new(std::io::stderr()),
        ) {
            Ok(_) => true,
            Err(e) => {
                fw_core::warn!("{}", e.message);
                false
            }
        }
    }
}

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
    /// Nothing could be re-enabled (exit 1).
    Stuck(String),
}

/// What `recover` did, for the report.
#[derive(Debug, Clone)]
pub struct Recovered {
    pub done: Vec<String>,
    pub outcome: Outcome,
}

/// Bytes of file content in a version, and of those, bytes in inodes
/// linked more than once (shared with other versions).
fn sizes(dir: &Path, manifest: &Manifest) -> (u64, u64) {
    let mut size = 0;
    let mut shared = 0;
    for entry in manifest
        .entries
        .iter()
        .filter(|e| e.kind == Kind::File && e.hardlink.is_none())
    {
        let bytes = entry.size.unwrap_or(0);
        size += bytes;
        if std::fs::symlink_metadata(dir.join(&entry.path)).is_ok_and(|m| m.nlink() > 1) {
            shared += bytes;
        }
    }
    (size, shared)
}

/// Bytes that removing the version frees: files no other version links.
fn unshared_bytes(dir: &Path, manifest: &Manifest) -> u64 {
    manifest
        .entries
        .iter()
        .filter(|e| e.kind == Kind::File && e.hardlink.is_none())
        .filter(|e| std::fs::symlink_metadata(dir.join(&e.path)).is_ok_and(|m| m.nlink() == 1))
        .map(|e| e.size.unwrap_or(0))
        .sum()
}

/// What `link-tree` did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LinkTreeReport {
    pub linked: u64,
    pub unchanged: u64,
    pub skipped: Vec<PathBuf>,
    pub dirs_created: u64,
}

/// Fussy's link-tree: symlinks every file and symlink under `src` into
/// `dest`, creating directories; a path already linked right is left
/// alone; a real file or other link is replaced only with `force`. Every
/// directory it changed is fsynced before it returns.
pub fn link_tree(src: &Path, dest: &Path, force: bool) -> Result<LinkTreeReport> {
    if !src.is_dir() {
        return Err(Error::usage(format!(
            "{} is not a directory",
            src.display()
        )));
    }
    let src_abs = if src.is_absolute() {
        src.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| Error::io("the current directory", e))?
            .join(src)
    };
    let mut report = LinkTreeReport::default();
    // Directories whose entries changed: fsynced at the end, so that what
    // the report says is linked survives a power cut.
    let mut changed = std::collections::BTreeSet::<PathBuf>::new();
    for entry in walkdir::WalkDir::new(&src_abs)
        .min_depth(1)
        .follow_links(false)
        .sort_by_file_name()
    {
        let entry = entry.map_err(|e| Error::failed(format!("{}: {e}", src.display())))?;
        let rel = entry.path().strip_prefix(&src_abs).expect("below src");
        let out = dest.join(rel);
        let link_to = src_abs.join(rel);
        let existing = std::fs::symlink_metadata(&out).ok();
        if entry.file_type().is_dir() {
            match existing {
                Some(m) if m.is_dir() => {}
                Some(_) if !force => {
                    report.skipped.push(out);
                }
                _ => {
                    if existing.is_some() {
                        std::fs::remove_file(&out).map_err(|e| Error::io(out.display(), e))?;
                    }
                    std::fs::create_dir_all(&out).map_err(|e| Error::io(out.display(), e))?;
                    changed.extend(out.parent().map(Path::to_path_buf));
                    changed.insert(out);
                    report.dirs_created += 1;
                }
            }
            continue;
        }
        match existing {
            Some(m)
                if m.file_type().is_symlink()
                    && std::fs::read_link(&out).ok().as_deref() == Some(link_to.as_path()) =>
            {
                report.unchanged += 1;
            }
            Some(m) if m.is_dir() => report.skipped.push(out),
            Some(_) if !force => report.skipped.push(out),
            _ => {
                if let Some(parent) = out.parent() {
                    if !parent.is_dir() {
                        report.skipped.push(out);
                        continue;
                    }
                }
                let tmp = out.with_file_name(format!(
                    ".{}.fw-link-tree",
                    out.file_name().unwrap_or_default().to_string_lossy()
                ));
                let _ = std::fs::remove_file(&tmp);
                std::os::unix::fs::symlink(&link_to, &tmp)
                    .and_then(|()| std::fs::rename(&tmp, &out))
                    .map_err(|e| Error::io(out.display(), e))?;
                changed.extend(out.parent().map(Path::to_path_buf));
                report.linked += 1;
            }
        }
    }
    for dir in &changed {
        sync_dir(dir)?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_pids_parse() {
        assert_eq!(staging_pid("unpack-1234-AbCd"), Some(1234));
        assert_eq!(staging_pid("other"), None);
        assert!(pid_alive(std::process::id() as i32));
    }

    #[test]
    fn link_tree_is_idempotent_and_never_overwrites_without_force() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        std::fs::create_dir_all(src.join("etc/app")).unwrap();
        std::fs::write(src.join("etc/app/conf"), b"x").unwrap();
        std::fs::write(src.join("etc/real"), b"y").unwrap();
        let dest = tmp.path().join("dest");
        std::fs::create_dir_all(dest.join("etc")).unwrap();
        std::fs::write(dest.join("etc/real"), b"mine").unwrap();

        let first = link_tree(&src, &dest, false).unwrap();
        assert_eq!(first.linked, 1);
        assert_eq!(first.skipped, vec![dest.join("etc/real")]);
        assert_eq!(std::fs::read(dest.join("etc/app/conf")).unwrap(), b"x");
        assert_eq!(std::fs::read(dest.join("etc/real")).unwrap(), b"mine");
        let again = link_tree(&src, &dest, false).unwrap();
        assert_eq!((again.linked, again.unchanged), (0, 1));
        let forced = link_tree(&src, &dest, true).unwrap();
        assert_eq!(forced.linked, 1);
        assert_eq!(std::fs::read(dest.join("etc/real")).unwrap(), b"y");
    }
}
