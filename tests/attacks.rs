//! The attacks of issue 13 on the stream and its parsers, as an outsider
//! without the vendor's key makes them, against the real binaries: each
//! must be refused with its exit code, in bounded memory (every device
//! stage under 32 MiB of peak RSS, as GNU time measures it), leaving
//! nothing installed and nothing in staging.
//!
//! An outsider's package is unsigned. fw-unseal refuses one without a
//! one-pass signature by a trusted key before writing a byte, so the
//! attacks that target fw-unpack carry a forged one-pass signature header
//! naming the vendor's key (it is not authenticated: anyone can write one)
//! and no signature, and pad the data by more than fw-unseal holds back:
//! fw-unseal then passes the data on before it fails.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use openpgp::packet::one_pass_sig::OnePassSig3;
use openpgp::packet::OnePassSig;
use openpgp::parse::Parse;
use openpgp::policy::StandardPolicy;
use openpgp::serialize::stream::{Compressor, LiteralWriter, Message};
use openpgp::serialize::MarshalInto;
use openpgp::types::{CompressionLevel, HashAlgorithm, SignatureType};
use sequoia_openpgp as openpgp;

use fw_e2e::*;

/// Every device stage stays under this, whatever the input.
const MAX_RSS_KIB: u64 = 32 << 10;
/// More than fw-unseal holds back (its own 1 MiB and sequoia's 1 MiB).
const PADDING: usize = (2 << 20) + (64 << 10);

struct World {
    tmp: TempDir,
    keys: Keys,
    target: PathBuf,
}

fn world() -> World {
    let tmp = TempDir::new().unwrap();
    let keys = Keys::new(&tmp.path().join("keys"));
    let target = tmp.path().join("target");
    std::fs::create_dir(&target).unwrap();
    World { tmp, keys, target }
}

impl World {
    fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.tmp.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    /// Nothing was installed and nothing is left in staging.
    #[track_caller]
    fn assert_nothing_installed(&self, case: &str) {
        let top: Vec<String> = std::fs::read_dir(&self.target)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != ".fw")
            .collect();
        assert!(top.is_empty(), "{case}: the target gained {top:?}");
        let staging = self.target.join(".fw/staging");
        let left: Vec<_> = std::fs::read_dir(&staging)
            .map(|d| d.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "{case}: left in staging: {left:?}");
    }

    fn unseal(&self) -> Command {
        let mut cmd = fw("fw-unseal");
        cmd.arg("--keyring").arg(&self.keys.keyring);
        cmd
    }

    fn unpack(&self) -> Command {
        let mut cmd = fw("fw-unpack");
        cmd.arg("--keyring")
            .arg(&self.keys.keyring)
            .arg("--target")
            .arg(&self.target);
        cmd
    }

    /// `fw-unseal < package | fw-unpack`: each one's exit code, peak RSS
    /// (KiB) and stderr; fw-unpack printed nothing.
    fn unseal_unpack(&self, package: &Path) -> [(Option<i32>, u64, String); 2] {
        let file = |name: &str| self.tmp.path().join(name);
        let mut unseal = with_peak(&self.unseal(), &file("peak1"))
            .stdin(std::fs::File::open(package).unwrap())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(file("err1")).unwrap())
            .spawn()
            .unwrap();
        let mut unpack = with_peak(&self.unpack(), &file("peak2"))
            .stdin(unseal.stdout.take().unwrap())
            .stdout(std::fs::File::create(file("out")).unwrap())
            .stderr(std::fs::File::create(file("err2")).unwrap())
            .spawn()
            .unwrap();
        let unpack_code = unpack.wait().unwrap().code();
        let unseal_code = unseal.wait().unwrap().code();
        let out = std::fs::read(file("out")).unwrap();
        assert!(out.is_empty(), "fw-unpack printed {out:?}");
        let text = |name: &str| std::fs::read_to_string(file(name)).unwrap();
        [
            (unseal_code, peak_of(&file("peak1")), text("err1")),
            (unpack_code, peak_of(&file("peak2")), text("err2")),
        ]
    }

    /// fw-unseal alone on `package`: exit code and peak RSS (KiB).
    fn unseal_peak(&self, package: &Path) -> (Option<i32>, u64) {
        let report = self.tmp.path().join("peak");
        let status = with_peak(&self.unseal(), &report)
            .stdin(std::fs::File::open(package).unwrap())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        (status.code(), peak_of(&report))
    }
}

/// `data` in an unsigned message whose one-pass signature header names
/// the vendor's signing key.
fn forged_message(vendor_cert: &Path, data: &[u8]) -> Vec<u8> {
    let cert = openpgp::Cert::from_file(vendor_cert).unwrap();
    let policy = StandardPolicy::new();
    let valid = cert.with_policy(&policy, None).unwrap();
    let key = valid.keys().for_signing().next().unwrap();
    let mut ops = OnePassSig3::new(SignatureType::Binary);
    ops.set_hash_algo(HashAlgorithm::SHA256);
    ops.set_pk_algo(key.key().pk_algo());
    ops.set_issuer(key.key().keyid());
    ops.set_last(true);
    let mut out = openpgp::Packet::from(OnePassSig::from(ops))
        .to_vec()
        .unwrap();
    literal_into(&mut out, data);
    out
}

/// `data` as an unsigned literal-only message.
fn unsigned_message(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    literal_into(&mut out, data);
    out
}

fn literal_into(out: &mut Vec<u8>, data: &[u8]) {
    let mut literal = LiteralWriter::new(Message::new(out)).build().unwrap();
    literal.write_all(data).unwrap();
    literal.finalize().unwrap();
}

fn gz(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// One 512-byte tar header.
fn tar_header(name: &str, kind: tar::EntryType, size: u64) -> Vec<u8> {
    let mut header = tar::Header::new_gnu();
    header.set_path(name).unwrap();
    header.set_entry_type(kind);
    header.set_size(size);
    header.set_mode(0o644);
    header.set_cksum();
    header.as_bytes().to_vec()
}

/// A tar.gz that starts with `header` and `size` bytes of `fill`, in
/// gzip members of 1 MiB each (a few bytes each: gzip shrinks them 1000
/// times), then ends the archive.
fn bomb(header: Vec<u8>, size: u64, fill: u8) -> Vec<u8> {
    let mib = gz(&vec![fill; 1 << 20]);
    let mut out = gz(&header);
    for _ in 0..size >> 20 {
        out.extend_from_slice(&mib);
    }
    out.extend(gz(&[0u8; 1024]));
    out
}

/// Runs an attack package through `fw-unseal | fw-unpack`.
#[track_caller]
fn expect_unpack_refuses(w: &World, case: &str, tar_gz: &[u8], code: i32, why: &str) {
    let package = w.file(
        "attack.fw",
        &forged_message(&w.keys.vendor_cert, &[tar_gz, &vec![0; PADDING]].concat()),
    );
    let size = std::fs::metadata(&package).unwrap().len();
    let [(unseal_code, unseal_rss, unseal_err), (unpack_code, unpack_rss, unpack_err)] =
        w.unseal_unpack(&package);
    eprintln!(
        "{case} ({size} bytes): fw-unseal {unseal_code:?} {unseal_rss} KiB, fw-unpack \
         {unpack_code:?} {unpack_rss} KiB: {}",
        unpack_err.trim_end()
    );
    assert_eq!(unpack_code, Some(code), "{case}: {unpack_err}");
    assert!(unpack_err.contains(why), "{case}: {unpack_err}");
    // fw-unseal fails the missing signature, or finds its reader gone.
    assert!(
        matches!(unseal_code, Some(4 | 141)),
        "{case}: fw-unseal {unseal_code:?}: {unseal_err}"
    );
    assert!(
        unpack_rss < MAX_RSS_KIB,
        "{case}: fw-unpack took {unpack_rss} KiB"
    );
    assert!(
        unseal_rss < MAX_RSS_KIB,
        "{case}: fw-unseal took {unseal_rss} KiB"
    );
    w.assert_nothing_installed(case);
}

/// Issue 13, item 1: tar extension headers claiming 1 GiB, which the tar
/// crate read whole into memory (1.05 GB of RSS from a 3 MB package).
#[test]
fn a_tar_header_claiming_a_gigabyte_is_refused_in_bounded_memory() {
    let w = world();
    for (kind, what) in [
        (tar::EntryType::GNULongName, "GNU long-name header"),
        (tar::EntryType::GNULongLink, "GNU long-link header"),
        (tar::EntryType::XHeader, "PAX header"),
        (tar::EntryType::XGlobalHeader, "PAX global header"),
    ] {
        let tar_gz = bomb(tar_header("././@LongLink", kind, 1 << 30), 1 << 30, b'a');
        assert!(tar_gz.len() < 3 << 20, "{what}: {} bytes", tar_gz.len());
        expect_unpack_refuses(&w, what, &tar_gz, 5, what);
    }
}

/// The same through scripts/fw-install (which fetches, unseals and
/// unpacks): refused, every process it ran in bounded memory.
#[test]
fn fw_install_refuses_the_header_bomb_in_bounded_memory() {
    let w = world();
    let tar_gz = bomb(
        tar_header("././@LongLink", tar::EntryType::GNULongName, 1 << 30),
        1 << 30,
        b'a',
    );
    let package = w.file(
        "attack.fw",
        &forged_message(
            &w.keys.vendor_cert,
            &[&tar_gz[..], &vec![0; PADDING]].concat(),
        ),
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/fw-install");
    let stderr = w.tmp.path().join("install.err");
    let report = w.tmp.path().join("peak");
    let mut install = Command::new(script);
    install
        .env("FW_BIN", bin("fw-unseal").parent().unwrap())
        .env_remove("FW_TARGET")
        .env_remove("FW_KEYRING")
        .arg("--target")
        .arg(&w.target)
        .arg("--keyring")
        .arg(&w.keys.keyring)
        .arg(&package);
    let code = with_peak(&install, &report)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .status()
        .unwrap()
        .code();
    let rss = peak_of(&report);
    let stderr = std::fs::read_to_string(&stderr).unwrap();
    eprintln!("fw-install: {code:?}, {rss} KiB: {}", stderr.trim_end());
    assert!(matches!(code, Some(4 | 5)), "{code:?}: {stderr}");
    assert!(rss < MAX_RSS_KIB, "a process of fw-install took {rss} KiB");
    w.assert_nothing_installed("fw-install");
}

/// Item 1: a manifest of 64 MiB (2.8 MB of gzip took 350 MB): refused by
/// its size before it is read; one at the limit (8 MiB) is read and
/// refused by its signature before it is parsed.
#[test]
fn a_huge_manifest_is_refused_in_bounded_memory() {
    let w = world();
    let json_like = |size: usize| {
        let entry = br#"{"path":"a","type":"file","mode":420,"uid":0,"gid":0},"#;
        let mut json = b"{\"entries\":[".to_vec();
        while json.len() + entry.len() < size - 2 {
            json.extend_from_slice(entry);
        }
        json.resize(size - 2, b' ');
        json.extend_from_slice(b"]}");
        json
    };
    for (case, size, code, why) in [
        ("a 64 MiB manifest", 64 << 20, 5, "larger than"),
        ("an 8 MiB unsigned manifest", 8 << 20, 4, "signature"),
    ] {
        let json = json_like(size);
        let mut tar = tar_header("fw/.fw/manifest.json", tar::EntryType::Regular, size as u64);
        tar.extend(&json);
        tar.extend(tar_header(
            "fw/.fw/manifest.sig",
            tar::EntryType::Regular,
            3,
        ));
        tar.extend(b"sig");
        tar.resize(tar.len().div_ceil(512) * 512 + 1024, 0);
        let tar_gz = gz(&tar);
        expect_unpack_refuses(&w, case, &tar_gz, code, why);
    }
}

/// Item 1: 50,000 session key packets (11 s of CPU before): refused by
/// count, in bounded memory.
#[test]
fn fifty_thousand_session_keys_are_refused_in_bounded_memory() {
    let w = world();
    let tree = sample_tree(w.tmp.path(), "fw");
    let package = ok(run(
        fw("fw-sign")
            .arg("pack")
            .arg("--key")
            .arg(&w.keys.vendor_key)
            .arg("--encrypt-for")
            .arg(&w.keys.device_cert)
            .arg(&tree),
        b"",
    ));
    // Its PKESK (new format, one-octet length), its wrapped key damaged:
    // it names the device's key and fails to decrypt.
    assert_eq!(package[0], 0xc1);
    let len = 2 + package[1] as usize;
    let mut bogus = package[..len].to_vec();
    bogus[len - 1] ^= 0x01;
    let attack = w.file("attack.fw", &[bogus.repeat(50_000), package].concat());
    let (code, rss) = w.unseal_peak(&attack);
    eprintln!("50,000 PKESKs: fw-unseal {code:?}, {rss} KiB");
    assert_eq!(code, Some(5));
    assert!(rss < MAX_RSS_KIB, "fw-unseal took {rss} KiB");
    let out = run_file(&mut w.unseal(), &attack);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(fails_with(out, 5).is_empty());
    assert!(stderr.contains("more than 4096"), "{stderr}");
}

/// Item 1: an armor header line of 50 MB (158 MB of memory before), or
/// millions of header lines.
#[test]
fn a_long_armor_line_is_refused_in_bounded_memory() {
    let w = world();
    let tree = sample_tree(w.tmp.path(), "fw");
    let package = ok(run(
        fw("fw-sign")
            .arg("pack")
            .arg("--key")
            .arg(&w.keys.vendor_key)
            .arg(&tree),
        b"",
    ));
    let armored = Gpg::new().ok(&["--enarmor"], &package);
    assert!(is_complete_gzip(&ok(run(&mut w.unseal(), &armored))));
    let text = String::from_utf8(armored).unwrap();
    let (begin, rest) = text.split_once('\n').unwrap();
    for (case, attack) in [
        (
            "a 50 MB header line",
            format!("{begin}\nComment: {}\n{rest}", "A".repeat(50 << 20)),
        ),
        (
            "50 MB of blanks after the BEGIN line",
            format!("{begin}{}\n{rest}", " ".repeat(50 << 20)),
        ),
        // The second attack round: sequoia keeps every header line; 5
        // million short ones (25 MB, no key needed) took 554 MB.
        (
            "5,000,000 short header lines",
            format!("{begin}\n{}{rest}", "a: b\n".repeat(5_000_000)),
        ),
        (
            "10,000 header lines of 4 KB around a genuine package",
            format!(
                "{begin}\n{}{rest}",
                format!("Comment: {}\n", "A".repeat(4000)).repeat(10_000)
            ),
        ),
    ] {
        let attack = w.file("attack.asc", attack.as_bytes());
        let (code, rss) = w.unseal_peak(&attack);
        eprintln!("{case}: fw-unseal {code:?}, {rss} KiB");
        assert_eq!(code, Some(5), "{case}");
        assert!(rss < MAX_RSS_KIB, "{case}: fw-unseal took {rss} KiB");
    }
}

/// Item 8: two nested compression layers, 5 KB that inflate to 1 GiB
/// (fw-unseal streamed 3.2 GB before failing): refused before a byte.
#[test]
fn a_compression_layer_is_refused_before_a_byte() {
    let w = world();
    let mut bomb = Vec::new();
    {
        let message = Message::new(&mut bomb);
        let message = Compressor::new(message)
            .level(CompressionLevel::best())
            .build()
            .unwrap();
        let message = Compressor::new(message)
            .level(CompressionLevel::best())
            .build()
            .unwrap();
        let mut literal = LiteralWriter::new(message).build().unwrap();
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..1024 {
            literal.write_all(&zeros).unwrap();
        }
        literal.finalize().unwrap();
    }
    assert!(bomb.len() < 8 << 10, "{} bytes", bomb.len());
    let attack = w.file("bomb.fw", &bomb);
    let [(unseal_code, unseal_rss, unseal_err), (unpack_code, _, unpack_err)] =
        w.unseal_unpack(&attack);
    eprintln!(
        "{} bytes: fw-unseal {unseal_code:?} {unseal_rss} KiB: {unseal_err}",
        bomb.len()
    );
    assert_eq!(unseal_code, Some(4), "{unseal_err}");
    assert!(unseal_err.contains("compression"), "{unseal_err}");
    assert!(unseal_rss < MAX_RSS_KIB);
    // fw-unpack got nothing at all: exit 9, no input (fw-unseal said why).
    assert_eq!(unpack_code, Some(9));
    assert_eq!(unpack_err, "", "one failure, one line: fw-unseal's");
    let out = run_file(&mut w.unseal(), &attack);
    assert!(fails_with(out, 4).is_empty(), "not a byte written");
    w.assert_nothing_installed("compression");
}

/// Item 2: the README's pipeline, in bash without pipefail, on an
/// unsigned message holding a genuine vendor tar.gz (as `gpg -d` gives
/// it) then exactly 2 MiB of padding, which fw-unseal holds back whole:
/// it used to exit 4 0 0 0 and install the version. Nothing is installed,
/// with or without a forged one-pass signature header.
#[test]
fn the_pipeline_does_not_complete_on_unsigned_bytes_without_pipefail() {
    let w = world();
    let tree = sample_tree(w.tmp.path(), "sample-setup");
    // Large enough that most of it flows before fw-unseal's verdict.
    std::fs::write(tree.join("noise"), noise(3 << 20, 13)).unwrap();
    let package = ok(run(
        fw("fw-sign")
            .arg("pack")
            .arg("--key")
            .arg(&w.keys.vendor_key)
            .arg(&tree),
        b"",
    ));
    let gpg = Gpg::new();
    gpg.import(&w.keys.vendor_cert);
    let genuine = gpg.ok(&["--decrypt"], &package);
    assert!(is_complete_gzip(&genuine));
    let data = [genuine.clone(), vec![0u8; 2 << 20]].concat();
    // Control: the genuine package installs by the same pipeline.
    let pipeline = |package: &Path| {
        let script = format!(
            "{} < '{}' | {} | {} | {}; echo \"${{PIPESTATUS[*]}}\"",
            bin("fw-unseal").display(),
            package.display(),
            bin("fw-unpack").display(),
            bin("fw-verify").display(),
            bin("fw-fixate").display(),
        );
        let out = Command::new("bash")
            .args(["+o", "pipefail", "-c", &script])
            .env("FW_KEYRING", &w.keys.keyring)
            .env("FW_TARGET", &w.target)
            .output()
            .unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        (
            stdout.lines().last().unwrap_or_default().to_string(),
            stderr,
        )
    };
    for (case, message) in [
        ("an unsigned literal", unsigned_message(&data)),
        (
            "a forged one-pass signature header",
            forged_message(&w.keys.vendor_cert, &data),
        ),
    ] {
        let attack = w.file("attack.fw", &message);
        if case.starts_with("a forged") {
            // fw-unseal does pass on the whole genuine tar.gz.
            let out = run_file(&mut w.unseal(), &attack);
            let partial = fails_with(out, 4);
            assert!(
                partial.windows(genuine.len()).any(|w| w == genuine),
                "{case}: the genuine tar.gz flows before the verdict"
            );
        }
        let (codes, stderr) = pipeline(&attack);
        eprintln!("{case}: exits {codes}: {stderr}");
        assert!(codes.starts_with("4 "), "{case}: {codes}: {stderr}");
        w.assert_nothing_installed(case);
        assert!(!w.target.join("current").exists());
    }
    let genuine_package = w.file("genuine.fw", &package);
    let (codes, stderr) = pipeline(&genuine_package);
    assert_eq!(codes, "0 0 0 0", "{stderr}");
    assert!(w.target.join("sample-setup").is_dir());
}

/// Item 3: fw-verify, as root, on a tree whose `.fw/.verified.tmp` is a
/// symlink to a file elsewhere: refused (exit 5), the file untouched; so
/// are a stranger in `.fw/` and a `.fw/verified` that is a link.
#[test]
fn fw_verify_never_writes_through_a_link_in_dot_fw() {
    let w = world();
    let tree = sample_tree(w.tmp.path(), "fw");
    let package = ok(run(
        fw("fw-sign")
            .arg("pack")
            .arg("--key")
            .arg(&w.keys.vendor_key)
            .arg(&tree),
        b"",
    ));
    let unsealed = ok(run(&mut w.unseal(), &package));
    let victim = w.file("victim", b"precious\n");
    let verify = |staged: &Path| {
        run(
            fw("fw-verify")
                .arg("--keyring")
                .arg(&w.keys.keyring)
                .arg("--target")
                .arg(&w.target)
                .arg(staged),
            b"",
        )
    };
    for plant in [".verified.tmp", "verified", "extra"] {
        let staged = PathBuf::from(
            String::from_utf8(ok(run(&mut w.unpack(), &unsealed)))
                .unwrap()
                .trim_end(),
        );
        std::os::unix::fs::symlink(&victim, staged.join(".fw").join(plant)).unwrap();
        let out = verify(&staged);
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        fails_with(out, 5);
        assert!(stderr.contains(plant), "{plant}: {stderr}");
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious\n", "{plant}");
        let recorded =
            std::fs::symlink_metadata(staged.join(".fw/verified")).is_ok_and(|m| m.is_file());
        assert!(!recorded, "{plant}: .fw/verified was written");
        // Without the link, the same tree verifies.
        std::fs::remove_file(staged.join(".fw").join(plant)).unwrap();
        ok(verify(&staged));
        std::fs::remove_dir_all(staged.parent().unwrap()).unwrap();
    }
}

/// The other side of the manifest bound: a vendor-signed manifest just
/// under 8 MiB (about 37,000 entries, one per line; a 10,000-file root filesystem's is
/// 2.7 MiB) unpacks in bounded memory, and fw-sign refuses to pack a tree
/// whose manifest would be larger.
#[test]
fn a_manifest_at_the_limit_unpacks_in_bounded_memory() {
    let w = world();
    let tree = w.tmp.path().join("many");
    let file = |i: usize| {
        tree.join(format!("dir{:03}", i / 200)).join(format!(
            "usr-lib-x86_64-linux-gnu-some-library-file-{i:05}.so"
        ))
    };
    let add = |range: std::ops::Range<usize>| {
        for i in range {
            let path = file(i);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, b"").unwrap();
        }
    };
    add(0..37_000);
    let pack = || {
        run(
            fw("fw-sign")
                .args(["-q", "pack", "--key"])
                .arg(&w.keys.vendor_key)
                .arg(&tree),
            b"",
        )
    };
    let package = w.file("many.fw", &ok(pack()));
    let [(unseal_code, unseal_rss, _), (unpack_code, unpack_rss, unpack_err)] = {
        // Success prints the staging path: not through unseal_unpack.
        let file = |name: &str| w.tmp.path().join(name);
        let mut unseal = with_peak(&w.unseal(), &file("peak1"))
            .stdin(std::fs::File::open(&package).unwrap())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = with_peak(&w.unpack(), &file("peak2"))
            .stdin(unseal.stdout.take().unwrap())
            .output()
            .unwrap();
        let unseal_code = unseal.wait().unwrap().code();
        [
            (unseal_code, peak_of(&file("peak1")), String::new()),
            (
                out.status.code(),
                peak_of(&file("peak2")),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            ),
        ]
    };
    eprintln!("37,000 entries: fw-unseal {unseal_rss} KiB, fw-unpack {unpack_rss} KiB");
    assert_eq!(
        (unseal_code, unpack_code),
        (Some(0), Some(0)),
        "{unpack_err}"
    );
    assert!(unpack_rss < MAX_RSS_KIB, "fw-unpack took {unpack_rss} KiB");
    add(37_000..42_000);
    let out = pack();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    fails_with(out, 5);
    assert!(stderr.contains("more than devices read"), "{stderr}");
}

/// The second attack round (needs write access to `TARGET/.fw`): symlinks
/// planted for `.fw`, `.fw/staging` or `.fw/lock` were followed (a whole
/// tree unpacked into the symlink's destination, the lock created there
/// as root). Now each is refused and nothing is written where it points.
#[test]
fn symlinks_planted_in_the_targets_state_are_refused() {
    let w = world();
    let tree = sample_tree(w.tmp.path(), "fw");
    let (_, tar_gz) = pack_and_unseal(&w.keys, &tree);
    let victim = w.tmp.path().join("victim");
    let state = w.target.join(".fw");
    let reset = || {
        let _ = std::fs::remove_file(&state);
        let _ = std::fs::remove_dir_all(&state);
        let _ = std::fs::remove_dir_all(&victim);
        std::fs::create_dir(&victim).unwrap();
    };
    let entries = |dir: &Path| std::fs::read_dir(dir).map_or(0, |d| d.count());

    // .fw itself, then .fw/staging: fw-unpack refuses, exit 4.
    for (case, plant) in [
        (
            ".fw",
            Box::new(|| std::os::unix::fs::symlink(&victim, &state).unwrap()) as Box<dyn Fn()>,
        ),
        (
            ".fw/staging",
            Box::new(|| {
                std::fs::create_dir(&state).unwrap();
                std::os::unix::fs::symlink(&victim, state.join("staging")).unwrap();
            }),
        ),
    ] {
        reset();
        plant();
        let out = run(&mut w.unpack(), &tar_gz);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.stdout.is_empty(), "{case}: nothing staged");
        fails_with(out, 4);
        assert!(stderr.contains("not a directory"), "{case}: {stderr}");
        assert_eq!(entries(&victim), 0, "{case}: written through the symlink");
    }

    // .fw/lock pointing at a path that does not exist: not created.
    reset();
    std::fs::create_dir(&state).unwrap();
    let planted = victim.join("created-by-fw");
    std::os::unix::fs::symlink(&planted, state.join("lock")).unwrap();
    let out = run(
        fw("fw-switch").arg("--target").arg(&w.target).arg("clean"),
        b"",
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    fails_with(out, 4);
    assert!(stderr.contains("lock is a symlink"), "{stderr}");
    assert!(
        !planted.exists(),
        "the lock was created through the symlink"
    );
    w.assert_nothing_installed("planted lock");
}
