//! The command line, shared by the binary and by the generator of man
//! pages and shell completions (xtask).

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use fw_core::journal::Phase;

/// Switch the firmware target's links atomically, and keep it tidy.
///
/// A target holds versions side by side (TARGET/NAME, NAME-1, …) and three
/// relative links: current, previous and failsafe, each replaced by
/// rename(2) and fsync, so a power cut leaves the old link or the new one.
/// Mutating commands take TARGET/.fw/lock: a second writer gets exit 6, or
/// waits with --wait. A target whose `current` is a real directory (set up
/// by hand) is adopted first: it becomes a version and the failsafe.
///
/// Examples:
///   fw-switch status
///   fw-switch to /opt/firmware/sample-setup-2
///   fw-switch rollback
///   fw-switch link-tree /opt/firmware/current/etc /etc
#[derive(Parser)]
#[command(name = "fw-switch", version, about, long_about, verbatim_doc_comment)]
pub struct Cli {
    /// The firmware target [default: $FW_TARGET, else /opt/firmware].
    #[arg(long, global = true, value_name = "T")]
    pub target: Option<PathBuf>,
    /// Wait up to SECS (or a duration: 90s, 5m) for the target lock instead
    /// of failing at once (exit 6) [default when given without SECS: 3600].
    #[arg(long, global = true, value_name = "SECS", num_args = 0..=1, default_missing_value = "3600",
          value_parser = fw_core::cli::parse_duration)]
    pub wait: Option<std::time::Duration>,
    #[command(flatten)]
    pub verbosity: fw_core::cli::Verbosity,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Show current, previous, failsafe and every installed version (name,
    /// version, security_version, size, bytes shared with other versions).
    Status {
        /// Print JSON for scripts instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Make PATH current (a verified version of the target: a path or a
    /// directory name); the old current becomes previous.
    To {
        #[arg(value_name = "PATH")]
        path: PathBuf,
    },
    /// Make previous current again (the old current becomes previous).
    Rollback,
    /// Make the failsafe version current.
    Failsafe,
    /// Make PATH the failsafe version: the last resort, never removed.
    SetFailsafe {
        #[arg(value_name = "PATH")]
        path: PathBuf,
    },
    /// Accept the current version: raise the anti-rollback floor to its
    /// security_version (TARGET/.fw/security-floor).
    Commit,
    /// Bring the target to a consistent state (run at every boot): finish
    /// or undo the transaction in TARGET/.fw/journal (before the switch:
    /// undone; after it: rolled back to the previous version, else the
    /// failsafe, running their hooks with FW_DIRECTION=rollback), count a
    /// boot of a version on probation and roll it back after --max-boots
    /// boots without a commit; adopt a hand-made current, restore a lost
    /// current link, remove leftover temporary links and dead staging
    /// directories. Exit 7: rolled back to the previous version; 8: on the
    /// failsafe.
    Recover {
        /// Boots a pending (uncommitted) version gets before it is rolled back.
        #[arg(long, value_name = "N", default_value_t = 3)]
        max_boots: u32,
        /// Do not count this run as a boot (fw-install's own recovery).
        #[arg(long)]
        no_boot_count: bool,
        /// Kill a rollback hook after S seconds (0: never).
        #[arg(long, value_name = "S", default_value = "300", value_parser = fw_core::cli::parse_duration)]
        hook_timeout: std::time::Duration,
        /// Retries of a rollback hook that exits 3.
        #[arg(long, value_name = "N", default_value_t = 3)]
        hook_retries: u32,
        /// First retry interval of a rollback hook, doubling.
        #[arg(long, value_name = "S", default_value = "5", value_parser = fw_core::cli::parse_duration)]
        hook_retry_interval: std::time::Duration,
    },
    /// For install scripts: record the transaction in flight in
    /// TARGET/.fw/journal (see `recover`).
    Journal {
        #[command(subcommand)]
        action: JournalAction,
    },
    /// Remove versions beyond the N newest (never current, previous or
    /// failsafe) and dead staging directories; report what was freed.
    Clean {
        /// How many of the newest versions to keep.
        #[arg(long, value_name = "N", default_value_t = 3)]
        keep: usize,
    },
    /// Symlink every file under SRC (e.g. /opt/firmware/current/etc) into
    /// DEST (e.g. /etc), creating directories; idempotent. Real files in
    /// DEST are left alone unless --force.
    LinkTree {
        #[arg(value_name = "SRC")]
        src: PathBuf,
        #[arg(value_name = "DEST")]
        dest: PathBuf,
        /// Replace files and links in DEST that are in the way.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
pub enum JournalAction {
    /// Begin a transaction from the current version (phase unpacking).
    Begin,
    /// Move the transaction to PHASE: unpacking, fixating, fixated,
    /// pre-install, switching, post-install, pending, rolling-back.
    Set {
        #[arg(value_name = "PHASE", value_parser = parse_phase)]
        phase: Phase,
        /// The new version's directory name or path.
        #[arg(long, value_name = "VERSION")]
        to: Option<PathBuf>,
    },
    /// End the transaction.
    Clear,
}

pub fn parse_phase(value: &str) -> std::result::Result<Phase, String> {
    Phase::parse(value).map_err(|e| e.message)
}
