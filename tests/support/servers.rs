//! Real HTTP servers on 127.0.0.1 for the delta tests: nginx from Debian
//! (as a CDN would serve the packages: Range, multi-range, ETag,
//! If-Range), Python's http.server (no Range at all), and a small lying
//! proxy in front of nginx that breaks its answers on command.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// nginx serving `www`, started by the test on an ephemeral port: the
/// test binds the socket and nginx inherits it (`NGINX=fd;`), so there is
/// no race for the port.
pub struct Nginx {
    child: Child,
    pub port: u16,
    pub dir: PathBuf,
    pub www: PathBuf,
    pub access_log: PathBuf,
}

impl Nginx {
    /// Starts nginx on `www` with `extra` lines in its `server` block
    /// (e.g. `limit_rate 100k;`).
    pub fn start(dir: &Path, www: &Path, extra: &str) -> Nginx {
        use std::os::fd::AsRawFd;
        use std::os::unix::process::CommandExt;
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().unwrap().port();
        let fd = listener.as_raw_fd();
        let access_log = dir.join("access.log");
        let user = if nix::unistd::geteuid().is_root() {
            // Workers read the test's private directories.
            "user root;"
        } else {
            ""
        };
        let d = dir.display();
        let config = format!(
            "{user}
daemon off;
master_process on;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 64; }}
http {{
  log_format bytes '$request $status $bytes_sent \"$http_range\" \"$http_if_range\"';
  access_log {log} bytes;
  default_type application/octet-stream;
  client_body_temp_path {d}/tmp;
  proxy_temp_path {d}/tmp;
  fastcgi_temp_path {d}/tmp;
  uwsgi_temp_path {d}/tmp;
  scgi_temp_path {d}/tmp;
  server {{
    listen 127.0.0.1:{port};
    root {www};
    {extra}
  }}
}}
",
            log = access_log.display(),
            www = www.display(),
        );
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, config).unwrap();
        let mut cmd = Command::new("nginx");
        cmd.arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(dir.join("error.log"))
            .env("NGINX", format!("{fd};"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: only clears FD_CLOEXEC on the listening socket in the
        // child, between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let flags = nix::libc::fcntl(fd, nix::libc::F_GETFD);
                nix::libc::fcntl(fd, nix::libc::F_SETFD, flags & !nix::libc::FD_CLOEXEC);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .expect("nginx runs (apt-get install nginx; scripts/deps installs it)");
        drop(listener);
        let nginx = Nginx {
            child,
            port,
            dir: dir.to_path_buf(),
            www: www.to_path_buf(),
            access_log,
        };
        nginx.wait_ready();
        nginx
    }

    fn wait_ready(&self) {
        // The socket accepts at once (the kernel queues the connection);
        // a request is answered once a worker runs.
        let out = Command::new("curl")
            .args([
                "-sS",
                "-o",
                "/dev/null",
                "--retry",
                "20",
                "--retry-connrefused",
            ])
            .args(["--retry-delay", "0", "--max-time", "20"])
            .arg(format!("http://127.0.0.1:{}/", self.port))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "nginx does not answer: {}",
            std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
        );
    }

    pub fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}", self.port)
    }

    /// The access log's lines for `name` (request, status, bytes sent
    /// with headers, Range, If-Range), and empties the log.
    pub fn take_log(&self) -> Vec<String> {
        let text = std::fs::read_to_string(&self.access_log).unwrap_or_default();
        std::fs::write(&self.access_log, b"").unwrap();
        text.lines()
            .filter(|l| !l.starts_with("GET / "))
            .map(String::from)
            .collect()
    }

    /// Bytes nginx sent ($bytes_sent, headers included) for the lines of
    /// `log` that name `name`.
    pub fn bytes_sent(log: &[String], name: &str) -> u64 {
        log.iter()
            .filter(|l| l.contains(&format!("/{name} ")))
            .filter_map(|l| l.split_whitespace().nth(4)?.parse::<u64>().ok())
            .sum()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: a fast shutdown of the master and its worker.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

/// A Python HTTP server: `python3 -m http.server`, which ignores Range.
pub struct PlainHttp {
    child: Child,
    pub port: u16,
}

impl PlainHttp {
    pub fn start(www: &Path) -> PlainHttp {
        let mut child = Command::new("python3")
            .args(["-u", "-m", "http.server", "--bind", "127.0.0.1", "0"])
            .current_dir(www)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs http.server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        // "Serving HTTP on 127.0.0.1 port 41234 (http://127.0.0.1:41234/) ..."
        let port = line
            .split(" port ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("http.server said {line:?}"));
        PlainHttp { child, port }
    }

    pub fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for PlainHttp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A proxy in front of nginx that lies on command: the word in its
/// control file `mode` says how (see [`PROXY`]); `requests` counts the
/// requests it served. It streams what nginx says otherwise.
pub struct LyingProxy {
    child: Child,
    pub port: u16,
    pub ctl: PathBuf,
}

/// The proxy. Modes (the control file's first word; `pass` if absent),
/// applied from the request numbered by the file's second word on (1 if
/// absent), counted in the file `requests`:
/// - `pass`: nginx's answer as it is;
/// - `shift`: asks nginx for every range one byte later (the answer's
///   ranges do not match the asked ones);
/// - `whole`: drops the Range and If-Range headers (a 200 with the whole
///   package);
/// - `short`: cuts the body 100 bytes short and says so in its
///   Content-Length (a complete answer that lacks bytes);
/// - `long`: 100 bytes of garbage after the body, counted in its
///   Content-Length;
/// - `drop`: closes the connection half-way through the body (a network
///   failure);
/// - `whole-drop`, `whole-stall`: as `whole`, and the connection closes
///   half-way through the body, or nothing comes after the body's first
///   100 bytes until the client gives up (a server without Range, then a
///   network failure or a stall);
/// - `swap:FILE`: before answering, moves www/FILE over the asked file
///   (the package is replaced on the server between two requests).
pub const PROXY: &str = r#"
import http.client, http.server, os, sys
upstream, ctl, www = int(sys.argv[1]), sys.argv[2], sys.argv[3]

def mode():
    try:
        words = open(os.path.join(ctl, 'mode')).read().split()
    except OSError:
        return 'pass'
    start = int(words[1]) if len(words) > 1 else 1
    return words[0] if count >= start else 'pass'

count = 0

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    def log_message(self, *args):
        pass

    def do_GET(self):
        global count
        count += 1
        with open(os.path.join(ctl, 'requests'), 'w') as f:
            f.write(str(count))
        m = mode()
        if m.startswith('swap:'):
            os.replace(os.path.join(www, m[5:]), os.path.join(www, self.path.lstrip('/')))
        headers = {}
        for name in ('Range', 'If-Range'):
            if self.headers.get(name) and not m.startswith('whole'):
                headers[name] = self.headers[name]
        if m == 'shift' and 'Range' in headers:
            spans = headers['Range'][6:].split(',')
            moved = []
            for s in spans:
                a, b = s.split('-')
                moved.append('%d-%s' % (int(a) + 1, str(int(b) + 1) if b else ''))
            headers['Range'] = 'bytes=' + ','.join(moved)
        conn = http.client.HTTPConnection('127.0.0.1', upstream)
        conn.request('GET', self.path, headers=headers)
        r = conn.getresponse()
        body = r.read()
        if m == 'short':
            body = body[:-100]
        elif m == 'long':
            body = body + b'\x00garbage' * 12 + b'\x00' * 4
        self.send_response(r.status)
        for name, value in r.getheaders():
            if name.lower() not in ('content-length', 'connection', 'transfer-encoding', 'server', 'date'):
                self.send_header(name, value)
        self.send_header('Content-Length', str(len(body)))
        if m in ('drop', 'whole-drop'):
            self.send_header('Connection', 'close')
        self.end_headers()
        if m == 'whole-stall':
            self.wfile.write(body[:100])
            self.wfile.flush()
            # Until the client closes the connection.
            self.rfile.read()
            self.close_connection = True
            return
        if m in ('drop', 'whole-drop'):
            self.wfile.write(body[:len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
            return
        self.wfile.write(body)

server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

impl LyingProxy {
    pub fn start(dir: &Path, nginx: &Nginx) -> LyingProxy {
        let ctl = dir.join("proxy-ctl");
        std::fs::create_dir_all(&ctl).unwrap();
        let script = dir.join("proxy.py");
        std::fs::write(&script, PROXY).unwrap();
        let mut child = Command::new("python3")
            .arg("-u")
            .arg(&script)
            .arg(nginx.port.to_string())
            .arg(&ctl)
            .arg(&nginx.www)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs the proxy");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().expect("the proxy prints its port");
        LyingProxy { child, port, ctl }
    }

    /// Lies from now on (`mode` as in [`PROXY`]), from request `from` on.
    pub fn lie(&self, mode: &str, from: u32) {
        std::fs::write(self.ctl.join("mode"), format!("{mode} {from}")).unwrap();
    }

    pub fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for LyingProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
