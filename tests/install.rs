//! scripts/fw-install end to end: upgrades with shared files, hooks and
//! their failures, rollback, failsafe, locking, anti-rollback, adoption of
//! a hand-made device, clean, and streaming over HTTP with curl.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use fw_e2e::*;

/// A device: keys, a target, a directory for hook logs and controls.
struct Device {
    tmp: TempDir,
    keys: Keys,
    target: PathBuf,
    ctl: PathBuf,
}

fn device() -> Device {
    let tmp = TempDir::new().unwrap();
    let keys = Keys::new(&tmp.path().join("keys"));
    let target = tmp.path().join("target");
    let ctl = tmp.path().join("ctl");
    std::fs::create_dir(&target).unwrap();
    std::fs::create_dir(&ctl).unwrap();
    Device {
        tmp,
        keys,
        target,
        ctl,
    }
}

/// Hooks that log every call and fail when a control file says so:
/// `ctl/fail-HOOK-LABEL` (exit 1), `ctl/retry-HOOK-LABEL` (exit 3 while
/// the file holds a positive count), `ctl/block-HOOK-LABEL` (wait for
/// `ctl/release`), `ctl/hang-HOOK-LABEL` (sleep with a child).
fn hook_script(label: &str) -> String {
    format!(
        r#"#!/bin/sh
hook=$FW_HOOK
echo "$hook {label} dir=$(basename "$1") direction=$FW_DIRECTION from=$(basename "$FW_FROM") to=$(basename "$FW_TO") attempt=$FW_ATTEMPT" >> "$FW_TEST_CTL/log"
if [ -e "$FW_TEST_CTL/block-$hook-{label}" ]; then
    echo started > "$FW_TEST_CTL/started"
    while [ ! -e "$FW_TEST_CTL/release" ]; do sleep 0.05; done
fi
if [ -e "$FW_TEST_CTL/hang-$hook-{label}" ]; then
    sleep 1000 & echo $! > "$FW_TEST_CTL/child.pid"
    echo $$ > "$FW_TEST_CTL/hook.pid"
    sleep 1000
fi
if [ -e "$FW_TEST_CTL/retry-$hook-{label}" ]; then
    n=$(cat "$FW_TEST_CTL/retry-$hook-{label}")
    if [ "$n" -gt 0 ]; then echo $((n - 1)) > "$FW_TEST_CTL/retry-$hook-{label}"; exit 3; fi
fi
[ -e "$FW_TEST_CTL/fail-$hook-{label}" ] && {{ echo "{label} $hook fails" >&2; exit 1; }}
exit 0
"#
    )
}

/// A firmware tree `name` labelled `label`: a large shared file, a config
/// whose content is the label (same size and mtime across labels), hooks.
fn tree(d: &Device, name: &str, label: &str) -> PathBuf {
    let root = d.tmp.path().join("src").join(label).join(name);
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(root.join("bin/big"), &big).unwrap();
    std::fs::write(root.join("bin/tool"), b"#!/bin/sh\necho tool\n").unwrap();
    std::fs::set_permissions(
        root.join("bin/tool"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    // Same size and mtime in every version, different content.
    std::fs::write(root.join("etc/label"), format!("{label:<8}")).unwrap();
    let stamp = nix::sys::time::TimeSpec::new(1_600_000_000, 0);
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        &root.join("etc/label"),
        &stamp,
        &stamp,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .unwrap();
    for hook in ["pre-install", "post-install", "health-check"] {
        let path = root.join(format!(".{hook}"));
        std::fs::write(&path, hook_script(label)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    root
}

impl Device {
    fn package(&self, name: &str, label: &str, security_version: u32) -> PathBuf {
        self.package_dated(name, label, security_version, None)
    }

    /// A package whose signatures and manifest are dated `epoch`
    /// (`SOURCE_DATE_EPOCH`), else now.
    fn package_dated(
        &self,
        name: &str,
        label: &str,
        security_version: u32,
        epoch: Option<u64>,
    ) -> PathBuf {
        let root = tree(self, name, label);
        let out = self.tmp.path().join(format!("{name}-{label}.fw"));
        let mut cmd = fw("fw-sign");
        cmd.args([
            "-q",
            "pack",
            "--version",
            label,
            "--security-version",
            &security_version.to_string(),
            "--key",
        ])
        .arg(&self.keys.vendor_key)
        .arg("--encrypt-for")
        .arg(&self.keys.device_cert)
        .arg(&root)
        .stdout(std::fs::File::create(&out).unwrap());
        if let Some(epoch) = epoch {
            cmd.env("SOURCE_DATE_EPOCH", epoch.to_string());
        }
        assert!(cmd.status().unwrap().success());
        out
    }

    fn install_cmd(&self, source: &str) -> Command {
        self.install_cmd_with(&[], source)
    }

    fn install_cmd_with(&self, options: &[&str], source: &str) -> Command {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/fw-install");
        let mut cmd = Command::new(script);
        cmd.env("FW_BIN", bin("fw-unseal").parent().unwrap())
            .env("FW_TEST_CTL", &self.ctl)
            .env_remove("FW_TARGET")
            .env_remove("FW_KEYRING")
            .arg("--target")
            .arg(&self.target)
            .arg("--keyring")
            .arg(&self.keys.keyring)
            .arg("--status")
            .arg(self.ctl.join("status"))
            .args(["--hook-retry-interval", "0.05"])
            .args(options)
            .arg(source);
        cmd
    }

    fn install(&self, package: &Path) -> Output {
        run(&mut self.install_cmd(package.to_str().unwrap()), b"")
    }

    fn link(&self, name: &str) -> Option<String> {
        std::fs::read_link(self.target.join(name))
            .ok()
            .map(|p| p.to_string_lossy().into_owned())
    }

    fn switch(&self, args: &[&str]) -> Output {
        run(
            fw("fw-switch")
                .env("FW_TEST_CTL", &self.ctl)
                .arg("--target")
                .arg(&self.target)
                .args(args),
            b"",
        )
    }

    fn status_json(&self) -> serde_json::Value {
        serde_json::from_slice(&ok(self.switch(&["status", "--json"]))).unwrap()
    }

    /// `fw-switch recover` as the boot service runs it.
    fn boot(&self) -> Output {
        self.switch(&["recover", "--hook-retry-interval", "0.05"])
    }

    fn log(&self) -> Vec<String> {
        std::fs::read_to_string(self.ctl.join("log"))
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }

    fn clear_log(&self) {
        let _ = std::fs::remove_file(self.ctl.join("log"));
    }

    fn control(&self, name: &str, content: &str) {
        std::fs::write(self.ctl.join(name), content).unwrap();
    }

    fn versions(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.target)
            .unwrap()
            .flatten()
            .filter(|e| e.file_type().unwrap().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        names
    }

    fn staging_is_empty(&self) -> bool {
        std::fs::read_dir(self.target.join(".fw/staging"))
            .map(|d| d.count() == 0)
            .unwrap_or(true)
    }

    fn status_states(&self) -> Vec<String> {
        std::fs::read_to_string(self.ctl.join("status"))
            .unwrap_or_default()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).expect("status lines are JSON")
                    ["status"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }
}

#[track_caller]
fn exits(output: Output, code: i32) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert_eq!(
        output.status.code(),
        Some(code),
        "expected exit {code}: {stderr}"
    );
    assert!(
        output.stdout.is_empty(),
        "nothing on stdout: {:?}",
        String::from_utf8_lossy(&output.stdout)
    );
    stderr
}

#[test]
fn upgrade_shares_unchanged_files_and_runs_hooks_in_order() {
    let d = device();
    let v1 = d.package("sample-setup", "v1", 1);
    let v2 = d.package("sample-setup", "v2", 1);
    exits(d.install(&v1), 0);
    assert_eq!(d.link("current").as_deref(), Some("sample-setup"));
    assert_eq!(d.link("previous"), None);
    assert_eq!(
        d.status_states(),
        ["verifying", "installing", "switching", "updated"]
    );
    exits(d.install(&v2), 0);
    assert_eq!(d.link("current").as_deref(), Some("sample-setup-1"));
    assert_eq!(d.link("previous").as_deref(), Some("sample-setup"));
    assert!(d.staging_is_empty());

    let old = d.target.join("sample-setup");
    let new = d.target.join("sample-setup-1");
    let ino = |p: &Path| std::fs::metadata(p).unwrap().ino();
    assert_eq!(
        ino(&old.join("bin/big")),
        ino(&new.join("bin/big")),
        "unchanged file shared"
    );
    assert_eq!(ino(&old.join("bin/tool")), ino(&new.join("bin/tool")));
    assert_ne!(
        ino(&old.join("etc/label")),
        ino(&new.join("etc/label")),
        "same size and mtime, other content: not shared"
    );
    assert_eq!(
        std::fs::read_to_string(new.join("etc/label"))
            .unwrap()
            .trim(),
        "v2"
    );
    assert_eq!(
        std::fs::read_to_string(old.join("etc/label"))
            .unwrap()
            .trim(),
        "v1"
    );

    let log = d.log();
    let expected = [
        "pre-install v1 dir=sample-setup direction=upgrade from= to=sample-setup attempt=1",
        "post-install v1 dir=sample-setup direction=upgrade from= to=sample-setup attempt=1",
        "health-check v1 dir=sample-setup direction=upgrade from= to=sample-setup attempt=1",
        "pre-install v2 dir=sample-setup-1 ",
        "post-install v2 dir=sample-setup-1 ",
        "health-check v2 dir=sample-setup-1 ",
    ];
    assert_eq!(log.len(), expected.len(), "{log:?}");
    for (got, want) in log.iter().zip(expected) {
        assert!(got.starts_with(want), "{got:?} should start with {want:?}");
    }
    assert!(
        log[3].contains("from=sample-setup to=sample-setup-1"),
        "{log:?}"
    );
    // Both versions verify as installed (fsck), and status shows the sharing.
    ok(run(
        fw("fw-verify")
            .arg("--keyring")
            .arg(&d.keys.keyring)
            .arg("--target")
            .arg(&d.target)
            .arg(d.target.join("current")),
        b"",
    ));
    let status: serde_json::Value = serde_json::from_slice(&ok(run(
        fw("fw-switch")
            .arg("--target")
            .arg(&d.target)
            .args(["status", "--json"]),
        b"",
    )))
    .unwrap();
    assert_eq!(status["current"], "sample-setup-1");
    let v2_status = status["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["dir"] == "sample-setup-1")
        .unwrap();
    assert!(
        v2_status["shared_bytes"].as_u64().unwrap() >= 1_000_000,
        "{v2_status}"
    );
}

#[test]
fn hook_directions_name_upgrade_downgrade_and_rollback() {
    let d = device();
    exits(d.install(&d.package("fw", "v1", 1)), 0);
    exits(d.install(&d.package("fw", "v2", 2)), 0);
    let log = d.log();
    assert!(
        log[3].contains("direction=upgrade from=fw to=fw-1"),
        "{log:?}"
    );
    // v3 fails after the switch: v2 comes back with direction rollback.
    d.clear_log();
    d.control("fail-post-install-v3", "");
    exits(d.install(&d.package("fw", "v3", 3)), 7);
    assert_eq!(d.link("current").as_deref(), Some("fw-1"));
    let log = d.log();
    assert!(
        log.iter()
            .any(|l| l.starts_with("pre-install v2 dir=fw-1 direction=rollback from=fw-2")),
        "{log:?}"
    );
    assert!(
        log.iter()
            .any(|l| l.starts_with("post-install v2 dir=fw-1 direction=rollback")),
        "{log:?}"
    );
    assert_eq!(
        d.status_states().last().map(String::as_str),
        Some("rolled_back")
    );
}

#[test]
fn pre_install_failure_removes_the_new_version_and_changes_nothing() {
    let d = device();
    exits(d.install(&d.package("fw", "v1", 1)), 0);
    d.control("fail-pre-install-v2", "");
    let before = d.versions();
    let stderr = exits(d.install(&d.package("fw", "v2", 1)), 1);
    assert!(stderr.contains("pre-install"), "{stderr}");
    assert_eq!(d.versions(), before);
    assert_eq!(d.link("current").as_deref(), Some("fw"));
    assert_eq!(d.link("previous"), None);
    assert!(d.staging_is_empty());
}

#[test]
fn health_check_failure_rolls_back() {
    let d = device();
    exits(d.install(&d.package("fw", "v1", 1)), 0);
    d.control("fail-health-check-v2", "");
    exits(d.install(&d.package("fw", "v2", 1)), 7);
    assert_eq!(d.link("current").as_deref(), Some("fw"));
}

#[test]
fn previous_failing_too_lands_on_the_failsafe() {
    let d = device();
    exits(d.install(&d.package("fw", "v0", 1)), 0);
    ok(run(
        fw("fw-switch")
            .arg("--target")
            .arg(&d.target)
            .args(["set-failsafe", "fw"]),
        b"",
    ));
    exits(d.install(&d.package("fw", "v1", 1)), 0);
    d.control("fail-post-install-v2", "");
    d.control("fail-post-install-v1", "");
    d.clear_log();
    exits(d.install(&d.package("fw", "v2", 1)), 8);
    assert_eq!(d.link("current").as_deref(), Some("fw"));
    assert_eq!(d.link("failsafe").as_deref(), Some("fw"));
    let log = d.log();
    assert!(
        log.iter()
            .any(|l| l.starts_with("post-install v0 dir=fw direction=rollback")),
        "{log:?}"
    );
    assert_eq!(
        d.status_states().last().map(String::as_str),
        Some("failsafe")
    );
}

#[test]
fn a_failing_first_install_is_undone() {
    let d = device();
    d.control("fail-post-install-v1", "");
    exits(d.install(&d.package("fw", "v1", 1)), 1);
    assert_eq!(d.link("current"), None);
    assert!(d.versions().is_empty());
}

#[test]
fn a_hook_may_ask_to_retry_later() {
    let d = device();
    d.control("retry-pre-install-v1", "2");
    exits(d.install(&d.package("fw", "v1", 1)), 0);
    let attempts: Vec<String> = d
        .log()
        .into_iter()
        .filter(|l| l.starts_with("pre-install"))
        .collect();
    assert_eq!(attempts.len(), 3, "{attempts:?}");
    assert!(attempts[2].ends_with("attempt=3"), "{attempts:?}");
}

#[test]
fn a_hook_past_its_timeout_is_killed_with_its_children() {
    let d = device();
    d.control("hang-pre-install-v1", "");
    let package = d.package("fw", "v1", 1);
    let mut cmd = d.install_cmd_with(&["--hook-timeout", "1"], package.to_str().unwrap());
    exits(run(&mut cmd, b""), 1);
    for pid_file in ["hook.pid", "child.pid"] {
        let pid: i32 = std::fs::read_to_string(d.ctl.join(pid_file))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let gone = Instant::now() + Duration::from_secs(10);
        while Path::new(&format!("/proc/{pid}")).exists() && !is_zombie(pid) {
            assert!(Instant::now() < gone, "{pid_file} {pid} still runs");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    assert!(d.versions().is_empty());
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(true)
}

#[test]
fn a_second_install_at_once_is_busy_and_changes_nothing() {
    let d = device();
    exits(d.install(&d.package("fw", "v1", 1)), 0);
    let v2 = d.package("fw", "v2", 1);
    let v3 = d.package("fw", "v3", 1);
    d.control("block-pre-install-v2", "");
    let mut first: Child = d
        .install_cmd(v2.to_str().unwrap())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !d.ctl.join("started").exists() {
        assert!(
            Instant::now() < deadline,
            "the first install never reached its pre-install"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let versions = d.versions();
    let stderr = exits(d.install(&v3), 6);
    assert!(stderr.contains("busy"), "{stderr}");
    assert_eq!(d.versions(), versions);
    std::fs::write(d.ctl.join("release"), "").unwrap();
    assert!(first.wait().unwrap().success());
    assert_eq!(d.link("current").as_deref(), Some("fw-1"));
}

#[test]
fn a_lower_security_version_is_refused() {
    let d = device();
    exits(d.install(&d.package("fw", "v2", 5)), 0);
    let stderr = exits(d.install(&d.package("fw", "v1", 3)), 4);
    assert!(stderr.contains("security_version"), "{stderr}");
    assert_eq!(d.versions(), ["fw"]);
    assert!(d.staging_is_empty());
}

#[test]
fn tampered_packages_are_refused_with_nothing_left() {
    let d = device();
    exits(d.install(&d.package("fw", "v1", 1)), 0);
    let package = d.package("fw", "v2", 1);
    let mut bytes = std::fs::read(&package).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x20;
    let bad = d.tmp.path().join("bad.fw");
    std::fs::write(&bad, &bytes).unwrap();
    exits(d.install(&bad), 4);
    let garbage = d.tmp.path().join("garbage.fw");
    std::fs::write(&garbage, b"not a package").unwrap();
    exits(d.install(&garbage), 5);
    assert_eq!(d.versions(), ["fw"]);
    assert!(d.staging_is_empty());
    assert_eq!(d.link("current").as_deref(), Some("fw"));
}

#[test]
fn same_package_twice_and_clean_keeps_what_it_must() {
    let d = device();
    let v1 = d.package("fw", "v1", 1);
    exits(d.install(&v1), 0);
    ok(run(
        fw("fw-switch")
            .arg("--target")
            .arg(&d.target)
            .args(["set-failsafe", "fw"]),
        b"",
    ));
    let reinstall = d.install_cmd_with(&["--reinstall"], v1.to_str().unwrap());
    exits(run(&mut { reinstall }, b""), 0);
    assert_eq!(d.link("current").as_deref(), Some("fw-1"));
    for label in ["v2", "v3", "v4"] {
        exits(d.install(&d.package("fw", label, 1)), 0);
    }
    assert_eq!(d.versions(), ["fw", "fw-1", "fw-2", "fw-3", "fw-4"]);
    let out = run(
        fw("fw-switch")
            .arg("--target")
            .arg(&d.target)
            .args(["clean", "--keep", "1"]),
        b"",
    );
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    ok(out);
    // current (fw-4), previous (fw-3) and failsafe (fw) stay.
    assert_eq!(d.versions(), ["fw", "fw-3", "fw-4"], "{stderr}");
    assert!(stderr.contains("freed"), "{stderr}");
    ok(run(
        fw("fw-verify")
            .arg("--keyring")
            .arg(&d.keys.keyring)
            .arg("--target")
            .arg(&d.target)
            .arg(d.target.join("fw-3")),
        b"",
    ));
}

#[test]
fn a_hand_made_device_is_adopted() {
    let d = device();
    let hand_made = d.target.join("current");
    std::fs::create_dir_all(hand_made.join("bin")).unwrap();
    std::fs::write(hand_made.join("bin/app"), b"factory app\n").unwrap();
    exits(d.install(&d.package("fw", "v1", 1)), 0);
    assert_eq!(d.link("current").as_deref(), Some("fw"));
    assert_eq!(d.link("previous").as_deref(), Some("factory"));
    assert_eq!(d.link("failsafe").as_deref(), Some("factory"));
    assert_eq!(
        std::fs::read(d.target.join("factory/bin/app")).unwrap(),
        b"factory app\n"
    );
    // The adopted version is a valid rollback target.
    ok(run(
        fw("fw-switch")
            .arg("--target")
            .arg(&d.target)
            .arg("rollback"),
        b"",
    ));
    assert_eq!(d.link("current").as_deref(), Some("factory"));
}

#[test]
fn install_streams_over_http_with_curl() {
    let d = device();
    exits(d.install(&d.package("fw", "v1", 1)), 0);
    let package = d.package("fw", "v2", 1);
    let served = package.parent().unwrap();
    let mut server = Command::new("python3")
        .args(["-u", "-m", "http.server", "--bind", "127.0.0.1", "0"])
        .current_dir(served)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 runs the test's HTTP server");
    let mut first_line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut first_line)
        .unwrap();
    // "Serving HTTP on 127.0.0.1 port 41234 (http://127.0.0.1:41234/) ..."
    let port: u16 = first_line
        .split_whitespace()
        .skip_while(|w| *w != "port")
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {first_line:?}"));
    let url = format!(
        "http://127.0.0.1:{port}/{}",
        package.file_name().unwrap().to_string_lossy()
    );
    let out = run(&mut d.install_cmd(&url), b"");
    let missing = run(
        &mut d.install_cmd(&format!("http://127.0.0.1:{port}/missing.fw")),
        b"",
    );
    server.kill().unwrap();
    server.wait().unwrap();
    exits(out, 0);
    assert_eq!(d.link("current").as_deref(), Some("fw-1"));
    exits(missing, 1);
    // Nothing of the package was stored on the way: only the two versions.
    let stored: Vec<_> = walk_files(&d.target)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "fw"))
        .collect();
    assert!(stored.is_empty(), "{stored:?}");
}

#[test]
fn install_reads_the_package_from_stdin() {
    let d = device();
    let package = std::fs::read(d.package("fw", "v1", 1)).unwrap();
    exits(run(&mut d.install_cmd("-"), &package), 0);
    assert_eq!(d.link("current").as_deref(), Some("fw"));
}

fn walk_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let t = e.file_type().unwrap();
            if t.is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

/// fw-unpack's fast path: with a version installed, identical files are
/// linked into staging as they come, never written again.
#[test]
fn unpack_links_unchanged_files_into_staging() {
    let d = device();
    exits(d.install(&d.package("fw", "v1", 1)), 0);
    let v2 = std::fs::read(d.package("fw", "v2", 1)).unwrap();
    let tar_gz = ok(run(
        fw("fw-unseal").arg("--keyring").arg(&d.keys.keyring),
        &v2,
    ));
    let out = run(
        fw("fw-unpack")
            .arg("--keyring")
            .arg(&d.keys.keyring)
            .arg("--target")
            .arg(&d.target),
        &tar_gz,
    );
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let staged = PathBuf::from(String::from_utf8(ok(out)).unwrap().trim_end());
    let ino = |p: &Path| std::fs::metadata(p).unwrap().ino();
    assert_eq!(
        ino(&staged.join("bin/big")),
        ino(&d.target.join("fw/bin/big"))
    );
    assert_ne!(
        ino(&staged.join("etc/label")),
        ino(&d.target.join("fw/etc/label"))
    );
    assert!(
        stderr.contains("shared with installed versions"),
        "{stderr}"
    );
    // The shared inode kept v1's attributes untouched, and both verify.
    for tree in [staged.clone(), d.target.join("fw")] {
        ok(run(
            fw("fw-verify")
                .arg("--keyring")
                .arg(&d.keys.keyring)
                .arg("--target")
                .arg(&d.target)
                .arg(&tree),
            b"",
        ));
    }
}

/// fw-nbio's example composes the same stages without a shell.
#[test]
fn the_fw_nbio_example_composes_the_install_stages() {
    let d = device();
    let example = bin("fw-unseal").parent().unwrap().join("examples/install");
    assert!(
        example.exists(),
        "build the examples first: cargo build --workspace --all-targets"
    );
    let package = d.package("fw", "v1", 1);
    let mut cmd = Command::new(&example);
    cmd.arg("--target")
        .arg(&d.target)
        .arg("--keyring")
        .arg(&d.keys.keyring)
        .arg(&package);
    let out = ok(run(&mut cmd, b""));
    assert_eq!(
        String::from_utf8(out).unwrap(),
        format!(
            "{}\n",
            d.target.canonicalize().unwrap().join("fw").display()
        )
    );

    let mut bytes = std::fs::read(&package).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 1;
    let bad = d.tmp.path().join("bad.fw");
    std::fs::write(&bad, bytes).unwrap();
    let mut cmd = Command::new(&example);
    cmd.arg("--target")
        .arg(&d.target)
        .arg("--keyring")
        .arg(&d.keys.keyring)
        .arg(&bad);
    let out = run(&mut cmd, b"");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains("fw-unseal"),
        "names the stage that failed: {stderr}"
    );
    assert!(d.staging_is_empty());
    assert_eq!(d.versions(), ["fw"]);
}

/// The version `dir`'s entry in `fw-switch status --json`.
fn version_status(status: &serde_json::Value, dir: &str) -> serde_json::Value {
    status["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["dir"] == dir)
        .unwrap_or_else(|| panic!("{dir} in {status}"))
        .clone()
}

#[test]
fn manual_rollback_after_an_automatic_one_skips_the_failed_version_and_runs_hooks() {
    let d = device();
    exits(d.install(&d.package("fw", "v1", 1)), 0);
    exits(d.install(&d.package("fw", "v2", 1)), 0);
    d.control("fail-health-check-v3", "");
    exits(d.install(&d.package("fw", "v3", 1)), 7);
    assert_eq!(
        (d.link("current").as_deref(), d.link("previous").as_deref()),
        (Some("fw-1"), Some("fw-2"))
    );
    // v3 is marked failed, in TARGET/.fw, not in its own tree.
    let status = d.status_json();
    let v3 = version_status(&status, "fw-2");
    assert_eq!(
        v3["states"],
        serde_json::json!(["previous", "failed"]),
        "{status}"
    );
    assert!(
        v3["failed"]["reason"]
            .as_str()
            .unwrap()
            .contains("after the switch"),
        "{v3}"
    );
    let own: Vec<String> = std::fs::read_dir(d.target.join("fw-2/.fw"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        own.iter()
            .all(|n| ["manifest.json", "manifest.sig", "verified"].contains(&n.as_str())),
        "{own:?}"
    );
    let text = String::from_utf8(ok(d.switch(&["status"]))).unwrap();
    assert!(text.contains("previous  fw-2 (failed)"), "{text}");

    // By hand: back past the failed v3 to v1, the newest healthy older
    // version, with v1's hooks told it is a rollback.
    d.clear_log();
    let out = d.switch(&["rollback", "--hook-retry-interval", "0.05"]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    ok(out);
    assert!(
        stderr.contains("fw-2") && stderr.contains("failed"),
        "says why it skipped: {stderr}"
    );
    assert_eq!(
        (d.link("current").as_deref(), d.link("previous").as_deref()),
        (Some("fw"), Some("fw-1"))
    );
    let log = d.log();
    assert_eq!(log.len(), 2, "{log:?}");
    assert!(
        log[0].starts_with("pre-install v1 dir=fw direction=rollback from=fw-1 to=fw"),
        "{log:?}"
    );
    assert!(
        log[1].starts_with("post-install v1 dir=fw direction=rollback from=fw-1 to=fw"),
        "{log:?}"
    );

    // Nothing healthy is older than v1: refused, nothing moved.
    let out = d.switch(&["rollback"]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    fails_with(out, 1);
    assert!(
        stderr.contains("no healthy version older than fw"),
        "{stderr}"
    );
    assert_eq!(d.link("current").as_deref(), Some("fw"));
}

#[test]
fn a_failing_rollback_hook_is_reported() {
    let d = device();
    exits(d.install(&d.package("fw", "v1", 1)), 0);
    exits(d.install(&d.package("fw", "v2", 1)), 0);
    d.control("fail-post-install-v1", "");
    let out = d.switch(&["rollback", "--hook-retry-interval", "0.05"]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    fails_with(out, 1);
    assert!(stderr.contains("post-install"), "{stderr}");
    // The link moved; the failure is the hook's, and it is said.
    assert_eq!(d.link("current").as_deref(), Some("fw"));
}

#[test]
fn a_refused_install_keeps_the_pending_version_on_probation() {
    let d = device();
    exits(d.install(&d.package("fw", "v1", 1)), 0);
    ok(d.switch(&["commit"]));
    exits(d.install(&d.package("fw", "v2", 1)), 0);
    assert_eq!(d.status_json()["pending"]["version"], "fw-1");

    // Refused installs: not a package, a directory, a tampered package.
    let garbage = d.tmp.path().join("garbage.fw");
    std::fs::write(&garbage, b"not a package").unwrap();
    exits(d.install(&garbage), 5);
    let stderr = exits(d.install(d.tmp.path()), 5);
    assert!(stderr.contains("directory"), "{stderr}");
    assert_eq!(
        d.status_json()["pending"]["version"],
        "fw-1",
        "still on probation"
    );
    assert!(String::from_utf8(ok(d.switch(&["status"])))
        .unwrap()
        .contains("fw-switch commit"));

    // So the boots are counted, and v2 rolled back after three.
    d.clear_log();
    exits(d.boot(), 0);
    exits(d.boot(), 0);
    assert_eq!(d.status_json()["pending"]["boots"], 2);
    let third = d.boot();
    assert_eq!(
        third.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&third.stderr)
    );
    assert_eq!(d.link("current").as_deref(), Some("fw"));
    assert!(
        d.log()
            .iter()
            .any(|l| l.starts_with("post-install v1 dir=fw direction=rollback")),
        "{:?}",
        d.log()
    );
    let status = d.status_json();
    assert_eq!(status["pending"], serde_json::Value::Null);
    assert!(version_status(&status, "fw-1")["states"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!("failed")));
}

#[test]
fn switching_away_by_hand_ends_probation() {
    let d = device();
    exits(d.install(&d.package("fw", "v1", 1)), 0);
    exits(d.install(&d.package("fw", "v2", 1)), 0);
    ok(d.switch(&["to", "fw"]));
    assert_eq!(d.status_json()["pending"], serde_json::Value::Null);
    for _ in 0..4 {
        exits(d.boot(), 0);
    }
    assert_eq!(d.link("current").as_deref(), Some("fw"));
}

#[test]
fn installing_the_same_version_again_is_refused_unless_asked_for() {
    let d = device();
    let v1 = d.package("fw", "v1", 1);
    exits(d.install(&v1), 0);
    let stderr = exits(d.install(&v1), 5);
    assert!(
        stderr.contains("installed already as fw") && stderr.contains("--reinstall"),
        "{stderr}"
    );
    assert_eq!(d.versions(), ["fw"]);
    assert!(d.staging_is_empty());
    assert_eq!(d.link("current").as_deref(), Some("fw"));
    assert_eq!(
        d.status_json()["pending"]["version"],
        "fw",
        "probation kept"
    );
    // The same by fw-fixate alone.
    let tar_gz = ok(run(
        fw("fw-unseal")
            .arg("-q")
            .arg("--keyring")
            .arg(&d.keys.keyring),
        &std::fs::read(&v1).unwrap(),
    ));
    let staged = String::from_utf8(ok(run(
        fw("fw-unpack")
            .arg("-q")
            .arg("--keyring")
            .arg(&d.keys.keyring)
            .arg("--target")
            .arg(&d.target),
        &tar_gz,
    )))
    .unwrap();
    let staged = staged.trim_end();
    ok(run(
        fw("fw-verify")
            .arg("-q")
            .arg("--keyring")
            .arg(&d.keys.keyring)
            .arg("--target")
            .arg(&d.target)
            .arg(staged),
        b"",
    ));
    let fixate = |extra: &[&str]| {
        run(
            fw("fw-fixate")
                .arg("--target")
                .arg(&d.target)
                .args(extra)
                .arg(staged),
            b"",
        )
    };
    let out = fixate(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    fails_with(out, 5);
    assert!(stderr.contains("--reinstall"), "{stderr}");
    let installed = String::from_utf8(ok(fixate(&["--reinstall"]))).unwrap();
    assert!(installed.trim_end().ends_with("/fw-1"), "{installed}");
    // Another build of the same tree (another manifest: dated an hour later, so
    // not the same even when packed within the same second) is no reinstall.
    let later = unix_now() + 3600;
    exits(d.install(&d.package_dated("fw", "v1", 1, Some(later))), 0);
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn automatic_rollback_skips_a_previous_version_below_the_security_floor() {
    let d = device();
    exits(d.install(&d.package("fw", "v1", 1)), 0);
    exits(d.install(&d.package("fw", "v2", 2)), 0);
    ok(d.switch(&["set-failsafe", "fw-1"]));
    ok(d.switch(&["to", "fw"]));
    // The floor raised beside fw-switch (e.g. provisioned, or restored from
    // a backup): v1, current, is now below it.
    std::fs::write(d.target.join(".fw/security-floor"), "2\n").unwrap();
    d.control("fail-post-install-v3", "");
    d.clear_log();
    let stderr = exits(d.install(&d.package("fw", "v3", 2)), 8);
    assert_eq!(d.link("current").as_deref(), Some("fw-1"), "{stderr}");
    let log = d.log();
    assert!(
        log.iter()
            .any(|l| l.starts_with("post-install v2 dir=fw-1 direction=rollback")),
        "{log:?}"
    );
    assert!(
        !log.iter().any(|l| l.starts_with("pre-install v1")),
        "v1 is below the floor: never re-enabled: {log:?}"
    );
    assert_eq!(
        d.status_states().last().map(String::as_str),
        Some("failsafe")
    );
}

#[test]
fn automatic_rollback_with_nothing_above_the_floor_stays_on_the_failed_version() {
    let d = device();
    exits(d.install(&d.package("fw", "v1", 1)), 0);
    ok(d.switch(&["set-failsafe", "fw"]));
    ok(d.switch(&["commit"]));
    std::fs::write(d.target.join(".fw/security-floor"), "2\n").unwrap();
    d.control("fail-post-install-v2", "");
    d.clear_log();
    let stderr = exits(d.install(&d.package("fw", "v2", 2)), 4);
    assert!(stderr.contains("security floor"), "{stderr}");
    assert!(stderr.contains("staying on fw-1"), "{stderr}");
    assert_eq!(d.link("current").as_deref(), Some("fw-1"));
    assert!(
        !d.log().iter().any(|l| l.contains("direction=rollback")),
        "{:?}",
        d.log()
    );
    let status = d.status_json();
    assert_eq!(
        version_status(&status, "fw-1")["states"],
        serde_json::json!(["current", "failed"])
    );
    assert_eq!(
        status["transaction"],
        serde_json::Value::Null,
        "nothing in flight"
    );
    // Recover at the next boot does not try again, and a fixed version installs.
    exits(d.boot(), 0);
    exits(d.install(&d.package("fw", "v3", 2)), 0);
    assert_eq!(d.link("current").as_deref(), Some("fw-2"));
}

#[test]
fn a_killed_install_leaves_no_temporary_file_after_recover() {
    let d = device();
    exits(d.install(&d.package("fw", "v1", 1)), 0);
    let temporary = || -> Vec<String> {
        std::fs::read_dir(d.target.join(".fw"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("install."))
            .collect()
    };
    // fw-install's file lives while the package streams in: from stdin,
    // which stays open and silent.
    let mut install = d.install_cmd("-");
    let mut child = {
        use std::os::unix::process::CommandExt;
        install
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while temporary().is_empty() {
        assert!(Instant::now() < deadline, "fw-install never made its file");
        std::thread::sleep(Duration::from_millis(20));
    }
    // A power cut: the whole install dies at once, its trap never runs.
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    child.wait().unwrap();
    drop(child.stdin.take());
    let group = child.id().to_string();
    let gone = Instant::now() + Duration::from_secs(30);
    while std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        std::fs::read_to_string(e.path().join("stat")).is_ok_and(|s| {
            let mut f = s.rsplit(')').next().unwrap_or("").split_whitespace();
            let state = f.next();
            f.nth(1) == Some(group.as_str()) && !matches!(state, Some("Z" | "X"))
        })
    }) {
        assert!(
            Instant::now() < gone,
            "the killed install's processes never died"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(temporary().len(), 1, "left behind by the kill");
    exits(d.boot(), 0);
    assert!(temporary().is_empty(), "{:?}", temporary());
    assert_eq!(d.link("current").as_deref(), Some("fw"));
    assert_eq!(d.versions(), ["fw"]);
    assert!(d.staging_is_empty());
}

/// Parses every stderr line as a JSON log record and checks the fields
/// every record has.
#[track_caller]
fn json_records(stderr: &str) -> Vec<serde_json::Value> {
    stderr
        .lines()
        .map(|line| {
            let record: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
            for key in ["timestamp", "level", "tool", "event", "message"] {
                assert!(record[key].is_string(), "{key} in {line}");
            }
            assert!(
                record["timestamp"].as_str().unwrap().ends_with('Z'),
                "{line}"
            );
            record
        })
        .collect()
}

#[test]
fn a_dead_server_makes_one_line_naming_the_download() {
    let d = device();
    exits(d.install(&d.package("fw", "v1", 1)), 0);
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/fw.fw");
    let stderr = exits(run(&mut d.install_cmd(&url), b""), 1);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one failure, one line: {stderr}");
    assert!(
        lines[0].starts_with("fw-install: error: download of ")
            && lines[0].contains("curl exit 7")
            && lines[0].contains("Failed to connect"),
        "{stderr}"
    );
    assert_eq!(d.link("current").as_deref(), Some("fw"));
    assert_eq!(d.versions(), ["fw"]);
    assert!(d.staging_is_empty());

    // As JSON: one record, the error with its exit code.
    let stderr = exits(
        run(
            &mut d.install_cmd_with(&["--log-format", "json"], &url),
            b"",
        ),
        1,
    );
    let records = json_records(&stderr);
    assert_eq!(records.len(), 1, "{stderr}");
    assert_eq!(records[0]["tool"], "fw-install");
    assert_eq!(records[0]["level"], "error");
    assert_eq!(records[0]["event"], "error");
    assert_eq!(records[0]["code"], 1);
    assert_eq!(records[0]["exit"], "failed");

    // A stage that refuses the package says it, once: fw-install adds
    // nothing but its exit code and the status line.
    let package = std::fs::read(d.package("fw", "v2", 1)).unwrap();
    let cut = d.tmp.path().join("cut.fw");
    std::fs::write(&cut, &package[..package.len() / 2]).unwrap();
    let stderr = exits(d.install(&cut), 4);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("fw-unseal: error: "), "{stderr}");
    assert_eq!(
        d.status_states().last().map(String::as_str),
        Some("update_failed")
    );
    assert_eq!(d.versions(), ["fw"]);
    assert!(d.staging_is_empty());
}

#[test]
fn json_logs_and_status_lines_share_fw_updates_schema() {
    let d = device();
    exits(d.install(&d.package("fw", "v1", 1)), 0);
    // Succeeding, with -v: every tool's records and fw-install's, all JSON.
    let stderr = exits(
        run(
            &mut d.install_cmd_with(
                &["--log-format", "json", "-v"],
                d.package("fw", "v2", 1).to_str().unwrap(),
            ),
            b"",
        ),
        0,
    );
    let records = json_records(&stderr);
    let tools: BTreeSet<&str> = records.iter().filter_map(|r| r["tool"].as_str()).collect();
    for tool in [
        "fw-install",
        "fw-unseal",
        "fw-unpack",
        "fw-verify",
        "fw-fixate",
    ] {
        assert!(tools.contains(tool), "{tool} in {tools:?}");
    }
    let verified = records
        .iter()
        .find(|r| r["event"] == "verified")
        .expect("fw-verify's verified event");
    assert_eq!(
        (&verified["name"], &verified["version"]),
        (&serde_json::json!("fw"), &serde_json::json!("v2"))
    );
    let installed = records.last().unwrap();
    assert_eq!(installed["event"], "installed");
    assert_eq!(installed["version"], "v2");
    assert_eq!(installed["path"], d.target.join("fw-1").to_str().unwrap());

    // Status lines: fw-update's keys and vocabulary.
    let last: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(d.ctl.join("status"))
            .unwrap()
            .lines()
            .last()
            .unwrap(),
    )
    .unwrap();
    let keys: BTreeSet<&str> = last
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from([
            "status",
            "name",
            "current_version",
            "latest_version",
            "error",
            "last_checked",
            "time",
            "from",
            "to"
        ])
    );
    assert_eq!(last["status"], "updated");
    assert_eq!(last["name"], "fw");
    assert_eq!(last["current_version"], "v1");
    assert_eq!(last["latest_version"], "v2");
    assert_eq!(
        (&last["from"], &last["to"]),
        (&serde_json::json!("fw"), &serde_json::json!("fw-1"))
    );

    // Failing: a usage error and a refused package, as JSON records.
    let stderr = exits(
        run(
            &mut d.install_cmd_with(&["--log-format", "json", "--bogus"], "x"),
            b"",
        ),
        2,
    );
    let records = json_records(&stderr);
    assert_eq!(records.len(), 1, "{stderr}");
    assert_eq!(
        (&records[0]["code"], &records[0]["exit"]),
        (&serde_json::json!(2), &serde_json::json!("usage"))
    );
    let stderr = exits(
        run(
            &mut d.install_cmd_with(&["--log-format=json"], d.tmp.path().to_str().unwrap()),
            b"",
        ),
        5,
    );
    let records = json_records(&stderr);
    assert_eq!(records.last().unwrap()["exit"], "invalid", "{stderr}");
}

#[test]
fn fw_install_has_help_version_quiet_and_verbose() {
    let d = device();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/fw-install");
    let help = ok(run(Command::new(&script).arg("--help"), b""));
    let help = String::from_utf8(help).unwrap();
    for flag in [
        "--version",
        "--quiet",
        "--verbose",
        "--log-format",
        "--help",
    ] {
        assert!(help.contains(flag), "{flag} in --help");
    }
    let version = ok(run(
        Command::new(&script)
            .env("FW_BIN", bin("fw-switch").parent().unwrap())
            .arg("--version"),
        b"",
    ));
    assert_eq!(
        String::from_utf8(version).unwrap(),
        format!("fw-install {}\n", env!("CARGO_PKG_VERSION"))
    );
    let v1 = d.package("fw", "v1", 1);
    let v2 = d.package("fw", "v2", 1);
    let quiet = exits(
        run(&mut d.install_cmd_with(&["-q"], v1.to_str().unwrap()), b""),
        0,
    );
    assert_eq!(quiet, "", "-q: nothing but errors");
    let normal = exits(d.install(&v2), 0);
    let verbose = exits(
        run(
            &mut d.install_cmd_with(&["-v", "--reinstall"], v2.to_str().unwrap()),
            b"",
        ),
        0,
    );
    assert!(
        verbose.lines().count() > normal.lines().count(),
        "-v says more:\n{verbose}\nthan:\n{normal}"
    );
    assert!(verbose.contains("fw-install: status: updated"), "{verbose}");
}
