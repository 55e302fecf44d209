//! Interop with GnuPG 2.2 both ways: GnuPG reads what fw-sign writes, and
//! fw-sign and fw-unseal use keys and messages that GnuPG made (without
//! GnuPG's compression layer: fw packages have none, and fw-unseal
//! refuses one).

use std::path::Path;
use std::process::Command;

use fw_e2e::*;

fn gpg_status(gpg: &Gpg, args: &[&str], stdin: &[u8]) -> (Vec<u8>, String) {
    let out = run(gpg.cmd().args(args), stdin);
    let status = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "gpg {args:?} failed: {status}");
    (out.stdout, status)
}

fn gnu_tar_lists(tar_gz: &[u8]) -> String {
    String::from_utf8(ok(run(Command::new("tar").args(["-tzf", "-"]), tar_gz))).unwrap()
}

#[test]
fn gnupg_decrypts_and_verifies_what_fw_sign_writes() {
    let tmp = TempDir::new().unwrap();
    let keys = Keys::new(&tmp.path().join("keys"));
    let tree = sample_tree(tmp.path(), "sample-setup");
    let mut cmd = fw("fw-sign");
    cmd.args(["pack", "--key"])
        .arg(&keys.vendor_key)
        .arg("--encrypt-for")
        .arg(&keys.device_cert)
        .arg(&tree);
    let package = ok(run(&mut cmd, b""));

    let gpg = Gpg::new();
    gpg.import(&keys.vendor_cert);
    gpg.import(&keys.device_key);
    let (tar_gz, status) = gpg_status(&gpg, &["--decrypt"], &package);
    assert!(status.contains("[GNUPG:] VALIDSIG"), "{status}");
    assert!(status.contains("[GNUPG:] GOODMDC"), "{status}");
    assert!(status.contains("[GNUPG:] DECRYPTION_OKAY"), "{status}");
    let listing = gnu_tar_lists(&tar_gz);
    assert!(
        listing.starts_with("sample-setup/.fw/manifest.json\nsample-setup/.fw/manifest.sig\n"),
        "{listing}"
    );
    // fw-unseal yields exactly what GnuPG does, between its announcement
    // and proof, which GNU tar ignores.
    let ours = ok(run(
        fw("fw-unseal").arg("--keyring").arg(&keys.keyring),
        &package,
    ));
    assert_eq!(without_proof(&ours), tar_gz);
    assert_eq!(gnu_tar_lists(&ours), listing);
}

/// Exports a GnuPG key pair as fw files: secret key, certificate.
fn export(
    gpg: &Gpg,
    fpr: &str,
    dir: &Path,
    name: &str,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let key = dir.join(format!("{name}.key"));
    let cert = dir.join(format!("{name}.asc"));
    gpg.export_secret(fpr, &key);
    gpg.export_cert(fpr, &cert);
    (key, cert)
}

#[test]
fn gnupg_keys_work_with_fw_sign_and_fw_unseal() {
    let tmp = TempDir::new().unwrap();
    let tree = sample_tree(tmp.path(), "fw");
    let gpg = Gpg::new();
    for algo in ["ed25519", "rsa3072"] {
        let vendor = gpg.gen_key(&format!("Vendor {algo} <v-{algo}@example>"), algo);
        let device = gpg.gen_key(&format!("Device {algo} <d-{algo}@example>"), algo);
        let dir = tmp.path().join(algo);
        std::fs::create_dir(&dir).unwrap();
        let (vendor_key, vendor_cert) = export(&gpg, &vendor, &dir, "vendor");
        let (device_key, device_cert) = export(&gpg, &device, &dir, "device");
        let keyring = dir.join("keyring");
        std::fs::create_dir(&keyring).unwrap();
        std::fs::copy(&vendor_cert, keyring.join("vendor.asc")).unwrap();
        std::fs::copy(&device_key, keyring.join("device.gpg")).unwrap();

        // GnuPG's keys as fw-sign's --key and --encrypt-for.
        let mut cmd = fw("fw-sign");
        cmd.args(["pack", "--key"])
            .arg(&vendor_key)
            .arg("--encrypt-for")
            .arg(&device_cert)
            .arg(&tree);
        let package = ok(run(&mut cmd, b""));
        let unsealed = ok(run(
            fw("fw-unseal").arg("--keyring").arg(&keyring),
            &package,
        ));
        assert!(gnu_tar_lists(&unsealed).contains("fw/bin/app\n"), "{algo}");
        let tar_gz = without_proof(&unsealed).to_vec();
        let (_, status) = gpg_status(&gpg, &["--decrypt"], &package);
        assert!(status.contains("[GNUPG:] VALIDSIG"), "{algo}: {status}");
        let unseal = |message: &[u8]| run(fw("fw-unseal").arg("--keyring").arg(&keyring), message);

        // Messages GnuPG made without its compression layer (fw packages
        // have none): signed, signed + encrypted, armored.
        for args in [
            &["--sign"][..],
            &[
                "--sign",
                "--encrypt",
                "--recipient",
                &device,
                "--trust-model",
                "always",
            ],
            &["--armor", "--sign"],
        ] {
            let message = gpg.ok(
                &[args, &["--compress-algo", "none", "--local-user", &vendor]].concat(),
                &tar_gz,
            );
            assert_eq!(
                without_proof(&ok(unseal(&message))),
                tar_gz,
                "{algo} {args:?}"
            );
        }
        // With GnuPG's default ZLIB layer: refused before a byte is written.
        let sealed = gpg.ok(
            &[
                "--sign",
                "--encrypt",
                "--local-user",
                &vendor,
                "--recipient",
                &device,
                "--trust-model",
                "always",
            ],
            &tar_gz,
        );
        let packets = String::from_utf8_lossy(&gpg.ok(&["--list-packets"], &sealed)).to_string();
        assert!(
            packets.contains("compressed packet"),
            "GnuPG compressed it: {packets}"
        );
        let out = unseal(&sealed);
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(fails_with(out, 4).is_empty(), "{algo}: nothing written");
        assert!(stderr.contains("compression"), "{algo}: {stderr}");
    }
}
