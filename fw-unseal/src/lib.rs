//! fw-unseal: the device's streaming gate. Reads an fw package (an OpenPGP
//! message, binary or armored), decrypts it with the keyring's device key
//! when it is encrypted, verifies it by the trust rule of
//! [`fw_core::trust`], and writes the tar.gz inside to its output.
//!
//! OpenPGP proves a signature only at the end of a message, so bytes flow
//! before the verdict; the last [`HOLD_BACK`] bytes (always past the gzip
//! trailer) are written only after the signature and the MDC verified.
//! The output is framed by fw-unseal's proof (fw-core's `proof` module):
//! before the first byte, a gzip member announcing the one-pass signature
//! of a trusted key (a message without one is refused before a byte is
//! written), and after the last, once everything verified, a member
//! carrying the signature. fw-unpack checks that signature over exactly
//! the bytes between before it reports success, so nothing downstream
//! completes on bytes that did not verify, even when a shell ignores this
//! tool's exit status. With `spool`, nothing at all is written before the
//! verdict.
//!
//! Before the verdict, what a message may make this tool do is bounded:
//! no compression layer, bounded counts of session keys and signatures
//! (fw-core's trust helper), armor lines of at most [`armor::MAX_LINE`].

mod armor;
pub mod cli;
mod seipd;

use std::collections::VecDeque;
use std::io::{self, Read, Seek, Write};

use openpgp::parse::stream::{DecryptionHelper as _, DecryptorBuilder, VerifierBuilder};
use openpgp::parse::Parse;
use openpgp::policy::StandardPolicy;
use sequoia_openpgp as openpgp;

use fw_core::keyring::Keyring;
use fw_core::proof;
use fw_core::trust::{self, Signer, TrustHelper};
use fw_core::{Error, Result};

/// How much of the plaintext's tail waits for the verdict. Also sequoia's
/// own look-ahead, so memory stays near twice this whatever the package.
pub const HOLD_BACK: usize = 1 << 20;

const CHUNK: usize = 64 << 10;

/// What a successful unseal proved.
#[derive(Debug, Clone)]
pub struct Unsealed {
    pub signer: Signer,
    pub decrypted_with: Option<String>,
    pub bytes: u64,
}

/// Where verified bytes go: straight out, holding back the tail, or all
/// spooled until the end; framed by the proof's two members.
enum Sink<W: Write> {
    HoldBack {
        out: W,
        tail: VecDeque<u8>,
    },
    Spool {
        out: W,
        spool: std::fs::File,
        head: Vec<u8>,
    },
}

impl<W: Write> Sink<W> {
    /// Writes (or, spooling, keeps) the member that opens the output.
    fn start(&mut self, member: Vec<u8>) -> Result<()> {
        match self {
            Sink::HoldBack { out, .. } => {
                out.write_all(&member).map_err(|e| Error::io("stdout", e))
            }
            Sink::Spool { head, .. } => {
                *head = member;
                Ok(())
            }
        }
    }

    fn accept(&mut self, chunk: &[u8]) -> Result<()> {
        match self {
            Sink::HoldBack { out, tail } => {
                tail.extend(chunk);
                if tail.len() > HOLD_BACK {
                    let release = tail.len() - HOLD_BACK;
                    let (front, back) = tail.as_slices();
                    let from_front = release.min(front.len());
                    out.write_all(&front[..from_front])
                        .and_then(|()| out.write_all(&back[..release - from_front]))
                        .map_err(|e| Error::io("stdout", e))?;
                    tail.drain(..release);
                }
                Ok(())
            }
            Sink::Spool { spool, .. } => spool
                .write_all(chunk)
                .map_err(|e| Error::io("the spool file", e)),
        }
    }

    /// Called only once the message verified: the rest, then `proof`.
    fn release(self, proof: &[u8]) -> Result<()> {
        match self {
            Sink::HoldBack { mut out, tail } => {
                let (front, back) = tail.as_slices();
                out.write_all(front)
                    .and_then(|()| out.write_all(back))
                    .and_then(|()| out.write_all(proof))
                    .and_then(|()| out.flush())
                    .map_err(|e| Error::io("stdout", e))
            }
            Sink::Spool {
                mut out,
                mut spool,
                head,
            } => {
                spool
                    .seek(io::SeekFrom::Start(0))
                    .map_err(|e| Error::io("the spool file", e))?;
                out.write_all(&head)
                    .and_then(|()| io::copy(&mut spool, &mut out))
                    .and_then(|_| out.write_all(proof))
                    .and_then(|()| out.flush())
                    .map_err(|e| Error::io("stdout", e))?;
                Ok(())
            }
        }
    }
}

fn member(subfield: [u8; 2], payload: &[u8]) -> Result<Vec<u8>> {
    fw_gz::tagged_member(subfield, payload).map_err(|e| {
        Error::security(format!(
            "the package's signature cannot be forwarded to fw-unpack: {e}"
        ))
    })
}

/// Unseals `input` into `output`. On error, the held-back tail (or, with
/// `spool`, everything) has not been written.
pub fn unseal<R, W>(keyring: &Keyring, mut input: R, output: W, spool: bool) -> Result<Unsealed>
where
    R: Read + Send + Sync + 'static,
    W: Write,
{
    // Tell "not OpenPGP at all" (exit 5) from "did not verify" (exit 4).
    let mut prefix = vec![0u8; 64];
    let mut have = 0;
    while have < prefix.len() {
        match input.read(&mut prefix[have..]) {
            Ok(0) => break,
            Ok(n) => have += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io("stdin", e)),
        }
    }
    prefix.truncate(have);
    if prefix.is_empty() {
        return Err(Error::invalid("stdin is empty: pipe an fw package in"));
    }
    if prefix
        .trim_ascii_start()
        .starts_with(b"-----BEGIN PGP SIGNED MESSAGE")
    {
        return Err(Error::invalid(
            "stdin is a cleartext-signed message, not an fw package: give a package made by \
             fw-sign pack",
        ));
    }
    if !trust::looks_like_openpgp(&prefix) {
        let hint = if prefix.starts_with(&[0x1f, 0x8b]) {
            " (it is gzip data: was it unsealed already?)"
        } else {
            ""
        };
        return Err(Error::invalid(format!(
            "stdin is not an OpenPGP message{hint}: give an fw package made by fw-sign pack"
        )));
    }

    let mut sink = if spool {
        let file = tempfile::tempfile()
            .map_err(|e| Error::io("cannot create an unlinked spool file in $TMPDIR", e))?;
        Sink::Spool {
            out: output,
            spool: file,
            head: Vec::new(),
        }
    } else {
        Sink::HoldBack {
            out: output,
            tail: VecDeque::with_capacity(HOLD_BACK + CHUNK),
        }
    };

    let mut helper = TrustHelper::new(keyring);
    let outcome = helper.outcome();
    let policy = StandardPolicy::new();
    let encrypted = seipd::starts_encrypted(&prefix);
    let armored = prefix.trim_ascii_start().starts_with(b"-----BEGIN");
    let (input, long_line) = armor::LineBound::new(io::Cursor::new(prefix).chain(input), armored);
    let line_error = || {
        Error::invalid(format!(
            "an armored package has a line longer than {} bytes or more than {} bytes of \
             header lines (armor lines are at most 76, GnuPG writes one or two headers): not \
             an fw package",
            armor::MAX_LINE,
            armor::MAX_HEADERS
        ))
    };
    let tripped = |err: Error| {
        if long_line.load(std::sync::atomic::Ordering::SeqCst) {
            line_error()
        } else {
            err
        }
    };
    // Encrypted (binary) packages: the encryption layer is read by
    // seipd.rs (plain SHA-1 for the MDC; see there), the signed message
    // inside by sequoia's verifier. Anything else: sequoia's decryptor.
    let mut mdc_verified = None;
    let reader: openpgp::Result<Box<dyn Read + '_>> = if encrypted {
        seipd::open(input, &policy, |pkesks, skesks, check| {
            helper.decrypt(pkesks, skesks, None, check).map(|_| ())
        })
        .and_then(|plaintext| {
            mdc_verified = Some(plaintext.verified_flag());
            VerifierBuilder::from_reader(plaintext)
                .map(|b| b.buffer_size(HOLD_BACK))
                .and_then(|b| b.with_policy(&policy, trust::verification_time(), helper))
                .map(|v| Box::new(v) as Box<dyn Read>)
        })
    } else {
        DecryptorBuilder::from_reader(input)
            .map(|b| b.buffer_size(HOLD_BACK))
            .and_then(|b| b.with_policy(&policy, trust::verification_time(), helper))
            .map(|d| Box::new(d) as Box<dyn Read>)
    };
    let mut reader = match reader {
        Ok(r) => r,
        Err(e) => {
            return Err(match e.downcast::<seipd::Refused>() {
                Ok(refused) => refused.0,
                Err(e) => tripped(outcome.borrow_mut().error_for(e)),
            })
        }
    };
    // The signature to prove: a one-pass signature by a trusted key,
    // announced before the first byte of plaintext.
    let announced = proof::announcement(&outcome.borrow(), keyring)?;
    sink.start(member(
        fw_gz::ANNOUNCE,
        &proof::announce_bytes(&announced)?,
    )?)?;

    let mut buf = vec![0u8; CHUNK];
    let mut bytes = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(tripped(outcome.borrow_mut().error_for(e))),
        };
        bytes += n as u64;
        sink.accept(&buf[..n])?;
    }
    drop(reader);
    if let Some(flag) = mdc_verified {
        if !flag.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(outcome
                .borrow_mut()
                .error_for("the integrity check (MDC) of the encrypted data was not reached"));
        }
    }
    // Sequoia reports the end of the data only after the helper's check
    // passed; a missing signer here would mean the check never ran.
    let (signer, decrypted_with) = {
        let mut outcome = outcome.borrow_mut();
        match outcome.signer.take() {
            Some(signer) => (signer, outcome.decrypted_with.take()),
            None => return Err(outcome.error_for("no signature was checked")),
        }
    };
    let proof = member(
        fw_gz::PROOF,
        &proof::proof_bytes(&outcome.borrow(), &announced)?,
    )?;
    sink.release(&proof)?;
    Ok(Unsealed {
        signer,
        decrypted_with,
        bytes,
    })
}

/// Unseals a whole package held in memory (for tests and small tools).
pub fn unseal_bytes(keyring: &Keyring, package: &[u8], spool: bool) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    unseal(keyring, io::Cursor::new(package.to_vec()), &mut out, spool)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use openpgp::Cert;
    use std::path::Path;

    struct Keys {
        dir: tempfile::TempDir,
        vendor_key: std::path::PathBuf,
        vendor: Cert,
        device: Cert,
        device_cert_file: std::path::PathBuf,
    }

    fn keys() -> Keys {
        let dir = tempfile::tempdir().unwrap();
        let vendor_armored = fw_sign::keygen("vendor").unwrap();
        let device_armored = fw_sign::keygen("device").unwrap();
        let vendor_key = dir.path().join("vendor.key");
        std::fs::write(&vendor_key, &vendor_armored).unwrap();
        let device_cert_file = dir.path().join("device.asc");
        std::fs::write(
            &device_cert_file,
            fw_sign::cert_of(&device_armored).unwrap(),
        )
        .unwrap();
        Keys {
            vendor: Cert::from_bytes(&vendor_armored).unwrap(),
            device: Cert::from_bytes(&device_armored).unwrap(),
            vendor_key,
            device_cert_file,
            dir,
        }
    }

    fn tree(root: &Path) -> std::path::PathBuf {
        let dir = root.join("firmware");
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        std::fs::write(dir.join("bin/app"), b"#!/bin/sh\necho hi\n").unwrap();
        dir
    }

    fn pack(keys: &Keys, encrypt: bool) -> Vec<u8> {
        let options = fw_sign::PackOptions {
            dir: tree(keys.dir.path()),
            key: keys.vendor_key.clone(),
            encrypt_for: if encrypt {
                vec![keys.device_cert_file.clone()]
            } else {
                vec![]
            },
            version: Some("1".into()),
            ..Default::default()
        };
        let mut out = Vec::new();
        fw_sign::pack(&options, &mut out).unwrap();
        out
    }

    fn device_keyring(keys: &Keys) -> Keyring {
        Keyring::from_certs(
            "test",
            [
                keys.vendor.clone().strip_secret_key_material(),
                keys.device.clone(),
            ],
        )
    }

    /// The members around the plaintext: (subfield, payload, length).
    fn tagged(member: &[u8]) -> ([u8; 2], &[u8], usize) {
        let xlen = u16::from_le_bytes([member[10], member[11]]) as usize;
        let len = u16::from_le_bytes([member[14], member[15]]) as usize;
        (
            [member[12], member[13]],
            &member[16..16 + len],
            12 + xlen + 10,
        )
    }

    /// Nothing, or exactly the announcement member.
    fn only_announced(out: &[u8]) -> bool {
        out.is_empty()
            || (out.len() > 16 && tagged(out).0 == fw_gz::ANNOUNCE && tagged(out).2 == out.len())
    }

    #[test]
    fn round_trip_signed_and_encrypted() {
        let keys = keys();
        for encrypt in [false, true] {
            let package = pack(&keys, encrypt);
            for spool in [false, true] {
                let out = unseal_bytes(&device_keyring(&keys), &package, spool).unwrap();
                // The announcement, the tar.gz, the proof.
                let (id, payload, head) = tagged(&out);
                assert_eq!(id, fw_gz::ANNOUNCE);
                let ops = openpgp::Packet::from_bytes(payload).unwrap();
                assert!(matches!(ops, openpgp::Packet::OnePassSig(_)), "{ops:?}");
                // The proof: the member that ends exactly at the end.
                let proof_at = (head..out.len() - 26)
                    .rev()
                    .find(|&at| {
                        out[at..].starts_with(&[0x1f, 0x8b, 8, 4])
                            && at + tagged(&out[at..]).2 == out.len()
                    })
                    .expect("a proof member at the end");
                let (id, payload, len) = tagged(&out[proof_at..]);
                assert_eq!((id, proof_at + len), (fw_gz::PROOF, out.len()));
                let sig = openpgp::Packet::from_bytes(payload).unwrap();
                assert!(matches!(sig, openpgp::Packet::Signature(_)), "{sig:?}");
                let tar_gz = &out[head..proof_at];
                let mut tar = Vec::new();
                flate2::read::MultiGzDecoder::new(tar_gz)
                    .read_to_end(&mut tar)
                    .unwrap();
                assert!(tar.windows(14).any(|w| w == b"firmware/bin/a"), "the tar");
            }
        }
    }

    /// A message signed by the vendor, in `layers` of compression.
    fn compressed_message(keys: &Keys, encrypt: bool, layers: usize, data: &[u8]) -> Vec<u8> {
        use openpgp::serialize::stream::{Compressor, Encryptor, LiteralWriter, Message, Signer};
        let (signer, _) = fw_sign::keys::signing_keypair(&keys.vendor_key).unwrap();
        let device = [(
            keys.device_cert_file.clone(),
            keys.device.clone().strip_secret_key_material(),
        )];
        let mut out = Vec::new();
        let mut message = Message::new(&mut out);
        if encrypt {
            let recipients = fw_sign::keys::recipients(&device).unwrap();
            let recipients = recipients.into_iter().map(|r| {
                openpgp::serialize::stream::Recipient::new(
                    openpgp::types::Features::empty().set_seipdv1(),
                    openpgp::KeyHandle::from(r.keyid),
                    r.key,
                )
            });
            message = Encryptor::for_recipients(message, recipients)
                .build()
                .unwrap();
        }
        message = Signer::new(message, signer).unwrap().build().unwrap();
        for _ in 0..layers {
            message = Compressor::new(message).build().unwrap();
        }
        let mut literal = LiteralWriter::new(message).build().unwrap();
        literal.write_all(data).unwrap();
        literal.finalize().unwrap();
        out
    }

    #[test]
    fn refuses_a_compression_layer_before_writing_a_byte() {
        let keys = keys();
        let data = vec![0u8; 4 << 20];
        for encrypt in [false, true] {
            assert!(unseal_bytes(
                &device_keyring(&keys),
                &compressed_message(&keys, encrypt, 0, &data),
                false
            )
            .is_ok());
            for layers in [1, 2] {
                let message = compressed_message(&keys, encrypt, layers, &data);
                let mut out = Vec::new();
                let err = unseal(
                    &device_keyring(&keys),
                    io::Cursor::new(message),
                    &mut out,
                    false,
                )
                .unwrap_err();
                assert_eq!(err.code, fw_core::Exit::Security, "{}", err.message);
                assert!(err.message.contains("compression"), "{}", err.message);
                assert!(out.is_empty(), "encrypted {encrypt}, {layers} layers");
            }
        }
    }

    #[test]
    fn refuses_an_unsigned_message_before_writing_a_byte() {
        use openpgp::serialize::stream::{LiteralWriter, Message};
        let keys = keys();
        let mut message = Vec::new();
        let mut literal = LiteralWriter::new(Message::new(&mut message))
            .build()
            .unwrap();
        literal.write_all(&[7u8; 3 << 20]).unwrap();
        literal.finalize().unwrap();
        let mut out = Vec::new();
        let err = unseal(
            &device_keyring(&keys),
            io::Cursor::new(message),
            &mut out,
            false,
        )
        .unwrap_err();
        assert_eq!(err.code, fw_core::Exit::Security, "{}", err.message);
        assert!(err.message.contains("not signed"), "{}", err.message);
        assert!(out.is_empty());
    }

    #[test]
    fn refuses_a_flood_of_packets() {
        let keys = keys();
        let package = pack(&keys, false);
        // Marker packets (tag 10, "PGP"), which readers skip.
        let marker = [0xca, 3, b'P', b'G', b'P'];
        let few = [marker.repeat(3), package.clone()].concat();
        assert!(unseal_bytes(&device_keyring(&keys), &few, false).is_ok());
        let flood = [marker.repeat(1000), package].concat();
        let err = unseal_bytes(&device_keyring(&keys), &flood, false).unwrap_err();
        assert_eq!(err.code, fw_core::Exit::Invalid, "{}", err.message);
        assert!(err.message.contains("more than"), "{}", err.message);
    }

    #[test]
    fn tries_few_session_keys() {
        let keys = keys();
        let package = pack(&keys, true);
        // The package's PKESK (new format, one-octet length), and a copy
        // whose wrapped key is damaged: it names the device key, and
        // fails to decrypt.
        assert_eq!(package[0], 0xc1);
        let len = 2 + package[1] as usize;
        let (pkesk, rest) = package.split_at(len);
        let mut bogus = pkesk.to_vec();
        bogus[len - 1] ^= 0x01;
        for (copies, code, why) in [
            (100, fw_core::Exit::Security, "does not decrypt"),
            (5000, fw_core::Exit::Invalid, "more than"),
        ] {
            // The good PKESK after 100 bad ones is not tried: 16 attempts
            // at most, not one per copy.
            let message = [bogus.repeat(copies), pkesk.to_vec(), rest.to_vec()].concat();
            let err = unseal_bytes(&device_keyring(&keys), &message, false).unwrap_err();
            assert_eq!(err.code, code, "{copies}: {}", err.message);
            assert!(err.message.contains(why), "{copies}: {}", err.message);
        }
        let message = [bogus.repeat(3), pkesk.to_vec(), rest.to_vec()].concat();
        assert!(unseal_bytes(&device_keyring(&keys), &message, false).is_ok());
    }

    #[test]
    fn vendor_secret_key_is_not_a_trust_anchor() {
        let keys = keys();
        let package = pack(&keys, false);
        // Only the vendor's secret key in the keyring: it decrypts, never trusts.
        let keyring = Keyring::from_certs("test", [keys.vendor.clone()]);
        let err = unseal_bytes(&keyring, &package, false).unwrap_err();
        assert_eq!(err.code, fw_core::Exit::Security, "{}", err.message);
    }

    #[test]
    fn flipped_byte_never_releases_the_tail() {
        let keys = keys();
        for encrypt in [false, true] {
            let package = pack(&keys, encrypt);
            // The signed data and the signature; for an encrypted package
            // also the session key packet, and the MDC at the very end.
            // (Not the literal packet's header: v4 signatures do not cover
            // its file name and date.)
            let mut places = vec![package.len() / 2, package.len() - 10];
            if encrypt {
                places.extend([20, package.len() - 1]);
            }
            for at in places {
                let mut flipped = package.clone();
                flipped[at] ^= 0x40;
                let mut out = Vec::new();
                let err = unseal(
                    &device_keyring(&keys),
                    io::Cursor::new(flipped),
                    &mut out,
                    false,
                )
                .unwrap_err();
                assert!(
                    matches!(err.code, fw_core::Exit::Security | fw_core::Exit::Invalid),
                    "encrypted {encrypt}, byte {at}: {:?} {}",
                    err.code,
                    err.message
                );
                // The package is far smaller than the hold-back: no plaintext
                // came out, at most the announcement, and never the proof.
                assert!(only_announced(&out), "encrypted {encrypt}, byte {at}");
            }
        }
    }

    #[test]
    fn not_openpgp_is_invalid_input() {
        let keys = keys();
        let err =
            unseal_bytes(&device_keyring(&keys), b"\x1f\x8b\x08\x00 gzip", false).unwrap_err();
        assert_eq!(err.code, fw_core::Exit::Invalid);
        assert!(err.message.contains("unsealed already"), "{}", err.message);
        let err = unseal_bytes(&device_keyring(&keys), b"", false).unwrap_err();
        assert_eq!(err.code, fw_core::Exit::Invalid);
    }
}
