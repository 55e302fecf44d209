//! fw-unpack: extracts the tar.gz that fw-unseal emits into a fresh
//! directory under `TARGET/.fw/staging/`, refusing anything that could
//! reach outside it or that the package format does not allow.
//!
//! The archive must have exactly DESIGN.md's shape: `NAME/.fw/manifest.json`
//! first, `NAME/.fw/manifest.sig` second, then `NAME/` and the tree, every
//! entry listed in the manifest with the same type and mode. The manifest's
//! raw bytes (at most
//! [`manifest::MAX_JSON`](fw_core::manifest::MAX_JSON)) are checked
//! against its signature by the keyring's trust rule before the JSON is
//! parsed, so only vendor-signed JSON is ever parsed; it then narrows what
//! may be written (fw-verify checks the tree against it).
//!
//! The bytes come from fw-unseal, which releases most of a package before
//! its signature is checked; so the stream is trusted only at its end, by
//! fw-unseal's proof (fw-core's `proof` module): the signature that
//! verified, checked here over exactly the raw bytes read, by the same
//! keyring and rule, before success is reported. Without a valid proof,
//! or with anything after it: exit 4, nothing left behind. Until then the
//! bytes are hostile, and every read is bounded: tar's extension headers
//! ([`blocks`]), the manifest and its signature, the decompressed total.
//!
//! With `--delta`, the stream comes from fw-fetch, not fw-unseal: no outer
//! signature covers it and there is no proof, so the signed manifest is
//! the root of trust. Its signature is verified as above before it is
//! parsed; every entry's header must match the manifest (type, mode,
//! owner, size, times, link targets); every file written must match its
//! BLAKE3 before success (below); data fw-fetch
//! marked as omitted (fw-gz `FH`) may only be skipped, for a file linked
//! from an installed version, and reading it is an error. The mode is
//! chosen by the command line, never by the stream: without `--delta`
//! omitted members are refused and the proof is required.
//!
//! Safety does not depend on the tar crate's own checks: every path is
//! checked component by component, every parent must be a directory this
//! run created (never a symlink), files are created with O_EXCL and
//! O_NOFOLLOW, hard links may only point at earlier regular files of the
//! tree, and the decompressed stream is capped so that neither content
//! nor tar metadata can exhaust the disk or memory. Success is reported
//! only after the gzip stream ended with valid trailers and nothing but
//! whole gzip members followed: a stream cut short (as fw-unseal cuts one
//! that did not verify) never unpacks.
//!
//! Every file written is hashed as it is written (with or without
//! `--delta`) and goes into the target's record of proven inodes
//! (fw_core::inodes), so that fw-verify does not read it again. A file
//! an installed version holds is linked instead of written, but only
//! while that installed inode is proven (by the record, or hashed then):
//! a damaged one is reported and the package's copy written instead.

pub mod blocks;
pub mod cli;

mod archive;
mod extractor;
mod files;
mod paths;
mod staging;
mod stream;
mod writeback;

pub use archive::{unpack, Unpacked};
pub use staging::{default_max_bytes, prepare_staging, Cleanup};
