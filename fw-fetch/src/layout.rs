//! Where a byte of the tar.gz lies in the package file, and how to get it
//! back from the fetched bytes: the chunk layout of `fw_core::framing`,
//! and for an encrypted package the CFB of its SEIPD layer, decrypted from
//! the block before the wanted bytes (plaintext block i is ciphertext
//! block i XOR the encryption of ciphertext block i-1).
//!
//! The layout is derived from the first length headers the head showed
//! and from the tar.gz's length that the signed manifest gives; if those
//! do not fit fw-sign's framing, the package is read as a stream instead.

use std::collections::VecDeque;
use std::io::{self, Read};

use openpgp::crypto::SessionKey;
use openpgp::types::SymmetricAlgorithm;
use sequoia_openpgp as openpgp;

use fw_core::framing::{self, Body, Len};
use fw_core::{Error, Result};

use crate::literal::Framing;

pub struct Layout {
    /// Offset of the literal packet's first length header: in the file,
    /// or in the CFB plaintext.
    literal_start: u64,
    literal: Layer,
    cipher: Option<CipherLayout>,
}

struct CipherLayout {
    algo: SymmetricAlgorithm,
    key: SessionKey,
    block: u64,
    seipd_start: u64,
    seipd: Layer,
}

/// How a packet body's bytes lie after its first length header.
#[derive(Clone, Copy)]
enum Layer {
    /// fw-sign's chunks of a body whose lead is known.
    Chunked(Body),
    /// One definite-length body, behind a header of `header` bytes.
    Definite { header: u64, len: u64 },
}

impl Layer {
    /// Where body bytes `[from, to)` lie: runs of (offset from the first
    /// length header, length).
    fn runs(&self, from: u64, to: u64) -> Result<Vec<(u64, u64)>> {
        match *self {
            Layer::Chunked(body) => body.runs(from, to, 0).map_err(layout_error),
            Layer::Definite { header, len } if from <= to && to <= len => {
                Ok(vec![(header + from, to - from)])
            }
            Layer::Definite { .. } => Err(layout_error(io::ErrorKind::InvalidInput.into())),
        }
    }

    /// What is known of a body from its first length header alone: a
    /// partial chunk's bytes, or a definite body.
    fn first(len: Len) -> Option<Layer> {
        match len {
            Len::Partial(n) => Some(Layer::Chunked(Body { lead: n })),
            Len::Definite(n) => Some(Layer::Definite {
                header: framing::definite_len(n).ok()?.len() as u64,
                len: n,
            }),
            Len::Indeterminate => None,
        }
    }
}

/// The first length header of a body chunked as `body`, when it is known
/// without the tail.
fn first_len(body: Body) -> Option<Len> {
    body.chunks().next().map(Len::Partial)
}

fn layout_error(e: io::Error) -> Error {
    Error::invalid(format!(
        "the package's framing does not match its manifest ({e}); refusing it"
    ))
}

impl Layout {
    /// The layout of a package whose tar.gz is `data_len` bytes, if its
    /// first length headers are those fw-sign writes for that length.
    pub fn new(framing: &Framing, data_len: u64) -> Option<Layout> {
        let literal = Body {
            lead: framing::LITERAL_HEADER_LEN.checked_add(data_len)?,
        };
        let (literal_first, literal_layer) = match first_len(literal) {
            Some(len) => (len, Layer::Chunked(literal)),
            None => (
                Len::Definite(literal.lead),
                Layer::first(Len::Definite(literal.lead))?,
            ),
        };
        if framing.literal_first != literal_first {
            return None;
        }
        let cipher = match &framing.cipher {
            None => None,
            Some(c) => {
                let packet = 1 + literal.encoded_len(0).ok()?;
                // The version byte, the plaintext up to the literal packet's end.
                let seipd = Body {
                    lead: 1 + framing.literal_start - 1 + packet,
                };
                // A body too short for partial chunks is read as a stream.
                if first_len(seipd)? != c.seipd_first {
                    return None;
                }
                Some(CipherLayout {
                    algo: c.algo,
                    key: c.key.clone(),
                    block: c.algo.block_size().ok()? as u64,
                    seipd_start: c.seipd_start,
                    seipd: Layer::Chunked(seipd),
                })
            }
        };
        Some(Layout {
            literal_start: framing.literal_start,
            literal: literal_layer,
            cipher,
        })
    }

    /// The layout of the package's first bytes, before its manifest says
    /// how long the tar.gz is: valid for bytes within the first chunk of
    /// each packet (where the manifest's members are, in a package of any
    /// size; in a small one they may not be, and the head is read as a
    /// stream).
    pub fn head(framing: &Framing) -> Option<Layout> {
        let cipher = match &framing.cipher {
            None => None,
            Some(c) => Some(CipherLayout {
                algo: c.algo,
                key: c.key.clone(),
                block: c.algo.block_size().ok()? as u64,
                seipd_start: c.seipd_start,
                seipd: Layer::first(c.seipd_first)?,
            }),
        };
        Some(Layout {
            literal_start: framing.literal_start,
            literal: Layer::first(framing.literal_first)?,
            cipher,
        })
    }

    /// Runs of the literal packet's encoding holding tar.gz bytes
    /// `[from, to)`, as offsets from the packet's first length header.
    fn literal_runs(&self, from: u64, to: u64) -> Result<Vec<(u64, u64)>> {
        let h = framing::LITERAL_HEADER_LEN;
        self.literal.runs(h + from, h + to)
    }

    /// The span of the file that holds tar.gz bytes `[from, to)`.
    pub fn span(&self, from: u64, to: u64) -> Result<(u64, u64)> {
        Ok(self.plan(from, to)?.span)
    }

    fn plan(&self, from: u64, to: u64) -> Result<Plan> {
        let runs = self.literal_runs(from, to)?;
        let (Some(&first), Some(&last)) = (runs.first(), runs.last()) else {
            return Err(layout_error(io::ErrorKind::InvalidInput.into()));
        };
        let Some(c) = &self.cipher else {
            let base = self.literal_start + first.0;
            return Ok(Plan {
                span: (base, self.literal_start + last.0 + last.1),
                file_runs: runs.iter().map(|&(at, n)| (at - first.0, n)).collect(),
                cipher: None,
            });
        };
        // In the plaintext: the literal bytes, from the start of their
        // first cipher block; and the block before it as the IV.
        let (pstart, pend) = (
            self.literal_start + first.0,
            self.literal_start + last.0 + last.1,
        );
        let block_start = pstart / c.block * c.block;
        let from_cipher = block_start.saturating_sub(c.block);
        // Ciphertext offset c is SEIPD body byte 1 + c (the version byte).
        let seipd_runs = c.seipd.runs(1 + from_cipher, 1 + pend)?;
        let (sf, sl) = (seipd_runs[0], seipd_runs[seipd_runs.len() - 1]);
        Ok(Plan {
            span: (c.seipd_start + sf.0, c.seipd_start + sl.0 + sl.1),
            file_runs: seipd_runs.iter().map(|&(at, n)| (at - sf.0, n)).collect(),
            cipher: Some(CipherPlan {
                iv_in_span: block_start >= c.block,
                plain_runs: runs
                    .iter()
                    .map(|&(at, n)| (self.literal_start + at - block_start, n))
                    .collect(),
            }),
        })
    }

    /// A reader of tar.gz bytes `[from, to)` out of `span`, the file's
    /// bytes from the start of [`Layout::span`].
    pub fn reader<'a, R: Read + Send + Sync + 'a>(
        &self,
        from: u64,
        to: u64,
        span: R,
    ) -> Result<Box<dyn Read + Send + Sync + 'a>> {
        let plan = self.plan(from, to)?;
        let mut filtered = Runs::new(span, plan.file_runs);
        let (Some(c), Some(cp)) = (&self.cipher, plan.cipher) else {
            return Ok(Box::new(filtered));
        };
        let mut iv = vec![0u8; c.block as usize];
        if cp.iv_in_span {
            filtered
                .read_exact(&mut iv)
                .map_err(|e| crate::http::from_io(e, "the package"))?;
        }
        let plain = framing::cfb_reader(c.algo, &c.key, Some(&iv), filtered)
            .map_err(|e| Error::failed(format!("cannot decrypt: {e}")))?;
        Ok(Box::new(Runs::new(plain, cp.plain_runs)))
    }
}

struct Plan {
    span: (u64, u64),
    /// Runs of the span that hold the wanted bytes (plain) or the
    /// ciphertext from the IV block on (encrypted), relative to the span.
    file_runs: Vec<(u64, u64)>,
    cipher: Option<CipherPlan>,
}

struct CipherPlan {
    /// Whether the span starts with the ciphertext block used as IV (else
    /// the IV is zero: the wanted bytes are in the first block).
    iv_in_span: bool,
    /// Runs of the decrypted plaintext (from the first wanted block) that
    /// hold the wanted bytes.
    plain_runs: Vec<(u64, u64)>,
}

/// The bytes of `inner` that lie in `runs` (offset, length; ascending,
/// relative to `inner`'s start), and nothing after the last run.
struct Runs<R> {
    inner: R,
    runs: VecDeque<(u64, u64)>,
    pos: u64,
}

impl<R: Read> Runs<R> {
    fn new(inner: R, runs: Vec<(u64, u64)>) -> Self {
        Runs {
            inner,
            runs: runs.into_iter().filter(|r| r.1 > 0).collect(),
            pos: 0,
        }
    }
}

impl<R: Read> Read for Runs<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(&(start, len)) = self.runs.front() else {
            return Ok(0);
        };
        let mut skip = [0u8; 64];
        while self.pos < start {
            let n = (start - self.pos).min(skip.len() as u64) as usize;
            let got = self.inner.read(&mut skip[..n])?;
            if got == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.pos += got as u64;
        }
        let want = buf.len().min((start + len - self.pos) as usize);
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 && want > 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.pos += n as u64;
        if self.pos == start + len {
            self.runs.pop_front();
        }
        Ok(n)
    }
}
