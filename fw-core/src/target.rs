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

/// Refuses `dir` (`TARGET/.fw` or a directory in it) if it is anything
/// but a real directory: a symlink planted there would send fw's state
/// (the lock, staging trees, the journal) wherever it points.
pub fn require_real_dir(dir: &Path) -> crate::Result<()> {
    match std::fs::symlink_metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(crate::Error::security(format!(
            "{} is not a directory (a symlink?): fw keeps its state in a real directory \
             there; remove it and try again",
            dir.display()
        ))),
        Err(e) => Err(crate::Error::io(dir.display(), e)),
    }
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

/// The security_version of every installed version (as
/// [`installed_versions`] finds them), read without keeping their entries:
/// for the anti-rollback floor, which needs nothing else.
pub fn installed_security_versions(target: &Path) -> Vec<u64> {
    #[derive(serde::Deserialize)]
    struct Head {
        security_version: u64,
    }
    let Ok(dir) = std::fs::read_dir(target) else {
        return Vec::new();
    };
    dir.flatten()
        .filter(|entry| {
            entry.file_type().map(|t| t.is_dir()).unwrap_or(false)
                && !entry.file_name().to_string_lossy().starts_with('.')
        })
        .filter_map(|entry| {
            let json = crate::verified::read_fw_file(
                &entry.path(),
                "manifest.json",
                crate::manifest::MAX_JSON,
            )
            .ok()?;
            // Entries are skipped by the parser, not built.
            serde_json::from_slice::<Head>(&json)
                .ok()
                .map(|head| head.security_version)
        })
        .collect()
}

/// The identity under which files are shared between versions: content,
/// mode, owner and extended attributes. Modification times are
/// deliberately not part of it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FileKey {
    /// The BLAKE3, as bytes: a root filesystem has tens of thousands.
    pub blake3: [u8; 32],
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// [`crate::xattrs::key`] of its extended attributes.
    pub xattrs: Option<[u8; 16]>,
}

impl FileKey {
    pub fn of(entry: &crate::manifest::Entry) -> Option<FileKey> {
        match (entry.kind, &entry.blake3) {
            (crate::manifest::Kind::File, Some(hash)) => Some(FileKey {
                blake3: *blake3::Hash::from_hex(hash).ok()?.as_bytes(),
                mode: entry.mode,
                uid: entry.uid,
                gid: entry.gid,
                xattrs: crate::xattrs::key(entry.xattrs.as_deref()),
            }),
            _ => None,
        }
    }

    fn hex(&self) -> String {
        blake3::Hash::from_bytes(self.blake3).to_hex().to_string()
    }
}

/// Files of the installed versions by identity, found through their
/// manifests, and the target's record of proven inodes
/// ([`crate::inodes`]): an installed file is shared only while it is
/// proven to hold what its manifest says, by the record or, failing that,
/// by hashing it now. One that differs (damaged, or changed on the device)
/// is reported with every version sharing its inode, and not shared: the
/// new version gets a fresh copy (or another installed one), so one bad
/// inode never blocks upgrades.
#[derive(Debug, Default)]
pub struct SharedFiles {
    target: PathBuf,
    /// The first installed file of each identity (the others are looked
    /// up only when it is damaged, to keep memory flat).
    files: std::collections::HashMap<FileKey, (PathBuf, u64)>,
    record: std::sync::Mutex<crate::inodes::Record>,
    /// Inodes found to differ from their manifests, reported once.
    damaged: std::sync::Mutex<std::collections::HashSet<(u64, u64)>>,
    /// The installed versions whole, read once if a first copy is not
    /// proven (to find another copy, or who shares a damaged one).
    versions: std::sync::OnceLock<Vec<Installed>>,
}

impl SharedFiles {
    pub fn of_target(target: &Path) -> SharedFiles {
        let mut files = std::collections::HashMap::new();
        for version in installed_versions(target) {
            for entry in &version.manifest.entries {
                if let Some(key) = FileKey::of(entry) {
                    let size = entry.size.unwrap_or(0);
                    files
                        .entry(key)
                        .or_insert_with(|| (version.dir.join(&entry.path), size));
                }
            }
        }
        SharedFiles {
            target: target.to_path_buf(),
            files,
            record: std::sync::Mutex::new(crate::inodes::Record::load(target)),
            damaged: Default::default(),
            versions: Default::default(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// The target's record of proven inodes.
    pub fn record(&self) -> std::sync::MutexGuard<'_, crate::inodes::Record> {
        self.record.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An installed file proven identical to `entry`, if any, and its
    /// metadata (for [`SharedFiles::linked`]).
    pub fn find(&self, entry: &crate::manifest::Entry) -> Option<(PathBuf, std::fs::Metadata)> {
        let key = FileKey::of(entry)?;
        let (first, size) = self.files.get(&key)?;
        if let Some(found) = self.proven(&key, first, *size) {
            return Some(found);
        }
        // The first is missing, changed or damaged: any other installed
        // copy (rare: the installed manifests are read again, once).
        self.versions()
            .iter()
            .flat_map(|version| {
                version
                    .manifest
                    .entries
                    .iter()
                    .filter(|e| FileKey::of(e).as_ref() == Some(&key))
                    .map(move |e| (version.dir.join(&e.path), e.size.unwrap_or(0)))
            })
            .filter(|(path, _)| path != first)
            .find_map(|(path, size)| self.proven(&key, &path, size))
    }

    fn versions(&self) -> &[Installed] {
        self.versions
            .get_or_init(|| installed_versions(&self.target))
    }

    /// `path` and its metadata if it holds `key`'s content, by the record
    /// or by hashing it now; a damaged inode is reported (once).
    fn proven(
        &self,
        key: &FileKey,
        path: &Path,
        size: u64,
    ) -> Option<(PathBuf, std::fs::Metadata)> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::symlink_metadata(path).ok()?;
        let inode = (meta.dev(), meta.ino());
        if !meta.is_file() || meta.len() != size || self.is_damaged(inode) {
            return None;
        }
        // Attributes are read each time (one listxattr): the record
        // proves content only.
        let xattrs = crate::xattrs::read(path).ok()?;
        if crate::xattrs::key(Some(&xattrs)) != key.xattrs {
            crate::warn!(
                "{}: its extended attributes differ from its signed manifest's (changed on \
                 the device?); not shared: the new version gets a fresh copy; check with \
                 fw-verify",
                path.display()
            );
            self.damaged
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(inode);
            return None;
        }
        let hex = key.hex();
        let mut record = self.record();
        if record.proves(&meta, &hex) {
            return Some((path.to_path_buf(), meta));
        }
        match record.hash_and_record(path, &hex, |_| ()) {
            // Hashed now: its metadata as recorded.
            Ok((_, hash)) if hash == hex => std::fs::symlink_metadata(path)
                .ok()
                .map(|meta| (path.to_path_buf(), meta)),
            Ok(_) => {
                drop(record);
                self.report_damaged(key, path, inode);
                None
            }
            Err(_) => None,
        }
    }

    fn is_damaged(&self, inode: (u64, u64)) -> bool {
        self.damaged
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&inode)
    }

    /// Warns once about an installed inode whose content differs from its
    /// manifest, naming every installed path that shares it.
    fn report_damaged(&self, key: &FileKey, path: &Path, inode: (u64, u64)) {
        use std::os::unix::fs::MetadataExt;
        self.damaged
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(inode);
        let mut sharing: Vec<String> = Vec::new();
        for version in self.versions() {
            for entry in &version.manifest.entries {
                let path = version.dir.join(&entry.path);
                let same = entry.kind == crate::manifest::Kind::File
                    && std::fs::symlink_metadata(&path).is_ok_and(|m| (m.dev(), m.ino()) == inode);
                if same {
                    sharing.push(path.display().to_string());
                }
            }
        }
        crate::warn!(
            "{}: its content differs from its signed manifest's BLAKE3 {} (damaged or \
             changed on the device); not shared: the new version gets a fresh copy; the \
             installed {} sharing it: {}: check with fw-verify",
            path.display(),
            &key.hex()[..16],
            if sharing.len() == 1 { "path" } else { "paths" },
            sharing.join(", ")
        );
    }

    /// After the caller linked the proven inode `before` describes to a
    /// new name: the record follows the ctime the link changed.
    pub fn linked(&self, source: &Path, before: &std::fs::Metadata) {
        if let Ok(after) = std::fs::symlink_metadata(source) {
            self.record().relinked(before, &after);
        }
    }

    /// Writes the record back; a failure only costs hashing again, so it
    /// is noted, not returned.
    pub fn save(&self) {
        if let Err(e) = self.record().save() {
            crate::detail!("the record of proven inodes was not saved: {e}");
        }
    }
}

/// Fsyncs a directory, so that entries created or renamed in it persist.
pub fn sync_dir(dir: &Path) -> crate::Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| crate::Error::io(format!("fsync {}", dir.display()), e))
}
