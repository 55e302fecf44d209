//! What a person or an integrator meets at the command line of the tools:
//! one failure makes one line, slips get a line saying what to do (on a
//! terminal too, through `script`'s pseudo-terminal), the same exit code
//! for a missing path everywhere, JSON log records with their fields, and
//! progress bars only on a terminal.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use fw_e2e::*;

/// Keys, a target and a package of a sample tree.
struct Setup {
    tmp: TempDir,
    keys: Keys,
    target: PathBuf,
    package: PathBuf,
}

fn setup() -> Setup {
    let tmp = TempDir::new().unwrap();
    let keys = Keys::new(&tmp.path().join("keys"));
    let target = tmp.path().join("target");
    std::fs::create_dir(&target).unwrap();
    let tree = sample_tree(tmp.path(), "fw");
    // Large enough for hashing to take a moment.
    std::fs::write(tree.join("bin/blob"), vec![7u8; 4 << 20]).unwrap();
    let package = tmp.path().join("fw.fw");
    let status = fw("fw-sign")
        .args(["-q", "pack", "--version", "1.0", "--key"])
        .arg(&keys.vendor_key)
        .arg(&tree)
        .stdout(std::fs::File::create(&package).unwrap())
        .status()
        .unwrap();
    assert!(status.success());
    Setup {
        tmp,
        keys,
        target,
        package,
    }
}

impl Setup {
    /// A tool with the keyring and target in its environment.
    fn tool(&self, name: &str) -> Command {
        let mut cmd = fw(name);
        cmd.env("FW_KEYRING", &self.keys.keyring)
            .env("FW_TARGET", &self.target);
        cmd
    }

    /// bash -c `script` with the binaries' directory first in PATH.
    fn shell(&self, script: &str) -> Output {
        let path = format!(
            "{}:{}",
            bin("fw-unseal").parent().unwrap().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Command::new("bash")
            .args(["-c", script])
            .env("PATH", path)
            .env("FW_KEYRING", &self.keys.keyring)
            .env("FW_TARGET", &self.target)
            .current_dir(self.tmp.path())
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// `command` under `script`: a pseudo-terminal on its stdin, stdout and
    /// stderr; returns the exit code and what the terminal showed.
    fn on_terminal(&self, command: &str) -> (Option<i32>, String) {
        let out = self.shell(&format!("script -qec {} /dev/null", shell_quote(command)));
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    }

    /// The path fw-unseal | fw-unpack leaves in staging.
    fn staged(&self) -> PathBuf {
        let out = self.shell(&format!(
            "fw-unseal -q {} | fw-unpack -q",
            self.package.display()
        ));
        assert!(out.status.success(), "{out:?}");
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim_end())
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn dead_url() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("http://127.0.0.1:{port}/fw.fw")
}

#[test]
fn a_failed_download_makes_one_line_and_the_stages_after_it_stay_quiet() {
    let s = setup();
    let out = s.shell(&format!(
        "curl -fsS {} | fw-unseal | fw-unpack | fw-verify | fw-fixate; echo \"${{PIPESTATUS[*]}}\"",
        dead_url()
    ));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "only curl speaks: {stderr}");
    assert!(lines[0].starts_with("curl: (7)"), "{stderr}");
    // Every fw stage: 9, no input (not 2, usage).
    assert_eq!(String::from_utf8_lossy(&out.stdout), "7 9 9 9 9\n");

    // -v tells why a quiet stage gave up.
    let out = s.shell(&format!("curl -fsS {} | fw-unseal -v", dead_url()));
    assert_eq!(out.status.code(), Some(9));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("fw-unseal: no input"),
        "{out:?}"
    );

    // Empty input that is not a pipe is a mistake, said in one line.
    let out = run_file(&mut s.tool("fw-unseal"), Path::new("/dev/null"));
    assert_eq!(out.status.code(), Some(5));
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
}

#[test]
fn fw_unseal_reads_a_file_and_refuses_terminals() {
    let s = setup();
    // FILE works like stdin.
    let out = s.tool("fw-unseal").arg(&s.package).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(is_complete_gzip(without_proof(&out.stdout)));

    // Binary to a terminal: refused, nothing written.
    let (code, shown) = s.on_terminal(&format!("fw-unseal {}", s.package.display()));
    assert_eq!(code, Some(2), "{shown}");
    assert!(shown.contains("stdout is a terminal"), "{shown}");
    assert!(shown.len() < 400, "binary on the terminal: {shown:?}");

    // Waiting on a terminal for a package: refused at once.
    let (code, shown) = s.on_terminal("fw-unseal > /dev/null");
    assert_eq!(code, Some(2), "{shown}");
    assert!(
        shown.contains("stdin is a terminal") && shown.contains("fw-unseal < pkg.fw"),
        "{shown}"
    );
    let (code, shown) = s.on_terminal("fw-unpack");
    assert_eq!(code, Some(2), "{shown}");
    assert!(shown.contains("stdin is a terminal"), "{shown}");
}

#[test]
fn input_mistakes_get_one_line_saying_what_to_do() {
    let s = setup();
    // A sealed package straight into fw-unpack.
    let out = run_file(&mut s.tool("fw-unpack"), &s.package);
    assert!(fails_with(out.clone(), 5).is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("pipe it through fw-unseal first"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        std::fs::read_dir(s.target.join(".fw/staging")).map_or(true, |mut d| d.next().is_none()),
        "nothing staged"
    );

    // The package given to fw-verify.
    let out = s.tool("fw-verify").arg(&s.package).output().unwrap();
    fails_with(out.clone(), 5);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("is not a directory") && stderr.contains("fw-unseal < pkg.fw | fw-unpack"),
        "{stderr}"
    );

    // Not root, on the default target.
    let staged = s.staged();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(bin("fw-fixate"))
        .arg(&staged)
        .env_remove("FW_TARGET")
        .output()
        .unwrap();
    fails_with(out.clone(), 1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("run as root, or use --target DIR / FW_TARGET"),
        "{stderr}"
    );
}

#[test]
fn a_missing_path_exits_1_in_every_tool() {
    let s = setup();
    let missing = s.tmp.path().join("missing");
    let m = missing.to_str().unwrap();
    let cases: &[(&str, &[&str])] = &[
        ("fw-unseal", &[m]),
        ("fw-verify", &[m]),
        ("fw-fixate", &[m]),
        ("fw-switch", &["to", m]),
        ("fw-hook", &["pre-install", m]),
        (
            "fw-sign",
            &["pack", "--key", s.keys.vendor_key.to_str().unwrap(), m],
        ),
    ];
    for (tool, args) in cases {
        let out = s
            .tool(tool)
            .args(*args)
            .stdout(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{tool}: {stderr}");
        assert!(stderr.contains(m), "{tool} names the path: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{tool}: {stderr}");
    }
}

/// Every stderr line as a JSON record, with the keys every record has.
fn records(stderr: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stderr)
        .lines()
        .map(|line| {
            let r: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
            for key in ["timestamp", "level", "tool", "event", "message"] {
                assert!(r[key].is_string(), "{key} in {line}");
            }
            r
        })
        .collect()
}

#[test]
fn json_logs_carry_a_timestamp_an_event_and_fields() {
    let s = setup();
    let staged = s.staged();
    let out = s
        .tool("fw-verify")
        .args(["--log-format", "json"])
        .arg(&staged)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let all = records(&out.stderr);
    let verified = all.iter().find(|r| r["event"] == "verified").unwrap();
    assert_eq!(verified["tool"], "fw-verify");
    assert_eq!(verified["level"], "info");
    assert_eq!(verified["name"], "fw");
    assert_eq!(verified["version"], "1.0");
    assert_eq!(verified["path"], staged.to_str().unwrap());
    assert!(verified["files"].as_u64().unwrap() > 0);
    assert!(verified["bytes"].as_u64().unwrap() >= 4 << 20);
    // RFC 3339, UTC, milliseconds: 2026-01-02T03:04:05.678Z.
    let ts = verified["timestamp"].as_str().unwrap();
    assert_eq!((ts.len(), &ts[10..11], &ts[23..]), (24, "T", "Z"), "{ts}");

    // A failure: its exit code, by number and by name.
    let out = s
        .tool("fw-verify")
        .env("FW_LOG_FORMAT", "json")
        .arg(&s.package)
        .output()
        .unwrap();
    let all = records(&out.stderr);
    assert_eq!(all.len(), 1);
    assert_eq!(
        (
            &all[0]["level"],
            &all[0]["event"],
            &all[0]["code"],
            &all[0]["exit"]
        ),
        (
            &serde_json::json!("error"),
            &serde_json::json!("error"),
            &serde_json::json!(5),
            &serde_json::json!("invalid")
        )
    );

    // clap's usage errors too, by flag or by environment.
    for cmd in [
        s.tool("fw-unpack")
            .args(["--log-format", "json", "--no-such-flag"]),
        s.tool("fw-switch")
            .env("FW_LOG_FORMAT", "json")
            .arg("no-such-command"),
    ] {
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(2));
        let all = records(&out.stderr);
        assert_eq!(all.len(), 1, "{all:?}");
        assert_eq!(
            (&all[0]["exit"], &all[0]["code"]),
            (&serde_json::json!("usage"), &serde_json::json!(2))
        );
        assert!(all[0]["message"].as_str().unwrap().contains("--help"));
    }
}

/// The progress bar's own characters (indicatif's bar and its ETA).
fn has_bar(text: &str) -> bool {
    text.contains('█') || text.contains('░') || text.contains("ETA")
}

#[test]
fn fw_sign_pack_and_fw_verify_show_a_bar_only_on_a_terminal() {
    let s = setup();
    let staged = s.staged();
    let tree = s.tmp.path().join("fw");
    let pack = format!(
        "fw-sign pack --key {} {} > {}",
        s.keys.vendor_key.display(),
        tree.display(),
        s.tmp.path().join("again.fw").display()
    );
    let verify = format!("fw-verify {} > /dev/null", staged.display());
    for command in [&pack, &verify] {
        let (code, shown) = s.on_terminal(command);
        assert_eq!(code, Some(0), "{command}: {shown}");
        assert!(
            has_bar(&shown),
            "{command}: no bar on a terminal: {shown:?}"
        );
        // -q silences.
        let (code, shown) = s.on_terminal(&command.replacen(' ', " -q ", 1));
        assert_eq!(code, Some(0), "{shown}");
        assert_eq!(shown, "", "-q: {command}");
        // Not a terminal: no bar.
        let out = s.shell(command);
        assert!(out.status.success(), "{out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!has_bar(&stderr), "{command}: a bar in a pipe: {stderr:?}");
    }
}
