use std::process::ExitCode;

use clap::Parser;
use fw_core::keyring::{self, Keyring};
use fw_core::{note, Result};
use fw_verify::cli::Cli;

fn run(cli: Cli) -> Result<()> {
    cli.verbosity.apply();
    let path = fw_core::cli::path_or_stdin_line(cli.path, "fw-unpack")?;
    let keyring = Keyring::load(&keyring::resolve(cli.keyring.as_deref()))?;
    let target = fw_core::target::resolve(cli.target.as_deref());
    let policy = fw_verify::Policy::load(cli.policy.as_deref())?;
    let expected = fw_verify::Expected {
        name: cli.expect_name,
        version: cli.expect_version,
        security_version: cli.expect_security_version,
    };
    let verified = fw_verify::verify(&path, &keyring, &target, &policy, &expected)?;
    note!(
        "{} {} verified: {} files, {} bytes, signed by {}",
        verified.manifest.name,
        verified.manifest.version,
        verified.files,
        verified.bytes,
        verified.signer
    );
    fw_core::cli::print_path(&path)?;
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    fw_core::error::report("fw-verify", run(cli))
}
