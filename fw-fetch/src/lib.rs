//! fw-fetch: an upgrade that downloads only what the device lacks. It
//! reads the package's head by HTTP Range, verifies the manifest's
//! signature, and fetches the gzip members of the files no installed
//! version holds; it writes a tar.gz of the whole tree for
//! `fw-unpack --delta`, in which the data the device holds is marked as
//! omitted (see fw-gz), never silently dropped. See README.md, "Delta
//! upgrades".

pub mod cli;

mod cache;
mod check;
mod emit;
mod fetch;
mod head;
mod http;
mod layout;
mod literal;

pub use fetch::{fetch, Options, Summary, Way};
