//! A version tree's `.fw/`: the manifest, its signature, and `verified`,
//! the BLAKE3 of the manifest that fw-verify verified in the tree.
//! fw-fixate and fw-switch require it to match the manifest there.
//!
//! The tree may be hostile (it came out of a package, or someone planted
//! it), and fw-verify runs as root: `.fw/` is opened without following a
//! symlink, files in it are read and created relative to that directory
//! with O_NOFOLLOW (and O_EXCL when created), and a `.fw/` holding
//! anything else is refused (see [`check_fw_dir`]).

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use nix::fcntl::{openat, OFlag, AT_FDCWD};
use nix::sys::stat::Mode;
use nix::unistd::{unlinkat, UnlinkatFlags};

use crate::error::{Error, Result};
use crate::manifest::{Manifest, FW_DIR, MANIFEST_PATH};

pub const VERIFIED_PATH: &str = ".fw/verified";
const VERIFIED: &str = "verified";
/// fw-verify's temporary file; one left by an interrupted run is replaced.
const VERIFIED_TMP: &str = ".verified.tmp";
/// What `.fw/` of a version tree may hold.
pub const FW_FILES: &[&str] = &["manifest.json", "manifest.sig", VERIFIED];

/// Opens `tree/.fw` as a directory, refusing a symlink.
fn open_fw_dir(tree: &Path) -> io::Result<OwnedFd> {
    Ok(openat(
        AT_FDCWD,
        &tree.join(FW_DIR),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?)
}

/// Reads `.fw/NAME` of `tree`: a regular file (a symlink is not
/// followed), at most `limit` bytes.
pub fn read_fw_file(tree: &Path, name: &str, limit: u64) -> io::Result<Vec<u8>> {
    let file = open_fw_file(tree, name, limit)?;
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(larger_than(limit));
    }
    Ok(bytes)
}

/// Opens `.fw/NAME` of `tree` as [`read_fw_file`] reads it (a regular
/// file, no symlink followed), refusing one that is larger than `limit`
/// bytes now: for a caller that streams it rather than hold its bytes,
/// and must still stop at `limit` (see [`larger_than`]).
pub fn open_fw_file(tree: &Path, name: &str, limit: u64) -> io::Result<File> {
    let dir = open_fw_dir(tree)?;
    let fd = openat(
        &dir,
        name,
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let file = File::from(fd);
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a regular file",
        ));
    }
    if meta.len() > limit {
        return Err(larger_than(limit));
    }
    Ok(file)
}

/// The error of a `.fw/` file that is larger than `limit` bytes.
pub fn larger_than(limit: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("larger than {limit} bytes"),
    )
}

/// Refuses (exit 5) a tree whose `.fw/` is not a directory or holds
/// anything but [`FW_FILES`] as regular files (and a regular
/// `.verified.tmp` an interrupted fw-verify left). Nothing there is
/// compared with the manifest, so nothing else may hide there.
pub fn check_fw_dir(tree: &Path) -> Result<()> {
    let refuse = |what: String| {
        Error::invalid(format!(
            "{}: {what}; {FW_DIR}/ holds only {} (as regular files): do not use this tree",
            tree.display(),
            FW_FILES.join(", ")
        ))
    };
    let fw_dir = tree.join(FW_DIR);
    match std::fs::symlink_metadata(&fw_dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => return Err(refuse(format!("{FW_DIR} is not a directory"))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(Error::invalid(format!(
                "{} is not an fw version tree: it has no {MANIFEST_PATH}",
                tree.display()
            )))
        }
        Err(e) => return Err(Error::io(fw_dir.display(), e)),
    }
    let entries = std::fs::read_dir(&fw_dir).map_err(|e| Error::io(fw_dir.display(), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(fw_dir.display(), e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let regular = entry
            .file_type()
            .map_err(|e| Error::io(entry.path().display(), e))?
            .is_file();
        let allowed = FW_FILES.contains(&name.as_ref()) || name == VERIFIED_TMP;
        if !allowed || !regular {
            return Err(refuse(format!(
                "{FW_DIR}/{name} is {}",
                if allowed {
                    "not a regular file"
                } else {
                    "not fw's"
                }
            )));
        }
    }
    Ok(())
}

/// The tree's manifest, if `.fw/verified` records exactly it.
pub fn verified_manifest(tree: &Path) -> Result<Manifest> {
    verified_version(tree).map(|version| version.manifest)
}

/// The tree's manifest and its digest, if `.fw/verified` records exactly
/// it.
pub fn verified_version(tree: &Path) -> Result<crate::target::Installed> {
    let version = crate::target::Installed::load(tree)?;
    let recorded = read_fw_file(tree, VERIFIED, 4096).unwrap_or_default();
    if String::from_utf8_lossy(&recorded).trim() != version.digest {
        return Err(Error::invalid(format!(
            "{} was not verified (no matching {VERIFIED_PATH}): run fw-verify on it first",
            tree.display()
        )));
    }
    Ok(version)
}

pub fn is_verified(tree: &Path) -> bool {
    verified_manifest(tree).is_ok()
}

/// Records `digest` in `.fw/verified` (atomically), unless it is there
/// already: an intact installed version is never written to. The
/// temporary file is created relative to `.fw/` with O_EXCL|O_NOFOLLOW:
/// never through a link planted in the tree.
pub fn record(tree: &Path, digest: &str) -> Result<()> {
    let path = tree.join(VERIFIED_PATH);
    let content = format!("{digest}\n");
    if read_fw_file(tree, VERIFIED, 4096).ok().as_deref() == Some(content.as_bytes()) {
        return Ok(());
    }
    let failed = |e: io::Error| Error::io(path.display(), e);
    let dir = open_fw_dir(tree).map_err(failed)?;
    // unlinkat removes a name, never what a link names.
    match unlinkat(&dir, VERIFIED_TMP, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(failed(e.into())),
    }
    crate::atomic::replace_at(dir.as_fd(), VERIFIED_TMP, VERIFIED, content.as_bytes())
        .map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_writes_through_a_link_and_refuses_strangers() {
        let root = tempfile::tempdir().unwrap();
        let tree = root.path().join("tree");
        std::fs::create_dir_all(tree.join(FW_DIR)).unwrap();
        std::fs::write(tree.join(MANIFEST_PATH), b"{}").unwrap();
        let victim = root.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        std::os::unix::fs::symlink(&victim, tree.join(".fw/.verified.tmp")).unwrap();
        let err = check_fw_dir(&tree).unwrap_err();
        assert_eq!(err.code, crate::Exit::Invalid, "{}", err.message);
        // Even if called without the check, the link is replaced, not followed.
        record(&tree, "abc").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert_eq!(std::fs::read(tree.join(VERIFIED_PATH)).unwrap(), b"abc\n");
        check_fw_dir(&tree).unwrap();

        std::fs::write(tree.join(".fw/other"), b"x").unwrap();
        assert!(check_fw_dir(&tree).is_err(), "a stranger in .fw/");
        std::fs::remove_file(tree.join(".fw/other")).unwrap();
        std::fs::remove_file(tree.join(VERIFIED_PATH)).unwrap();
        std::os::unix::fs::symlink(&victim, tree.join(VERIFIED_PATH)).unwrap();
        assert!(check_fw_dir(&tree).is_err(), "a link named verified");
        assert!(read_fw_file(&tree, VERIFIED, 10).is_err(), "not followed");
    }

    #[test]
    fn a_linked_fw_dir_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let tree = root.path().join("tree");
        std::fs::create_dir_all(&tree).unwrap();
        let elsewhere = root.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, tree.join(FW_DIR)).unwrap();
        assert!(check_fw_dir(&tree).is_err());
        assert!(record(&tree, "abc").is_err());
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
    }
}
