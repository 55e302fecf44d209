use std::process::ExitCode;

use clap::Parser;
use fw_core::keyring::{self, Keyring};
use fw_core::{note, Result};
use fw_unpack::cli::Cli;
use fw_unpack::Cleanup;

/// Removes the staging directory on SIGTERM, SIGINT or SIGHUP, then exits.
fn clean_up_on_signals(cleanup: Cleanup) -> Result<()> {
    fw_core::signals::on_termination(move |signal| {
        let removed = cleanup.abort();
        fw_core::log::emit(
            fw_core::log::Level::Error,
            "fw-unpack",
            &format!(
                "interrupted by {signal:?}{}",
                removed
                    .map(|d| format!("; removed {}", d.display()))
                    .unwrap_or_default()
            ),
        );
        std::process::exit(1);
    })
    .map(drop)
}

fn run(cli: Cli) -> Result<()> {
    cli.verbosity.apply();
    let cleanup = Cleanup::new();
    clean_up_on_signals(cleanup.clone())?;
    let keyring = Keyring::load(&keyring::resolve(cli.keyring.as_deref()))?;
    let target = fw_core::target::resolve(cli.target.as_deref());
    let staging = fw_unpack::prepare_staging(&target)?;
    let max_bytes = match cli.max_bytes {
        Some(n) => n,
        None => fw_unpack::default_max_bytes(&staging)?,
    };
    let shared = fw_core::target::SharedFiles::of_target(&target);
    let bar = cli
        .progress
        .bar("fw-unpack", fw_core::progress::stdin_size());
    fw_core::cli::grow_pipe(std::os::fd::AsFd::as_fd(&std::io::stdin()));
    let input = fw_core::progress::ProgressReader::new(std::io::stdin(), bar.clone());
    let unpacked = fw_unpack::unpack(
        input, &staging, max_bytes, &shared, &keyring, cli.delta, &cleanup,
    );
    bar.finish_and_clear();
    let unpacked = unpacked?;
    note!(
        "unpacked {} ({} entries, {} bytes; {} files, {} bytes shared with installed versions; \
         signed by {}) into {}",
        unpacked.name,
        unpacked.entries,
        unpacked.bytes,
        unpacked.shared_files,
        unpacked.shared_bytes,
        unpacked.signer,
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
