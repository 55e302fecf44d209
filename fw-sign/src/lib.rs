//! fw-sign: the vendor's side of fw. Packs a firmware directory into one
//! signed, optionally encrypted package (see DESIGN.md, "The package"),
//! and makes the keys and certificates for vendor and devices.

pub mod cli;

pub mod index;
pub mod keys;
pub mod message;
pub mod pack;

pub use keys::{cert_of, keygen};
pub use pack::{pack, PackOptions, PackSummary};
