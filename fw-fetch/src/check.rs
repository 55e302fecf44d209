//! Proves fetched bytes against the signed manifest before they are kept
//! or passed on: a file's gzip members must be whole fw members (no
//! omitted ones), inflate to exactly its size, and hash to its BLAKE3.
//! fw-unpack --delta checks the same again; checking here keeps the
//! resume cache clean and names the file the server got wrong.

use fw_core::manifest::Entry;
use fw_core::{Error, Result};

/// Checks one file's members as they arrive.
pub struct FileCheck {
    path: String,
    size: u64,
    blake3: String,
    /// Bytes of the member being received.
    member: Vec<u8>,
    /// Bytes of members received (where `member` starts).
    at: u64,
    inflated: u64,
    hasher: blake3::Hasher,
}

impl FileCheck {
    pub fn new(entry: &Entry) -> FileCheck {
        FileCheck {
            path: entry.path.clone(),
            size: entry.size.unwrap_or(0),
            blake3: entry.blake3.clone().unwrap_or_default(),
            member: Vec::new(),
            at: 0,
            inflated: 0,
            hasher: blake3::Hasher::new(),
        }
    }

    fn wrong(&self, why: impl std::fmt::Display) -> Error {
        Error::security(format!(
            "{}: the server sent bytes that are not this file of the signed package ({why}); \
             refusing them (the next fetch starts over)",
            self.path
        ))
    }

    /// Takes the next bytes of the file's members.
    pub fn push(&mut self, mut bytes: &[u8]) -> Result<()> {
        while !bytes.is_empty() {
            let need = match fw_gz::member_info(&self.member) {
                Some(info) if info.omitted.is_none() && info.len <= fw_gz::MAX_MEMBER => {
                    info.len - self.member.len()
                }
                Some(_) => return Err(self.wrong("a gzip member that is not one of fw's")),
                // The header is not complete yet: a byte at a time up to
                // its extra field's length.
                None if self.member.len() < 12 => 12 - self.member.len(),
                None if self.member[..4] != [0x1f, 0x8b, 8, 4] => {
                    return Err(self.wrong("not a gzip member of an fw package"))
                }
                None => {
                    let xlen = u16::from_le_bytes([self.member[10], self.member[11]]) as usize;
                    (12 + xlen)
                        .checked_sub(self.member.len())
                        .filter(|&n| n > 0)
                        .ok_or_else(|| self.wrong("a gzip member without fw's length"))?
                }
            };
            let take = need.min(bytes.len());
            self.member.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if let Some(info) = fw_gz::member_info(&self.member) {
                if self.member.len() == info.len {
                    self.inflate()?;
                }
            }
        }
        Ok(())
    }

    fn inflate(&mut self) -> Result<()> {
        let member = std::mem::take(&mut self.member);
        let (mut inflated, mut hasher) = (self.inflated, self.hasher.clone());
        let size = self.size;
        fw_gz::inflate_members(&member, self.at, |data| {
            inflated += data.len() as u64;
            if inflated > size {
                return Err(std::io::Error::other("more bytes than the file's size"));
            }
            hasher.update(data);
            Ok(())
        })
        .map_err(|e| self.wrong(e))?;
        self.at += member.len() as u64;
        self.inflated = inflated;
        self.hasher = hasher;
        Ok(())
    }

    /// Bytes of whole members taken so far.
    pub fn whole(&self) -> u64 {
        self.at
    }

    /// Forgets the bytes of a member not yet whole (the resume cache
    /// keeps whole members only).
    pub fn drop_partial(&mut self) {
        self.member.clear();
    }

    /// After the last byte: the file must be complete and as signed.
    pub fn finish(self) -> Result<()> {
        if !self.member.is_empty() {
            return Err(self.wrong("its last gzip member is cut short"));
        }
        if self.inflated != self.size {
            return Err(self.wrong(format!(
                "{} bytes where the manifest says {}",
                self.inflated, self.size
            )));
        }
        if self.hasher.finalize().to_hex().as_str() != self.blake3 {
            return Err(self.wrong("its BLAKE3 differs from the manifest's"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn entry(data: &[u8]) -> Entry {
        Entry {
            path: "f".into(),
            kind: fw_core::manifest::Kind::File,
            mode: 0o644,
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

    fn members(data: &[u8]) -> Vec<u8> {
        let mut gz = fw_gz::GzWriter::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(data).unwrap();
        gz.finish().unwrap()
    }

    #[test]
    fn accepts_the_file_in_any_pieces_and_refuses_anything_else() {
        let data: Vec<u8> = (0..3 * fw_gz::BLOCK as u32)
            .map(|i| (i % 253) as u8)
            .collect();
        let bytes = members(&data);
        for piece in [1, 7, 20, 4096, bytes.len()] {
            let mut check = FileCheck::new(&entry(&data));
            for chunk in bytes.chunks(piece) {
                check.push(chunk).unwrap();
            }
            check.finish().unwrap();
        }
        let mut other = data.clone();
        other[5] ^= 1;
        let mut check = FileCheck::new(&entry(&other));
        check.push(&bytes).unwrap();
        assert_eq!(check.finish().unwrap_err().code, fw_core::Exit::Security);
        let mut check = FileCheck::new(&entry(&data));
        check.push(&bytes[..bytes.len() - 3]).unwrap();
        assert!(check.finish().is_err(), "cut short");
        let mut check = FileCheck::new(&entry(&data));
        assert!(check.push(&fw_gz::omitted_member(5)).is_err());
        let mut check = FileCheck::new(&entry(&data[..10]));
        assert!(check.push(&bytes).is_err(), "more than the size");
    }
}
