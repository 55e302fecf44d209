//! The on-device layout of DESIGN.md: where the target is and the paths
//! fw keeps inside it.

use std::path::{Path, PathBuf};

/// Where the target is when `--target` is not given.
pub const DEFAULT_TARGET: &str = "/opt/firmware";

/// `--target T`, else `FW_TARGET`, else `/opt/firmware`.
pub fn resolve(arg: Option<&Path>) -> PathBuf {
    if let Some(path) = arg {
        return path.to_path_buf();
    }
    match std::env::var_os("FW_TARGET") {
        Some(value) if !value.is_empty() => PathBuf::from(value),
        _ => PathBuf::from(DEFAULT_TARGET),
    }
}

/// `TARGET/.fw`: fw's own state.
pub fn state_dir(target: &Path) -> PathBuf {
    target.join(".fw")
}

/// `TARGET/.fw/staging`: fw-unpack's work, on the target's filesystem.
pub fn staging_dir(target: &Path) -> PathBuf {
    state_dir(target).join("staging")
}

/// `TARGET/.fw/lock`: one writer at a time.
pub fn lock_path(target: &Path) -> PathBuf {
    state_dir(target).join("lock")
}

/// The links fw keeps in a target.
pub const CURRENT: &str = "current";
pub const PREVIOUS: &str = "previous";
pub const FAILSAFE: &str = "failsafe";

/// An installed version: a directory directly in the target with a
/// manifest.
#[derive(Debug, Clone)]
pub struct Installed {
    pub dir: PathBuf,
    pub manifest: crate::manifest::Manifest,
    /// The BLAKE3 of its manifest's bytes: equal digests, identical versions.
    pub digest: String,
}

impl Installed {
    /// The version in `dir`: its manifest, read as every tool reads it
    /// (relative to `.fw/`, no symlink followed, at most the manifest's
    /// bound), and parsed.
    pub fn load(dir: &Path) -> crate::Result<Installed> {
        use crate::manifest::{Manifest, MANIFEST_PATH, MAX_JSON};
        let json = crate::verified::read_fw_file(dir, "manifest.json", MAX_JSON).map_err(|e| {
            crate::Error::invalid(format!(
                "{}: not an fw version tree (no readable {MANIFEST_PATH}: {e})",
                dir.display()
            ))
        })?;
        let manifest = Manifest::from_json(&json).map_err(|e| e.context(dir.display()))?;
        Ok(Installed {
            dir: dir.to_path_buf(),
            manifest,
            digest: Manifest::digest(&json),
        })
    }

    /// The version in `dir`, if it has a readable manifest.
    pub fn read(dir: &Path) -> Option<Installed> {
        Installed::load(dir).ok()
    }
}

/// Every installed version of the target, by directory name. Directories
/// without a readable manifest (e.g. a tree adopted from a hand-made
/// device) are left out.
pub fn installed_versions(target: &Path) -> Vec<Installed> {
    let Ok(dir) = std::fs::read_dir(target) else {
        return Vec::new();
    };
    let mut versions: Vec<Installed> = dir
        .flatten()
        .filter(|entry| {
            entry.file_type().map(|t| t.is_dir()).unwrap_or(false)
                && !entry.file_name().to_string_lossy().starts_with('.')
        })
        .filter_map(|entry| Installed::read(&entry.path()))
        .collect();
    versions.sort_by(|a, b| a.dir.cmp(&b.dir));
    versions
}

/// The identity under which files are shared between versions: content,
/// mode and owner. Modification times are deliberately not part of it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FileKey {
    pub blake3: String,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

impl FileKey {
    pub fn of(entry: &crate::manifest::Entry) -> Option<FileKey> {
        match (entry.kind, &entry.blake3) {
            (crate::manifest::Kind::File, Some(hash)) => Some(FileKey {
                blake3: hash.clone(),
                mode: entry.mode,
                uid: entry.uid,
                gid: entry.gid,
            }),
            _ => None,
        }
    }
}

/// Files of the installed versions by identity, found through their
/// manifests (installed trees are not hashed again).
#[derive(Debug, Default)]
pub struct SharedFiles {
    files: std::collections::HashMap<FileKey, (PathBuf, u64)>,
}

impl SharedFiles {
    pub fn of_target(target: &Path) -> SharedFiles {
        let mut shared = SharedFiles::default();
        for version in installed_versions(target) {
            for entry in &version.manifest.entries {
                if let Some(key) = FileKey::of(entry) {
                    let size = entry.size.unwrap_or(0);
                    shared
                        .files
                        .entry(key)
                        .or_insert_with(|| (version.dir.join(&entry.path), size));
                }
            }
        }
        shared
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// An installed file identical to `entry`, if any. Its size on disk is
    /// checked too, so that a file truncated or grown by someone else is
    /// not shared (fw-verify names such edits).
    pub fn find(&self, entry: &crate::manifest::Entry) -> Option<&Path> {
        let key = FileKey::of(entry)?;
        let (path, size) = self.files.get(&key)?;
        let meta = std::fs::symlink_metadata(path).ok()?;
        (meta.is_file() && meta.len() == *size).then_some(path.as_path())
    }
}

/// Fsyncs a directory, so that entries created or renamed in it persist.
pub fn sync_dir(dir: &Path) -> crate::Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| crate::Error::io(format!("fsync {}", dir.display()), e))
}
