use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;

use fw_core::{Error, Result};
use fw_sign::cli::{Cli, Command};

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
            progress,
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
            let stdout =
                std::io::BufWriter::with_capacity(256 << 10, fw_core::stdio::stdout_file()?);
            let bar = progress.bar("fw-sign pack", None);
            fw_sign::pack::pack_with_progress(&options, stdout, &bar).map(|_| ())
        }
        Command::Index {
            key,
            base_url,
            expires,
            signature,
            decrypt_key,
            packages,
        } => {
            let sig_path = fw_sign::index::signature_path(signature)?;
            let signed = fw_sign::index::index(&fw_sign::index::IndexOptions {
                key,
                decrypt_keys: decrypt_key,
                base_url,
                expires_in: expires.as_secs(),
                packages,
                source_date_epoch: fw_sign::pack::source_date_epoch_from_env()?,
            })?;
            fw_core::atomic::write_path(&sig_path, &signed.signature)?;
            write_stdout(&signed.json)
        }
    }
}

fn main() -> ExitCode {
    fw_core::cli::return_large_buffers();
    let cli = fw_core::cli::parse::<Cli>();
    fw_core::error::report("fw-sign", run(cli))
}
