//! Splitting a byte stream into lines: for `by_line` delivery, and as a sink of its own
//! ([`Lines`], [`Sink::lines`](crate::Sink::lines)).

use std::io::{self, Write};

/// Splits a byte stream into lines without their `\n`. With a `max`, a line that grows
/// past it is passed on in pieces, so memory stays bounded whatever the input.
#[derive(Default)]
pub(crate) struct LineSplitter {
    partial: Vec<u8>,
    max: Option<usize>,
}

impl LineSplitter {
    pub(crate) fn bounded(max: usize) -> Self {
        LineSplitter {
            partial: Vec::new(),
            max: Some(max.max(1)),
        }
    }

    pub(crate) fn feed(&mut self, mut chunk: &[u8], mut emit: impl FnMut(&[u8])) {
        while let Some(nl) = chunk.iter().position(|&b| b == b'\n') {
            if self.partial.is_empty() {
                emit(&chunk[..nl]);
            } else {
                self.partial.extend_from_slice(&chunk[..nl]);
                emit(&self.partial);
                self.partial.clear();
            }
            chunk = &chunk[nl + 1..];
        }
        self.partial.extend_from_slice(chunk);
        if let Some(max) = self.max {
            while self.partial.len() >= max {
                emit(&self.partial[..max]);
                self.partial.drain(..max);
            }
        }
    }

    /// Emit the last line if it had no `\n`.
    pub(crate) fn finish(&mut self, mut emit: impl FnMut(&[u8])) {
        if !self.partial.is_empty() {
            emit(&self.partial);
            self.partial.clear();
        }
    }

    /// Bytes of an unfinished line.
    pub(crate) fn take_partial(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.partial)
    }
}

/// A writer that calls `f` with each line written to it, without its `\n`, as soon as
/// the line is complete; the last line, if it has no `\n`, when the writer is dropped
/// (or [`finish`](Self::finish)ed). A line longer than [`Lines::MAX_LINE`] is passed on
/// in pieces of that size rather than held, so memory stays bounded whatever is written.
///
/// It is what [`Sink::lines`](crate::Sink::lines) writes into; on its own it splits any
/// other output the same way.
///
/// ```
/// use fw_nbio::{Process as P, Sink};
/// let (tx, rx) = std::sync::mpsc::channel();
/// (P::shell("echo one; printf two") | Sink::lines(move |line| tx.send(line.to_vec()).unwrap()))
///     .run()?;
/// assert_eq!(rx.iter().collect::<Vec<_>>(), [b"one".to_vec(), b"two".to_vec()]);
/// # Ok::<(), fw_nbio::Error>(())
/// ```
pub struct Lines<F: FnMut(&[u8])> {
    splitter: LineSplitter,
    f: F,
}

impl<F: FnMut(&[u8])> Lines<F> {
    /// The longest line held back waiting for its `\n`.
    pub const MAX_LINE: usize = 64 * 1024;

    pub fn new(f: F) -> Self {
        Lines {
            splitter: LineSplitter::bounded(Self::MAX_LINE),
            f,
        }
    }

    /// Pass on a last line that has no `\n` now.
    pub fn finish(&mut self) {
        self.splitter.finish(&mut self.f);
    }
}

impl<F: FnMut(&[u8])> Write for Lines<F> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.splitter.feed(buf, &mut self.f);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<F: FnMut(&[u8])> Drop for Lines<F> {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&str]) -> Vec<String> {
        let mut lines = Vec::new();
        let mut s = LineSplitter::default();
        let mut push = |l: &[u8]| lines.push(String::from_utf8(l.to_vec()).unwrap());
        for c in chunks {
            s.feed(c.as_bytes(), &mut push);
        }
        s.finish(&mut push);
        lines
    }

    #[test]
    fn lines_across_chunks_and_partial_end() {
        assert_eq!(split(&["a\nb", "c\n\nd"]), ["a", "bc", "", "d"]);
        assert_eq!(split(&["x\n"]), ["x"]);
        assert_eq!(split(&["", "p", "q"]), ["pq"]);
        assert!(split(&[]).is_empty());
    }

    #[test]
    fn the_writer_passes_long_lines_in_pieces_and_the_last_on_drop() {
        let mut seen = Vec::new();
        {
            let mut w = Lines::new(|l: &[u8]| seen.push(l.len()));
            w.write_all(&vec![b'x'; 2 * Lines::<fn(&[u8])>::MAX_LINE + 5])
                .unwrap();
            w.write_all(b"\nend").unwrap();
        }
        let max = Lines::<fn(&[u8])>::MAX_LINE;
        assert_eq!(seen, [max, max, 5, 3]);
    }
}
