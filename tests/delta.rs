//! Delta upgrades end to end: `fw-install --delta URL` (fw-fetch |
//! fw-unpack --delta | fw-verify | fw-fixate) against nginx from Debian on
//! 127.0.0.1, as a CDN would serve the packages; Python's http.server for
//! a server without Range; a lying proxy in front of nginx for the servers
//! that lie. Every refusal leaves the device as it was: v1 current and
//! complete, nothing staged, nothing kept for a resume.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use fw_e2e::servers::{LyingProxy, Nginx, PlainHttp};
use fw_e2e::*;

struct Device {
    tmp: TempDir,
    keys: Keys,
    target: PathBuf,
    www: PathBuf,
}

/// The tree of version `v`: the sample tree, a large file that never
/// changes, and in v2 a changed file and a new one.
fn tree(parent: &Path, v: u32) -> PathBuf {
    let root = sample_tree(&parent.join(format!("v{v}")), "fw");
    std::fs::write(root.join("big.bin"), noise(600_000, 7)).unwrap();
    std::fs::write(
        root.join("etc/app/list"),
        format!("{:?}", (0..5000).collect::<Vec<_>>()),
    )
    .unwrap();
    if v >= 2 {
        std::fs::write(root.join("bin/app"), b"#!/bin/sh\necho app v2\n").unwrap();
        std::fs::write(root.join("new.bin"), noise(50_000, v as u64)).unwrap();
        // The same content again, not a hard link: fetched once.
        std::fs::write(root.join("etc/new-copy.bin"), noise(50_000, v as u64)).unwrap();
    }
    root
}

impl Device {
    /// A device with v1 installed (the full path), and v1 and v2 packed
    /// into `www` as `v1.fw`, `v2.fw` (encrypted to the device if asked).
    fn new(encrypted: bool) -> Device {
        let tmp = TempDir::new().unwrap();
        let keys = Keys::new(&tmp.path().join("keys"));
        let target = tmp.path().join("target");
        let www = tmp.path().join("www");
        std::fs::create_dir_all(&target).unwrap();
        std::fs::create_dir_all(&www).unwrap();
        let d = Device {
            tmp,
            keys,
            target,
            www,
        };
        for v in [1, 2] {
            let tree = tree(d.tmp.path(), v);
            d.pack(
                &tree,
                &format!("v{v}.fw"),
                encrypted,
                &["--version", &v.to_string()],
            );
        }
        ok(d.install(&[], d.www.join("v1.fw").to_str().unwrap()));
        d
    }

    fn pack(&self, tree: &Path, name: &str, encrypted: bool, extra: &[&str]) {
        let mut cmd = fw("fw-sign");
        cmd.args(["-q", "pack", "--key"])
            .arg(&self.keys.vendor_key)
            .args(extra);
        if encrypted {
            cmd.arg("--encrypt-for").arg(&self.keys.device_cert);
        }
        let package = ok(run(cmd.arg(tree), b""));
        std::fs::write(self.www.join(name), package).unwrap();
    }

    fn install(&self, options: &[&str], source: &str) -> Output {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/fw-install");
        let mut cmd = Command::new(script);
        cmd.env("FW_BIN", bin("fw-unseal").parent().unwrap())
            .env_remove("FW_TARGET")
            .env_remove("FW_KEYRING")
            .arg("--target")
            .arg(&self.target)
            .arg("--keyring")
            .arg(&self.keys.keyring)
            .args(options)
            .arg(source);
        run(&mut cmd, b"")
    }

    fn delta(&self, url: &str) -> Output {
        self.install(&["--delta"], url)
    }

    /// The installed version `current` points at.
    fn current(&self) -> PathBuf {
        std::fs::canonicalize(self.target.join("current")).unwrap()
    }

    /// Asserts that `current` holds exactly the tree of version `v`.
    #[track_caller]
    fn runs(&self, v: u32) {
        let source = self.tmp.path().join(format!("v{v}/fw"));
        let out = Command::new("diff")
            .args(["-r", "--no-dereference", "--exclude=.fw"])
            .arg(&source)
            .arg(self.current())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "current differs from v{v}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    /// Asserts that a refused upgrade left the device as it was: v1
    /// current, no other version, nothing staged, nothing kept to resume.
    #[track_caller]
    fn unchanged(&self) {
        self.runs(1);
        let versions: Vec<String> = std::fs::read_dir(&self.target)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.') && n != "current" && n != "previous")
            .collect();
        assert_eq!(versions, ["fw"], "no new version");
        let staging = self.target.join(".fw/staging");
        if staging.exists() {
            assert_eq!(
                std::fs::read_dir(&staging).unwrap().count(),
                0,
                "nothing staged"
            );
        }
        assert!(self.kept().is_empty(), "nothing kept: {:?}", self.kept());
    }

    /// What fw-fetch keeps for a resume.
    fn kept(&self) -> Vec<String> {
        let dir = self.target.join(".fw/fetch");
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n != "lock")
            .collect()
    }
}

fn exits(output: &Output, code: i32) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(
        output.status.code(),
        Some(code),
        "expected exit {code}; stderr: {stderr}"
    );
    stderr
}

/// Gives a package packed during the test an mtime an hour back. nginx's
/// ETag is the file's mtime in seconds and its size: two packages of the
/// same size packed within one second share it, the If-Range then matches
/// and fw-fetch finds the change by the content instead (exit 4, not 5: a
/// flake seen twice). A later publication's differs.
fn published_apart(package: &Path) {
    std::fs::File::options()
        .write(true)
        .open(package)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(3600))
        .unwrap();
}

fn start_nginx(d: &Device) -> Nginx {
    Nginx::start(&d.tmp.path().join("nginx"), &d.www, "")
}

#[test]
fn a_delta_fetches_only_what_the_device_lacks() {
    for encrypted in [false, true] {
        let d = Device::new(encrypted);
        let nginx = start_nginx(&d);
        nginx.take_log();
        let out = d.delta(&nginx.url("v2.fw"));
        let stderr = exits(&out, 0);
        d.runs(2);
        let log = nginx.take_log();
        let sent = Nginx::bytes_sent(&log, "v2.fw");
        let size = std::fs::metadata(d.www.join("v2.fw")).unwrap().len();
        // The package is mostly big.bin, which v1 holds: the delta is the
        // manifest, the new files (the copy's content once) and headers.
        assert!(
            sent < 80_000 && sent * 5 < size,
            "encrypted {encrypted}: {sent} bytes sent of a {size}-byte package: {log:?}"
        );
        assert!(log.iter().all(|l| l.contains(" 206 ")), "{log:?}");
        assert!(!stderr.contains("error"), "{stderr}");
        assert!(d.kept().is_empty(), "the cache is removed on success");
        // The linked file is the installed one.
        use std::os::unix::fs::MetadataExt;
        let old = std::fs::metadata(d.target.join("fw/big.bin")).unwrap();
        let new = std::fs::metadata(d.current().join("big.bin")).unwrap();
        assert_eq!((old.dev(), old.ino()), (new.dev(), new.ino()));
    }
}

/// Issue 13.9 by delta: an installed file damaged on the device is not
/// taken as held: fw-fetch fetches it, the upgrade installs a good copy
/// and names the damaged one.
#[test]
fn a_delta_fetches_a_fresh_copy_of_a_damaged_installed_file() {
    let d = Device::new(false);
    let nginx = start_nginx(&d);
    let damaged = d.target.join("fw/big.bin");
    damage_in_place(&damaged);
    nginx.take_log();
    let out = d.delta(&nginx.url("v2.fw"));
    let stderr = exits(&out, 0);
    assert!(
        stderr.contains("its content differs from its signed manifest")
            && stderr.contains(&damaged.display().to_string()),
        "{stderr}"
    );
    d.runs(2);
    let sent = Nginx::bytes_sent(&nginx.take_log(), "v2.fw");
    assert!(sent > 600_000, "big.bin was fetched: {sent} bytes sent");
    use std::os::unix::fs::MetadataExt;
    let old = std::fs::metadata(&damaged).unwrap();
    let new = std::fs::metadata(d.current().join("big.bin")).unwrap();
    assert_ne!((old.dev(), old.ino()), (new.dev(), new.ino()));
}

#[test]
fn a_fresh_target_gets_every_file_by_range() {
    let d = Device::new(true);
    let nginx = start_nginx(&d);
    let target = d.tmp.path().join("fresh");
    std::fs::create_dir(&target).unwrap();
    let fetched = ok(run(
        fw("fw-fetch")
            .arg("--target")
            .arg(&target)
            .arg("--keyring")
            .arg(&d.keys.keyring)
            .arg(nginx.url("v2.fw")),
        b"",
    ));
    // With nothing installed, the stream is the package's tar, headers
    // synthesised from the manifest included, byte for byte.
    let package = std::fs::read(d.www.join("v2.fw")).unwrap();
    let unsealed = ok(run(
        fw("fw-unseal").arg("--keyring").arg(&d.keys.keyring),
        &package,
    ));
    let inflate = |gz: &[u8]| {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(gz), &mut out).unwrap();
        out
    };
    assert_eq!(inflate(&fetched), inflate(&unsealed));
}

#[test]
fn a_server_without_range_sends_the_whole_package_and_it_still_installs() {
    let d = Device::new(true);
    let http = PlainHttp::start(&d.www);
    let out = d.delta(&http.url("v2.fw"));
    let stderr = exits(&out, 0);
    assert!(
        stderr.contains("does not answer Range requests: reading the whole package"),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("does not answer Range requests").count(),
        1,
        "one line says so: {stderr}"
    );
    d.runs(2);
}

#[test]
fn a_package_framed_by_another_openpgp_tool_is_read_whole() {
    // The tar.gz of fw-sign, signed by GnuPG: the manifest is fw's (with
    // its offsets), but the OpenPGP chunks are not where fw-sign puts
    // them, so the bytes cannot be found at random: the rest is read whole.
    let d = Device::new(false);
    let gpg = Gpg::new();
    gpg.import(&d.keys.vendor_key);
    let package = std::fs::read(d.www.join("v2.fw")).unwrap();
    let tar_gz = gpg.ok(&["--decrypt"], &package);
    let resigned = gpg.ok(
        &[
            "--sign",
            "--compress-algo",
            "none",
            "-u",
            "fw@vendor.example",
        ],
        &tar_gz,
    );
    std::fs::write(d.www.join("gpg.fw"), resigned).unwrap();
    let nginx = start_nginx(&d);
    let out = d.delta(&nginx.url("gpg.fw"));
    let stderr = exits(&out, 0);
    assert!(stderr.contains("reading the rest of it whole"), "{stderr}");
    d.runs(2);
}

#[test]
fn an_untrusted_signer_is_refused_before_anything_is_fetched_but_the_head() {
    let d = Device::new(false);
    let other = Keys::new(&d.tmp.path().join("other"));
    let tree = d.tmp.path().join("v2/fw");
    let mut cmd = fw("fw-sign");
    cmd.args(["-q", "pack", "--key"])
        .arg(&other.vendor_key)
        .arg(&tree);
    std::fs::write(d.www.join("other.fw"), ok(run(&mut cmd, b""))).unwrap();
    let nginx = start_nginx(&d);
    nginx.take_log();
    let out = d.delta(&nginx.url("other.fw"));
    let stderr = exits(&out, 4);
    assert!(stderr.contains("manifest.sig"), "{stderr}");
    d.unchanged();
    let log = nginx.take_log();
    assert!(
        log.iter().all(|l| l.contains("\"bytes=0-")),
        "only the head was fetched: {log:?}"
    );
}

/// A server that lies gets a refusal (exit 4 or 5) and changes nothing.
fn refused_by_a_lie(mode: &str, from: u32, code: i32, says: &str) {
    let d = Device::new(true);
    let nginx = start_nginx(&d);
    let proxy = LyingProxy::start(d.tmp.path(), &nginx);
    proxy.lie(mode, from);
    let out = d.delta(&proxy.url("v2.fw"));
    let stderr = exits(&out, code);
    assert!(stderr.contains(says), "{mode}: {stderr}");
    d.unchanged();
}

#[test]
fn ranges_that_do_not_match_are_refused() {
    refused_by_a_lie("shift", 1, 5, "where bytes");
    refused_by_a_lie("shift", 2, 5, "where bytes");
}

#[test]
fn a_200_instead_of_a_206_is_refused() {
    refused_by_a_lie("whole", 2, 5, "200 with the whole package");
}

#[test]
fn short_and_oversized_bodies_are_refused() {
    refused_by_a_lie("short", 2, 5, "malformed");
    refused_by_a_lie("long", 2, 5, "malformed");
    refused_by_a_lie("short", 1, 5, "malformed");
}

/// A server without Range support whose connection drops, or that
/// stalls, half-way through the package: a transfer failure that says so
/// (exit 1, try again), not a truncated package (exit 5).
#[test]
fn a_whole_package_cut_off_by_the_network_is_a_transfer_failure() {
    for (mode, encrypted, says) in [
        ("whole-drop", true, "connection dropped"),
        ("whole-drop", false, "connection dropped"),
        ("whole-stall", false, "stalled"),
    ] {
        let d = Device::new(encrypted);
        let nginx = start_nginx(&d);
        let proxy = LyingProxy::start(d.tmp.path(), &nginx);
        proxy.lie(mode, 1);
        let out = d.install(&["--delta", "--stall-time", "1"], &proxy.url("v2.fw"));
        let stderr = exits(&out, 1);
        assert!(
            stderr.contains(says) && stderr.contains("try again"),
            "{mode}, encrypted {encrypted}: {stderr}"
        );
        assert!(
            !stderr.contains("the package is truncated"),
            "{mode}: {stderr}"
        );
        d.unchanged();
    }
}

#[test]
fn a_package_swapped_between_requests_is_refused() {
    let d = Device::new(true);
    // Another v2 (another file changed), put in place by the proxy after
    // the first request.
    let other = tree(&d.tmp.path().join("other"), 2);
    std::fs::write(other.join("etc/app/config"), b"level = 2\n").unwrap();
    d.pack(&other, "swap.fw", true, &["--version", "2b"]);
    published_apart(&d.www.join("swap.fw"));
    let nginx = start_nginx(&d);
    let proxy = LyingProxy::start(d.tmp.path(), &nginx);
    proxy.lie("swap:swap.fw", 2);
    let out = d.delta(&proxy.url("v2.fw"));
    let stderr = exits(&out, 5);
    assert!(stderr.contains("changed on the server"), "{stderr}");
    d.unchanged();
}

#[test]
fn wrong_bytes_with_the_same_etag_are_refused() {
    let d = Device::new(false);
    let path = d.www.join("v2.fw");
    let mut bytes = std::fs::read(&path).unwrap();
    // A byte of new.bin's content (the first of its two copies, which is
    // the one fetched; noise, so stored as it is by deflate), with the same
    // size and mtime: nginx's ETag is the same.
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    let needle = &noise(50_000, 2)[1000..1032];
    let at = bytes.windows(32).position(|w| w == needle).unwrap();
    bytes[at] ^= 0x55;
    std::fs::write(&path, &bytes).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let nginx = start_nginx(&d);
    let out = d.delta(&nginx.url("v2.fw"));
    let stderr = exits(&out, 4);
    assert!(
        stderr.contains("not this file of the signed package"),
        "{stderr}"
    );
    d.unchanged();
}

#[test]
fn an_interrupted_fetch_resumes_and_an_etag_change_on_resume_is_refused() {
    let d = Device::new(true);
    let nginx = start_nginx(&d);
    let proxy = LyingProxy::start(d.tmp.path(), &nginx);
    // The connection drops half-way through the data: a network failure,
    // what was fetched is kept.
    proxy.lie("drop", 2);
    let out = d.delta(&proxy.url("v2.fw"));
    exits(&out, 1);
    assert!(!d.kept().is_empty(), "the fetch is kept for a resume");
    d.runs(1);

    // Resumed: the head is not fetched again.
    proxy.lie("pass", 1);
    nginx.take_log();
    let out = d.delta(&proxy.url("v2.fw"));
    exits(&out, 0);
    d.runs(2);
    let log = nginx.take_log();
    assert!(
        log.iter().all(|l| !l.contains("\"bytes=0-")),
        "resumed without the head: {log:?}"
    );
    assert!(log.iter().all(|l| l.contains(" 206 ")), "{log:?}");

    // Again, but the package changes on the server before the resume.
    let d = Device::new(true);
    let nginx = start_nginx(&d);
    let proxy = LyingProxy::start(d.tmp.path(), &nginx);
    proxy.lie("drop", 2);
    exits(&d.delta(&proxy.url("v2.fw")), 1);
    assert!(!d.kept().is_empty());
    let other = tree(&d.tmp.path().join("other"), 2);
    std::fs::write(other.join("etc/app/config"), b"level = 3\n").unwrap();
    d.pack(&other, "v2.fw", true, &["--version", "2c"]);
    published_apart(&d.www.join("v2.fw"));
    proxy.lie("pass", 1);
    let stderr = exits(&d.delta(&proxy.url("v2.fw")), 5);
    assert!(stderr.contains("changed on the server"), "{stderr}");
    d.unchanged();
    // And the next run starts over, and installs the new package.
    exits(&d.delta(&proxy.url("v2.fw")), 0);
    let config = std::fs::read_to_string(d.current().join("etc/app/config")).unwrap();
    assert_eq!(config, "level = 3\n");
}

#[test]
fn unpack_delta_proves_every_file_and_never_reads_omitted_data() {
    let d = Device::new(false);
    let nginx = start_nginx(&d);
    let fetch = |target: &Path| {
        ok(run(
            fw("fw-fetch")
                .arg("--target")
                .arg(target)
                .arg("--keyring")
                .arg(&d.keys.keyring)
                .arg(nginx.url("v2.fw")),
            b"",
        ))
    };
    let unpack_in = |target: &Path, args: &[&str], stream: &[u8]| {
        run(
            fw("fw-unpack")
                .arg("--target")
                .arg(target)
                .arg("--keyring")
                .arg(&d.keys.keyring)
                .args(args),
            stream,
        )
    };
    let unpack = |args: &[&str], stream: &[u8]| unpack_in(&d.target, args, stream);
    let stream = fetch(&d.target);

    // Only with --delta: without it, omitted members are not a package's.
    let out = unpack(&[], &stream);
    assert!(matches!(out.status.code(), Some(4 | 5)), "{out:?}");
    // An omitted file whose installed copy is gone is never read.
    let v1 = d.target.join("fw");
    std::fs::rename(&v1, d.tmp.path().join("v1-away")).unwrap();
    let stderr = exits(&unpack(&["--delta"], &stream), 5);
    assert!(stderr.contains("omitted"), "{stderr}");
    std::fs::rename(d.tmp.path().join("v1-away"), &v1).unwrap();
    ok(unpack(&["--delta"], &stream));

    // A file's content that differs from the manifest is refused: the
    // tar of a fresh fetch with one byte of big.bin changed, gzip'd again.
    let fresh = d.tmp.path().join("fresh");
    std::fs::create_dir(&fresh).unwrap();
    let mut tar = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::MultiGzDecoder::new(&fetch(&fresh)[..]),
        &mut tar,
    )
    .unwrap();
    // big.bin is written in pieces by fw-unpack's writer threads, a small
    // file whole: both are checked, and a refusal leaves nothing.
    for (file, needle) in [
        ("big.bin", noise(600_000, 7)[1000..1032].to_vec()),
        // (new.bin's content; etc/new-copy.bin holds it first)
        ("new-copy.bin", noise(50_000, 2)[1000..1032].to_vec()),
    ] {
        let mut tar = tar.clone();
        let at = tar.windows(32).position(|w| w == needle).unwrap();
        tar[at] ^= 1;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &tar).unwrap();
        let stderr = exits(&unpack_in(&fresh, &["--delta"], &gz.finish().unwrap()), 4);
        assert!(
            stderr.contains("BLAKE3") && stderr.contains(file),
            "{stderr}"
        );
        let staging = fresh.join(".fw/staging");
        let left: Vec<_> = std::fs::read_dir(&staging).unwrap().collect();
        assert!(left.is_empty(), "{file}: nothing left behind: {left:?}");
    }
}

#[test]
fn fw_update_installs_by_delta_when_a_version_is_installed_and_whole_with_full() {
    for full in [false, true] {
        let d = Device::new(true);
        let nginx = start_nginx(&d);
        let index = ok(run(
            fw("fw-sign")
                .args(["-q", "index", "--key"])
                .arg(&d.keys.vendor_key)
                .args(["--base-url", nginx.url("").trim_end_matches('/')])
                .arg("--decrypt-key")
                .arg(&d.keys.device_key)
                .arg("--signature")
                .arg(d.www.join("index.json.sig"))
                .arg(d.www.join("v2.fw")),
            b"",
        ));
        std::fs::write(d.www.join("index.json"), index).unwrap();
        nginx.take_log();
        let status = d.tmp.path().join("status");
        let mut cmd = fw("fw-update");
        cmd.env_remove("FW_INSTALL")
            .env_remove("FW_UPDATE_CONFIG")
            .args(["install", "--index", &nginx.url("index.json")])
            .arg("--target")
            .arg(&d.target)
            .arg("--keyring")
            .arg(&d.keys.keyring)
            .arg("--status")
            .arg(&status);
        if full {
            cmd.arg("--full");
        }
        exits(&run(&mut cmd, b""), 0);
        d.runs(2);
        let states: Vec<String> = std::fs::read_to_string(&status)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["status"].to_string())
            .collect();
        let sent = Nginx::bytes_sent(&nginx.take_log(), "v2.fw");
        let size = std::fs::metadata(d.www.join("v2.fw")).unwrap().len();
        if full {
            assert!(
                states.contains(&"\"update_ready\"".to_string()),
                "{states:?}"
            );
            assert!(sent >= size, "{sent} of {size}");
        } else {
            assert_eq!(
                states,
                [
                    "\"checking\"",
                    "\"update_available\"",
                    "\"updating\"",
                    "\"updated\""
                ],
            );
            assert!(sent * 5 < size, "{sent} of {size}");
        }
    }
}

#[test]
fn a_delta_fetches_only_the_manifest_chunks_no_installed_manifest_has() {
    let tmp = TempDir::new().unwrap();
    let keys = Keys::new(&tmp.path().join("keys"));
    let target = tmp.path().join("target");
    let www = tmp.path().join("www");
    std::fs::create_dir_all(&target).unwrap();
    std::fs::create_dir_all(&www).unwrap();
    // 600 files, so the manifest has many chunks; v2 changes one file and
    // adds one.
    for v in [1u64, 2] {
        let root = tmp.path().join(format!("v{v}/fw"));
        for i in 0..600u64 {
            let dir = root.join(format!("d{}", i / 50));
            std::fs::create_dir_all(&dir).unwrap();
            let content = if v == 2 && i == 300 {
                noise(100, 99)
            } else {
                noise(100, i)
            };
            std::fs::write(dir.join(format!("f{i}")), content).unwrap();
        }
        if v == 2 {
            std::fs::write(root.join("d3/new"), b"new\n").unwrap();
        }
        // Times clamped, as a build system does: the files that did not
        // change keep their manifest lines.
        let mut cmd = fw("fw-sign");
        cmd.env("SOURCE_DATE_EPOCH", "1700000000")
            .args(["-q", "pack", "--key"])
            .arg(&keys.vendor_key)
            .args(["--version", &v.to_string()])
            .arg(&root);
        std::fs::write(www.join(format!("v{v}.fw")), ok(run(&mut cmd, b""))).unwrap();
    }
    let package = std::fs::read(www.join("v1.fw")).unwrap();
    let tar_gz = ok(run(
        fw("fw-unseal").arg("--keyring").arg(&keys.keyring),
        &package,
    ));
    let staged = ok(run(
        fw("fw-unpack")
            .arg("--keyring")
            .arg(&keys.keyring)
            .arg("--target")
            .arg(&target),
        &tar_gz,
    ));
    let staged = String::from_utf8(staged).unwrap();
    ok(run(
        fw("fw-verify")
            .arg("--keyring")
            .arg(&keys.keyring)
            .arg("--target")
            .arg(&target)
            .arg(staged.trim()),
        b"",
    ));
    ok(run(
        fw("fw-fixate")
            .arg("--target")
            .arg(&target)
            .arg(staged.trim()),
        b"",
    ));

    let nginx = Nginx::start(&tmp.path().join("nginx"), &www, "");
    nginx.take_log();
    let out = run(
        fw("fw-fetch")
            .arg("-v")
            .arg("--target")
            .arg(&target)
            .arg("--keyring")
            .arg(&keys.keyring)
            .arg(nginx.url("v2.fw")),
        b"",
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.contains("chunks taken from installed manifests"))
        .unwrap_or_else(|| panic!("{stderr}"));
    let numbers: Vec<usize> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    let (reused, all) = (numbers[0], numbers[1]);
    assert!(all >= 8 && reused + 4 >= all, "{line}");
    // What was sent: the head, a few chunks, two files; far less than the
    // manifest alone.
    let sent = Nginx::bytes_sent(&nginx.take_log(), "v2.fw");
    let manifest = std::fs::metadata(target.join("fw/.fw/manifest.json"))
        .unwrap()
        .len();
    assert!(
        sent * 3 < manifest,
        "{sent} bytes sent, the manifest is {manifest}"
    );
}

/// Issue 13.4 by delta: fw-fetch synthesises the headers of what it does
/// not download from the signed manifest, extended attributes included;
/// an installed file with the same content but other attributes is not
/// held, so it is fetched.
#[test]
fn a_delta_restores_extended_attributes_and_fetches_a_file_whose_attributes_differ() {
    let d = Device::new(false);
    let nginx = start_nginx(&d);
    let tree = tree(&d.tmp.path().join("x"), 2);
    xattr::set(tree.join("big.bin"), "user.fw.level", b"3").unwrap();
    xattr::set(tree.join("etc"), "user.fw.dir", b"").unwrap();
    d.pack(&tree, "v3.fw", false, &["--version", "3"]);
    nginx.take_log();
    let out = d.delta(&nginx.url("v3.fw"));
    let stderr = exits(&out, 0);
    assert!(!stderr.contains("error"), "{stderr}");
    let current = d.current();
    assert_eq!(
        xattr::get(current.join("big.bin"), "user.fw.level")
            .unwrap()
            .as_deref(),
        Some(&b"3"[..])
    );
    assert_eq!(
        xattr::get(current.join("etc"), "user.fw.dir")
            .unwrap()
            .as_deref(),
        Some(&b""[..])
    );
    let sent = Nginx::bytes_sent(&nginx.take_log(), "v3.fw");
    assert!(sent > 600_000, "big.bin was fetched: {sent} bytes sent");
    use std::os::unix::fs::MetadataExt;
    let old = std::fs::metadata(d.target.join("fw/big.bin")).unwrap();
    let new = std::fs::metadata(current.join("big.bin")).unwrap();
    assert_ne!((old.dev(), old.ino()), (new.dev(), new.ino()));
    assert!(xattr::list(d.target.join("fw/big.bin"))
        .unwrap()
        .next()
        .is_none());
}
