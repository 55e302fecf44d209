//! The command line, shared by the binary and by the generator of man
//! pages and shell completions (xtask).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

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
/// security_version, a package that does not match the index); 5 invalid
/// index; 6 busy; 7, 8 from fw-install (rolled back, failsafe).
#[derive(Parser)]
#[command(name = "fw-update", version, about, long_about, verbatim_doc_comment)]
pub struct Cli {
    #[command(flatten)]
    pub verbosity: fw_core::cli::Verbosity,
    #[command(subcommand)]
    pub command: Cmd,
    /// The release index's URL (its signature is URL.sig).
    #[arg(long, global = true, value_name = "URL")]
    pub index: Option<String>,
    /// The firmware target [default: $FW_TARGET, else /opt/firmware].
    #[arg(long, global = true, value_name = "T")]
    pub target: Option<PathBuf>,
    /// Trusted certificates (and the device key) [default: $FW_KEYRING,
    /// else /etc/fw/keys].
    #[arg(long, global = true, value_name = "K")]
    pub keyring: Option<PathBuf>,
    /// The configuration (TOML) [default: $FW_UPDATE_CONFIG, else
    /// /etc/fw/update.toml if it exists].
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Append status events to FILE instead of writing them to stdout.
    #[arg(long, global = true, value_name = "FILE")]
    pub status: Option<PathBuf>,
    /// run: one cycle, then exit (for timers and tests).
    #[arg(long, global = true)]
    pub once: bool,
    /// install: let fw-install stream the package from its URL instead of
    /// downloading it first (no resume, no BLAKE3 check against the index;
    /// the package's signature and security_version still hold).
    #[arg(long, global = true)]
    pub stream: bool,
    /// The firmware name to follow when nothing is installed yet.
    #[arg(long, global = true, value_name = "NAME")]
    pub name: Option<String>,
    /// run: download updates (config: auto_download).
    #[arg(long = "auto-download", global = true)]
    pub auto_download: bool,
    /// run: download and install updates (config: auto_install).
    #[arg(long = "auto-install", global = true)]
    pub auto_install: bool,
    /// run: time between checks, e.g. 1h, 30m, 24h0m0s (config: check_interval).
    #[arg(long = "check-interval", global = true, value_name = "DURATION",
          value_parser = fw_core::cli::parse_duration)]
    pub check_interval: Option<Duration>,
    /// Wait after a gate's or hook's "not now" (exit 3) (config: retry_interval).
    #[arg(long = "retry-interval", global = true, value_name = "DURATION",
          value_parser = fw_core::cli::parse_duration)]
    pub retry_interval: Option<Duration>,
    /// Retries after "not now" before giving up (config: max_retries).
    #[arg(long = "max-retries", global = true, value_name = "N")]
    pub max_retries: Option<u32>,
    /// Retries of an interrupted download (config: download_retries).
    #[arg(long = "download-retries", global = true, value_name = "N")]
    pub download_retries: Option<u32>,
    /// A command that says whether to download now: 0 yes, 3 not now
    /// (config: download_gate).
    #[arg(long = "download-gate", global = true, value_name = "CMD")]
    pub download_gate: Option<String>,
    /// A command that says whether to install now: 0 yes, 3 not now
    /// (config: install_gate).
    #[arg(long = "install-gate", global = true, value_name = "CMD")]
    pub install_gate: Option<String>,
    /// scripts/fw-install [default: $FW_INSTALL, else next to fw-update,
    /// else PATH].
    #[arg(long = "fw-install", global = true, value_name = "PATH")]
    pub fw_install: Option<PathBuf>,
}

#[derive(Subcommand, Clone, Copy)]
pub enum Cmd {
    /// Fetch and verify the index; say whether an update is available.
    Check,
    /// check, then download the update into TARGET/.fw/downloads/.
    Download,
    /// check, download, then install the update with fw-install.
    Install,
    /// What the configuration says (auto_download, auto_install), every
    /// check_interval; with --once a single cycle.
    Run,
}
