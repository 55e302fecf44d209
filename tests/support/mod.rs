//! Helpers for the end-to-end tests: the built binaries, keys made by
//! fw-sign and by GnuPG, sample trees, and checks on gzip streams.
//!
//! The tests run the real binaries from the workspace's target directory;
//! `cargo test --workspace` builds them first.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub use tempfile::TempDir;

pub mod servers;

/// The path of a workspace binary, e.g. `bin("fw-sign")`.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its own path");
    // target/debug/deps/test-HASH → target/debug/NAME
    let dir = exe.parent().and_then(Path::parent).expect("target/debug");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo build --workspace` (or `cargo test --workspace`) first",
        path.display()
    );
    path
}

/// A command for a workspace binary with a clean fw environment.
pub fn fw(name: &str) -> Command {
    let mut cmd = Command::new(bin(name));
    cmd.env_remove("FW_KEYRING")
        .env_remove("FW_TARGET")
        .env_remove("SOURCE_DATE_EPOCH");
    cmd
}

/// Runs `cmd` with `stdin` fed from a thread (no deadlock on big outputs).
pub fn run(cmd: &mut Command, stdin: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let mut pipe = child.stdin.take().expect("piped stdin");
    let input = stdin.to_vec();
    let feeder = std::thread::spawn(move || {
        // The child may refuse early and close its stdin: not our failure.
        let _ = pipe.write_all(&input);
    });
    let output = child.wait_with_output().expect("wait for the child");
    feeder.join().expect("stdin feeder");
    output
}

/// Runs `cmd` with stdin from a file.
pub fn run_file(cmd: &mut Command, stdin: &Path) -> Output {
    let file = std::fs::File::open(stdin).unwrap_or_else(|e| panic!("{}: {e}", stdin.display()));
    cmd.stdin(file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Asserts success and returns stdout.
#[track_caller]
pub fn ok(output: Output) -> Vec<u8> {
    assert!(
        output.status.success(),
        "command failed with {:?}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// Asserts the exit code and a one-line error on stderr; returns stdout.
#[track_caller]
pub fn fails_with(output: Output, code: i32) -> Vec<u8> {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(code),
        "expected exit {code}, got {:?}; stderr: {stderr}",
        output.status
    );
    assert!(
        stderr.contains("error:"),
        "no error line on stderr: {stderr:?}"
    );
    output.stdout
}

/// True if `bytes` is one or more complete gzip members and nothing else.
pub fn is_complete_gzip(bytes: &[u8]) -> bool {
    if bytes.is_empty() {
        return false;
    }
    let mut decoder = flate2::read::MultiGzDecoder::new(bytes);
    let mut sink = [0u8; 64 << 10];
    loop {
        match decoder.read(&mut sink) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(_) => return false,
        }
    }
}

/// The paths a tar.gz lists, in order.
pub fn tar_gz_paths(bytes: &[u8]) -> Vec<String> {
    let mut archive = tar::Archive::new(flate2::read::MultiGzDecoder::new(bytes));
    archive
        .entries()
        .expect("a tar stream")
        .map(|e| {
            let e = e.expect("a tar entry");
            String::from_utf8_lossy(&e.path_bytes()).into_owned()
        })
        .collect()
}

/// Keys made by `fw-sign keygen`: a vendor and a device, and the device's
/// keyring (vendor certificate + device key).
pub struct Keys {
    pub dir: PathBuf,
    pub vendor_key: PathBuf,
    pub vendor_cert: PathBuf,
    pub device_key: PathBuf,
    pub device_cert: PathBuf,
    pub keyring: PathBuf,
}

impl Keys {
    pub fn new(dir: &Path) -> Keys {
        std::fs::create_dir_all(dir).unwrap();
        let keys = Keys {
            dir: dir.to_path_buf(),
            vendor_key: dir.join("vendor.key"),
            vendor_cert: dir.join("vendor.asc"),
            device_key: dir.join("device.key"),
            device_cert: dir.join("device.asc"),
            keyring: dir.join("keyring"),
        };
        for (key, cert, uid) in [
            (
                &keys.vendor_key,
                &keys.vendor_cert,
                "Vendor <fw@vendor.example>",
            ),
            (
                &keys.device_key,
                &keys.device_cert,
                "Device <device@vendor.example>",
            ),
        ] {
            let secret = ok(run(fw("fw-sign").args(["keygen", "--userid", uid]), b""));
            std::fs::write(key, &secret).unwrap();
            std::fs::write(cert, ok(run(fw("fw-sign").arg("cert"), &secret))).unwrap();
        }
        std::fs::create_dir_all(&keys.keyring).unwrap();
        std::fs::copy(&keys.vendor_cert, keys.keyring.join("vendor.asc")).unwrap();
        std::fs::copy(&keys.device_key, keys.keyring.join("device.asc")).unwrap();
        keys
    }
}

/// A small firmware tree with the shapes a real one has: nested dirs, an
/// executable, a setuid-free config, a relative and an absolute symlink,
/// a hard link, a long name, an empty dir and a non-ASCII name.
pub fn sample_tree(parent: &Path, name: &str) -> PathBuf {
    use std::os::unix::fs::{symlink, PermissionsExt};
    let root = parent.join(name);
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::create_dir_all(root.join("etc/app")).unwrap();
    std::fs::create_dir_all(root.join("var/empty")).unwrap();
    std::fs::write(root.join("bin/app"), b"#!/bin/sh\necho app v1\n").unwrap();
    std::fs::set_permissions(root.join("bin/app"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(root.join("etc/app/config"), b"level = 1\n").unwrap();
    std::fs::set_permissions(
        root.join("etc/app/config"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    std::fs::hard_link(root.join("bin/app"), root.join("bin/app-hardlink")).unwrap();
    symlink("../bin/app", root.join("etc/app-link")).unwrap();
    symlink("/usr/bin/env", root.join("bin/env")).unwrap();
    symlink("missing-target", root.join("bin/dangling")).unwrap();
    let long = "l".repeat(150);
    std::fs::write(root.join("etc").join(&long), b"long name\n").unwrap();
    std::fs::write(root.join("etc/grüße-✓.txt"), "utf-8 name\n").unwrap();
    root
}

/// A throwaway GnuPG home, for interop tests. Its agent is stopped on drop.
pub struct Gpg {
    pub home: TempDir,
}

impl Gpg {
    pub fn new() -> Gpg {
        let home = tempfile::Builder::new()
            .prefix("gpg")
            .tempdir_in("/tmp")
            .unwrap();
        let gpg = Gpg { home };
        std::fs::write(
            gpg.home.path().join("gpg.conf"),
            "batch\nno-tty\npinentry-mode loopback\npassphrase \n",
        )
        .unwrap();
        gpg
    }

    pub fn cmd(&self) -> Command {
        let mut cmd = Command::new("gpg");
        cmd.env("GNUPGHOME", self.home.path()).args([
            "--batch",
            "--yes",
            "--no-tty",
            "--status-fd",
            "2",
        ]);
        cmd
    }

    /// Runs gpg and returns stdout, failing the test if gpg fails.
    #[track_caller]
    pub fn ok(&self, args: &[&str], stdin: &[u8]) -> Vec<u8> {
        ok(run(self.cmd().args(args), stdin))
    }

    /// Generates a key; `algo` is `ed25519` (with a cv25519 subkey) or
    /// `rsa3072` (with an RSA subkey). Returns its fingerprint.
    pub fn gen_key(&self, uid: &str, algo: &str) -> String {
        let (primary, sub) = match algo {
            "ed25519" => ("ed25519", "cv25519"),
            other => (other, other),
        };
        self.ok(
            &[
                "--passphrase",
                "",
                "--quick-gen-key",
                uid,
                primary,
                "sign",
                "never",
            ],
            b"",
        );
        let fpr = self.fingerprint(uid);
        self.ok(
            &[
                "--passphrase",
                "",
                "--quick-add-key",
                &fpr,
                sub,
                "encr",
                "never",
            ],
            b"",
        );
        fpr
    }

    pub fn fingerprint(&self, uid: &str) -> String {
        let listing = self.ok(&["--with-colons", "--list-keys", uid], b"");
        String::from_utf8_lossy(&listing)
            .lines()
            .find(|l| l.starts_with("fpr:"))
            .and_then(|l| l.split(':').nth(9))
            .expect("a fingerprint")
            .to_string()
    }

    pub fn export_cert(&self, uid: &str, to: &Path) {
        std::fs::write(to, self.ok(&["--armor", "--export", uid], b"")).unwrap();
    }

    pub fn export_secret(&self, uid: &str, to: &Path) {
        std::fs::write(to, self.ok(&["--armor", "--export-secret-keys", uid], b"")).unwrap();
    }

    pub fn import(&self, file: &Path) {
        self.ok(&["--import", file.to_str().unwrap()], b"");
    }
}

impl Default for Gpg {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", self.home.path())
            .args(["--kill", "gpg-agent"])
            .status();
    }
}

/// Installs the tree as a version of `target` by the four stages
/// (fw-sign pack, then unseal | unpack, verify, fixate); returns its path.
pub fn install_version(keys: &Keys, target: &Path, tree: &Path, pack_args: &[&str]) -> PathBuf {
    let mut pack = fw("fw-sign");
    pack.args(["-q", "pack", "--key"])
        .arg(&keys.vendor_key)
        .args(pack_args)
        .arg(tree);
    let package = ok(run(&mut pack, b""));
    let tar_gz = ok(run(
        fw("fw-unseal")
            .arg("-q")
            .arg("--keyring")
            .arg(&keys.keyring),
        &package,
    ));
    let staged = ok(run(
        fw("fw-unpack")
            .arg("-q")
            .arg("--keyring")
            .arg(&keys.keyring)
            .arg("--target")
            .arg(target),
        &tar_gz,
    ));
    let staged = String::from_utf8(staged).unwrap().trim_end().to_string();
    let mut verify = fw("fw-verify");
    verify
        .arg("-q")
        .arg("--keyring")
        .arg(&keys.keyring)
        .arg("--target")
        .arg(target)
        .arg(&staged);
    ok(run(&mut verify, b""));
    let installed = ok(run(
        fw("fw-fixate")
            .arg("-q")
            .arg("--target")
            .arg(target)
            .arg(&staged),
        b"",
    ));
    PathBuf::from(String::from_utf8(installed).unwrap().trim_end())
}

/// `tree` packed by the vendor's key (`-q`), and what fw-unseal writes
/// for it with the device's keyring (the tar.gz and its proof).
pub fn pack_and_unseal(keys: &Keys, tree: &Path) -> (Vec<u8>, Vec<u8>) {
    let package = ok(run(
        fw("fw-sign")
            .args(["-q", "pack", "--key"])
            .arg(&keys.vendor_key)
            .arg(tree),
        b"",
    ));
    let unsealed = ok(run(
        fw("fw-unseal")
            .arg("-q")
            .arg("--keyring")
            .arg(&keys.keyring),
        &package,
    ));
    (package, unsealed)
}

/// Bytes that do not compress (xorshift), so a package is as big as its
/// content.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Signing arbitrary bytes with a test vendor key, and fw-unseal's proof.

use openpgp::crypto::KeyPair;
use openpgp::parse::Parse;
use openpgp::policy::StandardPolicy;
use openpgp::serialize::stream::{LiteralWriter, Message, Signer};
use openpgp::serialize::MarshalInto;
use sequoia_openpgp as openpgp;

/// The signing key pair of a secret key as `fw-sign keygen` writes it.
pub fn signing_key(key: &[u8]) -> KeyPair {
    let cert = openpgp::Cert::from_bytes(key).expect("a secret key");
    let policy = StandardPolicy::new();
    let ka = cert
        .with_policy(&policy, None)
        .expect("a valid key")
        .keys()
        .for_signing()
        .secret()
        .next()
        .expect("a signing key");
    ka.key().clone().into_keypair().expect("an unprotected key")
}

/// A detached signature of `data` (a manifest), as fw-sign makes it.
pub fn sign_detached(key: &[u8], data: &[u8]) -> Vec<u8> {
    let sig = fw_sign::pack::deterministic_detached_signature(
        &mut signing_key(key),
        data,
        std::time::SystemTime::now(),
    )
    .expect("signing");
    openpgp::Packet::from(sig).to_vec().expect("serialising")
}

/// `data` as a one-pass signed OpenPGP message (binary literal, SHA-256,
/// no compression), as fw-sign pack signs a package.
pub fn signed_message(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let message = Signer::new(Message::new(&mut out), signing_key(key))
        .and_then(|s| s.hash_algo(openpgp::types::HashAlgorithm::SHA256))
        .and_then(|s| s.build())
        .expect("a signer");
    let mut literal = LiteralWriter::new(message).build().expect("a literal");
    literal.write_all(data).expect("writing");
    literal.finalize().expect("finishing");
    out
}

/// What fw-unseal writes for `data` signed by `key`: `data` between the
/// announcement and the proof, for fw-unpack.
pub fn seal(key: &[u8], keyring: &Path, data: &[u8]) -> Vec<u8> {
    ok(run(
        fw("fw-unseal").arg("-q").arg("--keyring").arg(keyring),
        &signed_message(key, data),
    ))
}

/// The length of fw-unseal's proof member at the end of `unsealed`.
fn proof_len(unsealed: &[u8]) -> usize {
    (26..unsealed.len())
        .find(|&len| {
            let member = &unsealed[unsealed.len() - len..];
            member.starts_with(&[0x1f, 0x8b, 8, 4])
                && &member[12..14] == b"FS"
                && 12 + u16::from_le_bytes([member[10], member[11]]) as usize + 10 == len
        })
        .expect("fw-unseal's proof at the end")
}

/// fw-unseal's output without its announcement and proof: the tar.gz
/// the vendor signed.
pub fn without_proof(unsealed: &[u8]) -> &[u8] {
    assert_eq!(&unsealed[12..14], b"FO", "fw-unseal's announcement first");
    let head = 12 + u16::from_le_bytes([unsealed[10], unsealed[11]]) as usize + 10;
    &unsealed[head..unsealed.len() - proof_len(unsealed)]
}

/// fw-unseal's output split into (announcement, tar.gz, proof).
pub fn split_proof(unsealed: &[u8]) -> (&[u8], &[u8], &[u8]) {
    let body = without_proof(unsealed);
    let head = body.as_ptr() as usize - unsealed.as_ptr() as usize;
    let tail = head + body.len();
    (&unsealed[..head], body, &unsealed[tail..])
}

impl Keys {
    /// fw-unseal's output for `data` signed by the vendor.
    pub fn seal(&self, data: &[u8]) -> Vec<u8> {
        seal(
            &std::fs::read(&self.vendor_key).unwrap(),
            &self.keyring,
            data,
        )
    }

    /// A detached signature of `data` by the vendor.
    pub fn sign_detached(&self, data: &[u8]) -> Vec<u8> {
        sign_detached(&std::fs::read(&self.vendor_key).unwrap(), data)
    }
}

// ---------------------------------------------------------------------------
// Peak memory of a process.

/// `cmd` (program, arguments, environment) run under GNU time, which
/// writes the peak resident memory of what it ran (and of its waited-for
/// descendants) to `report`. Not wait4 from here: a child of this test
/// process counts this process's memory, which it shares until its exec,
/// in its own ru_maxrss.
pub fn with_peak(cmd: &Command, report: &Path) -> Command {
    let mut timed = Command::new("/usr/bin/time");
    timed
        .args(["-f", "%M", "-o"])
        .arg(report)
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(value) => timed.env(key, value),
            None => timed.env_remove(key),
        };
    }
    timed
}

/// The peak resident memory in KiB that `with_peak` reported.
pub fn peak_of(report: &Path) -> u64 {
    let text = std::fs::read_to_string(report).expect("GNU time's report");
    text.lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak in GNU time's report: {text:?}"))
}

/// Flips one byte of `path` in place and puts its mtime back: the same
/// size and mtime, other content (what rsync's quick check misses).
pub fn damage_in_place(path: &Path) {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).unwrap();
    let mut data = std::fs::read(path).unwrap();
    data[100] ^= 1;
    std::fs::write(path, &data).unwrap();
    let status = Command::new("touch")
        .arg("-m")
        .arg("-d")
        .arg(format!("@{}.{:09}", meta.mtime(), meta.mtime_nsec()))
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
    let after = std::fs::metadata(path).unwrap();
    assert_eq!(
        (after.len(), after.mtime(), after.mtime_nsec(), after.ino()),
        (meta.len(), meta.mtime(), meta.mtime_nsec(), meta.ino())
    );
}
