//! Armored packages: bounds on lines and header lines before sequoia's
//! armor reader.
//!
//! sequoia's armor reader reads a header line (`Comment: …`) whole into
//! memory: a 50 MB header line took fw-unseal to 160 MB of memory. Armor
//! lines are at most 76 characters (RFC 4880 6.3, RFC 9580 6.2), GnuPG and
//! sequoia write 64, so a line over [`MAX_LINE`] bytes anywhere in an
//! armored package is refused before it is buffered. It also keeps every
//! header line: 5,000,000 lines `a: b` (25 MB, no key needed) took it to
//! 554 MB. So the header lines (from the `-----BEGIN` line to the first
//! line that is not a `Key: Value` header) are refused past
//! [`MAX_HEADERS`] bytes; GnuPG writes one or two.

use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The longest line an armored package may have.
pub const MAX_LINE: usize = 4096;
/// The most bytes of armor header lines an armored package may have.
pub const MAX_HEADERS: usize = 64 << 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Before the `-----BEGIN` line.
    Before,
    /// Header lines.
    Headers,
    /// The base64 body and what follows it.
    Body,
}

/// Passes bytes through, failing once a line exceeds [`MAX_LINE`] or the
/// header lines exceed [`MAX_HEADERS`] if `armored` (binary data has no
/// lines); `tripped` tells the caller why sequoia's reader failed.
pub struct LineBound<R> {
    inner: R,
    armored: bool,
    /// The current line: its length, its first bytes, whether it has a
    /// colon (a header line does; base64 never).
    line: usize,
    start: [u8; 10],
    colon: bool,
    phase: Phase,
    headers: usize,
    tripped: Arc<AtomicBool>,
}

impl<R> LineBound<R> {
    pub fn new(inner: R, armored: bool) -> (LineBound<R>, Arc<AtomicBool>) {
        let tripped = Arc::new(AtomicBool::new(false));
        (
            LineBound {
                inner,
                armored,
                line: 0,
                start: [0; 10],
                colon: false,
                phase: Phase::Before,
                headers: 0,
                tripped: Arc::clone(&tripped),
            },
            tripped,
        )
    }

    /// More bytes of the current line.
    fn extend(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.line < self.start.len() {
            let n = bytes.len().min(self.start.len() - self.line);
            self.start[self.line..self.line + n].copy_from_slice(&bytes[..n]);
        }
        self.line += bytes.len();
        if self.phase != Phase::Body {
            self.colon |= bytes.contains(&b':');
        }
        if self.line > MAX_LINE {
            return Err(self.trip("an armor line is too long"));
        }
        Ok(())
    }

    /// The current line ended (at a newline).
    fn end_line(&mut self) -> io::Result<()> {
        match self.phase {
            Phase::Before if self.line >= 10 && &self.start == b"-----BEGIN" => {
                self.phase = Phase::Headers;
            }
            Phase::Headers if self.colon => {
                self.headers += self.line + 1;
                if self.headers > MAX_HEADERS {
                    return Err(self.trip("too many armor header lines"));
                }
            }
            Phase::Headers => self.phase = Phase::Body,
            _ => {}
        }
        self.line = 0;
        self.colon = false;
        Ok(())
    }

    fn trip(&self, why: &'static str) -> io::Error {
        self.tripped.store(true, Ordering::SeqCst);
        io::Error::new(io::ErrorKind::InvalidData, why)
    }
}

impl<R: Read> Read for LineBound<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if !self.armored {
            return Ok(n);
        }
        let mut segments = buf[..n].split(|&b| b == b'\n');
        // The first segment continues the current line; every later one
        // starts a new line.
        if let Some(first) = segments.next() {
            self.extend(first)?;
        }
        for segment in segments {
            self.end_line()?;
            self.extend(segment)?;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(input: &[u8]) -> (io::Result<Vec<u8>>, bool) {
        let (mut reader, tripped) = LineBound::new(input, true);
        let mut out = Vec::new();
        let result = reader.read_to_end(&mut out).map(|_| out);
        (result, tripped.load(Ordering::SeqCst))
    }

    #[test]
    fn passes_short_lines_and_stops_at_a_long_one() {
        let ok = [
            b"-----BEGIN PGP MESSAGE-----\n\n".to_vec(),
            vec![b'A'; 64],
            b"\n".to_vec(),
        ]
        .concat()
        .repeat(1000);
        assert_eq!(read_all(&ok).0.unwrap(), ok);
        let exact = vec![b'x'; MAX_LINE];
        assert!(read_all(&exact).0.is_ok());
        let long = [b"Comment: ".to_vec(), vec![b'x'; MAX_LINE]].concat();
        let (result, tripped) = read_all(&long);
        assert!(result.is_err() && tripped);
        let headers = [
            b"-----BEGIN PGP MESSAGE-----\n".to_vec(),
            b"a: b\n".repeat(MAX_HEADERS / 5 + 1),
            b"\nAAAA\n".to_vec(),
        ]
        .concat();
        let (result, tripped) = read_all(&headers);
        assert!(result.is_err() && tripped, "too many header lines");
        let (result, tripped) = read_all(&headers[..headers.len() - 100]);
        assert!(result.is_ok() && !tripped, "a few header lines pass");
        // Lines before BEGIN and base64 after the headers are not headers.
        let body = [
            b"junk: before\n".repeat(MAX_HEADERS / 10),
            b"-----BEGIN PGP MESSAGE-----\nComment: x\n\n".to_vec(),
            [vec![b'A'; 64], b"\n".to_vec()]
                .concat()
                .repeat(MAX_HEADERS),
        ]
        .concat();
        assert!(read_all(&body).0.is_ok());
        let (mut binary, _) = LineBound::new(&long[..], false);
        assert!(
            binary.read_to_end(&mut Vec::new()).is_ok(),
            "binary data has no lines"
        );
    }
}
