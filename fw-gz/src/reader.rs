//! [`GzReader`]: the inflated bytes of a gzip stream in order, fw's
//! members inflated ahead on all cores, and forward skips that leave
//! whole members uninflated.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::sync::mpsc::{self, Receiver};

use crate::member::{corrupt, inflate_member};
use crate::pool::{threads, Pool};
use crate::signed::RawObserver;
use crate::split::{split, Member, Piece, INLINE_BELOW};

/// Bytes read from a member before the next ones are inflated ahead.
const PREFETCH_AFTER: usize = 16 << 10;

/// A piece the reader has taken off the splitter's channel.
enum Ahead {
    Raw(Member),
    Omitted(u64, u64),
    /// Handed to a worker: its size, and where its bytes will arrive.
    Inflating(u64, Receiver<io::Result<Vec<u8>>>),
    Ready(io::Result<Vec<u8>>),
    End,
}

impl From<Piece> for Ahead {
    fn from(piece: Piece) -> Ahead {
        match piece {
            Piece::Member(m) => Ahead::Raw(m),
            Piece::Omitted { size, at } => Ahead::Omitted(size, at),
            Piece::Inflated(r) => Ahead::Ready(r),
            Piece::End => Ahead::End,
        }
    }
}

/// A `Read` of the inflated bytes of a gzip stream: fw's members are
/// inflated on all cores, a few members ahead of the caller, anything
/// else on one thread; either way in threads of their own, so that the
/// caller's work overlaps the inflating. Errors (corrupt or truncated
/// members, garbage after the last one) arrive in stream order, after
/// every byte before them.
pub struct GzReader {
    order: Receiver<Vec<Piece>>,
    pool: Pool,
    /// Members inflated ahead of the one being read.
    lookahead: usize,
    /// Whether the members after the current one were started.
    prefetched: bool,
    /// Bytes of the current member read (not skipped).
    read_here: usize,
    /// Whether a whole member was ever skipped.
    skipped_any: bool,
    ahead: VecDeque<Ahead>,
    current: Vec<u8>,
    pos: usize,
    /// Inflated bytes read or skipped so far.
    offset: u64,
    ended: bool,
    failed: Option<(io::ErrorKind, String)>,
}

impl GzReader {
    /// Starts inflating `input` with one thread per core.
    pub fn new<R: Read + Send + 'static>(input: R) -> Self {
        Self::with_threads(input, threads())
    }

    /// Starts inflating `input` with `threads` inflating threads.
    pub fn with_threads<R: Read + Send + 'static>(input: R, threads: usize) -> Self {
        Self::observed(input, threads, None)
    }

    /// Starts inflating `input` with `threads` inflating threads, showing
    /// `observer` the proof members and the raw bytes between them.
    pub fn observed<R: Read + Send + 'static>(
        input: R,
        threads: usize,
        observer: Option<Box<dyn RawObserver>>,
    ) -> Self {
        Self::start_with(input, threads, observer, false)
    }

    /// Like [`GzReader::new`], accepting omitted members (fw-fetch's
    /// output, for `fw-unpack --delta`): their bytes can be skipped, and
    /// reading them is an error.
    pub fn accepting_omitted<R: Read + Send + 'static>(input: R) -> Self {
        Self::start_with(input, threads(), None, true)
    }

    fn start_with<R: Read + Send + 'static>(
        input: R,
        threads: usize,
        observer: Option<Box<dyn RawObserver>>,
        omitted: bool,
    ) -> Self {
        let threads = threads.max(1);
        // Whole members waiting, read ahead of the inflating: each at most
        // about 1 MiB as fw writes them, so memory stays flat.
        let (tx, rx) = mpsc::sync_channel(threads + 1);
        std::thread::spawn(move || split(input, tx, observer, omitted));
        GzReader {
            order: rx,
            pool: Pool::new(threads),
            lookahead: threads,
            prefetched: false,
            read_here: 0,
            skipped_any: false,
            ahead: VecDeque::new(),
            current: Vec::new(),
            pos: 0,
            offset: 0,
            ended: false,
            failed: None,
        }
    }

    /// Hands the first `count` pieces ahead to the workers, receiving
    /// those already read off the stream (without waiting for more).
    fn start(&mut self, count: usize) -> io::Result<()> {
        while self.ahead.len() < count
            && !matches!(self.ahead.back(), Some(Ahead::End | Ahead::Ready(Err(_))))
            && self.receive(false)
        {}
        for slot in self.ahead.iter_mut().take(count) {
            if matches!(slot, Ahead::Raw(m) if m.size >= INLINE_BELOW) {
                let Ahead::Raw(m) = std::mem::replace(slot, Ahead::End) else {
                    unreachable!()
                };
                let size = m.size;
                let rx = self
                    .pool
                    .submit(move || inflate_member(&m.bytes, m.header_len, m.at))?;
                *slot = Ahead::Inflating(size, rx);
            }
        }
        Ok(())
    }

    fn fail(&mut self, e: io::Error) -> io::Error {
        // Sticky: every later read fails the same way.
        self.failed = Some((e.kind(), e.to_string()));
        e
    }

    fn receive(&mut self, wait: bool) -> bool {
        let batch = if wait {
            self.order.recv().map_err(|_| ())
        } else {
            match self.order.try_recv() {
                Ok(batch) => Ok(batch),
                Err(mpsc::TryRecvError::Empty) => return false,
                Err(mpsc::TryRecvError::Disconnected) => Err(()),
            }
        };
        match batch {
            Ok(batch) => self.ahead.extend(batch.into_iter().map(Ahead::from)),
            Err(()) => self.ahead.push_back(Ahead::Ready(Err(io::Error::other(
                "the gzip splitting thread stopped before the stream's end",
            )))),
        }
        true
    }

    /// Moves to the next piece: its bytes become `current`. A member no
    /// larger than `skip_up_to` is dropped instead, uninflated unless a
    /// worker already started on it, and its size returned. Ok(None) at
    /// the end of the stream.
    fn next_piece(&mut self, skip_up_to: u64) -> io::Result<Option<u64>> {
        if let Some((kind, message)) = &self.failed {
            return Err(io::Error::new(*kind, message.clone()));
        }
        if self.ended {
            return Ok(None);
        }
        if self.ahead.is_empty() {
            self.receive(true);
        }
        let skippable = match self.ahead.front() {
            Some(Ahead::Raw(m)) => Some(m.size),
            Some(Ahead::Omitted(size, _)) => Some(*size),
            Some(Ahead::Inflating(size, _)) => Some(*size),
            _ => None,
        };
        if let Some(size) = skippable.filter(|&size| size > 0 && size <= skip_up_to) {
            self.ahead.pop_front();
            self.current.clear();
            self.pos = 0;
            return Ok(Some(size));
        }
        if let Some(&Ahead::Omitted(size, at)) = self.ahead.front() {
            return Err(self.fail(corrupt(
                at,
                format!(
                    "these {size} bytes were omitted by fw-fetch (the device holds them) and \
                     cannot be read: no installed version has the file any more; install the \
                     full package"
                ),
            )));
        }
        self.start(1)?;
        self.prefetched = false;
        self.read_here = 0;
        let data = match self.ahead.pop_front().expect("received above") {
            Ahead::Raw(m) => inflate_member(&m.bytes, m.header_len, m.at),
            Ahead::End => {
                self.ended = true;
                return Ok(None);
            }
            Ahead::Ready(result) => result,
            Ahead::Inflating(_, rx) => rx
                .recv()
                .unwrap_or_else(|_| Err(io::Error::other("a gzip inflating thread died"))),
            Ahead::Omitted(..) => unreachable!("refused above"),
        };
        match data {
            Ok(data) => {
                self.current = data;
                self.pos = 0;
                Ok(Some(0))
            }
            Err(e) => Err(self.fail(e)),
        }
    }
}

impl Read for GzReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some((kind, message)) = &self.failed {
                return Err(io::Error::new(*kind, message.clone()));
            }
            if self.pos < self.current.len() {
                let n = buf.len().min(self.current.len() - self.pos);
                buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
                self.pos += n;
                self.offset += n as u64;
                self.read_here += n;
                // The caller reads this member rather than skipping it:
                // start inflating the next ones. Once the caller skips
                // members (an upgrade), only after PREFETCH_AFTER bytes
                // read: the tar headers read between skipped files must not
                // start the members of the files skipped next.
                if !self.prefetched && (!self.skipped_any || self.read_here >= PREFETCH_AFTER) {
                    self.prefetched = true;
                    self.start(self.lookahead)?;
                }
                return Ok(n);
            }
            if buf.is_empty() || self.next_piece(0)?.is_none() {
                return Ok(0);
            }
        }
    }
}

/// Forward only: `SeekFrom::Current(n)` with n >= 0 skips n inflated
/// bytes, and returns the offset reached (what `tar`'s
/// `entries_with_seek` needs to skip entries' data). fw members that lie
/// wholly inside the skipped bytes are not inflated (unless already
/// started as the next members of a read): their bytes
/// are still read, in order, but their deflate data and CRC are not
/// checked (fw-unseal's signature covers them; the file skipped is linked
/// from an installed version that fw-verify checks). Skipping past the
/// end of the stream is an error, never a quiet end.
impl io::Seek for GzReader {
    fn seek(&mut self, pos: io::SeekFrom) -> io::Result<u64> {
        let mut left = match pos {
            io::SeekFrom::Current(n) if n >= 0 => n as u64,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "a gzip stream only skips forward",
                ))
            }
        };
        loop {
            let here = (left as usize).min(self.current.len() - self.pos);
            self.pos += here;
            self.offset += here as u64;
            left -= here as u64;
            if left == 0 {
                return Ok(self.offset);
            }
            match self.next_piece(left)? {
                None => {
                    return Err(self.fail(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the gzip stream ends inside an entry's data (truncated)",
                    )))
                }
                Some(skipped) => {
                    self.offset += skipped;
                    self.skipped_any |= skipped > 0;
                    left -= skipped;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::member::HEADER_LEN;
    use crate::test_support::{expect_error, members, pack, plain_gzip, sample, unpack};
    use crate::{member_info, omitted_member, BLOCK};

    #[test]
    fn reads_any_gzip_stream_the_ordinary_way() {
        let data = sample(BLOCK + 99);
        assert_eq!(
            unpack(plain_gzip(&data), 2).unwrap(),
            data,
            "one plain member"
        );
        let two = [plain_gzip(&data[..10]), plain_gzip(&data[10..])].concat();
        assert_eq!(unpack(two, 2).unwrap(), data, "two plain members");
        // fw's members, then a plain one: the rest goes the ordinary way.
        let mixed = [pack(&data[..BLOCK + 5], 2), plain_gzip(&data[BLOCK + 5..])].concat();
        assert_eq!(
            unpack(mixed, 2).unwrap(),
            data,
            "fw members, then a plain one"
        );
    }

    #[test]
    fn refuses_streams_that_are_empty_cut_short_or_followed_by_garbage() {
        let data = sample(3 * BLOCK);
        let stream = pack(&data, 2);
        let first = members(&stream)[0].len();

        expect_error(Vec::new(), "empty stream");
        for cut in [
            5,
            15,
            first - 1,
            first + 100,
            stream.len() - 4,
            stream.len() - 1,
        ] {
            expect_error(stream[..cut].to_vec(), &format!("cut at {cut}"));
        }
        for tail in [&[0u8][..], &[0; 20], b"\x1f\x8b", b"garbage after the end"] {
            expect_error(
                [&stream[..], tail].concat(),
                &format!("{tail:?} after the end"),
            );
        }
        let plain = plain_gzip(&data);
        expect_error(plain[..plain.len() - 3].to_vec(), "plain stream cut short");
        expect_error([&plain[..], b"x"].concat(), "garbage after a plain stream");
    }

    #[test]
    fn refuses_members_whose_fields_lie() {
        let data = sample(3 * BLOCK);
        let stream = pack(&data, 2);
        let first = members(&stream)[0].len();
        let set_u32 =
            |s: &mut Vec<u8>, at: usize, v: u32| s[at..at + 4].copy_from_slice(&v.to_le_bytes());

        let mut crc = stream.clone();
        crc[first - 8] ^= 1;
        assert!(expect_error(crc, "bad CRC").contains("CRC-32"));

        let mut size = stream.clone();
        set_u32(&mut size, first - 4, BLOCK as u32 - 1);
        expect_error(size, "size one short");

        let mut huge = stream.clone();
        set_u32(&mut huge, first - 4, u32::MAX);
        expect_error(huge, "size of 4 GiB (a bomb)");

        let mut body = stream.clone();
        body[HEADER_LEN + 100] ^= 0x55;
        expect_error(body, "flipped deflate byte");

        for len in [
            0u32,
            7,
            HEADER_LEN as u32 + 7,
            first as u32 - 1,
            first as u32 + 1,
            u32::MAX,
        ] {
            let mut lying = stream.clone();
            set_u32(&mut lying, 16, len);
            expect_error(lying, &format!("length field {len} instead of {first}"));
        }
    }

    #[test]
    fn errors_come_after_the_good_members_and_stay() {
        let data = sample(2 * BLOCK);
        let mut stream = pack(&data, 2);
        let last = stream.len() - 8;
        stream[last] ^= 1; // the second member's CRC
        let mut reader = GzReader::with_threads(io::Cursor::new(stream), 2);
        let mut first = vec![0u8; BLOCK];
        reader.read_exact(&mut first).unwrap();
        assert_eq!(first, data[..BLOCK]);
        let mut rest = Vec::new();
        assert!(reader.read_to_end(&mut rest).is_err());
        assert!(reader.read(&mut [0u8; 10]).is_err(), "the error is sticky");
    }

    #[test]
    fn skips_forward_to_the_same_bytes_as_reading() {
        use std::io::Seek;
        let data = sample(5 * BLOCK + 777);
        for stream in [pack(&data, 2), plain_gzip(&data)] {
            let mut reader = GzReader::with_threads(io::Cursor::new(stream), 2);
            let mut at = 0usize;
            // Within a member, across one boundary, over whole members, zero.
            for (skip, read) in [(10, 100), (BLOCK, 5), (3 * BLOCK + 17, 1000), (0, 3)] {
                at += skip;
                assert_eq!(
                    reader.seek(io::SeekFrom::Current(skip as i64)).unwrap(),
                    at as u64
                );
                let mut got = vec![0u8; read];
                reader.read_exact(&mut got).unwrap();
                assert_eq!(got, data[at..at + read], "after skipping to {at}");
                at += read;
            }
            let mut rest = Vec::new();
            reader.read_to_end(&mut rest).unwrap();
            assert_eq!(rest, data[at..]);
            assert!(
                reader.seek(io::SeekFrom::Start(0)).is_err(),
                "no going back"
            );
        }
    }

    #[test]
    fn skipping_past_the_end_is_an_error() {
        use std::io::Seek;
        let data = sample(2 * BLOCK);
        for stream in [pack(&data, 2), plain_gzip(&data)] {
            let mut reader = GzReader::with_threads(io::Cursor::new(stream), 2);
            let err = reader
                .seek(io::SeekFrom::Current(2 * BLOCK as i64 + 1))
                .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
            assert!(reader.read(&mut [0u8; 1]).is_err(), "the error is sticky");
        }
    }

    #[test]
    fn members_wholly_skipped_are_neither_inflated_nor_checked() {
        use std::io::Seek;
        let data = sample(4 * BLOCK);
        let mut stream = pack(&data, 1);
        // Spoil the third member's deflate data (its length stays right):
        // skipping it must not inflate it, and reading it must fail.
        let sizes: Vec<usize> = members(&stream).iter().map(|m| m.len()).collect();
        let third = sizes[0] + sizes[1];
        stream[third + HEADER_LEN + 50] ^= 0xff;
        let mut reader = GzReader::with_threads(io::Cursor::new(stream.clone()), 1);
        // Read into the second member first, so that the third is not yet
        // inflated when the skip comes.
        let mut head = vec![0u8; BLOCK + 10];
        reader.read_exact(&mut head).unwrap();
        reader
            .seek(io::SeekFrom::Current((2 * BLOCK - 10) as i64))
            .unwrap();
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, data[3 * BLOCK..]);
        expect_error(stream, "reading the spoiled member");
    }

    #[test]
    fn omitted_members_are_skipped_never_read_and_only_where_accepted() {
        use std::io::Seek;
        let omitted = omitted_member(5000);
        let info = member_info(&omitted).unwrap();
        assert_eq!((info.len, info.omitted), (omitted.len(), Some(5000)));
        let stream = [pack(b"head", 1), omitted, pack(b"tail", 1)].concat();

        let mut reader = GzReader::accepting_omitted(io::Cursor::new(stream.clone()));
        let mut head = [0u8; 4];
        reader.read_exact(&mut head).unwrap();
        assert_eq!(reader.seek(io::SeekFrom::Current(5000)).unwrap(), 5004);
        let mut tail = Vec::new();
        reader.read_to_end(&mut tail).unwrap();
        assert_eq!((&head, &tail[..]), (b"head", &b"tail"[..]));

        let mut reader = GzReader::accepting_omitted(io::Cursor::new(stream.clone()));
        reader.read_exact(&mut head).unwrap();
        let err = reader.read(&mut [0u8; 10]).unwrap_err();
        assert!(err.to_string().contains("omitted"), "{err}");
        let mut reader = GzReader::accepting_omitted(io::Cursor::new(stream.clone()));
        reader.read_exact(&mut head).unwrap();
        assert!(
            reader.seek(io::SeekFrom::Current(4999)).is_err(),
            "a skip may not end inside omitted bytes"
        );

        let err = expect_error(stream.clone(), "an omitted member in a package");
        assert!(err.contains("omitted member"), "{err}");
        // Other gzip readers see an empty member.
        let mut plain = Vec::new();
        flate2::read::MultiGzDecoder::new(&stream[..])
            .read_to_end(&mut plain)
            .unwrap();
        assert_eq!(plain, b"headtail");
    }
}
