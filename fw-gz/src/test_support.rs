//! What the unit tests of several modules share: sample data, and
//! packing and unpacking it.

use std::io::{self, Read, Write};

use flate2::Compression;

use crate::{GzReader, GzWriter};

/// Deterministic data that compresses somewhat, like a tar of a tree.
pub(crate) fn sample(len: usize) -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    (0..len)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            if i % 3 == 0 {
                b"firmware "[i % 9]
            } else {
                (state >> 56) as u8
            }
        })
        .collect()
}

pub(crate) fn pack(data: &[u8], threads: usize) -> Vec<u8> {
    let mut writer = GzWriter::with_threads(Vec::new(), Compression::new(6), threads);
    // Odd write sizes, so that blocks are cut across writes.
    for chunk in data.chunks(70_001) {
        writer.write_all(chunk).unwrap();
    }
    writer.finish().unwrap()
}

pub(crate) fn unpack(stream: Vec<u8>, threads: usize) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    GzReader::with_threads(io::Cursor::new(stream), threads).read_to_end(&mut out)?;
    Ok(out)
}

/// Splits a stream of fw members at their length fields.
pub(crate) fn members(stream: &[u8]) -> Vec<&[u8]> {
    let mut rest = stream;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let len = u32::from_le_bytes(rest[16..20].try_into().unwrap()) as usize;
        out.push(&rest[..len]);
        rest = &rest[len..];
    }
    out
}

pub(crate) fn plain_gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), Compression::new(6));
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

pub(crate) fn expect_error(stream: Vec<u8>, what: &str) -> String {
    match unpack(stream, 2) {
        Ok(out) => panic!("{what}: inflated {} bytes instead of failing", out.len()),
        Err(e) => e.to_string(),
    }
}
