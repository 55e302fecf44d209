//! [`GzWriter`]: cuts what it is given into members of [`BLOCK`] bytes,
//! compressed on all cores and written in order.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc::Receiver;

use flate2::Compression;

use crate::member::compress_member;
use crate::pool::{threads, Pool};

/// Uncompressed bytes per member written by [`GzWriter`].
pub const BLOCK: usize = 1 << 20;

/// A `Write` that gzips what it is given as a series of members of
/// [`BLOCK`] bytes, compressed on all cores and written in order.
/// Call [`GzWriter::finish`] to write the last member and get `W` back.
pub struct GzWriter<W: Write> {
    out: W,
    level: Compression,
    block: Vec<u8>,
    /// Members being compressed, in order, with their input sizes.
    pending: VecDeque<(Receiver<Vec<u8>>, usize)>,
    pending_bytes: usize,
    max_pending_bytes: usize,
    members: u64,
    /// Lengths of the members written so far, in order.
    lengths: Vec<u32>,
    pool: Pool,
}

impl<W: Write> GzWriter<W> {
    /// A writer with one compressing thread per core.
    pub fn new(out: W, level: Compression) -> Self {
        Self::with_threads(out, level, threads())
    }

    /// A writer with `threads` compressing threads (the output is the same
    /// whatever the number).
    pub fn with_threads(out: W, level: Compression, threads: usize) -> Self {
        let threads = threads.max(1);
        GzWriter {
            out,
            level,
            block: Vec::with_capacity(BLOCK),
            pending: VecDeque::new(),
            pending_bytes: 0,
            // Enough in flight to keep every thread busy while the oldest
            // is written, counted in bytes (small members, cut around
            // large files, must not starve the threads), and no more:
            // memory stays bounded.
            max_pending_bytes: threads * 2 * BLOCK,
            members: 0,
            lengths: Vec::new(),
            pool: Pool::new(threads),
        }
    }

    fn submit_block(&mut self) -> io::Result<()> {
        let block = std::mem::replace(&mut self.block, Vec::with_capacity(BLOCK));
        let level = self.level;
        let len = block.len();
        let rx = self.pool.submit(move || compress_member(&block, level))?;
        self.pending.push_back((rx, len));
        self.pending_bytes += len;
        self.members += 1;
        while self.pending_bytes > self.max_pending_bytes || self.pending.len() > 1024 {
            self.write_oldest()?;
        }
        Ok(())
    }

    fn write_oldest(&mut self) -> io::Result<()> {
        if let Some((rx, len)) = self.pending.pop_front() {
            self.pending_bytes -= len;
            let member = rx
                .recv()
                .map_err(|_| io::Error::other("a gzip compressing thread died"))?;
            self.out.write_all(&member)?;
            self.lengths
                .push(u32::try_from(member.len()).expect("members are at most MAX_MEMBER"));
        }
        Ok(())
    }

    /// Ends the current member (if it holds anything), so that what is
    /// written next starts a member of its own; returns that member's
    /// index. fw-sign cuts before and after each file's data, so that the
    /// data fills whole members of its own: an upgrade that has the file
    /// skips them without inflating, and fw-fetch downloads exactly them.
    /// The cuts depend only on what is written, so the output stays
    /// reproducible.
    pub fn cut(&mut self) -> io::Result<u64> {
        if !self.block.is_empty() {
            self.submit_block()?;
        }
        Ok(self.members)
    }

    /// Writes what is left (an empty member if nothing was written at
    /// all: a gzip stream has at least one) and returns the inner writer.
    pub fn finish(self) -> io::Result<W> {
        self.finish_with_lengths().map(|(out, _)| out)
    }

    /// Like [`GzWriter::finish`], also returning the length of every
    /// member, in order (the members that [`GzWriter::cut`] numbered).
    pub fn finish_with_lengths(mut self) -> io::Result<(W, Vec<u32>)> {
        if !self.block.is_empty() || self.members == 0 {
            self.submit_block()?;
        }
        while !self.pending.is_empty() {
            self.write_oldest()?;
        }
        self.out.flush()?;
        let GzWriter {
            out, pool, lengths, ..
        } = self;
        drop(pool);
        Ok((out, lengths))
    }
}

impl<W: Write> Write for GzWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(BLOCK - self.block.len());
        self.block.extend_from_slice(&buf[..n]);
        if self.block.len() == BLOCK {
            self.submit_block()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Members are cut at BLOCK boundaries only, so that the output does
        // not depend on when the caller flushes.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{members, pack, sample, unpack};
    use std::io::Read;

    #[test]
    fn round_trips_and_is_the_same_whatever_the_threads() {
        for len in [0, 1, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + BLOCK / 2] {
            let data = sample(len);
            let one = pack(&data, 1);
            let three = pack(&data, 3);
            assert_eq!(one, three, "{len} bytes: output depends on the threads");
            assert_eq!(
                members(&one).len(),
                len.div_ceil(BLOCK).max(1),
                "{len} bytes"
            );
            for threads in [1, 2, 4] {
                assert_eq!(unpack(one.clone(), threads).unwrap(), data, "{len} bytes");
            }
        }
    }

    #[test]
    fn is_one_ordinary_gzip_stream_to_other_readers() {
        let data = sample(2 * BLOCK + 12_345);
        let stream = pack(&data, 2);
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&stream[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, data, "flate2's multi-member decoder");

        // GNU gzip, which tar -z runs.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.gz");
        std::fs::write(&file, &stream).unwrap();
        let gunzip = std::process::Command::new("gzip")
            .arg("-dc")
            .arg(&file)
            .output()
            .expect("gzip is installed");
        assert!(gunzip.status.success(), "gzip -dc: {:?}", gunzip);
        assert_eq!(gunzip.stdout, data, "gzip -dc");
    }

    #[test]
    fn cut_ends_a_member_and_the_lengths_are_reported() {
        let data = sample(3 * BLOCK);
        let mut writer = GzWriter::with_threads(Vec::new(), Compression::new(6), 2);
        assert_eq!(writer.cut().unwrap(), 0, "nothing written: no member");
        writer.write_all(&data[..1000]).unwrap();
        assert_eq!(writer.cut().unwrap(), 1);
        writer.write_all(&data[1000..1000 + BLOCK + 5]).unwrap();
        assert_eq!(writer.cut().unwrap(), 3);
        assert_eq!(writer.cut().unwrap(), 3, "a second cut cuts nothing");
        writer.write_all(&data[1000 + BLOCK + 5..]).unwrap();
        let (stream, lengths) = writer.finish_with_lengths().unwrap();
        let found = members(&stream);
        let sizes: Vec<usize> = found
            .iter()
            .map(|m| u32::from_le_bytes(m[m.len() - 4..].try_into().unwrap()) as usize)
            .collect();
        assert_eq!(sizes, [1000, BLOCK, 5, BLOCK, BLOCK - 1005]);
        assert_eq!(
            lengths,
            found.iter().map(|m| m.len() as u32).collect::<Vec<_>>()
        );
        assert_eq!(unpack(stream, 2).unwrap(), data);
    }
}
