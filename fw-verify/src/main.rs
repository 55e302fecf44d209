use std::process::ExitCode;

use fw_core::keyring::{self, Keyring};
use fw_core::{event, Error, Exit, Result};
use fw_verify::cli::Cli;

fn run(cli: Cli) -> Result<()> {
    cli.verbosity.apply();
    let path = fw_core::cli::path_or_stdin_line(cli.path, "fw-unpack")?;
    if !fw_core::cli::existing(&path)?.is_dir() {
        return Err(Error::invalid(format!(
            "{} is not a directory: fw-verify checks a version tree, the directory fw-unpack \
             prints (fw-unseal < pkg.fw | fw-unpack | fw-verify) or an installed version \
             (e.g. /opt/firmware/current)",
            path.display()
        )));
    }
    let keyring = Keyring::load(&keyring::resolve(cli.keyring.as_deref()))?;
    let target = fw_core::target::resolve(cli.target.as_deref());
    let policy = fw_verify::Policy::load(cli.policy.as_deref())?;
    let expected = fw_verify::Expected {
        name: cli.expect_name,
        version: cli.expect_version,
        security_version: cli.expect_security_version,
    };
    let bar = cli.progress.bar("fw-verify", None);
    let verified = fw_verify::verify_with_progress(
        &path, &keyring, &target, &policy, &expected, cli.full, &bar,
    );
    fw_core::progress::finish(&bar);
    let verified = match verified {
        Err(e) if e.code == Exit::Security => {
            if let Some(work) = fw_verify::remove_refused_staging(&path, &target) {
                fw_core::detail!("removed the refused staging tree {}", work.display());
            }
            return Err(e);
        }
        verified => verified?,
    };
    event!(Info, "verified", {
        "name": &verified.manifest.name,
        "version": &verified.manifest.version,
        "security_version": verified.manifest.security_version,
        "path": path.to_string_lossy(),
        "files": verified.files,
        "bytes": verified.bytes,
        "bytes_read": verified.read,
        "signer": &verified.signer.cert,
    },
        "{} {} verified: {} files, {} bytes ({} read, the rest proven by the record of \
         proven inodes), signed by {}",
        verified.manifest.name,
        verified.manifest.version,
        verified.files,
        verified.bytes,
        verified.read,
        verified.signer
    );
    fw_core::cli::print_path(&path)?;
    Ok(())
}

fn main() -> ExitCode {
    let cli = fw_core::cli::parse::<Cli>();
    fw_core::error::report("fw-verify", run(cli))
}
