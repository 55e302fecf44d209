//! One gzip member as fw writes it: the `F` `W`, `F` `B`, `F` `C` and
//! `F` `H` subfields of its header (see the crate's comment), writing,
//! parsing and marking members, and inflating a whole member with its
//! trailer checked.

use std::io::{self, Read};

use flate2::{Compression, Crc};

/// The largest member [`GzReader`](crate::GzReader) inflates in parallel, compressed or
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
pub(crate) const HEADER_LEN: usize = 20;
pub(crate) const FEXTRA: u8 = 0x04;

/// Compresses `data` into one gzip member carrying its own length.
pub fn compress_member(data: &[u8], level: Compression) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN);
    out.extend_from_slice(&[0x1f, 0x8b, 8, FEXTRA, 0, 0, 0, 0, 0, 255, 8, 0]);
    out.extend_from_slice(&SUBFIELD);
    out.extend_from_slice(&[4, 0, 0, 0, 0, 0]);
    // Room for the trailer too.
    crate::libdeflate::deflate_into(data, level.level(), &mut out, 8);
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

/// Marks the first of `members` (written by this crate: a [`GzWriter`](crate::GzWriter)'s
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

pub(crate) fn corrupt(at: u64, why: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("gzip member at byte {at}: {why}"),
    )
}

/// Inflates one whole member (header included, `header_len` bytes of it)
/// and checks it ends exactly with its trailer, whose CRC-32 and size
/// must match.
pub(crate) fn inflate_member(member: &[u8], header_len: usize, at: u64) -> io::Result<Vec<u8>> {
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
    let out = crate::libdeflate::inflate(body, size + 1).map_err(|why| match why {
        crate::libdeflate::Refused::Corrupt => corrupt(
            at,
            "corrupt deflate data, or it does not end where its length says",
        ),
        crate::libdeflate::Refused::TooLong => {
            corrupt(at, "inflates to more than its trailer says")
        }
    })?;
    let mut check = Crc::new();
    check.update(&out);
    if out.len() != size || check.sum() != crc {
        return Err(corrupt(at, "its trailer's CRC-32 or size does not match"));
    }
    Ok(out)
}

/// Appends up to `len` bytes of `input` to `buf` (fewer only at EOF);
/// returns how many.
pub(crate) fn read_up_to(
    input: &mut impl Read,
    len: usize,
    buf: &mut Vec<u8>,
) -> io::Result<usize> {
    buf.reserve_exact(len);
    input.take(len as u64).read_to_end(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{members, pack, sample, unpack};
    use crate::BLOCK;

    #[test]
    fn the_base_mark_says_where_the_marked_members_end() {
        let data = sample(BLOCK + 100);
        let chunks = [Chunk {
            members: 7,
            len: 9,
            hash: [3; 16],
        }; 5];
        let table = Chunk::encode(&chunks).unwrap();
        let region = mark_head(&pack(&data, 2), Some(&table));
        let info = member_info(&region).unwrap();
        assert_eq!(info.base, Some(region.len() as u64));
        let (from, to) = info.chunks.unwrap();
        let listed = Chunk::decode(&region[from..to]).unwrap();
        assert_eq!(listed, chunks);
        assert!(Chunk::decode(&table[..table.len() - 1]).is_none());
        assert!(
            Chunk::encode(&[chunks[0]; 3000]).is_none(),
            "too many for an extra field"
        );
        assert_eq!(members(&region)[0].len(), info.len);
        let rest = pack(b"the tree", 1);
        let stream = [region.clone(), rest].concat();
        let mut expected = data.clone();
        expected.extend_from_slice(b"the tree");
        assert_eq!(unpack(stream.clone(), 2).unwrap(), expected);
        // Other readers see one ordinary gzip stream.
        let mut plain = Vec::new();
        flate2::read::MultiGzDecoder::new(&stream[..])
            .read_to_end(&mut plain)
            .unwrap();
        assert_eq!(plain, expected);
        let mut inflated = Vec::new();
        let total = inflate_members(&region, 0, |d| {
            inflated.extend_from_slice(d);
            Ok(())
        })
        .unwrap();
        assert_eq!((total, inflated), (data.len() as u64, data));
        assert!(inflate_members(&region[..region.len() - 1], 0, |_| Ok(())).is_err());
    }
}
