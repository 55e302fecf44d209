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
        let (manifest, digest) = load_manifest(dir)?;
        Ok(Installed {
            dir: dir.to_path_buf(),
            manifest,
            digest,
        })
    }

    /// The version in `dir`, if it has a readable manifest.
    pub fn read(dir: &Path) -> Option<Installed> {
        Installed::load(dir).ok()
    }
}

/// A manifest's bytes as they are read: hashed on the way (its digest),
/// at most `limit` of them, the first read error kept for the caller.
struct Streamed {
    file: std::fs::File,
    hasher: blake3::Hasher,
    read: u64,
    limit: u64,
    failed: Option<std::io::Error>,
}

impl Streamed {
    fn new(file: std::fs::File, limit: u64) -> Streamed {
        Streamed {
            file,
            hasher: blake3::Hasher::new(),
            read: 0,
            limit,
            failed: None,
        }
    }

    /// Reads what is left (after a parse error: a read error or too many
    /// bytes further on is what reading it whole would have reported).
    fn drain(&mut self) {
        let _ = std::io::copy(self, &mut std::io::sink());
    }

    fn digest(&self) -> String {
        self.hasher.finalize().to_hex().to_string()
    }
}

impl std::io::Read for Streamed {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.failed.is_some() {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
        match self.file.read(buf) {
            Ok(n) => {
                self.read += n as u64;
                if self.read > self.limit {
                    self.failed = Some(crate::verified::larger_than(self.limit));
                    return Err(std::io::ErrorKind::InvalidData.into());
                }
                self.hasher.update(&buf[..n]);
                Ok(n)
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                let kind = e.kind();
                self.failed = Some(e);
                Err(kind.into())
            }
        }
    }
}

/// The manifest in `dir` and its digest, as [`Installed::load`] gives
/// them. Parsed as it is read: its bytes (up to 8 MiB) are not held
/// beside the parsed manifest.
fn load_manifest(dir: &Path) -> crate::Result<(crate::manifest::Manifest, String)> {
    use crate::manifest::{Manifest, MANIFEST_PATH, MAX_JSON};
    let unreadable = |e: std::io::Error| {
        crate::Error::invalid(format!(
            "{}: not an fw version tree (no readable {MANIFEST_PATH}: {e})",
            dir.display()
        ))
    };
    let file = crate::verified::open_fw_file(dir, "manifest.json", MAX_JSON).map_err(unreadable)?;
    let mut bytes = Streamed::new(file, MAX_JSON);
    let parsed = Manifest::from_reader(std::io::BufReader::new(&mut bytes));
    if parsed.is_err() {
        bytes.drain();
    }
    if let Some(e) = bytes.failed.take() {
        return Err(unreadable(e));
    }
    let manifest = parsed.map_err(|e| e.context(dir.display()))?;
    Ok((manifest, bytes.digest()))
}

/// The digest of the manifest in `dir` ([`Installed::digest`]), read as
/// [`Installed::load`] reads it but not parsed: equal digests are equal
/// bytes, so a manifest with the digest of one that parsed parses too.
pub fn manifest_digest(dir: &Path) -> std::io::Result<String> {
    use crate::manifest::MAX_JSON;
    let file = crate::verified::open_fw_file(dir, "manifest.json", MAX_JSON)?;
    let mut bytes = Streamed::new(file, MAX_JSON);
    bytes.drain();
    match bytes.failed.take() {
        Some(e) => Err(e),
        None => Ok(bytes.digest()),
    }
}

/// The directories of the target that may be installed versions (not
/// hidden), sorted: [`installed_versions`] without reading their
/// manifests.
pub fn installed_dirs(target: &Path) -> Vec<PathBuf> {
    let Ok(dir) = std::fs::read_dir(target) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = dir
        .flatten()
        .filter(|entry| {
            entry.file_type().map(|t| t.is_dir()).unwrap_or(false)
                && !entry.file_name().to_string_lossy().starts_with('.')
        })
        .map(|entry| entry.path())
        .collect();
    dirs.sort();
    dirs
}

/// Every installed version of the target, by directory name. Directories
/// without a readable manifest (e.g. a tree adopted from a hand-made
/// device) are left out.
pub fn installed_versions(target: &Path) -> Vec<Installed> {
    installed_dirs(target)
        .iter()
        .filter_map(|dir| Installed::read(dir))
        .collect()
}

/// The security_version of every installed version (as
/// [`installed_versions`] finds them), read without keeping their entries:
/// for the anti-rollback floor, which needs nothing else.
pub fn installed_security_versions(target: &Path) -> Vec<u64> {
    #[derive(serde::Deserialize)]
    struct Head {
        security_version: u64,
    }
    installed_dirs(target)
        .iter()
        .filter_map(|dir| {
            let file =
                crate::verified::open_fw_file(dir, "manifest.json", crate::manifest::MAX_JSON)
                    .ok()?;
            // Entries are skipped by the parser, not built; the bytes are
            // streamed, not held (a manifest that is too large or cannot
            // be read whole fails here as reading it whole would).
            let mut bytes = Streamed::new(file, crate::manifest::MAX_JSON);
            let head = serde_json::from_reader::<_, Head>(std::io::BufReader::new(&mut bytes));
            match (head, bytes.failed) {
                (Ok(head), None) => Some(head.security_version),
                _ => None,
            }
        })
        .collect()
}

/// The identity under which files are shared between versions: content,
/// mode, owner and extended attributes. Modification times are
/// deliberately not part of it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
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
    /// The installed versions' directories, in order.
    dirs: Vec<PathBuf>,
    /// The first installed file of each identity, sorted by identity (the
    /// others are looked up only when it is damaged). Neither a map nor
    /// absolute paths: at the manifest's limit of files, a few MiB less.
    files: Vec<Slot>,
    /// The relative paths of `files`, end to end.
    paths: String,
    record: std::sync::Mutex<crate::inodes::Record>,
    /// Inodes found to differ from their manifests, reported once.
    damaged: std::sync::Mutex<std::collections::HashSet<(u64, u64)>>,
    /// The installed versions whole, read once if a first copy is not
    /// proven (to find another copy, or who shares a damaged one).
    versions: std::sync::OnceLock<Vec<Installed>>,
}

/// An installed file of [`SharedFiles`].
#[derive(Debug)]
struct Slot {
    key: FileKey,
    size: u64,
    /// Its version, by index of `dirs`.
    version: u32,
    /// Where its path (relative to the version) is in `paths`.
    path: (u32, u32),
}

impl SharedFiles {
    pub fn of_target(target: &Path) -> SharedFiles {
        let mut shared = SharedFiles {
            target: target.to_path_buf(),
            ..SharedFiles::default()
        };
        // One manifest at a time, dropped once its files are in.
        for dir in installed_dirs(target) {
            if let Ok((manifest, _)) = load_manifest(&dir) {
                shared.add(dir, &manifest);
            }
        }
        shared.files.shrink_to_fit();
        shared.paths.shrink_to_fit();
        shared.record = std::sync::Mutex::new(crate::inodes::Record::load(target));
        shared
    }

    /// Adds the files of the version in `dir` whose identity no earlier
    /// version has: the first of each stays first.
    fn add(&mut self, dir: PathBuf, manifest: &crate::manifest::Manifest) {
        let Ok(version) = u32::try_from(self.dirs.len()) else {
            return;
        };
        self.dirs.push(dir);
        let files = || {
            manifest
                .entries
                .iter()
                .filter(|e| e.kind == crate::manifest::Kind::File && e.blake3.is_some())
        };
        // Room for exactly this version's files, not twice as much.
        self.files.reserve_exact(files().count());
        self.paths
            .reserve_exact(files().map(|e| e.path.len()).sum());
        let earlier = self.files.len();
        for entry in files() {
            let Some(key) = FileKey::of(entry) else {
                continue;
            };
            if self.files[..earlier]
                .binary_search_by(|slot| slot.key.cmp(&key))
                .is_ok()
            {
                continue;
            }
            // Paths beyond 4 GiB in all (never at the manifest's bound): not shared.
            let (Ok(start), Ok(len)) = (
                u32::try_from(self.paths.len()),
                u32::try_from(entry.path.len()),
            ) else {
                break;
            };
            self.paths.push_str(&entry.path);
            self.files.push(Slot {
                key,
                size: entry.size.unwrap_or(0),
                version,
                path: (start, len),
            });
        }
        // Sorted by identity; of equal ones the first in the versions' and
        // manifests' order (paths are added in that order) is kept.
        self.files.sort_unstable_by(|a, b| {
            (&a.key, a.version, a.path.0).cmp(&(&b.key, b.version, b.path.0))
        });
        self.files.dedup_by(|later, first| later.key == first.key);
    }

    /// The first installed file of `key`'s identity and its size.
    fn first(&self, key: &FileKey) -> Option<(PathBuf, u64)> {
        let slot = &self.files[self.files.binary_search_by(|slot| slot.key.cmp(key)).ok()?];
        let start = slot.path.0 as usize;
        let path = &self.paths[start..start + slot.path.1 as usize];
        Some((self.dirs[slot.version as usize].join(path), slot.size))
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
        let (first, size) = self.first(&key)?;
        if let Some(found) = self.proven(&key, &first, size) {
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
            .filter(|(path, _)| *path != first)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{Entry, Kind, Manifest, FORMAT, MANIFEST_PATH, MAX_JSON};

    fn file(path: &str, content: &[u8]) -> Entry {
        Entry {
            path: path.into(),
            kind: Kind::File,
            mode: 0o644,
            uid: 0,
            gid: 0,
            size: Some(content.len() as u64),
            blake3: Some(blake3::hash(content).to_hex().to_string()),
            target: None,
            hardlink: None,
            mtime: None,
            gz: None,
            xattrs: None,
        }
    }

    /// A version `name` in `target` holding `files`; returns its manifest's bytes.
    fn version(target: &Path, name: &str, files: &[(&str, &[u8])]) -> Vec<u8> {
        let dir = target.join(name);
        std::fs::create_dir_all(dir.join(".fw")).unwrap();
        for (path, content) in files {
            std::fs::write(dir.join(path), content).unwrap();
        }
        let manifest = Manifest {
            format: FORMAT,
            name: name.into(),
            version: "1".into(),
            security_version: 0,
            created: 0,
            tool: "test".into(),
            gz_length: None,
            entries: files.iter().map(|(p, c)| file(p, c)).collect(),
        };
        let json = manifest.to_json();
        std::fs::write(dir.join(MANIFEST_PATH), &json).unwrap();
        json
    }

    #[test]
    fn the_first_copy_is_the_first_in_version_and_manifest_order() {
        let root = tempfile::tempdir().unwrap();
        let target = root.path();
        let same: &[u8] = b"same";
        version(target, "b", &[("c", same), ("d", b"other")]);
        version(target, "a", &[("x", same), ("y", same)]);
        std::fs::create_dir(target.join("no-manifest")).unwrap();
        let shared = SharedFiles::of_target(target);
        let found = |content: &[u8]| shared.find(&file("new", content)).map(|(p, _)| p);
        assert_eq!(found(same), Some(target.join("a/x")));
        assert_eq!(found(b"other"), Some(target.join("b/d")));
        assert_eq!(found(b"none"), None);
        // The first copy changed: another one.
        std::fs::write(target.join("a/x"), b"more").unwrap();
        assert_eq!(found(same), Some(target.join("a/y")));
    }

    #[test]
    fn a_manifest_reads_as_its_bytes_say() {
        let root = tempfile::tempdir().unwrap();
        let target = root.path();
        let json = version(target, "v", &[("f", b"data")]);
        let loaded = Installed::load(&target.join("v")).unwrap();
        assert_eq!(loaded.digest, Manifest::digest(&json));
        assert_eq!(loaded.manifest, Manifest::from_json(&json).unwrap());
        assert_eq!(manifest_digest(&target.join("v")).unwrap(), loaded.digest);
        assert_eq!(installed_security_versions(target), vec![0]);

        // Malformed: the parser's own message.
        let path = target.join("v").join(MANIFEST_PATH);
        std::fs::write(&path, &json[..json.len() - 5]).unwrap();
        let want = Manifest::from_json(&json[..json.len() - 5]).unwrap_err();
        let err = Installed::load(&target.join("v")).unwrap_err();
        assert_eq!(
            err.message,
            want.context(target.join("v").display()).message
        );
        assert!(installed_security_versions(target).is_empty());

        // Too large, even though its start parses: not read.
        let mut large = json.clone();
        large.resize(MAX_JSON as usize + 1, b' ');
        std::fs::write(&path, &large).unwrap();
        let err = Installed::load(&target.join("v")).unwrap_err();
        assert!(err.message.contains("larger than"), "{}", err.message);
        assert!(manifest_digest(&target.join("v")).is_err());
        assert!(installed_security_versions(target).is_empty());
        assert!(installed_versions(target).is_empty());
    }
}
