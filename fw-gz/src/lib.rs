//! fw-gz: the gzip layer of an fw package, compressed and inflated on
//! every core while staying one plain gzip stream.
//!
//! A single deflate stream inflates on one core only, and on a small
//! device that core is the bottleneck of the whole install. So fw-sign
//! cuts the tar stream into blocks of [`BLOCK`] bytes and compresses each
//! into its own gzip member (RFC 1952 allows any number, concatenated).
//! Each member's header carries an extra subfield `F` `W` holding the
//! member's total length in bytes (u32, little-endian), as BGZF's `B` `C`
//! does for samtools. GNU gzip, GNU tar and zlib see one ordinary stream;
//! fw-unpack reads the lengths to hand whole members to worker threads
//! and puts their output back in order, streaming, in bounded memory.
//!
//! The cost: the deflate window restarts every block, about 0.1% of size
//! at 1 MiB blocks. The output depends only on the input and the level,
//! never on the number of threads, so packing stays reproducible.
//!
//! A member without the subfield (another gzip tool) is inflated the
//! ordinary way, on one thread: fw-unpack accepts any gzip stream, and
//! still requires every member's trailer and then EOF.
//!
//! fw-unseal frames the stream with two empty members carrying its proof
//! (see [`signed`]); the reader hands their payloads and the raw bytes
//! between to a [`RawObserver`], from the thread that reads the stream.
//!
//! Three more subfields serve HTTP Range deltas (fw-fetch):
//! - `F` `B` (8 bytes, little-endian), in the first member of a package
//!   only: the length of the members that hold the manifest and its
//!   signature, i.e. where the tree's members begin, so that a device can
//!   fetch exactly the package's head.
//! - `F` `C`, in the first member only: the manifest's chunks (see
//!   fw-core's `manifest::json_chunks`), whose members follow the first
//!   one: a count (u32), then per chunk its members' length and its length
//!   (u32 each) and the first 16 bytes of its BLAKE3, so that a device
//!   fetches only the chunks its installed manifests do not have.
//! - `F` `H` (8 bytes, "held"): an *omitted* member, written by fw-fetch in
//!   place of a file's data that the device already holds. It is empty and
//!   stands for that many bytes, which may be skipped (fw-unpack links the
//!   file from an installed version) but never read: reading them is an
//!   error, so omitted data is never silently taken for content. Only a
//!   reader made with [`GzReader::accepting_omitted`] accepts them at all.

mod libdeflate;
mod member;
mod pool;
mod reader;
mod signed;
mod split;
mod writer;

pub use member::{
    compress_member, inflate_members, mark_head, member_info, omitted_member, Chunk, MemberInfo,
    MAX_MEMBER,
};
pub use pool::threads;
pub use reader::GzReader;
pub use signed::{tagged_member, ProofLayout, RawObserver, ANNOUNCE, MAX_PAYLOAD, PROOF};
pub use writer::{GzWriter, BLOCK};

#[cfg(test)]
mod test_support;
