//! HTTP Range requests, through fw-core's curl transfers (fw_core::http):
//! the headers are read first, so the status and ranges are checked
//! before a byte of body is taken.
//!
//! The server is not trusted: every answer must be exactly what was asked
//! (206 with the asked ranges, in order, of a package of the size and
//! ETag seen first), or the fetch is refused; a 200 to the very first
//! request means the server has no Range support. Lengths, lines and
//! counts from the server are bounded before anything is allocated.

use std::collections::VecDeque;
use std::io::{self, BufRead, Read};

use fw_core::http::{parse_content_range, read_line, Ended, Response, Stall, Transfer};
use fw_core::{Error, Result};

/// The most header lines of a multipart part read.
const MAX_PART_LINES: usize = 100;
/// The most ranges in one request: keeps the Range header under nginx's
/// default limit for a header line (8 KiB).
pub const MAX_RANGES_PER_REQUEST: usize = 200;

fn malformed(url: &str, why: impl std::fmt::Display) -> Error {
    Error::invalid(format!(
        "{url}: the server's answer is malformed ({why}); refusing it"
    ))
}

/// What a request got.
pub enum Reply {
    /// The bytes of the asked ranges, in order.
    Ranges(RangeReader),
    /// The first request got the whole package (200): the server does not
    /// do Range requests. The body, from byte 0.
    Whole(WholeBody),
}

/// The whole package as a server without Range support sends it. Where
/// curl failed (a stall, a dropped connection), its end is an error that
/// says so (exit 1), not the end of the package, which would read as a
/// truncated package.
pub struct WholeBody {
    transfer: Transfer,
}

impl Read for WholeBody {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.transfer.read(buf)?;
        if n == 0 && !buf.is_empty() {
            if let Some(Ended::Failed(why)) = self.transfer.ended() {
                return Err(to_io(Error::failed(format!(
                    "cannot fetch {}: {why}; check the network and the server, then try again \
                     (it does not answer Range requests: the fetch starts over)",
                    self.transfer.url
                ))));
            }
        }
        Ok(n)
    }
}

/// A package at a URL, and what the server said about it so far.
pub struct Client {
    pub url: String,
    /// The package's size and strong ETag, from the first answer (or a
    /// resumed fetch).
    pub size: Option<u64>,
    pub etag: Option<String>,
    /// Whether to ask for several ranges in one request (until the server
    /// shows it does not do that).
    multi: bool,
    stall: Stall,
    /// Bytes of response bodies received, for the summary.
    pub received: u64,
    pub requests: u64,
}

impl Client {
    pub fn new(url: &str, stall: Stall) -> Client {
        Client {
            url: url.to_string(),
            size: None,
            etag: None,
            multi: true,
            stall,
            received: 0,
            requests: 0,
        }
    }

    fn curl(&self, range: &str) -> Result<(Transfer, Response)> {
        let mut extra = vec!["-r".to_string(), range.to_string()];
        if let Some(etag) = &self.etag {
            extra.push("-H".into());
            extra.push(format!("If-Range: {etag}"));
        }
        let (transfer, response) = fw_core::http::start(&self.url, &extra, self.stall, None)?;
        match response {
            Some(response) => Ok((transfer, response)),
            None => Err(Error::failed(format!(
                "cannot fetch {}: {}; check the network (the fetch resumes where it stopped)",
                self.url,
                transfer.finish().why()
            ))),
        }
    }

    /// The package changed on the server since the fetch began.
    fn changed(&self, why: &str) -> Error {
        Error::invalid(format!(
            "{}: the package changed on the server during the fetch ({why}): refusing what \
             was fetched; the next fetch starts over",
            self.url
        ))
    }

    /// Checks what a 206 says about the package against what is known,
    /// and learns it on the first answer.
    fn check_package(&mut self, response: &Response, total: u64) -> Result<()> {
        if let Some(size) = self.size {
            if size != total {
                return Err(self.changed(&format!("its size was {size} bytes, now {total}")));
            }
        }
        match (&self.etag, response.strong_etag()) {
            (Some(known), Some(now)) if known != now => {
                return Err(self.changed(&format!("ETag {known} became {now}")))
            }
            (None, Some(now)) if self.size.is_none() => self.etag = Some(now.to_string()),
            _ => {}
        }
        self.size = Some(total);
        Ok(())
    }

    /// Asks for the byte ranges `ranges` (each `[start, end)`, ascending,
    /// not overlapping); returns their bytes in order.
    pub fn get(&mut self, ranges: &[(u64, u64)]) -> Result<Reply> {
        if ranges.is_empty() || ranges.iter().any(|&(a, b)| a >= b) {
            return Err(Error::failed(
                "fw-fetch asked for an empty byte range (a bug)",
            ));
        }
        let first_request = self.size.is_none();
        let batch = if self.multi {
            ranges.len().min(MAX_RANGES_PER_REQUEST)
        } else {
            1
        };
        let spec = ranges[..batch]
            .iter()
            .map(|(a, b)| format!("{a}-{}", b - 1))
            .collect::<Vec<_>>()
            .join(",");
        self.requests += 1;
        let (mut transfer, response) = self.curl(&spec)?;
        match response.status {
            206 => {}
            200 if first_request => {
                self.size = response.content_length();
                self.etag = response.strong_etag().map(String::from);
                return Ok(Reply::Whole(WholeBody { transfer }));
            }
            200 => {
                transfer.kill();
                if let (Some(known), Some(now)) = (&self.etag, response.strong_etag()) {
                    if known != now {
                        return Err(self.changed(&format!("ETag {known} became {now}")));
                    }
                }
                if batch > 1 {
                    // Some servers do single ranges only: ask one at a time.
                    fw_core::note!(
                        "{} answers several ranges in one request with the whole package: \
                         asking one range at a time",
                        self.url
                    );
                    self.multi = false;
                    return self.get(ranges);
                }
                return Err(malformed(
                    &self.url,
                    "200 with the whole package to a Range request it answered with 206 before",
                ));
            }
            416 => {
                transfer.kill();
                return Err(self.changed("416: the asked bytes are past its end"));
            }
            status @ 500..=599 => {
                transfer.kill();
                return Err(Error::failed(format!(
                    "{}: the server answered HTTP {status}; try again later (the fetch resumes \
                     where it stopped)",
                    self.url
                )));
            }
            status => {
                transfer.kill();
                return Err(Error::failed(format!(
                    "{}: the server answered HTTP {status}; check the URL and that the package \
                     is published",
                    self.url
                )));
            }
        }
        let content_type = response.header("content-type").unwrap_or("").to_string();
        let parts = if let Some(boundary) = multipart_boundary(&content_type) {
            Parts::Multipart {
                boundary: format!("--{boundary}"),
                started: false,
            }
        } else {
            let range = response
                .header("content-range")
                .and_then(parse_content_range)
                .ok_or_else(|| malformed(&self.url, "a 206 without a valid Content-Range"))?;
            if first_request && range.0 == 0 && range.1 == range.2 && range.1 > ranges[0].1 {
                // All of it from byte 0, where a part was asked: a server
                // that reads only a Range's start. Read it as a whole.
                self.size = Some(range.2);
                self.etag = response.strong_etag().map(String::from);
                return Ok(Reply::Whole(WholeBody { transfer }));
            }
            if response
                .content_length()
                .is_some_and(|n| n != range.1 - range.0)
            {
                transfer.kill();
                return Err(malformed(
                    &self.url,
                    "its Content-Length differs from its Content-Range",
                ));
            }
            Parts::Single(Some(range))
        };
        let mut reader = RangeReader {
            url: self.url.clone(),
            transfer,
            parts,
            wanted: ranges[..batch].iter().copied().collect(),
            part: VecDeque::new(),
            part_at: 0,
            total: None,
            received: 0,
        };
        // Check the first part's range (and the package's size) before a
        // byte of body is handed out.
        if let Err(e) = reader.next_part() {
            reader.transfer.kill();
            return Err(e);
        }
        if let Some(total) = reader.total {
            self.check_package(&response, total)?;
        }
        Ok(Reply::Ranges(reader))
    }
}

fn multipart_boundary(content_type: &str) -> Option<String> {
    let lower = content_type.to_ascii_lowercase();
    if !lower.trim_start().starts_with("multipart/byteranges") {
        return None;
    }
    let at = lower.find("boundary=")?;
    let value = content_type[at + 9..].split(';').next()?.trim();
    let value = value.trim_matches('"');
    (!value.is_empty() && value.len() <= 200).then(|| value.to_string())
}

enum Parts {
    /// One part: the whole body is the range (taken once).
    Single(Option<(u64, u64, u64)>),
    Multipart {
        boundary: String,
        started: bool,
    },
}

/// The bytes of the asked ranges, in order, from one response. A part
/// may cover several asked ranges exactly (a server that coalesced them):
/// the bytes between them are dropped.
pub struct RangeReader {
    url: String,
    transfer: Transfer,
    parts: Parts,
    /// Asked ranges not yet served.
    wanted: VecDeque<(u64, u64)>,
    /// The asked ranges the current part serves, and where in the part
    /// each begins: (start, end) in the file.
    part: VecDeque<(u64, u64)>,
    /// Where in the file the next byte of the current part is.
    part_at: u64,
    /// The package's size, as the parts' Content-Range say.
    total: Option<u64>,
    received: u64,
}

impl RangeReader {
    /// The ranges this reader serves (the first request's batch: the
    /// caller asks again for the rest).
    pub fn served(&self) -> usize {
        self.part.len() + self.wanted.len()
    }

    /// Bytes of body received.
    pub fn received(&self) -> u64 {
        self.received
    }

    fn bad(&self, why: impl std::fmt::Display) -> Error {
        malformed(&self.url, why)
    }

    /// Reads the next part's header and checks its range against the
    /// asked ones.
    fn next_part(&mut self) -> Result<()> {
        let url = self.url.clone();
        let range = match &mut self.parts {
            Parts::Single(range) => range.take(),
            Parts::Multipart { boundary, started } => {
                let boundary = boundary.clone();
                if *started {
                    // After a part's body: CRLF, then the next delimiter.
                    let line = read_line(&mut self.transfer).map_err(|e| malformed(&url, e))?;
                    if line.as_deref() != Some("") {
                        return Err(malformed(
                            &url,
                            "a multipart part longer than its Content-Range",
                        ));
                    }
                }
                let mut preamble = 0;
                loop {
                    let Some(line) =
                        read_line(&mut self.transfer).map_err(|e| malformed(&url, e))?
                    else {
                        return Err(eof_error(&url, self.transfer.ended()));
                    };
                    if line == boundary {
                        break;
                    }
                    if line == format!("{boundary}--") || *started || preamble > 4 {
                        return Err(malformed(&url, "a multipart body without the asked parts"));
                    }
                    preamble += 1;
                }
                if let Parts::Multipart { started, .. } = &mut self.parts {
                    *started = true;
                }
                let mut range = None;
                for _ in 0..MAX_PART_LINES {
                    let Some(line) =
                        read_line(&mut self.transfer).map_err(|e| malformed(&url, e))?
                    else {
                        return Err(eof_error(&url, self.transfer.ended()));
                    };
                    if line.is_empty() {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':') {
                        if name.trim().eq_ignore_ascii_case("content-range") {
                            range = parse_content_range(value);
                        }
                    }
                }
                Some(range.ok_or_else(|| {
                    malformed(&url, "a multipart part without a valid Content-Range")
                })?)
            }
        };
        let Some((start, end, total)) = range else {
            return Err(self.bad("more bytes than the asked ranges"));
        };
        if self.total.is_some_and(|t| t != total) {
            return Err(self.bad("parts of one answer disagree on the package's size"));
        }
        self.total = Some(total);
        // The part must start at the next asked range and end at the end
        // of that one or of a later one.
        let Some(&(first, _)) = self.wanted.front() else {
            return Err(self.bad("a part that was not asked for"));
        };
        let covered = self.wanted.iter().position(|&(_, e)| e == end);
        match covered {
            Some(last) if start == first => {
                self.part = self.wanted.drain(..=last).collect();
                self.part_at = start;
                Ok(())
            }
            _ => Err(self.bad(format!(
                "bytes {start}-{} where bytes {first}- were asked",
                end - 1
            ))),
        }
    }

    /// The answer ended before the asked bytes: the network's fault if
    /// curl failed, else the server's.
    fn truncated(&self) -> Error {
        eof_error(&self.url, self.transfer.ended())
    }

    fn read_error(&self, e: io::Error) -> Error {
        malformed(&self.url, e)
    }

    /// After the last asked range: the answer must end here.
    pub fn finish(mut self) -> Result<u64> {
        if !self.part.is_empty() || !self.wanted.is_empty() {
            return Err(Error::failed(
                "fw-fetch stopped reading an answer early (a bug)",
            ));
        }
        if let Parts::Multipart { boundary, .. } = &self.parts {
            let end = format!("{boundary}--");
            let line = read_line(&mut self.transfer).map_err(|e| self.read_error(e))?;
            let next = read_line(&mut self.transfer).map_err(|e| self.read_error(e))?;
            if line.as_deref() != Some("") || next.as_deref() != Some(end.as_str()) {
                return Err(self.bad("more parts than asked, or a part longer than its range"));
            }
        }
        let mut rest = [0u8; 256];
        let mut extra = 0usize;
        loop {
            match self.transfer.read(&mut rest) {
                Ok(0) => break,
                Ok(n) => extra += n,
                Err(e) => return Err(self.read_error(e)),
            }
            if extra > 64 {
                self.transfer.kill();
                return Err(self.bad("more bytes than the asked ranges"));
            }
        }
        Ok(self.received)
    }
}

fn eof_error(url: &str, ended: Option<&Ended>) -> Error {
    match ended {
        Some(Ended::Failed(why)) => Error::failed(format!(
            "cannot fetch {url}: {why}; check the network (the fetch resumes where it stopped)"
        )),
        _ => malformed(url, "it ends before the asked bytes"),
    }
}

/// Carries an fw error through `io::Read`.
pub fn to_io(err: Error) -> io::Error {
    io::Error::other(err)
}

/// The fw error inside `err` (see [`to_io`]), or `err` as an I/O error on
/// `what`.
pub fn from_io(err: io::Error, what: &str) -> Error {
    if err.get_ref().is_some_and(|e| e.is::<Error>()) {
        let inner = err.into_inner().expect("checked above");
        return *inner.downcast::<Error>().expect("checked above");
    }
    Error::io(what, err)
}

impl Read for RangeReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let Some(&(start, end)) = self.part.front() else {
                if self.wanted.is_empty() || buf.is_empty() {
                    return Ok(0);
                }
                self.next_part().map_err(to_io)?;
                continue;
            };
            // Bytes between coalesced ranges are dropped.
            while self.part_at < start {
                let n = match self.transfer.fill_buf() {
                    Ok([]) => return Err(to_io(self.truncated())),
                    Ok(available) => available.len().min((start - self.part_at) as usize),
                    Err(e) => return Err(to_io(self.read_error(e))),
                };
                self.transfer.consume(n);
                self.part_at += n as u64;
                self.received += n as u64;
            }
            let want = buf.len().min((end - self.part_at) as usize);
            let n = match self.transfer.read(&mut buf[..want]) {
                Ok(0) if want > 0 => return Err(to_io(self.truncated())),
                Ok(n) => n,
                Err(e) => return Err(to_io(self.read_error(e))),
            };
            self.part_at += n as u64;
            self.received += n as u64;
            if self.part_at == end {
                self.part.pop_front();
            }
            return Ok(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_boundaries_are_read_from_the_content_type() {
        assert_eq!(
            multipart_boundary("multipart/byteranges; boundary=00000000000000000001").as_deref(),
            Some("00000000000000000001")
        );
        assert_eq!(
            multipart_boundary("Multipart/Byteranges; boundary=\"a b\"").as_deref(),
            Some("a b")
        );
        assert_eq!(multipart_boundary("application/octet-stream"), None);
        assert_eq!(multipart_boundary("multipart/byteranges"), None);
    }
}
