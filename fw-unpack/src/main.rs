use std::process::ExitCode;

use fw_core::keyring::{self, Keyring};
use fw_core::{note, Error, Result};
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

/// Waits for the first bytes of stdin and refuses what is surely not an
/// unsealed package, before anything is made on the target.
fn check_input() -> Result<()> {
    fw_core::cli::refuse_terminal_stdin("pipe a package in: fw-unseal pkg.fw | fw-unpack")?;
    // Stdin's buffer keeps what is peeked for the unpacking below.
    let first = fw_core::cli::peek(&mut std::io::stdin().lock(), 16)?;
    if first.is_empty() {
        return Err(fw_core::cli::no_input(
            "fw-unseal",
            Error::invalid("stdin is empty: no package"),
        ));
    }
    if fw_core::trust::looks_like_openpgp(&first) {
        return Err(Error::invalid(
            "stdin is a sealed package (OpenPGP): pipe it through fw-unseal first: \
             fw-unseal pkg.fw | fw-unpack",
        ));
    }
    Ok(())
}

fn run(cli: Cli) -> Result<()> {
    cli.verbosity.apply();
    check_input()?;
    let cleanup = Cleanup::new();
    clean_up_on_signals(cleanup.clone())?;
    let keyring = Keyring::load(&keyring::resolve(cli.keyring.as_deref()))?;
    let target = fw_core::cli::target_to_write(cli.target.as_deref())?;
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
    fw_core::progress::finish(&bar);
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
    let cli = fw_core::cli::parse::<Cli>();
    fw_core::error::report("fw-unpack", run(cli))
}
