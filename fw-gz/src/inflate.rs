//! Inflating one whole member in memory with libdeflate.
//!
//! fw-unpack inflates every member of a package, on every core, and on a
//! root filesystem that was a quarter of a fresh install's CPU. A member
//! is whole in memory and its trailer gives its inflated size, which is
//! what libdeflate's one-shot decoder is built for: on this machine it
//! inflated the debootstrap tree's 626 members of 1 MiB (625 MB) in
//! 0.95–1.16 s against zlib-rs's 1.75–2.12 s through flate2 (the same
//! process, alternating, 3 rounds). zlib-rs stays for compressing and for
//! streams of other tools' members, which have no size ahead.
//!
//! The `_ex` call is used, through libdeflate-sys, because it reports how
//! much input the deflate stream took: a member whose deflate data ends
//! before its trailer is refused, as with zlib.

use std::cell::RefCell;
use std::ptr::NonNull;

use libdeflate_sys as sys;

/// Why a deflate stream did not inflate.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Not a valid deflate stream.
    Corrupt,
    /// It inflates to more than the room given.
    TooLong,
}

/// One libdeflate decompressor (about 11 KB, no other state between
/// calls), kept per thread.
struct Decompressor(NonNull<sys::libdeflate_decompressor>);

impl Drop for Decompressor {
    fn drop(&mut self) {
        // SAFETY: allocated by libdeflate_alloc_decompressor, freed once.
        unsafe { sys::libdeflate_free_decompressor(self.0.as_ptr()) }
    }
}

thread_local! {
    static DECOMPRESSOR: RefCell<Option<Decompressor>> = const { RefCell::new(None) };
}

/// Inflates the raw deflate stream `input` into a new buffer of at most
/// `room` bytes; the stream must take all of `input`. Returns the output.
pub(crate) fn inflate(input: &[u8], room: usize) -> Result<Vec<u8>, Refused> {
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        let d = match &mut *slot {
            Some(d) => d,
            None => {
                // SAFETY: no arguments; NULL (out of memory) is checked.
                let p = unsafe { sys::libdeflate_alloc_decompressor() };
                slot.insert(Decompressor(
                    NonNull::new(p).expect("libdeflate could not allocate a decompressor"),
                ))
            }
        };
        let mut out = Vec::<u8>::with_capacity(room);
        let (mut used_in, mut used_out) = (0usize, 0usize);
        // SAFETY: the input is a live slice; the output pointer has
        // `room` bytes of capacity, which libdeflate never writes past;
        // the decompressor is this thread's own.
        let result = unsafe {
            sys::libdeflate_deflate_decompress_ex(
                d.0.as_ptr(),
                input.as_ptr().cast(),
                input.len(),
                out.as_mut_ptr().cast(),
                room,
                &mut used_in,
                &mut used_out,
            )
        };
        match result {
            sys::libdeflate_result_LIBDEFLATE_SUCCESS if used_in == input.len() => {
                assert!(used_out <= room, "libdeflate wrote past its room");
                // SAFETY: libdeflate initialised the first `used_out` bytes.
                unsafe { out.set_len(used_out) };
                Ok(out)
            }
            sys::libdeflate_result_LIBDEFLATE_INSUFFICIENT_SPACE => Err(Refused::TooLong),
            _ => Err(Refused::Corrupt),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compress, Compression, FlushCompress};

    fn deflate(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len() + 1024);
        Compress::new(Compression::new(6), false)
            .compress_vec(data, &mut out, FlushCompress::Finish)
            .unwrap();
        out
    }

    #[test]
    fn inflates_exactly_and_refuses_what_does_not_fit() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 / 13) as u8).collect();
        let z = deflate(&data);
        assert_eq!(inflate(&z, data.len() + 1).unwrap(), data);
        assert_eq!(inflate(&z, data.len()).unwrap(), data);
        assert_eq!(inflate(&z, data.len() - 1), Err(Refused::TooLong));
        assert_eq!(inflate(&deflate(b""), 1).unwrap(), b"");
    }

    #[test]
    fn refuses_bytes_after_the_stream_and_corrupt_streams() {
        let mut z = deflate(b"hello hello hello");
        let whole = z.clone();
        z.push(0);
        assert_eq!(inflate(&z, 100), Err(Refused::Corrupt));
        assert_eq!(
            inflate(&whole[..whole.len() - 1], 100),
            Err(Refused::Corrupt)
        );
        assert_eq!(inflate(&[0xff; 64], 100), Err(Refused::Corrupt));
        assert_eq!(inflate(&[], 100), Err(Refused::Corrupt));
    }
}
