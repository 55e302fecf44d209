//! Armored packages: a bound on line length before sequoia's armor reader.
//!
//! sequoia's armor reader reads a header line (`Comment: …`) whole into
//! memory: a 50 MB header line took fw-unseal to 160 MB of memory. Armor
//! lines are at most 76 characters (RFC 4880 6.3, RFC 9580 6.2), GnuPG and
//! sequoia write 64, so a line over [`MAX_LINE`] bytes anywhere in an
//! armored package is refused before it is buffered.

use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The longest line an armored package may have.
pub const MAX_LINE: usize = 4096;

/// Passes bytes through, failing once a line exceeds [`MAX_LINE`] if
/// `armored` (binary data has no lines); `tripped` tells the caller why
/// sequoia's reader failed.
pub struct LineBound<R> {
    inner: R,
    armored: bool,
    line: usize,
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
                tripped: Arc::clone(&tripped),
            },
            tripped,
        )
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
            self.line += first.len();
            if self.line > MAX_LINE {
                return Err(self.trip());
            }
        }
        for segment in segments {
            self.line = segment.len();
            if self.line > MAX_LINE {
                return Err(self.trip());
            }
        }
        Ok(n)
    }
}

impl<R> LineBound<R> {
    fn trip(&self) -> io::Error {
        self.tripped.store(true, Ordering::SeqCst);
        io::Error::new(io::ErrorKind::InvalidData, "an armor line is too long")
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
        let (mut binary, _) = LineBound::new(&long[..], false);
        assert!(
            binary.read_to_end(&mut Vec::new()).is_ok(),
            "binary data has no lines"
        );
    }
}
