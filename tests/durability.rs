//! Durability from the syscalls: what a command reports done must survive
//! a power cut, so every directory whose entries it changed is fsynced
//! after the change (or the file system synced). The QEMU power cuts of
//! tests/powercut find such faults by cutting power in a real kernel,
//! slowly; these tests trace the command with strace and find them in
//! milliseconds. Each keeps a fault the power cuts found.

use std::ffi::OsString;
use std::path::Path;
use std::process::Command;

use fw_e2e::*;
use fw_powercut::marker::{self, Call};

/// Runs `cmd` under strace; returns its calls that changed something
/// below `under`, after asserting that it succeeded.
fn traced(cmd: &Command, under: &Path) -> Vec<Call> {
    let tmp = TempDir::new().unwrap();
    let log = tmp.path().join("trace");
    let mut strace = Command::new("strace");
    strace
        .args([
            "-f",
            "-qq",
            "-z",
            "-Y",
            "-y",
            "-s",
            "0",
            "-e",
            "signal=none",
        ])
        .arg(format!("-etrace={}", marker::TRACED))
        .arg("-o")
        .arg(&log)
        .arg("--")
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(value) => strace.env(key, value),
            None => strace.env_remove(key),
        };
    }
    ok(run(&mut strace, b""));
    let under = under.to_string_lossy().into_owned();
    std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .filter_map(marker::parse)
        .filter(|c| c.paths.iter().any(|p| p.starts_with(&under)))
        .collect()
}

fn path_arg(path: &Path) -> OsString {
    path.as_os_str().to_owned()
}

/// Found by the power cuts (`link-tree@done`): links reported made were
/// gone after a cut, as nothing was fsynced.
#[test]
fn link_tree_makes_its_links_and_directories_durable() {
    let tmp = TempDir::new().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("app/conf.d")).unwrap();
    std::fs::write(src.join("app/a.conf"), b"a").unwrap();
    std::fs::write(src.join("app/conf.d/b.conf"), b"b").unwrap();
    std::fs::write(src.join("hosts"), b"h").unwrap();
    let dest = tmp.path().join("etc");
    std::fs::create_dir(&dest).unwrap();
    std::fs::write(dest.join("hostname"), b"mine").unwrap();

    let mut cmd = fw("fw-switch");
    cmd.arg("link-tree")
        .arg(path_arg(&src))
        .arg(path_arg(&dest));
    let calls = traced(&cmd, &dest);
    assert!(
        calls.iter().any(|c| c.syscall.starts_with("rename")),
        "link-tree linked nothing: {calls:?}"
    );
    let unsynced = marker::unsynced_dirs(&calls);
    assert!(
        unsynced.is_empty(),
        "link-tree changed these directories and did not fsync them: {unsynced:?}"
    );
    assert_eq!(std::fs::read(dest.join("app/conf.d/b.conf")).unwrap(), b"b");
}

/// A whole upgrade by fw-install: whatever it changed in the target is
/// durable when it says it installed.
#[test]
fn an_upgrade_is_durable_when_fw_install_returns() {
    let tmp = TempDir::new().unwrap();
    let keys = Keys::new(&tmp.path().join("keys"));
    let target = tmp.path().join("target");
    std::fs::create_dir(&target).unwrap();
    let mut packages = Vec::new();
    for label in ["v1", "v2"] {
        let tree = sample_tree(&tmp.path().join(label), "fw");
        std::fs::write(tree.join("etc/app/config"), format!("{label}\n")).unwrap();
        let package = tmp.path().join(format!("{label}.fw"));
        let mut pack = fw("fw-sign");
        pack.args(["-q", "pack", "--version", label, "--key"])
            .arg(&keys.vendor_key)
            .arg(&tree);
        std::fs::write(&package, ok(run(&mut pack, b""))).unwrap();
        packages.push(package);
    }
    let install = |package: &Path| {
        let mut cmd =
            Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/fw-install"));
        cmd.env("FW_BIN", bin("fw-unseal").parent().unwrap())
            .env_remove("FW_LOCK_FD")
            .args(["-q", "--target"])
            .arg(path_arg(&target))
            .arg("--keyring")
            .arg(path_arg(&keys.keyring))
            .arg(path_arg(package));
        cmd
    };
    ok(run(&mut install(&packages[0]), b""));
    ok(run(
        fw("fw-switch").arg("--target").arg(&target).arg("commit"),
        b"",
    ));
    // The removal of debris need not be durable: fw-install's temporary
    // file and fw-unpack's emptied work directory may come back after a
    // cut, and recover removes them.
    let debris = [".fw/install.", ".fw/staging/"];
    let calls = traced(&install(&packages[1]), &target);
    let unsynced: Vec<(String, Call)> = marker::unsynced(&calls)
        .into_iter()
        .filter(|(_, last)| {
            let removal = last.syscall.starts_with("unlink") || last.syscall == "rmdir";
            !(removal && debris.iter().any(|d| last.paths[0].contains(d)))
        })
        .collect();
    assert!(
        unsynced.is_empty(),
        "fw-install changed these directories and did not fsync them: {unsynced:?}"
    );
}

/// `fw-switch clean` and `commit`: the versions removed stay removed, the
/// floor raised stays raised, once they return.
#[test]
fn clean_and_commit_are_durable_when_they_return() {
    let tmp = TempDir::new().unwrap();
    let keys = Keys::new(&tmp.path().join("keys"));
    let target = tmp.path().join("target");
    std::fs::create_dir(&target).unwrap();
    for (i, label) in ["v1", "v2", "v3"].iter().enumerate() {
        let tree = sample_tree(&tmp.path().join(label), "fw");
        std::fs::write(tree.join("etc/app/config"), format!("{label}\n")).unwrap();
        let version = install_version(
            &keys,
            &target,
            &tree,
            &[
                "--version",
                label,
                "--security-version",
                &(i + 1).to_string(),
            ],
        );
        ok(run(
            fw("fw-switch")
                .arg("--target")
                .arg(&target)
                .arg("to")
                .arg(&version),
            b"",
        ));
    }
    for args in [&["commit"][..], &["clean", "--keep", "1"][..]] {
        let mut cmd = fw("fw-switch");
        cmd.arg("--target").arg(path_arg(&target)).args(args);
        let calls = traced(&cmd, &target);
        if args[0] == "clean" {
            // Found by the power cuts (`clean@fw-switch:unlinkat:T/V/*`):
            // a version removed file by file was left half there by a cut.
            // It must leave the target by one rename, before any removal.
            let oldest = target.join("fw").to_string_lossy().into_owned();
            let first = calls
                .iter()
                .find(|c| c.paths.iter().any(|p| p.starts_with(&oldest)))
                .expect("clean touched the oldest version");
            assert!(
                first.syscall.starts_with("rename") && first.paths[0] == oldest,
                "clean removed the oldest version in place, first by {first:?}"
            );
        }
        assert!(!calls.is_empty(), "fw-switch {args:?} changed nothing");
        let unsynced = marker::unsynced_dirs(&calls);
        assert!(
            unsynced.is_empty(),
            "fw-switch {args:?} changed these directories and did not fsync them: {unsynced:?}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(target.join(".fw/security-floor")).unwrap(),
        "3\n"
    );
    assert!(!target.join("fw").exists(), "clean removed the oldest");
}
