//! fw-hook end to end: real hooks (small `#!/bin/sh` scripts) in real
//! version trees, run by the built binary.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fw_e2e::{fails_with, fw, ok, run, TempDir};

/// A target directory (canonical, so paths compare equal to what the hook sees).
fn target() -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().canonicalize().unwrap();
    (dir, path)
}

/// A version directory `target/name` with a manifest.
fn version(target: &Path, name: &str, security_version: u64, created: u64) -> PathBuf {
    let dir = target.join(name);
    std::fs::create_dir_all(dir.join(".fw")).unwrap();
    let manifest = serde_json::json!({
        "format": 1,
        "name": name,
        "version": "1.0",
        "security_version": security_version,
        "created": created,
        "tool": "fw-sign test",
        "entries": [],
    });
    std::fs::write(
        dir.join(".fw/manifest.json"),
        serde_json::to_vec_pretty(&manifest).unwrap(),
    )
    .unwrap();
    dir
}

/// Writes the hook `dir/.NAME` as a shell script, executable.
fn hook(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(format!(".{name}"));
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// A hook that records its arguments, environment and working directory.
const RECORDER: &str = r#"printf '%s\n' "$1" "$FW_HOOK" "$FW_FROM" "$FW_TO" "$FW_DIRECTION" "$FW_ATTEMPT" "$(pwd -P)" > "$1/../record-$(basename "$1")""#;

#[derive(Debug, PartialEq, Eq)]
struct Record {
    arg: String,
    hook: String,
    from: String,
    to: String,
    direction: String,
    attempt: String,
    pwd: String,
}

fn record(version: &Path) -> Record {
    let name = version.file_name().unwrap().to_str().unwrap();
    let path = version.parent().unwrap().join(format!("record-{name}"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let f: Vec<String> = text.lines().map(str::to_owned).collect();
    assert_eq!(f.len(), 7, "{text:?}");
    Record {
        arg: f[0].clone(),
        hook: f[1].clone(),
        from: f[2].clone(),
        to: f[3].clone(),
        direction: f[4].clone(),
        attempt: f[5].clone(),
        pwd: f[6].clone(),
    }
}

fn s(path: &Path) -> String {
    path.to_str().unwrap().to_owned()
}

fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn arguments_and_environment() {
    let (_dir, t) = target();
    let v1 = version(&t, "v1", 1, 100);
    let v2 = version(&t, "v2", 2, 50);
    hook(&v2, "pre-install", RECORDER);

    // No current link: no FROM, an upgrade. PATH given relative: $1 is absolute.
    let out = ok(run(
        fw("fw-hook")
            .current_dir(&t)
            .args(["--target", &s(&t), "pre-install", "v2"]),
        b"",
    ));
    assert!(out.is_empty());
    assert_eq!(
        record(&v2),
        Record {
            arg: s(&v2),
            hook: "pre-install".into(),
            from: "".into(),
            to: s(&v2),
            direction: "upgrade".into(),
            attempt: "1".into(),
            pwd: s(&v2),
        }
    );

    // With current -> v1, FROM defaults to v1 (via FW_TARGET this time).
    symlink("v1", t.join("current")).unwrap();
    ok(run(
        fw("fw-hook")
            .env("FW_TARGET", &t)
            .args(["post-install", &s(&v2)]),
        b"",
    ));
    // (post-install has no hook in v2: nothing ran.)
    hook(&v2, "post-install", RECORDER);
    ok(run(
        fw("fw-hook")
            .env("FW_TARGET", &t)
            .args(["post-install", &s(&v2)]),
        b"",
    ));
    let r = record(&v2);
    assert_eq!(
        (r.hook.as_str(), r.from.as_str(), r.direction.as_str()),
        ("post-install", s(&v1).as_str(), "upgrade")
    );

    // The caller's FW_FROM, FW_TO and FW_DIRECTION pass through.
    ok(run(
        fw("fw-hook")
            .env("FW_FROM", "/somewhere/old")
            .env("FW_TO", "/somewhere/new")
            .env("FW_DIRECTION", "rollback")
            .args(["--target", &s(&t), "pre-install", &s(&v2)]),
        b"",
    ));
    let r = record(&v2);
    assert_eq!(
        (r.from.as_str(), r.to.as_str(), r.direction.as_str()),
        ("/somewhere/old", "/somewhere/new", "rollback")
    );
    assert_eq!(r.arg, s(&v2));

    // An FW_DIRECTION that is none of the four is a usage error.
    fails_with(
        run(
            fw("fw-hook").env("FW_DIRECTION", "sideways").args([
                "--target",
                &s(&t),
                "pre-install",
                &s(&v2),
            ]),
            b"",
        ),
        2,
    );
}

#[test]
fn direction_defaults_from_manifests() {
    let (_dir, t) = target();
    let v1 = version(&t, "v1", 2, 100);
    symlink("v1", t.join("current")).unwrap();
    let cases = [
        // (name, security_version, created, expected)
        ("newer-security", 3, 10, "upgrade"),
        ("older-security", 1, 999, "downgrade"),
        ("same-security-later", 2, 200, "upgrade"),
        ("same-security-earlier", 2, 50, "downgrade"),
    ];
    for (name, sv, created, expected) in cases {
        let v = version(&t, name, sv, created);
        hook(&v, "pre-install", RECORDER);
        ok(run(
            fw("fw-hook").args(["--target", &s(&t), "pre-install", &s(&v)]),
            b"",
        ));
        let r = record(&v);
        assert_eq!(r.direction, expected, "{name}");
        assert_eq!(r.from, s(&v1), "{name}");
    }
    // The version current points to: a reinstall, even named through the link.
    hook(&v1, "health-check", RECORDER);
    ok(run(
        fw("fw-hook").args(["--target", &s(&t), "health-check", &s(&t.join("current"))]),
        b"",
    ));
    let r = record(&v1);
    assert_eq!(
        (r.direction.as_str(), r.arg.as_str(), r.from.as_str()),
        ("reinstall", s(&v1).as_str(), s(&v1).as_str())
    );
}

#[test]
fn missing_hook_succeeds() {
    let (_dir, t) = target();
    let v = version(&t, "v1", 1, 1);
    let output = run(
        fw("fw-hook").args(["--target", &s(&t), "pre-install", &s(&v)]),
        b"",
    );
    assert!(ok(output).is_empty());
    let output = run(
        fw("fw-hook").args(["-v", "--target", &s(&t), "health-check", &s(&v)]),
        b"",
    );
    let stderr = stderr_of(&output);
    assert!(ok(output).is_empty());
    assert!(stderr.contains("no health-check hook"), "{stderr}");
}

#[test]
fn unrunnable_hooks_fail_and_say_why() {
    let (_dir, t) = target();
    let v = version(&t, "v1", 1, 1);
    let h = hook(&v, "pre-install", "echo should not run");
    std::fs::set_permissions(&h, std::fs::Permissions::from_mode(0o644)).unwrap();
    let output = run(
        fw("fw-hook").args(["--target", &s(&t), "pre-install", &s(&v)]),
        b"",
    );
    let stderr = stderr_of(&output);
    assert!(fails_with(output, 1).is_empty());
    assert!(
        stderr.contains("not executable") && stderr.contains("chmod") && stderr.contains(&s(&h)),
        "{stderr}"
    );
    assert!(!stderr.contains("should not run"), "{stderr}");

    std::fs::create_dir(v.join(".post-install")).unwrap();
    let output = run(
        fw("fw-hook").args(["--target", &s(&t), "post-install", &s(&v)]),
        b"",
    );
    let stderr = stderr_of(&output);
    fails_with(output, 1);
    assert!(stderr.contains("not a regular file"), "{stderr}");
}

#[test]
fn usage_errors() {
    let (_dir, t) = target();
    let v = version(&t, "v1", 1, 1);
    hook(&v, "install", "exit 0");
    let output = run(fw("fw-hook").args(["install", &s(&v)]), b"");
    assert_eq!(output.status.code(), Some(2), "{}", stderr_of(&output));
    let output = run(
        fw("fw-hook").args(["pre-install", &s(&t.join("no-such-version"))]),
        b"",
    );
    // A missing path: exit 1, as in every tool.
    fails_with(output, 1);
    let output = run(
        fw("fw-hook").args(["--timeout", "-1", "pre-install", &s(&v)]),
        b"",
    );
    assert_eq!(output.status.code(), Some(2), "{}", stderr_of(&output));
}

#[test]
fn help_and_version() {
    let help = String::from_utf8(ok(run(fw("fw-hook").arg("--help"), b""))).unwrap();
    for needle in [
        "Example",
        "FW_DIRECTION",
        "FW_FROM",
        "current",
        "--retries",
        "--timeout",
        "pre-install",
    ] {
        assert!(
            help.contains(needle),
            "{needle} missing from --help:\n{help}"
        );
    }
    let version = String::from_utf8(ok(run(fw("fw-hook").arg("--version"), b""))).unwrap();
    assert!(version.starts_with("fw-hook "), "{version}");
}

#[test]
fn output_goes_to_stderr_prefixed_line_by_line() {
    let (_dir, t) = target();
    let v = version(&t, "v1", 1, 1);
    hook(
        &v,
        "pre-install",
        "echo out one; echo err one >&2; echo out two; printf 'partial line'",
    );
    let output = run(
        fw("fw-hook").args(["--target", &s(&t), "pre-install", &s(&v)]),
        b"",
    );
    let stderr = stderr_of(&output);
    assert!(ok(output).is_empty(), "stdout must stay empty");
    assert_eq!(
        stderr,
        "[pre-install] out one\n[pre-install] err one\n[pre-install] out two\n\
         [pre-install] partial line\n"
    );

    // A failing hook's last words, without a newline, still come through.
    hook(
        &v,
        "post-install",
        "echo working; printf 'disk full' >&2; exit 9",
    );
    let output = run(
        fw("fw-hook").args(["--target", &s(&t), "post-install", &s(&v)]),
        b"",
    );
    let stderr = stderr_of(&output);
    assert!(fails_with(output, 1).is_empty());
    assert!(
        stderr.starts_with("[post-install] working\n[post-install] disk full\nfw-hook: error: "),
        "{stderr}"
    );
}

#[test]
fn output_is_forwarded_while_the_hook_runs() {
    let (_dir, t) = target();
    let v = version(&t, "v1", 1, 1);
    // The hook announces itself, then waits for us on a fifo.
    hook(
        &v,
        "health-check",
        "mkfifo go; echo ready; read word < go; echo got $word",
    );
    let mut child = fw("fw-hook")
        .args([
            "--timeout",
            "60",
            "--target",
            &s(&t),
            "health-check",
            &s(&v),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert_eq!(line, "[health-check] ready\n");
    // Only now, with its first line seen, let the hook go on.
    let mut fifo = std::fs::OpenOptions::new()
        .write(true)
        .open(v.join("go"))
        .unwrap();
    fifo.write_all(b"on\n").unwrap();
    drop(fifo);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{rest}");
    assert!(output.stdout.is_empty());
    assert_eq!(rest, "[health-check] got on\n");
}

/// A hook that counts its runs in `count`, logs FW_ATTEMPT to `attempts`,
/// and exits 3 until run `until` (never, if 0).
fn counting_hook(v: &Path, name: &str, until: u32, last_exit: u32) -> PathBuf {
    hook(
        v,
        name,
        &format!(
            r#"n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count
echo "$FW_ATTEMPT" >> attempts
echo "attempt $FW_ATTEMPT"
if [ {until} -eq 0 ] || [ $n -lt {until} ]; then exit 3; fi
exit {last_exit}"#
        ),
    )
}

fn attempts(v: &Path) -> String {
    std::fs::read_to_string(v.join("attempts")).unwrap()
}

#[test]
fn exit_3_is_retried_with_back_off() {
    let (_dir, t) = target();
    let v = version(&t, "v1", 1, 1);
    counting_hook(&v, "pre-install", 3, 0);
    let output = run(
        fw("fw-hook").args([
            "--retry-interval",
            "0.05",
            "--target",
            &s(&t),
            "pre-install",
            &s(&v),
        ]),
        b"",
    );
    let stderr = stderr_of(&output);
    assert!(ok(output).is_empty());
    assert_eq!(attempts(&v), "1\n2\n3\n");
    for n in 1..=3 {
        assert!(
            stderr.contains(&format!("[pre-install] attempt {n}\n")),
            "{stderr}"
        );
    }
    assert!(stderr.contains("retry later"), "{stderr}");
}

#[test]
fn exit_3_until_the_retries_are_used_up_is_exit_3() {
    let (_dir, t) = target();
    let v = version(&t, "v1", 1, 1);
    let h = counting_hook(&v, "post-install", 0, 0);
    let output = run(
        fw("fw-hook").args([
            "--retries",
            "2",
            "--retry-interval",
            "0.01",
            "--target",
            &s(&t),
            "post-install",
            &s(&v),
        ]),
        b"",
    );
    let stderr = stderr_of(&output);
    assert!(fails_with(output, 3).is_empty());
    assert_eq!(attempts(&v), "1\n2\n3\n");
    assert!(
        stderr.contains(&s(&h)) && stderr.contains("3 attempts") && stderr.contains("--retries"),
        "{stderr}"
    );
}

#[test]
fn other_exit_statuses_fail_at_once() {
    let (_dir, t) = target();
    let v = version(&t, "v1", 1, 1);
    let h = counting_hook(&v, "health-check", 1, 7);
    let output = run(
        fw("fw-hook").args([
            "--retry-interval",
            "0.01",
            "--target",
            &s(&t),
            "health-check",
            &s(&v),
        ]),
        b"",
    );
    let stderr = stderr_of(&output);
    assert!(fails_with(output, 1).is_empty());
    assert_eq!(attempts(&v), "1\n");
    let error: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("fw-hook: error: "))
        .collect();
    assert_eq!(error.len(), 1, "{stderr}");
    assert!(
        error[0].contains(&s(&h)) && error[0].contains("exit status 7"),
        "{stderr}"
    );
}

/// Whether `pid` is gone (or a zombie left for init to reap), waiting up to 10 s.
fn gone(pid: u32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| {
                // pid (comm) STATE ...; comm may hold spaces and parentheses.
                let after = &stat[stat.rfind(')')? + 1..];
                after.split_whitespace().next().map(str::to_owned)
            });
        match state.as_deref() {
            None | Some("Z") | Some("X") => return true,
            Some(_) if Instant::now() >= deadline => return false,
            Some(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn read_pid(path: &Path) -> u32 {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{path:?}: {e}"))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn timeout_kills_the_hook_and_what_it_started() {
    let (_dir, t) = target();
    let v = version(&t, "v1", 1, 1);
    let h = hook(
        &v,
        "pre-install",
        "sleep 1000 & echo $! > child.pid; echo $$ > hook.pid; echo waiting; sleep 1000",
    );
    let started = Instant::now();
    let output = run(
        fw("fw-hook").args([
            "--timeout",
            "0.5",
            "--target",
            &s(&t),
            "pre-install",
            &s(&v),
        ]),
        b"",
    );
    let elapsed = started.elapsed();
    let stderr = stderr_of(&output);
    assert!(fails_with(output, 1).is_empty());
    assert!(
        stderr.contains("timed out") && stderr.contains(&s(&h)) && stderr.contains("--timeout"),
        "{stderr}"
    );
    assert!(stderr.contains("[pre-install] waiting\n"), "{stderr}");
    assert!(elapsed < Duration::from_secs(60), "took {elapsed:?}");
    let hook_pid = read_pid(&v.join("hook.pid"));
    let child_pid = read_pid(&v.join("child.pid"));
    assert!(gone(hook_pid), "the hook (pid {hook_pid}) still runs");
    assert!(
        gone(child_pid),
        "the hook's child (pid {child_pid}) still runs"
    );
}

#[test]
fn a_signal_is_a_failure_naming_it() {
    // Builtins only: the shell dies of the signal only if the hook does not
    // start with fw-hook's own blocked signals (SIGTERM, SIGINT, SIGHUP).
    let (_dir, t) = target();
    let v = version(&t, "v1", 1, 1);
    let h = hook(
        &v,
        "post-install",
        "echo going; kill -TERM $$; echo not reached",
    );
    let output = run(
        fw("fw-hook").args(["--target", &s(&t), "post-install", &s(&v)]),
        b"",
    );
    let stderr = stderr_of(&output);
    assert!(fails_with(output, 1).is_empty());
    assert!(
        stderr.contains("SIGTERM") && stderr.contains(&s(&h)),
        "{stderr}"
    );
    assert!(stderr.contains("[post-install] going\n"), "{stderr}");
    assert!(!stderr.contains("not reached"), "{stderr}");
}

#[test]
fn sigterm_to_fw_hook_kills_the_hook() {
    let (_dir, t) = target();
    let v = version(&t, "v1", 1, 1);
    hook(
        &v,
        "pre-install",
        "echo $$ > hook.pid; echo started; exec sleep 1000",
    );
    let mut child = fw("fw-hook")
        .args(["--target", &s(&t), "pre-install", &s(&v)])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert_eq!(line, "[pre-install] started\n");
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{rest}");
    assert!(rest.contains("SIGTERM"), "{rest}");
    assert!(gone(read_pid(&v.join("hook.pid"))));
}
