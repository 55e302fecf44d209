//! The command line, shared by the binary and by the generator of man
//! pages and shell completions (xtask).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::Config;

/// Pulls firmware updates from a signed release index on any HTTP(S)
/// server: check, resumable download, install (with fw-install), with
/// gates and status events (one JSON object per line on stdout, or
/// appended to --status FILE). See docs/update.md.
///
/// Example:
///   fw-update check --index https://fw.example/releases/index.json
///   fw-update run --once --config /etc/fw/update.toml     # from a timer
///
/// Exit codes: 0 done (nothing new, downloaded, or installed); 1 failed;
/// 2 usage; 3 a gate or hook said not now, max_retries times; 4 refused
/// (bad signature, expired or replayed index, rollback below the installed
/// security_version, a package that does not match the index: its size or
/// BLAKE3, or its manifest's name, version or security_version); 5 invalid
/// index; 6 busy; 7, 8 from fw-install (rolled back, failsafe).
#[derive(Parser)]
#[command(name = "fw-update", version, about, long_about, verbatim_doc_comment)]
pub struct Cli {
    #[command(flatten)]
    pub verbosity: fw_core::cli::Verbosity,
    #[command(subcommand)]
    pub command: Cmd,
    /// The configuration (TOML) [default: $FW_UPDATE_CONFIG, else
    /// /etc/fw/update.toml if it exists]; the options below override it.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// run: one cycle, then exit (for timers and tests).
    #[arg(long, global = true)]
    pub once: bool,
    /// install: download the whole package, never a delta (as delta =
    /// false in the configuration).
    #[arg(long, global = true)]
    pub full: bool,
    /// The settings, each also a key of the configuration file.
    #[command(flatten)]
    pub settings: Config,
}

#[derive(Subcommand, Clone, Copy)]
pub enum Cmd {
    /// Fetch and verify the index; say whether an update is available.
    Check,
    /// check, then download the update into TARGET/.fw/downloads/.
    Download,
    /// check, then install the update with fw-install: by delta (only
    /// what the device lacks) when a version is installed, else (or with
    /// --full) the package downloaded first.
    Install,
    /// What the configuration says (auto_download, auto_install), every
    /// check_interval; with --once a single cycle.
    Run,
}
