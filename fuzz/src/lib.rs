//! What the fuzz targets share: a fixed test keyring (a vendor
//! certificate and a device key, in `keys/`, made for fuzzing and trusted
//! nowhere else) and the vendor's side of the format, so that a target can
//! seal what the fuzzer made: sign a manifest, frame a stream with
//! fw-unseal's proof, encrypt a message to the device key. The product's
//! checks are never weakened: inputs pass them only by carrying real
//! signatures of this keyring's vendor key.

use std::io::Write;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use fw_core::keyring::Keyring;
use openpgp::crypto::symmetric::{BlockCipherMode, Encryptor, PaddingMode};
use openpgp::crypto::{KeyPair, SessionKey};
use openpgp::packet::{OnePassSig, PKESK};
use openpgp::parse::Parse;
use openpgp::policy::StandardPolicy;
use openpgp::serialize::MarshalInto;
use openpgp::types::{HashAlgorithm, SymmetricAlgorithm};
use openpgp::{Cert, Packet};
use sequoia_openpgp as openpgp;

pub const VENDOR_KEY: &[u8] = include_bytes!("../keys/vendor.key");
pub const VENDOR_CERT: &[u8] = include_bytes!("../keys/vendor.asc");
pub const DEVICE_KEY: &[u8] = include_bytes!("../keys/device.key");

struct Keys {
    keyring: Keyring,
    vendor: Cert,
    /// When the harness signs: a second after the signing key was made,
    /// so that signatures (and what a crash needs) are deterministic.
    time: SystemTime,
    pkesk: Vec<u8>,
    session: SessionKey,
}

const SESSION_ALGO: SymmetricAlgorithm = SymmetricAlgorithm::AES256;

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let vendor = Cert::from_bytes(VENDOR_KEY).expect("keys/vendor.key");
        let device = Cert::from_bytes(DEVICE_KEY).expect("keys/device.key");
        let keyring = Keyring::from_certs(
            "the fuzz harness's keyring",
            [
                Cert::from_bytes(VENDOR_CERT).expect("keys/vendor.asc"),
                device.clone(),
            ],
        );
        let policy = StandardPolicy::new();
        let signing = vendor
            .with_policy(&policy, None)
            .expect("a valid vendor key")
            .keys()
            .for_signing()
            .next()
            .expect("a signing key")
            .key()
            .creation_time();
        // One PKESK for a fixed session key: every input is encrypted
        // the same way.
        let session = SessionKey::from(vec![0x42u8; 32]);
        let recipient = device
            .with_policy(&policy, None)
            .expect("a valid device key")
            .keys()
            .for_transport_encryption()
            .next()
            .expect("an encryption subkey")
            .key()
            .clone();
        let pkesk =
            openpgp::packet::pkesk::PKESK3::for_recipient(SESSION_ALGO, &session, &recipient)
                .expect("a PKESK");
        let pkesk = Packet::from(PKESK::from(pkesk))
            .to_vec()
            .expect("serialize");
        Keys {
            keyring,
            vendor,
            time: signing + Duration::from_secs(1),
            pkesk,
            session,
        }
    })
}

/// The keyring of the harness: the vendor's certificate (trusted signer)
/// and the device key (decryption only).
pub fn keyring() -> &'static Keyring {
    &keys().keyring
}

fn vendor_signer() -> KeyPair {
    let policy = StandardPolicy::new();
    keys()
        .vendor
        .with_policy(&policy, None)
        .expect("a valid vendor key")
        .keys()
        .for_signing()
        .secret()
        .next()
        .expect("a signing key")
        .key()
        .clone()
        .into_keypair()
        .expect("an unprotected key")
}

/// The vendor's binary detached signature over `data`, as one packet.
pub fn sign(data: &[u8]) -> Vec<u8> {
    let sig = fw_sign_signature(data).expect("the harness signs whatever it is given");
    Packet::from(sig).to_vec().expect("serialize")
}

fn fw_sign_signature(data: &[u8]) -> openpgp::Result<openpgp::packet::Signature> {
    fw_sign::pack::deterministic_detached_signature(&mut vendor_signer(), data, keys().time)
}

/// `tar_gz` framed as fw-unseal frames what verified: the one-pass
/// signature member, the bytes, the signature member (fw-gz's `FO` and
/// `FS`).
pub fn seal(tar_gz: &[u8]) -> Vec<u8> {
    let sig = fw_sign_signature(tar_gz).expect("sign");
    let mut ops = OnePassSig::try_from(&sig).expect("a one-pass signature");
    ops.set_last(true);
    let ops = Packet::from(ops).to_vec().expect("serialize");
    let sig = Packet::from(sig).to_vec().expect("serialize");
    [
        fw_gz::tagged_member(fw_gz::ANNOUNCE, &ops).expect("fits"),
        tar_gz.to_vec(),
        fw_gz::tagged_member(fw_gz::PROOF, &sig).expect("fits"),
    ]
    .concat()
}

/// A message encrypted to the device key as fw-sign does (PKESK v3,
/// SEIPD v1), whose plaintext is `inner`, followed by a correct MDC when
/// `mdc` (else `inner` is the whole plaintext after the prefix, so that
/// the fuzzer writes the MDC, or not, itself).
pub fn encrypt(inner: &[u8], mdc: bool) -> Vec<u8> {
    let keys = keys();
    let block = SESSION_ALGO.block_size().expect("AES");
    let mut plain = Vec::with_capacity(block + 2 + inner.len() + 22);
    plain.extend((0..block as u8).map(|b| b.wrapping_mul(37)));
    plain.extend_from_slice(&plain[block - 2..block].to_vec());
    plain.extend_from_slice(inner);
    if mdc {
        plain.extend_from_slice(&[0xd3, 0x14]);
        let mut sha1 = HashAlgorithm::SHA1.context().expect("SHA-1").for_digest();
        sha1.update(&plain);
        plain.extend_from_slice(&sha1.into_digest().expect("digest"));
    }
    let mut body = vec![1u8];
    let mut cfb = Encryptor::new(
        SESSION_ALGO,
        BlockCipherMode::CFB,
        PaddingMode::None,
        &keys.session,
        None,
        &mut body,
    )
    .expect("AES-256 CFB");
    cfb.write_all(&plain).expect("into memory");
    cfb.finalize().expect("into memory");
    let mut out = keys.pkesk.clone();
    // A new-format SEIPD packet (tag 18) with a five-octet length.
    out.push(0xc0 | 18);
    out.push(0xff);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Whether `out` (what fw-unseal wrote before failing) holds no
/// plaintext: nothing, or exactly the announcement member.
pub fn only_announcement(out: &[u8]) -> bool {
    if out.is_empty() {
        return true;
    }
    if out.len() < 16 || out[..4] != [0x1f, 0x8b, 8, 4] || out[12..14] != fw_gz::ANNOUNCE {
        return false;
    }
    let xlen = u16::from_le_bytes([out[10], out[11]]) as usize;
    out.len() == 12 + xlen + 10
}

/// Reads `stream` through fw-gz with the check of fw-unseal's proof, as
/// fw-unpack does, and returns the verdict.
pub fn proof_verdict(stream: Vec<u8>) -> fw_core::Result<()> {
    let (checker, verdict) = fw_core::proof::checker(keyring().clone());
    struct Feed(fw_core::proof::Checker);
    impl fw_gz::RawObserver for Feed {
        fn announce(&mut self, payload: &[u8]) {
            self.0.announce(payload)
        }
        fn data(&mut self, bytes: &[u8]) {
            self.0.data(bytes)
        }
        fn proof(&mut self, payload: &[u8]) {
            self.0.proof(payload)
        }
    }
    let mut reader = fw_gz::GzReader::observed(
        std::io::Cursor::new(stream),
        1,
        Some(Box::new(Feed(checker))),
    );
    std::io::copy(&mut reader, &mut std::io::sink())
        .map_err(|e| fw_core::Error::invalid(e.to_string()))?;
    verdict.wait().map(|_| ())
}

/// A message signed by the vendor as fw-sign signs a package (one-pass
/// signature, literal data, signature), holding `data`.
pub fn signed_message_of(data: &[u8]) -> Vec<u8> {
    let sig = fw_sign_signature(data).expect("sign");
    let mut ops = OnePassSig::try_from(&sig).expect("a one-pass signature");
    ops.set_last(true);
    let mut out = Packet::from(ops).to_vec().expect("serialize");
    // A new-format literal data packet (tag 11), five-octet length:
    // binary, no file name, date 0.
    out.push(0xc0 | 11);
    out.push(0xff);
    out.extend_from_slice(&(data.len() as u32 + 6).to_be_bytes());
    out.extend_from_slice(&[b'b', 0, 0, 0, 0, 0]);
    out.extend_from_slice(data);
    out.extend_from_slice(&Packet::from(sig).to_vec().expect("serialize"));
    out
}

/// A small signed message (see [`signed_message_of`]), made once.
pub fn signed_message() -> Vec<u8> {
    static MESSAGE: OnceLock<Vec<u8>> = OnceLock::new();
    MESSAGE
        .get_or_init(|| signed_message_of(b"fw fuzz: a signed message"))
        .clone()
}

/// Walks the header blocks of a tar stream the simple way (header, data
/// rounded up to 512 bytes, next header; the first zero block or a
/// header without a readable size ends it) and, for the harness: gives
/// the second header the vendor's signature of the first entry's data
/// (`resign`: the manifest's signature, as fw-sign packs it), and writes
/// every header's checksum (`fix_checksums`), so that the fuzzer's
/// changes to headers and manifest reach the checks behind them.
pub fn reseal_tar(tar: &[u8], resign: bool, fix_checksums: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(tar.len() + 1024);
    let mut pos = 0;
    let mut index = 0;
    let mut manifest = None;
    while pos + 512 <= tar.len() {
        let block = &tar[pos..pos + 512];
        if block.iter().all(|&b| b == 0) {
            break;
        }
        let Ok(size) = tar::Header::from_byte_slice(block).entry_size() else {
            break;
        };
        let data_end = (pos + 512).saturating_add(size.min(u32::MAX as u64) as usize);
        let padded_end = (pos + 512)
            .saturating_add((size.min(u32::MAX as u64) as usize).div_ceil(512) * 512)
            .min(tar.len());
        let mut header = block.to_vec();
        let mut data = tar[pos + 512..padded_end].to_vec();
        if index == 0 {
            manifest = Some(tar[pos + 512..data_end.min(tar.len())].to_vec());
        }
        if index == 1 && resign {
            if let Some(manifest) = &manifest {
                data = sign(manifest);
                let size = format!("{:011o}\0", data.len());
                header[124..136].copy_from_slice(size.as_bytes());
                data.resize(data.len().div_ceil(512) * 512, 0);
            }
        }
        if fix_checksums || (index == 1 && resign) {
            header[148..156].fill(b' ');
            let sum: u32 = header.iter().map(|&b| b as u32).sum();
            header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        }
        out.extend_from_slice(&header);
        out.extend_from_slice(&data);
        pos = padded_end.max(pos + 512);
        index += 1;
    }
    out.extend_from_slice(&tar[pos.min(tar.len())..]);
    out
}

/// Gzips `data` as fw-sign does (fw-gz members, cut every `member`
/// bytes; 0: one member) or, with `plain`, as one ordinary gzip member.
pub fn gzip(data: &[u8], member: usize, plain: bool) -> Vec<u8> {
    let level = flate2::Compression::fast();
    if plain {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), level);
        gz.write_all(data).expect("into memory");
        return gz.finish().expect("into memory");
    }
    if data.is_empty() || member == 0 {
        return fw_gz::compress_member(data, level);
    }
    data.chunks(member)
        .flat_map(|chunk| fw_gz::compress_member(chunk, level))
        .collect()
}

/// A directory for fw-unpack's staging (in memory when /dev/shm is
/// there), made once, inside a root that must hold nothing else: what
/// escaped the staging directory shows there.
pub struct Staging {
    pub root: tempfile::TempDir,
    pub staging: std::path::PathBuf,
}

pub fn staging() -> &'static Staging {
    static STAGING: OnceLock<Staging> = OnceLock::new();
    STAGING.get_or_init(|| {
        let shm = std::path::Path::new("/dev/shm");
        let root = if shm.is_dir() {
            tempfile::Builder::new().prefix("fw-fuzz-").tempdir_in(shm)
        } else {
            tempfile::Builder::new().prefix("fw-fuzz-").tempdir()
        }
        .expect("a temporary directory");
        let staging = root.path().join("staging");
        std::fs::create_dir(&staging).expect("staging");
        Staging { root, staging }
    })
}

impl Staging {
    /// Names in the root and in staging.
    pub fn contents(&self) -> (Vec<String>, Vec<String>) {
        let names = |dir: &std::path::Path| -> Vec<String> {
            let mut names: Vec<String> = std::fs::read_dir(dir)
                .expect("readable")
                .map(|e| {
                    e.expect("readable")
                        .file_name()
                        .to_string_lossy()
                        .into_owned()
                })
                .collect();
            names.sort();
            names
        };
        (names(self.root.path()), names(&self.staging))
    }
}

/// The heap bound of every target: the device stages' promise of 32 MiB
/// (`FW_FUZZ_HEAP_MB` overrides it). Counted over every live allocation
/// of the Rust code in the process (the product, the harness's few cached
/// keys; not libFuzzer's own C++ heap): an input that makes it grow past
/// the bound aborts with a message, and libFuzzer keeps it as a crash.
/// libFuzzer's `-rss_limit_mb` (scripts/fuzz) is the second line, for
/// memory outside the heap.
mod heap {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::atomic::{AtomicUsize, Ordering};

    pub struct Bounded;

    static LIVE: AtomicUsize = AtomicUsize::new(0);
    static LIMIT: AtomicUsize = AtomicUsize::new(0);

    fn limit() -> usize {
        match LIMIT.load(Ordering::Relaxed) {
            0 => {
                // Reading the environment allocates: no bound meanwhile.
                LIMIT.store(usize::MAX, Ordering::Relaxed);
                let mb = std::env::var("FW_FUZZ_HEAP_MB")
                    .ok()
                    .and_then(|v| v.parse::<usize>().ok())
                    .unwrap_or(32);
                LIMIT.store(mb << 20, Ordering::Relaxed);
                mb << 20
            }
            n => n,
        }
    }

    fn grow(by: usize) {
        let live = LIVE.fetch_add(by, Ordering::Relaxed) + by;
        // Not while a panic is reported: symbolizing its backtrace takes
        // far more than the bound and would hide the panic's own message.
        if live > limit() && !std::thread::panicking() {
            use std::io::Write;
            // No allocation from here on: stderr is unbuffered.
            let _ = std::io::stderr().write_all(
                b"fw-fuzz: the heap grew past FW_FUZZ_HEAP_MB (32 MiB by default), the \
                  device stages' memory bound\n",
            );
            std::process::abort();
        }
    }

    // SAFETY: every call is forwarded to the system allocator unchanged;
    // only a counter is kept beside it.
    unsafe impl GlobalAlloc for Bounded {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let p = unsafe { System.alloc(layout) };
            if !p.is_null() {
                grow(layout.size());
            }
            p
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            let p = unsafe { System.alloc_zeroed(layout) };
            if !p.is_null() {
                grow(layout.size());
            }
            p
        }
        unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            unsafe { System.dealloc(p, layout) }
        }
        unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            let q = unsafe { System.realloc(p, layout, new_size) };
            if !q.is_null() {
                if new_size > layout.size() {
                    grow(new_size - layout.size());
                } else {
                    LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
                }
            }
            q
        }
    }

    #[global_allocator]
    static GLOBAL: Bounded = Bounded;
}
