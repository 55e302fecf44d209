//! fw-gz: the gzip layer of an fw package, compressed and inflated on
//! every core while staying one plain gzip stream.
//!
//! A single deflate stream inflates on one core only, and on a small
//! device that core is the bottleneck of the whole install. So fw-sign
//! cuts the tar stream into blocks of [`BLOCK`] bytes and compresses each
//! into its own gzip member (RFC 1952 allows any number, concatenated).
//! Each member's header carries an extra subfield `F` `W` holding the
//! member's total length in bytes (u32, little-endian), as BGZF's `B` `C`
//! does for samtools. GNU gzip, GNU tar and zlib see one ordinary stream;
//! fw-unpack reads the lengths to hand whole members to worker threads
//! and puts their output back in order, streaming, in bounded memory.
//!
//! The cost: the deflate window restarts every block, about 0.1% of size
//! at 1 MiB blocks. The output depends only on the input and the level,
//! never on the number of threads, so packing stays reproducible.
//!
//! A member without the subfield (another gzip tool) is inflated the
//! ordinary way, on one thread: fw-unpack accepts any gzip stream, and
//! still requires every member's trailer and then EOF.
//!
//! fw-unseal frames the stream with two empty members carrying its proof
//! (see [`signed`]); the reader hands their payloads and the raw bytes
//! between to a [`RawObserver`], from the thread that reads the stream.
//!
//! Three more subfields serve HTTP Range deltas (fw-fetch):
//! - `F` `B` (8 bytes, little-endian), in the first member of a package
//!   only: the length of the members that hold the manifest and its
//!   signature, i.e. where the tree's members begin, so that a device can
//!   fetch exactly the package's head.
//! - `F` `C`, in the first member only: the manifest's chunks (see
//!   fw-core's `manifest::json_chunks`), whose members follow the first
//!   one: a count (u32), then per chunk its members' length and its length
//!   (u32 each) and the first 16 bytes of its BLAKE3, so that a device
//!   fetches only the chunks its installed manifests do not have.
//! - `F` `H` (8 bytes, "held"): an *omitted* member, written by fw-fetch in
//!   place of a file's data that the device already holds. It is empty and
//!   stands for that many bytes, which may be skipped (fw-unpack links the
//!   file from an installed version) but never read: reading them is an
//!   error, so omitted data is never silently taken for content. Only a
//!   reader made with [`GzReader::accepting_omitted`] accepts them at all.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use flate2::{Compression, Crc, Decompress, FlushDecompress, Status};

mod signed;
pub use signed::{tagged_member, ProofLayout, RawObserver, ANNOUNCE, MAX_PAYLOAD, PROOF};

/// Bytes read from a member before the next ones are inflated ahead.
const PREFETCH_AFTER: usize = 16 << 10;
/// Members that inflate to less than this are inflated by the reading
/// thread itself when it comes to them, not handed to a worker: a package
/// whose small files have members of their own (fw-sign's) has thousands,
/// and a hand-over costs more than the inflating (measured on a 12k-entry
/// root filesystem: fw-unpack 3.2 s of system time in futex calls, 1.0 s
/// without; wall 7 s -> ...).
const INLINE_BELOW: u64 = 64 << 10;
/// Uncompressed bytes per member written by [`GzWriter`].
pub const BLOCK: usize = 1 << 20;
/// The largest member [`GzReader`] inflates in parallel, compressed or
/// not: bounds the memory a hostile stream can make it hold.
pub const MAX_MEMBER: usize = 4 << 20;
/// The extra subfields' identifiers: the member's length, the base (in a
/// package's first member), an omitted member's size.
const SUBFIELD: [u8; 2] = *b"FW";
const BASE: [u8; 2] = *b"FB";
const CHUNKS: [u8; 2] = *b"FC";
const OMITTED: [u8; 2] = *b"FH";
/// Header of a member written here: magic, deflate, FEXTRA, mtime 0,
/// XFL 0, OS 255 (unknown), XLEN 8, then the subfield: `F` `W`, length 4,
/// and the member's length (filled in).
const HEADER_LEN: usize = 20;
const FEXTRA: u8 = 0x04;

/// One inflating thread per core (at most 16).
pub fn threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 16)
}

type Job = Box<dyn FnOnce() + Send>;

/// A few worker threads taking jobs off one queue; they exit when the
/// pool is dropped.
struct Pool {
    jobs: Option<SyncSender<Job>>,
    workers: Vec<JoinHandle<()>>,
}

impl Pool {
    fn new(size: usize) -> Pool {
        // The callers bound what is in flight; the queue only must not block them.
        let (tx, rx) = mpsc::sync_channel::<Job>(1024);
        let rx = Arc::new(Mutex::new(rx));
        let workers = (0..size)
            .map(|_| {
                let rx = Arc::clone(&rx);
                std::thread::spawn(move || loop {
                    let job = match rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    match job {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
                })
            })
            .collect();
        Pool {
            jobs: Some(tx),
            workers,
        }
    }

    /// Runs `work` on a worker; its result arrives on the receiver.
    fn submit<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> io::Result<Receiver<T>> {
        let (tx, rx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move || {
            let _ = tx.send(work());
        });
        self.jobs
            .as_ref()
            .expect("the pool is open until dropped")
            .send(job)
            .map_err(|_| io::Error::other("the gzip worker threads are gone"))?;
        Ok(rx)
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.jobs.take();
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

/// Compresses `data` into one gzip member carrying its own length.
pub fn compress_member(data: &[u8], level: Compression) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / 2 + 64);
    out.extend_from_slice(&[0x1f, 0x8b, 8, FEXTRA, 0, 0, 0, 0, 0, 255, 8, 0]);
    out.extend_from_slice(&SUBFIELD);
    out.extend_from_slice(&[4, 0, 0, 0, 0, 0]);
    let mut deflate = flate2::write::DeflateEncoder::new(out, level);
    deflate
        .write_all(data)
        .expect("writing into a Vec cannot fail");
    let mut out = deflate.finish().expect("writing into a Vec cannot fail");
    let mut crc = Crc::new();
    crc.update(data);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    let len = u32::try_from(out.len()).expect("a member of a 1 MiB block fits in u32");
    out[HEADER_LEN - 4..HEADER_LEN].copy_from_slice(&len.to_le_bytes());
    out
}

/// What an fw member's header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberInfo {
    /// Bytes of the header (fixed part and extra field).
    pub header_len: usize,
    /// The whole member's length, from its `FW` subfield.
    pub len: usize,
    /// `FB`: where a package's tree members begin.
    pub base: Option<u64>,
    /// `FH`: the size an omitted member stands for.
    pub omitted: Option<u64>,
    /// `FC`: where the manifest's chunk table is in the header's bytes
    /// (start, end).
    pub chunks: Option<(usize, usize)>,
}

/// A manifest chunk, as the `FC` subfield lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    /// Length of its gzip members.
    pub members: u32,
    /// Its length.
    pub len: u32,
    /// The first 16 bytes of its BLAKE3.
    pub hash: [u8; 16],
}

impl Chunk {
    const ENCODED: usize = 24;

    /// The `FC` payload of `chunks`; None if it would not fit a gzip
    /// extra field.
    pub fn encode(chunks: &[Chunk]) -> Option<Vec<u8>> {
        let len = 4 + chunks.len() * Self::ENCODED;
        if len > u16::MAX as usize - 64 {
            return None;
        }
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(&(chunks.len() as u32).to_le_bytes());
        for c in chunks {
            out.extend_from_slice(&c.members.to_le_bytes());
            out.extend_from_slice(&c.len.to_le_bytes());
            out.extend_from_slice(&c.hash);
        }
        Some(out)
    }

    /// The chunks an `FC` payload lists; None if it is malformed.
    pub fn decode(payload: &[u8]) -> Option<Vec<Chunk>> {
        let count = u32::from_le_bytes(payload.get(..4)?.try_into().ok()?) as usize;
        let rest = &payload[4..];
        if rest.len() != count.checked_mul(Self::ENCODED)? {
            return None;
        }
        Some(
            rest.chunks(Self::ENCODED)
                .map(|c| Chunk {
                    members: u32::from_le_bytes(c[..4].try_into().expect("4 bytes")),
                    len: u32::from_le_bytes(c[4..8].try_into().expect("4 bytes")),
                    hash: c[8..].try_into().expect("16 bytes"),
                })
                .collect(),
        )
    }
}

/// Parses the header of the fw member that `bytes` starts with. `None` if
/// `bytes` is too short to hold it or it is not an fw member (no `FW`
/// subfield, or a name, comment or header CRC after the extra field).
pub fn member_info(bytes: &[u8]) -> Option<MemberInfo> {
    if bytes.len() < 12 || bytes[..3] != [0x1f, 0x8b, 8] || bytes[3] != FEXTRA {
        return None;
    }
    let xlen = u16::from_le_bytes([bytes[10], bytes[11]]) as usize;
    let extra = bytes.get(12..12 + xlen)?;
    let (mut len, mut base, mut omitted, mut chunks) = (None, None, None, None);
    let mut at = 0;
    while extra.len() >= at + 4 {
        let rest = &extra[at..];
        let field_len = u16::from_le_bytes([rest[2], rest[3]]) as usize;
        let Some(value) = rest.get(4..4 + field_len) else {
            break;
        };
        match (&[rest[0], rest[1]], field_len) {
            (&SUBFIELD, 4) => len = Some(u32::from_le_bytes(value.try_into().ok()?) as usize),
            (&BASE, 8) => base = Some(u64::from_le_bytes(value.try_into().ok()?)),
            (&OMITTED, 8) => omitted = Some(u64::from_le_bytes(value.try_into().ok()?)),
            (&CHUNKS, _) => chunks = Some((12 + at + 4, 12 + at + 4 + field_len)),
            _ => {}
        }
        at += 4 + field_len;
    }
    Some(MemberInfo {
        header_len: 12 + xlen,
        len: len?,
        base,
        omitted,
        chunks,
    })
}

/// Marks the first of `members` (written by this crate: a [`GzWriter`]'s
/// output) with the `FB` subfield (the length of all of them, which grows
/// by what is added here) and, with `chunks` (an `FC` payload from
/// [`Chunk::encode`]), the manifest's chunk table. fw-sign marks the
/// members of the manifest and its signature so.
pub fn mark_head(members: &[u8], chunks: Option<&[u8]>) -> Vec<u8> {
    let first = member_info(members).expect("a member written by GzWriter");
    assert_eq!(
        first.header_len, HEADER_LEN,
        "an unmarked member of this crate"
    );
    let added = 12 + chunks.map_or(0, |c| 4 + c.len());
    let total = (members.len() + added) as u64;
    let mut out = Vec::with_capacity(members.len() + added);
    out.extend_from_slice(&members[..10]);
    out.extend_from_slice(&((8 + added) as u16).to_le_bytes());
    out.extend_from_slice(&SUBFIELD);
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&((first.len + added) as u32).to_le_bytes());
    out.extend_from_slice(&BASE);
    out.extend_from_slice(&8u16.to_le_bytes());
    out.extend_from_slice(&total.to_le_bytes());
    if let Some(chunks) = chunks {
        out.extend_from_slice(&CHUNKS);
        out.extend_from_slice(&(chunks.len() as u16).to_le_bytes());
        out.extend_from_slice(chunks);
    }
    out.extend_from_slice(&members[HEADER_LEN..]);
    out
}

/// An omitted member standing for `size` bytes (see the crate's comment).
pub fn omitted_member(size: u64) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, FEXTRA, 0, 0, 0, 0, 0, 255];
    out.extend_from_slice(&20u16.to_le_bytes());
    out.extend_from_slice(&SUBFIELD);
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&42u32.to_le_bytes());
    out.extend_from_slice(&OMITTED);
    out.extend_from_slice(&8u16.to_le_bytes());
    out.extend_from_slice(&size.to_le_bytes());
    // An empty final deflate block, then CRC-32 and size of nothing.
    out.extend_from_slice(&[3, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    debug_assert_eq!(out.len(), 42);
    out
}

/// Inflates the fw members that `bytes` holds exactly (each whole and
/// checked), handing each member's output to `sink`; returns the total.
/// `at` is where `bytes` starts in its stream, for errors.
pub fn inflate_members(
    mut bytes: &[u8],
    mut at: u64,
    mut sink: impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<u64> {
    let mut total = 0u64;
    while !bytes.is_empty() {
        let info = member_info(bytes)
            .filter(|i| i.omitted.is_none() && i.len <= bytes.len() && i.len <= MAX_MEMBER)
            .ok_or_else(|| corrupt(at, "not a whole gzip member of an fw package"))?;
        let data = inflate_member(&bytes[..info.len], info.header_len, at)?;
        sink(&data)?;
        total += data.len() as u64;
        bytes = &bytes[info.len..];
        at += info.len as u64;
    }
    Ok(total)
}

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

fn corrupt(at: u64, why: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("gzip member at byte {at}: {why}"),
    )
}

/// Inflates one whole member (header included, `header_len` bytes of it)
/// and checks it ends exactly with its trailer, whose CRC-32 and size
/// must match.
fn inflate_member(member: &[u8], header_len: usize, at: u64) -> io::Result<Vec<u8>> {
    if member.len() < header_len + 8 {
        return Err(corrupt(at, "shorter than its header and trailer"));
    }
    let (body, trailer) = member[header_len..].split_at(member.len() - header_len - 8);
    let crc = u32::from_le_bytes(trailer[..4].try_into().expect("4 bytes"));
    let size = u32::from_le_bytes(trailer[4..].try_into().expect("4 bytes")) as usize;
    if size > MAX_MEMBER {
        return Err(corrupt(
            at,
            format!("says it holds {size} bytes, more than fw writes in a member"),
        ));
    }
    // One byte of room past the declared size, so that more output than
    // declared shows instead of being cut silently.
    let mut out = Vec::with_capacity(size + 1);
    let mut inflate = Decompress::new(false);
    let status = inflate
        .decompress_vec(body, &mut out, FlushDecompress::Finish)
        .map_err(|e| corrupt(at, format!("corrupt deflate data ({e})")))?;
    if status != Status::StreamEnd || inflate.total_in() != body.len() as u64 {
        return Err(corrupt(
            at,
            "its deflate data does not end where its length says",
        ));
    }
    let mut check = Crc::new();
    check.update(&out);
    if out.len() != size || check.sum() != crc {
        return Err(corrupt(at, "its trailer's CRC-32 or size does not match"));
    }
    Ok(out)
}

/// Appends up to `len` bytes of `input` to `buf` (fewer only at EOF);
/// returns how many.
fn read_up_to(input: &mut impl Read, len: usize, buf: &mut Vec<u8>) -> io::Result<usize> {
    buf.reserve_exact(len);
    input.take(len as u64).read_to_end(buf)
}

/// What the splitting thread hands the reader, in stream order.
enum Piece {
    /// A whole fw member, not yet inflated: the reader decides whether to
    /// inflate it or, inside skipped bytes, to drop it.
    Member(Member),
    /// An omitted member: this many bytes that may be skipped, never read.
    Omitted {
        size: u64,
        at: u64,
    },
    /// Bytes inflated by the splitting thread itself (a stream that is not
    /// fw's), or the error that ended the stream.
    Inflated(io::Result<Vec<u8>>),
    End,
}

struct Member {
    bytes: Vec<u8>,
    header_len: usize,
    /// Inflated size, from its trailer.
    size: u64,
    /// Offset in the compressed stream, for errors.
    at: u64,
}

/// A member header read off the stream: its bytes, and what fw put in
/// its extra field.
struct Header {
    bytes: Vec<u8>,
    /// What its subfields say, if it is one of fw's members (`FW`).
    info: Option<MemberInfo>,
    /// The subfield and payload of a member carrying fw-unseal's proof.
    tagged: Option<([u8; 2], Vec<u8>)>,
}

/// Reads a member header if it is one of fw's: the fixed part, and with
/// FEXTRA the extra field. Returns what it read either way, so that the
/// bytes can be handed to an ordinary decoder.
fn read_header(input: &mut impl Read) -> io::Result<Header> {
    let mut bytes = Vec::new();
    let n = read_up_to(input, 12, &mut bytes)?;
    let mut header = Header {
        bytes,
        info: None,
        tagged: None,
    };
    if n < 12 || header.bytes[..3] != [0x1f, 0x8b, 8] || header.bytes[3] & FEXTRA == 0 {
        return Ok(header);
    }
    let xlen = u16::from_le_bytes([header.bytes[10], header.bytes[11]]) as usize;
    let n = read_up_to(input, xlen, &mut header.bytes)?;
    // Name, comment or header CRC after the extra field: not fw's shape.
    let plain = header.bytes[3] & !FEXTRA == 0 && n == xlen;
    if !plain {
        return Ok(header);
    }
    header.info = member_info(&header.bytes);
    let mut rest = &header.bytes[12..];
    while rest.len() >= 4 {
        let len = u16::from_le_bytes([rest[2], rest[3]]) as usize;
        if rest.len() < 4 + len {
            break;
        }
        let id = [rest[0], rest[1]];
        if id == ANNOUNCE || id == PROOF {
            header.tagged = Some((id, rest[4..4 + len].to_vec()));
        }
        rest = &rest[4 + len..];
    }
    Ok(header)
}

/// Hands pieces to the reader in batches: small members one at a time
/// would cost the two threads a wake-up each (a package whose small files
/// have members of their own has thousands of them).
struct Batcher {
    order: SyncSender<Vec<Piece>>,
    batch: Vec<Piece>,
    bytes: usize,
}

impl Batcher {
    const MAX_PIECES: usize = 64;
    const MAX_BYTES: usize = 256 << 10;

    /// Queues `piece`; false once the reader is gone.
    fn send(&mut self, piece: Piece) -> bool {
        let (small, len) = match &piece {
            Piece::Member(m) => (m.size < INLINE_BELOW, m.bytes.len()),
            Piece::Omitted { .. } => (true, 0),
            _ => (false, 0),
        };
        self.batch.push(piece);
        self.bytes += len;
        if small && self.batch.len() < Self::MAX_PIECES && self.bytes < Self::MAX_BYTES {
            return true;
        }
        self.flush()
    }

    fn flush(&mut self) -> bool {
        self.bytes = 0;
        self.batch.is_empty() || self.order.send(std::mem::take(&mut self.batch)).is_ok()
    }
}

/// The splitting thread: cuts fw members off the stream and hands them
/// over whole; inflates any other member itself; shows `observer` the raw
/// bytes between fw-unseal's proof members.
fn split<R: Read>(
    input: R,
    order: SyncSender<Vec<Piece>>,
    mut observer: Option<Box<dyn RawObserver>>,
    accept_omitted: bool,
) {
    let mut order = Batcher {
        order,
        batch: Vec::new(),
        bytes: 0,
    };
    let mut input = BufReader::with_capacity(256 << 10, input);
    let mut at = 0u64;
    let send_error = |order: &mut Batcher, e: io::Error| {
        order.send(Piece::Inflated(Err(e)));
    };
    loop {
        let header = match read_header(&mut input) {
            Ok(h) => h,
            Err(e) => return send_error(&mut order, e),
        };
        if header.bytes.is_empty() {
            if at == 0 {
                return send_error(
                    &mut order,
                    io::Error::new(io::ErrorKind::UnexpectedEof, "the gzip stream is empty"),
                );
            }
            order.send(Piece::End);
            return;
        }
        if let Some((id, payload)) = &header.tagged {
            if let Err(e) = signed::finish_tagged(&mut input, at) {
                return send_error(&mut order, e);
            }
            if *id == ANNOUNCE {
                if at != 0 {
                    return send_error(
                        &mut order,
                        signed::layout_error(format!(
                            "gzip member at byte {at}: an announcement of fw-unseal's proof \
                             after the start of the stream"
                        )),
                    );
                }
                if let Some(observer) = observer.as_mut() {
                    observer.announce(payload);
                }
                at += (header.bytes.len() + 10) as u64;
                continue;
            }
            // The proof: the stream must end here.
            match input.fill_buf() {
                Ok([]) => {}
                Ok(_) => {
                    return send_error(
                        &mut order,
                        signed::layout_error(format!(
                            "bytes follow fw-unseal's proof (gzip member at byte {at}): the \
                             stream was altered after fw-unseal"
                        )),
                    )
                }
                Err(e) => return send_error(&mut order, e),
            }
            if let Some(observer) = observer.as_mut() {
                observer.proof(payload);
            }
            order.send(Piece::End);
            return;
        }
        let Some(info) = header.info else {
            if let Some(observer) = observer.as_mut() {
                observer.data(&header.bytes);
            }
            match inflate_one(header.bytes, &mut input, &mut observer, at, &mut order) {
                Some(len) => {
                    at += len;
                    continue;
                }
                None => return,
            }
        };
        let (member_len, header_len) = (info.len, header.bytes.len());
        if member_len > MAX_MEMBER || member_len < header_len + 8 {
            return send_error(
                &mut order,
                corrupt(
                    at,
                    format!("its length field says {member_len} bytes, which no fw member has"),
                ),
            );
        }
        let mut bytes = header.bytes;
        match read_up_to(&mut input, member_len - header_len, &mut bytes) {
            Ok(n) if n == member_len - header_len => {}
            Ok(_) => {
                return send_error(
                    &mut order,
                    io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("gzip member at byte {at}: the stream ends inside it (truncated)"),
                    ),
                )
            }
            Err(e) => return send_error(&mut order, e),
        }
        if let Some(observer) = observer.as_mut() {
            observer.data(&bytes);
        }
        let piece = match info.omitted {
            Some(size) if !accept_omitted => {
                return send_error(
                    &mut order,
                    corrupt(
                        at,
                        format!(
                            "an omitted member (fw-fetch's mark for {size} bytes the device \
                             holds) where a package's data must be"
                        ),
                    ),
                )
            }
            Some(size) if size == 0 || bytes != omitted_member(size) => {
                return send_error(&mut order, corrupt(at, "a malformed omitted member"))
            }
            Some(size) => Piece::Omitted { size, at },
            None => {
                let size = u32::from_le_bytes(bytes[member_len - 4..].try_into().expect("4 bytes"));
                Piece::Member(Member {
                    bytes,
                    header_len,
                    size: size as u64,
                    at,
                })
            }
        };
        at += member_len as u64;
        if !order.send(piece) {
            return; // the reader is gone
        }
    }
}

/// Inflates one member that is not fw's, starting with the header bytes
/// already read, with flate2's ordinary decoder, which reads exactly to
/// the member's end. Returns the member's length in the stream, or None
/// once the stream failed or the reader went away.
fn inflate_one<R: Read>(
    head: Vec<u8>,
    input: &mut BufReader<R>,
    observer: &mut Option<Box<dyn RawObserver>>,
    at: u64,
    order: &mut Batcher,
) -> Option<u64> {
    let head_len = head.len() as u64;
    let mut counted = Counted {
        inner: signed::Observed {
            inner: input,
            observer,
        },
        count: 0,
    };
    let mut decoder = flate2::bufread::GzDecoder::new(io::Cursor::new(head).chain(&mut counted));
    loop {
        let mut chunk = Vec::new();
        let result = match read_up_to(&mut decoder, 256 << 10, &mut chunk) {
            Ok(0) => return Some(head_len + counted.count),
            Ok(_) => Ok(chunk),
            Err(e) => Err(io::Error::new(
                e.kind(),
                format!("gzip member at byte {at}: {e}"),
            )),
        };
        let failed = result.is_err();
        if !order.send(Piece::Inflated(result)) || failed {
            return None;
        }
    }
}

/// Counts the bytes consumed through it.
struct Counted<B> {
    inner: B,
    count: u64,
}

impl<B: BufRead> Read for Counted<B> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

impl<B: BufRead> BufRead for Counted<B> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, amt: usize) {
        self.count += amt as u64;
        self.inner.consume(amt);
    }
}

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
mod tests;
