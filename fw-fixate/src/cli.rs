//! The command line, shared by the binary and by the generator of man
//! pages and shell completions (xtask).

use std::path::PathBuf;

use clap::Parser;

/// Install a verified staging tree as a new version of the target and
/// print its final path.
///
/// Files identical (content, mode, owner) to a file of any installed
/// version become hard links to it, so a version costs only what changed.
/// The tree is made durable, then moved to TARGET/NAME (NAME-1, NAME-2, …
/// when taken) by one rename: it never appears there incomplete. Refuses
/// a tree that fw-verify did not verify (exit 5), and one whose manifest
/// is identical to an installed version's (exit 5) unless --reinstall.
/// On a terminal, a bar shows the data still to reach the disk.
///
/// Example:
///   fw-unseal < rootfs.fw | fw-unpack | fw-verify | fw-fixate
#[derive(Parser)]
#[command(name = "fw-fixate", version, about, long_about, verbatim_doc_comment)]
pub struct Cli {
    /// The verified staging tree [default: one line read from stdin].
    #[arg(value_name = "PATH")]
    pub path: Option<PathBuf>,
    /// The firmware target [default: $FW_TARGET, else /opt/firmware].
    #[arg(long, value_name = "T")]
    pub target: Option<PathBuf>,
    /// Wait up to SECS (or a duration: 90s, 5m) for the target lock instead
    /// of failing at once (exit 6).
    #[arg(long, value_name = "SECS", num_args = 0..=1, default_missing_value = "3600",
          value_parser = fw_core::cli::parse_duration)]
    pub wait: Option<std::time::Duration>,
    /// Install the tree even if an identical version (same manifest) is
    /// installed already, as a new NAME-N directory.
    #[arg(long)]
    pub reinstall: bool,
    #[command(flatten)]
    pub verbosity: fw_core::cli::Verbosity,
    #[command(flatten)]
    pub progress: fw_core::progress::ProgressArgs,
}
