use std::process::ExitCode;

use fw_core::{note, Result};
use fw_fixate::cli::Cli;

fn run(cli: Cli) -> Result<()> {
    cli.verbosity.apply();
    let path = fw_core::cli::path_or_stdin_line(cli.path, "fw-verify")?;
    let target = fw_core::cli::target_to_write(cli.target.as_deref())?;
    let wait = cli.wait;
    let _lock = fw_core::lock::acquire(&target, wait)?;
    let fixated = fw_fixate::fixate(
        &path,
        &target,
        cli.reinstall,
        cli.progress.bar("fw-fixate: writing to disk", None),
    )?;
    note!(
        "installed {}: shared {} files ({} bytes) with installed versions, wrote {} files ({} bytes)",
        fixated.path.display(),
        fixated.shared_files,
        fixated.shared_bytes,
        fixated.written_files,
        fixated.written_bytes
    );
    fw_core::cli::print_path(&fixated.path)?;
    Ok(())
}

fn main() -> ExitCode {
    let cli = fw_core::cli::parse::<Cli>();
    fw_core::error::report("fw-fixate", run(cli))
}
