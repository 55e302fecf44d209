use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use fw_core::{Error, Result};

/// Packs a firmware directory into one signed (optionally encrypted) fw
/// package, and makes the OpenPGP keys for vendors and devices.
///
/// Example:
///   fw-sign keygen --userid 'ACME firmware <fw@acme.example>' > vendor.key
///   fw-sign cert < vendor.key > vendor.asc        # goes to /etc/fw/keys on devices
///   fw-sign pack --key vendor.key --version 1.2 rootfs/ > rootfs.fw
#[derive(Parser)]
#[command(name = "fw-sign", version, about, long_about, verbatim_doc_comment)]
struct Cli {
    #[command(flatten)]
    verbosity: fw_core::cli::Verbosity,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a new secret key (armored, no passphrase) to stdout: Ed25519
    /// signing and Cv25519 encryption subkeys, readable by GnuPG 2.2.
    Keygen {
        /// The key's user ID, e.g. 'ACME firmware <fw@acme.example>'.
        #[arg(long)]
        userid: String,
    },
    /// Read a key (from fw-sign keygen or GnuPG) on stdin and write its
    /// public certificate, armored, to stdout.
    Cert,
    /// Pack DIR into a package on stdout: a signed manifest of every entry,
    /// then the tree, as a gzip'd tar inside a signed OpenPGP message,
    /// encrypted if --encrypt-for is given. Reproducible with
    /// SOURCE_DATE_EPOCH set.
    Pack {
        /// The vendor's secret key (armored or binary; fw-sign keygen or
        /// gpg --export-secret-keys).
        #[arg(long, value_name = "KEY")]
        key: PathBuf,
        /// Encrypt to this device certificate; repeat for several.
        #[arg(long = "encrypt-for", value_name = "CERT")]
        encrypt_for: Vec<PathBuf>,
        /// The firmware's version string [default: the creation time in
        /// seconds since 1970].
        #[arg(long, value_name = "V")]
        version: Option<String>,
        /// Anti-rollback counter: devices refuse packages below the highest
        /// they installed.
        #[arg(long = "security-version", value_name = "N", default_value_t = 0)]
        security_version: u64,
        /// Leave out paths (relative to DIR) matching this glob; repeat for
        /// several. A matching directory is left out whole.
        #[arg(long, value_name = "GLOB")]
        exclude: Vec<String>,
        /// The directory to pack; its name becomes the firmware's name.
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
}

fn write_stdout(bytes: &[u8]) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(bytes)
        .and_then(|()| stdout.flush())
        .map_err(|e| Error::io("stdout", e))
}

fn run(cli: Cli) -> Result<()> {
    cli.verbosity.apply();
    match cli.command {
        Command::Keygen { userid } => write_stdout(&fw_sign::keygen(&userid)?),
        Command::Cert => {
            let mut key = Vec::new();
            std::io::stdin()
                .read_to_end(&mut key)
                .map_err(|e| Error::io("stdin", e))?;
            write_stdout(&fw_sign::cert_of(&key)?)
        }
        Command::Pack {
            key,
            encrypt_for,
            version,
            security_version,
            exclude,
            dir,
        } => {
            if std::io::stdout().is_terminal() {
                return Err(Error::usage(
                    "stdout is a terminal: send the package to a file, e.g. > firmware.fw",
                ));
            }
            let options = fw_sign::PackOptions {
                dir,
                key,
                encrypt_for,
                version,
                security_version,
                exclude,
                source_date_epoch: fw_sign::pack::source_date_epoch_from_env()?,
            };
            // A File on fd 1 (not the line-buffered Stdout): sequoia's writers
            // must be Send + Sync.
            let fd = std::os::fd::AsFd::as_fd(&std::io::stdout())
                .try_clone_to_owned()
                .map_err(|e| Error::io("stdout", e))?;
            let stdout = std::io::BufWriter::with_capacity(256 << 10, std::fs::File::from(fd));
            fw_sign::pack(&options, stdout).map(|_| ())
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    fw_core::error::report("fw-sign", run(cli))
}
