//! The decompressed stream under the tar reader: capped at `--max-bytes`
//! plus tar's metadata, its errors told apart (proof layout, tar
//! extension, cap, corruption), and its raw bytes shown to the check of
//! fw-unseal's proof.

use std::io::{self, Read};

use fw_core::proof;
use fw_core::Error;

use crate::blocks;

/// Room for tar headers and padding on top of `--max-bytes` of content.
pub(crate) const METADATA_ALLOWANCE: u64 = 64 << 20;

/// Counts the decompressed bytes and fails past a cap, so that a
/// decompression bomb stops at the cap whatever the tar headers claim.
pub(crate) struct Capped<R> {
    pub(crate) inner: R,
    pub(crate) read: u64,
    pub(crate) cap: u64,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read > self.cap {
            return Err(io::Error::other(CapExceeded));
        }
        Ok(n)
    }
}

/// Skipped bytes count against the cap like read ones.
impl<R: io::Seek> io::Seek for Capped<R> {
    fn seek(&mut self, pos: io::SeekFrom) -> io::Result<u64> {
        let skip = match pos {
            io::SeekFrom::Current(n) if n >= 0 => n as u64,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "the archive only skips forward",
                ))
            }
        };
        if self.read.saturating_add(skip) > self.cap {
            return Err(io::Error::other(CapExceeded));
        }
        let offset = self.inner.seek(pos)?;
        self.read += skip;
        Ok(offset)
    }
}

#[derive(Debug)]
struct CapExceeded;
impl std::fmt::Display for CapExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the decompressed stream exceeds the size limit")
    }
}
impl std::error::Error for CapExceeded {}

pub(crate) fn stream_error(err: io::Error, at: &str, max_bytes: u64) -> Error {
    let inner = err.get_ref();
    if let Some(layout) = inner.and_then(|e| e.downcast_ref::<fw_gz::ProofLayout>()) {
        return Error::security(format!("{at}: {layout}; refusing the package"));
    }
    if let Some(refused) = inner.and_then(|e| e.downcast_ref::<blocks::Refused>()) {
        return Error::invalid(format!("{at}: {refused}; refusing the package"));
    }
    let capped = inner.is_some_and(|inner| inner.downcast_ref::<CapExceeded>().is_some());
    if capped {
        return Error::invalid(format!(
            "{at}: the package unpacks to more than --max-bytes {max_bytes}: refusing it \
             (a decompression bomb, or raise --max-bytes)"
        ));
    }
    Error::invalid(format!(
        "{at}: the gzip/tar stream is truncated or corrupt ({err}): it did not come whole \
         from fw-unseal (or fw-fetch); fetch the package again"
    ))
}

/// Shows fw-gz's raw stream to the check of fw-unseal's proof.
pub(crate) struct ProofFeed(pub(crate) proof::Checker);

impl fw_gz::RawObserver for ProofFeed {
    fn announce(&mut self, payload: &[u8]) {
        self.0.announce(payload)
    }
    fn data(&mut self, bytes: &[u8]) {
        self.0.data(bytes)
    }
    fn proof(&mut self, payload: &[u8]) {
        self.0.proof(payload)
    }
}
