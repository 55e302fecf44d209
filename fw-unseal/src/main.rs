use std::process::ExitCode;

use fw_core::keyring::{self, Keyring};
use fw_core::{note, Error, Result};
use fw_unseal::cli::Cli;

fn run(cli: Cli) -> Result<()> {
    cli.verbosity.apply();
    fw_core::cli::refuse_terminal_stdout(
        "the tar.gz is binary: pipe it on, e.g. fw-unseal pkg.fw | fw-unpack",
    )?;
    let (file, name) = match &cli.file {
        Some(path) => (
            std::fs::File::open(fw_core::cli::existing(path)?)
                .map_err(|e| Error::io(path.display(), e))?,
            path.display().to_string(),
        ),
        None => {
            fw_core::cli::refuse_terminal_stdin(
                "give the package as FILE, or redirect it: fw-unseal < pkg.fw",
            )?;
            fw_core::cli::grow_pipe(std::os::fd::AsFd::as_fd(&std::io::stdin()));
            (fw_core::stdio::stdin_file()?, "stdin".to_string())
        }
    };
    let size = file
        .metadata()
        .ok()
        .filter(|m| m.is_file())
        .map(|m| m.len());
    let mut input = std::io::BufReader::with_capacity(256 << 10, file);
    if fw_core::cli::peek(&mut input, 1)?.is_empty() {
        let empty = Error::invalid(format!("{name} is empty: no package"));
        return Err(match cli.file {
            Some(_) => empty,
            None => fw_core::cli::no_input("the stage before fw-unseal", empty),
        });
    }
    let keyring = Keyring::load(&keyring::resolve(cli.keyring.as_deref()))?;
    fw_core::cli::grow_pipe(std::os::fd::AsFd::as_fd(&std::io::stdout()));
    let stdout = std::io::BufWriter::with_capacity(256 << 10, std::io::stdout().lock());
    let bar = cli.progress.bar("fw-unseal", size);
    let input = fw_core::progress::ProgressReader::new(input, bar.clone());
    let unsealed = fw_unseal::unseal(&keyring, input, stdout, cli.spool);
    fw_core::progress::finish(&bar);
    let unsealed = unsealed?;
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
    let cli = fw_core::cli::parse::<Cli>();
    fw_core::error::report("fw-unseal", run(cli))
}
