use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use fw_core::{note, Error, Result};
use fw_fetch::cli::Cli;

fn run(cli: Cli) -> Result<()> {
    cli.verbosity.apply();
    if std::io::stdout().is_terminal() {
        return Err(Error::usage(
            "stdout is a terminal: pipe it into fw-unpack --delta",
        ));
    }
    let target = fw_core::target::resolve(cli.target.as_deref());
    let keyring =
        fw_core::keyring::Keyring::load(&fw_core::keyring::resolve(cli.keyring.as_deref()))?;
    let stdout = std::os::fd::AsFd::as_fd(&std::io::stdout())
        .try_clone_to_owned()
        .map_err(|e| Error::io("stdout", e))?;
    fw_core::cli::grow_pipe(std::os::fd::AsFd::as_fd(&stdout));
    let out = std::io::BufWriter::with_capacity(256 << 10, std::fs::File::from(stdout));
    let options = fw_fetch::Options {
        url: cli.url,
        target,
        keyring,
        stall: fw_core::http::Stall {
            speed: cli.stall_speed,
            secs: cli.stall_time,
        },
    };
    let summary = fw_fetch::fetch(&options, out)?;
    let how = match summary.way {
        fw_fetch::Way::Delta => format!(
            "by range: {} of its {} bytes in {} request(s)",
            summary.received, summary.package_bytes, summary.requests
        ),
        fw_fetch::Way::WholePackage | fw_fetch::Way::PassThrough => {
            format!("whole: {} bytes", summary.package_bytes)
        }
    };
    note!(
        "fetched {} {} {how}; {} files fetched, {} held by installed versions",
        summary.name,
        summary.version,
        summary.files_fetched,
        summary.files_held
    );
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    fw_core::error::report("fw-fetch", run(cli))
}
