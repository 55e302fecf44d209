//! Follows the tar stream's block structure under the tar crate, to bound
//! what it would read into memory.
//!
//! The tar crate reads the body of a GNU long name (`L`) or long link
//! (`K`) and of a PAX header (`x`) whole into memory, whatever size its
//! header claims: one `L` header claiming 1 GiB (1 MB of gzip) took
//! fw-unpack to 1 GB of memory before any signature could be checked.
//! It also collects the extension blocks of a GNU sparse file (`S`)
//! without a bound. So this reader sees every header block as it passes
//! and fails the read that delivers one of these headers if its body is
//! larger than [`MAX_EXTENSION`] (or at all, for sparse files, which a
//! package never holds), before the tar crate allocates anything.
//!
//! To know where headers are it follows tar exactly as the tar crate does:
//! a header block, the entry's data rounded up to 512 bytes, the next
//! header; a PAX `size` record overrides the size of the next entry that
//! is not itself an extension header; the first all-zero block ends the
//! archive (after it, bytes pass unchecked: fw-unpack requires them to be
//! zeros). fw-unpack skips the data of linked files by seek: a skip must
//! stay inside an entry's data.

use std::io::{self, Read, Seek, SeekFrom};

/// The largest long name, long link or PAX header body read.
pub const MAX_EXTENSION: u64 = 64 << 10;

const BLOCK: usize = 512;

enum State {
    /// Inside a header block: how many of its bytes have passed.
    Header {
        block: Box<[u8; BLOCK]>,
        filled: usize,
    },
    /// Inside an entry's data and padding. A recognized PAX header's
    /// records are kept (up to its size) to find a `size` record.
    Body {
        left: u64,
        pax: Option<(Vec<u8>, usize)>,
    },
    /// After the end-of-archive block.
    Done,
}

/// A refusal by this reader, the inner error of the `io::Error` it
/// returns.
#[derive(Debug)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

fn refuse(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, Refused(why))
}

pub struct Blocks<R> {
    pub inner: R,
    state: State,
    /// A PAX `size` for the next entry that is not an extension header.
    pax_size: Option<u64>,
}

impl<R> Blocks<R> {
    pub fn new(inner: R) -> Self {
        Blocks {
            inner,
            state: State::Header {
                block: Box::new([0; BLOCK]),
                filled: 0,
            },
            pax_size: None,
        }
    }

    /// Moves past `bytes` of the stream; `data` holds them unless they
    /// were skipped.
    fn advance(&mut self, mut bytes: u64, mut data: Option<&[u8]>) -> io::Result<()> {
        while bytes > 0 {
            match &mut self.state {
                State::Done => return Ok(()),
                State::Header { block, filled } => {
                    let Some(input) = data else {
                        return Err(refuse("the archive skips over a header".into()));
                    };
                    let n = (BLOCK - *filled).min(input.len());
                    block[*filled..*filled + n].copy_from_slice(&input[..n]);
                    *filled += n;
                    data = Some(&input[n..]);
                    bytes -= n as u64;
                    if *filled == BLOCK {
                        let block = std::mem::replace(block, Box::new([0; BLOCK]));
                        self.state = self.after_header(&block)?;
                    }
                }
                State::Body { left, pax } => {
                    let n = (*left).min(bytes);
                    if let Some((records, want)) = pax {
                        let keep = (*want - records.len()).min(n as usize);
                        match data {
                            Some(input) => records.extend_from_slice(&input[..keep]),
                            None if keep > 0 => {
                                return Err(refuse("the archive skips over a PAX header".into()))
                            }
                            None => {}
                        }
                    }
                    *left -= n;
                    bytes -= n;
                    data = data.map(|input| &input[n as usize..]);
                    if *left == 0 {
                        if let Some((records, _)) = pax.take() {
                            self.pax_size = pax_size(&records);
                        }
                        self.state = State::Header {
                            block: Box::new([0; BLOCK]),
                            filled: 0,
                        };
                    }
                }
            }
        }
        Ok(())
    }

    /// What follows a complete header block.
    fn after_header(&mut self, block: &[u8; BLOCK]) -> io::Result<State> {
        if block.iter().all(|&b| b == 0) {
            return Ok(State::Done);
        }
        let header = tar::Header::from_byte_slice(block);
        let Ok(size) = header.entry_size() else {
            // The tar crate refuses it when it reads it.
            return Ok(State::Done);
        };
        let kind = header.entry_type();
        let recognized = header.as_gnu().is_some() || header.as_ustar().is_some();
        let what = match kind {
            tar::EntryType::GNULongName => Some("GNU long-name"),
            tar::EntryType::GNULongLink => Some("GNU long-link"),
            tar::EntryType::XHeader => Some("PAX"),
            tar::EntryType::XGlobalHeader => Some("PAX global"),
            _ => None,
        };
        if kind == tar::EntryType::GNUSparse {
            return Err(refuse(
                "a GNU sparse file cannot be in a package (its extension headers are not read)"
                    .into(),
            ));
        }
        let size = match what {
            Some(what) if size > MAX_EXTENSION => {
                return Err(refuse(format!(
                    "a {what} header of {size} bytes, more than the {MAX_EXTENSION} bytes \
                     any package needs (a memory exhaustion attempt)"
                )))
            }
            Some(_) => size,
            None => self.pax_size.take().unwrap_or(size),
        };
        let pax = (recognized && kind == tar::EntryType::XHeader)
            .then(|| (Vec::with_capacity(size as usize), size as usize));
        let Some(left) = size.checked_next_multiple_of(BLOCK as u64) else {
            return Err(refuse(format!(
                "an entry of {size} bytes, more than any archive can hold"
            )));
        };
        if left == 0 {
            if let Some((records, _)) = &pax {
                self.pax_size = pax_size(records);
            }
            return Ok(State::Header {
                block: Box::new([0; BLOCK]),
                filled: 0,
            });
        }
        Ok(State::Body { left, pax })
    }
}

/// The `size` record of PAX records, as the tar crate reads it.
fn pax_size(records: &[u8]) -> Option<u64> {
    for record in tar::PaxExtensions::new(records) {
        let record = record.ok()?;
        if record.key() == Ok("size") {
            return record.value().ok()?.parse().ok();
        }
    }
    None
}

impl<R: Read> Read for Blocks<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.advance(n as u64, Some(&buf[..n]))?;
        Ok(n)
    }
}

impl<R: Seek> Seek for Blocks<R> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let SeekFrom::Current(skip @ 0..) = pos else {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "the archive only skips forward",
            ));
        };
        // Checked before the bytes go: a skip may not hide a header.
        let within = match &self.state {
            State::Body { left, pax } => {
                skip as u64 <= *left
                    && pax
                        .as_ref()
                        .is_none_or(|(records, want)| records.len() == *want)
            }
            State::Done => true,
            _ => skip == 0,
        };
        if !within {
            return Err(refuse("the archive skips over a header".into()));
        }
        let offset = self.inner.seek(pos)?;
        self.advance(skip as u64, None)?;
        Ok(offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kind: tar::EntryType, size: u64) -> Vec<u8> {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(0o644);
        h.set_cksum();
        h.as_bytes().to_vec()
    }

    fn read_all(stream: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        Blocks::new(stream).read_to_end(&mut out).map(|_| out)
    }

    #[test]
    fn refuses_large_extension_headers_when_their_header_passes() {
        for kind in [
            tar::EntryType::GNULongName,
            tar::EntryType::GNULongLink,
            tar::EntryType::XHeader,
            tar::EntryType::XGlobalHeader,
        ] {
            let stream = header(kind, 1 << 30);
            let err = read_all(&stream).unwrap_err();
            assert!(err.get_ref().unwrap().is::<Refused>(), "{kind:?}: {err}");
            let fits = [
                header(kind, MAX_EXTENSION),
                vec![b'a'; MAX_EXTENSION as usize],
            ]
            .concat();
            assert!(read_all(&fits).is_ok(), "{kind:?}");
        }
        assert!(read_all(&header(tar::EntryType::GNUSparse, 0)).is_err());
    }

    #[test]
    fn follows_data_pax_sizes_and_the_end() {
        // A file of 1 GiB by its header passes: its data is not held.
        let mut stream = header(tar::EntryType::Regular, 10);
        stream.extend([b'x'; 512]);
        // A PAX size makes the next entry's data 600 bytes (two blocks),
        // where a long-name header hides in the second.
        let records = b"12 size=600\n";
        stream.extend(header(tar::EntryType::XHeader, records.len() as u64));
        stream.extend(records);
        stream.resize(stream.len().div_ceil(512) * 512, 0);
        stream.extend(header(tar::EntryType::Regular, 0));
        stream.extend([b'y'; 512]);
        stream.extend(header(tar::EntryType::GNULongName, 1 << 30));
        assert!(read_all(&stream).is_ok(), "inside the data, not a header");
        stream.extend(header(tar::EntryType::GNULongName, 1 << 30));
        assert!(read_all(&stream).is_err(), "the next header");
        // After the end-of-archive block nothing is parsed.
        let ended = [vec![0; 512], header(tar::EntryType::GNULongName, 1 << 30)].concat();
        assert!(read_all(&ended).is_ok());
    }

    /// Found by fuzzing (fuzz/ `unpack`): a size whose padding to whole
    /// blocks overflows u64 (in a header's base-256 field or a PAX `size`
    /// record) wrapped to no data at all, so this reader lost the headers.
    #[test]
    fn refuses_a_size_that_overflows_its_padding() {
        let huge = header(tar::EntryType::Regular, u64::MAX);
        let err = read_all(&huge).unwrap_err();
        assert!(err.get_ref().unwrap().is::<Refused>(), "{err}");
        let records = b"29 size=18446744073709551615\n";
        let mut stream = header(tar::EntryType::XHeader, records.len() as u64);
        stream.extend(records);
        stream.resize(1024, 0);
        stream.extend(header(tar::EntryType::Regular, 0));
        let err = read_all(&stream).unwrap_err();
        assert!(err.get_ref().unwrap().is::<Refused>(), "{err}");
    }

    #[test]
    fn skips_only_inside_data() {
        let mut stream = header(tar::EntryType::Regular, 1000);
        stream.extend([b'x'; 1024]);
        stream.extend(header(tar::EntryType::Regular, 0));
        let mut blocks = Blocks::new(io::Cursor::new(stream));
        let mut head = [0u8; 512];
        blocks.read_exact(&mut head).unwrap();
        assert!(
            blocks.seek(SeekFrom::Current(1025)).is_err(),
            "into a header"
        );
        blocks.seek(SeekFrom::Current(1024)).unwrap();
        blocks.read_exact(&mut head).unwrap();
    }
}
