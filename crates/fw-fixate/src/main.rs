use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use fw_core::{note, Result};

/// Install a verified staging tree as a new version of the target and
/// print its final path.
///
/// Files identical (content, mode, owner) to a file of any installed
/// version become hard links to it, so a version costs only what changed.
/// The tree is made durable, then moved to TARGET/NAME (NAME-1, NAME-2, …
/// when taken) by one rename: it never appears there incomplete. Refuses
/// a tree that fw-verify did not verify (exit 5).
///
/// Example:
///   fw-unseal < rootfs.fw | fw-unpack | fw-verify | fw-fixate
#[derive(Parser)]
#[command(name = "fw-fixate", version, about, long_about, verbatim_doc_comment)]
struct Cli {
    /// The verified staging tree [default: one line read from stdin].
    #[arg(value_name = "PATH")]
    path: Option<PathBuf>,
    /// The firmware target [default: $FW_TARGET, else /opt/firmware].
    #[arg(long, value_name = "T")]
    target: Option<PathBuf>,
    /// Wait up to SECS for the target lock instead of failing at once
    /// (exit 6).
    #[arg(long, value_name = "SECS", num_args = 0..=1, default_missing_value = "3600")]
    wait: Option<f64>,
    #[command(flatten)]
    verbosity: fw_core::cli::Verbosity,
}

fn run(cli: Cli) -> Result<()> {
    cli.verbosity.apply();
    let path = fw_core::cli::path_or_stdin_line(cli.path, "fw-verify")?;
    let target = fw_core::target::resolve(cli.target.as_deref());
    let wait = cli.wait.map(std::time::Duration::from_secs_f64);
    let _lock = fw_core::lock::acquire(&target, wait)?;
    let fixated = fw_fixate::fixate(&path, &target)?;
    note!(
        "installed {}: shared {} files ({} bytes) with installed versions, wrote {} files ({} bytes)",
        fixated.path.display(),
        fixated.shared_files,
        fixated.shared_bytes,
        fixated.written_files,
        fixated.written_bytes
    );
    fw_core::cli::print_path(&fixated.path)?;
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    fw_core::error::report("fw-fixate", run(cli))
}
