//! The command line, shared by the binary and by the generator of man
//! pages and shell completions (xtask).

use std::path::PathBuf;

use clap::Parser;

/// Fetch an fw package by HTTP Range, downloading only the files that no
/// installed version of the target holds, and write the stream that
/// `fw-unpack --delta` unpacks.
///
/// Reads the package's head, verifies its manifest's signature by the
/// keyring (as fw-unseal does) before it parses anything else, then
/// fetches the gzip members of the missing files in a few requests and
/// proves each against the signed manifest. A server without Range
/// support sends the whole package, which is read as it comes; a package
/// made by an older fw-sign (no member offsets) is passed on whole. An
/// interrupted fetch resumes from TARGET/.fw/fetch/; a package that
/// changed on the server since (its ETag) is refused and fetched anew the
/// next time.
///
/// Exit codes: 0 done; 1 network or disk (run it again to resume); 4 the
/// manifest's signature or a file's content failed its check; 5 the
/// server's answers or the package are malformed; 6 another fw-fetch runs
/// on the target.
///
/// Example:
///   fw-fetch https://fw.example/rootfs-2.fw | fw-unpack --delta | fw-verify | fw-fixate
#[derive(Parser)]
#[command(name = "fw-fetch", version, about, long_about, verbatim_doc_comment)]
pub struct Cli {
    /// The firmware target whose installed versions are the base
    /// [default: $FW_TARGET, else /opt/firmware].
    #[arg(long, value_name = "T")]
    pub target: Option<PathBuf>,
    /// Trusted vendor certificates and the device's key [default:
    /// $FW_KEYRING, else /etc/fw/keys].
    #[arg(long, value_name = "K")]
    pub keyring: Option<PathBuf>,
    /// Give up a transfer that stays under N bytes/s ...
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub stall_speed: u32,
    /// ... for S seconds: exit 1, what was fetched is kept for the next run.
    #[arg(long, value_name = "S", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub stall_time: u64,
    /// The package's URL (http or https).
    #[arg(value_name = "URL")]
    pub url: String,
    #[command(flatten)]
    pub verbosity: fw_core::cli::Verbosity,
}
