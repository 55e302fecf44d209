//! Extended attributes (issue 13.4): file capabilities, POSIX ACLs and
//! `user.*` attributes are signed in the manifest, restored on install,
//! checked by fw-verify, and part of what makes two files the same.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use fw_e2e::*;
use serde_json::Value;
use tempfile::TempDir;

/// `cap_net_raw+ep` as the kernel stores it (VFS_CAP_REVISION_2).
const CAP_NET_RAW: [u8; 20] = [
    0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];
/// `cap_setuid+ep`: what an attacker adds with `setcap cap_setuid+ep`.
const CAP_SETUID: [u8; 20] = [
    0x01, 0x00, 0x00, 0x02, 0x80, 0x00, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

/// A POSIX ACL (`system.posix_acl_*`, version 2): owner `owner`, user
/// 1000 `named`, group r, mask r, other none.
fn acl(owner: u16, named: u16) -> Vec<u8> {
    let mut out = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in [
        (0x01u16, owner, u32::MAX),
        (0x02, named, 1000),
        (0x04, 4, u32::MAX),
        (0x10, 4, u32::MAX),
        (0x20, 0, u32::MAX),
    ] {
        out.extend(tag.to_le_bytes());
        out.extend(perm.to_le_bytes());
        out.extend(id.to_le_bytes());
    }
    out
}

fn set(path: &Path, name: &str, value: &[u8]) {
    xattr::set(path, name, value).unwrap_or_else(|e| panic!("{}: {name}: {e}", path.display()));
}

/// Every attribute fw carries at `path` (not `security.selinux`).
fn attributes(path: &Path) -> BTreeMap<String, Vec<u8>> {
    xattr::list(path)
        .unwrap()
        .filter(|n| n != "security.selinux")
        .map(|n| {
            let value = xattr::get(path, &n).unwrap().unwrap_or_default();
            (n.to_string_lossy().into_owned(), value)
        })
        .collect()
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn inode(path: &Path) -> (u64, u64) {
    let m = std::fs::symlink_metadata(path).unwrap();
    (m.dev(), m.ino())
}

fn verify(keys: &Keys, target: &Path, version: &Path, extra: &[&str]) -> Output {
    run(
        fw("fw-verify")
            .arg("--keyring")
            .arg(&keys.keyring)
            .arg("--target")
            .arg(target)
            .args(extra)
            .arg(version),
        b"",
    )
}

fn manifest(version: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(version.join(".fw/manifest.json")).unwrap()).unwrap()
}

fn listed<'a>(manifest: &'a Value, path: &str) -> &'a Value {
    manifest["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == path)
        .unwrap_or_else(|| panic!("{path} is not listed"))
}

struct World {
    tmp: TempDir,
    keys: Keys,
    target: PathBuf,
}

impl World {
    fn new() -> World {
        let tmp = TempDir::new().unwrap();
        let keys = Keys::new(&tmp.path().join("keys"));
        let target = tmp.path().join("target");
        std::fs::create_dir(&target).unwrap();
        World { tmp, keys, target }
    }

    /// The sample tree under `dir/app`.
    fn tree(&self, dir: &str) -> PathBuf {
        sample_tree(&self.tmp.path().join(dir), "app")
    }

    fn install(&self, tree: &Path, version: &str) -> PathBuf {
        install_version(&self.keys, &self.target, tree, &["--version", version])
    }
}

#[test]
fn capabilities_acls_and_user_attributes_are_signed_restored_and_verified() {
    if !is_root() {
        eprintln!("skipped: setting security.capability and ACLs needs root");
        return;
    }
    let w = World::new();
    let tree = w.tree("v1");
    // bin/app has a hard link, bin/app-hardlink: one inode, one set.
    set(&tree.join("bin/app"), "security.capability", &CAP_NET_RAW);
    set(
        &tree.join("etc/app/config"),
        "system.posix_acl_access",
        &acl(6, 4),
    );
    set(&tree.join("etc/app"), "user.fw.origin", b"build 7");
    // A default ACL on a directory, set after what is inside it: the
    // install must not let it apply to the files it unpacks there.
    std::fs::write(tree.join("var/plain"), b"no acl\n").unwrap();
    set(&tree.join("var"), "system.posix_acl_default", &acl(7, 5));
    set(&tree.join("var/empty"), "user.note", b"\x00\xffbinary");
    let paths = [
        "bin/app",
        "bin/app-hardlink",
        "etc/app/config",
        "etc/app",
        "var",
        "var/empty",
        "var/plain",
        "bin/env",
    ];

    let installed = w.install(&tree, "1");
    let m = manifest(&installed);
    assert_eq!(m["format"], 3, "a tree with attributes is format 3");
    for path in ["bin/app", "bin/app-hardlink"] {
        assert_eq!(
            listed(&m, path)["xattrs"]["security.capability"],
            "0100000200200000000000000000000000000000"
        );
    }
    assert!(listed(&m, "var/plain").get("xattrs").is_none());
    for path in paths {
        let (source, got) = (
            attributes(&tree.join(path)),
            attributes(&installed.join(path)),
        );
        assert!(
            !source.is_empty() || ["var/plain", "bin/env"].contains(&path),
            "test bug: {path} has no attributes"
        );
        assert_eq!(got, source, "{path}: the installed attributes");
    }
    // The ACL's mask is the group bits, as on the build host.
    let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o7777;
    assert_eq!(mode(&installed.join("etc/app/config")), 0o640);
    assert_eq!(
        mode(&installed.join("var/plain")),
        mode(&tree.join("var/plain"))
    );
    ok(verify(&w.keys, &w.target, &installed, &["--full"]));

    // What an attacker (or an accident) does to the installed version,
    // each found by fw-verify, which says what and where.
    type Change = fn(&Path);
    let changes: [(&str, &str, &str, Change); 4] = [
        (
            "setcap cap_setuid+ep",
            "etc/app/config",
            "security.capability",
            |v| {
                set(
                    &v.join("etc/app/config"),
                    "security.capability",
                    &CAP_SETUID,
                )
            },
        ),
        (
            "a capability changed",
            "bin/app",
            "security.capability",
            |v| set(&v.join("bin/app"), "security.capability", &CAP_SETUID),
        ),
        (
            "a user attribute removed",
            "etc/app",
            "user.fw.origin is missing",
            |v| xattr::remove(v.join("etc/app"), "user.fw.origin").unwrap(),
        ),
        (
            "an ACL widened",
            "etc/app/config",
            "system.posix_acl_access",
            |v| {
                set(
                    &v.join("etc/app/config"),
                    "system.posix_acl_access",
                    &acl(6, 6),
                )
            },
        ),
    ];
    for (case, path, says, change) in changes {
        let before: Vec<_> = paths
            .iter()
            .map(|p| attributes(&installed.join(p)))
            .collect();
        change(&installed);
        let out = verify(&w.keys, &w.target, &installed, &[]);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        fails_with(out, 5);
        assert!(
            stderr.contains(&format!("{path}: extended attribute")) && stderr.contains(says),
            "{case}: {stderr}"
        );
        // Put back as it was: verified again.
        for (p, attrs) in paths.iter().zip(before) {
            let at = installed.join(p);
            for name in attributes(&at).keys() {
                xattr::remove(&at, name).unwrap();
            }
            for (name, value) in attrs {
                set(&at, &name, &value);
            }
        }
        ok(verify(&w.keys, &w.target, &installed, &[]));
    }
}

#[test]
fn files_are_shared_between_versions_only_when_their_attributes_are_equal() {
    let w = World::new();
    let v1 = w.tree("v1");
    set(&v1.join("etc/app/config"), "user.fw.level", b"1");
    let installed1 = w.install(&v1, "1");
    // v2: the same content; the attributes moved from one file to another.
    let v2 = w.tree("v2");
    set(&v2.join("bin/app"), "user.fw.level", b"1");
    let installed2 = w.install(&v2, "2");
    for path in ["bin/app", "etc/app/config"] {
        assert_ne!(
            inode(&installed1.join(path)),
            inode(&installed2.join(path)),
            "{path}: attributes differ, not shared"
        );
    }
    let same = "etc/grüße-✓.txt";
    assert_eq!(
        inode(&installed1.join(same)),
        inode(&installed2.join(same)),
        "equal files are still shared"
    );
    assert!(attributes(&installed1.join("bin/app")).is_empty());
    assert_eq!(
        attributes(&installed2.join("bin/app"))["user.fw.level"],
        b"1"
    );
    assert!(attributes(&installed2.join("etc/app/config")).is_empty());
    for version in [&installed1, &installed2] {
        ok(verify(&w.keys, &w.target, version, &[]));
    }

    // An attribute added on the device to a shared inode (both versions
    // see it) is not carried into the next version: it gets a fresh copy.
    set(&installed2.join(same), "user.fw.added", b"on the device");
    let installed3 = w.install(&v2, "3");
    assert_ne!(inode(&installed3.join(same)), inode(&installed2.join(same)));
    assert!(attributes(&installed3.join(same)).is_empty());
    ok(verify(&w.keys, &w.target, &installed3, &[]));
    let out = verify(&w.keys, &w.target, &installed2, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    fails_with(out, 5);
    assert!(stderr.contains("user.fw.added"), "{stderr}");
}

#[test]
fn a_symlink_with_attributes_is_refused_at_pack_time() {
    if !is_root() {
        eprintln!("skipped: only root sets attributes on a symlink (trusted.*)");
        return;
    }
    let w = World::new();
    let tree = w.tree("v1");
    let link = tree.join("etc/app-link");
    // xattr::set does not follow the link.
    set(&link, "trusted.fw", b"x");
    assert_eq!(attributes(&tree.join("bin/app")).len(), 0, "not through it");
    let out = run(
        fw("fw-sign")
            .args(["pack", "--key"])
            .arg(&w.keys.vendor_key)
            .arg(&tree),
        b"",
    );
    assert!(out.stdout.is_empty(), "no package on stdout");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    fails_with(out, 5);
    assert!(
        stderr.contains("etc/app-link") && stderr.contains("trusted.fw"),
        "{stderr}"
    );
}

#[test]
fn gnu_tar_reads_the_attributes_of_a_package() {
    // The peer tools see them too: `tar --xattrs` lists the records.
    let w = World::new();
    let tree = w.tree("v1");
    set(&tree.join("bin/app"), "user.fw.level", b"7");
    let (_, unsealed) = pack_and_unseal(&w.keys, &tree);
    let tar_gz = w.tmp.path().join("app.tar.gz");
    std::fs::write(&tar_gz, without_proof(&unsealed)).unwrap();
    let peer = w.tmp.path().join("by-tar");
    std::fs::create_dir(&peer).unwrap();
    let out = Command::new("tar")
        .args(["--xattrs", "--xattrs-include=user.*", "-xzf"])
        .arg(&tar_gz)
        .arg("-C")
        .arg(&peer)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(attributes(&peer.join("app/bin/app"))["user.fw.level"], b"7");
}
