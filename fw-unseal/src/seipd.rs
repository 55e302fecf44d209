//! The encrypted package's outer layer, SEIPD v1 (RFC 4880 5.13), read
//! with sequoia's parser, key decryption and CFB, but with the MDC hashed
//! by plain SHA-1.
//!
//! Why not sequoia's `Decryptor` alone: it hashes the MDC with SHA-1
//! *collision detection*, which is there for signatures made with SHA-1
//! and costs two thirds of fw-unseal's time (perf: 66% of cycles in
//! `sha1collisiondetection` on a 256 MB package). The MDC is not a
//! signature: it is a checksum under the encryption, which an attacker
//! without the session key cannot recompute, colliding or not; the
//! package's authenticity comes from the signature inside (SHA-256). So
//! the MDC is hashed here with nettle's SHA-1 (SHA-NI), and the inner
//! signed message goes to sequoia's `Verifier` as before.
//!
//! The layer must be exactly: PKESK or SKESK packets (and markers), one
//! SEIPD v1 packet, end of message. At most `MAX_SESSION_KEYS` packets
//! come before the SEIPD packet, so that a message cannot make this
//! reader collect and try session keys without end. Its plaintext is a random prefix of a
//! cipher block plus its last two bytes repeated (the quick check for the
//! session key), the signed message, then the MDC packet `D3 14` and the
//! SHA-1 of everything before its 20 digest bytes.

use std::io::{self, Read};
use std::sync::{Arc, Mutex};

// The MDC needs SHA-1 itself; nettle files it under "insecure" because
// SHA-1 is not collision resistant, which the MDC does not rely on.
use nettle::hash::insecure_do_not_use::Sha1;
use nettle::hash::Hash as _;
use openpgp::crypto::symmetric::{BlockCipherMode, Decryptor, UnpaddingMode};
use openpgp::crypto::SessionKey;
use openpgp::packet::{Packet, PKESK, SKESK};
use openpgp::parse::{Cookie, PacketParser, PacketParserResult, Parse};
use openpgp::policy::Policy;
use openpgp::types::SymmetricAlgorithm;
use sequoia_openpgp as openpgp;

/// The MDC packet: new-format tag 19, length 20, then the digest.
const MDC_HEADER: [u8; 2] = [0xd3, 0x14];
const MDC_LEN: usize = 22;

/// Whether a binary message starts with a public- or symmetric-key
/// encrypted session key packet: an encrypted package.
pub fn starts_encrypted(prefix: &[u8]) -> bool {
    let Some(&first) = prefix.first() else {
        return false;
    };
    if first & 0x80 == 0 {
        return false;
    }
    let tag = if first & 0x40 != 0 {
        first & 0x3f
    } else {
        (first >> 2) & 0x0f
    };
    tag == 1 || tag == 3
}

type Parser = Arc<Mutex<Option<PacketParser<'static>>>>;

/// Reads the SEIPD packet's body (the ciphertext) off the parser.
/// After the parser's first error (e.g. the input ends after a partial
/// body chunk) it returns that error again without reading: sequoia's
/// parser is not fit to be read after an error (it panics, "body_hash is
/// None"; found by fuzzing), and buffered readers above retry.
struct Body {
    parser: Parser,
    failed: Option<(io::ErrorKind, String)>,
}

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some((kind, why)) = &self.failed {
            return Err(io::Error::new(*kind, why.clone()));
        }
        let result = match self.parser.lock() {
            Ok(mut parser) => match parser.as_mut() {
                Some(pp) => pp.read(buf),
                None => Ok(0),
            },
            Err(_) => Err(io::Error::other("the packet parser was poisoned")),
        };
        if let Err(e) = &result {
            self.failed = Some((e.kind(), e.to_string()));
        }
        result
    }
}

/// A refusal with its own exit code, through sequoia's error type.
#[derive(Debug)]
pub struct Refused(pub fw_core::Error);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Refused {}

fn invalid(why: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.to_string())
}

/// What decrypting the session key found.
pub struct Session {
    pub algo: SymmetricAlgorithm,
    pub key: SessionKey,
}

/// The plaintext of the SEIPD packet minus its prefix and MDC, as the
/// signed message for sequoia's `Verifier`. At the end of the body it
/// checks the MDC and that the message ends there; any failure is a read
/// error, and `verified()` is true only after both passed.
pub struct Plaintext {
    parser: Parser,
    decryptor: Decryptor<'static>,
    sha1: MdcHasher,
    /// The last bytes read, which may be the MDC packet.
    tail: Vec<u8>,
    buf: Vec<u8>,
    done: bool,
    verified: Arc<std::sync::atomic::AtomicBool>,
}

impl Plaintext {
    /// A flag that turns true once the MDC matched and the message ended.
    pub fn verified_flag(&self) -> Arc<std::sync::atomic::AtomicBool> {
        Arc::clone(&self.verified)
    }

    fn finish(&mut self) -> io::Result<()> {
        if self.tail.len() != MDC_LEN || self.tail[..2] != MDC_HEADER {
            return Err(invalid(
                "the encrypted data does not end with its integrity check (MDC): truncated or \
                 tampered with",
            ));
        }
        self.sha1.update(&MDC_HEADER);
        let digest = self.sha1.digest()?;
        if digest[..] != self.tail[2..] {
            return Err(invalid(
                "the encrypted data fails its integrity check (MDC): tampered with or damaged",
            ));
        }
        // Nothing may follow the encrypted data.
        let pp = self
            .parser
            .lock()
            .map_err(|_| io::Error::other("the packet parser was poisoned"))?
            .take()
            .expect("the parser is there until the end");
        match pp.next() {
            Ok((_, PacketParserResult::EOF(_))) => {}
            Ok((_, PacketParserResult::Some(next))) => {
                return Err(invalid(format!(
                    "a {} packet follows the encrypted data: not an fw package",
                    next.packet.tag()
                )))
            }
            Err(e) => return Err(invalid(format!("after the encrypted data: {e}"))),
        }
        self.verified
            .store(true, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
}

impl Read for Plaintext {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.done || out.is_empty() {
                return Ok(0);
            }
            // Hold back the last MDC_LEN bytes: they may be the MDC.
            if self.tail.len() > MDC_LEN {
                let n = (self.tail.len() - MDC_LEN).min(out.len());
                out[..n].copy_from_slice(&self.tail[..n]);
                self.sha1.update(&self.tail[..n]);
                self.tail.drain(..n);
                return Ok(n);
            }
            let n = self.decryptor.read(&mut self.buf)?;
            if n == 0 {
                self.done = true;
                self.finish()?;
                return Ok(0);
            }
            self.tail.extend_from_slice(&self.buf[..n]);
        }
    }
}

/// Parses the encryption layer up to the SEIPD packet, decrypts its
/// session key with `decrypt_session` (a sequoia `DecryptionHelper::decrypt`
/// call: it gets the session key packets and a check to run on each
/// candidate key) and returns the reader of the signed message inside.
pub fn open<R, F>(input: R, policy: &dyn Policy, decrypt_session: F) -> openpgp::Result<Plaintext>
where
    R: Read + Send + Sync + 'static,
    F: FnOnce(
        &[PKESK],
        &[SKESK],
        &mut dyn FnMut(Option<SymmetricAlgorithm>, &SessionKey) -> bool,
    ) -> openpgp::Result<()>,
{
    let mut pkesks = Vec::new();
    let mut skesks = Vec::new();
    let mut ppr = PacketParser::from_reader(input)?;
    let mut count = 0;
    let mut pp = loop {
        count += 1;
        if count > fw_core::trust::MAX_SESSION_KEYS {
            return Err(Refused(fw_core::Error::invalid(format!(
                "the package has more than {} packets before its encrypted data: not an fw \
                 package",
                fw_core::trust::MAX_SESSION_KEYS
            )))
            .into());
        }
        let pp = match ppr {
            PacketParserResult::Some(pp) => pp,
            PacketParserResult::EOF(_) => {
                return Err(invalid("the message ends before its encrypted data").into())
            }
        };
        match &pp.packet {
            Packet::PKESK(p) => pkesks.push(p.clone()),
            Packet::SKESK(s) => skesks.push(s.clone()),
            Packet::Marker(_) => {}
            Packet::SEIP(seip) if seip.version() == 1 => break pp,
            other => {
                return Err(invalid(format!(
                    "a {} packet where fw expects encrypted data (SEIPD v1): not an fw package",
                    other.tag()
                ))
                .into())
            }
        }
        ppr = pp.next()?.1;
    };
    policy.packet(&pp.packet)?;

    // The prefix: one block of random bytes, then its last two again.
    let mut prefix = Vec::with_capacity(34);
    (&mut pp).take(34).read_to_end(&mut prefix)?;
    let mut session: Option<Session> = None;
    let mut check = |algo: Option<SymmetricAlgorithm>, key: &SessionKey| -> bool {
        let Some(algo) = algo else { return false };
        let Ok(block) = algo.block_size() else {
            return false;
        };
        if policy.symmetric_algorithm(algo).is_err() || prefix.len() < block + 2 {
            return false;
        }
        let source = buffered_reader::Memory::with_cookie(&prefix[..block + 2], Cookie::default());
        let Ok(mut decryptor) = Decryptor::new(
            algo,
            BlockCipherMode::CFB,
            UnpaddingMode::None,
            key,
            None,
            source,
        ) else {
            return false;
        };
        let mut plain = vec![0u8; block + 2];
        if decryptor.read_exact(&mut plain).is_err()
            || plain[block - 2..block] != plain[block..block + 2]
        {
            return false;
        }
        session = Some(Session {
            algo,
            key: key.clone(),
        });
        true
    };
    decrypt_session(&pkesks, &skesks, &mut check)?;
    let Session { algo, key } =
        session.ok_or_else(|| invalid("no session key decrypted the package"))?;
    let block = algo.block_size()?;

    let parser: Parser = Arc::new(Mutex::new(Some(pp)));
    let ciphertext = io::Cursor::new(prefix).chain(Body {
        parser: Arc::clone(&parser),
        failed: None,
    });
    let source = buffered_reader::Generic::with_cookie(ciphertext, None, Cookie::default());
    let mut decryptor = Decryptor::new(
        algo,
        BlockCipherMode::CFB,
        UnpaddingMode::None,
        &key,
        None,
        source,
    )?;
    let mut sha1 = MdcHasher::start();
    let mut head = vec![0u8; block + 2];
    decryptor.read_exact(&mut head)?;
    sha1.update(&head);
    Ok(Plaintext {
        parser,
        decryptor,
        sha1,
        tail: Vec::with_capacity(2 * CHUNK),
        buf: vec![0u8; CHUNK],
        done: false,
        verified: Arc::default(),
    })
}

const CHUNK: usize = 64 << 10;

/// SHA-1 of the plaintext in a thread of its own: a quarter of
/// fw-unseal's work, taken off the thread that decrypts and verifies.
struct MdcHasher {
    batch: Vec<u8>,
    chunks: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    thread: Option<std::thread::JoinHandle<[u8; 20]>>,
}

impl MdcHasher {
    const BATCH: usize = 256 << 10;

    fn start() -> MdcHasher {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
        let thread = std::thread::spawn(move || {
            let mut sha1 = Sha1::default();
            for chunk in rx {
                sha1.update(&chunk);
            }
            let mut digest = [0u8; 20];
            sha1.digest(&mut digest);
            digest
        });
        MdcHasher {
            batch: Vec::with_capacity(Self::BATCH),
            chunks: Some(tx),
            thread: Some(thread),
        }
    }

    fn update(&mut self, data: &[u8]) {
        self.batch.extend_from_slice(data);
        if self.batch.len() >= Self::BATCH {
            self.send();
        }
    }

    fn send(&mut self) {
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(Self::BATCH));
        if let Some(chunks) = &self.chunks {
            // A send fails only if the thread died; digest() reports it.
            let _ = chunks.send(batch);
        }
    }

    fn digest(&mut self) -> io::Result<[u8; 20]> {
        self.send();
        self.chunks.take();
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .ok_or_else(|| io::Error::other("the MDC hashing thread died"))
    }
}
