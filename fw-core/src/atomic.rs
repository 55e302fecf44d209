//! Replacing a small state file atomically and durably: the one way fw
//! writes its files in `TARGET/.fw` (journal, security floor, failed
//! versions).
//!
//! A temporary file is created beside the file, relative to the
//! directory's descriptor, with O_CREAT|O_EXCL|O_NOFOLLOW (so a symlink or
//! file planted under its name is never written through), written,
//! fsynced, renamed over the file, and the directory is fsynced: a power
//! cut leaves the old content or the new, never a mix or nothing. A power
//! cut before the rename leaves the temporary file, whose name
//! [`is_temporary`] recognises, for `fw-switch recover` to remove.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

use nix::fcntl::{openat, renameat, OFlag};
use nix::sys::stat::Mode;
use nix::unistd::{unlinkat, UnlinkatFlags};

use crate::error::{Error, Result};

/// What a temporary name holds between the file's name and a unique tail.
const TMP_MARK: &str = ".tmp-";

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn open_dir(dir: &Path) -> Result<OwnedFd> {
    nix::fcntl::open(
        dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::io(dir.display(), e.into()))
}

/// Replaces `dir/name` with `bytes` (mode 0644), atomically and durably.
pub fn write(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let path = dir.join(name);
    let dir_fd = open_dir(dir)?;
    // Unique among processes (pid) and within one (counter); a leftover
    // of the same name from a dead process of the same pid is skipped.
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = format!(".{name}{TMP_MARK}{}-{n}", std::process::id());
        match replace_at(dir_fd.as_fd(), &tmp, name, bytes) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 1000 => continue,
            result => {
                return result.map_err(|e| Error::io(path.display(), e));
            }
        }
    }
}

/// The one way fw replaces a file: `tmp` created in the directory `dir`
/// with O_CREAT|O_EXCL|O_NOFOLLOW (EEXIST if it is there), written,
/// fsynced, renamed over `name`, the directory fsynced; `tmp` removed on
/// failure. [`write`] uses it with a unique temporary name; fw-verify's
/// record (`.fw/verified` of a tree that may be hostile, opened without
/// following links) with its fixed one.
pub fn replace_at(dir: BorrowedFd<'_>, tmp: &str, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    replace_at_with(dir, tmp, name, |out| out.write_all(bytes))
}

/// [`replace_at`] with the content written by `write` (buffered), for a
/// file too large to build in memory first.
pub fn replace_at_with(
    dir: BorrowedFd<'_>,
    tmp: &str,
    name: &str,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let fd = openat(
        dir,
        tmp,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o644),
    )?;
    let mut out = std::io::BufWriter::with_capacity(64 << 10, File::from(fd));
    let written = write(&mut out)
        .and_then(|()| out.into_inner().map_err(|e| e.into_error()))
        .and_then(|file| file.sync_all())
        .and_then(|()| Ok(renameat(dir, tmp, dir, name)?));
    if let Err(e) = written {
        let _ = unlinkat(dir, tmp, UnlinkatFlags::NoRemoveDir);
        return Err(e);
    }
    Ok(nix::unistd::fsync(dir)?)
}

/// [`write`] for a path: replaces the file `path` names, in its directory.
pub fn write_path(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::usage(format!("{} does not name a file", path.display())))?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    write(dir, name, bytes)
}

/// True for the name of a temporary file [`write`] leaves when it is
/// interrupted (`.NAME.tmp-…`).
pub fn is_temporary(name: &str) -> bool {
    name.starts_with('.') && name.contains(TMP_MARK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_and_leaves_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "state", b"one\n").unwrap();
        write(dir.path(), "state", b"two\n").unwrap();
        assert_eq!(std::fs::read(dir.path().join("state")).unwrap(), b"two\n");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["state"]);
    }

    #[test]
    fn never_writes_through_a_planted_link() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        // Every name the next write may try is a link to the victim.
        let next = COUNTER.load(Ordering::Relaxed);
        for n in next..next + 50 {
            let tmp = format!(".state{TMP_MARK}{}-{n}", std::process::id());
            std::os::unix::fs::symlink(&victim, dir.path().join(tmp)).unwrap();
        }
        write(dir.path(), "state", b"new\n").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        assert_eq!(std::fs::read(dir.path().join("state")).unwrap(), b"new\n");
    }

    #[test]
    fn writes_a_path_relative_or_absolute() {
        let dir = tempfile::tempdir().unwrap();
        write_path(&dir.path().join("index.json"), b"{}").unwrap();
        assert_eq!(std::fs::read(dir.path().join("index.json")).unwrap(), b"{}");
        assert!(write_path(Path::new("/"), b"").is_err());
    }

    #[test]
    fn temporary_names_are_recognised() {
        assert!(is_temporary(".journal.tmp-12-0"));
        assert!(is_temporary(".current.tmp-12"));
        assert!(!is_temporary("journal"));
        assert!(!is_temporary("security-floor"));
    }
}
