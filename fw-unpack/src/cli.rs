//! The command line, shared by the binary and by the generator of man
//! pages and shell completions (xtask).

use std::path::PathBuf;

use clap::Parser;

/// Safely extract an unsealed fw package (fw-unseal's output on stdin)
/// into a fresh staging directory of the target, and print that tree's
/// path.
///
/// Succeeds only once fw-unseal's proof, the vendor's signature that
/// fw-unseal forwards after the tar.gz, verifies over exactly the bytes
/// read, by the keyring's trust rule; and parses the manifest only once
/// its signature verified. Without them (a tar.gz made by hand, or cut
/// short because fw-unseal refused it), or with anything after the proof:
/// exit 4, nothing left behind.
///
/// Refuses (exit 5, nothing left behind) anything that could reach outside
/// the staging directory or that fw-sign does not make: `..` or absolute
/// paths, writing through symlinks, hard links out of the tree, device
/// nodes and fifos, duplicates, names longer than 255 bytes, a missing
/// manifest, tar headers or a manifest larger than any package needs, more
/// than --max-bytes, and a gzip stream that is cut short or followed by
/// anything but whole gzip members. On SIGTERM or SIGINT it removes its
/// staging directory.
///
/// A sealed package on stdin (OpenPGP, not yet through fw-unseal) is
/// refused at once (exit 5), a terminal too (exit 2). A pipe that ends
/// before its first byte means the stage before failed and said why:
/// exit 9, quietly (the reason shows with -v).
///
/// Example:
///   fw-unseal < rootfs.fw | fw-unpack --target /opt/firmware | fw-verify
#[derive(Parser)]
#[command(name = "fw-unpack", version, about, long_about, verbatim_doc_comment)]
pub struct Cli {
    /// The firmware target; staging goes to TARGET/.fw/staging [default:
    /// $FW_TARGET, else /opt/firmware].
    #[arg(long, value_name = "T")]
    pub target: Option<PathBuf>,
    /// The stream is fw-fetch's (a delta upgrade), not fw-unseal's: there
    /// is no proof; the manifest's signature is the root of trust, every
    /// header must match the manifest, every file written must match its
    /// BLAKE3, and data fw-fetch omitted is only linked from an installed
    /// version, never read.
    #[arg(long)]
    pub delta: bool,
    /// Trusted vendor certificates, which fw-unseal's proof and the
    /// manifest's signature must verify by: a directory of *.asc, *.pgp,
    /// *.gpg files, or one file [default: $FW_KEYRING, else /etc/fw/keys].
    #[arg(long, value_name = "K")]
    pub keyring: Option<PathBuf>,
    /// Refuse packages whose content exceeds N bytes [default: 90% of the
    /// free space on the target's file system].
    #[arg(long, value_name = "N")]
    pub max_bytes: Option<u64>,
    #[command(flatten)]
    pub verbosity: fw_core::cli::Verbosity,
    #[command(flatten)]
    pub progress: fw_core::progress::ProgressArgs,
}
