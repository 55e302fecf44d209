//! Housekeeping: `clean --keep N` (old versions and dead staging
//! directories), and the removal of trees that recover and clean share.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use fw_core::manifest::{Kind, Manifest};
use fw_core::target::{sync_dir, CURRENT, FAILSAFE, PREVIOUS};
use fw_core::{Error, Result};

use crate::failed::Failed;
use crate::target::{dir_name, Target};

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
pub fn remove_tree(path: &Path) -> Result<()> {
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

impl Target {
    /// Staging directories (of live or dead unpacks), by name.
    pub fn staging_dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(fw_core::target::staging_dir(&self.root))
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        dirs.sort();
        dirs
    }

    /// Removes staging directories whose fw-unpack is gone.
    pub fn clean_staging(&self) -> Result<u64> {
        let mut removed = 0;
        for dir in self.staging_dirs() {
            let alive = staging_pid(&dir_name(&dir)).is_some_and(pid_alive);
            if !alive {
                remove_tree(&dir)?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Removes a version directory and any failed mark it had. The version
    /// leaves the target by one rename (into `.fw/staging`, made durable)
    /// before its files are removed: a power cut never leaves a
    /// half-removed version under its name (the power cuts of
    /// tests/powercut found one), and what a cut leaves in staging,
    /// recover removes.
    pub fn remove_version(&self, dir: &Path) -> Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        let staging = fw_core::target::staging_dir(&self.root);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&staging)
            .map_err(|e| Error::io(staging.display(), e))?;
        let doomed = staging.join(format!("removing-{}-{}", dir_name(dir), std::process::id()));
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
        sync_dir(&staging)?;
        Failed::unmark(&self.root, &dir_name(dir))
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
        let mut removed = Vec::new();
        let mut freed = 0;
        for version in self.versions().into_iter().skip(keep) {
            if protected.contains(&version.dir) {
                continue;
            }
            freed += version
                .installed
                .as_ref()
                .map_or(0, |i| unshared_bytes(&version.dir, &i.manifest));
            self.remove_version(&version.dir)?;
            removed.push(version.name);
        }
        sync_dir(&self.root)?;
        self.clean_staging()?;
        Ok((removed, freed))
    }
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
}
