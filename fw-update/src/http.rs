//! HTTP(S) through `curl`, a child process run by fw-nbio: curl is on every
//! device and does TLS, proxies, redirects and Range. curl writes the response
//! headers (`-D -`) and then the body on its stdout; we read the final header
//! block first, so that the caller knows the status before it takes a byte.
//! A transfer under the stall speed for the stall time is abandoned by curl
//! (exit 28); dropping a transfer kills curl.

use std::io::{self, BufRead, Read};
use std::time::Duration;

use fw_core::{Error, Result};
use fw_nbio::{Failure, Process, Running};

/// The longest a small document (the index, its signature) may take.
const SMALL_MAX_TIME: Duration = Duration::from_secs(120);

/// Stall detection, as curl's `--speed-limit` and `--speed-time` take it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stall {
    /// Bytes per second...
    pub speed: u32,
    /// ...under which a transfer may stay this many seconds.
    pub secs: u64,
}

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

/// A running transfer: curl's stdout, read as it comes.
pub struct Transfer {
    running: Running,
    chunk: Vec<u8>,
    pos: usize,
    ended: Option<Ended>,
    stall: Stall,
    pub url: String,
}

/// How curl ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    Ok,
    /// Why, in one line.
    Failed(String),
}

impl Ended {
    pub fn ok(&self) -> bool {
        *self == Ended::Ok
    }

    /// One line saying why, for messages.
    pub fn why(&self) -> String {
        match self {
            Ended::Ok => "curl succeeded".into(),
            Ended::Failed(why) => why.clone(),
        }
    }

    fn from_error(err: fw_nbio::Error, stall: Stall) -> Ended {
        let Some(failed) = err.process() else {
            return Ended::Failed(format!("curl: {err}"));
        };
        let last = failed.stderr_tail.lines().last().unwrap_or("").trim();
        Ended::Failed(match &failed.failure {
            Failure::Exit(28) => format!(
                "the transfer stalled or timed out: under {} bytes/s for {} s, or no \
                 connection in 30 s ({last})",
                stall.speed, stall.secs
            ),
            Failure::Exit(code) if last.is_empty() => format!("curl exit {code}"),
            Failure::Exit(code) => format!("curl exit {code}: {last}"),
            other => format!("curl {other}"),
        })
    }
}

/// Starts `curl` on `url` with `extra` arguments and reads the response
/// headers. `Ok((transfer, None))` if no response came (curl says why).
pub fn start(
    url: &str,
    extra: &[String],
    stall: Stall,
    max_time: Option<Duration>,
) -> Result<(Transfer, Option<Response>)> {
    let mut curl = Process::new("curl")
        .args([
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
        ])
        .arg("--speed-limit")
        .arg(stall.speed.to_string())
        .arg("--speed-time")
        .arg(stall.secs.to_string())
        .args(["-D", "-"])
        .args(extra)
        .arg("--url")
        .arg(url)
        .capture_stderr()
        .die_with_parent();
    if let Some(max) = max_time {
        // curl's own --max-time says why; this is in case curl itself hangs.
        curl = curl
            .arg("--max-time")
            .arg(max.as_secs().to_string())
            .timeout(max + Duration::from_secs(30));
    }
    let running = curl.spawn().map_err(|e| match e {
        fw_nbio::Error::Spawn { error, .. } => Error::failed(format!(
            "cannot run curl ({error}): install curl (apt-get install curl)"
        )),
        other => Error::failed(format!("cannot run curl: {other}")),
    })?;
    let mut transfer = Transfer {
        running,
        chunk: Vec::new(),
        pos: 0,
        ended: None,
        stall,
        url: url.to_string(),
    };
    match read_headers(&mut transfer) {
        Ok(response) => Ok((transfer, response)),
        Err(e) => Err(Error::failed(format!(
            "{url}: unreadable response from curl: {e}"
        ))),
    }
}

impl Transfer {
    /// Reads the rest and waits for curl to end.
    pub fn finish(mut self) -> Ended {
        let _ = io::copy(&mut self, &mut io::sink());
        self.ended.take().unwrap_or(Ended::Ok)
    }

    /// Stops curl now (with its process group) and reaps it.
    pub fn kill(mut self) {
        self.running.kill();
    }
}

impl Read for Transfer {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for Transfer {
    /// The body as curl gives it; at its end (empty), how curl ended is known.
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.pos == self.chunk.len() && self.ended.is_none() {
            match self.running.next() {
                Some(Ok(chunk)) => {
                    self.chunk = chunk;
                    self.pos = 0;
                }
                Some(Err(e)) => self.ended = Some(Ended::from_error(e, self.stall)),
                None => self.ended = Some(Ended::Ok),
            }
        }
        Ok(&self.chunk[self.pos..])
    }

    fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.chunk.len());
    }
}

/// GETs a small document (at most `limit` bytes). `etag`: sent as
/// If-None-Match; a 304 gives `Ok(None)`.
pub fn get_small(
    url: &str,
    etag: Option<&str>,
    limit: u64,
    stall: Stall,
) -> Result<Option<(Vec<u8>, Response)>> {
    let mut extra = Vec::new();
    if let Some(etag) = etag {
        extra.push("-H".into());
        extra.push(format!("If-None-Match: {etag}"));
    }
    let (mut transfer, response) = start(url, &extra, stall, Some(SMALL_MAX_TIME))?;
    let Some(response) = response else {
        let ended = transfer.finish();
        return Err(Error::failed(format!(
            "cannot fetch {url}: {}; check the network and the URL",
            ended.why()
        )));
    };
    let mut body = Vec::new();
    let read = (&mut transfer).take(limit + 1).read_to_end(&mut body);
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
