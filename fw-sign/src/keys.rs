//! Key generation and certificate export, and picking the keys that sign
//! and the keys that are encrypted to.

use std::path::Path;

use openpgp::cert::prelude::*;
use openpgp::crypto::KeyPair;
use openpgp::packet::key::{PublicParts, UnspecifiedRole};
use openpgp::packet::Key;
use openpgp::policy::StandardPolicy;
use openpgp::serialize::{Serialize, SerializeInto};
use openpgp::types::Features;
use openpgp::Cert;
use sequoia_openpgp as openpgp;

use fw_core::{Error, Result};

use crate::message::Recipient;

/// A new v4 key: Ed25519 certification primary, Ed25519 signing subkey,
/// Cv25519 encryption subkey, no passphrase; armored. Its features say
/// SEIPD v1 only, so that every encryption to it stays readable by
/// GnuPG 2.2.
pub fn keygen(userid: &str) -> Result<Vec<u8>> {
    if userid.trim().is_empty() {
        return Err(Error::usage(
            "--userid must not be empty, e.g. --userid 'ACME firmware <fw@acme.example>'",
        ));
    }
    let (cert, _revocation) = CertBuilder::new()
        .set_cipher_suite(CipherSuite::Cv25519)
        .set_features(Features::empty().set_seipdv1())
        .map_err(|e| Error::failed(format!("cannot set key features: {e}")))?
        .add_userid(userid)
        .add_signing_subkey()
        .add_transport_encryption_subkey()
        .generate()
        .map_err(|e| Error::failed(format!("key generation failed: {e}")))?;
    let armored = cert
        .as_tsk()
        .armored()
        .to_vec()
        .map_err(|e| Error::failed(format!("cannot write the key: {e}")))?;
    Ok(armored)
}

/// The public certificate of a key (armored in, armored out).
pub fn cert_of(key: &[u8]) -> Result<Vec<u8>> {
    use openpgp::parse::Parse;
    let cert = Cert::from_bytes(key)
        .map_err(|e| Error::invalid(format!("stdin is not an OpenPGP key: {e}")))?;
    let mut out = Vec::new();
    cert.armored()
        .serialize(&mut out)
        .map_err(|e| Error::failed(format!("cannot write the certificate: {e}")))?;
    Ok(out)
}

/// The signing keypair of a secret key file: the newest alive, unrevoked,
/// signing-capable key with an unprotected secret.
pub fn signing_keypair(path: &Path) -> Result<(KeyPair, Cert)> {
    let cert = fw_core::keyring::read_one(path, "key")?;
    let policy = StandardPolicy::new();
    let valid = cert
        .with_policy(&policy, None)
        .map_err(|e| Error::failed(format!("key {}: not usable now: {e}", path.display())))?;
    let mut candidates: Vec<_> = valid
        .keys()
        .alive()
        .revoked(false)
        .for_signing()
        .secret()
        .collect();
    if candidates.is_empty() {
        return Err(Error::failed(format!(
            "key {} has no secret key that may sign now (is it a certificate rather than a \
             key, or expired?): give the secret key from `fw-sign keygen` or \
             `gpg --export-secret-keys --armor`",
            path.display()
        )));
    }
    candidates.sort_by_key(|ka| std::cmp::Reverse(ka.key().creation_time()));
    for ka in &candidates {
        if ka.key().has_unencrypted_secret() {
            let pair = ka
                .key()
                .clone()
                .into_keypair()
                .map_err(|e| Error::failed(format!("key {}: {e}", path.display())))?;
            return Ok((pair, cert.clone()));
        }
    }
    Err(Error::failed(format!(
        "key {} is protected by a passphrase: export it without one for the build host, \
         e.g. `gpg --pinentry-mode loopback --passphrase '' --passwd KEYID` first",
        path.display()
    )))
}

/// The encryption keys of each certificate (fw-sign writes SEIPD v1 and
/// v3 PKESKs for them, never v2 or v6, so GnuPG 2.2 reads the result).
pub fn recipients<'a>(certs: &'a [(std::path::PathBuf, Cert)]) -> Result<Vec<Recipient<'a>>> {
    let policy = StandardPolicy::new();
    let mut recipients = Vec::new();
    for (path, cert) in certs {
        let valid = cert.with_policy(&policy, None).map_err(|e| {
            Error::failed(format!(
                "certificate {}: not usable now: {e}",
                path.display()
            ))
        })?;
        let before = recipients.len();
        for ka in valid
            .keys()
            .supported()
            .alive()
            .revoked(false)
            .for_transport_encryption()
            .for_storage_encryption()
        {
            // The key is borrowed from `certs`, not from `valid`, so that the
            // recipients outlive this loop.
            let key: &'a Key<PublicParts, UnspecifiedRole> = cert
                .keys()
                .find(|k| k.key().fingerprint() == ka.key().fingerprint())
                .map(|k| k.key().role_as_unspecified())
                .expect("a valid key is a key of its certificate");
            recipients.push(Recipient {
                keyid: key.keyid(),
                key,
            });
        }
        if recipients.len() == before {
            return Err(Error::failed(format!(
                "certificate {} has no key that may encrypt now: give the device's \
                 certificate (fw-sign cert < device.key)",
                path.display()
            )));
        }
    }
    Ok(recipients)
}
