//! The package's head: the OpenPGP packets before the tar.gz, and the
//! tar.gz's first members, which hold the manifest and its signature.
//! The manifest's signature is verified (keyring and trust rule of
//! fw_core::trust, as fw-unseal's) before a byte of the manifest is
//! parsed; only then is it the table of contents of the package.
//!
//! A package of this fw-sign marks its first member with where the tree's
//! members begin (fw-gz `FB`) and with the table of the manifest's chunks
//! (`FC`), each in members of its own: a delta fetches the first member,
//! then only the chunks that no installed manifest has, and the signature.
//! The table is not trusted: the manifest put together from it must
//! verify, and every fetched chunk must be the one the table names.

use std::collections::HashMap;
use std::io::{self, Read};
use std::path::PathBuf;

use flate2::Compression;

use fw_core::keyring::Keyring;
use fw_core::manifest::{self, Manifest, MANIFEST_PATH, MAX_JSON, MAX_SIGNATURE, SIGNATURE_PATH};
use fw_core::trust::{self, Signer};
use fw_core::{Error, Result};

use crate::literal::{self, Framing};

/// The first request's size: the OpenPGP packets and the first member
/// (with the manifest's chunk table) are smaller in most packages.
pub const FIRST: u64 = 16 << 10;
/// The most head bytes fetched before the first member shows whole.
const MAX_PREAMBLE: u64 = 4 << 20;
/// The manifest's members, inflated: the manifest, its signature and
/// their tar headers.
const MAX_REGION_TAR: u64 = MAX_JSON + (1 << 20);

/// The head, parsed and verified.
pub struct Head {
    pub framing: Framing,
    /// The tar.gz's first members (the manifest and its signature), which
    /// fw-unpack --delta reads first.
    pub region: std::sync::Arc<[u8]>,
    /// Where the tree's members begin (`FB`), for a package made by an
    /// fw-sign that writes the offsets.
    pub base: Option<u64>,
    /// Shared with the thread that writes the stream.
    pub manifest: std::sync::Arc<Manifest>,
    pub signer: Signer,
}

/// A result that may need more of the package's first bytes: at least
/// this many.
pub enum Step<T> {
    Done(T),
    More(u64),
}

/// The package's first gzip member, and where the packets before it are.
pub struct First {
    pub framing: Framing,
    pub member: Vec<u8>,
    pub info: fw_gz::MemberInfo,
}

fn truncated(err: &Error) -> bool {
    err.message == literal::TRUNCATED
}

/// Parses `prefix` (the package's first bytes) down to its first gzip
/// member, whole.
pub fn first(prefix: &[u8], keyring: &Keyring) -> Result<Step<First>> {
    let len = prefix.len() as u64;
    let more = || -> Result<Step<First>> {
        if len >= MAX_PREAMBLE {
            return Err(Error::invalid(format!(
                "the package has more than {MAX_PREAMBLE} bytes before its manifest: refusing it"
            )));
        }
        Ok(Step::More((len * 2).max(FIRST)))
    };
    let (framing, mut data) = match literal::open(io::Cursor::new(prefix), keyring) {
        Ok(opened) => opened,
        Err(e) if truncated(&e) => return more(),
        Err(e) => return Err(e),
    };
    let mut member = Vec::new();
    match read_member(&mut data, &mut member) {
        Ok(Some(info)) => Ok(Step::Done(First {
            framing,
            member,
            info,
        })),
        Ok(None) => Err(Error::invalid(
            "the package's tar.gz is empty: not an fw package",
        )),
        Err(e) if truncated(&e) => match fw_gz::member_info(&member) {
            // The member's length is known: fetch to its end at once.
            Some(info) => Ok(Step::More(len + (info.len - member.len()) as u64 + 64)),
            None => more(),
        },
        Err(e) => Err(e),
    }
}

/// Checks the manifest's members: the two tar entries whole, the
/// signature by the keyring's trust rule over the manifest's bytes (before
/// they are parsed), the manifest's name the archive's.
pub fn verify(framing: Framing, region: Vec<u8>, keyring: &Keyring) -> Result<Head> {
    // Where the tree's members begin in the package (the region may have
    // been put together from installed manifests: its length differs).
    let base = fw_gz::member_info(&region)
        .ok_or_else(|| Error::invalid("the package's manifest members are not fw-sign's"))?
        .base;
    let mut tar = Vec::new();
    fw_gz::inflate_members(&region, 0, |d| {
        if tar.len() as u64 + d.len() as u64 > MAX_REGION_TAR {
            return Err(io::Error::other("the manifest is larger than devices read"));
        }
        tar.extend_from_slice(d);
        Ok(())
    })
    .map_err(|e| Error::invalid(format!("the package's manifest members: {e}")))?;
    let (name, json, signature) = fw_entries(&tar).ok_or_else(|| {
        Error::invalid(format!(
            "the package's first members do not hold NAME/{MANIFEST_PATH} and \
             NAME/{SIGNATURE_PATH} whole: not an fw package"
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
    Ok(Head {
        framing,
        region: region.into(),
        base,
        manifest: manifest.into(),
        signer,
    })
}

/// Reads the head off `input` (the package from byte 0, as a stream):
/// its members up to where the first one says the tree begins (or, in a
/// package without that mark, until the manifest and its signature are
/// whole). Returns the head and the rest of the literal data.
pub fn read<'a, R: Read + Send + Sync + 'a>(
    input: R,
    keyring: &Keyring,
) -> Result<(Head, Box<dyn Read + Send + Sync + 'a>)> {
    let (framing, mut data) = literal::open(input, keyring)?;
    let mut region = Vec::new();
    let mut base = None;
    loop {
        let start = region.len();
        let info = read_member(&mut data, &mut region)?.ok_or_else(|| {
            Error::invalid("the package's tar.gz ends before its manifest and signature")
        })?;
        if start == 0 {
            base = info.base;
        }
        if base.is_some_and(|b| b > MAX_REGION_TAR) || region.len() as u64 > MAX_REGION_TAR {
            return Err(Error::invalid(
                "the package's manifest members are larger than a manifest may be: refusing it",
            ));
        }
        let done = match base {
            Some(b) if region.len() as u64 > b => {
                return Err(Error::invalid(
                    "the package's manifest members do not end where its first member says: \
                     refusing it",
                ))
            }
            Some(b) => region.len() as u64 == b,
            None => {
                let mut tar = Vec::new();
                fw_gz::inflate_members(&region, 0, |d| {
                    tar.extend_from_slice(d);
                    Ok(())
                })
                .map_err(|e| Error::invalid(format!("the package's manifest members: {e}")))?;
                fw_entries(&tar).is_some()
            }
        };
        if done {
            break;
        }
    }
    let head = verify(framing, region, keyring)?;
    Ok((head, data))
}

/// Reads the next whole fw member off `data`, appending it to `bytes`.
fn read_member(data: &mut impl Read, bytes: &mut Vec<u8>) -> Result<Option<fw_gz::MemberInfo>> {
    let start = bytes.len();
    let read = |data: &mut dyn Read, bytes: &mut Vec<u8>, n: usize| -> Result<()> {
        let got = data
            .take(n as u64)
            .read_to_end(bytes)
            .map_err(|e| match e.kind() {
                io::ErrorKind::UnexpectedEof => Error::invalid(literal::TRUNCATED),
                _ => crate::http::from_io(e, "the package"),
            })?;
        if got < n {
            return Err(Error::invalid(literal::TRUNCATED));
        }
        Ok(())
    };
    let mut first = [0u8; 1];
    if data
        .read(&mut first)
        .map_err(|e| crate::http::from_io(e, "the package"))?
        == 0
    {
        return Ok(None);
    }
    bytes.push(first[0]);
    read(data, bytes, 11)?;
    if bytes[start..start + 4] != [0x1f, 0x8b, 8, 4] {
        return Err(Error::invalid(
            "the package's tar.gz does not start with fw-sign's gzip members: refusing it",
        ));
    }
    let xlen = u16::from_le_bytes([bytes[start + 10], bytes[start + 11]]) as usize;
    read(data, bytes, xlen)?;
    let info = fw_gz::member_info(&bytes[start..])
        .filter(|i| i.len <= fw_gz::MAX_MEMBER && i.len >= 12 + xlen + 8 && i.omitted.is_none())
        .ok_or_else(|| Error::invalid("the package's first gzip members are not fw-sign's"))?;
    read(data, bytes, info.len - 12 - xlen)?;
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
    let (name2, signature) = take(SIGNATURE_PATH, MAX_SIGNATURE)?;
    (name == name2).then_some((name, json, signature))
}

/// The chunks of the installed versions' manifests (see
/// `manifest::json_chunks`), by the first 16 bytes of their BLAKE3.
#[derive(Default)]
pub struct Known {
    chunks: HashMap<[u8; 16], (PathBuf, u64, u32)>,
}

impl Known {
    /// Indexes the manifests of the target's installed versions (read
    /// when a chunk of them is needed, so memory stays small).
    pub fn of_target(target: &std::path::Path) -> Known {
        let mut known = Known::default();
        for version in fw_core::target::installed_versions(target) {
            let path = version.dir.join(MANIFEST_PATH);
            let Ok(json) = std::fs::read(&path) else {
                continue;
            };
            for range in manifest::json_chunks(&json) {
                let hash = blake3::hash(&json[range.clone()]);
                let key: [u8; 16] = hash.as_bytes()[..16].try_into().expect("16 bytes");
                known.chunks.entry(key).or_insert((
                    path.clone(),
                    range.start as u64,
                    range.len() as u32,
                ));
            }
        }
        known
    }

    /// The bytes of the chunk `chunk` names, if an installed manifest has
    /// them (its file changed since: None).
    pub fn get(&self, chunk: &fw_gz::Chunk) -> Option<Vec<u8>> {
        let (path, at, len) = self.chunks.get(&chunk.hash)?;
        if *len != chunk.len {
            return None;
        }
        let mut file = std::fs::File::open(path).ok()?;
        let mut bytes = vec![0u8; *len as usize];
        use std::io::Seek;
        file.seek(io::SeekFrom::Start(*at)).ok()?;
        file.read_exact(&mut bytes).ok()?;
        (blake3::hash(&bytes).as_bytes()[..16] == chunk.hash).then_some(bytes)
    }
}

/// How the manifest's members are put together: the first member, then
/// per chunk either an installed manifest's bytes or a fetched member,
/// then the tail (the signature's entry).
pub struct Plan {
    /// Per chunk: its place in the tar.gz `[start, end)`, and its bytes if
    /// an installed manifest has them.
    pub chunks: Vec<(fw_gz::Chunk, u64, u64, Option<Vec<u8>>)>,
    /// The tail's place in the tar.gz.
    pub tail: (u64, u64),
}

impl Plan {
    /// The plan for the manifest's members after `first`, if its first
    /// member lists the chunks (and the lists add up).
    pub fn of(first: &First, known: &Known) -> Option<Plan> {
        let base = first.info.base?;
        let (from, to) = first.info.chunks?;
        let table = fw_gz::Chunk::decode(first.member.get(from..to)?)?;
        let mut at = first.info.len as u64;
        let mut chunks = Vec::with_capacity(table.len());
        for chunk in table {
            let end = at.checked_add(chunk.members as u64)?;
            chunks.push((chunk, at, end, known.get(&chunk)));
            at = end;
        }
        (at <= base).then_some(Plan {
            chunks,
            tail: (at, base),
        })
    }

    /// The tar.gz ranges to fetch: the chunks no installed manifest has,
    /// and the tail.
    pub fn wanted(&self) -> Vec<(u64, u64)> {
        let mut ranges: Vec<(u64, u64)> = self
            .chunks
            .iter()
            .filter(|c| c.3.is_none())
            .map(|c| (c.1, c.2))
            .collect();
        if self.tail.0 < self.tail.1 {
            ranges.push(self.tail);
        }
        ranges
    }

    /// The manifest's members: `first`'s member, the chunks (the fetched
    /// ones in `fetched`, in the order of [`Plan::wanted`], checked
    /// against the table; the known ones compressed again), the tail.
    pub fn members(self, first: &First, mut fetched: Vec<Vec<u8>>) -> Result<Vec<u8>> {
        let wrong = |why: &str| {
            Error::security(format!(
                "the server sent bytes that are not the package's manifest ({why}); refusing \
                 them"
            ))
        };
        let mut region = first.member.clone();
        let tail = if self.tail.0 < self.tail.1 {
            fetched.pop()
        } else {
            Some(Vec::new())
        };
        let mut fetched = fetched.into_iter();
        for (chunk, _, _, known) in self.chunks {
            match known {
                Some(bytes) => region.extend(fw_gz::compress_member(&bytes, Compression::fast())),
                None => {
                    let member = fetched.next().ok_or_else(|| wrong("a chunk is missing"))?;
                    let mut hasher = blake3::Hasher::new();
                    let len = fw_gz::inflate_members(&member, 0, |d| {
                        hasher.update(d);
                        Ok(())
                    })
                    .map_err(|_| wrong("a chunk is not whole gzip members"))?;
                    if len != chunk.len as u64 || hasher.finalize().as_bytes()[..16] != chunk.hash {
                        return Err(wrong("a chunk differs from the table's"));
                    }
                    region.extend(member);
                }
            }
        }
        region.extend(tail.ok_or_else(|| wrong("the signature's members are missing"))?);
        Ok(region)
    }
}
