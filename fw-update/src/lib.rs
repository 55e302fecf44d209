//! fw-update: pulls firmware updates from a signed release index on any
//! HTTP(S) server (docs/update.md).
//!
//! `check` fetches the index (conditional GET with the last ETag), verifies
//! its detached signature by fw's trust rule, refuses it if expired, older
//! than the last accepted one, or below the installed security_version, and
//! compares its newest entry with `fw-switch status --json`. `download`
//! fetches the package into `TARGET/.fw/downloads/`, resuming a partial file
//! with HTTP Range, fsyncing, and checking size and BLAKE3 against the
//! index. `install` hands the file (or, with `--stream`, the URL) to
//! `fw-install`, which refuses a package whose manifest is not the index's
//! entry. `run` does what the configuration says, every `check_interval`, or
//! once. Status events (Connhex's states) go to stdout or `--status FILE`,
//! one JSON object per line; messages go to stderr. Every child process
//! (curl, gates, fw-switch, fw-install) runs through fw-nbio.

pub mod cli;
pub mod config;
pub mod events;
pub mod http;
pub mod index;

mod check;
mod download;
mod gate;
mod install;
mod installed;
mod tools;
mod updater;

pub use config::Config;
pub use installed::Installed;
pub use tools::{find_fw_install, tool};
pub use updater::{Action, Checked, Updater};
