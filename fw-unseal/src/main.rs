use std::process::ExitCode;

use clap::Parser;
use fw_core::keyring::{self, Keyring};
use fw_core::{note, Result};
use fw_unseal::cli::Cli;

fn run(cli: Cli) -> Result<()> {
    cli.verbosity.apply();
    let keyring = Keyring::load(&keyring::resolve(cli.keyring.as_deref()))?;
    fw_core::cli::grow_pipe(std::os::fd::AsFd::as_fd(&std::io::stdin()));
    fw_core::cli::grow_pipe(std::os::fd::AsFd::as_fd(&std::io::stdout()));
    let stdout = std::io::BufWriter::with_capacity(256 << 10, std::io::stdout().lock());
    let bar = cli
        .progress
        .bar("fw-unseal", fw_core::progress::stdin_size());
    let input = fw_core::progress::ProgressReader::new(
        std::io::BufReader::with_capacity(256 << 10, fw_core::stdio::stdin_file()?),
        bar.clone(),
    );
    let unsealed = fw_unseal::unseal(&keyring, input, stdout, cli.spool);
    bar.finish_and_clear();
    let unsealed = unsealed?;
    note!(
        "good signature by {}{}; {} bytes",
        unsealed.signer,
        unsealed
            .decrypted_with
            .as_deref()
            .map(|k| format!(", decrypted with {k}"))
            .unwrap_or_default(),
        unsealed.bytes
    );
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    fw_core::error::report("fw-unseal", run(cli))
}
