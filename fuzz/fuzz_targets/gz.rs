//! fw-gz's reader (GzReader): fw's members with their length subfield,
//! any other gzip member, the proof members, and skipping by seek.
//!
//! Byte 0: bit 0 = skip mode, bits 1-2 = inflating threads - 1. In read
//! mode the rest is the stream, read to its end: when fw-gz accepts it,
//! flate2's own multi-member decoder must accept it too and give the same
//! bytes. In skip mode bytes 1-8 are a script of reads and skips (high
//! bit: skip, else read; times 509 bytes), repeated, and the rest is the
//! stream: the offset a skip returns must be what was consumed.
//! Throughout, the proof members' observer must see the announcement
//! only first and the proof only last.
#![no_main]

use std::io::{Read, Seek, SeekFrom};
use std::sync::{Arc, Mutex};

use libfuzzer_sys::fuzz_target;

#[derive(Default)]
struct Seen {
    events: Vec<char>,
}

struct Observer(Arc<Mutex<Seen>>);

impl fw_gz::RawObserver for Observer {
    fn announce(&mut self, _: &[u8]) {
        self.0.lock().unwrap().events.push('a');
    }
    fn data(&mut self, bytes: &[u8]) {
        let mut seen = self.0.lock().unwrap();
        if !bytes.is_empty() && seen.events.last() != Some(&'d') {
            seen.events.push('d');
        }
    }
    fn proof(&mut self, _: &[u8]) {
        self.0.lock().unwrap().events.push('p');
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let skip_mode = flags & 1 == 1;
    let threads = 1 + ((flags >> 1) & 3) as usize;
    let (script, stream) = if skip_mode {
        if rest.len() < 8 {
            return;
        }
        rest.split_at(8)
    } else {
        (&[][..], rest)
    };
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut reader = fw_gz::GzReader::observed(
        std::io::Cursor::new(stream.to_vec()),
        threads,
        Some(Box::new(Observer(Arc::clone(&seen)))),
    );
    if !skip_mode {
        let mut ours = Vec::new();
        if reader.read_to_end(&mut ours).is_ok() {
            let mut theirs = Vec::new();
            let result = flate2::read::MultiGzDecoder::new(stream).read_to_end(&mut theirs);
            assert!(
                result.is_ok(),
                "fw-gz accepted a stream flate2 refuses: {result:?}"
            );
            assert!(ours == theirs, "fw-gz and flate2 inflate differently");
        }
    } else {
        let mut offset = 0u64;
        let mut buf = vec![0u8; 127 * 509];
        'ops: for _ in 0..64 {
            for &op in script {
                let n = (op & 0x7f) as u64 * 509;
                if op & 0x80 != 0 {
                    match reader.seek(SeekFrom::Current(n as i64)) {
                        Ok(at) => {
                            offset += n;
                            assert_eq!(at, offset, "a skip's offset");
                        }
                        Err(_) => break 'ops,
                    }
                } else {
                    match reader.read(&mut buf[..n as usize]) {
                        Ok(0) if n > 0 => break 'ops,
                        Ok(got) => offset += got as u64,
                        Err(_) => break 'ops,
                    }
                }
            }
        }
    }
    drop(reader);
    let events = &seen.lock().unwrap().events;
    if let Some(i) = events.iter().position(|&e| e == 'a') {
        assert_eq!(i, 0, "the announcement after other bytes: {events:?}");
    }
    if let Some(i) = events.iter().position(|&e| e == 'p') {
        assert_eq!(i, events.len() - 1, "bytes after the proof: {events:?}");
    }
    assert!(
        events.iter().filter(|&&e| e == 'a').count() <= 1,
        "{events:?}"
    );
});
