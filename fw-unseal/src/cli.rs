//! The command line, shared by the binary and by the generator of man
//! pages and shell completions (xtask).

use std::path::PathBuf;

use clap::Parser;

/// Decrypt and verify an fw package: package on stdin (or FILE), its tar.gz
/// on stdout.
///
/// Only a good signature by a trusted certificate of the keyring passes;
/// a message without a one-pass signature by a trusted key, or with an
/// OpenPGP compression layer, is refused before a byte is written. The
/// last 1 MiB of output is held back until the signature and the
/// encryption's integrity check (MDC) have verified, and on failure it is
/// never written (exit 4). Once everything verified, the signature itself
/// follows the tar.gz, in an empty gzip member that gzip and tar ignore
/// (announced by another before the first byte): fw-unpack checks it over
/// exactly the bytes it read and completes only then, whatever the shell
/// does with this tool's exit status. For consumers that cannot tell
/// (plain `tar x`), use --spool.
///
/// Example:
///   curl -fsS https://fw.example/rootfs.fw | fw-unseal | fw-unpack
///   fw-unseal rootfs.fw | fw-unpack
///
/// A terminal on stdin or stdout is refused (exit 2). A pipe on stdin that
/// ends before its first byte means the stage before failed and said why:
/// exit 9, quietly (the reason shows with -v).
#[derive(Parser)]
#[command(name = "fw-unseal", version, about, long_about, verbatim_doc_comment)]
pub struct Cli {
    /// The package file [default: stdin].
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Trusted vendor certificates and this device's decryption key: a
    /// directory of *.asc, *.pgp, *.gpg files, or one file [default:
    /// $FW_KEYRING, else /etc/fw/keys].
    #[arg(long, value_name = "K")]
    pub keyring: Option<PathBuf>,
    /// Write nothing until the whole package has verified, spooling it to
    /// an unlinked temporary file in $TMPDIR (needs space for the tar.gz).
    #[arg(long)]
    pub spool: bool,
    #[command(flatten)]
    pub verbosity: fw_core::cli::Verbosity,
    #[command(flatten)]
    pub progress: fw_core::progress::ProgressArgs,
}
