//! fw-update end to end against a real HTTP server on 127.0.0.1 (a small
//! Python http.server handler written by the test: Range, ETag, a log of
//! every request's Range and If-None-Match headers, and control files that
//! make it drop the connection half-way through a body (by exiting) or
//! corrupt one byte of a body once).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use fw_e2e::*;

const SERVER: &str = r#"
import hashlib, http.server, os, sys
root, log, ctl, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        name = self.path.split('?')[0].lstrip('/')
        rng = self.headers.get('Range')
        inm = self.headers.get('If-None-Match')
        with open(log, 'a') as f:
            f.write('GET /%s range=%s inm=%s\n' % (name, rng or '-', inm or '-'))
        try:
            with open(os.path.join(root, name), 'rb') as f:
                data = f.read()
        except OSError:
            self.send_error(404)
            return
        etag = '"%s"' % hashlib.md5(data).hexdigest()
        if inm == etag:
            self.send_response(304)
            self.send_header('ETag', etag)
            self.end_headers()
            return
        start, status = 0, 200
        if rng and rng.startswith('bytes='):
            start = int(rng[6:].split('-')[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header('Content-Range', 'bytes */%d' % len(data))
                self.send_header('Content-Length', '0')
                self.end_headers()
                return
            status = 206
        body = data[start:]
        corrupt = os.path.join(ctl, 'corrupt-' + name)
        if os.path.exists(corrupt):
            os.remove(corrupt)
            middle = len(body) // 2
            body = body[:middle] + bytes([body[middle] ^ 0xff]) + body[middle + 1:]
        self.send_response(status)
        self.send_header('Content-Length', str(len(body)))
        self.send_header('ETag', etag)
        self.send_header('Accept-Ranges', 'bytes')
        if status == 206:
            self.send_header('Content-Range', 'bytes %d-%d/%d' % (start, len(data) - 1, len(data)))
        self.end_headers()
        drop = os.path.join(ctl, 'drop-' + name)
        if os.path.exists(drop):
            os.remove(drop)
            self.wfile.write(body[:len(body) // 2])
            self.wfile.flush()
            os._exit(0)
        self.wfile.write(body)

server = http.server.HTTPServer(('127.0.0.1', port), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

struct Server {
    child: Child,
    port: u16,
    www: PathBuf,
    log: PathBuf,
    ctl: PathBuf,
    script: PathBuf,
}

impl Server {
    fn start(dir: &Path) -> Server {
        let www = dir.join("www");
        let ctl = dir.join("server-ctl");
        std::fs::create_dir_all(&www).unwrap();
        std::fs::create_dir_all(&ctl).unwrap();
        let script = dir.join("server.py");
        std::fs::write(&script, SERVER).unwrap();
        let log = dir.join("server.log");
        let (child, port) = Self::spawn(&script, &www, &log, &ctl, 0);
        Server {
            child,
            port,
            www,
            log,
            ctl,
            script,
        }
    }

    fn spawn(script: &Path, www: &Path, log: &Path, ctl: &Path, port: u16) -> (Child, u16) {
        let mut child = Command::new("python3")
            .arg("-u")
            .arg(script)
            .arg(www)
            .arg(log)
            .arg(ctl)
            .arg(port.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs the test's HTTP server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("no port from the server: {line:?}"));
        (child, port)
    }

    /// Starts the server again on the same port (after it exited).
    fn restart(&mut self) {
        let _ = self.child.kill();
        self.child.wait().unwrap();
        let (child, port) = Self::spawn(&self.script, &self.www, &self.log, &self.ctl, self.port);
        assert_eq!(port, self.port);
        self.child = child;
    }

    fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}", self.port)
    }

    fn control(&self, name: &str) {
        std::fs::write(self.ctl.join(name), b"").unwrap();
    }

    /// The logged requests for `name`: (Range, If-None-Match).
    fn requests(&self, name: &str) -> Vec<(String, String)> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let mut words = l.split(' ');
                (words.nth(1) == Some(&format!("/{name}"))).then(|| {
                    let range = words
                        .next()
                        .unwrap()
                        .trim_start_matches("range=")
                        .to_string();
                    let inm = words.next().unwrap().trim_start_matches("inm=").to_string();
                    (range, inm)
                })
            })
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Device {
    tmp: TempDir,
    keys: Keys,
    target: PathBuf,
    server: Server,
}

fn device() -> Device {
    let tmp = TempDir::new().unwrap();
    let keys = Keys::new(&tmp.path().join("keys"));
    let target = tmp.path().join("target");
    std::fs::create_dir(&target).unwrap();
    let server = Server::start(tmp.path());
    Device {
        tmp,
        keys,
        target,
        server,
    }
}

impl Device {
    /// Packs firmware `fw` version `label` into www/fw-LABEL.fw.
    fn package(&self, label: &str, security_version: u64) -> PathBuf {
        self.package_as("fw", label, security_version)
    }

    /// Packs firmware `name` version `label` into www/NAME-LABEL.fw.
    fn package_as(&self, name: &str, label: &str, security_version: u64) -> PathBuf {
        let root = self.tmp.path().join("src").join(label).join(name);
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::write(root.join("bin/data"), noise(400_000, 7)).unwrap();
        std::fs::write(root.join("version"), format!("{label}\n")).unwrap();
        let out = self.server.www.join(format!("{name}-{label}.fw"));
        let mut cmd = fw("fw-sign");
        cmd.args(["-q", "pack", "--version", label, "--security-version"])
            .arg(security_version.to_string())
            .arg("--key")
            .arg(&self.keys.vendor_key)
            .arg("--encrypt-for")
            .arg(&self.keys.device_cert)
            .arg(&root)
            .stdout(std::fs::File::create(&out).unwrap());
        assert!(cmd.status().unwrap().success());
        out
    }

    /// Writes www/index.json and www/index.json.sig listing `packages`.
    fn index(&self, packages: &[&Path], extra: &[&str]) -> Output {
        self.index_with(&self.keys.vendor_key, packages, extra)
    }

    /// An index whose URLs start with `base` (another server's).
    fn index_with_base(&self, base: &str, packages: &[&Path]) -> Output {
        let mut cmd = fw("fw-sign");
        cmd.arg("index")
            .arg("--key")
            .arg(&self.keys.vendor_key)
            .arg("--decrypt-key")
            .arg(&self.keys.device_key)
            .args(["--base-url", base])
            .args(packages)
            .stdout(std::fs::File::create(self.server.www.join("index.json")).unwrap())
            .stderr(Stdio::piped());
        cmd.output().unwrap()
    }

    fn index_with(&self, key: &Path, packages: &[&Path], extra: &[&str]) -> Output {
        let mut cmd = fw("fw-sign");
        cmd.arg("index")
            .arg("--key")
            .arg(key)
            .arg("--decrypt-key")
            .arg(&self.keys.device_key)
            .args(["--base-url", &self.server.url("")])
            .args(extra)
            .args(packages)
            .stdout(std::fs::File::create(self.server.www.join("index.json")).unwrap())
            .stderr(Stdio::piped());
        cmd.output().unwrap()
    }

    fn fw_install(&self, package: &Path) {
        ok(run(&mut self.fw_install_cmd(&[], package.as_os_str()), b""));
    }

    fn fw_install_cmd(&self, options: &[&str], source: &std::ffi::OsStr) -> Command {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/fw-install");
        let mut cmd = Command::new(script);
        cmd.env("FW_BIN", bin("fw-unseal").parent().unwrap())
            .arg("-q")
            .arg("--target")
            .arg(&self.target)
            .arg("--keyring")
            .arg(&self.keys.keyring)
            .args(options)
            .arg(source);
        cmd
    }

    /// The version directories of the target, and anything left in its staging area.
    fn versions_and_staging(&self) -> (Vec<String>, Vec<String>) {
        let names = |dir: PathBuf| -> Vec<String> {
            let mut names: Vec<String> = std::fs::read_dir(dir)
                .map(|d| {
                    d.flatten()
                        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .filter(|n| n != ".fw")
                        .collect()
                })
                .unwrap_or_default();
            names.sort();
            names
        };
        (
            names(self.target.clone()),
            names(self.target.join(".fw/staging")),
        )
    }

    fn status_file(&self) -> PathBuf {
        self.tmp.path().join("status")
    }

    fn update_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = fw("fw-update");
        cmd.env_remove("FW_INSTALL")
            .env_remove("FW_BIN")
            .env_remove("FW_UPDATE_CONFIG")
            .args(args)
            .args(["--index", &self.server.url("index.json")])
            .arg("--target")
            .arg(&self.target)
            .arg("--keyring")
            .arg(&self.keys.keyring)
            .arg("--status")
            .arg(self.status_file());
        cmd
    }

    fn update(&self, args: &[&str]) -> Output {
        run(&mut self.update_cmd(args), b"")
    }

    fn events(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.status_file())
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("status lines are JSON"))
            .collect()
    }

    /// The states seen, repeats (download progress) folded.
    fn states(&self) -> Vec<String> {
        let mut states: Vec<String> = self
            .events()
            .iter()
            .map(|e| e["status"].as_str().unwrap().to_string())
            .collect();
        states.dedup();
        states
    }

    fn clear_events(&self) {
        let _ = std::fs::remove_file(self.status_file());
    }

    fn current(&self) -> String {
        let link = std::fs::read_link(self.target.join("current")).unwrap();
        std::fs::read_to_string(self.target.join(link).join("version"))
            .unwrap()
            .trim()
            .to_string()
    }

    fn downloads(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.target.join(".fw/downloads"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.ends_with(".fw") || n.ends_with(".part"))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

#[track_caller]
fn exits(output: Output, code: i32) -> Output {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A device on v1 and an index listing v1 and v2.
fn device_on_v1_with_v2_published() -> (Device, PathBuf) {
    let d = device();
    let v1 = d.package("v1", 1);
    d.fw_install(&v1);
    let v2 = d.package("v2", 1);
    ok(d.index(&[&v1, &v2], &[]));
    (d, v2)
}

#[test]
fn index_lists_the_packages_with_size_and_blake3_and_is_signed() {
    let d = device();
    let v1 = d.package("v1", 3);
    ok(d.index(&[&v1], &["--expires", "2h"]));
    let json = std::fs::read(d.server.www.join("index.json")).unwrap();
    let index: serde_json::Value = serde_json::from_slice(&json).unwrap();
    let entry = &index["entries"][0];
    let bytes = std::fs::read(&v1).unwrap();
    assert_eq!(entry["name"], "fw");
    assert_eq!(entry["version"], "v1");
    assert_eq!(entry["security_version"], 3);
    assert_eq!(entry["size"], bytes.len() as u64);
    assert_eq!(entry["blake3"], blake3::hash(&bytes).to_hex().as_str());
    assert_eq!(entry["url"], d.server.url("fw-v1.fw"));
    let created = index["created"].as_u64().unwrap();
    assert_eq!(index["expires"].as_u64().unwrap(), created + 7200);
    // The detached signature went beside stdout's file, and GnuPG-style
    // armor.
    let sig = std::fs::read_to_string(d.server.www.join("index.json.sig")).unwrap();
    assert!(sig.starts_with("-----BEGIN PGP SIGNATURE-----"), "{sig}");
    // An encrypted package without a key to read its manifest: refused
    // with what to do.
    let out = run(
        fw("fw-sign")
            .args([
                "index",
                "--signature",
                "/dev/null",
                "--base-url",
                "http://x/",
            ])
            .arg("--key")
            .arg(&d.keys.vendor_key)
            .arg(&v1),
        b"",
    );
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success());
    assert!(stderr.contains("--decrypt-key"), "{stderr}");
}

#[test]
fn check_with_nothing_new() {
    let d = device();
    let v1 = d.package("v1", 1);
    d.fw_install(&v1);
    ok(d.index(&[&v1], &[]));
    exits(d.update(&["check"]), 0);
    assert_eq!(d.states(), ["checking", "updated"]);
    let last = d.events().pop().unwrap();
    assert_eq!(last["current_version"], "v1");
    assert_eq!(last["latest_version"], "v1");
    assert!(last["last_checked"].as_str().unwrap().ends_with('Z'));
    // Nothing was downloaded, and `install` with nothing new does nothing.
    exits(d.update(&["install"]), 0);
    assert!(d.server.requests("fw-v1.fw").is_empty());
    assert_eq!(d.current(), "v1");
    // The second fetch of the index was conditional (ETag), answered 304.
    let index_requests = d.server.requests("index.json");
    assert_eq!(index_requests.len(), 2);
    assert_eq!(index_requests[0].1, "-");
    assert!(index_requests[1].1.starts_with('"'), "{index_requests:?}");
    // Without --status, the events are stdout's only content.
    let out = exits(
        run(
            fw("fw-update")
                .args(["check", "--index", &d.server.url("index.json")])
                .arg("--target")
                .arg(&d.target)
                .arg("--keyring")
                .arg(&d.keys.keyring),
            b"",
        ),
        0,
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    for line in stdout.lines() {
        serde_json::from_str::<serde_json::Value>(line).unwrap();
    }
}

#[test]
fn new_version_is_downloaded_installed_and_updated() {
    let (d, v2) = device_on_v1_with_v2_published();
    exits(d.update(&["check"]), 0);
    assert_eq!(d.states(), ["checking", "update_available"]);
    assert_eq!(d.current(), "v1");
    d.clear_events();
    exits(d.update(&["install", "--full"]), 0);
    assert_eq!(
        d.states(),
        [
            "checking",
            "update_available",
            "downloading",
            "update_ready",
            "updating",
            "updated"
        ]
    );
    assert_eq!(d.current(), "v2");
    let events = d.events();
    let last = events.last().unwrap();
    assert_eq!(last["current_version"], "v2");
    assert_eq!(last["latest_version"], "v2");
    let size = std::fs::metadata(&v2).unwrap().len();
    let progress: Vec<u64> = events
        .iter()
        .filter_map(|e| e["progress"]["bytes"].as_u64())
        .collect();
    assert_eq!(progress.first(), Some(&0));
    assert_eq!(progress.last(), Some(&size));
    assert!(progress.windows(2).all(|w| w[0] <= w[1]), "{progress:?}");
    // The downloaded package was removed once installed.
    assert!(d.downloads().is_empty(), "{:?}", d.downloads());
    // Now nothing is new.
    d.clear_events();
    exits(d.update(&["run", "--once", "--auto-install", "--full"]), 0);
    assert_eq!(d.states(), ["checking", "updated"]);
}

/// The issue's "done when": v1 → v2 by `fw-update run` from a config file,
/// surviving a connection dropped half-way, every status event seen.
#[test]
fn dropped_connection_resumes_from_the_partial_file() {
    let (mut d, v2) = device_on_v1_with_v2_published();
    let config = d.tmp.path().join("update.toml");
    std::fs::write(
        &config,
        "auto_download = false\nauto_install = true\ncheck_interval = \"1h\"\n\
         download_retries = 0\nretry_interval = \"10ms\"\ndelta = false\n",
    )
    .unwrap();
    let size = std::fs::metadata(&v2).unwrap().len();
    d.server.control("drop-fw-v2.fw");
    let config_arg = config.to_str().unwrap();
    let out = exits(d.update(&["run", "--once", "--config", config_arg]), 1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("next run resumes"), "{stderr}");
    assert_eq!(
        d.states(),
        [
            "checking",
            "update_available",
            "downloading",
            "download_failed"
        ]
    );
    assert_eq!(d.current(), "v1");
    let parts = d.downloads();
    assert_eq!(parts.len(), 1, "{parts:?}");
    assert!(parts[0].ends_with(".fw.part"));
    let have = std::fs::metadata(d.target.join(".fw/downloads").join(&parts[0]))
        .unwrap()
        .len();
    assert!(have > 0 && have < size, "{have} of {size}");

    d.server.restart();
    d.clear_events();
    exits(d.update(&["run", "--once", "--config", config_arg]), 0);
    assert_eq!(
        d.states(),
        [
            "checking",
            "update_available",
            "downloading",
            "update_ready",
            "updating",
            "updated"
        ]
    );
    assert_eq!(d.current(), "v2");
    // The server saw one whole request, then one for the rest only.
    let requests: Vec<String> = d
        .server
        .requests("fw-v2.fw")
        .into_iter()
        .map(|(range, _)| range)
        .collect();
    assert_eq!(requests, ["-".to_string(), format!("bytes={have}-")]);
    // The resumed download started its progress at the partial size.
    let first = d
        .events()
        .into_iter()
        .find(|e| e["status"] == "downloading")
        .unwrap();
    assert_eq!(first["progress"]["bytes"], have);
}

#[test]
fn corrupted_download_is_refused_and_downloaded_again() {
    let (d, v2) = device_on_v1_with_v2_published();
    // The server flips a byte of the first transfer.
    d.server.control("corrupt-fw-v2.fw");
    let out = exits(d.update(&["download"]), 0);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(stderr.contains("refused"), "{stderr}");
    assert_eq!(d.server.requests("fw-v2.fw").len(), 2);
    assert_eq!(
        d.states(),
        [
            "checking",
            "update_available",
            "downloading",
            "update_ready"
        ]
    );
    let hex = blake3::hash(&std::fs::read(&v2).unwrap())
        .to_hex()
        .to_string();
    assert_eq!(d.downloads(), [format!("{hex}.fw")]);

    // A download damaged on the device's disk is refused before install.
    let stored = d.target.join(".fw/downloads").join(format!("{hex}.fw"));
    let mut bytes = std::fs::read(&stored).unwrap();
    bytes[1000] ^= 1;
    std::fs::write(&stored, bytes).unwrap();
    let out = exits(d.update(&["install", "--full"]), 0);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(stderr.contains("refused the downloaded"), "{stderr}");
    assert_eq!(d.server.requests("fw-v2.fw").len(), 3);
    assert_eq!(d.current(), "v2");

    // A server whose file never matches the signed index: exit 4.
    let (d, v2) = device_on_v1_with_v2_published();
    let mut bytes = std::fs::read(&v2).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&v2, bytes).unwrap();
    fails_with(d.update(&["install", "--full"]), 4);
    assert_eq!(d.states().last().unwrap(), "download_failed");
    assert_eq!(d.current(), "v1");
}

/// A complete answer shorter than the signed index's size (its own
/// Content-Length honoured) is not a dropped connection to resume: it is
/// refused like a longer file (exit 4), and nothing is kept.
#[test]
fn a_complete_but_short_package_is_refused_not_resumed() {
    let (d, v2) = device_on_v1_with_v2_published();
    let bytes = std::fs::read(&v2).unwrap();
    std::fs::write(&v2, &bytes[..bytes.len() - 100]).unwrap();
    let out = exits(
        d.update(&["install", "--full", "--download-retries", "0"]),
        4,
    );
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        stderr.contains("does not match the signed index"),
        "{stderr}"
    );
    // Downloaded from the start twice, as a longer file would be.
    assert_eq!(d.server.requests("fw-v2.fw").len(), 2);
    assert_eq!(d.states().last().unwrap(), "download_failed");
    assert!(d.downloads().is_empty(), "{:?}", d.downloads());
    assert_eq!(d.current(), "v1");
}

#[test]
fn a_gate_that_says_not_now_is_retried() {
    let (d, _v2) = device_on_v1_with_v2_published();
    let counter = d.tmp.path().join("gate-count");
    let calls = d.tmp.path().join("gate-calls");
    std::fs::write(&counter, "2").unwrap();
    let gate = d.tmp.path().join("gate");
    std::fs::write(
        &gate,
        format!(
            "#!/bin/sh\necho \"$FW_UPDATE_GATE $FW_UPDATE_VERSION retry=$2\" >> {calls}\n\
             n=$(cat {counter})\nif [ \"$n\" -gt 0 ]; then echo $((n - 1)) > {counter}; exit 3; fi\nexit 0\n",
            calls = calls.display(),
            counter = counter.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&gate, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let gate = gate.to_str().unwrap();
    exits(
        d.update(&[
            "install",
            "--download-gate",
            gate,
            "--retry-interval",
            "10ms",
        ]),
        0,
    );
    let log = std::fs::read_to_string(&calls).unwrap();
    assert_eq!(
        log.lines().collect::<Vec<_>>(),
        [
            "download v2 retry=0",
            "download v2 retry=1",
            "download v2 retry=2"
        ]
    );
    assert_eq!(d.current(), "v2");

    // An install gate that always says not now: given up after
    // max_retries, exit 3, nothing installed.
    let (d, _v2) = device_on_v1_with_v2_published();
    let out = d.update(&[
        "install",
        "--full",
        "--install-gate",
        "exit 3",
        "--retry-interval",
        "10ms",
        "--max-retries",
        "2",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    fails_with(out, 3);
    assert_eq!(stderr.matches("not now (exit 3)").count(), 2, "{stderr}");
    assert_eq!(d.states().last().unwrap(), "update_failed");
    assert_eq!(d.current(), "v1");
    // The download stays for the next attempt.
    assert_eq!(d.downloads().len(), 1);
}

#[test]
fn tampered_index_is_refused() {
    let (d, _v2) = device_on_v1_with_v2_published();
    let path = d.server.www.join("index.json");
    let json = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, json.replace("\"v2\"", "\"v3\"")).unwrap();
    let out = d.update(&["install"]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    fails_with(out, 4);
    assert!(stderr.contains("signature"), "{stderr}");
    assert_eq!(d.states(), ["checking", "check_failed"]);
    assert!(d.server.requests("fw-v2.fw").is_empty());

    // Signed by a key the device does not trust.
    let stranger = d.tmp.path().join("stranger.key");
    std::fs::write(
        &stranger,
        ok(run(fw("fw-sign").args(["keygen", "--userid", "x"]), b"")),
    )
    .unwrap();
    let v2 = d.server.www.join("fw-v2.fw");
    // The stranger's index cannot even read the vendor's packages as its
    // own: it signs an index of its own package.
    let out = d.index_with(&stranger, &[&v2], &[]);
    assert!(!out.status.success());
    let mut pack = fw("fw-sign");
    let tree = sample_tree(d.tmp.path(), "fw");
    let evil = d.server.www.join("fw-evil.fw");
    pack.args(["-q", "pack", "--version", "evil", "--key"])
        .arg(&stranger)
        .arg(&tree)
        .stdout(std::fs::File::create(&evil).unwrap());
    assert!(pack.status().unwrap().success());
    ok(d.index_with(&stranger, &[&evil], &[]));
    d.clear_events();
    fails_with(d.update(&["install"]), 4);
    assert_eq!(d.states(), ["checking", "check_failed"]);
    assert!(d.server.requests("fw-evil.fw").is_empty());
    assert_eq!(d.current(), "v1");
}

#[test]
fn stale_index_is_refused() {
    // Expired: the device's clock is three days past a one-day index.
    let (d, _v2) = device_on_v1_with_v2_published();
    ok(d.index(
        &[
            &d.server.www.join("fw-v1.fw"),
            &d.server.www.join("fw-v2.fw"),
        ],
        &["--expires", "1d"],
    ));
    let cmd = d.update_cmd(&["install"]);
    let program = cmd.get_program().to_owned();
    let mut faked = Command::new("faketime");
    faked.args(["-f", "+3d"]).arg(program).args(cmd.get_args());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(value) => faked.env(key, value),
            None => faked.env_remove(key),
        };
    }
    let out = run(&mut faked, b"");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    fails_with(out, 4);
    assert!(stderr.contains("expired"), "{stderr}");
    assert_eq!(d.current(), "v1");

    // Below the installed security_version: a rollback.
    let d = device();
    let old = d.package("v1", 1);
    let new = d.package("v2", 2);
    d.fw_install(&new);
    ok(d.index(&[&old], &[]));
    let out = d.update(&["install"]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    fails_with(out, 4);
    assert!(stderr.contains("below the installed 2"), "{stderr}");
    assert_eq!(d.states(), ["checking", "check_failed"]);
    assert!(d.server.requests("fw-v1.fw").is_empty());

    // Older than an index the device already accepted: a replay.
    let d = device();
    let v1 = d.package("v1", 1);
    d.fw_install(&v1);
    let future = |secs: u64| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        (now + secs).to_string()
    };
    let index_at = |epoch: String| {
        let mut cmd = fw("fw-sign");
        cmd.env("SOURCE_DATE_EPOCH", epoch)
            .arg("index")
            .arg("--key")
            .arg(&d.keys.vendor_key)
            .arg("--decrypt-key")
            .arg(&d.keys.device_key)
            .args(["--base-url", &d.server.url("")])
            .arg(&v1)
            .stdout(std::fs::File::create(d.server.www.join("index.json")).unwrap());
        assert!(cmd.status().unwrap().success());
    };
    index_at(future(2000));
    exits(d.update(&["check"]), 0);
    index_at(future(1000));
    let out = d.update(&["check"]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    fails_with(out, 4);
    assert!(stderr.contains("replayed"), "{stderr}");
}

#[test]
fn usage_errors_exit_2() {
    let d = device();
    let out = run(
        fw("fw-update")
            .env_remove("FW_UPDATE_CONFIG")
            .arg("check")
            .arg("--target")
            .arg(&d.target),
        b"",
    );
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    fails_with(out, 2);
    assert!(stderr.contains("--index"), "{stderr}");
    let config = d.tmp.path().join("bad.toml");
    std::fs::write(&config, "auto_instal = true\n").unwrap();
    let out = d.update(&["check", "--config", config.to_str().unwrap()]);
    fails_with(out, 2);
}

#[test]
fn an_empty_target_installs_the_only_firmware_listed() {
    let d = device();
    let v1 = d.package("v1", 1);
    ok(d.index(&[&v1], &[]));
    exits(d.update(&["install"]), 0);
    assert_eq!(d.current(), "v1");
    let last = d.events().pop().unwrap();
    assert_eq!(last["status"], "updated");
    assert_eq!(last["current_version"], "v1");
}

/// Runs `cmd` to its end, failing the test (and killing it) if it is still running after
/// `limit`: a hang detector, not a measurement.
fn within(limit: std::time::Duration, cmd: &mut Command) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::SIGKILL);
            panic!("{cmd:?} still ran after {limit:?}: it hangs");
        }
    }
}

/// Reads an HTTP request's head; false if the client went away first.
fn read_request(stream: &mut std::net::TcpStream) -> bool {
    use std::io::Read;
    let mut request = Vec::new();
    let mut byte = [0u8; 1];
    while !request.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => request.push(byte[0]),
            _ => return false,
        }
    }
    true
}

/// A server that answers every request with headers, 100 bytes of a 1 MB body, and
/// then nothing, holding the connection open until the client closes it.
fn stalling_server() -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                if !read_request(&mut stream) {
                    return;
                }
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\nAccept-Ranges: bytes\r\n\r\n",
                );
                let _ = stream.write_all(&[0x55; 100]);
                let _ = stream.flush();
                // Until the client gives up.
                let _ = stream.read(&mut [0u8; 1]);
            });
        }
    });
    port
}

/// A server that sends `body` at about 2 KiB/s: above a stall speed of
/// 1000 bytes/s, and slow enough that a package of hundreds of KB takes
/// minutes. Its pace is the attack, not a synchronisation.
fn trickling_server(body: Vec<u8>) -> u16 {
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let body = std::sync::Arc::new(body);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let body = std::sync::Arc::clone(&body);
            std::thread::spawn(move || {
                if !read_request(&mut stream) {
                    return;
                }
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
                if stream.write_all(head.as_bytes()).is_err() {
                    return;
                }
                for chunk in body.chunks(512) {
                    if stream
                        .write_all(chunk)
                        .and_then(|()| stream.flush())
                        .is_err()
                    {
                        return;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(250));
                }
            });
        }
    });
    port
}

/// The second attack round: a server trickling a package just above the
/// stall speed held `fw-install URL` and the target's lock for as long
/// as it liked. --max-time ends it: exit 1, why, the lock free, nothing
/// left.
#[test]
fn a_transfer_longer_than_max_time_ends_and_frees_the_lock() {
    let d = device();
    let v1 = d.package("v1", 1);
    let port = trickling_server(std::fs::read(&v1).unwrap());
    let url = format!("http://127.0.0.1:{port}/fw-v1.fw");
    let out = within(
        std::time::Duration::from_secs(90),
        &mut d.fw_install_cmd(
            &[
                "--stall-speed",
                "1000",
                "--stall-time",
                "2",
                "--max-time",
                "3",
            ],
            url.as_ref(),
        ),
    );
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    fails_with(out, 1);
    assert!(stderr.contains("--max-time 3 s"), "{stderr}");
    assert_eq!(d.versions_and_staging(), (vec![], vec![]));
    d.fw_install(&v1);
    assert_eq!(d.current(), "v1");
    let out = run(
        &mut d.fw_install_cmd(&["--max-time", "-1"], url.as_ref()),
        b"",
    );
    fails_with(out, 2);

    // fw-update install --stream passes its max_time.
    let v2 = d.package("v2", 1);
    let port = trickling_server(std::fs::read(&v2).unwrap());
    ok(d.index_with_base(&format!("http://127.0.0.1:{port}/"), &[&v2]));
    let config = d.tmp.path().join("update.toml");
    std::fs::write(&config, "max_time = \"3s\"\nstall_speed = 1000\n").unwrap();
    let config = config.to_str().unwrap();
    let out = within(
        std::time::Duration::from_secs(90),
        &mut d.update_cmd(&["install", "--stream", "--config", config]),
    );
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    fails_with(out, 1);
    assert!(stderr.contains("--max-time 3 s"), "{stderr}");
    assert_eq!(d.states().last().unwrap(), "update_failed");
    assert_eq!(d.current(), "v1");
    assert_eq!(d.versions_and_staging().1, Vec::<String>::new());
}

/// Issue 13 item 7: a server that sends headers and 100 bytes, then stalls. Every
/// install ends within the configured stall time, says why, and frees the lock.
#[test]
fn a_stalled_transfer_ends_says_why_and_frees_the_lock() {
    let limit = std::time::Duration::from_secs(90);
    let stall = stalling_server();
    let url = format!("http://127.0.0.1:{stall}/fw-v2.fw");

    // fw-install URL.
    let d = device();
    let out = within(
        limit,
        &mut d.fw_install_cmd(
            &["--stall-speed", "1000", "--stall-time", "2"],
            url.as_ref(),
        ),
    );
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    fails_with(out, 1);
    assert!(
        stderr.contains("stalled") && stderr.contains("1000 bytes/s for 2 s"),
        "{stderr}"
    );
    assert_eq!(d.versions_and_staging(), (vec![], vec![]));
    // The lock is free: the next install is not busy.
    let v1 = d.package("v1", 1);
    d.fw_install(&v1);
    assert_eq!(d.current(), "v1");

    // fw-update download and install --stream, the package's URL on the stalling server.
    let v2 = d.package("v2", 1);
    ok(d.index_with_base(&format!("http://127.0.0.1:{stall}/"), &[&v2]));
    let config = d.tmp.path().join("update.toml");
    std::fs::write(
        &config,
        "stall_speed = 1000\nstall_time = \"2s\"\ndownload_retries = 0\n",
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let out = within(limit, &mut d.update_cmd(&["download", "--config", config]));
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    fails_with(out, 1);
    assert!(stderr.contains("stalled"), "{stderr}");
    assert_eq!(d.states().last().unwrap(), "download_failed");
    d.clear_events();
    let out = within(
        limit,
        &mut d.update_cmd(&["install", "--stream", "--config", config]),
    );
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    fails_with(out, 1);
    assert!(stderr.contains("stalled"), "{stderr}");
    assert_eq!(d.states().last().unwrap(), "update_failed");
    assert!(!stderr.contains("updated to"), "{stderr}");
    assert_eq!(d.current(), "v1");
    assert_eq!(d.versions_and_staging().1, Vec::<String>::new());
    // Neither fw-update's lock nor the target's is held.
    exits(d.update(&["check"]), 0);
    let v3 = d.package("v3", 1);
    d.fw_install(&v3);
    assert_eq!(d.current(), "v3");
}

/// Issue 13 item 6: another vendor-signed product served at the URL of the index's
/// entry is refused before the switch, in every mode: nothing switched, nothing left,
/// never "updated to".
#[test]
fn a_different_product_at_the_entrys_url_is_refused_in_every_mode() {
    let (d, v2) = device_on_v1_with_v2_published();
    let other = d.package_as("other", "9", 9);
    std::fs::copy(&other, &v2).unwrap();
    let check = |out: Output, d: &Device| {
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        fails_with(out, 4);
        assert!(
            stderr.contains("\"other\"") && stderr.contains("index"),
            "{stderr}"
        );
        assert!(!stderr.contains("updated to"), "{stderr}");
        assert_eq!(d.states().last().unwrap(), "update_failed");
        assert!(d.events().iter().all(|e| e["status"] != "updated"));
        assert_eq!(d.current(), "v1");
        assert_eq!(d.versions_and_staging(), (vec!["fw".to_string()], vec![]));
    };
    // Streamed: nothing checks the bytes against the index's BLAKE3.
    check(d.update(&["install", "--stream"]), &d);
    // By delta (the default with a version installed): neither.
    d.clear_events();
    check(d.update(&["install"]), &d);

    // Downloaded: an index that lists the other product's bytes as `fw v2` (a vendor's
    // mistake, or a signing key used for two products) passes the BLAKE3 check.
    d.clear_events();
    let json = std::fs::read_to_string(d.server.www.join("index.json")).unwrap();
    let mut index: serde_json::Value = serde_json::from_str(&json).unwrap();
    let bytes = std::fs::read(&v2).unwrap();
    for entry in index["entries"].as_array_mut().unwrap() {
        if entry["version"] == "v2" {
            entry["size"] = bytes.len().into();
            entry["blake3"] = blake3::hash(&bytes).to_hex().as_str().into();
        }
    }
    let json = serde_json::to_vec(&index).unwrap();
    std::fs::write(d.server.www.join("index.json"), &json).unwrap();
    let gpg = Gpg::new();
    gpg.import(&d.keys.vendor_key);
    let sig = gpg.ok(&["--armor", "--detach-sign"], &json);
    std::fs::write(d.server.www.join("index.json.sig"), sig).unwrap();
    check(d.update(&["install", "--full"]), &d);
}
