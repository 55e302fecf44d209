//! The package's head: the OpenPGP packets before the tar.gz, and the
//! tar.gz's first members, which hold the manifest and its signature.
//! The manifest's signature is verified (keyring and trust rule of
//! fw_core::trust, as fw-unseal's) before a byte of the manifest is
//! parsed; only then is it the table of contents of the package.
//!
//! A package made by this fw-sign marks its first member with where the
//! tree's members begin (fw-gz `FB`), so the head is fetched exactly:
//! one small request, then the rest of the manifest's members.

use std::io::{self, Read};

use fw_core::keyring::Keyring;
use fw_core::manifest::{Manifest, MANIFEST_PATH, SIGNATURE_PATH};
use fw_core::trust::{self, Signer};
use fw_core::{Error, Result};

use crate::literal::{self, Framing};

/// The first request's size: the OpenPGP packets and the first member's
/// header are far smaller, and the first member's start comes along.
pub const FIRST: u64 = 8 << 10;
/// The most head bytes fetched before the first member's header shows.
const MAX_PREAMBLE: u64 = 4 << 20;
/// The largest manifest read (as fw-unpack's bound).
const MAX_JSON: u64 = 8 << 20;
/// The manifest's members, inflated: the manifest, its signature and
/// their tar headers.
const MAX_REGION_TAR: u64 = MAX_JSON + (1 << 20);

/// The head, parsed and verified.
pub struct Head {
    pub framing: Framing,
    /// The tar.gz's first members as they are (the manifest and its
    /// signature), which fw-unpack --delta reads first.
    pub region: Vec<u8>,
    /// Where the tree's members begin (`FB`), for a package made by an
    /// fw-sign that writes the offsets.
    pub base: Option<u64>,
    pub manifest: Manifest,
    pub signer: Signer,
}

/// What parsing a prefix of the package found.
pub enum Parsed<R> {
    Head(Box<Head>, R),
    /// The prefix is too short: at least this many bytes of the file are
    /// needed.
    More(u64),
}

fn truncated(err: &Error) -> bool {
    err.message == literal::TRUNCATED
}

/// Reads the head off `input` (the package from byte 0). With `prefix_len`
/// (the input is an in-memory prefix of that length), a head cut short
/// asks for more instead of failing. Returns the rest of the literal
/// data as a reader, positioned after the manifest's members.
pub fn parse<'a, R: Read + Send + Sync + 'a>(
    input: R,
    keyring: &Keyring,
    prefix_len: Option<u64>,
) -> Result<Parsed<Box<dyn Read + Send + Sync + 'a>>> {
    let more = |at_least: u64| -> Result<Parsed<_>> {
        let len = prefix_len.expect("checked by the caller");
        Ok(Parsed::More(at_least.max(len + 1)))
    };
    let (framing, mut data) = match literal::open(input, keyring) {
        Ok(opened) => opened,
        Err(e) if truncated(&e) && prefix_len.is_some() => {
            let len = prefix_len.unwrap_or(0);
            if len >= MAX_PREAMBLE {
                return Err(Error::invalid(format!(
                    "the package has more than {MAX_PREAMBLE} bytes before its data: refusing it"
                )));
            }
            return more(len * 2);
        }
        Err(e) => return Err(e),
    };
    let mut region = Vec::new();
    let mut tar = Vec::new();
    let mut base = None;
    loop {
        match read_member(&mut data, &mut region) {
            Ok(Some(info)) => {
                if region.len() == info.len {
                    base = info.base;
                    if base.is_some_and(|b| b > MAX_REGION_TAR || b < info.len as u64) {
                        return Err(Error::invalid(
                            "the package's first gzip member says the manifest's members are \
                             larger than a manifest may be: refusing it",
                        ));
                    }
                }
                let start = region.len() - info.len;
                fw_gz::inflate_members(&region[start..], start as u64, |d| {
                    if tar.len() as u64 + d.len() as u64 > MAX_REGION_TAR {
                        return Err(io::Error::other("the manifest is larger than devices read"));
                    }
                    tar.extend_from_slice(d);
                    Ok(())
                })
                .map_err(|e| Error::invalid(format!("the package's manifest members: {e}")))?;
            }
            Ok(None) => {
                return Err(Error::invalid(
                    "the package's tar.gz ends before its manifest and signature",
                ))
            }
            Err(e) if truncated(&e) && prefix_len.is_some() => {
                // Fetch to the end of the marked members at once.
                let want = match (base, prefix_len) {
                    (Some(b), Some(len)) => len + (b - region.len() as u64) + 64,
                    (_, Some(len)) => len * 2,
                    _ => unreachable!(),
                };
                return more(want);
            }
            Err(e) => return Err(e),
        }
        let done = match base {
            Some(b) => region.len() as u64 >= b,
            None => fw_entries(&tar).is_some(),
        };
        if done {
            break;
        }
    }
    if base.is_some_and(|b| region.len() as u64 != b) {
        return Err(Error::invalid(
            "the package's manifest members do not end where its first member says: refusing it",
        ));
    }
    let (name, json, signature) = fw_entries(&tar).ok_or_else(|| {
        Error::invalid(format!(
            "the package's first members do not hold NAME/{MANIFEST_PATH} and \
             NAME/{SIGNATURE_PATH}: not an fw package"
        ))
    })?;
    // The root of trust: nothing of the manifest is parsed before this.
    let signer = trust::verify_detached(keyring, &signature, &json)
        .map_err(|e| e.context(format!("{name}/{SIGNATURE_PATH}")))?;
    let manifest = Manifest::from_json(&json)?;
    if manifest.name != name {
        return Err(Error::invalid(format!(
            "the signed manifest names the firmware {:?}, the package {name:?}: refusing it",
            manifest.name
        )));
    }
    Ok(Parsed::Head(
        Box::new(Head {
            framing,
            region,
            base,
            manifest,
            signer,
        }),
        data,
    ))
}

/// Reads the next whole fw member off `data`, appending it to `region`.
fn read_member(data: &mut impl Read, region: &mut Vec<u8>) -> Result<Option<fw_gz::MemberInfo>> {
    let start = region.len();
    let read = |data: &mut dyn Read, region: &mut Vec<u8>, n: usize| -> Result<usize> {
        let got = data
            .take(n as u64)
            .read_to_end(region)
            .map_err(|e| match e.kind() {
                io::ErrorKind::UnexpectedEof => Error::invalid(literal::TRUNCATED),
                _ => crate::http::from_io(e, "the package"),
            })?;
        Ok(got)
    };
    let got = read(data, region, 12)?;
    if got == 0 {
        return Ok(None);
    }
    if got < 12 {
        return Err(Error::invalid(literal::TRUNCATED));
    }
    if region[start..start + 4] != [0x1f, 0x8b, 8, 4] {
        return Err(Error::invalid(
            "the package's tar.gz does not start with fw-sign's gzip members: refusing it",
        ));
    }
    let xlen = u16::from_le_bytes([region[start + 10], region[start + 11]]) as usize;
    if read(data, region, xlen)? < xlen {
        return Err(Error::invalid(literal::TRUNCATED));
    }
    let info = fw_gz::member_info(&region[start..])
        .filter(|i| i.len <= fw_gz::MAX_MEMBER && i.len >= 12 + xlen + 8 && i.omitted.is_none())
        .ok_or_else(|| Error::invalid("the package's first gzip members are not fw-sign's"))?;
    let rest = info.len - 12 - xlen;
    if read(data, region, rest)? < rest {
        return Err(Error::invalid(literal::TRUNCATED));
    }
    Ok(Some(info))
}

/// The firmware's name, the manifest and its signature, if `tar` starts
/// with both entries whole.
fn fw_entries(tar: &[u8]) -> Option<(String, Vec<u8>, Vec<u8>)> {
    let mut archive = tar::Archive::new(tar);
    let mut entries = archive.entries().ok()?;
    let mut take = |want: &str, limit: u64| -> Option<(String, Vec<u8>)> {
        let mut entry = entries.next()?.ok()?;
        let path = String::from_utf8(entry.path_bytes().into_owned()).ok()?;
        let (name, rest) = path.split_once('/')?;
        let size = entry.header().entry_size().ok()?;
        if rest != want || size > limit || entry.header().entry_type() != tar::EntryType::Regular {
            return None;
        }
        let mut data = Vec::with_capacity(size as usize);
        entry.read_to_end(&mut data).ok()?;
        (data.len() as u64 == size).then(|| (name.to_string(), data))
    };
    let (name, json) = take(MANIFEST_PATH, MAX_JSON)?;
    let (name2, signature) = take(SIGNATURE_PATH, 64 << 10)?;
    (name == name2).then_some((name, json, signature))
}
