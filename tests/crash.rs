//! Power cuts, kills, failing syscalls and full disks during an upgrade of
//! v1 to v2, and probation.
//!
//! Crashes are placed by counting syscalls: a stage runs under
//! `strace -e inject=…:signal=KILL:when=N`, and when it dies that way its
//! wrapper kills the whole install at once (`kill -KILL 0` on the install's
//! process group), as a power cut would. N runs from 1 until the stage
//! completes, for every stage and every journal write. Then `fw-switch
//! recover` runs (as at boot) and the target must be consistent: `current`
//! on v1 or v2, which verifies; no staging or work directory left; nothing
//! in flight in the journal; hook side effects that match the final state.
//! Faults (ENOSPC, EIO, EMLINK) are injected the same way, without the
//! kill: the install must fail with a clear error and leave the same
//! consistency.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use fw_e2e::*;

/// Syscalls that change state, counted for crash points.
const STATEFUL: &str = "write,openat,mkdir,mkdirat,symlink,symlinkat,link,linkat,rename,renameat,renameat2,unlink,unlinkat,fsync,fdatasync,syncfs,fchmod,fchown,utimensat";

struct Lab {
    tmp: TempDir,
    keys: Keys,
    v1: PathBuf,
    v2: PathBuf,
    /// A target with v1 installed and committed, copied for each scenario.
    base: PathBuf,
}

fn hook(label: &str) -> String {
    format!(
        "#!/bin/sh\necho \"$FW_HOOK {label} $FW_DIRECTION\" >> \"$FW_TEST_LOG\"\n\
         [ -e \"$FW_TEST_LOG.fail-$FW_HOOK-{label}\" ] && exit 1\nexit 0\n"
    )
}

fn version_tree(root: &Path, label: &str) -> PathBuf {
    let dir = root.join(label).join("fw");
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::create_dir_all(dir.join("lib/deep/er")).unwrap();
    std::fs::write(dir.join("bin/app"), format!("#!/bin/sh\necho {label}\n")).unwrap();
    std::fs::set_permissions(dir.join("bin/app"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let shared: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(dir.join("lib/shared.bin"), &shared).unwrap();
    for i in 0..6 {
        std::fs::write(
            dir.join(format!("lib/deep/er/f{i}")),
            format!("{label} file {i}\n"),
        )
        .unwrap();
    }
    std::os::unix::fs::symlink("bin/app", dir.join("app")).unwrap();
    for name in ["pre-install", "post-install", "health-check"] {
        let path = dir.join(format!(".{name}"));
        std::fs::write(&path, hook(label)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    dir
}

fn lab() -> Lab {
    let tmp = TempDir::new().unwrap();
    let keys = Keys::new(&tmp.path().join("keys"));
    let mut packages = Vec::new();
    for label in ["v1", "v2"] {
        let tree = version_tree(&tmp.path().join("src"), label);
        let out = tmp.path().join(format!("{label}.fw"));
        let mut cmd = fw("fw-sign");
        cmd.args(["-q", "pack", "--version", label, "--key"])
            .arg(&keys.vendor_key)
            .arg(&tree)
            .stdout(std::fs::File::create(&out).unwrap());
        assert!(cmd.status().unwrap().success());
        packages.push(out);
    }
    let base = tmp.path().join("base");
    std::fs::create_dir(&base).unwrap();
    let lab = Lab {
        v1: packages[0].clone(),
        v2: packages[1].clone(),
        base,
        keys,
        tmp,
    };
    let out = lab.install(
        &lab.base,
        &lab.v1,
        &bin_dir(),
        &lab.tmp.path().join("base.log"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ok(run(
        fw("fw-switch").arg("--target").arg(&lab.base).arg("commit"),
        b"",
    ));
    lab
}

/// After a power cut the machine restarts with nothing running: wait until
/// every process of the killed install is dead (zombies count as dead),
/// so that recover does not race their last moments.
fn wait_until_group_is_gone(group: i32) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let alive = std::fs::read_dir("/proc").unwrap().flatten().any(|entry| {
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            let mut fields = stat.rsplit(')').next().unwrap_or("").split_whitespace();
            let state = fields.next();
            let pgrp = fields.nth(1).and_then(|f| f.parse::<i32>().ok());
            pgrp == Some(group) && !matches!(state, Some("Z" | "X"))
        });
        if !alive {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the killed install's processes never died"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Adds a line to target/tmp/crash-report.txt, which scripts/test prints
/// after the run (cargo test keeps a passing test's output to itself).
fn report(line: &str) {
    use std::io::Write;
    println!("{line}");
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("crash-report.txt");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    writeln!(file, "{line}").unwrap();
}

fn bin_dir() -> PathBuf {
    bin("fw-unseal").parent().unwrap().to_path_buf()
}

impl Lab {
    fn install(&self, target: &Path, package: &Path, bins: &Path, log: &Path) -> Output {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/fw-install");
        let mut cmd = Command::new(script);
        cmd.env("FW_BIN", bins)
            .env("FW_TEST_LOG", log)
            .env_remove("FW_LOCK_FD")
            .arg("-q")
            .arg("--target")
            .arg(target)
            .arg("--keyring")
            .arg(&self.keys.keyring)
            .args(["--hook-retry-interval", "0.01"])
            .arg(package)
            // Its own process group: a power cut takes all of it, not us.
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = cmd.spawn().unwrap();
        let group = child.id() as i32;
        let out = child.wait_with_output().unwrap();
        wait_until_group_is_gone(group);
        out
    }

    /// A fresh copy of the base target (v1 installed and committed).
    fn scenario(&self, name: &str) -> (PathBuf, PathBuf) {
        let dir = self.tmp.path().join("scenarios").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let target = dir.join("target");
        let status = Command::new("cp")
            .arg("-a")
            .arg(&self.base)
            .arg(&target)
            .status()
            .unwrap();
        assert!(status.success());
        (target, dir.join("hooks.log"))
    }

    /// A bin directory whose `tool` runs under strace with `inject` for the
    /// invocations whose arguments contain `matching`; `crash` kills the
    /// whole install when strace's injected SIGKILL hits.
    fn wrapped(
        &self,
        name: &str,
        tool: &str,
        matching: &str,
        inject: &str,
        crash: bool,
    ) -> PathBuf {
        let dir = self.tmp.path().join("bins").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for entry in std::fs::read_dir(bin_dir()).unwrap().flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            if file.starts_with("fw-")
                && !file.contains('.')
                && entry.path().is_file()
                && file != tool
            {
                std::os::unix::fs::symlink(entry.path(), dir.join(&file)).unwrap();
            }
        }
        let real = bin(tool);
        let on_kill = if crash {
            "if [ $code -eq 137 ]; then echo crashed > \"$FW_TEST_LOG.crashed\"; kill -KILL 0; fi"
        } else {
            ""
        };
        let script = format!(
            "#!/bin/sh\ncase \" $* \" in\n  *\"{matching}\"*) ;;\n  *) exec {real} \"$@\" ;;\nesac\n\
             strace -o /dev/null -qq -e trace={STATEFUL} -e inject={inject} {real} \"$@\"\n\
             code=$?\n{on_kill}\nexit $code\n",
            real = real.display()
        );
        let wrapper = dir.join(tool);
        std::fs::write(&wrapper, script).unwrap();
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        dir
    }
}

fn link(target: &Path, name: &str) -> Option<String> {
    std::fs::read_link(target.join(name))
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

/// The consistency every scenario must end in; returns `current`'s name.
#[track_caller]
fn assert_consistent(lab: &Lab, target: &Path, log: &Path, what: &str) -> String {
    let current = link(target, "current").unwrap_or_else(|| panic!("{what}: no current"));
    assert!(
        current == "fw" || current == "fw-1",
        "{what}: current -> {current}"
    );
    let verify = run(
        fw("fw-verify")
            .arg("--keyring")
            .arg(&lab.keys.keyring)
            .arg("--target")
            .arg(target)
            .arg(target.join("current")),
        b"",
    );
    assert!(
        verify.status.success(),
        "{what}: current does not verify: {}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let staging: Vec<_> = std::fs::read_dir(target.join(".fw/staging"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(staging.is_empty(), "{what}: staging left: {staging:?}");
    let mut entries: Vec<String> = std::fs::read_dir(target)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    entries.sort();
    for entry in &entries {
        let known =
            ["fw", "fw-1", "current", "previous", "failsafe", ".fw"].contains(&entry.as_str());
        assert!(
            known,
            "{what}: unexpected {entry} in the target: {entries:?}"
        );
    }
    // No leftovers of interrupted writers in fw's state (fw-install's
    // install.XXXXXX, temporary files of atomic writes).
    let mut state: Vec<String> = std::fs::read_dir(target.join(".fw"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    state.sort();
    for entry in &state {
        let known = [
            "lock",
            "staging",
            "journal",
            "security-floor",
            "failed",
            "inodes",
        ]
        .contains(&entry.as_str());
        assert!(known, "{what}: unexpected {entry} in .fw: {state:?}");
    }
    // Nothing in flight: no journal, or a completed install on probation.
    if let Ok(text) = std::fs::read_to_string(target.join(".fw/journal")) {
        let journal: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            journal["phase"], "pending",
            "{what}: journal in flight: {text}"
        );
        assert_eq!(
            journal["to"].as_str(),
            Some(current.as_str()),
            "{what}: {text}"
        );
    }
    // Hooks: if v2's post-install ran and we are back on v1, v1 was
    // re-enabled after it (its post-install ran with direction rollback).
    let log_text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = log_text.lines().collect();
    if let Some(v2_post) = lines.iter().rposition(|l| l.starts_with("post-install v2")) {
        if current == "fw" {
            assert!(
                lines[v2_post..].contains(&"post-install v1 rollback"),
                "{what}: back on v1 after v2's post-install, but v1's hooks did not run: {lines:?}"
            );
        }
    }
    if current == "fw-1" {
        assert!(
            lines.contains(&"post-install v2 upgrade"),
            "{what}: on v2 without its post-install: {lines:?}"
        );
    }
    current
}

/// `fw-switch recover`, as at boot; rollback hooks log to `log`.
fn recover(target: &Path, log: &Path) -> Output {
    run(
        fw("fw-switch")
            .env("FW_TEST_LOG", log)
            .arg("--target")
            .arg(target)
            .args(["recover", "--hook-retry-interval", "0.01"]),
        b"",
    )
}

/// (tool, which invocations) pairs whose every stateful syscall is a crash point.
const CRASH_SITES: &[(&str, &str)] = &[
    ("fw-switch", "journal begin"),
    ("fw-unseal", "--keyring"),
    ("fw-unpack", "--target"),
    ("fw-verify", "--keyring"),
    ("fw-fixate", "--target"),
    ("fw-switch", "journal set pre-install"),
    ("fw-hook", "pre-install"),
    ("fw-switch", "journal set switching"),
    ("fw-switch", " to "),
    ("fw-switch", "journal set post-install"),
    ("fw-hook", "post-install"),
    ("fw-hook", "health-check"),
    ("fw-switch", "journal set pending"),
];

#[test]
fn a_power_cut_at_any_syscall_of_an_upgrade_is_recovered() {
    let lab = lab();
    let mut points = 0;
    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    for (site, (tool, matching)) in CRASH_SITES.iter().enumerate() {
        for n in 1.. {
            let name = format!("crash-{site}-{n}");
            let bins = lab.wrapped(
                &name,
                tool,
                matching,
                &format!("{STATEFUL}:signal=KILL:when={n}"),
                true,
            );
            let (target, log) = lab.scenario(&name);
            let out = lab.install(&target, &lab.v2, &bins, &log);
            let crashed = Path::new(&format!("{}.crashed", log.display())).exists();
            if !crashed {
                // The stage made fewer than n such calls: the site is done.
                assert!(
                    out.status.success(),
                    "{name}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                assert_consistent(&lab, &target, &log, &name);
                break;
            }
            points += 1;
            let rec = recover(&target, &log);
            let code = rec.status.code().unwrap_or(-1);
            assert!(
                [0, 7, 8].contains(&code),
                "{name}: recover exit {code}: {}",
                String::from_utf8_lossy(&rec.stderr)
            );
            let current = assert_consistent(
                &lab,
                &target,
                &log,
                &format!("{name} ({tool} {matching:?} at call {n})"),
            );
            // Recover again: nothing more to do, same state.
            let again = recover(&target, &log);
            assert_eq!(again.status.code(), Some(0), "{name}: second recover");
            assert_eq!(
                link(&target, "current").as_deref(),
                Some(current.as_str()),
                "{name}: idempotent"
            );
            *outcomes
                .entry(format!("{tool} {matching} -> {current}"))
                .or_default() += 1;
            std::fs::remove_dir_all(target.parent().unwrap()).unwrap();
            assert!(n < 2000, "{name}: too many calls");
        }
    }
    report(&format!(
        "crash points exercised during an upgrade: {points}"
    ));
    for (what, count) in &outcomes {
        report(&format!("  {count:4}  {what}"));
    }
    assert!(points > 50, "only {points} crash points");
}

#[test]
fn a_crash_during_a_rollback_is_finished_by_recover() {
    let lab = lab();
    let mut points = 0;
    for n in 1.. {
        let name = format!("rollback-crash-{n}");
        let bins = lab.wrapped(
            &name,
            "fw-switch",
            "recover",
            &format!("{STATEFUL}:signal=KILL:when={n}"),
            true,
        );
        let (target, log) = lab.scenario(&name);
        std::fs::write(format!("{}.fail-post-install-v2", log.display()), "").unwrap();
        let out = lab.install(&target, &lab.v2, &bins, &log);
        let crashed = Path::new(&format!("{}.crashed", log.display())).exists();
        if !crashed {
            assert_eq!(
                out.status.code(),
                Some(7),
                "{name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(assert_consistent(&lab, &target, &log, &name), "fw");
            break;
        }
        points += 1;
        let rec = recover(&target, &log);
        assert!(
            [0, 7, 8].contains(&rec.status.code().unwrap_or(-1)),
            "{name}: {}",
            String::from_utf8_lossy(&rec.stderr)
        );
        // v2 failed its post-install: wherever the crash fell, v1 wins.
        assert_eq!(
            assert_consistent(&lab, &target, &log, &name),
            "fw",
            "{name}"
        );
        assert!(n < 2000);
    }
    report(&format!(
        "crash points exercised during a rollback: {points}"
    ));
    assert!(points > 5, "only {points}");
}

/// (tool, which invocations, syscall, errno, message fragment)
const FAULTS: &[(&str, &str, &str, &str, &str)] = &[
    ("fw-unpack", "--target", "write", "ENOSPC", "disk is full"),
    ("fw-unpack", "--target", "openat", "EIO", "error"),
    ("fw-unpack", "--target", "linkat", "EMLINK", "link"),
    ("fw-unpack", "--target", "symlinkat", "EIO", "error"),
    ("fw-unseal", "--keyring", "write", "ENOSPC", "error"),
    ("fw-verify", "--keyring", "renameat", "EIO", "error"),
    ("fw-fixate", "--target", "renameat2", "EIO", "error"),
    ("fw-fixate", "--target", "syncfs", "EIO", "error"),
    ("fw-fixate", "--target", "fsync", "EIO", "error"),
    ("fw-fixate", "--target", "write", "ENOSPC", "disk is full"),
    ("fw-switch", " to ", "symlinkat", "EIO", "error"),
    ("fw-switch", " to ", "rename", "EIO", "error"),
    ("fw-switch", " to ", "fsync", "EIO", "error"),
    ("fw-switch", "journal", "fsync", "EIO", "journal"),
    ("fw-switch", "journal", "write", "ENOSPC", "journal"),
];

#[test]
fn failing_syscalls_fail_cleanly_and_leave_the_target_consistent() {
    let lab = lab();
    let mut scenarios = 0;
    for (site, (tool, matching, syscall, errno, says)) in FAULTS.iter().enumerate() {
        for n in 1.. {
            let name = format!("fault-{site}-{n}");
            let inject = format!("{syscall}:error={errno}:when={n}");
            let bins = lab.wrapped(&name, tool, matching, &inject, false);
            let (target, log) = lab.scenario(&name);
            let out = lab.install(&target, &lab.v2, &bins, &log);
            let stderr = String::from_utf8_lossy(&out.stderr).to_string();
            let current = assert_consistent(
                &lab,
                &target,
                &log,
                &format!("{name} ({tool} {syscall} {errno} at {n})"),
            );
            std::fs::remove_dir_all(target.parent().unwrap()).unwrap();
            if out.status.success() {
                // The call was not made n times (or not on a path that matters).
                assert_eq!(current, "fw-1", "{name}");
                break;
            }
            scenarios += 1;
            assert_eq!(current, "fw", "{name}: failed, so still on v1: {stderr}");
            assert!(stderr.contains("error:"), "{name}: {stderr}");
            assert!(
                stderr.to_lowercase().contains(says),
                "{name}: {tool} {syscall}={errno}: expected {says:?} in {stderr}"
            );
            // Frequent calls: spread the points; rare ones: every one.
            if n >= 12 {
                break;
            }
        }
    }
    report(&format!("syscall fault scenarios exercised: {scenarios}"));
    assert!(scenarios >= FAULTS.len(), "only {scenarios}");
}

#[test]
fn probation_rolls_back_after_boots_without_a_commit() {
    let lab = lab();
    let (target, log) = lab.scenario("probation");
    let out = lab.install(&target, &lab.v2, &bin_dir(), &log);
    assert!(out.status.success());
    assert_eq!(link(&target, "current").as_deref(), Some("fw-1"));
    let status = String::from_utf8(ok(run(
        fw("fw-switch").arg("--target").arg(&target).arg("status"),
        b"",
    )))
    .unwrap();
    assert!(status.contains("current   fw-1 (pending)"), "{status}");
    assert!(status.contains("fw-switch commit"), "{status}");
    for boot in 1..=2 {
        assert_eq!(recover(&target, &log).status.code(), Some(0), "boot {boot}");
        assert_eq!(
            link(&target, "current").as_deref(),
            Some("fw-1"),
            "boot {boot}"
        );
    }
    let third = recover(&target, &log);
    assert_eq!(
        third.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&third.stderr)
    );
    assert_eq!(link(&target, "current").as_deref(), Some("fw"));
    assert!(std::fs::read_to_string(&log)
        .unwrap()
        .contains("post-install v1 rollback"));
    assert_consistent(&lab, &target, &log, "probation");
    assert!(!target.join(".fw/journal").exists());

    // Committed: never rolled back by recover.
    let (target, log) = lab.scenario("committed");
    assert!(lab
        .install(&target, &lab.v2, &bin_dir(), &log)
        .status
        .success());
    ok(run(
        fw("fw-switch").arg("--target").arg(&target).arg("commit"),
        b"",
    ));
    for _ in 0..4 {
        assert_eq!(recover(&target, &log).status.code(), Some(0));
    }
    assert_eq!(link(&target, "current").as_deref(), Some("fw-1"));
    assert!(!target.join(".fw/journal").exists());
    report(
        "probation scenarios exercised: 2 (3 boots without commit: rolled back; committed: kept)",
    );
}

/// A target on a small tmpfs: a package that does not fit fails cleanly.
#[test]
fn a_full_disk_fails_cleanly() {
    let probe = Command::new("id").arg("-u").output().unwrap();
    if String::from_utf8_lossy(&probe.stdout).trim() != "0" {
        report("disk-full scenario skipped: mounting a tmpfs needs root (CI runs as root)");
        return;
    }
    let lab = lab();
    let dir = lab.tmp.path().join("small");
    std::fs::create_dir(&dir).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
        .arg(&dir)
        .status()
        .unwrap();
    assert!(mounted.success(), "mount a tmpfs");
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(dir.clone());
    let target = dir.join("target");
    std::fs::create_dir(&target).unwrap();
    let log = lab.tmp.path().join("small.log");
    assert!(lab
        .install(&target, &lab.v1, &bin_dir(), &log)
        .status
        .success());

    // v3: 6 MB that gzip cannot shrink, on a 4 MB file system.
    let tree = version_tree(&lab.tmp.path().join("src3"), "v3");
    std::fs::write(tree.join("lib/big.bin"), noise(6 << 20, 1)).unwrap();
    let v3 = lab.tmp.path().join("v3.fw");
    let mut cmd = fw("fw-sign");
    cmd.args(["-q", "pack", "--key"])
        .arg(&lab.keys.vendor_key)
        .arg(&tree)
        .stdout(std::fs::File::create(&v3).unwrap());
    assert!(cmd.status().unwrap().success());

    // fw-install: refused up front by fw-unpack's default --max-bytes.
    let out = lab.install(&target, &v3, &bin_dir(), &log);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(stderr.contains("max-bytes"), "{stderr}");
    assert_eq!(link(&target, "current").as_deref(), Some("fw"));
    // Nothing in flight; v1, installed and not committed, stays on probation.
    let journal: serde_json::Value =
        serde_json::from_slice(&std::fs::read(target.join(".fw/journal")).unwrap()).unwrap();
    assert_eq!(
        (&journal["phase"], &journal["to"]),
        (&"pending".into(), &"fw".into())
    );

    // fw-unpack told to try anyway: a real ENOSPC, reported as such, and
    // nothing left behind.
    let tar_gz = ok(run(
        fw("fw-unseal")
            .arg("-q")
            .arg("--keyring")
            .arg(&lab.keys.keyring),
        &std::fs::read(&v3).unwrap(),
    ));
    let out = run(
        fw("fw-unpack")
            .arg("--keyring")
            .arg(&lab.keys.keyring)
            .arg("--target")
            .arg(&target)
            .args(["--max-bytes", "1000000000"]),
        &tar_gz,
    );
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("disk is full"), "{stderr}");
    assert!(out.stdout.is_empty());
    let staging: Vec<_> = std::fs::read_dir(target.join(".fw/staging"))
        .unwrap()
        .flatten()
        .collect();
    assert!(staging.is_empty(), "{staging:?}");
    let verify = run(
        fw("fw-verify")
            .arg("--keyring")
            .arg(&lab.keys.keyring)
            .arg("--target")
            .arg(&target)
            .arg(target.join("current")),
        b"",
    );
    assert!(verify.status.success());
    report(
        "disk-full scenarios exercised: 2 (refused by --max-bytes; a real ENOSPC on a 4 MiB tmpfs)",
    );
}
