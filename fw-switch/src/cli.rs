//! The command line, shared by the binary and by the generator of man
//! pages and shell completions (xtask).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
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
/// Anti-rollback: no command moves a link to a version whose
/// security_version is below the security floor (TARGET/.fw/security-floor,
/// raised by `commit`): exit 4. A floor file that cannot be read or parsed
/// is an error (exit 1), never floor 0; a missing one is floor 0. After a
/// failed upgrade, `recover` passes over a previous version below the floor
/// to the failsafe; if the failsafe is below it too, nothing is switched:
/// the failed version stays current, marked failed (exit 4). `commit` warns
/// when it leaves the failsafe below the floor.
///
/// A version that failed after its switch (its post-install or health
/// check, or no commit within --max-boots boots) is marked failed in
/// TARGET/.fw/failed; `rollback` and recover never pick it.
///
/// Examples:
///   fw-switch status
///   fw-switch to /opt/firmware/sample-setup-2
///   fw-switch commit
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

/// How the hooks of a rollback run (`rollback`, `recover`).
#[derive(Args, Debug, Clone)]
pub struct HookArgs {
    /// Kill a rollback hook after S seconds (0: never).
    #[arg(long, value_name = "S", default_value = "300", value_parser = fw_core::cli::parse_duration)]
    pub hook_timeout: std::time::Duration,
    /// Retries of a rollback hook that exits 3.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub hook_retries: u32,
    /// First retry interval of a rollback hook, doubling.
    #[arg(long, value_name = "S", default_value = "5", value_parser = fw_core::cli::parse_duration)]
    pub hook_retry_interval: std::time::Duration,
}

impl HookArgs {
    pub fn settings(&self) -> fw_hook::Settings {
        fw_hook::Settings {
            timeout: (!self.hook_timeout.is_zero()).then_some(self.hook_timeout),
            retries: self.hook_retries,
            retry_interval: self.hook_retry_interval,
            signal_mask: None,
        }
    }
}

#[derive(Subcommand)]
pub enum Command {
    /// Show the versions, their states and the security floor.
    ///
    /// Every installed version, newest first, with its state (current,
    /// previous, failsafe, pending, failed), manifest version,
    /// security_version, size and bytes shared with other versions; the
    /// security floor; and what to run next when a version is pending.
    Status {
        /// Print JSON for scripts instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Make PATH current; the old current becomes previous.
    ///
    /// PATH is a verified version of the target, or the failsafe: a path or
    /// a directory name. Refused below the security floor (exit 4). Ends
    /// the probation of a pending version that is no longer current.
    To {
        #[arg(value_name = "PATH")]
        path: PathBuf,
    },
    /// Go back to an older healthy version and run its hooks as a rollback.
    ///
    /// It goes to previous if that is older than current, else to the
    /// newest version older than current ("newest": the manifest's created
    /// time, then the directory name, NAME-2 after NAME-1); never to a
    /// version marked failed. Then its pre- and post-install run with
    /// FW_DIRECTION=rollback, as recover does. Refused when there is none
    /// (exit 1) or it is below the security floor (exit 4).
    Rollback {
        #[command(flatten)]
        hooks: HookArgs,
    },
    /// Make the failsafe version current.
    ///
    /// Refused below the security floor (exit 4).
    Failsafe,
    /// Make PATH the failsafe version: the last resort, never removed.
    ///
    /// Refused below the security floor (exit 4).
    SetFailsafe {
        #[arg(value_name = "PATH")]
        path: PathBuf,
    },
    /// Accept the current version and raise the security floor to it.
    ///
    /// Ends its probation, clears a failed mark on it, and raises the
    /// security floor (TARGET/.fw/security-floor) to its security_version.
    /// Warns when the failsafe is then below the floor: `failsafe` and
    /// automatic rollbacks will refuse it until a newer failsafe is set.
    Commit,
    /// Bring the target to a consistent state (run at every boot).
    ///
    /// Finishes or undoes the transaction in TARGET/.fw/journal. Before the
    /// switch it is undone (a version pending before it stays pending). After
    /// the switch, the new version is marked failed and rolled back to the
    /// previous version, else the failsafe, running their hooks with
    /// FW_DIRECTION=rollback; a version marked failed or below the security
    /// floor is passed over, and when every candidate is below the floor the
    /// failed version stays current (exit 4). Counts a boot of a version on
    /// probation and rolls it back the same way after --max-boots boots without
    /// a commit. Also adopts a hand-made current, restores a lost current link,
    /// and removes leftover temporary links and files (fw-install's
    /// TARGET/.fw/install.XXXXXX after a power cut) and dead staging
    /// directories. Exit 7: rolled back to the previous version; 8: on the
    /// failsafe; 4: staying on the failed version.
    Recover {
        /// Boots a pending (uncommitted) version gets before it is rolled back.
        #[arg(long, value_name = "N", default_value_t = 3)]
        max_boots: u32,
        /// Do not count this run as a boot (fw-install's own recovery).
        #[arg(long)]
        no_boot_count: bool,
        #[command(flatten)]
        hooks: HookArgs,
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
    /// Begin a transaction from the current version (phase unpacking);
    /// a pending version stays on probation until another is switched to.
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
