//! The stream fw-fetch writes for `fw-unpack --delta`: a tar.gz of the
//! whole tree in fw's gzip members, whose bytes come from three places:
//!
//! - the package's own members of the manifest and its signature, as
//!   fetched (fw-unpack verifies the signature before anything else);
//! - tar headers synthesised from the verified manifest (fw-core's
//!   `archive`, the same writer fw-sign uses), with the padding after
//!   each file's data, in members compressed here;
//! - each file's data: the package's members as fetched and proven, or,
//!   for a file an installed version holds, an omitted member (fw-gz
//!   `FH`) that stands for its bytes, which fw-unpack links from that
//!   version and never reads.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::sync::mpsc::Receiver;

use flate2::Compression;

use fw_core::archive;
use fw_core::manifest::Manifest;
use fw_core::{Error, Result};

/// A fetched file, proven and kept in the cache's data file.
#[derive(Debug, Clone, Copy)]
pub struct Ready {
    /// Its index in the manifest.
    pub index: usize,
    /// Where its members are in the data file.
    pub at: u64,
    pub len: u64,
}

fn out_error(e: io::Error) -> Error {
    Error::io("stdout", e)
}

struct Synth<W: Write> {
    out: W,
    /// Tar bytes not yet written (headers and padding).
    tar: Vec<u8>,
}

impl<W: Write> Synth<W> {
    fn flush_tar(&mut self) -> Result<()> {
        for block in self.tar.chunks(fw_gz::BLOCK) {
            self.out
                .write_all(&fw_gz::compress_member(block, Compression::fast()))
                .map_err(out_error)?;
        }
        self.tar.clear();
        Ok(())
    }
}

/// Writes the stream to `out`: `region` (the manifest's members), then
/// every entry of `manifest`. The files of `carried` (manifest index ->
/// the index of the fetched file with its content: itself, or an earlier
/// file of the same content) are taken from `data` as `ready` announces
/// the fetched ones, in manifest order; every other file with data is
/// omitted.
pub fn emit<W: Write>(
    out: W,
    region: &[u8],
    manifest: &Manifest,
    carried: &HashMap<usize, usize>,
    ready: Receiver<Ready>,
    mut data: File,
) -> Result<W> {
    let mut synth = Synth {
        out,
        tar: Vec::new(),
    };
    synth.out.write_all(region).map_err(out_error)?;
    let zeros = [0u8; archive::BLOCK as usize];
    let mut buf = vec![0u8; 256 << 10];
    // The fetched files, for later files of the same content.
    let mut seen: HashMap<usize, Ready> = HashMap::new();
    for (index, entry) in manifest.entries.iter().enumerate() {
        let header = archive::header_bytes(&manifest.name, entry)
            .map_err(|e| Error::invalid(format!("{}: cannot be a tar entry: {e}", entry.path)))?;
        synth.tar.extend_from_slice(&header);
        if synth.tar.len() >= fw_gz::BLOCK {
            synth.flush_tar()?;
        }
        if entry.gz.is_none() {
            continue;
        }
        let size = entry.size.unwrap_or(0);
        synth.flush_tar()?;
        if let Some(&from) = carried.get(&index) {
            let file = if from == index {
                let Ok(file) = ready.recv() else {
                    // The fetch failed; it reports why.
                    return Err(Error::failed("the fetch stopped"));
                };
                if file.index != index {
                    return Err(Error::failed(
                        "fw-fetch fetched the files out of order (a bug)",
                    ));
                }
                seen.insert(index, file);
                file
            } else {
                *seen.get(&from).ok_or_else(|| {
                    Error::failed("fw-fetch fetched the files out of order (a bug)")
                })?
            };
            data.seek(SeekFrom::Start(file.at))
                .map_err(|e| Error::io("the fetch cache's data file", e))?;
            let mut left = file.len;
            while left > 0 {
                let n = (left.min(buf.len() as u64)) as usize;
                data.read_exact(&mut buf[..n])
                    .map_err(|e| Error::io("the fetch cache's data file", e))?;
                synth.out.write_all(&buf[..n]).map_err(out_error)?;
                left -= n as u64;
            }
        } else {
            synth
                .out
                .write_all(&fw_gz::omitted_member(size))
                .map_err(out_error)?;
        }
        synth
            .tar
            .extend_from_slice(&zeros[..archive::padding(size)]);
    }
    synth
        .tar
        .extend_from_slice(&[0u8; 2 * archive::BLOCK as usize]);
    synth.flush_tar()?;
    synth.out.flush().map_err(out_error)?;
    Ok(synth.out)
}
