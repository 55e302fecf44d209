//! fw-unseal's proof to fw-unpack: the vendor's signature, forwarded with
//! the bytes it signed, so that fw-unpack completes only on verified bytes
//! even when a shell ignores fw-unseal's exit status.
//!
//! fw-unseal writes, around the tar.gz it releases, the one-pass
//! signature packet of the signature it will check (before the first
//! byte: it says how the data is hashed) and, once the message verified,
//! the signature packet itself (fw-gz's `FO` and `FS` members). fw-unpack
//! rebuilds the signed message from them and the raw bytes it read in
//! between (one-pass signature, literal data, signature) and checks it
//! with sequoia's verifier and the same [`TrustHelper`] as fw-unseal: the
//! same keyring, the same trust and time rules, no second copy of them.
//! A v4 binary signature covers exactly the literal data's bytes, so the
//! proof holds for exactly the bytes fw-unseal wrote. Only binary
//! signatures are forwarded.
//!
//! What an attacker without the vendor's key can make fw-unseal write
//! before it fails is never followed by a valid proof; what they can
//! replay with a valid proof are bytes the vendor signed (a replayed
//! package, which the security floor handles).

use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use openpgp::packet::OnePassSig;
use openpgp::parse::stream::VerifierBuilder;
use openpgp::parse::Parse;
use openpgp::policy::StandardPolicy;
use openpgp::serialize::MarshalInto;
use openpgp::types::SignatureType;
use openpgp::Packet;
use sequoia_openpgp as openpgp;

use crate::error::{Error, Result};
use crate::keyring::Keyring;
use crate::trust::{self, Outcome, Signer, TrustHelper};

/// The one-pass signature that fw-unseal announces: the first in the
/// message by a key of a trusted certificate. Refuses, before a byte of
/// plaintext is written, a message that has none.
pub fn announcement(outcome: &Outcome, keyring: &Keyring) -> Result<OnePassSig> {
    let trusted = |ops: &&OnePassSig| {
        let issuer = ops.issuer();
        keyring
            .signers
            .iter()
            .any(|cert| cert.keys().any(|ka| issuer.aliases(ka.key().key_handle())))
    };
    let Some(ops) = outcome.one_pass.iter().find(trusted) else {
        return Err(match outcome.one_pass.first() {
            None => Error::security(
                "the package is not signed (no one-pass signature before its data): refusing \
                 it; ask your vendor for a signed package (fw-sign pack)",
            ),
            Some(ops) => Error::security(format!(
                "signed by {}, which is not a trusted certificate in {}: add the vendor's \
                 certificate there, or check that the package comes from your vendor",
                ops.issuer().to_hex(),
                keyring.source.display()
            )),
        });
    };
    if ops.typ() != SignatureType::Binary {
        return Err(Error::security(format!(
            "the package is signed as {} data; fw packages are signed as binary data \
             (fw-sign pack): refusing it",
            ops.typ()
        )));
    }
    let mut ops = ops.clone();
    ops.set_last(true);
    Ok(ops)
}

/// The one-pass signature as the payload of fw-gz's `FO` member.
pub fn announce_bytes(ops: &OnePassSig) -> Result<Vec<u8>> {
    Packet::from(ops.clone())
        .to_vec()
        .map_err(|e| Error::failed(format!("cannot write the one-pass signature: {e}")))
}

/// The signature that verified and matches `announced`, as the payload of
/// fw-gz's `FS` member.
pub fn proof_bytes(outcome: &Outcome, announced: &OnePassSig) -> Result<Vec<u8>> {
    let issuer = announced.issuer();
    let sig = outcome
        .good
        .iter()
        .find(|sig| {
            sig.typ() == SignatureType::Binary
                && sig.hash_algo() == announced.hash_algo()
                && sig.get_issuers().iter().any(|i| i.aliases(&issuer))
        })
        .ok_or_else(|| {
            Error::security(
                "the signature that verified is not the one its one-pass header announced: \
                 refusing the package",
            )
        })?;
    Packet::from(sig.clone())
        .to_vec()
        .map_err(|e| Error::failed(format!("cannot write the signature: {e}")))
}

/// A packet payload of fw-gz's members, parsed: exactly one packet.
fn parse_one(payload: &[u8], what: &str) -> Result<Packet> {
    Packet::from_bytes(payload).map_err(|e| {
        Error::security(format!(
            "fw-unseal's {what} is not one OpenPGP packet ({e}): the stream did not come \
             from fw-unseal"
        ))
    })
}

/// The literal data packet's body, on its way to the verifying thread:
/// whole partial bodies of [`PART`] bytes, then the rest and the
/// signature.
enum Msg {
    Part(Vec<u8>),
    Last { rest: Vec<u8>, signature: Vec<u8> },
}

/// The head of the literal data packet's body: format 'b', an empty file
/// name, date 0 (v4 signatures do not cover these).
const LITERAL_HEAD: [u8; 6] = [b'b', 0, 0, 0, 0, 0];

/// How much data goes to the verifying thread at a time, and the partial
/// body length of the literal packet rebuilt there.
const PART: usize = 64 << 10;
/// Pieces in flight to the verifying thread: memory stays bounded.
const QUEUE: usize = 8;

enum State {
    /// No announcement seen (yet).
    Waiting,
    Failed(Error),
    Checking(JoinHandle<Result<Signer>>),
}

/// The feeding half of a stream check: give it the payloads of fw-gz's
/// proof members and the raw bytes between, in order (an fw-gz
/// `RawObserver`). Its verdict comes from the matching [`Verdict`].
pub struct Checker {
    keyring: Option<Keyring>,
    state: Arc<Mutex<State>>,
    data: Option<SyncSender<Msg>>,
    /// The partial body being filled.
    part: Vec<u8>,
}

/// The verdict half of a stream check.
pub struct Verdict {
    state: Arc<Mutex<State>>,
}

/// A check of a stream by fw-unseal's proof, against `keyring`.
pub fn checker(keyring: Keyring) -> (Checker, Verdict) {
    let state = Arc::new(Mutex::new(State::Waiting));
    (
        Checker {
            keyring: Some(keyring),
            state: Arc::clone(&state),
            data: None,
            part: Vec::new(),
        },
        Verdict { state },
    )
}

impl Checker {
    fn set(&self, state: State) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = state;
    }

    fn fail(&mut self, err: Error) {
        self.data = None;
        self.keyring = None;
        self.set(State::Failed(err));
    }

    /// The payload of the `FO` member: starts the verifying thread.
    pub fn announce(&mut self, payload: &[u8]) {
        let Some(keyring) = self.keyring.take() else {
            return self.fail(Error::security("fw-unseal's announcement came twice"));
        };
        let ops = match parse_one(payload, "announcement") {
            Ok(Packet::OnePassSig(ops)) if ops.typ() == SignatureType::Binary && ops.last() => ops,
            Ok(other) => {
                return self.fail(Error::security(format!(
                    "fw-unseal's announcement is a {} packet, not the one-pass signature of a \
                     binary signature: the stream did not come from fw-unseal",
                    other.tag()
                )))
            }
            Err(err) => return self.fail(err),
        };
        let head = match announce_bytes(&ops) {
            Ok(bytes) => bytes,
            Err(err) => return self.fail(err),
        };
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        self.data = Some(tx);
        self.part = Vec::with_capacity(PART);
        self.part.extend_from_slice(&LITERAL_HEAD);
        let thread = std::thread::spawn(move || check_message(&keyring, head, rx));
        self.set(State::Checking(thread));
    }

    /// Raw bytes between the two members.
    pub fn data(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let Some(tx) = &self.data else { return };
            let n = (PART - self.part.len()).min(bytes.len());
            self.part.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.part.len() == PART {
                let part = std::mem::replace(&mut self.part, Vec::with_capacity(PART));
                if tx.send(Msg::Part(part)).is_err() {
                    // The thread ended early: its verdict says why.
                    self.data = None;
                }
            }
        }
    }

    /// The payload of the `FS` member, the end of the stream.
    pub fn proof(&mut self, payload: &[u8]) {
        let sig = match parse_one(payload, "proof") {
            Ok(Packet::Signature(sig)) if sig.typ() == SignatureType::Binary => sig,
            Ok(other) => {
                return self.fail(Error::security(format!(
                    "fw-unseal's proof is a {} packet, not a binary signature: the stream did \
                     not come from fw-unseal",
                    other.tag()
                )))
            }
            Err(err) => return self.fail(err),
        };
        let bytes = match Packet::from(sig).to_vec() {
            Ok(bytes) => bytes,
            Err(e) => return self.fail(Error::failed(format!("the proof: {e}"))),
        };
        if let Some(tx) = self.data.take() {
            let _ = tx.send(Msg::Last {
                rest: std::mem::take(&mut self.part),
                signature: bytes,
            });
        }
    }
}

impl Verdict {
    /// Waits for the check; call it once the stream was read to its end.
    pub fn wait(self) -> Result<Signer> {
        let state = std::mem::replace(
            &mut *self.state.lock().unwrap_or_else(|e| e.into_inner()),
            State::Waiting,
        );
        match state {
            State::Waiting => Err(Error::security(
                "the tar.gz does not carry fw-unseal's proof of its signature, so nothing in it \
                 is trusted: pipe the package through fw-unseal",
            )),
            State::Failed(err) => Err(err),
            State::Checking(thread) => thread.join().unwrap_or_else(|_| {
                Err(Error::failed("the thread checking fw-unseal's proof died"))
            }),
        }
    }
}

/// Verifies the message rebuilt from `head` (the one-pass signature) and
/// what arrives on `rx`, by the trust rule.
fn check_message(keyring: &Keyring, head: Vec<u8>, rx: Receiver<Msg>) -> Result<Signer> {
    let helper = TrustHelper::new(keyring);
    let outcome = helper.outcome();
    let policy = StandardPolicy::new();
    let message = Rebuilt::new(head, rx);
    let no_proof = Arc::clone(&message.no_proof);
    let result = VerifierBuilder::from_reader(message)
        .map(|b| b.buffer_size(PART))
        .and_then(|b| b.with_policy(&policy, trust::verification_time(), helper))
        .and_then(|mut v| {
            // Read in large pieces: the verifier copies out what it hashed.
            let mut buf = vec![0u8; PART];
            while v.read(&mut buf)? > 0 {}
            Ok(())
        });
    let mut outcome = outcome.borrow_mut();
    match result {
        Ok(_) => outcome.signer.take().ok_or_else(|| {
            Error::security("fw-unseal's proof: no signature was checked; refusing the package")
        }),
        Err(e) => {
            if no_proof.load(Ordering::SeqCst) {
                return Err(Error::security(
                    "the stream ended without fw-unseal's proof that it verified: the package \
                     did not verify (see fw-unseal's error) or was cut short; refusing it",
                ));
            }
            Err(outcome.error_for(e).context("fw-unseal's proof"))
        }
    }
}

/// The signed message rebuilt for sequoia's verifier: the one-pass
/// signature, a literal data packet holding the data in partial bodies of
/// [`PART`] bytes, and the signature. Each piece is read out of the
/// buffer it arrived in.
struct Rebuilt {
    rx: Mutex<Receiver<Msg>>,
    /// What to read out next, in order.
    pieces: std::collections::VecDeque<Vec<u8>>,
    pos: usize,
    done: bool,
    /// Set when the data ended without the proof.
    no_proof: Arc<AtomicBool>,
}

impl Rebuilt {
    fn new(mut head: Vec<u8>, rx: Receiver<Msg>) -> Rebuilt {
        // A new-format literal data packet (tag 11).
        head.push(0xc0 | 11);
        Rebuilt {
            rx: Mutex::new(rx),
            pieces: [head].into(),
            pos: 0,
            done: false,
            no_proof: Arc::default(),
        }
    }

    fn refill(&mut self) -> io::Result<()> {
        let msg = self
            .rx
            .lock()
            .map_err(|_| io::Error::other("poisoned"))?
            .recv();
        match msg {
            Ok(Msg::Part(part)) => {
                // A partial body length of 2^16.
                self.pieces.push_back(vec![0xe0 | 16]);
                self.pieces.push_back(part);
            }
            Ok(Msg::Last { rest, signature }) => {
                let len = rest.len();
                self.pieces.push_back(match len {
                    0..192 => vec![len as u8],
                    192..8384 => {
                        let n = len - 192;
                        vec![(n >> 8) as u8 + 192, n as u8]
                    }
                    _ => [&[0xff][..], &(len as u32).to_be_bytes()].concat(),
                });
                self.pieces.push_back(rest);
                self.pieces.push_back(signature);
                self.done = true;
            }
            Err(_) => {
                self.no_proof.store(true, Ordering::SeqCst);
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the stream ended without fw-unseal's proof",
                ));
            }
        }
        Ok(())
    }
}

impl Read for Rebuilt {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(piece) = self.pieces.front() {
                if self.pos < piece.len() {
                    let n = buf.len().min(piece.len() - self.pos);
                    buf[..n].copy_from_slice(&piece[self.pos..self.pos + n]);
                    self.pos += n;
                    return Ok(n);
                }
                self.pieces.pop_front();
                self.pos = 0;
                continue;
            }
            if self.done {
                return Ok(0);
            }
            self.refill()?;
        }
    }
}
