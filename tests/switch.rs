//! fw-switch end to end: links, rollback, failsafe, the lock, status,
//! clean, recover and link-tree on real targets.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use fw_e2e::*;

struct Target {
    tmp: TempDir,
    root: PathBuf,
}

fn target_with(labels: &[&str]) -> (Target, Vec<PathBuf>) {
    let labelled: Vec<(&str, u64)> = labels.iter().map(|l| (*l, 0)).collect();
    target_with_security(&labelled)
}

/// A target with one version per (label, security_version), installed in
/// that order, none switched to.
fn target_with_security(labels: &[(&str, u64)]) -> (Target, Vec<PathBuf>) {
    let tmp = TempDir::new().unwrap();
    let keys = Keys::new(&tmp.path().join("keys"));
    let root = tmp.path().join("target");
    std::fs::create_dir(&root).unwrap();
    let mut versions = Vec::new();
    for (label, security_version) in labels {
        let tree = sample_tree(&tmp.path().join(label), "fw");
        std::fs::write(tree.join("etc/app/config"), format!("label = {label}\n")).unwrap();
        let security_version = security_version.to_string();
        versions.push(install_version(
            &keys,
            &root,
            &tree,
            &["--version", label, "--security-version", &security_version],
        ));
    }
    (Target { tmp, root }, versions)
}

impl Target {
    fn switch(&self, args: &[&str]) -> std::process::Output {
        run(
            fw("fw-switch").arg("--target").arg(&self.root).args(args),
            b"",
        )
    }

    fn status_json(&self) -> serde_json::Value {
        serde_json::from_slice(&ok(self.switch(&["status", "--json"]))).unwrap()
    }

    fn link(&self, name: &str) -> Option<String> {
        std::fs::read_link(self.root.join(name))
            .ok()
            .map(|p| p.to_string_lossy().into_owned())
    }
}

#[test]
fn to_rollback_and_failsafe_move_relative_links() {
    let (t, versions) = target_with(&["v1", "v2", "v3"]);
    let names: Vec<String> = versions
        .iter()
        .map(|v| v.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["fw", "fw-1", "fw-2"]);
    ok(t.switch(&["to", versions[0].to_str().unwrap()]));
    assert_eq!(t.link("current").as_deref(), Some("fw"), "relative link");
    assert_eq!(t.link("previous"), None);
    ok(t.switch(&["to", "fw-2"]));
    assert_eq!(
        (t.link("current").as_deref(), t.link("previous").as_deref()),
        (Some("fw-2"), Some("fw"))
    );
    ok(t.switch(&["rollback"]));
    assert_eq!(
        (t.link("current").as_deref(), t.link("previous").as_deref()),
        (Some("fw"), Some("fw-2"))
    );
    ok(t.switch(&["set-failsafe", "fw-1"]));
    ok(t.switch(&["failsafe"]));
    assert_eq!(
        (t.link("current").as_deref(), t.link("failsafe").as_deref()),
        (Some("fw-1"), Some("fw-1"))
    );
    assert_eq!(
        std::fs::read_to_string(t.root.join("current/etc/app/config")).unwrap(),
        "label = v2\n"
    );
    // No temporary links are left behind.
    let hidden: Vec<_> = std::fs::read_dir(&t.root)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().contains(".tmp"))
        .collect();
    assert!(hidden.is_empty(), "{hidden:?}");
}

#[test]
fn to_refuses_what_is_not_a_verified_version() {
    let (t, versions) = target_with(&["v1"]);
    std::fs::remove_file(versions[0].join(".fw/verified")).unwrap();
    fails_with(t.switch(&["to", "fw"]), 5);
    let outside = t.tmp.path().join("elsewhere");
    std::fs::create_dir(&outside).unwrap();
    fails_with(t.switch(&["to", outside.to_str().unwrap()]), 2);
    // A missing path: exit 1, as in every tool.
    fails_with(t.switch(&["to", "no-such-version"]), 1);
    fails_with(t.switch(&["rollback"]), 1);
    fails_with(t.switch(&["failsafe"]), 1);
    assert_eq!(t.link("current"), None);
}

#[test]
fn a_held_lock_makes_writers_busy_until_it_is_released_or_its_holder_dies() {
    let (t, _) = target_with(&["v1", "v2"]);
    let lock = t.root.join(".fw/lock");
    let hold = || {
        // -o: only flock itself holds the lock, not the command it runs.
        let mut holder = Command::new("flock")
            .arg("-o")
            .arg(&lock)
            .args(["sh", "-c", "echo held; cat >/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(holder.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, "held\n");
        holder
    };
    let mut holder = hold();
    let out = t.switch(&["to", "fw"]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    fails_with(out, 6);
    assert!(stderr.contains("busy"), "{stderr}");
    fails_with(t.switch(&["--wait", "0.2", "to", "fw"]), 6);
    assert_eq!(t.link("current"), None, "nothing changed");
    // Status only reads: it never waits for the lock.
    ok(t.switch(&["status"]));
    drop(holder.stdin.take());
    holder.wait().unwrap();
    ok(t.switch(&["to", "fw"]));

    // A holder killed with SIGKILL never blocks the next writer.
    let mut holder = hold();
    holder.kill().unwrap();
    holder.wait().unwrap();
    ok(t.switch(&["to", "fw-1"]));
    assert_eq!(t.link("current").as_deref(), Some("fw-1"));
}

#[test]
fn status_reports_versions_links_and_sharing() {
    let (t, _) = target_with(&["v1", "v2"]);
    ok(t.switch(&["to", "fw"]));
    ok(t.switch(&["to", "fw-1"]));
    let status: serde_json::Value =
        serde_json::from_slice(&ok(t.switch(&["status", "--json"]))).unwrap();
    assert_eq!(status["current"], "fw-1");
    assert_eq!(status["previous"], "fw");
    assert_eq!(status["failsafe"], serde_json::Value::Null);
    let versions = status["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2);
    let v2 = versions.iter().find(|v| v["dir"] == "fw-1").unwrap();
    assert_eq!(v2["version"], "v2");
    assert_eq!(v2["links"], serde_json::json!(["current"]));
    assert_eq!(v2["verified"], true);
    // bin/app and friends are the same in both: shared.
    assert!(v2["shared_bytes"].as_u64().unwrap() > 0, "{v2}");
    assert!(
        v2["shared_bytes"].as_u64().unwrap() < v2["size"].as_u64().unwrap(),
        "the config differs"
    );
    let table = String::from_utf8(ok(t.switch(&["status"]))).unwrap();
    assert!(table.contains("current   fw-1"), "{table}");
}

#[test]
fn clean_removes_old_versions_and_dead_staging_but_keeps_links_and_live_work() {
    let (t, _) = target_with(&["v1", "v2", "v3", "v4"]);
    ok(t.switch(&["to", "fw-2"]));
    ok(t.switch(&["to", "fw-3"]));
    ok(t.switch(&["set-failsafe", "fw"]));
    let staging = t.root.join(".fw/staging");
    let mut dead = Command::new("true").spawn().unwrap();
    let dead_pid = dead.id();
    dead.wait().unwrap();
    let dead_dir = staging.join(format!("unpack-{dead_pid}-AbCdEf"));
    let live_dir = staging.join(format!("unpack-{}-XyZ123", std::process::id()));
    for dir in [&dead_dir, &live_dir] {
        std::fs::create_dir_all(dir.join("fw/bin")).unwrap();
        std::fs::write(dir.join("fw/bin/x"), b"x").unwrap();
    }
    ok(t.switch(&["clean", "--keep", "1"]));
    let mut left: Vec<String> = std::fs::read_dir(&t.root)
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().unwrap().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["fw", "fw-2", "fw-3"],
        "failsafe, previous and current stay"
    );
    assert!(!dead_dir.exists(), "staging of a dead unpack is removed");
    assert!(live_dir.exists(), "staging of a live process is kept");
}

#[test]
fn recover_adopts_restores_current_and_is_idempotent() {
    let (t, _) = target_with(&["v1"]);
    // A hand-made device: current is a real directory.
    std::fs::create_dir_all(t.root.join("current/bin")).unwrap();
    std::fs::write(t.root.join("current/bin/app"), b"hand made\n").unwrap();
    // A leftover temporary link from a crash.
    std::os::unix::fs::symlink("fw", t.root.join(".current.tmp-4242")).unwrap();
    ok(t.switch(&["recover"]));
    assert_eq!(t.link("current").as_deref(), Some("factory"));
    assert_eq!(t.link("failsafe").as_deref(), Some("factory"));
    assert!(!t.root.join(".current.tmp-4242").exists());
    ok(t.switch(&["recover"]));
    assert_eq!(t.link("current").as_deref(), Some("factory"));

    // current lost (a crash between rename and link): restored.
    std::fs::remove_file(t.root.join("current")).unwrap();
    ok(t.switch(&["recover"]));
    assert_eq!(t.link("current").as_deref(), Some("factory"));
}

#[test]
fn link_tree_links_through_current_and_follows_upgrades() {
    let (t, _) = target_with(&["v1", "v2"]);
    ok(t.switch(&["to", "fw"]));
    let etc = t.tmp.path().join("etc");
    std::fs::create_dir(&etc).unwrap();
    std::fs::write(etc.join("hostname"), b"device\n").unwrap();
    let src = t.root.join("current/etc");
    let out = run(fw("fw-switch").args(["link-tree"]).arg(&src).arg(&etc), b"");
    ok(out);
    assert_eq!(
        std::fs::read_to_string(etc.join("app/config")).unwrap(),
        "label = v1\n"
    );
    assert_eq!(
        std::fs::read(etc.join("hostname")).unwrap(),
        b"device\n",
        "real files stay"
    );
    ok(t.switch(&["to", "fw-1"]));
    assert_eq!(
        std::fs::read_to_string(etc.join("app/config")).unwrap(),
        "label = v2\n",
        "links go through current"
    );
    // Idempotent.
    let again = run(fw("fw-switch").args(["link-tree"]).arg(&src).arg(&etc), b"");
    let stderr = String::from_utf8_lossy(&again.stderr).to_string();
    ok(again);
    assert!(stderr.contains("linked 0"), "{stderr}");
}

/// Exit 4 with a line that names the floor; returns stderr.
#[track_caller]
fn refused_by_floor(out: std::process::Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    fails_with(out, 4);
    assert!(stderr.contains("security floor"), "{stderr}");
    stderr
}

#[test]
fn every_link_move_refuses_a_version_below_the_security_floor() {
    let (t, _) = target_with_security(&[("v1", 1), ("v2", 2)]);
    ok(t.switch(&["to", "fw"]));
    ok(t.switch(&["set-failsafe", "fw"]));
    ok(t.switch(&["to", "fw-1"]));
    let out = t.switch(&["commit"]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    ok(out);
    // The failsafe is now below the floor: commit says so.
    assert!(
        stderr.contains("warning") && stderr.contains("failsafe fw"),
        "{stderr}"
    );
    assert_eq!(t.status_json()["security_floor"], 2);

    let stderr = refused_by_floor(t.switch(&["rollback"]));
    assert!(
        stderr.contains("fw (v1) has security_version 1"),
        "{stderr}"
    );
    refused_by_floor(t.switch(&["to", "fw"]));
    refused_by_floor(t.switch(&["failsafe"]));
    refused_by_floor(t.switch(&["set-failsafe", "fw"]));
    assert_eq!(
        (t.link("current").as_deref(), t.link("previous").as_deref()),
        (Some("fw-1"), Some("fw")),
        "nothing moved"
    );
    assert_eq!(t.link("failsafe").as_deref(), Some("fw"));
    // At or above the floor: allowed.
    ok(t.switch(&["set-failsafe", "fw-1"]));
    ok(t.switch(&["failsafe"]));
}

#[test]
fn an_unreadable_security_floor_is_an_error_never_zero() {
    let (t, _) = target_with_security(&[("v1", 1), ("v2", 2)]);
    ok(t.switch(&["to", "fw-1"]));
    let floor = t.root.join(".fw/security-floor");
    for (what, make) in [
        (
            "garbage",
            &(|p: &std::path::Path| std::fs::write(p, "two\n").unwrap())
                as &dyn Fn(&std::path::Path),
        ),
        ("empty", &|p: &std::path::Path| {
            std::fs::write(p, "").unwrap()
        }),
        ("a directory", &|p: &std::path::Path| {
            std::fs::create_dir(p).unwrap()
        }),
    ] {
        make(&floor);
        for args in [&["to", "fw"][..], &["rollback"], &["status"], &["commit"]] {
            let out = t.switch(args);
            let stderr = String::from_utf8_lossy(&out.stderr).to_string();
            fails_with(out, 1);
            assert!(
                stderr.contains("security-floor") && stderr.contains("fw-switch commit"),
                "{what}, {args:?}: {stderr}"
            );
        }
        assert_eq!(t.link("current").as_deref(), Some("fw-1"), "{what}");
        if floor.is_dir() {
            std::fs::remove_dir(&floor).unwrap();
        } else {
            std::fs::remove_file(&floor).unwrap();
        }
    }
    // A missing floor is floor 0.
    ok(t.switch(&["to", "fw"]));
    assert_eq!(t.status_json()["security_floor"], 0);
}

#[test]
fn status_names_each_version_state_the_floor_and_what_to_do_next() {
    let (t, _) = target_with_security(&[("v1", 1), ("v2", 2), ("v3", 2)]);
    ok(t.switch(&["to", "fw"]));
    ok(t.switch(&["set-failsafe", "fw"]));
    ok(t.switch(&["to", "fw-1"]));
    ok(t.switch(&["commit"]));
    ok(t.switch(&["to", "fw-2"]));
    // fw-2 on probation, as fw-install leaves it.
    ok(t.switch(&["journal", "begin"]));
    ok(t.switch(&["journal", "set", "pending", "--to", "fw-2"]));
    let status = t.status_json();
    assert_eq!(status["security_floor"], 2);
    assert_eq!(status["pending"]["version"], "fw-2");
    let states = |dir: &str| {
        status["versions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["dir"] == dir)
            .unwrap_or_else(|| panic!("{dir} in {status}"))
            .clone()
    };
    assert_eq!(
        states("fw-2")["states"],
        serde_json::json!(["current", "pending"])
    );
    assert_eq!(states("fw-1")["states"], serde_json::json!(["previous"]));
    assert_eq!(states("fw")["states"], serde_json::json!(["failsafe"]));
    assert_eq!(states("fw")["below_floor"], true);
    assert_eq!(states("fw-1")["below_floor"], false);
    // The fields that were there before stay.
    for key in [
        "dir",
        "name",
        "version",
        "security_version",
        "created",
        "size",
        "shared_bytes",
        "links",
        "verified",
    ] {
        assert!(states("fw-1").get(key).is_some(), "{key}");
    }
    for key in [
        "target",
        "current",
        "previous",
        "failsafe",
        "current_is_directory",
        "staging",
        "transaction",
    ] {
        assert!(status.get(key).is_some(), "{key}");
    }

    let text = String::from_utf8(ok(t.switch(&["status"]))).unwrap();
    for want in [
        "security floor 2",
        "current   fw-2 (pending)",
        "previous  fw-1",
        "failsafe  fw (below the security floor)",
        "fw-switch commit",
        "fw-switch recover",
    ] {
        assert!(text.contains(want), "{want:?} in:\n{text}");
    }
    let row = |dir: &str| {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(dir))
            .unwrap_or_else(|| panic!("{dir} in:\n{text}"))
            .to_string()
    };
    assert!(
        row("fw-2").contains("v3") && row("fw-2").contains("current, pending"),
        "{text}"
    );
    assert!(
        row("fw").contains("v1") && row("fw").contains("failsafe"),
        "{text}"
    );

    // Committed: nothing pending, no advice.
    ok(t.switch(&["commit"]));
    let text = String::from_utf8(ok(t.switch(&["status"]))).unwrap();
    assert!(!text.contains("pending"), "{text}");
    assert_eq!(t.status_json()["pending"], serde_json::Value::Null);
}
