use super::*;
use std::sync::{Arc, Mutex};

/// Deterministic data that compresses somewhat, like a tar of a tree.
fn sample(len: usize) -> Vec<u8> {
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

fn pack(data: &[u8], threads: usize) -> Vec<u8> {
    let mut writer = GzWriter::with_threads(Vec::new(), Compression::new(6), threads);
    // Odd write sizes, so that blocks are cut across writes.
    for chunk in data.chunks(70_001) {
        writer.write_all(chunk).unwrap();
    }
    writer.finish().unwrap()
}

fn unpack(stream: Vec<u8>, threads: usize) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    GzReader::with_threads(io::Cursor::new(stream), threads).read_to_end(&mut out)?;
    Ok(out)
}

/// Splits a stream of fw members at their length fields.
fn members(stream: &[u8]) -> Vec<&[u8]> {
    let mut rest = stream;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let len = u32::from_le_bytes(rest[16..20].try_into().unwrap()) as usize;
        out.push(&rest[..len]);
        rest = &rest[len..];
    }
    out
}

fn plain_gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), Compression::new(6));
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

fn expect_error(stream: Vec<u8>, what: &str) -> String {
    match unpack(stream, 2) {
        Ok(out) => panic!("{what}: inflated {} bytes instead of failing", out.len()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn round_trips_and_is_the_same_whatever_the_threads() {
    for len in [0, 1, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + BLOCK / 2] {
        let data = sample(len);
        let one = pack(&data, 1);
        let three = pack(&data, 3);
        assert_eq!(one, three, "{len} bytes: output depends on the threads");
        assert_eq!(
            members(&one).len(),
            len.div_ceil(BLOCK).max(1),
            "{len} bytes"
        );
        for threads in [1, 2, 4] {
            assert_eq!(unpack(one.clone(), threads).unwrap(), data, "{len} bytes");
        }
    }
}

#[test]
fn is_one_ordinary_gzip_stream_to_other_readers() {
    let data = sample(2 * BLOCK + 12_345);
    let stream = pack(&data, 2);
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(&stream[..])
        .read_to_end(&mut out)
        .unwrap();
    assert_eq!(out, data, "flate2's multi-member decoder");

    // GNU gzip, which tar -z runs.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.gz");
    std::fs::write(&file, &stream).unwrap();
    let gunzip = std::process::Command::new("gzip")
        .arg("-dc")
        .arg(&file)
        .output()
        .expect("gzip is installed");
    assert!(gunzip.status.success(), "gzip -dc: {:?}", gunzip);
    assert_eq!(gunzip.stdout, data, "gzip -dc");
}

#[test]
fn reads_any_gzip_stream_the_ordinary_way() {
    let data = sample(BLOCK + 99);
    assert_eq!(
        unpack(plain_gzip(&data), 2).unwrap(),
        data,
        "one plain member"
    );
    let two = [plain_gzip(&data[..10]), plain_gzip(&data[10..])].concat();
    assert_eq!(unpack(two, 2).unwrap(), data, "two plain members");
    // fw's members, then a plain one: the rest goes the ordinary way.
    let mixed = [pack(&data[..BLOCK + 5], 2), plain_gzip(&data[BLOCK + 5..])].concat();
    assert_eq!(
        unpack(mixed, 2).unwrap(),
        data,
        "fw members, then a plain one"
    );
}

#[test]
fn refuses_streams_that_are_empty_cut_short_or_followed_by_garbage() {
    let data = sample(3 * BLOCK);
    let stream = pack(&data, 2);
    let first = members(&stream)[0].len();

    expect_error(Vec::new(), "empty stream");
    for cut in [
        5,
        15,
        first - 1,
        first + 100,
        stream.len() - 4,
        stream.len() - 1,
    ] {
        expect_error(stream[..cut].to_vec(), &format!("cut at {cut}"));
    }
    for tail in [&[0u8][..], &[0; 20], b"\x1f\x8b", b"garbage after the end"] {
        expect_error(
            [&stream[..], tail].concat(),
            &format!("{tail:?} after the end"),
        );
    }
    let plain = plain_gzip(&data);
    expect_error(plain[..plain.len() - 3].to_vec(), "plain stream cut short");
    expect_error([&plain[..], b"x"].concat(), "garbage after a plain stream");
}

#[test]
fn refuses_members_whose_fields_lie() {
    let data = sample(3 * BLOCK);
    let stream = pack(&data, 2);
    let first = members(&stream)[0].len();
    let set_u32 =
        |s: &mut Vec<u8>, at: usize, v: u32| s[at..at + 4].copy_from_slice(&v.to_le_bytes());

    let mut crc = stream.clone();
    crc[first - 8] ^= 1;
    assert!(expect_error(crc, "bad CRC").contains("CRC-32"));

    let mut size = stream.clone();
    set_u32(&mut size, first - 4, BLOCK as u32 - 1);
    expect_error(size, "size one short");

    let mut huge = stream.clone();
    set_u32(&mut huge, first - 4, u32::MAX);
    expect_error(huge, "size of 4 GiB (a bomb)");

    let mut body = stream.clone();
    body[HEADER_LEN + 100] ^= 0x55;
    expect_error(body, "flipped deflate byte");

    for len in [
        0u32,
        7,
        HEADER_LEN as u32 + 7,
        first as u32 - 1,
        first as u32 + 1,
        u32::MAX,
    ] {
        let mut lying = stream.clone();
        set_u32(&mut lying, 16, len);
        expect_error(lying, &format!("length field {len} instead of {first}"));
    }
}

#[test]
fn errors_come_after_the_good_members_and_stay() {
    let data = sample(2 * BLOCK);
    let mut stream = pack(&data, 2);
    let last = stream.len() - 8;
    stream[last] ^= 1; // the second member's CRC
    let mut reader = GzReader::with_threads(io::Cursor::new(stream), 2);
    let mut first = vec![0u8; BLOCK];
    reader.read_exact(&mut first).unwrap();
    assert_eq!(first, data[..BLOCK]);
    let mut rest = Vec::new();
    assert!(reader.read_to_end(&mut rest).is_err());
    assert!(reader.read(&mut [0u8; 10]).is_err(), "the error is sticky");
}

#[test]
fn skips_forward_to_the_same_bytes_as_reading() {
    use std::io::Seek;
    let data = sample(5 * BLOCK + 777);
    for stream in [pack(&data, 2), plain_gzip(&data)] {
        let mut reader = GzReader::with_threads(io::Cursor::new(stream), 2);
        let mut at = 0usize;
        // Within a member, across one boundary, over whole members, zero.
        for (skip, read) in [(10, 100), (BLOCK, 5), (3 * BLOCK + 17, 1000), (0, 3)] {
            at += skip;
            assert_eq!(
                reader.seek(io::SeekFrom::Current(skip as i64)).unwrap(),
                at as u64
            );
            let mut got = vec![0u8; read];
            reader.read_exact(&mut got).unwrap();
            assert_eq!(got, data[at..at + read], "after skipping to {at}");
            at += read;
        }
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, data[at..]);
        assert!(
            reader.seek(io::SeekFrom::Start(0)).is_err(),
            "no going back"
        );
    }
}

#[test]
fn skipping_past_the_end_is_an_error() {
    use std::io::Seek;
    let data = sample(2 * BLOCK);
    for stream in [pack(&data, 2), plain_gzip(&data)] {
        let mut reader = GzReader::with_threads(io::Cursor::new(stream), 2);
        let err = reader
            .seek(io::SeekFrom::Current(2 * BLOCK as i64 + 1))
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert!(reader.read(&mut [0u8; 1]).is_err(), "the error is sticky");
    }
}

#[test]
fn members_wholly_skipped_are_neither_inflated_nor_checked() {
    use std::io::Seek;
    let data = sample(4 * BLOCK);
    let mut stream = pack(&data, 1);
    // Spoil the third member's deflate data (its length stays right):
    // skipping it must not inflate it, and reading it must fail.
    let sizes: Vec<usize> = members(&stream).iter().map(|m| m.len()).collect();
    let third = sizes[0] + sizes[1];
    stream[third + HEADER_LEN + 50] ^= 0xff;
    let mut reader = GzReader::with_threads(io::Cursor::new(stream.clone()), 1);
    // Read into the second member first, so that the third is not yet
    // inflated when the skip comes.
    let mut head = vec![0u8; BLOCK + 10];
    reader.read_exact(&mut head).unwrap();
    reader
        .seek(io::SeekFrom::Current((2 * BLOCK - 10) as i64))
        .unwrap();
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, data[3 * BLOCK..]);
    expect_error(stream, "reading the spoiled member");
}

#[test]
fn cut_ends_a_member_and_the_lengths_are_reported() {
    let data = sample(3 * BLOCK);
    let mut writer = GzWriter::with_threads(Vec::new(), Compression::new(6), 2);
    assert_eq!(writer.cut().unwrap(), 0, "nothing written: no member");
    writer.write_all(&data[..1000]).unwrap();
    assert_eq!(writer.cut().unwrap(), 1);
    writer.write_all(&data[1000..1000 + BLOCK + 5]).unwrap();
    assert_eq!(writer.cut().unwrap(), 3);
    assert_eq!(writer.cut().unwrap(), 3, "a second cut cuts nothing");
    writer.write_all(&data[1000 + BLOCK + 5..]).unwrap();
    let (stream, lengths) = writer.finish_with_lengths().unwrap();
    let found = members(&stream);
    let sizes: Vec<usize> = found
        .iter()
        .map(|m| u32::from_le_bytes(m[m.len() - 4..].try_into().unwrap()) as usize)
        .collect();
    assert_eq!(sizes, [1000, BLOCK, 5, BLOCK, BLOCK - 1005]);
    assert_eq!(
        lengths,
        found.iter().map(|m| m.len() as u32).collect::<Vec<_>>()
    );
    assert_eq!(unpack(stream, 2).unwrap(), data);
}

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

#[test]
fn omitted_members_are_skipped_never_read_and_only_where_accepted() {
    use std::io::Seek;
    let omitted = omitted_member(5000);
    let info = member_info(&omitted).unwrap();
    assert_eq!((info.len, info.omitted), (omitted.len(), Some(5000)));
    let stream = [pack(b"head", 1), omitted, pack(b"tail", 1)].concat();

    let mut reader = GzReader::accepting_omitted(io::Cursor::new(stream.clone()));
    let mut head = [0u8; 4];
    reader.read_exact(&mut head).unwrap();
    assert_eq!(reader.seek(io::SeekFrom::Current(5000)).unwrap(), 5004);
    let mut tail = Vec::new();
    reader.read_to_end(&mut tail).unwrap();
    assert_eq!((&head, &tail[..]), (b"head", &b"tail"[..]));

    let mut reader = GzReader::accepting_omitted(io::Cursor::new(stream.clone()));
    reader.read_exact(&mut head).unwrap();
    let err = reader.read(&mut [0u8; 10]).unwrap_err();
    assert!(err.to_string().contains("omitted"), "{err}");
    let mut reader = GzReader::accepting_omitted(io::Cursor::new(stream.clone()));
    reader.read_exact(&mut head).unwrap();
    assert!(
        reader.seek(io::SeekFrom::Current(4999)).is_err(),
        "a skip may not end inside omitted bytes"
    );

    let err = expect_error(stream.clone(), "an omitted member in a package");
    assert!(err.contains("omitted member"), "{err}");
    // Other gzip readers see an empty member.
    let mut plain = Vec::new();
    flate2::read::MultiGzDecoder::new(&stream[..])
        .read_to_end(&mut plain)
        .unwrap();
    assert_eq!(plain, b"headtail");
}

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
