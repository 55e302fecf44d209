//! Reads a package as a stream down to its literal data (the tar.gz),
//! noting where the packets that frame it begin, so that later bytes can
//! be fetched at random (see `layout.rs`).
//!
//! Nothing here is trusted: the signature and the MDC around the literal
//! data are never checked in a delta (they cover the whole package, which
//! a delta does not download). What counts is the manifest's own
//! signature, checked before the manifest is parsed, and each file's
//! BLAKE3 against it. This reader only finds bytes; wrong ones fail those
//! checks. Every count and length is bounded.

use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use openpgp::crypto::SessionKey;
use openpgp::packet::{PKESK, SKESK};
use openpgp::parse::stream::DecryptionHelper as _;
use openpgp::parse::Parse;
use openpgp::policy::{Policy as _, StandardPolicy};
use openpgp::types::SymmetricAlgorithm;
use sequoia_openpgp as openpgp;

use fw_core::framing::{self, BodyReader, Len};
use fw_core::keyring::Keyring;
use fw_core::trust::TrustHelper;
use fw_core::{Error, Result};

/// The most packets before the literal data, and the largest of them.
const MAX_PACKETS: usize = 4096;
const MAX_PACKET: u64 = 64 << 10;

/// Where the literal data packet and, if encrypted, the SEIPD packet
/// begin: the offset of each one's first length header (in the file, or
/// in the CFB plaintext for a literal packet inside SEIPD), and that
/// header.
#[derive(Clone)]
pub struct Framing {
    pub literal_start: u64,
    pub literal_first: Len,
    pub cipher: Option<Cipher>,
}

#[derive(Clone)]
pub struct Cipher {
    pub algo: SymmetricAlgorithm,
    pub key: SessionKey,
    pub seipd_start: u64,
    pub seipd_first: Len,
}

/// Counts the bytes read through it.
struct Counted<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

fn not_fw(why: impl std::fmt::Display) -> Error {
    Error::invalid(format!(
        "the package is not an fw package as fw-sign writes it ({why}); refusing it"
    ))
}

/// The error of a package that ends early (the head parser fetches more
/// on it).
pub const TRUNCATED: &str = "the package is truncated: it ends early";

fn read_error(err: io::Error) -> Error {
    if err.kind() == io::ErrorKind::UnexpectedEof {
        return Error::invalid(TRUNCATED);
    }
    crate::http::from_io(err, "the package")
}

/// Reads a packet's whole body, at most [`MAX_PACKET`] bytes.
fn small_body(r: &mut impl Read, len: Len, what: &str) -> Result<Vec<u8>> {
    let Len::Definite(n) = len else {
        return Err(not_fw(format!("a {what} packet of unknown length")));
    };
    if n > MAX_PACKET {
        return Err(not_fw(format!("a {what} packet of {n} bytes")));
    }
    let mut body = Vec::with_capacity(n as usize);
    r.take(n).read_to_end(&mut body).map_err(read_error)?;
    if body.len() as u64 != n {
        return Err(read_error(io::ErrorKind::UnexpectedEof.into()));
    }
    Ok(body)
}

/// The header (`tag`, `len`) of the next packet.
fn next_header(r: &mut impl Read) -> Result<(u8, Len)> {
    framing::read_header(r)
        .map_err(|e| match e.kind() {
            io::ErrorKind::InvalidData => not_fw(e),
            _ => read_error(e),
        })?
        .ok_or_else(|| Error::invalid(TRUNCATED))
}

/// Skips to the literal data of the message `input`, decrypting with the
/// keyring's device key if it is encrypted. Returns where things are and
/// a reader of the literal data.
pub fn open<'a, R: Read + Send + Sync + 'a>(
    input: R,
    keyring: &Keyring,
) -> Result<(Framing, Box<dyn Read + Send + Sync + 'a>)> {
    let count = Arc::new(AtomicU64::new(0));
    let mut file = Counted {
        inner: input,
        count: Arc::clone(&count),
    };
    let mut pkesks: Vec<PKESK> = Vec::new();
    for _ in 0..MAX_PACKETS {
        let (tag, len) = next_header(&mut file)?;
        match tag {
            framing::TAG_PKESK => {
                let body = small_body(&mut file, len, "session key")?;
                let mut packet = vec![framing::ctb(tag)];
                packet.extend(framing::definite_len(body.len() as u64).map_err(read_error)?);
                packet.extend(body);
                match openpgp::Packet::from_bytes(&packet) {
                    Ok(openpgp::Packet::PKESK(p)) => pkesks.push(p),
                    _ => return Err(not_fw("an unreadable session key packet")),
                }
            }
            // Markers and one-pass signatures: nothing to learn.
            10 | framing::TAG_ONE_PASS_SIG => {
                small_body(&mut file, len, "leading")?;
            }
            framing::TAG_LITERAL => {
                let framing = Framing {
                    literal_start: count.load(Ordering::Relaxed) - header_len(len),
                    literal_first: len,
                    cipher: None,
                };
                let data = literal_data(BodyReader::new(file, len))?;
                return Ok((framing, data));
            }
            framing::TAG_SEIPD => {
                let seipd_start = count.load(Ordering::Relaxed) - header_len(len);
                return open_seipd(
                    BodyReader::new(file, len),
                    len,
                    seipd_start,
                    &pkesks,
                    keyring,
                );
            }
            other => return Err(not_fw(format!("a packet of type {other} before the data"))),
        }
    }
    Err(not_fw(format!(
        "more than {MAX_PACKETS} packets before the data"
    )))
}

/// The bytes of the length header that read `len`.
fn header_len(len: Len) -> u64 {
    match len {
        Len::Partial(_) => 1,
        Len::Definite(n) => framing::definite_len(n)
            .map(|v| v.len() as u64)
            .unwrap_or(5),
        Len::Indeterminate => 0,
    }
}

fn open_seipd<'a, R: Read + Send + Sync + 'a>(
    mut body: BodyReader<Counted<R>>,
    first: Len,
    seipd_start: u64,
    pkesks: &[PKESK],
    keyring: &Keyring,
) -> Result<(Framing, Box<dyn Read + Send + Sync + 'a>)> {
    let mut version = [0u8; 1];
    body.read_exact(&mut version).map_err(read_error)?;
    if version[0] != 1 {
        return Err(not_fw(format!("SEIPD version {}", version[0])));
    }
    // The prefix: a block of random bytes and its last two again. 34 bytes
    // cover every block size OpenPGP has.
    let mut prefix = Vec::with_capacity(34);
    (&mut body)
        .take(34)
        .read_to_end(&mut prefix)
        .map_err(read_error)?;
    let policy = StandardPolicy::new();
    let mut found: Option<(SymmetricAlgorithm, SessionKey)> = None;
    let mut check = |algo: Option<SymmetricAlgorithm>, key: &SessionKey| -> bool {
        let Some(algo) = algo else { return false };
        if policy.symmetric_algorithm(algo).is_err() || !framing::quick_check(algo, key, &prefix) {
            return false;
        }
        found = Some((algo, key.clone()));
        true
    };
    let mut helper = TrustHelper::new(keyring);
    let outcome = helper.outcome();
    let no_skesks: &[SKESK] = &[];
    if let Err(e) = helper.decrypt(pkesks, no_skesks, None, &mut check) {
        return Err(outcome.borrow_mut().error_for(e));
    }
    let (algo, key) = found.ok_or_else(|| {
        Error::security("no key of the keyring decrypts the package's session key")
    })?;
    let block = algo.block_size().map_err(not_fw)?;
    let ciphertext = io::Cursor::new(prefix).chain(body);
    let plain = framing::cfb_reader(algo, &key, None, ciphertext).map_err(not_fw)?;
    let count = Arc::new(AtomicU64::new(0));
    let mut plain = Counted {
        inner: plain,
        count: Arc::clone(&count),
    };
    let mut skip = vec![0u8; block + 2];
    plain.read_exact(&mut skip).map_err(read_error)?;
    for _ in 0..MAX_PACKETS {
        let (tag, len) = next_header(&mut plain)?;
        match tag {
            10 | framing::TAG_ONE_PASS_SIG => {
                small_body(&mut plain, len, "leading")?;
            }
            framing::TAG_LITERAL => {
                let framing = Framing {
                    literal_start: count.load(Ordering::Relaxed) - header_len(len),
                    literal_first: len,
                    cipher: Some(Cipher {
                        algo,
                        key,
                        seipd_start,
                        seipd_first: first,
                    }),
                };
                let data = literal_data(BodyReader::new(plain, len))?;
                return Ok((framing, data));
            }
            other => {
                return Err(not_fw(format!(
                    "a packet of type {other} before the data in the encryption"
                )))
            }
        }
    }
    Err(not_fw(format!(
        "more than {MAX_PACKETS} packets before the data"
    )))
}

/// Reads the literal packet's header (format, name, date) off `body`; the
/// rest is the data.
fn literal_data<'a, R: Read + Send + Sync + 'a>(
    mut body: BodyReader<R>,
) -> Result<Box<dyn Read + Send + Sync + 'a>> {
    let mut head = [0u8; 2];
    body.read_exact(&mut head).map_err(read_error)?;
    let mut rest = vec![0u8; head[1] as usize + 4];
    body.read_exact(&mut rest).map_err(read_error)?;
    if head[0] != b'b' || head[1] != 0 {
        return Err(not_fw(
            "literal data that is not binary, or has a file name",
        ));
    }
    Ok(Box::new(body))
}
