//! The splitting thread of [`crate::GzReader`]: reads the raw stream,
//! cuts fw members off it whole, inflates any other member itself, finds
//! fw-unseal's proof members, and hands the pieces over in batches.

use std::io::{self, BufRead, BufReader, Read};
use std::sync::mpsc::SyncSender;

use crate::member::{corrupt, member_info, omitted_member, read_up_to, MemberInfo, FEXTRA};
use crate::signed::{self, RawObserver, ANNOUNCE, PROOF};
use crate::MAX_MEMBER;

/// Members that inflate to less than this are inflated by the reading
/// thread itself when it comes to them, not handed to a worker: a package
/// whose small files have members of their own (fw-sign's) has thousands,
/// and a hand-over costs more than the inflating (measured on a 12k-entry
/// root filesystem: fw-unpack 3.2 s of system time in futex calls, 1.0 s
/// without; wall 7 s -> ...).
pub(crate) const INLINE_BELOW: u64 = 64 << 10;

/// What the splitting thread hands the reader, in stream order.
pub(crate) enum Piece {
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

pub(crate) struct Member {
    pub(crate) bytes: Vec<u8>,
    pub(crate) header_len: usize,
    /// Inflated size, from its trailer.
    pub(crate) size: u64,
    /// Offset in the compressed stream, for errors.
    pub(crate) at: u64,
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
pub(crate) fn split<R: Read>(
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
