//! The one trust rule of DESIGN.md, shared by fw-unseal (the package) and
//! fw-verify (the manifest's detached signature).
//!
//! A message passes only with a good signature by a signing-capable key of
//! a trusted keyring certificate that was alive and not revoked at the
//! signature's creation time. Nothing else passes: no signature, an
//! encrypted-only or literal-only message, an unknown or revoked signer.
//!
//! Time rule: the device clock is not trusted to date signatures. A device
//! without a real-time clock boots in 1970, so a signature made after the
//! device's "now" is accepted; the signer's key is judged at the
//! signature's creation time (expiry, revocation, binding), and a
//! signature that carries its own expiry must not have expired by
//! max(device clock, signature creation time). A hard revocation (key
//! compromised, or no reason given) rejects every signature of that key,
//! whenever it was made.
//!
//! The helper also bounds what a message may make a reader do before any
//! signature is checked: no compression layer (fw packages have none, and
//! one is a bomb), at most [`MAX_SESSION_KEYS`] session key packets, at
//! most [`MAX_SIGNATURES`] signatures and [`MAX_OTHER_PACKETS`] other
//! packets, and decryption attempts only with keys a session key names,
//! plus a few anonymous ones.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openpgp::cert::prelude::*;
use openpgp::crypto::SessionKey;
use openpgp::packet::{OnePassSig, Signature, PKESK, SKESK};
use openpgp::parse::stream::{
    DecryptionHelper, GoodChecksum, MessageLayer, MessageStructure, VerificationError,
    VerificationHelper,
};
use openpgp::parse::PacketParser;
use openpgp::policy::{Policy as _, StandardPolicy};
use openpgp::types::SymmetricAlgorithm;
use openpgp::{Cert, KeyHandle, Packet};
use sequoia_openpgp as openpgp;

use crate::error::Error;
use crate::keyring::Keyring;

/// The reference time handed to sequoia's verifier: the end of OpenPGP
/// time, so that no signature is "from the future" (see the time rule).
pub fn verification_time() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u32::MAX as u64)
}

/// The most session key packets (PKESK and SKESK) a message may have:
/// a package encrypted to this many devices at once is refused, and a
/// message cannot make the reader collect more.
pub const MAX_SESSION_KEYS: usize = 4096;
/// The most anonymous (wildcard) PKESKs tried: each costs a decryption
/// with every secret key of the keyring.
pub const MAX_ANONYMOUS: usize = 4;
/// The most decryptions tried in all: one device key is named once per
/// package, so a message naming it thousands of times gets this many.
pub const MAX_ATTEMPTS: usize = 16;
/// The most one-pass signatures, and signatures, a message may have (fw
/// signs once; each one-pass signature costs a hash of all the data).
pub const MAX_SIGNATURES: usize = 8;

/// The most other packets (markers, literal data, encryption containers)
/// a message may have: an fw package has two or three.
pub const MAX_OTHER_PACKETS: usize = 64;

/// Who made the signature that passed.
#[derive(Debug, Clone)]
pub struct Signer {
    /// Fingerprint of the signing (sub)key.
    pub key: String,
    /// Fingerprint of its certificate.
    pub cert: String,
    /// The certificate's primary user ID, if any.
    pub userid: Option<String>,
    pub created: Option<SystemTime>,
}

impl std::fmt::Display for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.key)?;
        if let Some(userid) = &self.userid {
            write!(f, " ({userid})")?;
        }
        Ok(())
    }
}

/// What the helper found. It is shared with the caller because sequoia
/// keeps the helper when a builder fails.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The signature that passed the rule.
    pub signer: Option<Signer>,
    /// Why the rule refused, when it did.
    pub failure: Option<Error>,
    /// The device key that decrypted the message.
    pub decrypted_with: Option<String>,
    /// The one-pass signature packets, in message order.
    pub one_pass: Vec<OnePassSig>,
    /// The signatures that passed the rule.
    pub good: Vec<Signature>,
    /// Session key and signature packets counted so far.
    session_keys: usize,
    signatures: usize,
    packets: usize,
}

impl Outcome {
    /// The error to report for `err`, a failure of the sequoia reader or
    /// builder: the rule's own verdict when it gave one.
    pub fn error_for(&mut self, err: impl std::fmt::Display) -> Error {
        self.failure.take().unwrap_or_else(|| {
            // One line: sequoia's messages may span several.
            let err = err.to_string().replace('\n', "; ");
            Error::security(format!(
                "the package did not verify ({err}): it is truncated, corrupt or tampered \
                 with; fetch it again from your vendor"
            ))
        })
    }
}

/// The sequoia helper that applies the trust rule and decrypts with the
/// keyring's secret keys.
pub struct TrustHelper<'k> {
    keyring: &'k Keyring,
    policy: StandardPolicy<'static>,
    outcome: Rc<RefCell<Outcome>>,
}

impl<'k> TrustHelper<'k> {
    pub fn new(keyring: &'k Keyring) -> Self {
        TrustHelper {
            keyring,
            policy: StandardPolicy::new(),
            outcome: Rc::default(),
        }
    }

    /// A handle on what the helper finds, readable after sequoia is done.
    pub fn outcome(&self) -> Rc<RefCell<Outcome>> {
        Rc::clone(&self.outcome)
    }

    fn refuse(&mut self, message: String) -> anyhow::Error {
        self.refuse_with(Error::security(message))
    }

    fn refuse_with(&mut self, err: Error) -> anyhow::Error {
        let copy = anyhow::anyhow!(err.message.clone());
        self.outcome.borrow_mut().failure = Some(err);
        copy
    }

    fn signer_of(
        &self,
        ka: &ValidErasedKeyAmalgamation<'_, openpgp::packet::key::PublicParts>,
        sig: &openpgp::packet::Signature,
    ) -> Signer {
        Signer {
            key: ka.key().fingerprint().to_hex(),
            cert: ka.cert().fingerprint().to_hex(),
            userid: ka
                .valid_cert()
                .primary_userid()
                .ok()
                .map(|u| String::from_utf8_lossy(u.userid().value()).into_owned()),
            created: sig.signature_creation_time(),
        }
    }

    /// True if a signature with an expiry of its own is still alive at
    /// max(device clock, its creation time).
    fn alive_for_device(sig: &openpgp::packet::Signature) -> bool {
        let created = sig.signature_creation_time().unwrap_or(UNIX_EPOCH);
        let at = std::cmp::max(SystemTime::now(), created);
        sig.signature_alive(at, Duration::ZERO).is_ok()
    }
}

impl VerificationHelper for TrustHelper<'_> {
    /// Sees every packet as it is parsed, before its content is read.
    fn inspect(&mut self, pp: &PacketParser) -> openpgp::Result<()> {
        let mut outcome = self.outcome.borrow_mut();
        let refusal = match &pp.packet {
            Packet::CompressedData(_) => Some(Error::security(
                "the package has an OpenPGP compression layer, which fw packages never have \
                 (a decompression bomb, or signed without --compress-algo none): refusing it",
            )),
            Packet::PKESK(_) | Packet::SKESK(_) => {
                outcome.session_keys += 1;
                (outcome.session_keys > MAX_SESSION_KEYS).then(|| {
                    Error::invalid(format!(
                        "the package has more than {MAX_SESSION_KEYS} session key packets: \
                         not an fw package"
                    ))
                })
            }
            Packet::OnePassSig(ops) => {
                outcome.one_pass.push(ops.clone());
                (outcome.one_pass.len() > MAX_SIGNATURES).then(|| {
                    Error::invalid(format!(
                        "the package has more than {MAX_SIGNATURES} one-pass signatures: \
                         not an fw package"
                    ))
                })
            }
            Packet::Signature(_) => {
                outcome.signatures += 1;
                (outcome.signatures > MAX_SIGNATURES).then(|| {
                    Error::invalid(format!(
                        "the package has more than {MAX_SIGNATURES} signatures: not an fw package"
                    ))
                })
            }
            _ => {
                outcome.packets += 1;
                (outcome.packets > MAX_OTHER_PACKETS).then(|| {
                    Error::invalid(format!(
                        "the package has more than {MAX_OTHER_PACKETS} packets besides its \
                         session keys and signatures: not an fw package"
                    ))
                })
            }
        };
        drop(outcome);
        match refusal {
            Some(err) => Err(self.refuse_with(err)),
            None => Ok(()),
        }
    }

    fn get_certs(&mut self, _ids: &[KeyHandle]) -> openpgp::Result<Vec<Cert>> {
        Ok(self.keyring.signers.clone())
    }

    fn check(&mut self, structure: MessageStructure) -> openpgp::Result<()> {
        let keyring = self.keyring.source.display().to_string();
        let mut good: Option<Signer> = None;
        let mut problems: Vec<String> = Vec::new();
        let mut tampered: Option<String> = None;
        let mut saw_signatures = false;

        for layer in structure.into_iter() {
            let results = match layer {
                MessageLayer::SignatureGroup { results } => results,
                MessageLayer::Compression { .. } | MessageLayer::Encryption { .. } => continue,
            };
            for result in results {
                saw_signatures = true;
                match result {
                    Ok(GoodChecksum { sig, ka }) => {
                        if Self::alive_for_device(sig) {
                            good = Some(self.signer_of(&ka, sig));
                            self.outcome.borrow_mut().good.push(sig.clone());
                        } else {
                            problems.push(format!(
                                "the signature by {} has expired",
                                ka.key().fingerprint()
                            ));
                        }
                    }
                    Err(VerificationError::BadSignature { sig, ka, error }) => {
                        // The verifier judges signature expiry at the end of
                        // time (see the time rule); judge it here instead.
                        let only_expired = sig.signature_expiration_time().is_some()
                            && sig.intended_recipients().next().is_none()
                            && sig.verify_document(ka.key()).is_ok()
                            && self.policy.signature(sig, Default::default()).is_ok();
                        if only_expired && Self::alive_for_device(sig) {
                            good = Some(self.signer_of(&ka, sig));
                            self.outcome.borrow_mut().good.push(sig.clone());
                        } else if only_expired {
                            problems.push(format!(
                                "the signature by {} has expired",
                                ka.key().fingerprint()
                            ));
                        } else {
                            tampered = Some(format!(
                                "the signature by {} does not match the data ({error}): \
                                 the package was tampered with or damaged; fetch it again",
                                ka.key().fingerprint()
                            ));
                        }
                    }
                    Err(VerificationError::MissingKey { sig }) => {
                        let issuer = sig
                            .get_issuers()
                            .first()
                            .map(|h| h.to_hex())
                            .unwrap_or_else(|| "an unnamed key".into());
                        problems.push(format!(
                            "signed by {issuer}, which is not a trusted certificate in {keyring}: \
                             add the vendor's certificate there, or check that the package \
                             comes from your vendor"
                        ));
                    }
                    Err(VerificationError::BadKey { ka, error, .. }) => {
                        problems.push(format!(
                            "signed by {} of {}, which may not sign now: {error}",
                            ka.key().fingerprint(),
                            ka.cert().fingerprint()
                        ));
                    }
                    Err(VerificationError::UnboundKey { cert, error, .. }) => {
                        problems.push(format!(
                            "signed by a key of {} that is not validly bound to it: {error}",
                            cert.fingerprint()
                        ));
                    }
                    Err(other) => problems.push(other.to_string()),
                }
            }
        }

        // A signature that a trusted key made but that does not match is
        // tampering, even next to a good one.
        if let Some(message) = tampered {
            return Err(self.refuse(message));
        }
        match good {
            Some(signer) => {
                self.outcome.borrow_mut().signer = Some(signer);
                Ok(())
            }
            None if !saw_signatures => Err(self.refuse(
                "the package is not signed: refusing it; ask your vendor for a signed package \
                 (fw-sign pack)"
                    .to_string(),
            )),
            None => Err(self.refuse(problems.join("; "))),
        }
    }
}

impl DecryptionHelper for TrustHelper<'_> {
    fn decrypt(
        &mut self,
        pkesks: &[PKESK],
        skesks: &[SKESK],
        sym_algo: Option<SymmetricAlgorithm>,
        decrypt: &mut dyn FnMut(Option<SymmetricAlgorithm>, &SessionKey) -> bool,
    ) -> openpgp::Result<Option<Cert>> {
        let keyring = self.keyring.source.display().to_string();
        if pkesks.is_empty() {
            // fw never encrypts with a password, and a device has none.
            return Err(self.refuse(if skesks.is_empty() {
                "the package's encrypted data has no session key packet, so nothing can \
                 decrypt it: not an fw package; fetch it again from your vendor"
                    .to_string()
            } else {
                "the package is encrypted with a password only, which fw does not use (fw \
                 packages are encrypted to device certificates, fw-sign pack --encrypt-for): \
                 ask your vendor for a package encrypted to this device"
                    .to_string()
            }));
        }
        // Keys are not judged by the device clock here either: any secret
        // subkey of the device's own key may decrypt. Only keys a PKESK
        // names are tried, and a bounded number of anonymous PKESKs and
        // attempts: each attempt is a public-key operation.
        let mut anonymous = 0;
        let mut attempts = 0;
        // A key of the keyring that a PKESK names and that was tried.
        let mut named: Option<String> = None;
        for pkesk in pkesks {
            let recipient = pkesk.recipient();
            if recipient.is_none() {
                anonymous += 1;
                if anonymous > MAX_ANONYMOUS {
                    continue;
                }
            }
            for cert in &self.keyring.secret_keys {
                for ka in cert.keys().unencrypted_secret() {
                    if let Some(recipient) = &recipient {
                        if !recipient.aliases(ka.key().key_handle()) {
                            continue;
                        }
                    }
                    if attempts == MAX_ATTEMPTS {
                        break;
                    }
                    attempts += 1;
                    if recipient.is_some() && named.is_none() {
                        named = Some(ka.key().fingerprint().to_hex());
                    }
                    let Ok(mut pair) = ka.key().clone().into_keypair() else {
                        continue;
                    };
                    if let Some((algo, session_key)) = pkesk.decrypt(&mut pair, sym_algo) {
                        if decrypt(algo, &session_key) {
                            self.outcome.borrow_mut().decrypted_with =
                                Some(ka.key().fingerprint().to_hex());
                            return Ok(None);
                        }
                    }
                }
            }
        }
        if let Some(key) = named {
            // The key is there: the session key did not decrypt with it,
            // or did not decrypt the data (its quick check failed).
            return Err(self.refuse(format!(
                "the package is encrypted to {key}, whose secret key is in the keyring \
                 {keyring}, but it does not decrypt with that key: the package is damaged or \
                 was not made for this key; fetch it again from your vendor"
            )));
        }
        let recipients: Vec<String> = pkesks
            .iter()
            .take(8)
            .map(|p| {
                p.recipient()
                    .map(|r| r.to_hex())
                    .unwrap_or_else(|| "anonymous".into())
            })
            .collect();
        let more = match pkesks.len().saturating_sub(recipients.len()) {
            0 => String::new(),
            n => format!(" and {n} more"),
        };
        Err(self.refuse(format!(
            "the package is encrypted for {}{more}, and the keyring {keyring} has no secret key \
             for it: install this device's key there, or ask for a package encrypted to this \
             device",
            recipients.join(", "),
        )))
    }
}

/// Packets that mark an OpenPGP message, for telling "not OpenPGP at all"
/// (exit 5) from "OpenPGP that did not verify" (exit 4).
pub fn looks_like_openpgp(prefix: &[u8]) -> bool {
    let text = prefix.trim_ascii_start();
    if text.starts_with(b"-----BEGIN PGP") {
        return true;
    }
    match prefix.first() {
        // Every OpenPGP packet header has the top bit set.
        Some(byte) => byte & 0x80 != 0,
        None => false,
    }
}

/// Verifies a detached signature over `data` by the rule above.
pub fn verify_detached(keyring: &Keyring, signature: &[u8], data: &[u8]) -> Result<Signer, Error> {
    verify_detached_reader(keyring, signature, data)
}

/// Verifies a detached signature over what `data` reads, by the rule
/// above, without holding the data.
pub fn verify_detached_reader<R: std::io::Read + Send + Sync>(
    keyring: &Keyring,
    signature: &[u8],
    data: R,
) -> Result<Signer, Error> {
    use openpgp::parse::stream::DetachedVerifierBuilder;
    use openpgp::parse::Parse;

    if !looks_like_openpgp(signature) {
        return Err(Error::security("the signature is not an OpenPGP signature"));
    }
    let helper = TrustHelper::new(keyring);
    let outcome = helper.outcome();
    let policy = StandardPolicy::new();
    let result = DetachedVerifierBuilder::from_bytes(signature)
        .and_then(|builder| builder.with_policy(&policy, verification_time(), helper))
        .and_then(|mut verifier| verifier.verify_reader(data));
    let mut outcome = outcome.borrow_mut();
    match result {
        Ok(()) => outcome
            .signer
            .take()
            .ok_or_else(|| Error::security("no good signature")),
        Err(e) => Err(outcome.error_for(e)),
    }
}
