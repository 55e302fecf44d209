//! The command line, shared by the binary and by the generator of man
//! pages and shell completions (xtask).

use std::path::PathBuf;

use clap::Parser;

/// Prove a firmware tree equal to its signed manifest, and apply the
/// device's policy; print the tree's path on success.
///
/// Checks .fw/manifest.sig against the keyring (exit 4), refuses a
/// security_version below the target's (exit 4) and what the policy file
/// forbids (exit 4), or a manifest other than --expect-* say (exit 4), then
/// compares every entry: type, mode, size, BLAKE3, symlink target,
/// extended attributes (capabilities, ACLs, user.*; not security.selinux),
/// owner and trusted.* when run as root, and nothing extra (exit 5,
/// listing up to 20 differences). Modification times are not compared.
/// A file's content is proven by reading it, or by the target's record of
/// proven inodes (TARGET/.fw/inodes, like git's index: device, inode,
/// size, times, BLAKE3), which says that fw-unpack wrote or fw hashed
/// that very inode and nothing has changed it since; --full reads every
/// file. On success, records the manifest's BLAKE3 in .fw/verified for
/// fw-fixate. A staging tree (TARGET/.fw/staging/unpack-*/NAME) refused
/// with exit 4 is removed, as it can never be installed; one refused
/// with exit 5 is kept for inspection. On a terminal, a bar shows the bytes hashed of the
/// total to read. Also an integrity check of installed versions:
///   fw-verify /opt/firmware/current
///   fw-verify --full /opt/firmware/current    (reads every byte: an fsck)
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
pub struct Cli {
    /// The tree to verify [default: one line read from stdin].
    #[arg(value_name = "PATH")]
    pub path: Option<PathBuf>,
    /// Trusted vendor certificates: a directory of *.asc, *.pgp, *.gpg
    /// files, or one file [default: $FW_KEYRING, else /etc/fw/keys].
    #[arg(long, value_name = "K")]
    pub keyring: Option<PathBuf>,
    /// The firmware target, for the anti-rollback floor [default:
    /// $FW_TARGET, else /opt/firmware].
    #[arg(long, value_name = "T")]
    pub target: Option<PathBuf>,
    /// The device policy file [default: /etc/fw/policy.toml if present].
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Refuse the tree (exit 4) unless its signed manifest's name is NAME:
    /// fw-update passes what the signed release index lists.
    #[arg(long, value_name = "NAME")]
    pub expect_name: Option<String>,
    /// Refuse the tree (exit 4) unless its manifest's version is VERSION.
    #[arg(long, value_name = "VERSION")]
    pub expect_version: Option<String>,
    /// Refuse the tree (exit 4) unless its manifest's security_version is N.
    #[arg(long, value_name = "N")]
    pub expect_security_version: Option<u64>,
    /// Read and hash every file, even those the record of proven inodes
    /// vouches for: finds damage that did not go through the file system
    /// (bit rot, a write to the raw device).
    #[arg(long)]
    pub full: bool,
    #[command(flatten)]
    pub verbosity: fw_core::cli::Verbosity,
    #[command(flatten)]
    pub progress: fw_core::progress::ProgressArgs,
}
