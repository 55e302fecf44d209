//! `TARGET/.fw/security-floor`: the lowest security_version the device
//! accepts, raised by `fw-switch commit` so that removing newer versions
//! cannot open the way to a downgrade. The one reader and writer for every
//! tool (fw-verify, fw-switch, fw-update).
//!
//! A missing file is floor 0: nothing was committed yet. A file that
//! cannot be read or does not hold a number is an error, never 0: reading
//! it as 0 would let every downgrade through.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The file's name in `TARGET/.fw`.
pub const SECURITY_FLOOR: &str = "security-floor";

/// The most bytes a floor file holds (a u64 and a newline, with room).
const MAX_LEN: u64 = 64;

/// `TARGET/.fw/security-floor`.
pub fn path(target: &Path) -> PathBuf {
    crate::target::state_dir(target).join(SECURITY_FLOOR)
}

fn unusable(path: &Path, why: impl std::fmt::Display) -> Error {
    Error::failed(format!(
        "{}: {why}: it must hold the security_version last committed; write that number \
         into it, or remove it and run `fw-switch commit` on a version you trust",
        path.display()
    ))
}

/// The committed floor: 0 when the file does not exist.
pub fn read(target: &Path) -> Result<u64> {
    let path = path(target);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(&path);
    let mut file = match file {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(unusable(&path, format!("cannot read it ({e})"))),
    };
    let mut text = String::new();
    file.by_ref()
        .take(MAX_LEN + 1)
        .read_to_string(&mut text)
        .map_err(|e| unusable(&path, format!("cannot read it ({e})")))?;
    if text.len() as u64 > MAX_LEN {
        return Err(unusable(&path, "too long to be a security_version"));
    }
    text.trim().parse().map_err(|_| {
        unusable(
            &path,
            format!("{:?} is not a security_version", text.trim()),
        )
    })
}

/// Raises the floor to `security_version` if that is higher; returns the
/// floor now in force. Written atomically and durably.
pub fn raise(target: &Path, security_version: u64) -> Result<u64> {
    let floor = read(target)?;
    if security_version <= floor {
        return Ok(floor);
    }
    let dir = crate::target::state_dir(target);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(dir.display(), e))?;
    crate::atomic::write(
        &dir,
        SECURITY_FLOOR,
        format!("{security_version}\n").as_bytes(),
    )?;
    Ok(security_version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_is_zero_and_raising_only_goes_up() {
        let target = tempfile::tempdir().unwrap();
        assert_eq!(read(target.path()).unwrap(), 0);
        assert_eq!(raise(target.path(), 3).unwrap(), 3);
        assert_eq!(raise(target.path(), 2).unwrap(), 3);
        assert_eq!(read(target.path()).unwrap(), 3);
        assert_eq!(std::fs::read_to_string(path(target.path())).unwrap(), "3\n");
    }

    #[test]
    fn unreadable_or_unparseable_is_an_error_never_zero() {
        let target = tempfile::tempdir().unwrap();
        let file = path(target.path());
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        for bad in ["", "two\n", "-1\n", "1 2\n", &"9".repeat(100)] {
            std::fs::write(&file, bad).unwrap();
            let err = read(target.path()).unwrap_err();
            assert_eq!(err.code, crate::Exit::Failed, "{bad:?}");
            assert!(err.message.contains("fw-switch commit"), "{}", err.message);
            // Nor does raising paper over it.
            assert!(raise(target.path(), 5).is_err());
        }
        std::fs::remove_file(&file).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", &file).unwrap();
        assert!(read(target.path()).is_err(), "a link is not followed");
        std::fs::remove_file(&file).unwrap();
        std::fs::create_dir(&file).unwrap();
        assert!(read(target.path()).is_err());
    }
}
