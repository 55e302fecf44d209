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
