//! fw-sign and fw-unseal, end to end: round trips, reproducibility, every
//! refusal, and the hold-back on a large stream.

use std::path::Path;

use fw_e2e::*;

fn pack(keys: &Keys, dir: &Path, extra: &[&str]) -> Vec<u8> {
    let mut cmd = fw("fw-sign");
    cmd.args(["pack", "--key"])
        .arg(&keys.vendor_key)
        .args(extra)
        .arg(dir);
    ok(run(&mut cmd, b""))
}

fn unseal(keyring: &Path, package: &[u8], extra: &[&str]) -> std::process::Output {
    run(
        fw("fw-unseal").arg("--keyring").arg(keyring).args(extra),
        package,
    )
}

#[test]
fn round_trip_plain_and_encrypted() {
    let tmp = TempDir::new().unwrap();
    let keys = Keys::new(&tmp.path().join("keys"));
    let tree = sample_tree(tmp.path(), "sample-setup");
    let device_cert = keys.device_cert.to_str().unwrap().to_string();
    for extra in [vec![], vec!["--encrypt-for", device_cert.as_str()]] {
        let package = pack(&keys, &tree, &extra);
        for spool in [&[][..], &["--spool"][..]] {
            let tar_gz = ok(unseal(&keys.keyring, &package, spool));
            assert!(is_complete_gzip(&tar_gz));
            let paths = tar_gz_paths(&tar_gz);
            assert_eq!(paths[0], "sample-setup/.fw/manifest.json");
            assert_eq!(paths[1], "sample-setup/.fw/manifest.sig");
            assert_eq!(paths[2], "sample-setup/");
            assert!(paths.contains(&"sample-setup/bin/app".to_string()));
            assert!(paths.contains(&format!("sample-setup/etc/{}", "l".repeat(150))));
            assert!(paths.iter().all(|p| p.starts_with("sample-setup/")));
            // fw-unseal's announcement and proof are gzip members that GNU
            // gzip and tar ignore.
            ok(run(std::process::Command::new("gzip").arg("-t"), &tar_gz));
            let listing = String::from_utf8(ok(run(
                std::process::Command::new("tar").args(["-tzf", "-"]),
                &tar_gz,
            )))
            .unwrap();
            assert_eq!(listing.lines().collect::<Vec<_>>(), paths);
        }
    }
}

#[test]
fn keyring_may_be_one_file_or_the_environment() {
    let tmp = TempDir::new().unwrap();
    let keys = Keys::new(&tmp.path().join("keys"));
    let tree = sample_tree(tmp.path(), "fw");
    let package = pack(&keys, &tree, &[]);
    ok(unseal(&keys.vendor_cert, &package, &[]));
    let out = run(fw("fw-unseal").env("FW_KEYRING", &keys.keyring), &package);
    assert!(is_complete_gzip(&ok(out)));
}

#[test]
fn reads_armored_packages() {
    let tmp = TempDir::new().unwrap();
    let keys = Keys::new(&tmp.path().join("keys"));
    let tree = sample_tree(tmp.path(), "fw");
    let package = pack(&keys, &tree, &[]);
    let gpg = Gpg::new();
    let armored = gpg.ok(&["--enarmor"], &package);
    assert!(armored.starts_with(b"-----BEGIN PGP"));
    assert!(is_complete_gzip(&ok(unseal(&keys.keyring, &armored, &[]))));
}

#[test]
fn reproducible_with_source_date_epoch() {
    let tmp = TempDir::new().unwrap();
    let keys = Keys::new(&tmp.path().join("keys"));
    let tree = sample_tree(tmp.path(), "repro");
    let mut tar_gzs = Vec::new();
    for _ in 0..2 {
        let mut cmd = fw("fw-sign");
        cmd.env("SOURCE_DATE_EPOCH", "1700000000")
            .args(["pack", "--version", "7", "--key"])
            .arg(&keys.vendor_key)
            .arg(&tree);
        let package = ok(run(&mut cmd, b""));
        tar_gzs.push(without_proof(&ok(unseal(&keys.keyring, &package, &[]))).to_vec());
        // The key was made after the epoch, so the signatures are dated
        // at its creation: the same for both packs. (The package's own
        // signature, fw-unseal's proof, is salted: not the same.)
    }
    assert_eq!(tar_gzs[0], tar_gzs[1], "same tree, same epoch: same tar.gz");
}

#[test]
fn manifest_lists_every_entry_and_its_signature_verifies() {
    let tmp = TempDir::new().unwrap();
    let keys = Keys::new(&tmp.path().join("keys"));
    let tree = sample_tree(tmp.path(), "fw");
    let package = pack(
        &keys,
        &tree,
        &["--version", "2.1", "--security-version", "9"],
    );
    let tar_gz = ok(unseal(&keys.keyring, &package, &[]));
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    ok(run(
        std::process::Command::new("tar")
            .arg("-xzf")
            .arg("-")
            .arg("-C")
            .arg(&out),
        &tar_gz,
    ));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("fw/.fw/manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["name"], "fw");
    assert_eq!(manifest["version"], "2.1");
    assert_eq!(manifest["security_version"], 9);
    let paths: Vec<&str> = manifest["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    for expected in [
        ".",
        "bin",
        "bin/app",
        "bin/app-hardlink",
        "bin/dangling",
        "var/empty",
        "etc/grüße-✓.txt",
    ] {
        assert!(
            paths.contains(&expected),
            "{expected} missing from {paths:?}"
        );
    }
    let link = manifest["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == "bin/env")
        .unwrap();
    assert_eq!(link["type"], "symlink");
    assert_eq!(link["target"], "/usr/bin/env");
    let hard = manifest["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == "bin/app-hardlink")
        .unwrap();
    assert_eq!(hard["hardlink"], "bin/app");
    // GnuPG checks the detached manifest signature.
    let gpg = Gpg::new();
    gpg.import(&keys.vendor_cert);
    let status = gpg
        .cmd()
        .arg("--verify")
        .arg(out.join("fw/.fw/manifest.sig"))
        .arg(out.join("fw/.fw/manifest.json"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&status.stderr).contains("[GNUPG:] VALIDSIG"));
}

#[test]
fn exclude_leaves_out_matching_paths() {
    let tmp = TempDir::new().unwrap();
    let keys = Keys::new(&tmp.path().join("keys"));
    let tree = sample_tree(tmp.path(), "fw");
    let package = pack(
        &keys,
        &tree,
        &["--exclude", "etc/app", "--exclude", "**/*.txt"],
    );
    let paths = tar_gz_paths(&ok(unseal(&keys.keyring, &package, &[])));
    assert!(
        !paths
            .iter()
            .any(|p| p.starts_with("fw/etc/app/") || p.ends_with(".txt")),
        "{paths:?}"
    );
    assert!(paths.contains(&"fw/bin/app".to_string()));
}

#[test]
fn pack_refuses_what_a_package_cannot_hold() {
    let tmp = TempDir::new().unwrap();
    let keys = Keys::new(&tmp.path().join("keys"));

    let current = sample_tree(tmp.path(), "current");
    let out = run(
        fw("fw-sign")
            .args(["pack", "--key"])
            .arg(&keys.vendor_key)
            .arg(&current),
        b"",
    );
    assert!(fails_with(out, 5).is_empty());

    let fifo_tree = sample_tree(tmp.path(), "with-fifo");
    nix_mkfifo(&fifo_tree.join("bin/fifo"));
    let out = run(
        fw("fw-sign")
            .args(["pack", "--key"])
            .arg(&keys.vendor_key)
            .arg(&fifo_tree),
        b"",
    );
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    fails_with(out, 5);
    assert!(stderr.contains("bin/fifo"), "names the entry: {stderr}");

    let socket_tree = sample_tree(tmp.path(), "with-socket");
    let _listener = std::os::unix::net::UnixListener::bind(socket_tree.join("sock")).unwrap();
    let out = run(
        fw("fw-sign")
            .args(["pack", "--key"])
            .arg(&keys.vendor_key)
            .arg(&socket_tree),
        b"",
    );
    fails_with(out, 5);

    let dev_tree = sample_tree(tmp.path(), "with-device");
    let made = std::process::Command::new("mknod")
        .arg(dev_tree.join("null"))
        .args(["c", "1", "3"])
        .status();
    if made.map(|s| s.success()).unwrap_or(false) {
        let out = run(
            fw("fw-sign")
                .args(["pack", "--key"])
                .arg(&keys.vendor_key)
                .arg(&dev_tree),
            b"",
        );
        fails_with(out, 5);
    }

    let bad_name_tree = sample_tree(tmp.path(), "non-utf8");
    {
        use std::os::unix::ffi::OsStrExt;
        let name = std::ffi::OsStr::from_bytes(b"bad-\xff-name");
        std::fs::write(bad_name_tree.join(name), b"x").unwrap();
    }
    let out = run(
        fw("fw-sign")
            .args(["pack", "--key"])
            .arg(&keys.vendor_key)
            .arg(&bad_name_tree),
        b"",
    );
    fails_with(out, 5);

    let own_dir_tree = sample_tree(tmp.path(), "has-fw-dir");
    std::fs::create_dir(own_dir_tree.join(".fw")).unwrap();
    let out = run(
        fw("fw-sign")
            .args(["pack", "--key"])
            .arg(&keys.vendor_key)
            .arg(&own_dir_tree),
        b"",
    );
    fails_with(out, 5);

    // A symlink loop is packed as the links it is, never followed.
    let loop_tree = sample_tree(tmp.path(), "with-loop");
    std::os::unix::fs::symlink("b", loop_tree.join("a")).unwrap();
    std::os::unix::fs::symlink("a", loop_tree.join("b")).unwrap();
    std::os::unix::fs::symlink(".", loop_tree.join("self")).unwrap();
    let package = pack(&keys, &loop_tree, &[]);
    let paths = tar_gz_paths(&ok(unseal(&keys.keyring, &package, &[])));
    assert!(
        paths.contains(&"with-loop/a".to_string()) && paths.contains(&"with-loop/self".to_string())
    );
}

fn nix_mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

/// Everything fw-unseal must refuse, from GnuPG and from tampering.
#[test]
fn unseal_refuses_all_but_a_good_trusted_signature() {
    let tmp = TempDir::new().unwrap();
    let keys = Keys::new(&tmp.path().join("keys"));
    let tree = sample_tree(tmp.path(), "fw");
    let good = pack(&keys, &tree, &[]);
    let tar_gz = without_proof(&ok(unseal(&keys.keyring, &good, &[]))).to_vec();

    let gpg = Gpg::new();
    gpg.import(&keys.device_cert);
    gpg.import(&keys.device_key);
    let stranger = gpg.gen_key("Stranger <s@example>", "ed25519");
    let device_fpr = gpg.fingerprint("Device");

    let cases: Vec<(&str, Vec<u8>, i32)> = vec![
        (
            "encrypted only",
            gpg.ok(
                &[
                    "--encrypt",
                    "--compress-algo",
                    "none",
                    "--recipient",
                    &device_fpr,
                    "--trust-model",
                    "always",
                ],
                &tar_gz,
            ),
            4,
        ),
        (
            "literal only (gpg --store)",
            gpg.ok(&["--store", "--compress-algo", "none"], &tar_gz),
            4,
        ),
        (
            "signed by an unknown key",
            gpg.ok(
                &[
                    "--sign",
                    "--compress-algo",
                    "none",
                    "--local-user",
                    &stranger,
                ],
                &tar_gz,
            ),
            4,
        ),
        (
            "signed by an unknown key, compressed",
            gpg.ok(&["--sign", "--local-user", &stranger], &tar_gz),
            4,
        ),
        (
            "signed by an unknown key and encrypted to the device",
            gpg.ok(
                &[
                    "--sign",
                    "--encrypt",
                    "--compress-algo",
                    "none",
                    "--local-user",
                    &stranger,
                    "--recipient",
                    &device_fpr,
                    "--trust-model",
                    "always",
                ],
                &tar_gz,
            ),
            4,
        ),
        ("truncated", good[..good.len() - 40].to_vec(), 4),
        ("cut in the middle", good[..good.len() / 2].to_vec(), 4),
        ("garbled in the middle", flip(&good, good.len() / 2), 4),
        ("garbled signature", flip(&good, good.len() - 3), 4),
        (
            "trailing garbage",
            [good.clone(), b"garbage".to_vec()].concat(),
            4,
        ),
        ("not OpenPGP: the tar.gz itself", tar_gz.clone(), 5),
        ("not OpenPGP: text", b"hello, world\n".to_vec(), 5),
        // An empty pipe: the stage before failed and said why (exit 9, quiet).
        ("empty", Vec::new(), 9),
    ];
    for (what, package, code) in cases {
        for spool in [&[][..], &["--spool"][..]] {
            let out = unseal(&keys.keyring, &package, spool);
            let stderr = String::from_utf8_lossy(&out.stderr).to_string();
            assert_eq!(out.status.code(), Some(code), "{what} {spool:?}: {stderr}");
            let lines = if code == 9 { 0 } else { 1 };
            assert_eq!(stderr.lines().count(), lines, "{what}: one line: {stderr}");
            assert!(
                !is_complete_gzip(&out.stdout),
                "{what}: a complete gzip stream escaped"
            );
            assert!(
                out.stdout.len() < tar_gz.len(),
                "{what}: all the plaintext escaped"
            );
        }
    }
}

#[test]
fn unseal_refuses_a_wrong_mdc() {
    let tmp = TempDir::new().unwrap();
    let keys = Keys::new(&tmp.path().join("keys"));
    let tree = sample_tree(tmp.path(), "fw");
    let device_cert = keys.device_cert.to_str().unwrap().to_string();
    let package = pack(&keys, &tree, &["--encrypt-for", &device_cert]);
    // The last 22 bytes of a SEIPD v1 packet are the MDC packet; its hash.
    let out = unseal(&keys.keyring, &flip(&package, package.len() - 5), &[]);
    assert!(!is_complete_gzip(&fails_with(out, 4)));
    // Encrypted for another device: nothing to decrypt with.
    let other = Keys::new(&tmp.path().join("other"));
    let out = unseal(&other.keyring, &package, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(fails_with(out, 4).is_empty());
    assert!(stderr.contains("no secret key"), "{stderr}");
}

/// An encrypted package that does not decrypt is refused (exit 4) with
/// its real cause: the device's key is in the keyring, but the package
/// does not decrypt with it; or a password, which fw never uses.
#[test]
fn unseal_says_why_an_encrypted_package_does_not_decrypt() {
    let tmp = TempDir::new().unwrap();
    let keys = Keys::new(&tmp.path().join("keys"));
    let tree = sample_tree(tmp.path(), "fw");
    let device_cert = keys.device_cert.to_str().unwrap().to_string();
    let package = pack(&keys, &tree, &["--encrypt-for", &device_cert]);
    // The session key packet (new format, one-octet length), then the
    // SEIPD packet: its header, version 1, the ciphertext.
    assert_eq!(package[0], 0xc1);
    let pkesk_len = 2 + package[1] as usize;
    let seipd = &package[pkesk_len..];
    assert_eq!(seipd[0], 0xd2);
    let version_at = match seipd[1] {
        0..=191 | 224..=254 => 2,
        192..=223 => 3,
        255 => 6,
    };
    assert_eq!(seipd[version_at], 1);
    let ciphertext = pkesk_len + version_at + 1;
    for (what, message) in [
        // The wrapped session key damaged: the device's key cannot unwrap it.
        ("damaged session key", flip(&package, pkesk_len - 1)),
        // The repeated bytes after the first cipher block damaged: the
        // session key fails its quick check.
        ("bad quick check", flip(&package, ciphertext + 16)),
    ] {
        let out = unseal(&keys.keyring, &message, &[]);
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(fails_with(out, 4).is_empty(), "{what}");
        assert!(
            stderr.contains("whose secret key is in the keyring")
                && stderr.contains("does not decrypt")
                && !stderr.contains("no secret key"),
            "{what}: {stderr}"
        );
    }
    // A password (a SKESK: AES-256, iterated and salted SHA-256) instead
    // of a session key packet for the device.
    let skesk = [&[0xc3, 13, 4, 9, 3, 8][..], &[7; 8], &[255]].concat();
    let out = unseal(&keys.keyring, &[&skesk[..], seipd].concat(), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(fails_with(out, 4).is_empty());
    assert!(
        stderr.contains("encrypted with a password only") && !stderr.contains("encrypted for ,"),
        "{stderr}"
    );
}

#[test]
fn unseal_refuses_a_revoked_signer() {
    let tmp = TempDir::new().unwrap();
    let keys = Keys::new(&tmp.path().join("keys"));
    let tree = sample_tree(tmp.path(), "fw");
    let tar_gz = ok(unseal(&keys.keyring, &pack(&keys, &tree, &[]), &[]));
    let tar_gz = without_proof(&tar_gz);

    let gpg = Gpg::new();
    let fpr = gpg.gen_key("Revoked Vendor <r@example>", "ed25519");
    let signed = gpg.ok(
        &["--sign", "--compress-algo", "none", "--local-user", &fpr],
        tar_gz,
    );
    let keyring = tmp.path().join("revoked-keyring");
    std::fs::create_dir(&keyring).unwrap();
    gpg.export_cert(&fpr, &keyring.join("vendor.asc"));
    // Trusted while valid...
    ok(unseal(&keyring, &signed, &[]));
    // ...and refused once revoked (GnuPG's own revocation certificate).
    let rev = gpg.home.path().join(format!("openpgp-revocs.d/{fpr}.rev"));
    let text = std::fs::read_to_string(&rev)
        .unwrap()
        .replace(":-----BEGIN", "-----BEGIN");
    let rev_file = tmp.path().join("rev.asc");
    std::fs::write(&rev_file, text).unwrap();
    gpg.import(&rev_file);
    gpg.export_cert(&fpr, &keyring.join("vendor.asc"));
    let out = unseal(&keyring, &signed, &[]);
    assert!(!is_complete_gzip(&fails_with(out, 4)));
}

/// A package far larger than the hold-back whose signature is bad: most of
/// it flows, the tail never does, and the exit is 4.
#[test]
fn large_stream_with_bad_signature_is_cut_short() {
    let tmp = TempDir::new().unwrap();
    let keys = Keys::new(&tmp.path().join("keys"));
    let tree = tmp.path().join("big");
    std::fs::create_dir(&tree).unwrap();
    // 64 MiB that gzip cannot shrink (xorshift noise).
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut data = vec![0u8; 64 << 20];
    for chunk in data.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
    std::fs::write(tree.join("rootfs.img"), &data).unwrap();
    drop(data);
    let package_path = tmp.path().join("big.fw");
    let mut cmd = fw("fw-sign");
    cmd.args(["pack", "--key"])
        .arg(&keys.vendor_key)
        .arg(&tree)
        .stdout(std::fs::File::create(&package_path).unwrap());
    assert!(cmd.status().unwrap().success());

    let good = ok(run_file(
        fw("fw-unseal").arg("--keyring").arg(&keys.keyring),
        &package_path,
    ));
    assert!(is_complete_gzip(&good));

    let mut package = std::fs::read(&package_path).unwrap();
    let last = package.len() - 2;
    package[last] ^= 0x01;
    std::fs::write(&package_path, &package).unwrap();
    let out = run_file(
        fw("fw-unseal").arg("--keyring").arg(&keys.keyring),
        &package_path,
    );
    let partial = fails_with(out, 4);
    assert!(
        partial.len() > 32 << 20,
        "most of the stream flowed early: {}",
        partial.len()
    );
    assert!(
        partial.len() + (1 << 20) <= good.len(),
        "the last MiB was held back"
    );
    assert_eq!(&partial[..], &good[..partial.len()]);
    assert!(!is_complete_gzip(&partial));

    let out = run_file(
        fw("fw-unseal")
            .args(["--spool", "--keyring"])
            .arg(&keys.keyring),
        &package_path,
    );
    assert!(
        fails_with(out, 4).is_empty(),
        "--spool writes nothing before the verdict"
    );
}

#[test]
fn help_and_version() {
    for tool in ["fw-sign", "fw-unseal"] {
        let help = String::from_utf8(ok(run(fw(tool).arg("--help"), b""))).unwrap();
        assert!(help.contains("Usage:"), "{help}");
        let version = String::from_utf8(ok(run(fw(tool).arg("--version"), b""))).unwrap();
        assert!(version.starts_with(tool), "{version}");
    }
    let out = run(fw("fw-unseal").arg("--no-such-flag"), b"");
    assert_eq!(out.status.code(), Some(2));
}

fn flip(bytes: &[u8], at: usize) -> Vec<u8> {
    let mut copy = bytes.to_vec();
    copy[at] ^= 0x55;
    copy
}

/// A full disk under the package is an I/O error (exit 1) about the
/// output, not a refusal of the tree (exit 5).
#[test]
fn a_full_output_is_an_io_error() {
    let tmp = TempDir::new().unwrap();
    let keys = Keys::new(&tmp.path().join("keys"));
    let tree = sample_tree(tmp.path(), "fw");
    // More than the buffers between fw-sign and the file: 4 MiB that
    // does not compress.
    std::fs::write(tree.join("noise"), noise(4 << 20, 2)).unwrap();
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = fw("fw-sign")
        .args(["pack", "--key"])
        .arg(&keys.vendor_key)
        .arg(&tree)
        .stdout(full)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("stdout") && stderr.contains("No space left"),
        "{stderr}"
    );
}
