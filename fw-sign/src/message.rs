//! The OpenPGP message around the tar.gz, written by hand rather than by
//! sequoia's streaming writers, so that every chunk boundary is where
//! `fw_core::framing` documents it: a device can then find any byte of
//! the tar.gz in the package file and fetch it by HTTP Range.
//!
//! ```text
//! signed:     OPS | literal (b, no name, date; the tar.gz) | signature
//! encrypted:  PKESK... | SEIPD v1 ( 1 | CFB( prefix | OPS | literal | signature | MDC ) )
//! ```
//!
//! sequoia still makes the packets whose bytes no offset depends on: the
//! one-pass signature, the PKESKs (v3, for GnuPG 2.2) and the signature
//! (SHA-256, as before). The SEIPD layer is written here: AES-256 CFB
//! from sequoia, and the MDC with plain SHA-1 (nettle), which removes the
//! SHA-1 collision-detection cost that sequoia's writer paid (about 1 s
//! per 256 MB; the MDC is a checksum under the encryption, not a
//! signature: see fw-unseal's seipd.rs). GnuPG 2.2 reads the result
//! (tests/gnupg_interop.rs).

use std::io::{self, Read, Seek, Write};
use std::time::SystemTime;

use openpgp::crypto::{KeyPair, SessionKey};
use openpgp::packet::key::{PublicParts, UnspecifiedRole};
use openpgp::packet::one_pass_sig::OnePassSig3;
use openpgp::packet::pkesk::PKESK3;
use openpgp::packet::Key;
use openpgp::serialize::MarshalInto;
use openpgp::types::{HashAlgorithm, SignatureType, SymmetricAlgorithm};
use openpgp::{KeyID, Packet};
use sequoia_openpgp as openpgp;

use fw_core::framing::{self, Body, BodyWriter, MdcWriter};
use fw_core::{Error, Result};

/// The cipher of encrypted packages.
pub const CIPHER: SymmetricAlgorithm = SymmetricAlgorithm::AES256;
/// The hash of the package's signature: hardware-accelerated (SHA-NI) on
/// current x86 and ARM CPUs, about twice as fast as SHA-512 for a device
/// hashing every byte.
pub const HASH: HashAlgorithm = HashAlgorithm::SHA256;

/// A key the package is encrypted to.
pub struct Recipient<'a> {
    pub keyid: KeyID,
    pub key: &'a Key<PublicParts, UnspecifiedRole>,
}

fn io_error(err: io::Error) -> Error {
    Error::io("the package (stdout or its spool file)", err)
}

fn openpgp_error(err: anyhow::Error) -> Error {
    match err.downcast::<io::Error>() {
        Ok(io) => io_error(io),
        Err(other) => Error::failed(format!("OpenPGP: {other}")),
    }
}

/// Writes the signed (and, with `recipients`, encrypted) message whose
/// literal data is `head` followed by the first `tree.1` bytes of the
/// file `tree.0`.
pub fn write<W: Write>(
    mut out: W,
    head: &[u8],
    tree: (std::fs::File, u64),
    signer: &mut KeyPair,
    recipients: &[Recipient<'_>],
    created: SystemTime,
) -> Result<W> {
    let mut ops = OnePassSig3::new(SignatureType::Binary);
    ops.set_hash_algo(HASH);
    ops.set_pk_algo(signer.public().pk_algo());
    ops.set_issuer(signer.public().keyid());
    ops.set_last(true);
    let ops = Packet::from(ops).to_vec().map_err(openpgp_error)?;
    let literal = Literal {
        head,
        tree,
        date: Timestamp::of(created)?,
    };
    if recipients.is_empty() {
        out.write_all(&ops).map_err(io_error)?;
        let hash = literal.write(&mut out)?;
        let signature = sign(signer, hash, created)?;
        out.write_all(&signature).map_err(io_error)?;
        out.flush().map_err(io_error)?;
        return Ok(out);
    }

    let key = SessionKey::new(CIPHER.key_size().map_err(openpgp_error)?).map_err(openpgp_error)?;
    for recipient in recipients {
        let mut pkesk =
            PKESK3::for_recipient(CIPHER, &key, recipient.key).map_err(openpgp_error)?;
        pkesk.set_recipient(Some(recipient.keyid.clone()));
        let bytes = Packet::from(pkesk).to_vec().map_err(openpgp_error)?;
        out.write_all(&bytes).map_err(io_error)?;
    }
    let block = CIPHER.block_size().map_err(openpgp_error)?;
    out.write_all(&[framing::ctb(framing::TAG_SEIPD)])
        .map_err(io_error)?;
    // Everything up to the literal packet's end is the lead; the
    // signature and the MDC go in the final chunk.
    let lead = 1 + (block + 2) as u64 + ops.len() as u64 + literal.packet_len()?;
    let mut body = BodyWriter::new(out, Body { lead });
    let tail = body.tail_len();
    body.write_all(&[1]).map_err(io_error)?; // SEIPD version
    let cfb = framing::cfb_encryptor(CIPHER, &key, body).map_err(openpgp_error)?;
    let mut plain = MdcWriter::new(cfb);
    // The random prefix (an IV's job) and its last two bytes again, the
    // quick check of a session key.
    let mut prefix = vec![0u8; block];
    openpgp::crypto::random(&mut prefix).map_err(openpgp_error)?;
    let check = [prefix[block - 2], prefix[block - 1]];
    prefix.extend_from_slice(&check);
    plain.write_all(&prefix).map_err(io_error)?;
    plain.write_all(&ops).map_err(io_error)?;
    let hash = literal.write(&mut plain)?;
    let signature = sign(signer, hash, created)?;
    tail.set(signature.len() as u64 + framing::MDC_HEADER.len() as u64 + 20);
    plain.write_all(&signature).map_err(io_error)?;
    let cfb = plain.finish().map_err(io_error)?;
    let body = cfb.finalize().map_err(openpgp_error)?;
    let mut out = body.finish().map_err(io_error)?;
    out.flush().map_err(io_error)?;
    Ok(out)
}

/// OpenPGP's 4-byte time.
struct Timestamp;
impl Timestamp {
    fn of(time: SystemTime) -> Result<[u8; 4]> {
        let secs = time
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        u32::try_from(secs)
            .map(u32::to_be_bytes)
            .map_err(|_| Error::usage("the creation time is past 2106: OpenPGP cannot date it"))
    }
}

/// The literal data packet: binary, no file name, the date; the data is
/// the head and then the tree's members from the spool.
struct Literal<'a> {
    head: &'a [u8],
    tree: (std::fs::File, u64),
    date: [u8; 4],
}

impl Literal<'_> {
    fn body(&self) -> Body {
        Body {
            lead: framing::LITERAL_HEADER_LEN + self.head.len() as u64 + self.tree.1,
        }
    }

    /// The whole packet's length: tag, length headers and body.
    fn packet_len(&self) -> Result<u64> {
        Ok(1 + self.body().encoded_len(0).map_err(io_error)?)
    }

    /// Writes the packet; returns the signature's hash of its data.
    fn write(&self, out: &mut impl Write) -> Result<openpgp::crypto::hash::Context> {
        let mut hash = HASH.context().map_err(openpgp_error)?.for_signature(4);
        out.write_all(&[framing::ctb(framing::TAG_LITERAL)])
            .map_err(io_error)?;
        let mut body = BodyWriter::new(&mut *out, self.body());
        body.write_all(&[b'b', 0]).map_err(io_error)?;
        body.write_all(&self.date).map_err(io_error)?;
        hash.update(self.head);
        body.write_all(self.head).map_err(io_error)?;
        let mut tree = &self.tree.0;
        tree.seek(io::SeekFrom::Start(0)).map_err(io_error)?;
        let mut tree = tree.take(self.tree.1);
        let mut buf = vec![0u8; 256 << 10];
        loop {
            let n = match tree.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_error(e)),
            };
            hash.update(&buf[..n]);
            body.write_all(&buf[..n]).map_err(io_error)?;
        }
        body.finish().map_err(io_error)?;
        Ok(hash)
    }
}

/// The signature packet over the literal data that `hash` hashed.
fn sign(
    signer: &mut KeyPair,
    hash: openpgp::crypto::hash::Context,
    created: SystemTime,
) -> Result<Vec<u8>> {
    crate::pack::sign_hashed(signer, HASH, hash, created)
        .and_then(|sig| Packet::from(sig).to_vec())
        .map_err(|e| Error::failed(format!("cannot sign the package: {e}")))
}
