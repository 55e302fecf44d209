//! The command line, shared by the binary and by the generator of man
//! pages and shell completions (xtask).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Packs a firmware directory into one signed (optionally encrypted) fw
/// package, and makes the OpenPGP keys for vendors and devices.
///
/// Example:
///   fw-sign keygen --userid 'ACME firmware <fw@acme.example>' > vendor.key
///   fw-sign cert < vendor.key > vendor.asc        # goes to /etc/fw/keys on devices
///   fw-sign pack --key vendor.key --version 1.2 rootfs/ > rootfs.fw
#[derive(Parser)]
#[command(name = "fw-sign", version, about, long_about, verbatim_doc_comment)]
pub struct Cli {
    #[command(flatten)]
    pub verbosity: fw_core::cli::Verbosity,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
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
        /// Modes, owners, hard links, symlinks and extended attributes
        /// (capabilities, ACLs, user.*; trusted.* as root; not
        /// security.selinux) are packed as they are.
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        #[command(flatten)]
        progress: fw_core::progress::ProgressArgs,
    },
    /// Write a release index (JSON) of PKG... to stdout for fw-update, and
    /// its detached signature to --signature FILE (default: stdout's file
    /// + .sig, e.g. > index.json writes index.json.sig). See docs/update.md.
    Index {
        /// The vendor's secret key that signs the index (and signed the
        /// packages).
        #[arg(long, value_name = "KEY")]
        key: PathBuf,
        /// The URL the packages are served under; each entry's URL is
        /// BASE/FILE-NAME.
        #[arg(long = "base-url", value_name = "URL")]
        base_url: String,
        /// How long devices accept the index, e.g. 12h, 7d, 24h0m0s.
        #[arg(long, value_name = "DURATION", default_value = crate::index::DEFAULT_EXPIRES,
              value_parser = crate::index::parse_duration)]
        expires: std::time::Duration,
        /// Where to write the detached signature.
        #[arg(long, value_name = "FILE")]
        signature: Option<PathBuf>,
        /// A device key to read encrypted packages' manifests with.
        #[arg(long = "decrypt-key", value_name = "KEY")]
        decrypt_key: Vec<PathBuf>,
        /// The packages to list.
        #[arg(value_name = "PKG", required = true)]
        packages: Vec<PathBuf>,
    },
}
