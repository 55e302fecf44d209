//! The tar entries of a package as fw writes them: fw-sign for the
//! package, and fw-fetch to synthesise, from the signed manifest, the
//! headers that a delta upgrade does not download. One writer, so both
//! write the same bytes.
//!
//! Entries are GNU tar headers (long names as GNU `L`/`K` entries, as the
//! tar crate writes them) under the top-level directory NAME; an entry with
//! extended attributes has a PAX header of `SCHILY.xattr.NAME` records
//! before it. The data of
//! a file follows its header; fw-sign cuts gzip members around it (see
//! fw-gz), so the header and the padding after the data are written apart
//! from the data: [`append_header`] writes the header(s) only and
//! [`padding`] says how many zero bytes end the data's last block.

use std::io::{self, Write};

use crate::manifest::{Entry, Kind};

/// A tar block.
pub const BLOCK: u64 = 512;

fn header(
    kind: tar::EntryType,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: u64,
    size: u64,
) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_uid(uid as u64);
    header.set_gid(gid as u64);
    header.set_mtime(mtime);
    header.set_size(size);
    header
}

/// The zero bytes that follow `size` bytes of data to the next block.
pub fn padding(size: u64) -> usize {
    ((BLOCK - size % BLOCK) % BLOCK) as usize
}

/// The path of an entry in the archive: `NAME/` for the root, else
/// `NAME/PATH`.
pub fn archive_path(name: &str, path: &str) -> String {
    if path == "." {
        format!("{name}/")
    } else {
        format!("{name}/{path}")
    }
}

/// What `write` puts into a tar builder, without the end-of-archive
/// blocks that the builder adds when it is done.
fn tar_bytes(
    write: impl FnOnce(&mut tar::Builder<Vec<u8>>) -> io::Result<()>,
) -> io::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    write(&mut tar)?;
    let mut bytes = tar.into_inner()?;
    bytes.truncate(bytes.len() - 2 * BLOCK as usize);
    Ok(bytes)
}

/// One of fw's own files (`.fw/manifest.json`, `.fw/manifest.sig`):
/// header, data and padding.
pub fn fw_file_bytes(name: &str, path: &str, data: &[u8], created: u64) -> Vec<u8> {
    tar_bytes(|tar| {
        let mut header = header(
            tar::EntryType::Regular,
            0o644,
            0,
            0,
            created,
            data.len() as u64,
        );
        tar.append_data(&mut header, format!("{name}/{path}"), data)
    })
    .expect("a valid firmware name and an fw path make a tar entry")
}

/// The header(s) of one of fw's own files, without its data.
pub fn fw_file_header(name: &str, path: &str, size: u64, created: u64) -> Vec<u8> {
    tar_bytes(|tar| {
        let mut header = header(tar::EntryType::Regular, 0o644, 0, 0, created, size);
        tar.append_data(&mut header, format!("{name}/{path}"), io::empty())
    })
    .expect("a valid firmware name and an fw path make a tar entry")
}

/// The header(s) of a tree entry: a regular file's header says its size,
/// and its data and [`padding`] are the caller's to write.
pub fn header_bytes(name: &str, entry: &Entry) -> io::Result<Vec<u8>> {
    tar_bytes(|tar| append_header(tar, name, entry))
}

fn append_header<W: Write>(tar: &mut tar::Builder<W>, name: &str, entry: &Entry) -> io::Result<()> {
    let full = archive_path(name, &entry.path);
    let mtime = entry.mtime.unwrap_or(0);
    let (mode, uid, gid) = (entry.mode, entry.uid, entry.gid);
    if let Some(xattrs) = &entry.xattrs {
        // A PAX header of `SCHILY.xattr.NAME` records before the entry.
        let records = crate::xattrs::pax_records(xattrs);
        tar.append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), v.as_slice())))?;
    }
    match (entry.kind, &entry.hardlink) {
        (Kind::Dir, _) => {
            let mut h = header(tar::EntryType::Directory, mode, uid, gid, mtime, 0);
            tar.append_data(&mut h, &full, io::empty())
        }
        (Kind::Symlink, _) => {
            let mut h = header(tar::EntryType::Symlink, mode, uid, gid, mtime, 0);
            tar.append_link(&mut h, &full, entry.target.as_deref().unwrap_or_default())
        }
        (Kind::File, Some(first)) => {
            let mut h = header(tar::EntryType::Link, mode, uid, gid, mtime, 0);
            tar.append_link(&mut h, &full, format!("{name}/{first}"))
        }
        (Kind::File, None) => {
            let size = entry.size.unwrap_or(0);
            let mut h = header(tar::EntryType::Regular, mode, uid, gid, mtime, size);
            // An empty reader: the header (and any long-name entry) only.
            tar.append_data(&mut h, &full, io::empty())
        }
    }
}
