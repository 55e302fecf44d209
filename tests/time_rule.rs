//! The time rule (see fw-core's trust module): the device clock cannot
//! make a valid package look "from the future", and a signature's own
//! expiry is judged at max(device clock, signature time). Device clocks
//! are set with libfaketime on the real fw-unseal process.

use std::process::Command;

use fw_e2e::*;

fn faketime(at: &str) -> Command {
    let mut cmd = Command::new("faketime");
    cmd.arg(at).arg(bin("fw-unseal"));
    cmd
}

#[test]
fn a_device_clock_in_1970_or_far_ahead_accepts_a_valid_package() {
    let tmp = TempDir::new().unwrap();
    let keys = Keys::new(&tmp.path().join("keys"));
    let tree = sample_tree(tmp.path(), "fw");
    let package = ok(run(
        fw("fw-sign")
            .args(["pack", "--key"])
            .arg(&keys.vendor_key)
            .arg(&tree),
        b"",
    ));
    for clock in ["1970-01-01 00:00:10", "2099-12-31 00:00:00"] {
        let mut cmd = faketime(clock);
        cmd.arg("--keyring").arg(&keys.keyring);
        let date = String::from_utf8(ok(run(
            Command::new("faketime").args([clock, "date", "+%Y"]),
            b"",
        )))
        .unwrap();
        assert_eq!(date.trim(), &clock[..4], "libfaketime sets the clock");
        assert!(
            is_complete_gzip(&ok(run(&mut cmd, &package))),
            "clock {clock}"
        );
    }
}

#[test]
fn a_signature_that_expired_is_refused_but_not_by_a_clock_behind_it() {
    let tmp = TempDir::new().unwrap();
    let keys = Keys::new(&tmp.path().join("keys"));
    let tree = sample_tree(tmp.path(), "fw");
    let tar_gz = ok(run(
        fw("fw-unseal").arg("--keyring").arg(&keys.keyring),
        &ok(run(
            fw("fw-sign")
                .args(["pack", "--key"])
                .arg(&keys.vendor_key)
                .arg(&tree),
            b"",
        )),
    ));
    let gpg = Gpg::new();
    let fpr = gpg.gen_key("Vendor <v@example>", "ed25519");
    let keyring = tmp.path().join("keyring");
    std::fs::create_dir(&keyring).unwrap();
    gpg.export_cert(&fpr, &keyring.join("vendor.asc"));
    // A signature valid for one day.
    let tar_gz = without_proof(&tar_gz).to_vec();
    let signed = gpg.ok(
        &[
            "--sign",
            "--compress-algo",
            "none",
            "--default-sig-expire",
            "1d",
            "--local-user",
            &fpr,
        ],
        &tar_gz,
    );

    let mut today = fw("fw-unseal");
    today.arg("--keyring").arg(&keyring);
    let unsealed = ok(run(&mut today, &signed));
    assert_eq!(without_proof(&unsealed), tar_gz);

    let mut in_1970 = faketime("1970-01-01 00:00:10");
    in_1970.arg("--keyring").arg(&keyring);
    assert_eq!(
        without_proof(&ok(run(&mut in_1970, &signed))),
        tar_gz,
        "a clock behind the signature is not trusted"
    );
    // fw-unpack judges fw-unseal's proof by the same rule (the manifest
    // inside is signed by the other vendor key).
    std::fs::copy(&keys.vendor_cert, keyring.join("manifest-signer.asc")).unwrap();
    let target = tmp.path().join("target");
    std::fs::create_dir(&target).unwrap();
    for (clock, code) in [("1970-01-01 00:00:10", 0), ("+7days", 4)] {
        let mut unpack = Command::new("faketime");
        unpack
            .arg(clock)
            .arg(bin("fw-unpack"))
            .arg("--keyring")
            .arg(&keyring)
            .arg("--target")
            .arg(&target);
        let out = run(&mut unpack, &unsealed);
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(out.status.code(), Some(code), "{clock}: {stderr}");
        if code != 0 {
            assert!(stderr.contains("expired"), "{clock}: {stderr}");
        }
    }

    let mut next_week = faketime("+7days");
    next_week.arg("--keyring").arg(&keyring);
    let out = run(&mut next_week, &signed);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!is_complete_gzip(&fails_with(out, 4)));
    assert!(stderr.contains("expired"), "{stderr}");
}
