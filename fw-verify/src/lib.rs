//! fw-verify: proves a tree equal to its signed manifest, and applies the
//! device's policy.
//!
//! 1. `.fw/manifest.sig` must be a good signature over `.fw/manifest.json`
//!    by the keyring's trust rule (exit 4).
//! 2. Device policy: the manifest's `security_version` may not be below
//!    the highest installed under the target (or recorded in
//!    `TARGET/.fw/security-floor`), and the policy file may restrict names,
//!    setuid/setgid files and size (exit 4).
//! 3. The tree must equal the manifest: every entry present with its type,
//!    mode, size, BLAKE3, symlink target and extended attributes but
//!    `security.selinux` (owners and `trusted.*` too when run as root),
//!    and nothing else (exit 5, naming up to 20 differences). A file's
//!    BLAKE3 is proven by reading it, or by the target's record of proven
//!    inodes (fw_core::inodes: fw wrote or hashed that very inode and
//!    nothing changed it since); `--full` reads every file.
//!    Modification times are not compared: they are not part of a file's
//!    identity in fw.
//!
//! `.fw/` may hold only the manifest, its signature and `.fw/verified`, as
//! regular files (exit 5 otherwise). On success it records the manifest's
//! BLAKE3 in `.fw/verified` (created relative to `.fw/`, never through a
//! link), which fw-fixate requires. The same check on an installed version is an
//! integrity check, like `rpm -V` or `ostree fsck`.

pub mod cli;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Deserialize;

use fw_core::inodes::{self, Record};
use fw_core::keyring::Keyring;
use fw_core::manifest::{self, Entry, Kind, Manifest, MANIFEST_PATH, SIGNATURE_PATH};
use fw_core::progress::ProgressBar;
use fw_core::trust::{self, Signer};
use fw_core::{Error, Result};

pub use fw_core::verified::VERIFIED_PATH;
/// Where the policy is when `--policy` is not given.
pub const DEFAULT_POLICY: &str = "/etc/fw/policy.toml";
/// How many differences an error lists.
pub const MAX_LISTED: usize = 20;

/// The device policy file (TOML). Every key is optional:
///
/// ```toml
/// # Firmware names this device installs; others are refused.
/// allowed_names = ["sample-setup"]
/// # Whether files may be setuid or setgid (default true).
/// allow_setuid = false
/// # The most content bytes a version may hold.
/// max_bytes = 2_000_000_000
/// ```
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub allowed_names: Option<Vec<String>>,
    pub allow_setuid: Option<bool>,
    pub max_bytes: Option<u64>,
}

impl Policy {
    /// Reads `path`; a missing default policy file is an empty policy, a
    /// missing explicit one an error.
    pub fn load(path: Option<&Path>) -> Result<Policy> {
        let (path, explicit) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => (PathBuf::from(DEFAULT_POLICY), false),
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                return Ok(Policy::default())
            }
            Err(e) => return Err(Error::io(format!("policy {}", path.display()), e)),
        };
        toml::from_str(&text).map_err(|e| {
            Error::usage(format!(
                "policy {}: {}",
                path.display(),
                e.to_string().replace('\n', " ")
            ))
        })
    }

    /// Applies the policy to a manifest (exit 4 on refusal).
    pub fn check(&self, manifest: &Manifest) -> Result<()> {
        if let Some(names) = &self.allowed_names {
            if !names.iter().any(|n| n == &manifest.name) {
                return Err(Error::security(format!(
                    "firmware {:?} is not allowed on this device (policy allowed_names: {names:?})",
                    manifest.name
                )));
            }
        }
        if self.allow_setuid == Some(false) {
            if let Some(entry) = manifest
                .entries
                .iter()
                .find(|e| e.kind == Kind::File && e.mode & 0o6000 != 0)
            {
                return Err(Error::security(format!(
                    "{} is setuid or setgid, and the policy forbids that (allow_setuid = false)",
                    entry.path
                )));
            }
        }
        if let Some(max) = self.max_bytes {
            let total: u64 = manifest
                .entries
                .iter()
                .filter(|e| e.hardlink.is_none())
                .filter_map(|e| e.size)
                .sum();
            if total > max {
                return Err(Error::security(format!(
                    "the firmware holds {total} bytes, more than the policy's max_bytes {max}"
                )));
            }
        }
        Ok(())
    }
}

/// What the caller expects the tree to be: for fw-update, the signed release index's
/// entry it chose (issue 13: another vendor-signed product served at that entry's URL
/// must not be installed as it). Fields left `None` are not checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expected {
    pub name: Option<String>,
    pub version: Option<String>,
    pub security_version: Option<u64>,
}

impl Expected {
    /// Refuses (exit 4) a manifest that differs from what is expected.
    pub fn check(&self, manifest: &Manifest) -> Result<()> {
        let name = self.name.as_ref().is_none_or(|n| n == &manifest.name);
        let version = self.version.as_ref().is_none_or(|v| v == &manifest.version);
        let security = self
            .security_version
            .is_none_or(|s| s == manifest.security_version);
        if name && version && security {
            return Ok(());
        }
        let show = |v: Option<String>| v.unwrap_or_else(|| "any".into());
        Err(Error::security(format!(
            "the package is {:?} {:?} with security_version {}, not what was expected \
             (name {}, version {}, security_version {}, as the signed index lists it): \
             refusing it; the server may serve the wrong file",
            manifest.name,
            manifest.version,
            manifest.security_version,
            show(self.name.as_ref().map(|n| format!("{n:?}"))),
            show(self.version.as_ref().map(|v| format!("{v:?}"))),
            show(self.security_version.map(|s| s.to_string())),
        )))
    }
}

/// What a successful verification proved.
#[derive(Debug, Clone)]
pub struct Verified {
    pub manifest: Manifest,
    pub digest: String,
    pub signer: Signer,
    pub files: usize,
    pub bytes: u64,
    /// Of `bytes`, the ones read: the rest the record of proven inodes
    /// proved (see [`compare_tree`]).
    pub read: u64,
}

/// Reads and authenticates the manifest of the tree at `path`.
pub fn read_manifest(path: &Path, keyring: &Keyring) -> Result<(Manifest, Vec<u8>, Signer)> {
    let read = |name: &str, limit: u64, missing: Error| {
        fw_core::verified::read_fw_file(path, name, limit).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                missing
            } else {
                Error::invalid(format!("{}/.fw/{name}: {e}", path.display()))
            }
        })
    };
    let json = read(
        "manifest.json",
        manifest::MAX_JSON,
        Error::invalid(format!(
            "{} is not an fw version tree: it has no {MANIFEST_PATH}",
            path.display()
        )),
    )?;
    let signature = read(
        "manifest.sig",
        manifest::MAX_SIGNATURE,
        Error::security(format!(
            "{}: the manifest is not signed (no {SIGNATURE_PATH})",
            path.display()
        )),
    )?;
    let signer = trust::verify_detached(keyring, &signature, &json)
        .map_err(|e| e.context(format!("{}: manifest signature", path.display())))?;
    let manifest = Manifest::from_json(&json).map_err(|e| e.context(path.display()))?;
    Ok((manifest, json, signer))
}

/// The lowest security_version the target accepts: the highest of its
/// installed versions and of its committed floor (fw_core::floor).
pub fn security_floor(target: &Path) -> Result<u64> {
    let committed = fw_core::floor::read(target)?;
    Ok(fw_core::target::installed_security_versions(target)
        .into_iter()
        .fold(committed, u64::max))
}

/// True if `path` is one of the target's installed versions (a directory
/// directly inside it), where the downgrade rule does not apply.
pub fn is_installed_version(path: &Path, target: &Path) -> bool {
    match (path.canonicalize(), target.canonicalize()) {
        (Ok(path), Ok(target)) => path.parent() == Some(target.as_path()),
        _ => false,
    }
}

/// Removes a staging tree (`TARGET/.fw/staging/unpack-*/NAME`, as
/// fw-unpack prints it) that was refused for security (exit 4: signature,
/// security floor, policy, expectations): it can never be installed, and
/// the bare pipeline (`fw-unseal | fw-unpack | fw-verify | fw-fixate`)
/// would leave it behind. Returns the directory removed. Never touches
/// anything else, an installed version least of all; a tree that differs
/// from its manifest (exit 5) is left for inspection.
pub fn remove_refused_staging(tree: &Path, target: &Path) -> Option<PathBuf> {
    let tree = tree.canonicalize().ok()?;
    let work = tree.parent()?;
    let staging = fw_core::target::staging_dir(target).canonicalize().ok()?;
    let is_work = work.parent() == Some(staging.as_path())
        && work
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("unpack-"));
    if !is_work {
        return None;
    }
    std::fs::remove_dir_all(work).ok()?;
    Some(work.to_path_buf())
}

/// One way the tree differs from its manifest.
fn difference(path: &str, what: impl std::fmt::Display) -> (String, String) {
    (path.to_string(), format!("{path}: {what}"))
}

/// Compares what the tree has at an entry's path (`meta`) with the
/// entry: type, mode, owner and `trusted.*` attributes (if
/// `compare_owners`: as root), other extended attributes, size, symlink
/// target.
/// Returns true if it is a regular file whose content is left to prove.
fn compare_entry(
    root: &Path,
    entry: &Entry,
    meta: &std::fs::Metadata,
    compare_owners: bool,
    diffs: &mut Vec<(String, String)>,
) -> Result<bool> {
    let Some(kind) = Kind::of(meta.file_type()) else {
        diffs.push(difference(&entry.path, "not a file, directory or symlink"));
        return Ok(false);
    };
    if kind != entry.kind {
        diffs.push(difference(
            &entry.path,
            format!(
                "is a {}, the manifest says {}",
                kind.as_str(),
                entry.kind.as_str()
            ),
        ));
        return Ok(false);
    }
    let mode = meta.mode() & 0o7777;
    if kind != Kind::Symlink && mode != entry.mode {
        diffs.push(difference(
            &entry.path,
            format!("mode {mode:o}, the manifest says {:o}", entry.mode),
        ));
    }
    if compare_owners && (meta.uid() != entry.uid || meta.gid() != entry.gid) {
        diffs.push(difference(
            &entry.path,
            format!(
                "owner {}:{}, the manifest says {}:{}",
                meta.uid(),
                meta.gid(),
                entry.uid,
                entry.gid
            ),
        ));
    }
    // Attributes: one listxattr for most entries (they have none).
    match fw_core::xattrs::read(&root.join(&entry.path)) {
        Ok(found) => {
            for why in fw_core::xattrs::differences(entry.xattrs.as_deref(), &found, compare_owners)
            {
                diffs.push(difference(&entry.path, why));
            }
        }
        Err(e) => diffs.push(difference(
            &entry.path,
            format!("cannot read its extended attributes: {e}"),
        )),
    }
    match kind {
        Kind::File if Some(meta.len()) != entry.size => {
            diffs.push(difference(
                &entry.path,
                format!(
                    "size {}, the manifest says {}",
                    meta.len(),
                    entry.size.unwrap_or(0)
                ),
            ));
            Ok(false)
        }
        Kind::File => Ok(true),
        Kind::Symlink => {
            let target = std::fs::read_link(root.join(&entry.path))
                .map_err(|e| Error::io(entry.path.as_str(), e))?;
            if target.to_str() != entry.target.as_deref() {
                diffs.push(difference(
                    &entry.path,
                    format!(
                        "symlink to {:?}, the manifest says {:?}",
                        target,
                        entry.target.as_deref().unwrap_or_default()
                    ),
                ));
            }
            Ok(false)
        }
        Kind::Dir => Ok(false),
    }
}

/// What [`compare_tree`] found.
#[derive(Debug, Default)]
pub struct Compared {
    /// The differences, sorted by path.
    pub diffs: Vec<String>,
    /// Files whose content was proven, and their bytes.
    pub files: usize,
    pub bytes: u64,
    /// Of those bytes, the ones read (the rest the record proved).
    pub read: u64,
}

/// Compares the tree at `root` with `manifest`. File content is proven by
/// `record` (fw_core::inodes: an inode proven before and unchanged since)
/// or else read and hashed, and then recorded; with `full`, every file is
/// read. `progress` counts the bytes hashed, of the total to hash.
pub fn compare_tree(
    root: &Path,
    manifest: &Manifest,
    compare_owners: bool,
    record: &mut Record,
    full: bool,
    progress: &ProgressBar,
) -> Result<Compared> {
    let mut diffs: Vec<(String, String)> = Vec::new();
    let mut out = Compared::default();
    // Each entry is checked as the walk finds it: no second copy of the
    // tree's metadata in memory (tens of thousands of entries).
    let mut seen = vec![false; manifest.entries.len()];
    let mut to_read: Vec<&Entry> = Vec::new();
    let empty = blake3::hash(b"").to_hex();
    let walker = walkdir::WalkDir::new(root)
        .follow_links(false)
        .into_iter()
        .filter_entry(|e| !(e.depth() == 1 && e.file_name() == manifest::FW_DIR));
    for item in walker {
        let item = item.map_err(|e| {
            let at = e
                .path()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            Error::failed(format!("{at}: cannot read the tree: {e}"))
        })?;
        let rel = match item.path().strip_prefix(root) {
            Ok(p) if p.as_os_str().is_empty() => ".",
            Ok(p) => match p.to_str() {
                Some(s) => s,
                None => {
                    diffs.push(difference(
                        &p.to_string_lossy(),
                        "extra entry (not in the manifest)",
                    ));
                    continue;
                }
            },
            Err(_) => continue,
        };
        let Some(index) = manifest.position(rel) else {
            diffs.push(difference(rel, "extra entry (not in the manifest)"));
            continue;
        };
        seen[index] = true;
        let entry = &manifest.entries[index];
        let meta = std::fs::symlink_metadata(item.path())
            .map_err(|e| Error::io(item.path().display(), e))?;
        if !compare_entry(root, entry, &meta, compare_owners, &mut diffs)? {
            continue;
        }
        // Content: an empty file is proven by its size (compared above),
        // an unchanged inode by the record; the rest is read below.
        let proven = !full
            && entry.blake3.as_deref().is_some_and(|hash| {
                (entry.size == Some(0) && hash == empty.as_str()) || record.proves(&meta, hash)
            });
        if proven {
            out.files += 1;
            out.bytes += entry.size.unwrap_or(0);
        } else {
            to_read.push(entry);
        }
    }
    for (entry, seen) in manifest.entries.iter().zip(&seen) {
        if !seen {
            diffs.push(difference(&entry.path, "missing"));
        }
    }

    // Hash on all cores: small files in parallel, large ones each on all.
    fw_core::progress::set_total(progress, to_read.iter().filter_map(|e| e.size).sum());
    // Each result kept small: tens of thousands may wait here.
    type Checked = (u64, bool, Option<inodes::Proof>);
    let hashed: Vec<(&Entry, std::io::Result<Checked>)> = to_read
        .par_iter()
        .map(|entry| {
            let path = root.join(&entry.path);
            let checked = inodes::hash(&path, |n| progress.inc(n)).map(|hashed| {
                let same = Some(hashed.blake3.as_str()) == entry.blake3.as_deref();
                (hashed.size, same, hashed.proof().filter(|_| same))
            });
            (*entry, checked)
        })
        .collect();
    for (entry, result) in hashed {
        match result {
            Ok((size, same, proof)) => {
                out.files += 1;
                out.bytes += size;
                out.read += size;
                if !same {
                    diffs.push(difference(&entry.path, "content differs (BLAKE3)"));
                } else if let Some(proof) = proof {
                    record.insert_proof(proof);
                }
            }
            Err(e) => diffs.push(difference(&entry.path, format!("cannot read: {e}"))),
        }
    }
    diffs.sort();
    out.diffs = diffs.into_iter().map(|(_, d)| d).collect();
    Ok(out)
}

/// The whole check of one tree: signature, what is expected, the floor,
/// policy, content. Writes `.fw/verified` on success.
pub fn verify(
    path: &Path,
    keyring: &Keyring,
    target: &Path,
    policy: &Policy,
    expected: &Expected,
) -> Result<Verified> {
    verify_with_progress(
        path,
        keyring,
        target,
        policy,
        expected,
        false,
        &ProgressBar::hidden(),
    )
}

/// As [`verify`], counting the bytes hashed into `progress`; with `full`,
/// reading every file (the record of proven inodes ignored).
pub fn verify_with_progress(
    path: &Path,
    keyring: &Keyring,
    target: &Path,
    policy: &Policy,
    expected: &Expected,
    full: bool,
    progress: &ProgressBar,
) -> Result<Verified> {
    // `current` and friends are links to the version: check what they name.
    let resolved = path
        .canonicalize()
        .map_err(|e| Error::io(path.display(), e))?;
    let path = resolved.as_path();
    // `.fw/` is not compared with the manifest: nothing may hide there,
    // and nothing there may lead a write elsewhere.
    fw_core::verified::check_fw_dir(path)?;
    let (manifest, json, signer) = read_manifest(path, keyring)?;
    // The bytes are not needed past their digest (up to 8 MiB held for
    // nothing while the tree is walked).
    let digest = Manifest::digest(&json);
    drop(json);
    expected.check(&manifest)?;
    if !is_installed_version(path, target) {
        let floor = security_floor(target)?;
        if manifest.security_version < floor {
            return Err(Error::security(format!(
                "{} {} has security_version {}, below this device's {floor}: a downgrade \
                 past a security fix is refused; install a newer package",
                manifest.name, manifest.version, manifest.security_version
            )));
        }
    }
    policy.check(&manifest)?;

    let as_root = nix::unistd::geteuid().is_root();
    let mut record = Record::load(target);
    let compared = compare_tree(path, &manifest, as_root, &mut record, full, progress)?;
    if let Err(e) = record.save() {
        fw_core::detail!("the record of proven inodes was not saved: {e}");
    }
    let diffs = compared.diffs;
    if !diffs.is_empty() {
        for diff in diffs.iter().take(MAX_LISTED) {
            fw_core::warn!("{}: {diff}", path.display());
        }
        let more = diffs.len().saturating_sub(MAX_LISTED);
        return Err(Error::invalid(format!(
            "{} differs from its signed manifest in {} place{}{}: do not use it; \
             reinstall the package",
            path.display(),
            diffs.len(),
            if diffs.len() == 1 { "" } else { "s" },
            if more > 0 {
                format!(" ({more} not listed)")
            } else {
                String::new()
            }
        )));
    }

    fw_core::verified::record(path, &digest)?;
    Ok(Verified {
        manifest,
        digest,
        signer,
        files: compared.files,
        bytes: compared.bytes,
        read: compared.read,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(entries: Vec<Entry>) -> Manifest {
        Manifest {
            format: manifest::FORMAT,
            name: "fw".into(),
            version: "1".into(),
            security_version: 2,
            created: 0,
            tool: "test".into(),
            gz_length: None,
            entries,
        }
    }

    fn file(path: &str, mode: u32, data: &[u8]) -> Entry {
        Entry {
            path: path.into(),
            kind: Kind::File,
            mode,
            uid: 0,
            gid: 0,
            size: Some(data.len() as u64),
            blake3: Some(blake3::hash(data).to_hex().to_string()),
            target: None,
            hardlink: None,
            mtime: None,
            gz: None,
            xattrs: None,
        }
    }

    #[test]
    fn policy_parses_and_applies() {
        let policy: Policy =
            toml::from_str("allowed_names = [\"fw\"]\nallow_setuid = false\nmax_bytes = 10\n")
                .unwrap();
        assert!(policy
            .check(&manifest(vec![file("a", 0o644, b"abc")]))
            .is_ok());
        let err = policy
            .check(&manifest(vec![file("a", 0o4755, b"abc")]))
            .unwrap_err();
        assert_eq!(err.code, fw_core::Exit::Security);
        let err = policy
            .check(&manifest(vec![file("a", 0o644, b"0123456789abc")]))
            .unwrap_err();
        assert!(err.message.contains("max_bytes"));
        let mut other = manifest(vec![]);
        other.name = "other".into();
        assert!(policy.check(&other).is_err());
        assert!(
            toml::from_str::<Policy>("allowed = 1").is_err(),
            "unknown keys are refused"
        );
    }

    #[test]
    fn expected_name_version_and_security_version() {
        let m = manifest(vec![]);
        let expect = |name: Option<&str>, version: Option<&str>, sv: Option<u64>| Expected {
            name: name.map(Into::into),
            version: version.map(Into::into),
            security_version: sv,
        };
        assert!(Expected::default().check(&m).is_ok());
        assert!(expect(Some("fw"), Some("1"), Some(2)).check(&m).is_ok());
        for wrong in [
            expect(Some("other"), None, None),
            expect(None, Some("2"), None),
            expect(None, None, Some(3)),
        ] {
            let err = wrong.check(&m).unwrap_err();
            assert_eq!(err.code, fw_core::Exit::Security);
            assert!(err.message.contains("\"fw\" \"1\""), "{}", err.message);
        }
    }

    #[test]
    fn compare_names_each_difference() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("same"), b"same").unwrap();
        std::fs::write(root.join("changed"), b"chXnged").unwrap();
        std::fs::write(root.join("extra"), b"x").unwrap();
        std::fs::write(root.join("mode"), b"m").unwrap();
        for f in ["same", "changed", "extra", "mode"] {
            std::fs::set_permissions(root.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(root.join("mode"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        let m = manifest(vec![
            Entry {
                path: ".".into(),
                kind: Kind::Dir,
                mode: 0o755,
                uid: 0,
                gid: 0,
                size: None,
                blake3: None,
                target: None,
                hardlink: None,
                mtime: None,
                gz: None,
                xattrs: None,
            },
            file("changed", 0o644, b"changed"),
            file("missing", 0o644, b""),
            file("mode", 0o644, b"m"),
            file("same", 0o644, b"same"),
        ]);
        let diffs = compare_tree(
            root,
            &m,
            false,
            &mut Record::none(),
            false,
            &ProgressBar::hidden(),
        )
        .unwrap()
        .diffs;
        assert_eq!(diffs.len(), 4, "{diffs:?}");
        assert!(
            diffs[0].starts_with("changed: content differs"),
            "{diffs:?}"
        );
        assert!(diffs[1].starts_with("extra: extra entry"), "{diffs:?}");
        assert!(diffs[2].starts_with("missing: missing"), "{diffs:?}");
        assert!(diffs[3].starts_with("mode: mode 600"), "{diffs:?}");
    }
}
