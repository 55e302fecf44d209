//! fw-unseal | fw-unpack | fw-verify end to end: round trips that keep
//! every shape of tree, tampering after unpack, anti-rollback, policy,
//! and fw-verify as an integrity check of installed versions.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use fw_e2e::*;

struct Setup {
    tmp: TempDir,
    keys: Keys,
    target: PathBuf,
}

fn setup() -> Setup {
    let tmp = TempDir::new().unwrap();
    let keys = Keys::new(&tmp.path().join("keys"));
    let target = tmp.path().join("target");
    std::fs::create_dir(&target).unwrap();
    Setup { tmp, keys, target }
}

impl Setup {
    fn pack(&self, tree: &Path, extra: &[&str]) -> Vec<u8> {
        let mut cmd = fw("fw-sign");
        cmd.args(["pack", "--key"])
            .arg(&self.keys.vendor_key)
            .args(extra)
            .arg(tree);
        ok(run(&mut cmd, b""))
    }

    /// unseal | unpack; returns the staging tree.
    fn unpack(&self, package: &[u8]) -> PathBuf {
        let tar_gz = ok(run(
            fw("fw-unseal").arg("--keyring").arg(&self.keys.keyring),
            package,
        ));
        let out = ok(run(&mut self.unpack_cmd(), &tar_gz));
        let path = String::from_utf8(out).unwrap();
        assert!(
            path.ends_with('\n') && path.lines().count() == 1,
            "one line: {path:?}"
        );
        PathBuf::from(path.trim_end())
    }

    fn unpack_cmd(&self) -> Command {
        let mut cmd = fw("fw-unpack");
        cmd.arg("--keyring")
            .arg(&self.keys.keyring)
            .arg("--target")
            .arg(&self.target);
        cmd
    }

    fn verify(&self, path: &Path, extra: &[&str]) -> std::process::Output {
        let mut cmd = fw("fw-verify");
        cmd.arg("--keyring")
            .arg(&self.keys.keyring)
            .arg("--target")
            .arg(&self.target)
            .args(extra)
            .arg(path);
        run(&mut cmd, b"")
    }
}

/// Every entry below `root` with what fw promises to keep.
fn describe(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in walk(root) {
        let rel = entry
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .to_string();
        if rel == ".fw" || rel.starts_with(".fw/") {
            continue;
        }
        let meta = std::fs::symlink_metadata(&entry).unwrap();
        let what = if meta.file_type().is_symlink() {
            format!("link -> {}", std::fs::read_link(&entry).unwrap().display())
        } else if meta.is_dir() {
            format!("dir {:o}", meta.mode() & 0o7777)
        } else {
            let content = std::fs::read(&entry).unwrap();
            format!(
                "file {:o} {} {}",
                meta.mode() & 0o7777,
                content.len(),
                blake3::hash(&content).to_hex()
            )
        };
        let mtime = if meta.file_type().is_symlink() {
            String::new()
        } else {
            format!(" mtime {}", meta.mtime())
        };
        out.push(format!(
            "{rel}: {what} owner {}:{}{mtime}",
            meta.uid(),
            meta.gid()
        ));
    }
    out.sort();
    out
}

fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = vec![root.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        let p = out[i].clone();
        if std::fs::symlink_metadata(&p).unwrap().is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                out.push(e.unwrap().path());
            }
        }
        i += 1;
    }
    out
}

fn is_root() -> bool {
    String::from_utf8(Command::new("id").arg("-u").output().unwrap().stdout)
        .unwrap()
        .trim()
        == "0"
}

#[test]
fn round_trip_keeps_every_shape_of_tree() {
    let s = setup();
    let tree = sample_tree(s.tmp.path(), "shapes");
    // Unusual modes: setuid, sticky directory, read-only file and directory.
    std::fs::write(tree.join("bin/suid"), b"suid").unwrap();
    std::fs::set_permissions(
        tree.join("bin/suid"),
        std::fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    std::fs::create_dir(tree.join("tmp")).unwrap();
    std::fs::set_permissions(tree.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::fs::create_dir(tree.join("ro")).unwrap();
    std::fs::write(tree.join("ro/readonly"), b"ro").unwrap();
    std::fs::set_permissions(
        tree.join("ro/readonly"),
        std::fs::Permissions::from_mode(0o444),
    )
    .unwrap();
    std::fs::set_permissions(tree.join("ro"), std::fs::Permissions::from_mode(0o555)).unwrap();
    let deep = tree.join("d".repeat(90)).join("e".repeat(90));
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(deep.join("f".repeat(120)), b"deep and long").unwrap();
    std::os::unix::fs::symlink("t".repeat(150), tree.join("long-link")).unwrap();
    if is_root() {
        std::os::unix::fs::lchown(tree.join("etc/app/config"), Some(1234), Some(5678)).unwrap();
    }

    let staged = s.unpack(&s.pack(&tree, &[]));
    assert!(
        staged.starts_with(s.target.join(".fw/staging")),
        "{}",
        staged.display()
    );
    assert_eq!(staged.file_name().unwrap(), "shapes");
    assert_eq!(describe(&tree), describe(&staged));
    let hard_a = std::fs::metadata(staged.join("bin/app")).unwrap();
    let hard_b = std::fs::metadata(staged.join("bin/app-hardlink")).unwrap();
    assert_eq!(hard_a.ino(), hard_b.ino(), "hard links stay hard links");

    let out = ok(s.verify(&staged, &[]));
    assert_eq!(
        String::from_utf8(out).unwrap(),
        format!("{}\n", staged.display())
    );
    let verified = std::fs::read_to_string(staged.join(".fw/verified")).unwrap();
    let manifest = std::fs::read(staged.join(".fw/manifest.json")).unwrap();
    assert_eq!(verified.trim().len(), 64);
    assert_ne!(manifest.len(), 0);
    // Make the read-only directory writable again so the tempdir can go.
    std::fs::set_permissions(staged.join("ro"), std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn verify_reads_the_path_from_stdin() {
    let s = setup();
    let tree = sample_tree(s.tmp.path(), "fw");
    let staged = s.unpack(&s.pack(&tree, &[]));
    let mut cmd = fw("fw-verify");
    cmd.arg("--keyring")
        .arg(&s.keys.keyring)
        .arg("--target")
        .arg(&s.target);
    let out = ok(run(&mut cmd, format!("{}\n", staged.display()).as_bytes()));
    assert_eq!(out, format!("{}\n", staged.display()).into_bytes());
    // No line on an empty pipe: the stage before failed (exit 9, quiet).
    let out = run(fw("fw-verify").arg("--keyring").arg(&s.keys.keyring), b"");
    assert_eq!(out.status.code(), Some(9));
    assert!(out.stderr.is_empty());
}

/// Each tampering after unpack is named, with exit 5 (content) or 4
/// (signature, downgrade).
#[test]
fn tampering_after_unpack_is_refused() {
    let s = setup();
    let tree = sample_tree(s.tmp.path(), "fw");
    let package = s.pack(&tree, &["--security-version", "3"]);

    type Tamper = Box<dyn Fn(&Path)>;
    let cases: Vec<(&str, Tamper, i32, &str)> = vec![
        (
            "changed byte",
            Box::new(|p: &Path| {
                let f = p.join("etc/app/config");
                let mut data = std::fs::read(&f).unwrap();
                data[0] ^= 1;
                std::fs::write(&f, data).unwrap();
            }),
            5,
            "etc/app/config: content differs",
        ),
        (
            "changed mode",
            Box::new(|p: &Path| {
                std::fs::set_permissions(
                    p.join("bin/app"),
                    std::fs::Permissions::from_mode(0o4755),
                )
                .unwrap();
            }),
            5,
            "bin/app: mode 4755",
        ),
        (
            "extra file",
            Box::new(|p: &Path| std::fs::write(p.join("bin/backdoor"), b"x").unwrap()),
            5,
            "bin/backdoor: extra",
        ),
        (
            "missing file",
            Box::new(|p: &Path| std::fs::remove_file(p.join("etc/app/config")).unwrap()),
            5,
            "etc/app/config: missing",
        ),
        (
            "swapped symlink target",
            Box::new(|p: &Path| {
                std::fs::remove_file(p.join("etc/app-link")).unwrap();
                std::os::unix::fs::symlink("/etc/shadow", p.join("etc/app-link")).unwrap();
            }),
            5,
            "etc/app-link: symlink to",
        ),
        (
            "file replaced by a symlink",
            Box::new(|p: &Path| {
                std::fs::remove_file(p.join("etc/app/config")).unwrap();
                std::os::unix::fs::symlink("/etc/passwd", p.join("etc/app/config")).unwrap();
            }),
            5,
            "etc/app/config: is a symlink",
        ),
        (
            "signature removed",
            Box::new(|p: &Path| std::fs::remove_file(p.join(".fw/manifest.sig")).unwrap()),
            4,
            "not signed",
        ),
        (
            "manifest edited",
            Box::new(|p: &Path| {
                let f = p.join(".fw/manifest.json");
                let text = std::fs::read_to_string(&f)
                    .unwrap()
                    .replace("\"security_version\":3", "\"security_version\":4");
                std::fs::write(&f, text).unwrap();
            }),
            4,
            "manifest signature",
        ),
    ];
    for (what, tamper, code, says) in cases {
        let staged = s.unpack(&package);
        ok(s.verify(&staged, &[]));
        tamper(&staged);
        let out = s.verify(&staged, &[]);
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(
            fails_with(out, code).is_empty(),
            "{what}: nothing on stdout"
        );
        assert!(stderr.contains(says), "{what}: {stderr}");
    }
}

#[test]
fn a_manifest_re_signed_by_another_key_is_refused() {
    let s = setup();
    let tree = sample_tree(s.tmp.path(), "fw");
    let staged = s.unpack(&s.pack(&tree, &[]));
    // The attacker changes a file, fixes the manifest and signs it with a
    // key of their own.
    std::fs::write(staged.join("etc/app/config"), b"evil = 1\n").unwrap();
    let manifest_path = staged.join(".fw/manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    let hash = blake3::hash(b"evil = 1\n").to_hex().to_string();
    for entry in manifest["entries"].as_array_mut().unwrap() {
        if entry["path"] == "etc/app/config" {
            entry["size"] = 9.into();
            entry["blake3"] = hash.as_str().into();
        }
    }
    std::fs::write(
        &manifest_path,
        serde_json::to_vec_pretty(&manifest).unwrap(),
    )
    .unwrap();
    let gpg = Gpg::new();
    let fpr = gpg.gen_key("Attacker <a@example>", "ed25519");
    let sig = gpg.ok(
        &["--detach-sign", "--local-user", &fpr],
        &std::fs::read(&manifest_path).unwrap(),
    );
    std::fs::write(staged.join(".fw/manifest.sig"), sig).unwrap();
    let out = s.verify(&staged, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    fails_with(out, 4);
    assert!(stderr.contains("not a trusted certificate"), "{stderr}");
}

#[test]
fn downgrade_below_the_installed_security_version_is_refused() {
    let s = setup();
    let tree = sample_tree(s.tmp.path(), "fw");
    let old = s.pack(&tree, &["--version", "1", "--security-version", "3"]);
    let new = s.pack(&tree, &["--version", "2", "--security-version", "5"]);
    // Install v2 by hand (fixate is another tool): move its tree into place.
    let staged_new = s.unpack(&new);
    ok(s.verify(&staged_new, &[]));
    std::fs::rename(&staged_new, s.target.join("fw")).unwrap();

    let staged_old = s.unpack(&old);
    let out = s.verify(&staged_old, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    fails_with(out, 4);
    assert!(
        stderr.contains("security_version 3, below this device's 5"),
        "{stderr}"
    );
    // A replayed old package through the bare pipeline leaves nothing
    // behind: the refused staging tree is removed.
    assert!(staged_old
        .parent()
        .unwrap()
        .starts_with(s.target.join(".fw/staging")));
    assert!(
        !staged_old.parent().unwrap().exists(),
        "the refused tree is removed"
    );

    // The installed version itself still checks out (fsck), and the same
    // security_version is no downgrade.
    ok(s.verify(&s.target.join("fw"), &[]));
    let same = s.pack(&tree, &["--version", "2b", "--security-version", "5"]);
    ok(s.verify(&s.unpack(&same), &[]));

    // A recorded floor holds even when the newer version is gone.
    std::fs::remove_dir_all(s.target.join("fw")).unwrap();
    std::fs::write(s.target.join(".fw/security-floor"), "4\n").unwrap();
    let out = s.verify(&s.unpack(&old), &[]);
    fails_with(out, 4);
}

#[test]
fn installed_versions_are_checked_like_an_fsck() {
    let s = setup();
    let tree = sample_tree(s.tmp.path(), "fw");
    let staged = s.unpack(&s.pack(&tree, &[]));
    ok(s.verify(&staged, &[]));
    let installed = s.target.join("fw");
    std::fs::rename(&staged, &installed).unwrap();
    std::os::unix::fs::symlink("fw", s.target.join("current")).unwrap();
    ok(s.verify(&s.target.join("current"), &[]));
    let verified_before = std::fs::metadata(installed.join(".fw/verified"))
        .unwrap()
        .mtime_nsec();
    ok(s.verify(&installed, &[]));
    let verified_after = std::fs::metadata(installed.join(".fw/verified"))
        .unwrap()
        .mtime_nsec();
    assert_eq!(
        verified_before, verified_after,
        "an intact version is not written to"
    );
    // Someone edits a file in place, keeping its size.
    std::fs::write(installed.join("bin/app"), b"#!/bin/sh\necho app v2\n").unwrap();
    let out = s.verify(&s.target.join("current"), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    fails_with(out, 5);
    assert!(stderr.contains("bin/app: content differs"), "{stderr}");
}

#[test]
fn device_policy_is_applied() {
    let s = setup();
    let tree = sample_tree(s.tmp.path(), "fw");
    std::fs::write(tree.join("bin/suid"), b"suid").unwrap();
    std::fs::set_permissions(
        tree.join("bin/suid"),
        std::fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    let staged = s.unpack(&s.pack(&tree, &[]));
    let policy = s.tmp.path().join("policy.toml");

    std::fs::write(&policy, "allowed_names = [\"fw\"]\n").unwrap();
    ok(s.verify(&staged, &["--policy", policy.to_str().unwrap()]));

    for (text, says) in [
        (
            "allowed_names = [\"other\"]\n",
            "not allowed on this device",
        ),
        ("allow_setuid = false\n", "bin/suid is setuid"),
        ("max_bytes = 10\n", "max_bytes 10"),
    ] {
        std::fs::write(&policy, text).unwrap();
        let staged = s.unpack(&s.pack(&tree, &[]));
        let out = s.verify(&staged, &["--policy", policy.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        fails_with(out, 4);
        assert!(stderr.contains(says), "{text}: {stderr}");
    }
    std::fs::write(&policy, "no_such_key = 1\n").unwrap();
    fails_with(
        s.verify(&staged, &["--policy", policy.to_str().unwrap()]),
        2,
    );
    let missing = s.tmp.path().join("missing.toml");
    fails_with(
        s.verify(&staged, &["--policy", missing.to_str().unwrap()]),
        1,
    );
}

/// An upgrade skips the data of files it links from the installed
/// version, most of it without inflating (fw-gz). A stream cut inside
/// that data must still be refused, leaving nothing behind.
#[test]
fn an_upgrade_cut_inside_a_linked_file_is_refused_and_leaves_nothing() {
    let s = setup();
    let tree = s.tmp.path().join("fw");
    std::fs::create_dir(&tree).unwrap();
    std::fs::write(tree.join("a-changes"), "version 1\n").unwrap();
    // 5 MiB, last in the archive: its data spans whole gzip members.
    std::fs::write(tree.join("zz-shared"), noise(5 << 20, 3)).unwrap();
    let v1 = s.unpack(&s.pack(&tree, &["--version", "1"]));
    ok(s.verify(&v1, &[]));
    let installed = s.target.join("fw");
    std::fs::rename(&v1, &installed).unwrap();

    std::fs::write(tree.join("a-changes"), "version 2\n").unwrap();
    let unsealed = ok(run(
        fw("fw-unseal").arg("--keyring").arg(&s.keys.keyring),
        &s.pack(&tree, &["--version", "2"]),
    ));
    // The tar.gz between fw-unseal's announcement and proof.
    let (head, tar_gz, _) = split_proof(&unsealed);
    let staging = s.target.join(".fw/staging");
    let staged = |dir: &Path| -> Vec<PathBuf> {
        let mut all: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        all.sort();
        all
    };
    let before = staged(&staging);
    let n = tar_gz.len();
    // Inside members, and at every boundary between members (fw-sign's
    // members carry their length at bytes 16..20).
    let mut cuts = vec![n / 3, n / 2, n - 100, n - 1];
    let mut at = 0;
    while at < n {
        at += u32::from_le_bytes(tar_gz[at + 16..at + 20].try_into().unwrap()) as usize;
        if at < n {
            cuts.push(at);
        }
    }
    assert!(cuts.len() >= 9, "the stream has at least 6 members");
    for cut in cuts {
        let out = run(&mut s.unpack_cmd(), &unsealed[..head.len() + cut]);
        assert!(out.stdout.is_empty(), "cut at {cut} of {n}: printed a path");
        fails_with(out, 5);
        assert_eq!(
            staged(&staging),
            before,
            "cut at {cut} of {n}: left a staging dir"
        );
    }

    // Whole, it unpacks with the big file linked, not written, and verifies.
    let v2 = s.unpack(&s.pack(&tree, &["--version", "2"]));
    let ino = |p: &Path| std::fs::metadata(p).unwrap().ino();
    assert_eq!(
        ino(&v2.join("zz-shared")),
        ino(&installed.join("zz-shared"))
    );
    ok(s.verify(&v2, &[]));
    assert_eq!(std::fs::read(v2.join("a-changes")).unwrap(), b"version 2\n");
}

/// The bytes fw-verify said it read ("(N read, ...").
fn bytes_read(stderr: &[u8]) -> u64 {
    let text = String::from_utf8_lossy(stderr);
    let at = text
        .find(" read, the rest proven")
        .unwrap_or_else(|| panic!("no count of bytes read: {text}"));
    let start = text[..at].rfind('(').unwrap() + 1;
    text[start..at].parse().unwrap()
}

/// The record of proven inodes (TARGET/.fw/inodes, issue 17): fw-verify
/// does not read again what fw-unpack wrote and hashed, nor what an
/// upgrade linked from an installed version, yet a change through the
/// file system that keeps size and mtime is still found, and --full reads
/// everything.
#[test]
fn verify_reads_only_what_the_record_does_not_prove_and_still_finds_changes() {
    let s = setup();
    let tree = s.tmp.path().join("fw");
    std::fs::create_dir(&tree).unwrap();
    std::fs::write(tree.join("a-changes"), "version 1\n").unwrap();
    std::fs::write(tree.join("zz-shared"), noise(3 << 20, 5)).unwrap();
    let v1 = s.unpack(&s.pack(&tree, &["--version", "1"]));
    assert!(s.target.join(".fw/inodes").is_file(), "fw-unpack records");
    let out = s.verify(&v1, &[]);
    assert_eq!(bytes_read(&out.stderr), 0, "fw-unpack hashed what it wrote");
    ok(out);
    let out = s.verify(&v1, &["--full"]);
    assert_eq!(bytes_read(&out.stderr), (3 << 20) + 10, "--full reads all");
    ok(out);
    let installed = s.target.join("fw");
    std::fs::rename(&v1, &installed).unwrap();

    std::fs::write(tree.join("a-changes"), "version 2\n").unwrap();
    let v2 = s.unpack(&s.pack(&tree, &["--version", "2"]));
    let ino = |p: &Path| std::fs::metadata(p).unwrap().ino();
    assert_eq!(
        ino(&v2.join("zz-shared")),
        ino(&installed.join("zz-shared"))
    );
    let out = s.verify(&v2, &[]);
    assert_eq!(
        bytes_read(&out.stderr),
        0,
        "the link is proven by the record"
    );
    ok(out);

    // Changed through the file system, size and mtime put back: the
    // change time tells, without --full, in both versions sharing it.
    damage_in_place(&installed.join("zz-shared"));
    for tree in [&v2, &installed] {
        let out = s.verify(tree, &[]);
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(
            stderr.contains("zz-shared: content differs (BLAKE3)"),
            "{stderr}"
        );
        fails_with(out, 5);
    }
    // A record that vouches for the damaged inode is believed only if it
    // is fw's own: this user's, and nobody else may write it.
    let m = std::fs::symlink_metadata(installed.join("zz-shared")).unwrap();
    let btime = m
        .created()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as i64);
    let nanos = |s: i64, ns: i64| s * 1_000_000_000 + ns;
    let forged = format!(
        "fw-inodes 1 100\n100 {} {} {} {} {} {} {}\n",
        m.dev(),
        m.ino(),
        m.len(),
        nanos(m.mtime(), m.mtime_nsec()),
        nanos(m.ctime(), m.ctime_nsec()),
        btime,
        &blake3::hash(&noise(3 << 20, 5)).to_hex()[..32]
    );
    let record = s.target.join(".fw/inodes");
    std::fs::write(&record, &forged).unwrap();
    std::fs::set_permissions(&record, std::fs::Permissions::from_mode(0o666)).unwrap();
    fails_with(s.verify(&installed, &[]), 5);
    // The same lines in fw's own record prove it: that is what the record
    // is, and why only fw may write it.
    std::fs::remove_file(&record).unwrap();
    std::fs::write(&record, &forged).unwrap();
    std::fs::set_permissions(&record, std::fs::Permissions::from_mode(0o644)).unwrap();
    ok(s.verify(&installed, &[]));
    fails_with(s.verify(&installed, &["--full"]), 5);
}

/// Issue 13.9: a shared installed file damaged on the device no longer
/// blocks every later upgrade: fw-unpack finds that it differs from its
/// manifest, writes a fresh copy from the package instead of linking it,
/// names every installed version sharing the damaged inode, and fw-fixate
/// does not link it back.
#[test]
fn an_upgrade_heals_a_damaged_shared_file_and_names_who_shares_it() {
    let s = setup();
    let tree = s.tmp.path().join("fw");
    std::fs::create_dir(&tree).unwrap();
    let shared = noise(1 << 20, 9);
    std::fs::write(tree.join("zz-shared"), &shared).unwrap();
    std::fs::write(tree.join("a-changes"), "version 1\n").unwrap();
    let v1 = install_version(&s.keys, &s.target, &tree, &["--version", "1"]);
    std::fs::write(tree.join("a-changes"), "version 2\n").unwrap();
    let v2 = install_version(&s.keys, &s.target, &tree, &["--version", "2"]);
    let ino = |p: &Path| std::fs::metadata(p).unwrap().ino();
    assert_eq!(ino(&v1.join("zz-shared")), ino(&v2.join("zz-shared")));
    damage_in_place(&v2.join("zz-shared"));

    std::fs::write(tree.join("a-changes"), "version 3\n").unwrap();
    let tar_gz = ok(run(
        fw("fw-unseal").arg("--keyring").arg(&s.keys.keyring),
        &s.pack(&tree, &["--version", "3"]),
    ));
    let out = run(&mut s.unpack_cmd(), &tar_gz);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        stderr.contains("its content differs from its signed manifest"),
        "{stderr}"
    );
    for version in [&v1, &v2] {
        let name = version.join("zz-shared").display().to_string();
        assert!(stderr.contains(&name), "names {name}: {stderr}");
    }
    let v3 = PathBuf::from(String::from_utf8(ok(out)).unwrap().trim_end());
    assert_ne!(ino(&v3.join("zz-shared")), ino(&v1.join("zz-shared")));
    assert_eq!(std::fs::read(v3.join("zz-shared")).unwrap(), shared);
    ok(s.verify(&v3, &[]));
    let installed = ok(run(
        fw("fw-fixate").arg("--target").arg(&s.target).arg(&v3),
        b"",
    ));
    let v3 = PathBuf::from(String::from_utf8(installed).unwrap().trim_end());
    assert_ne!(ino(&v3.join("zz-shared")), ino(&v1.join("zz-shared")));
    assert_eq!(std::fs::read(v3.join("zz-shared")).unwrap(), shared);
    ok(s.verify(&v3, &["--full"]));
    fails_with(s.verify(&v1, &[]), 5);
}

/// fw-unpack leaves no file of 64 KiB or more in the page cache: their
/// pages are dropped once on disk, so that a large install does not push
/// a device's running programs out of memory (docs/design.md, "On the
/// device"). `fincore` (util-linux) counts a file's resident pages.
#[test]
fn unpacked_files_leave_the_page_cache() {
    // In the build's own directory: a tmpfs /tmp keeps every page, by
    // design of tmpfs, and would prove nothing.
    let tmp = TempDir::new_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let keys = Keys::new(&tmp.path().join("keys"));
    let target = tmp.path().join("target");
    std::fs::create_dir(&target).unwrap();
    let s = Setup { tmp, keys, target };
    let tree = s.tmp.path().join("fw");
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    let large = [
        ("big", 6 << 20),
        ("etc/mid", 200_000),
        ("etc/edge", 64 << 10),
    ];
    for (i, (name, len)) in large.iter().enumerate() {
        std::fs::write(tree.join(name), noise(*len, i as u64)).unwrap();
    }
    for i in 0..40 {
        std::fs::write(
            tree.join(format!("etc/small-{i}")),
            noise(3000 + i, i as u64),
        )
        .unwrap();
    }
    let staged = s.unpack(&s.pack(&tree, &[]));
    let out = ok(run(
        Command::new("fincore")
            .args(["--bytes", "--noheadings", "--raw", "--output", "RES,FILE"])
            .args(large.iter().map(|(name, _)| staged.join(name))),
        b"",
    ));
    let out = String::from_utf8(out).unwrap();
    assert_eq!(out.lines().count(), large.len(), "{out}");
    for line in out.lines() {
        assert!(line.starts_with("0 "), "still cached: {line}");
    }
    // And what is on disk is what was signed.
    ok(s.verify(&staged, &["--full"]));
}
