use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use fw_core::{note, Error, Result};
use fw_unpack::Cleanup;

/// Safely extract an unsealed fw package (tar.gz on stdin) into a fresh
/// staging directory of the target, and print that tree's path.
///
/// Refuses (exit 5, nothing left behind) anything that could reach outside
/// the staging directory or that fw-sign does not make: `..` or absolute
/// paths, writing through symlinks, hard links out of the tree, device
/// nodes and fifos, duplicates, a missing manifest, more than --max-bytes,
/// and a gzip stream that is cut short or followed by anything but whole
/// gzip members. On SIGTERM or SIGINT it removes its staging directory.
///
/// Example:
///   fw-unseal < rootfs.fw | fw-unpack --target /opt/firmware | fw-verify
#[derive(Parser)]
#[command(name = "fw-unpack", version, about, long_about, verbatim_doc_comment)]
struct Cli {
    /// The firmware target; staging goes to TARGET/.fw/staging [default:
    /// $FW_TARGET, else /opt/firmware].
    #[arg(long, value_name = "T")]
    target: Option<PathBuf>,
    /// Refuse packages whose content exceeds N bytes [default: 90% of the
    /// free space on the target's file system].
    #[arg(long, value_name = "N")]
    max_bytes: Option<u64>,
    #[command(flatten)]
    verbosity: fw_core::cli::Verbosity,
}

/// Removes the staging directory on SIGTERM, SIGINT or SIGHUP, then exits.
fn clean_up_on_signals(cleanup: Cleanup) -> Result<()> {
    use nix::sys::signal::{SigSet, Signal};
    let mut signals = SigSet::empty();
    for signal in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        signals.add(signal);
    }
    // Blocked here, before any other thread starts, so only the waiter
    // below ever sees them.
    signals
        .thread_block()
        .map_err(|e| Error::failed(format!("cannot block signals: {e}")))?;
    std::thread::spawn(move || {
        if let Ok(signal) = signals.wait() {
            let removed = cleanup.abort();
            eprintln!(
                "fw-unpack: error: interrupted by {signal:?}{}",
                removed
                    .map(|d| format!("; removed {}", d.display()))
                    .unwrap_or_default()
            );
            std::process::exit(1);
        }
    });
    Ok(())
}

fn run(cli: Cli) -> Result<()> {
    cli.verbosity.apply();
    let cleanup = Cleanup::new();
    clean_up_on_signals(cleanup.clone())?;
    let target = fw_core::target::resolve(cli.target.as_deref());
    let staging = fw_unpack::prepare_staging(&target)?;
    let max_bytes = match cli.max_bytes {
        Some(n) => n,
        None => fw_unpack::default_max_bytes(&staging)?,
    };
    let shared = fw_core::target::SharedFiles::of_target(&target);
    let unpacked = fw_unpack::unpack(
        std::io::stdin().lock(),
        &staging,
        max_bytes,
        &shared,
        &cleanup,
    )?;
    note!(
        "unpacked {} ({} entries, {} bytes; {} files, {} bytes shared with installed versions) into {}",
        unpacked.name,
        unpacked.entries,
        unpacked.bytes,
        unpacked.shared_files,
        unpacked.shared_bytes,
        unpacked.tree.display()
    );
    if let Err(err) = fw_core::cli::print_path(&unpacked.tree) {
        // Nobody will learn where the tree is: do not leave it behind.
        if let Some(work) = unpacked.tree.parent() {
            let _ = std::fs::remove_dir_all(work);
        }
        return Err(err);
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    fw_core::error::report("fw-unpack", run(cli))
}
