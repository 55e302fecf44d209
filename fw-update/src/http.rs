//! HTTP(S) through `curl`, a child process: it is on every device and does
//! TLS, proxies, redirects and Range. curl writes the response headers
//! (`-D -`) and then the body on its stdout; we read the final header block
//! first, so that the caller knows the status before it takes a byte.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::thread::JoinHandle;

use fw_core::{Error, Result};

/// The final response's status and headers (names lowercased).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The start of a `Content-Range: bytes START-END/TOTAL`.
    pub fn range_start(&self) -> Option<u64> {
        let value = self.header("content-range")?;
        let rest = value.trim().strip_prefix("bytes")?.trim_start();
        rest.split('-').next()?.trim().parse().ok()
    }
}

/// Reads header blocks until the final one (skipping 1xx and followed
/// redirects). `None` if curl wrote no headers at all.
pub fn read_headers<R: BufRead>(reader: &mut R) -> std::io::Result<Option<Response>> {
    let mut last: Option<Response> = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(last);
        }
        let line = line.trim_end();
        if line.is_empty() {
            continue;
        }
        let status: u16 = match line.split_whitespace().nth(1).and_then(|s| s.parse().ok()) {
            Some(status) if line.starts_with("HTTP/") => status,
            _ => {
                return Err(std::io::Error::other(format!(
                    "not an HTTP status line: {line:?}"
                )))
            }
        };
        let mut response = Response {
            status,
            headers: Vec::new(),
        };
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header)? == 0 {
                break;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                response
                    .headers
                    .push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
            }
        }
        let more = (100..200).contains(&status)
            || ((300..400).contains(&status) && response.header("location").is_some())
            // A proxy's answer to CONNECT precedes the server's.
            || (status == 200
                && line.to_ascii_lowercase().contains("connection established"));
        if !more {
            return Ok(Some(response));
        }
        last = Some(response);
    }
}

/// A running transfer.
pub struct Transfer {
    child: Child,
    pub body: BufReader<ChildStdout>,
    stderr: Option<JoinHandle<String>>,
    pub url: String,
}

/// How curl ended.
pub struct Ended {
    pub code: Option<i32>,
    pub stderr: String,
}

impl Ended {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }
    /// One line saying why, for messages.
    pub fn why(&self) -> String {
        let last = self
            .stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim();
        match self.code {
            Some(code) if last.is_empty() => format!("curl exit {code}"),
            Some(code) => format!("curl exit {code}: {last}"),
            None => "curl was killed".to_string(),
        }
    }
}

/// Starts `curl` on `url` with `extra` arguments and reads the response
/// headers. `Ok((transfer, None))` if no response came (curl says why).
pub fn start(url: &str, extra: &[String]) -> Result<(Transfer, Option<Response>)> {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "-L",
        "--max-redirs",
        "10",
        "--proto",
        "=http,https",
        "--proto-redir",
        "=http,https",
        "--connect-timeout",
        "30",
        // A transfer stalled for a minute is given up (and resumed later).
        "--speed-limit",
        "1",
        "--speed-time",
        "60",
        "-D",
        "-",
    ])
    .args(extra)
    .arg("--url")
    .arg(url)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| {
        Error::failed(format!(
            "cannot run curl ({e}): install curl (apt-get install curl)"
        ))
    })?;
    let mut stderr_pipe = child.stderr.take().expect("piped stderr");
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr_pipe.read_to_string(&mut text);
        text
    });
    let mut body = BufReader::with_capacity(256 << 10, child.stdout.take().expect("piped stdout"));
    let headers = read_headers(&mut body);
    let mut transfer = Transfer {
        child,
        body,
        stderr: Some(stderr),
        url: url.to_string(),
    };
    match headers {
        Ok(response) => Ok((transfer, response)),
        Err(e) => {
            transfer.kill();
            Err(Error::failed(format!(
                "{url}: unreadable response from curl: {e}"
            )))
        }
    }
}

impl Transfer {
    /// Waits for curl to end (after the body was read to its end).
    pub fn finish(mut self) -> Ended {
        // Drain what is left so curl never blocks on a full pipe.
        let _ = std::io::copy(&mut self.body, &mut std::io::sink());
        let status = self.child.wait().ok();
        let stderr = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        Ended {
            code: status.and_then(|s| s.code()),
            stderr,
        }
    }

    /// Stops curl now.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(h) = self.stderr.take() {
            let _ = h.join();
        }
    }
}

/// GETs a small document (at most `limit` bytes). `etag`: sent as
/// If-None-Match; a 304 gives `Ok(None)`.
pub fn get_small(url: &str, etag: Option<&str>, limit: u64) -> Result<Option<(Vec<u8>, Response)>> {
    let mut extra = vec!["--max-time".to_string(), "120".to_string()];
    if let Some(etag) = etag {
        extra.push("-H".into());
        extra.push(format!("If-None-Match: {etag}"));
    }
    let (mut transfer, response) = start(url, &extra)?;
    let Some(response) = response else {
        let ended = transfer.finish();
        return Err(Error::failed(format!(
            "cannot fetch {url}: {}; check the network and the URL",
            ended.why()
        )));
    };
    let mut body = Vec::new();
    let read = (&mut transfer.body).take(limit + 1).read_to_end(&mut body);
    if body.len() as u64 > limit {
        transfer.kill();
        return Err(Error::invalid(format!(
            "{url} is larger than {limit} bytes: not an fw index"
        )));
    }
    let ended = transfer.finish();
    if response.status == 304 && etag.is_some() {
        return Ok(None);
    }
    if response.status != 200 {
        return Err(Error::failed(format!(
            "{url}: the server answered HTTP {}; check the URL and that it is published",
            response.status
        )));
    }
    if let Err(e) = read {
        return Err(Error::failed(format!("cannot fetch {url}: {e}")));
    }
    if !ended.ok() {
        return Err(Error::failed(format!(
            "cannot fetch {url}: {}; check the network",
            ended.why()
        )));
    }
    Ok(Some((body, response)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_block_after_continue_and_redirect() {
        let text = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 302 Found\r\nLocation: /b\r\n\r\nHTTP/2 206 \r\ncontent-range: bytes 10-19/20\r\nETag: \"x\"\r\n\r\nBODY";
        let mut reader = std::io::Cursor::new(text.as_bytes());
        let response = read_headers(&mut reader).unwrap().unwrap();
        assert_eq!(response.status, 206);
        assert_eq!(response.range_start(), Some(10));
        assert_eq!(response.header("etag"), Some("\"x\""));
        let mut rest = String::new();
        reader.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "BODY");
    }

    #[test]
    fn no_headers_is_none_and_garbage_is_an_error() {
        assert_eq!(read_headers(&mut std::io::Cursor::new(b"")).unwrap(), None);
        assert!(read_headers(&mut std::io::Cursor::new(b"hello\r\n\r\n")).is_err());
    }
}
