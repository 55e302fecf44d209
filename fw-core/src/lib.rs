//! What several fw tools share: the exit codes and error type of DESIGN.md,
//! the signed manifest, keyring loading, the one trust rule for OpenPGP
//! signatures, and stderr logging.

pub mod archive;
pub mod atomic;
pub mod cli;
pub mod error;
pub mod floor;
pub mod framing;
pub mod http;
pub mod index;
pub mod inodes;
pub mod journal;
pub mod keyring;
pub mod lock;
pub mod log;
pub mod manifest;
pub mod progress;
pub mod proof;
pub mod retry;
pub mod signals;
pub mod stdio;
pub mod target;
pub mod trust;
pub mod verified;
pub mod xattrs;

pub use error::{Error, Exit, Result};

/// The version every fw tool reports, and writes into manifests it packs.
pub const FW_VERSION: &str = env!("CARGO_PKG_VERSION");
