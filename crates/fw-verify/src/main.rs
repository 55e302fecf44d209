use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use fw_core::keyring::{self, Keyring};
use fw_core::{note, Result};

/// Prove a firmware tree equal to its signed manifest, and apply the
/// device's policy; print the tree's path on success.
///
/// Checks .fw/manifest.sig against the keyring (exit 4), refuses a
/// security_version below the target's (exit 4) and what the policy file
/// forbids (exit 4), then compares every entry: type, mode, size, BLAKE3,
/// symlink target, owner when run as root, and nothing extra (exit 5,
/// listing up to 20 differences). Modification times are not compared.
/// On success, records the manifest's BLAKE3 in .fw/verified for
/// fw-fixate. Also an integrity check of installed versions:
///   fw-verify /opt/firmware/current
///
/// Policy file (TOML, all keys optional):
///   allowed_names = ["sample-setup"]   # firmware this device installs
///   allow_setuid = false               # refuse setuid/setgid files
///   max_bytes = 2000000000             # most content bytes in a version
///
/// Example:
///   fw-unseal < rootfs.fw | fw-unpack | fw-verify | fw-fixate
#[derive(Parser)]
#[command(name = "fw-verify", version, about, long_about, verbatim_doc_comment)]
struct Cli {
    /// The tree to verify [default: one line read from stdin].
    #[arg(value_name = "PATH")]
    path: Option<PathBuf>,
    /// Trusted vendor certificates: a directory of *.asc, *.pgp, *.gpg
    /// files, or one file [default: $FW_KEYRING, else /etc/fw/keys].
    #[arg(long, value_name = "K")]
    keyring: Option<PathBuf>,
    /// The firmware target, for the anti-rollback floor [default:
    /// $FW_TARGET, else /opt/firmware].
    #[arg(long, value_name = "T")]
    target: Option<PathBuf>,
    /// The device policy file [default: /etc/fw/policy.toml if present].
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    #[command(flatten)]
    verbosity: fw_core::cli::Verbosity,
}

fn run(cli: Cli) -> Result<()> {
    cli.verbosity.apply();
    let path = fw_core::cli::path_or_stdin_line(cli.path, "fw-unpack")?;
    let keyring = Keyring::load(&keyring::resolve(cli.keyring.as_deref()))?;
    let target = fw_core::target::resolve(cli.target.as_deref());
    let policy = fw_verify::Policy::load(cli.policy.as_deref())?;
    let verified = fw_verify::verify(&path, &keyring, &target, &policy)?;
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
