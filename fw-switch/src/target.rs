//! The target directory: its versions and its links (`current`,
//! `previous`, `failsafe`).
//!
//! Every link is relative (`current -> sample-setup-3`) and replaced by
//! rename(2) of a freshly made link, then the target directory is fsynced,
//! so a power cut leaves either the old or the new link, never none.

use std::path::{Path, PathBuf};

use fw_core::target::{sync_dir, Installed, CURRENT, FAILSAFE};
use fw_core::{note, Error, Result};

/// A firmware target: the directory holding versions and links.
pub struct Target {
    pub root: PathBuf,
}

/// A directory of the target that holds a version, with its manifest when
/// it has one (an adopted hand-made tree has none).
#[derive(Debug, Clone)]
pub struct Version {
    pub dir: PathBuf,
    /// The directory's name in the target.
    pub name: String,
    pub installed: Option<Installed>,
}

impl Version {
    pub fn read(dir: &Path) -> Version {
        Version {
            dir: dir.to_path_buf(),
            name: dir_name(dir),
            installed: Installed::read(dir),
        }
    }

    /// Its security_version; 0 without a manifest (nothing proves more).
    pub fn security_version(&self) -> u64 {
        self.installed
            .as_ref()
            .map_or(0, |i| i.manifest.security_version)
    }

    /// The manifest's version string, if any.
    pub fn version(&self) -> Option<&str> {
        self.installed.as_ref().map(|i| i.manifest.version.as_str())
    }

    /// `fw-2 (3.0)`: the directory and the version it holds.
    pub fn label(&self) -> String {
        match self.version() {
            Some(v) => format!("{} ({v})", self.name),
            None => self.name.clone(),
        }
    }

    /// What "newest" means: the manifest's `created` (when the vendor
    /// packed it), then the directory's name in natural order (NAME-2
    /// before NAME-10), so ties go to the later install.
    pub fn age(&self) -> (u64, usize, &str) {
        let created = self.installed.as_ref().map_or(0, |i| i.manifest.created);
        (created, self.name.len(), self.name.as_str())
    }
}

/// The last component of a path, as a string.
pub fn dir_name(path: &Path) -> String {
    path.file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
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

    /// The directory name a link names.
    pub fn link_name(&self, name: &str) -> Option<String> {
        self.link(name).map(|p| dir_name(&p))
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
        // Missing: exit 1, as a missing path in every tool.
        let path = candidate.canonicalize().map_err(|_| {
            Error::failed(format!(
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

    /// Version directories of the target (with or without a manifest), by
    /// name.
    pub fn version_dirs(&self) -> Vec<PathBuf> {
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

    /// Every version of the target, newest first (see [`Version::age`]).
    pub fn versions(&self) -> Vec<Version> {
        let mut versions: Vec<Version> = self
            .version_dirs()
            .iter()
            .map(|d| Version::read(d))
            .collect();
        versions.sort_by(|a, b| b.age().cmp(&a.age()));
        versions
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
        let base = Installed::read(&current)
            .map(|i| i.manifest.name)
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
}
