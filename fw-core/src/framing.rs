//! The OpenPGP framing of a package as fw-sign writes it, so that a byte
//! of the tar.gz inside can be found in the package file without reading
//! what comes before it (fw-fetch's HTTP Range deltas).
//!
//! OpenPGP cuts a packet body of unknown length into chunks, each with a
//! length header; where those headers fall is up to the writer. fw-sign
//! knows every length before it writes (it compresses the tree first), so
//! it fixes them: a body whose first `lead` bytes are known is written as
//! *partial* chunks whose sizes are the powers of two of `lead`'s binary
//! representation, largest first (at most 2^30 each, RFC 4880 4.2.2.4),
//! followed by one *definite-length* chunk holding the rest (nothing for
//! the literal data packet; the signature and the MDC for the SEIPD
//! packet). A lead under 512 bytes cannot start with a partial chunk and
//! is written as one definite-length body. GnuPG and sequoia read any
//! partial chunking, so the packages stay ordinary OpenPGP messages.
//!
//! Given `lead`, [`Body::runs`] says where each body byte lies; fw-fetch
//! learns `lead` from the signed manifest (the tar.gz's length) and the
//! packet headers it parsed. Anything it gets wrong only yields bytes
//! that fail their BLAKE3 check against the signed manifest: a refusal.
//!
//! Also here, for fw-sign and fw-fetch alike: the SEIPD v1 layer's CFB
//! (decryptable from any block boundary given the ciphertext block before
//! it) and its MDC, hashed with plain SHA-1 (see fw-unseal's seipd.rs for
//! why not sequoia's collision-detecting SHA-1).

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use nettle::hash::insecure_do_not_use::Sha1;
use nettle::hash::Hash as _;
use openpgp::crypto::symmetric::{
    BlockCipherMode, Decryptor, Encryptor, PaddingMode, UnpaddingMode,
};
use openpgp::crypto::SessionKey;
use openpgp::parse::Cookie;
use openpgp::types::SymmetricAlgorithm;
use sequoia_openpgp as openpgp;

/// The largest partial chunk OpenPGP allows.
pub const MAX_PARTIAL: u64 = 1 << 30;
/// The first partial chunk must be at least this long (RFC 4880 4.2.2.4).
pub const MIN_FIRST_PARTIAL: u64 = 512;

/// Packet tags fw writes.
pub const TAG_PKESK: u8 = 1;
pub const TAG_SIGNATURE: u8 = 2;
pub const TAG_ONE_PASS_SIG: u8 = 4;
pub const TAG_LITERAL: u8 = 11;
pub const TAG_SEIPD: u8 = 18;
pub const TAG_MDC: u8 = 19;

/// The literal data packet's header in fw's packages: binary, no file
/// name, then a 4-byte date.
pub const LITERAL_HEADER_LEN: u64 = 6;

fn invalid(why: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.to_string())
}

/// The bytes of a definite length header for `n` (the shortest form).
pub fn definite_len(n: u64) -> io::Result<Vec<u8>> {
    Ok(match n {
        0..=191 => vec![n as u8],
        192..=8383 => {
            let m = n - 192;
            vec![(m >> 8) as u8 + 192, m as u8]
        }
        _ => {
            let n = u32::try_from(n).map_err(|_| invalid("a definite length over 4 GiB"))?;
            let mut v = vec![0xff];
            v.extend_from_slice(&n.to_be_bytes());
            v
        }
    })
}

/// A new-format packet tag byte.
pub fn ctb(tag: u8) -> u8 {
    0xc0 | tag
}

/// The chunking of a packet body whose first `lead` bytes are known when
/// it is written (see the module's comment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Body {
    pub lead: u64,
}

impl Body {
    /// Bytes carried by partial chunks: all of the lead, or none if it is
    /// too short to start with a partial chunk.
    pub fn partial(&self) -> u64 {
        if self.lead >= MIN_FIRST_PARTIAL {
            self.lead
        } else {
            0
        }
    }

    /// The partial chunks' sizes, in order.
    pub fn chunks(&self) -> impl Iterator<Item = u64> {
        let partial = self.partial();
        let full = partial / MAX_PARTIAL;
        let rest = partial % MAX_PARTIAL;
        std::iter::repeat_n(MAX_PARTIAL, full as usize).chain(
            (0..30u32)
                .rev()
                .map(|bit| 1u64 << bit)
                .filter(move |size| rest & size != 0),
        )
    }

    /// The body's encoded length (its length headers included) when the
    /// final chunk carries `tail` bytes after the lead.
    pub fn encoded_len(&self, tail: u64) -> io::Result<u64> {
        let headers = self.chunks().count() as u64;
        let last = self.lead - self.partial() + tail;
        Ok(headers + self.partial() + definite_len(last)?.len() as u64 + last)
    }

    /// Where the body bytes `[from, to)` (all within the lead) lie in the
    /// encoded body: runs of (offset in the encoding, length), in order.
    /// `tail` (what follows the lead in the final chunk) matters only when
    /// the lead is too short for partial chunks.
    pub fn runs(&self, from: u64, to: u64, tail: u64) -> io::Result<Vec<(u64, u64)>> {
        if from > to || to > self.lead {
            return Err(invalid(format!(
                "bytes {from}..{to} are not within a body's first {} bytes",
                self.lead
            )));
        }
        let mut runs = Vec::new();
        if self.partial() == 0 {
            let header = definite_len(self.lead + tail)?.len() as u64;
            if to > from {
                runs.push((header + from, to - from));
            }
            return Ok(runs);
        }
        let (mut at, mut encoded) = (0u64, 0u64);
        for size in self.chunks() {
            encoded += 1; // the chunk's header
            let (start, end) = (from.max(at), to.min(at + size));
            if start < end {
                runs.push((encoded + start - at, end - start));
            }
            at += size;
            encoded += size;
            if at >= to {
                break;
            }
        }
        Ok(runs)
    }
}

/// Writes a packet body (after its tag byte) chunked as [`Body`] says:
/// the lead in partial chunks, then, once [`TailLen::set`] has said how
/// long the rest is, one definite-length chunk. [`BodyWriter::finish`]
/// checks that exactly that much came.
pub struct BodyWriter<W: Write> {
    inner: W,
    chunks: VecDeque<u64>,
    left_in_chunk: u64,
    /// The lead of a body too short for partial chunks, until its length
    /// header can be written.
    short_lead: Option<Vec<u8>>,
    lead_left: u64,
    tail: TailLen,
    /// Bytes of the final chunk still to come, once its header is out.
    final_left: Option<u64>,
}

/// The length of what follows the lead, told to a [`BodyWriter`] that
/// sits below other writers (a cipher) once it is known.
#[derive(Clone, Debug)]
pub struct TailLen(Arc<AtomicU64>);

impl TailLen {
    const UNSET: u64 = u64::MAX;
    pub fn set(&self, len: u64) {
        self.0.store(len, Ordering::SeqCst);
    }
    fn get(&self) -> Option<u64> {
        Some(self.0.load(Ordering::SeqCst)).filter(|&n| n != Self::UNSET)
    }
}

impl<W: Write> BodyWriter<W> {
    pub fn new(inner: W, body: Body) -> Self {
        let chunks: VecDeque<u64> = body.chunks().collect();
        BodyWriter {
            inner,
            chunks,
            left_in_chunk: 0,
            short_lead: (body.partial() == 0).then(Vec::new),
            lead_left: body.lead,
            tail: TailLen(Arc::new(AtomicU64::new(TailLen::UNSET))),
            final_left: None,
        }
    }

    /// The handle that sets the final chunk's length beyond the lead.
    pub fn tail_len(&self) -> TailLen {
        self.tail.clone()
    }

    fn start_final(&mut self) -> io::Result<()> {
        let tail = self.tail.get().ok_or_else(|| {
            io::Error::other("a packet body got more than its lead before its tail length was set")
        })?;
        let lead = self.short_lead.take().unwrap_or_default();
        let len = lead.len() as u64 + tail;
        self.inner.write_all(&definite_len(len)?)?;
        self.inner.write_all(&lead)?;
        self.final_left = Some(tail);
        Ok(())
    }

    /// Checks the body is complete and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        if self.lead_left > 0 {
            return Err(io::Error::other("a packet body ended before its lead"));
        }
        if self.final_left.is_none() {
            if self.tail.get().is_none() {
                self.tail.set(0);
            }
            self.start_final()?;
        }
        if self.final_left != Some(0) {
            return Err(io::Error::other(
                "a packet body's final chunk is shorter than its length header",
            ));
        }
        Ok(self.inner)
    }
}

impl<W: Write> Write for BodyWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.lead_left > 0 {
            if let Some(lead) = &mut self.short_lead {
                let n = buf.len().min(self.lead_left as usize);
                lead.extend_from_slice(&buf[..n]);
                self.lead_left -= n as u64;
                return Ok(n);
            }
            if self.left_in_chunk == 0 {
                let size = self.chunks.pop_front().expect("chunks cover the lead");
                self.inner
                    .write_all(&[0xe0 | size.trailing_zeros() as u8])?;
                self.left_in_chunk = size;
            }
            let n = buf.len().min(self.left_in_chunk as usize);
            let n = self.inner.write(&buf[..n])?;
            self.left_in_chunk -= n as u64;
            self.lead_left -= n as u64;
            return Ok(n);
        }
        if self.final_left.is_none() {
            self.start_final()?;
        }
        let left = self.final_left.expect("started above");
        if buf.len() as u64 > left {
            return Err(io::Error::other(
                "a packet body got more than its final chunk's length",
            ));
        }
        let n = self.inner.write(buf)?;
        self.final_left = Some(left - n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A packet's length as its header gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Len {
    Definite(u64),
    /// A partial chunk of this many bytes; more chunks follow.
    Partial(u64),
    /// An old-format packet that runs to the end of the input.
    Indeterminate,
}

fn read_u8(r: &mut impl Read) -> io::Result<u8> {
    let mut b = [0u8; 1];
    r.read_exact(&mut b)?;
    Ok(b[0])
}

fn read_be(r: &mut impl Read, n: usize) -> io::Result<u64> {
    let mut v = 0u64;
    for _ in 0..n {
        v = v << 8 | read_u8(r)? as u64;
    }
    Ok(v)
}

/// Reads a new-format body length header.
pub fn read_new_len(r: &mut impl Read) -> io::Result<Len> {
    let first = read_u8(r)? as u64;
    Ok(match first {
        0..=191 => Len::Definite(first),
        192..=223 => Len::Definite(((first - 192) << 8) + read_u8(r)? as u64 + 192),
        224..=254 => Len::Partial(1 << (first & 0x1f)),
        _ => Len::Definite(read_be(r, 4)?),
    })
}

/// Reads a packet header: the tag and the body's (first) length. `None`
/// at the end of the input.
pub fn read_header(r: &mut impl Read) -> io::Result<Option<(u8, Len)>> {
    let mut b = [0u8; 1];
    if r.read(&mut b)? == 0 {
        return Ok(None);
    }
    let ctb = b[0];
    if ctb & 0x80 == 0 {
        return Err(invalid(format!(
            "byte {ctb:#04x} is not an OpenPGP packet tag"
        )));
    }
    if ctb & 0x40 != 0 {
        return Ok(Some((ctb & 0x3f, read_new_len(r)?)));
    }
    let tag = (ctb >> 2) & 0x0f;
    let len = match ctb & 3 {
        0 => Len::Definite(read_be(r, 1)?),
        1 => Len::Definite(read_be(r, 2)?),
        2 => Len::Definite(read_be(r, 4)?),
        _ => Len::Indeterminate,
    };
    Ok(Some((tag, len)))
}

/// Reads a packet body across its chunks, as a stream.
pub struct BodyReader<R: Read> {
    inner: R,
    left: u64,
    /// Whether the current chunk is the last.
    last: bool,
    indeterminate: bool,
}

impl<R: Read> BodyReader<R> {
    /// The body that `len` (from [`read_header`]) starts.
    pub fn new(inner: R, len: Len) -> Self {
        let (left, last, indeterminate) = match len {
            Len::Definite(n) => (n, true, false),
            Len::Partial(n) => (n, false, false),
            Len::Indeterminate => (0, true, true),
        };
        BodyReader {
            inner,
            left,
            last,
            indeterminate,
        }
    }

    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read> Read for BodyReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.indeterminate {
            return self.inner.read(buf);
        }
        while self.left == 0 {
            if self.last || buf.is_empty() {
                return Ok(0);
            }
            match read_new_len(&mut self.inner)? {
                Len::Partial(n) => self.left = n,
                Len::Definite(n) => {
                    self.left = n;
                    self.last = true;
                }
                Len::Indeterminate => unreachable!("new-format lengths are never indeterminate"),
            }
        }
        let want = buf.len().min(self.left.min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the package ends inside a packet",
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// The CFB cipher of SEIPD v1 (RFC 4880 5.13: a zero IV, the random
/// prefix doing an IV's job), encrypting what is written to it.
pub fn cfb_encryptor<W: Write>(
    algo: SymmetricAlgorithm,
    key: &SessionKey,
    out: W,
) -> openpgp::Result<Encryptor<W>> {
    Encryptor::new(
        algo,
        BlockCipherMode::CFB,
        PaddingMode::None,
        key,
        None,
        out,
    )
}

/// Decrypts ciphertext that starts at a block boundary of the CFB
/// stream, given the ciphertext block before it (`previous`; the zero IV
/// at the very start).
pub fn cfb_decrypt(
    algo: SymmetricAlgorithm,
    key: &SessionKey,
    previous: &[u8],
    ciphertext: &[u8],
) -> openpgp::Result<Vec<u8>> {
    let source = buffered_reader::Memory::with_cookie(ciphertext, Cookie::default());
    let mut decryptor = Decryptor::new(
        algo,
        BlockCipherMode::CFB,
        UnpaddingMode::None,
        key,
        Some(previous),
        source,
    )?;
    let mut plain = Vec::with_capacity(ciphertext.len());
    decryptor.read_to_end(&mut plain)?;
    Ok(plain)
}

/// Decrypts a CFB stream as it is read: from its start (`previous` is
/// None), or from a block boundary given the ciphertext block before it.
pub fn cfb_reader<'a, R: Read + Send + Sync + 'a>(
    algo: SymmetricAlgorithm,
    key: &SessionKey,
    previous: Option<&[u8]>,
    ciphertext: R,
) -> openpgp::Result<Decryptor<'a>> {
    let source = buffered_reader::Generic::with_cookie(ciphertext, None, Cookie::default());
    Decryptor::new(
        algo,
        BlockCipherMode::CFB,
        UnpaddingMode::None,
        key,
        previous,
        source,
    )
}

/// Whether `key` decrypts the start of a SEIPD v1 ciphertext (`prefix`:
/// at least a block and two bytes) to a valid prefix: a block of random
/// bytes whose last two repeat (RFC 4880 5.13, the session key's quick
/// check).
pub fn quick_check(algo: SymmetricAlgorithm, key: &SessionKey, prefix: &[u8]) -> bool {
    let Ok(block) = algo.block_size() else {
        return false;
    };
    if prefix.len() < block + 2 {
        return false;
    }
    let zero = vec![0u8; block];
    match cfb_decrypt(algo, key, &zero, &prefix[..block + 2]) {
        Ok(plain) => plain[block - 2..block] == plain[block..block + 2],
        Err(_) => false,
    }
}

/// The MDC packet's header: tag 19, length 20.
pub const MDC_HEADER: [u8; 2] = [0xd3, 0x14];

/// Hashes what passes through for the MDC (plain SHA-1) and, at
/// [`MdcWriter::finish`], appends the MDC packet.
pub struct MdcWriter<W: Write> {
    inner: W,
    sha1: Sha1,
}

impl<W: Write> MdcWriter<W> {
    pub fn new(inner: W) -> Self {
        MdcWriter {
            inner,
            sha1: Sha1::default(),
        }
    }

    /// Writes the MDC packet (whose header the hash covers) and returns
    /// the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.sha1.update(&MDC_HEADER);
        let mut digest = [0u8; 20];
        self.sha1.digest(&mut digest);
        self.inner.write_all(&MDC_HEADER)?;
        self.inner.write_all(&digest)?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for MdcWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sha1.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(lead: &[u8], tail: &[u8]) -> Vec<u8> {
        let mut w = BodyWriter::new(
            Vec::new(),
            Body {
                lead: lead.len() as u64,
            },
        );
        let tail_len = w.tail_len();
        w.write_all(lead).unwrap();
        tail_len.set(tail.len() as u64);
        w.write_all(tail).unwrap();
        w.finish().unwrap()
    }

    fn decode(encoded: &[u8]) -> Vec<u8> {
        let mut r = io::Cursor::new(encoded);
        let first = read_new_len(&mut r).unwrap();
        let mut body = Vec::new();
        BodyReader::new(&mut r, first)
            .read_to_end(&mut body)
            .unwrap();
        assert_eq!(
            r.position() as usize,
            encoded.len(),
            "nothing after the body"
        );
        body
    }

    #[test]
    fn chunks_are_the_binary_digits_largest_first() {
        assert_eq!(Body { lead: 100 }.chunks().count(), 0);
        assert_eq!(
            Body { lead: 1000 }.chunks().collect::<Vec<_>>(),
            [512, 256, 128, 64, 32, 8]
        );
        let big = Body {
            lead: 2 * MAX_PARTIAL + 3,
        };
        assert_eq!(
            big.chunks().collect::<Vec<_>>(),
            [MAX_PARTIAL, MAX_PARTIAL, 2, 1]
        );
    }

    #[test]
    fn bodies_round_trip_and_every_byte_is_where_runs_say() {
        for (lead, tail) in [
            (0usize, 0usize),
            (10, 0),
            (511, 40),
            (512, 0),
            (513, 7),
            (5000, 300),
            (70000, 0),
        ] {
            let lead_bytes: Vec<u8> = (0..lead).map(|i| (i * 7 + 3) as u8).collect();
            let tail_bytes = vec![0xaa; tail];
            let encoded = encode(&lead_bytes, &tail_bytes);
            assert_eq!(decode(&encoded), [lead_bytes.clone(), tail_bytes].concat());
            let body = Body { lead: lead as u64 };
            assert_eq!(body.encoded_len(tail as u64).unwrap(), encoded.len() as u64);
            for (from, to) in [
                (0, lead),
                (lead / 3, (lead / 2 + 1).min(lead)),
                (lead.saturating_sub(1), lead),
            ] {
                if from > to {
                    continue;
                }
                let runs = body.runs(from as u64, to as u64, tail as u64).unwrap();
                let got: Vec<u8> = runs
                    .iter()
                    .flat_map(|&(at, len)| encoded[at as usize..(at + len) as usize].to_vec())
                    .collect();
                assert_eq!(got, &lead_bytes[from..to], "lead {lead} {from}..{to}");
            }
        }
    }

    #[test]
    fn sequoia_reads_what_body_writer_writes() {
        use openpgp::parse::Parse;
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let mut message = vec![ctb(TAG_LITERAL)];
        let mut body = BodyWriter::new(
            Vec::new(),
            Body {
                lead: LITERAL_HEADER_LEN + data.len() as u64,
            },
        );
        body.write_all(&[b'b', 0, 0, 0, 0, 0]).unwrap();
        body.write_all(&data).unwrap();
        message.extend(body.finish().unwrap());
        let literal = openpgp::Packet::from_bytes(&message).unwrap();
        match literal {
            openpgp::Packet::Literal(l) => assert_eq!(l.body(), &data[..]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn cfb_decrypts_from_any_block() {
        let algo = SymmetricAlgorithm::AES256;
        let key = SessionKey::new(32).unwrap();
        let plain: Vec<u8> = (0..1000u32).map(|i| (i * 13) as u8).collect();
        let mut enc = cfb_encryptor(algo, &key, Vec::new()).unwrap();
        enc.write_all(&plain).unwrap();
        let cipher = enc.finalize().unwrap();
        let mut whole = Vec::new();
        cfb_reader(algo, &key, None, &cipher[..])
            .unwrap()
            .read_to_end(&mut whole)
            .unwrap();
        assert_eq!(whole, plain);
        let at = 16 * 20;
        let part = cfb_decrypt(algo, &key, &cipher[at - 16..at], &cipher[at..at + 100]).unwrap();
        assert_eq!(part, &plain[at..at + 100]);
    }
}
