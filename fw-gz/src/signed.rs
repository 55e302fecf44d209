//! The members that carry fw-unseal's proof around the verified bytes.
//!
//! fw-unseal writes the tar.gz it verified between two empty gzip members
//! whose extra field holds one subfield each: [`ANNOUNCE`] (`F` `O`)
//! first, carrying the one-pass signature packet that says how the data
//! is hashed, and [`PROOF`] (`F` `S`) last, carrying the signature packet
//! that verified. gzip, zlib and tar ignore extra fields, so the stream
//! stays one ordinary gzip stream; fw-unpack hashes every raw byte in
//! between and checks the signature over exactly those bytes before it
//! reports success (fw-core's `proof` module). The payloads are opaque
//! here: this layer only finds them and hands them on, with the raw bytes
//! between, to a [`RawObserver`].
//!
//! A tagged member is exactly what [`tagged_member`] writes (no name, no
//! comment, no other subfield, the 2-byte empty deflate stream and a zero
//! trailer); `FO` may only open the stream and nothing may follow `FS`.

use std::io::{self, BufRead, Read};

/// The subfield of the member before the verified bytes.
pub const ANNOUNCE: [u8; 2] = *b"FO";
/// The subfield of the member after them, the last of the stream.
pub const PROOF: [u8; 2] = *b"FS";
/// The largest payload a subfield holds: XLEN is 16 bits and the
/// subfield's own header takes 4 of them.
pub const MAX_PAYLOAD: usize = u16::MAX as usize - 4;

/// The empty deflate stream (a final fixed-Huffman block holding only its
/// end code), then CRC-32 and size of nothing.
const EMPTY_TAIL: [u8; 10] = [0x03, 0x00, 0, 0, 0, 0, 0, 0, 0, 0];

/// Sees the raw bytes of the stream the way fw-unseal's proof covers them.
/// Called on the thread that splits the stream, in stream order.
pub trait RawObserver: Send {
    /// The payload of the [`ANNOUNCE`] member that opens the stream.
    fn announce(&mut self, payload: &[u8]);
    /// Raw bytes of every other member, in order, headers and trailers
    /// included.
    fn data(&mut self, bytes: &[u8]);
    /// The payload of the [`PROOF`] member, once the stream ended right
    /// after it.
    fn proof(&mut self, payload: &[u8]);
}

/// A violation of the layout above: the proof does not frame the stream
/// the way fw-unseal writes it. The inner error of the `io::Error` that
/// [`crate::GzReader`] returns, so that a caller can tell it from
/// ordinary corruption.
#[derive(Debug)]
pub struct ProofLayout(pub String);

impl std::fmt::Display for ProofLayout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ProofLayout {}

pub(crate) fn layout_error(why: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, ProofLayout(why.into()))
}

/// An empty gzip member whose extra field holds `payload` under
/// `subfield`.
pub fn tagged_member(subfield: [u8; 2], payload: &[u8]) -> io::Result<Vec<u8>> {
    if payload.len() > MAX_PAYLOAD {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} bytes do not fit a gzip extra field (at most {MAX_PAYLOAD})",
                payload.len()
            ),
        ));
    }
    let xlen = (payload.len() + 4) as u16;
    let mut out = Vec::with_capacity(12 + xlen as usize + EMPTY_TAIL.len());
    // Magic, deflate, FEXTRA, mtime 0, XFL 0, OS 255 (unknown).
    out.extend_from_slice(&[0x1f, 0x8b, 8, crate::member::FEXTRA, 0, 0, 0, 0, 0, 255]);
    out.extend_from_slice(&xlen.to_le_bytes());
    out.extend_from_slice(&subfield);
    out.extend_from_slice(&(payload.len() as u16).to_le_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(&EMPTY_TAIL);
    Ok(out)
}

/// Reads the rest of a tagged member after its header: it must be empty.
pub(crate) fn finish_tagged(input: &mut impl Read, at: u64) -> io::Result<()> {
    let mut tail = Vec::new();
    if crate::member::read_up_to(input, EMPTY_TAIL.len(), &mut tail)? < EMPTY_TAIL.len() {
        return Err(layout_error(format!(
            "gzip member at byte {at}: the stream ends inside a proof member (truncated)"
        )));
    }
    if tail != EMPTY_TAIL {
        return Err(layout_error(format!(
            "gzip member at byte {at}: a proof member that is not empty"
        )));
    }
    Ok(())
}

/// A `BufRead` that shows the observer every byte as it is consumed, for
/// members inflated by flate2's own decoder, which reads exactly up to a
/// member's end and no further.
pub(crate) struct Observed<'a, B> {
    pub inner: B,
    pub observer: &'a mut Option<Box<dyn RawObserver>>,
}

impl<B: BufRead> Read for Observed<'_, B> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(observer) = self.observer.as_mut() {
            observer.data(&buf[..n]);
        }
        Ok(n)
    }
}

impl<B: BufRead> BufRead for Observed<'_, B> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, amt: usize) {
        if let Some(observer) = self.observer.as_mut() {
            // Right after fill_buf, so this returns the same buffer
            // without reading.
            if let Ok(buf) = self.inner.fill_buf() {
                observer.data(&buf[..amt.min(buf.len())]);
            }
        }
        self.inner.consume(amt);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{pack, plain_gzip, sample, unpack};
    use crate::{GzReader, BLOCK};
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    /// What an observer was shown, for the tests.
    #[derive(Default, Debug, PartialEq)]
    struct Seen {
        announce: Vec<Vec<u8>>,
        data: Vec<u8>,
        proof: Vec<Vec<u8>>,
    }

    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Seen>>);

    impl RawObserver for Recorder {
        fn announce(&mut self, payload: &[u8]) {
            self.0.lock().unwrap().announce.push(payload.to_vec());
        }
        fn data(&mut self, bytes: &[u8]) {
            self.0.lock().unwrap().data.extend_from_slice(bytes);
        }
        fn proof(&mut self, payload: &[u8]) {
            self.0.lock().unwrap().proof.push(payload.to_vec());
        }
    }

    fn observe(stream: Vec<u8>) -> (io::Result<Vec<u8>>, Seen) {
        let recorder = Recorder::default();
        let mut reader =
            GzReader::observed(io::Cursor::new(stream), 2, Some(Box::new(recorder.clone())));
        let mut out = Vec::new();
        let result = reader.read_to_end(&mut out).map(|_| out);
        drop(reader);
        let seen = std::mem::take(&mut *recorder.0.lock().unwrap());
        (result, seen)
    }

    fn framed(body: &[u8]) -> Vec<u8> {
        [
            tagged_member(ANNOUNCE, b"one-pass").unwrap(),
            body.to_vec(),
            tagged_member(PROOF, b"signature").unwrap(),
        ]
        .concat()
    }

    #[test]
    fn proof_members_are_ignored_by_ordinary_readers() {
        let data = sample(BLOCK + 7);
        let stream = framed(&pack(&data, 2));
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&stream[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, data, "flate2");
        let gzip = std::process::Command::new("gzip")
            .args(["-t", "-"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                child.stdin.take().unwrap().write_all(&stream)?;
                child.wait()
            })
            .unwrap();
        assert!(gzip.success(), "gzip -t");
        assert_eq!(unpack(stream, 2).unwrap(), data, "without an observer");
    }

    #[test]
    fn the_observer_sees_exactly_the_bytes_between_the_proof_members() {
        let data = sample(2 * BLOCK + 99);
        for body in [
            pack(&data, 2),
            plain_gzip(&data),
            [pack(&data[..BLOCK + 5], 2), plain_gzip(&data[BLOCK + 5..])].concat(),
            [plain_gzip(&data[..10]), pack(&data[10..], 2)].concat(),
        ] {
            let (out, seen) = observe(framed(&body));
            assert_eq!(out.unwrap(), data);
            assert_eq!(
                seen,
                Seen {
                    announce: vec![b"one-pass".to_vec()],
                    data: body,
                    proof: vec![b"signature".to_vec()],
                }
            );
        }
        // Skipped members are shown too: the proof covers them.
        let body = pack(&data, 2);
        let recorder = Recorder::default();
        let mut reader = GzReader::observed(
            io::Cursor::new(framed(&body)),
            2,
            Some(Box::new(recorder.clone())),
        );
        io::Seek::seek(&mut reader, io::SeekFrom::Current(2 * BLOCK as i64)).unwrap();
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, &data[2 * BLOCK..]);
        drop(reader);
        assert_eq!(recorder.0.lock().unwrap().data, body);
    }

    #[test]
    fn proof_members_out_of_place_are_a_layout_error() {
        let data = sample(1000);
        let body = pack(&data, 1);
        let announce = tagged_member(ANNOUNCE, b"x").unwrap();
        let proof = tagged_member(PROOF, b"y").unwrap();
        let mut not_empty = proof.clone();
        not_empty[proof.len() - 10] = 0x02;
        for (what, stream) in [
            (
                "bytes after the proof",
                [framed(&body), b"x".to_vec()].concat(),
            ),
            (
                "a member after the proof",
                [framed(&body), body.clone()].concat(),
            ),
            ("a second proof", [framed(&body), proof.clone()].concat()),
            (
                "an announcement after the start",
                [body.clone(), announce.clone(), body.clone()].concat(),
            ),
            (
                "a proof member with data",
                [announce, body, not_empty].concat(),
            ),
        ] {
            let (out, seen) = observe(stream);
            let err = out.expect_err(what);
            assert!(
                err.get_ref()
                    .is_some_and(|e| e.downcast_ref::<ProofLayout>().is_some()),
                "{what}: {err}"
            );
            assert!(seen.proof.is_empty(), "{what}: no proof was handed on");
        }
        assert!(tagged_member(PROOF, &vec![0; MAX_PAYLOAD + 1]).is_err());
    }
}
