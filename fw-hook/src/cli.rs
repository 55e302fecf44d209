//! The command line, shared by the binary and by the generator of man
//! pages and shell completions (xtask).

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::HookName;

/// Run a hook of a firmware version: PATH/.NAME, where NAME is pre-install,
/// post-install or health-check.
///
/// The hook runs with $1 = PATH (absolute), in the directory PATH, with its
/// stdin from /dev/null, in a process group of its own, and with these in
/// its environment:
///
///   FW_HOOK       NAME
///   FW_ATTEMPT    1, then 2, 3, ... when it is retried
///   FW_TO         passed through if set, else PATH
///   FW_FROM       passed through if set (even empty), else where
///                 TARGET/current resolves to, else empty (a first install)
///   FW_DIRECTION  passed through if set (upgrade, downgrade, reinstall or
///                 rollback), else: reinstall if FROM and TO are the same
///                 directory; upgrade or downgrade by their manifests
///                 (.fw/manifest.json: the higher security_version wins,
///                 then the later created; equal on both is a reinstall);
///                 upgrade if there is no FROM or a manifest is unreadable
///
/// Its stdout and stderr go to our stderr, line by line as they come, each
/// line prefixed with "[NAME] ". Nothing is written to stdout. fw-hook waits
/// for the end of that output, so a hook that leaves something running in
/// the background must send its output elsewhere (`daemon >/dev/null 2>&1 &`)
/// or be killed with it at --timeout.
///
/// A version without the hook is fine (exit 0). Exit 3 from the hook means
/// "not now, retry later": it runs again after --retry-interval seconds,
/// doubling each time (at most an hour) with ±20% jitter, up to --retries
/// times; if it still exits 3, so does fw-hook. Any other failure of the
/// hook (a non-zero exit, a signal, the timeout, which kills its whole
/// process group) is exit 1. On SIGTERM, SIGINT or SIGHUP the hook's process
/// group is killed and fw-hook exits 1.
///
/// Exit codes: 0 done (or no such hook), 1 the hook failed or cannot run,
/// 2 usage error, 3 the hook still asks to retry later.
///
/// Example:
///   fw-hook --target /opt/firmware --timeout 60 pre-install /opt/firmware/app-2
///   FW_DIRECTION=rollback fw-hook post-install /opt/firmware/app-1
#[derive(Parser)]
#[command(name = "fw-hook", version, about, long_about, verbatim_doc_comment)]
pub struct Cli {
    /// The firmware target, whose `current` link is the default FW_FROM
    /// [default: $FW_TARGET, else /opt/firmware].
    #[arg(long, value_name = "T")]
    pub target: Option<PathBuf>,
    /// Kill the hook (and its whole process group) if it runs longer than S
    /// (seconds, or a duration such as 90s or 5m), per attempt; 0: never.
    #[arg(long, value_name = "S", default_value = "300", value_parser = fw_core::cli::parse_duration)]
    pub timeout: Duration,
    /// Run the hook at most N more times while it exits 3 (retry later).
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub retries: u32,
    /// Seconds (or a duration such as 1m) before the first retry; doubled for
    /// each further one, at most an hour, ±20%.
    #[arg(long, value_name = "S", default_value = "5", value_parser = fw_core::cli::parse_duration)]
    pub retry_interval: Duration,
    /// -q: errors and the hook's own output only.
    #[command(flatten)]
    pub verbosity: fw_core::cli::Verbosity,
    /// Which hook: pre-install, post-install or health-check.
    #[arg(value_name = "NAME", value_enum)]
    pub name: HookName,
    /// The version's directory, e.g. /opt/firmware/app-2.
    #[arg(value_name = "PATH")]
    pub path: PathBuf,
}
