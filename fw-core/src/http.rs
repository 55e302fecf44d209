//! HTTP(S) through `curl`, a child process run by fw-nbio: curl is on
//! every device and does TLS, proxies, redirects and Range. curl writes the
//! response headers (`-D -`) and then the body on its stdout; the final
//! header block is read first, so that the caller knows the status before
//! it takes a byte. A transfer under the stall speed for the stall time is
//! abandoned by curl (exit 28); dropping a transfer kills curl. Used by
//! fw-update (the index, the package) and fw-fetch (ranges).
//!
//! What a server sends is bounded before it is kept: header lines (8 KiB
//! each, 200 in all).

use std::io::{self, BufRead, Read};
use std::time::Duration;

use fw_nbio::{Failure, Process, Running};

use crate::error::{Error, Result};

/// The longest response header line, and the most header lines, read.
const MAX_LINE: usize = 8 << 10;
const MAX_LINES: usize = 200;

/// Stall detection, as curl's `--speed-limit` and `--speed-time` take it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stall {
    /// Bytes per second...
    pub speed: u32,
    /// ...under which a transfer may stay this many seconds.
    pub secs: u64,
}

impl Default for Stall {
    /// fw-install's and fw-update's defaults: 1 KiB/s for a minute.
    fn default() -> Stall {
        Stall {
            speed: 1024,
            secs: 60,
        }
    }
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
        self.header("content-range")
            .and_then(parse_content_range)
            .map(|(start, _, _)| start)
    }

    /// A strong ETag (a weak one cannot be used with If-Range).
    pub fn strong_etag(&self) -> Option<&str> {
        self.header("etag").filter(|e| e.starts_with('"'))
    }

    pub fn content_length(&self) -> Option<u64> {
        self.header("content-length")?.trim().parse().ok()
    }
}

/// `bytes START-END/TOTAL` as (start, end exclusive, total).
pub fn parse_content_range(value: &str) -> Option<(u64, u64, u64)> {
    let rest = value.trim().strip_prefix("bytes ")?;
    let (span, total) = rest.split_once('/')?;
    let (start, end) = span.split_once('-')?;
    let (start, end, total): (u64, u64, u64) = (
        start.trim().parse().ok()?,
        end.trim().parse().ok()?,
        total.trim().parse().ok()?,
    );
    (start <= end && end < total).then_some((start, end + 1, total))
}

/// Reads a line of at most 8 KiB, without its line end. `None` at the end
/// of the input.
pub fn read_line(reader: &mut impl BufRead) -> io::Result<Option<String>> {
    let mut line = Vec::new();
    loop {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            return Ok((!line.is_empty()).then(|| String::from_utf8_lossy(&line).into_owned()));
        }
        let (take, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        if line.len() + take > MAX_LINE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("a line longer than {MAX_LINE} bytes"),
            ));
        }
        line.extend_from_slice(&available[..take]);
        reader.consume(take);
        if done {
            while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                line.pop();
            }
            return Ok(Some(String::from_utf8_lossy(&line).into_owned()));
        }
    }
}

/// Reads header blocks until the final one (skipping 1xx and followed
/// redirects). `None` if curl wrote no headers at all.
pub fn read_headers(reader: &mut impl BufRead) -> io::Result<Option<Response>> {
    let mut last: Option<Response> = None;
    let mut lines = 0usize;
    loop {
        let Some(line) = read_line(reader)? else {
            return Ok(last);
        };
        if line.is_empty() {
            continue;
        }
        let status: u16 = match line.split_whitespace().nth(1).and_then(|s| s.parse().ok()) {
            Some(status) if line.starts_with("HTTP/") => status,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("not an HTTP status line: {line:.80?}"),
                ))
            }
        };
        let mut response = Response {
            status,
            headers: Vec::new(),
        };
        while let Some(header) = read_line(reader)? {
            lines += 1;
            if lines > MAX_LINES {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("more than {MAX_LINES} header lines"),
                ));
            }
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
            || (status == 200 && line.to_ascii_lowercase().contains("connection established"));
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
            // A body shorter than its length, or a connection reset.
            Failure::Exit(code @ (18 | 56)) => format!(
                "the connection dropped before the end of the answer ({})",
                if last.is_empty() {
                    format!("curl exit {code}")
                } else {
                    last.to_string()
                }
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
        Err(e) => {
            transfer.running.kill();
            Err(Error::invalid(format!(
                "{url}: the server's answer is malformed ({e}); refusing it"
            )))
        }
    }
}

impl Transfer {
    /// Reads the rest and waits for curl to end.
    pub fn finish(mut self) -> Ended {
        let _ = io::copy(&mut self, &mut io::sink());
        self.ended.take().unwrap_or(Ended::Ok)
    }

    /// Stops curl now (with its process group) and reaps it.
    pub fn kill(&mut self) {
        self.running.kill();
    }

    /// How curl ended, once the body has been read to its end.
    pub fn ended(&self) -> Option<&Ended> {
        self.ended.as_ref()
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
        assert_eq!(response.strong_etag(), Some("\"x\""));
        let mut rest = String::new();
        reader.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "BODY");
    }

    #[test]
    fn no_headers_is_none_and_garbage_or_huge_is_an_error() {
        assert_eq!(read_headers(&mut std::io::Cursor::new(b"")).unwrap(), None);
        assert!(read_headers(&mut std::io::Cursor::new(b"hello\r\n\r\n")).is_err());
        let long = format!("HTTP/1.1 200 OK\r\nX: {}\r\n\r\n", "a".repeat(MAX_LINE));
        assert!(read_headers(&mut std::io::Cursor::new(long.as_bytes())).is_err());
        let many = format!(
            "HTTP/1.1 200 OK\r\n{}\r\n",
            "X: y\r\n".repeat(MAX_LINES + 1)
        );
        assert!(read_headers(&mut std::io::Cursor::new(many.as_bytes())).is_err());
    }

    #[test]
    fn content_ranges_parse_strictly() {
        assert_eq!(parse_content_range("bytes 0-9/20"), Some((0, 10, 20)));
        assert_eq!(parse_content_range(" bytes 10-19/20"), Some((10, 20, 20)));
        for bad in [
            "bytes 10-9/20",
            "bytes 0-20/20",
            "bytes */20",
            "0-9/20",
            "bytes 0-9/*",
        ] {
            assert_eq!(parse_content_range(bad), None, "{bad}");
        }
    }
}
