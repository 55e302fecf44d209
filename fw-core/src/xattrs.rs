//! Extended attributes: file capabilities (`security.capability`), POSIX
//! ACLs (`system.posix_acl_access`, `system.posix_acl_default`), IMA and
//! EVM signatures, `trusted.*` and `user.*`. They are part of what a file
//! or directory is, so fw carries them as OSTree and RAUC do:
//!
//! - fw-sign reads them into the signed manifest (an entry's `xattrs`,
//!   name → value in lowercase hex; manifest format 3) and into the
//!   archive as PAX `SCHILY.xattr.NAME` records, which GNU tar
//!   (`--xattrs`) and bsdtar read too;
//! - fw-unpack requires the archive's records to equal the manifest's
//!   and restores them after the owner and mode (a chown clears a
//!   capability; an ACL set after the mode keeps the mode's group bits
//!   equal to its mask, as on the build host);
//! - fw-verify reports any added, removed or changed;
//! - installed files are shared only with files whose attributes are
//!   equal ([`key`] is part of fw_core::target's `FileKey`).
//!
//! `security.selinux` is not carried and never compared: a label is the
//! device's policy's to give, and a build host's labels are not the
//! device's. `trusted.*` is visible to root only: fw-sign packs it when
//! run as root, and fw-verify compares it only as root.
//!
//! Bounds (attacker bytes reach the manifest's parser before its signature
//! is checked, and fw-unpack reads an entry's PAX records into memory):
//! 64 attributes an entry, names of at most 255 bytes, at most 32 KiB of
//! names and values an entry, which keeps its PAX header under fw-unpack's
//! 64 KiB bound for extension headers.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::path::Path;

/// An entry's extended attributes: name → value, lowercase hex.
pub type Xattrs = BTreeMap<String, String>;

/// The most attributes one entry may have.
pub const MAX_COUNT: usize = 64;
/// The longest attribute name (Linux's XATTR_NAME_MAX).
pub const MAX_NAME: usize = 255;
/// The most bytes of names and values one entry may have.
pub const MAX_BYTES: usize = 32 << 10;
/// The PAX record key prefix GNU tar, bsdtar and the tar crate use.
pub const PAX_PREFIX: &str = "SCHILY.xattr.";

/// The one attribute fw never carries nor compares (see the module's
/// comment).
pub const NOT_CARRIED: &str = "security.selinux";

/// Whether `name` is an attribute fw carries: `user.*`, `trusted.*`,
/// `security.*` (but `security.selinux`) and the two POSIX ACLs.
pub fn is_carried(name: &str) -> bool {
    let rest = ["user.", "trusted.", "security."]
        .iter()
        .find_map(|ns| name.strip_prefix(ns));
    match rest {
        Some(rest) => !rest.is_empty() && name != NOT_CARRIED,
        None => name == "system.posix_acl_access" || name == "system.posix_acl_default",
    }
}

/// Checks one entry's attributes against the format's rules and bounds.
pub fn validate(xattrs: &Xattrs) -> Result<(), String> {
    if xattrs.len() > MAX_COUNT {
        return Err(format!(
            "{} extended attributes, more than the {MAX_COUNT} an entry may have",
            xattrs.len()
        ));
    }
    let mut bytes = 0usize;
    for (name, hex) in xattrs {
        if name.len() > MAX_NAME || name.contains('\0') || !is_carried(name) {
            return Err(format!(
                "extended attribute {name:?}: fw carries user.*, trusted.*, security.* \
                 (not {NOT_CARRIED}) and the POSIX ACLs, by names of at most {MAX_NAME} bytes"
            ));
        }
        if hex.len() % 2 != 0 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(format!(
                "extended attribute {name}: its value is not lowercase hex"
            ));
        }
        bytes = bytes.saturating_add(name.len() + hex.len() / 2);
    }
    if bytes > MAX_BYTES {
        return Err(format!(
            "{bytes} bytes of extended attributes, more than the {MAX_BYTES} an entry may have"
        ));
    }
    Ok(())
}

/// The identity of a set of attributes, for sharing files between
/// versions: `None` for none.
pub fn key(xattrs: Option<&Xattrs>) -> Option<[u8; 16]> {
    let xattrs = xattrs.filter(|x| !x.is_empty())?;
    let mut hasher = blake3::Hasher::new();
    for (name, hex) in xattrs {
        hasher.update(name.as_bytes());
        hasher.update(b"\0");
        hasher.update(hex.as_bytes());
        hasher.update(b"\0");
    }
    Some(
        hasher.finalize().as_bytes()[..16]
            .try_into()
            .expect("16 bytes"),
    )
}

pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut hex = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        hex.push(DIGITS[usize::from(b >> 4)] as char);
        hex.push(DIGITS[usize::from(b & 15)] as char);
    }
    hex
}

/// The bytes of a value [`validate`] accepted (lowercase hex).
pub fn from_hex(hex: &str) -> Vec<u8> {
    let digit = |b: u8| match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => 0,
    };
    hex.as_bytes()
        .chunks_exact(2)
        .map(|pair| digit(pair[0]) << 4 | digit(pair[1]))
        .collect()
}

/// The PAX records that carry `xattrs` in the archive.
pub fn pax_records(xattrs: &Xattrs) -> Vec<(String, Vec<u8>)> {
    xattrs
        .iter()
        .map(|(name, hex)| (format!("{PAX_PREFIX}{name}"), from_hex(hex)))
        .collect()
}

/// The attributes an archive entry's PAX records carry (other records
/// are not attributes and are left out).
pub fn from_pax<'a>(records: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) -> Xattrs {
    records
        .into_iter()
        .filter_map(|(key, value)| {
            let name = key.strip_prefix(PAX_PREFIX.as_bytes())?;
            Some((String::from_utf8_lossy(name).into_owned(), to_hex(value)))
        })
        .collect()
}

fn unsupported(e: &io::Error) -> bool {
    e.raw_os_error() == Some(nix::libc::EOPNOTSUPP)
}

/// The carried attributes of the file, directory or symlink at `path`
/// (never following a symlink); none on a file system without them.
pub fn read(path: &Path) -> io::Result<Xattrs> {
    let names = match xattr::list(path) {
        Ok(names) => names,
        Err(e) if unsupported(&e) => return Ok(Xattrs::new()),
        Err(e) => return Err(e),
    };
    let mut xattrs = Xattrs::new();
    for name in names {
        let text = name.to_str().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("an extended attribute's name is not UTF-8: {name:?}"),
            )
        })?;
        if text == NOT_CARRIED {
            continue;
        }
        // Gone since it was listed: it is not there.
        if let Some(value) = xattr::get(path, &name)? {
            xattrs.insert(text.to_string(), to_hex(&value));
        }
    }
    Ok(xattrs)
}

fn set_error(name: &str, e: io::Error) -> io::Error {
    let hint = match e.raw_os_error() {
        Some(nix::libc::EPERM | nix::libc::EACCES) => {
            ": trusted.* and security.* need root (CAP_SYS_ADMIN, CAP_SETFCAP)"
        }
        Some(nix::libc::EOPNOTSUPP) => {
            ": this file system does not support it; install onto one that does (ext4, XFS, btrfs)"
        }
        _ => "",
    };
    io::Error::new(
        e.kind(),
        format!("cannot set extended attribute {name}: {e}{hint}"),
    )
}

/// Sets `xattrs` on an open file (or directory).
pub fn apply_to_file(file: &File, xattrs: &Xattrs) -> io::Result<()> {
    use xattr::FileExt;
    for (name, hex) in xattrs {
        file.set_xattr(OsStr::new(name), &from_hex(hex))
            .map_err(|e| set_error(name, e))?;
    }
    Ok(())
}

/// Sets `xattrs` on the file or directory at `path`, not following a
/// symlink.
pub fn apply(path: &Path, xattrs: &Xattrs) -> io::Result<()> {
    for (name, hex) in xattrs {
        xattr::set(path, OsStr::new(name), &from_hex(hex)).map_err(|e| set_error(name, e))?;
    }
    Ok(())
}

/// How the attributes `found` on an entry differ from the manifest's
/// `listed`, one line each. `trusted.*` is compared only if `privileged`
/// (no one else can see it).
pub fn differences(listed: Option<&Xattrs>, found: &Xattrs, privileged: bool) -> Vec<String> {
    let empty = Xattrs::new();
    let listed = listed.unwrap_or(&empty);
    let compared = |name: &str| privileged || !name.starts_with("trusted.");
    let mut out = Vec::new();
    for (name, value) in listed.iter().filter(|(n, _)| compared(n)) {
        match found.get(name) {
            None => out.push(format!("extended attribute {name} is missing")),
            Some(v) if v != value => out.push(format!(
                "extended attribute {name} is {}, the manifest says {}",
                shown(v),
                shown(value)
            )),
            Some(_) => {}
        }
    }
    for (name, value) in found.iter().filter(|(n, _)| compared(n)) {
        if !listed.contains_key(name) {
            out.push(format!(
                "extended attribute {name} ({}) is not in the manifest",
                shown(value)
            ));
        }
    }
    out
}

/// A value for a message: its hex, cut short.
fn shown(hex: &str) -> String {
    if hex.len() > 48 {
        format!("{}… ({} bytes)", &hex[..48], hex.len() / 2)
    } else {
        hex.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(pairs: &[(&str, &str)]) -> Xattrs {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn names_outside_the_carried_namespaces_and_bad_values_are_refused() {
        assert!(validate(&set(&[("user.a", "00ff"), ("security.capability", "")])).is_ok());
        assert!(validate(&set(&[("system.posix_acl_access", "02")])).is_ok());
        for bad in [
            ("security.selinux", "00"),
            ("system.nfs4_acl", "00"),
            ("user.", "00"),
            ("other.x", "00"),
            ("user.a", "0"),
            ("user.a", "0G"),
            ("user.a", "FF"),
        ] {
            assert!(validate(&set(&[bad])).is_err(), "{bad:?}");
        }
        let long = format!("user.{}", "n".repeat(MAX_NAME));
        assert!(validate(&set(&[(&long, "")])).is_err());
        let many: Xattrs = (0..=MAX_COUNT)
            .map(|i| (format!("user.{i}"), String::new()))
            .collect();
        assert!(validate(&many).is_err());
        let big = "ab".repeat(MAX_BYTES);
        assert!(validate(&set(&[("user.big", &big)])).is_err());
    }

    #[test]
    fn hex_and_pax_round_trip() {
        let bytes = [0u8, 1, 0x7f, 0x80, 0xff];
        assert_eq!(from_hex(&to_hex(&bytes)), bytes);
        let xattrs = set(&[("user.a", "00ff"), ("security.capability", "0100")]);
        let records = pax_records(&xattrs);
        let mut all: Vec<(&[u8], &[u8])> = records
            .iter()
            .map(|(k, v)| (k.as_bytes(), v.as_slice()))
            .collect();
        all.push((b"path", b"x/y"));
        assert_eq!(from_pax(all), xattrs);
    }

    #[test]
    fn differences_name_what_was_added_removed_and_changed() {
        let listed = set(&[("user.a", "01"), ("user.b", "02"), ("trusted.t", "03")]);
        let found = set(&[
            ("user.a", "01"),
            ("user.b", "ff"),
            ("security.capability", "04"),
        ]);
        let diffs = differences(Some(&listed), &found, true);
        assert_eq!(diffs.len(), 3, "{diffs:?}");
        assert!(diffs.iter().any(|d| d.contains("trusted.t is missing")));
        assert!(diffs.iter().any(|d| d.contains("user.b is ff")));
        assert!(diffs
            .iter()
            .any(|d| d.contains("security.capability (04) is not")));
        // Only root sees trusted.*.
        assert_eq!(differences(Some(&listed), &found, false).len(), 2);
        assert!(differences(None, &Xattrs::new(), true).is_empty());
        assert_eq!(key(Some(&Xattrs::new())), None);
        assert_ne!(key(Some(&listed)), key(Some(&found)));
    }

    #[test]
    fn read_and_apply_on_a_real_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"x").unwrap();
        let want = set(&[("user.fw-test", "68690a")]);
        match apply(&path, &want) {
            Ok(()) => assert_eq!(read(&path).unwrap(), want),
            // A file system without user attributes (tmpfs before 6.6).
            Err(e) => assert!(e.to_string().contains("does not support"), "{e}"),
        }
    }
}
