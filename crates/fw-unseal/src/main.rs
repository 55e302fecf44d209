use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use fw_core::keyring::{self, Keyring};
use fw_core::{note, Error, Result};

/// Decrypt and verify an fw package: package on stdin, its tar.gz on stdout.
///
/// Only a good signature by a trusted certificate of the keyring passes;
/// the last 1 MiB of output is held back until the signature and the
/// encryption's integrity check (MDC) have verified, and on failure it is
/// never written (exit 4). Pipe the output into fw-unpack, which refuses a
/// gzip stream cut short. For consumers that cannot tell (plain `tar x`),
/// use --spool.
///
/// Example:
///   curl -fsS https://fw.example/rootfs.fw | fw-unseal | fw-unpack
#[derive(Parser)]
#[command(name = "fw-unseal", version, about, long_about, verbatim_doc_comment)]
struct Cli {
    /// Trusted vendor certificates and this device's decryption key: a
    /// directory of *.asc, *.pgp, *.gpg files, or one file [default:
    /// $FW_KEYRING, else /etc/fw/keys].
    #[arg(long, value_name = "K")]
    keyring: Option<PathBuf>,
    /// Write nothing until the whole package has verified, spooling it to
    /// an unlinked temporary file in $TMPDIR (needs space for the tar.gz).
    #[arg(long)]
    spool: bool,
    #[command(flatten)]
    verbosity: fw_core::cli::Verbosity,
}

fn run(cli: Cli) -> Result<()> {
    cli.verbosity.apply();
    let keyring = Keyring::load(&keyring::resolve(cli.keyring.as_deref()))?;
    let stdout = std::io::BufWriter::with_capacity(256 << 10, std::io::stdout().lock());
    // Sequoia wants a Send + Sync reader: read stdin through a File on fd 0.
    let fd = std::os::fd::AsFd::as_fd(&std::io::stdin())
        .try_clone_to_owned()
        .map_err(|e| Error::io("stdin", e))?;
    let input = std::io::BufReader::with_capacity(256 << 10, std::fs::File::from(fd));
    let unsealed = fw_unseal::unseal(&keyring, input, stdout, cli.spool)?;
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
