//! The install stages composed with fw-nbio instead of a shell:
//!
//!   (curl -fsS URL | FILE) | fw-unseal | fw-unpack ; fw-verify ; fw-fixate
//!
//! Adjacent stages share OS pipes (no byte passes through this program);
//! the first stage that fails is reported with its exit status and the
//! end of its stderr, the others are killed and reaped, and the exit code
//! is the failing stage's own (DESIGN.md's table).
//!
//! Usage: install [--bin DIR] --target T --keyring K FILE|URL
//! The fw binaries are taken from --bin, else from beside this example
//! (target/debug or target/release).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use fw_nbio::{Error, Failure, Process as P};

struct Args {
    bin: PathBuf,
    target: String,
    keyring: String,
    source: String,
}

fn parse_args() -> Result<Args, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    // target/debug/examples/install → target/debug
    let mut bin = exe
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let (mut target, mut keyring, mut source) = (None, None, None);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--bin" => bin = args.next().ok_or("--bin needs a directory")?.into(),
            "--target" => target = Some(args.next().ok_or("--target needs a directory")?),
            "--keyring" => keyring = Some(args.next().ok_or("--keyring needs a path")?),
            "-h" | "--help" => {
                return Err("usage: install [--bin DIR] --target T --keyring K FILE|URL".into())
            }
            _ if source.is_none() => source = Some(arg),
            _ => return Err(format!("unexpected argument {arg:?}")),
        }
    }
    Ok(Args {
        bin,
        target: target.ok_or("--target is required")?,
        keyring: keyring.ok_or("--keyring is required")?,
        source: source.ok_or("give a package FILE or URL")?,
    })
}

/// The exit code of the stage that failed first.
fn exit_code(err: &Error) -> u8 {
    match err.process().map(|p| &p.failure) {
        Some(Failure::Exit(code)) => u8::try_from(*code).unwrap_or(1),
        _ => 1,
    }
}

fn install(args: &Args) -> Result<String, Error> {
    // Exit 9: a stage's input ended before it began, because the stage before it
    // failed; that failure is the one to report.
    let tool = |name: &str| {
        P::new(args.bin.join(name))
            .capture_stderr()
            .no_input_exit([9])
    };
    let unseal = tool("fw-unseal").args(["-q", "--keyring", &args.keyring]);
    let unpack =
        tool("fw-unpack").args(["-q", "--keyring", &args.keyring, "--target", &args.target]);
    let is_url = ["http://", "https://"]
        .iter()
        .any(|p| args.source.starts_with(p));
    let stream = if is_url {
        P::argv(["curl", "-fsS", &args.source]).capture_stderr() | unseal | unpack
    } else {
        // The file becomes fw-unseal's stdin directly.
        unseal.from_file(&args.source) | unpack
    };
    let staged = stream.run_text()?.trim_end().to_string();
    let verified = tool("fw-verify")
        .args([
            "-q",
            "--keyring",
            &args.keyring,
            "--target",
            &args.target,
            &staged,
        ])
        .run_text();
    if let Err(err) = verified {
        // A refused tree must not stay in staging.
        if let Some(work) = Path::new(&staged).parent() {
            let _ = std::fs::remove_dir_all(work);
        }
        return Err(err);
    }
    let installed = tool("fw-fixate")
        .args(["-q", "--target", &args.target, &staged])
        .run_text()?;
    Ok(installed.trim_end().to_string())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("install: {message}");
            return ExitCode::from(2);
        }
    };
    match install(&args) {
        Ok(path) => {
            println!("{path}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("install: error: {err}");
            ExitCode::from(exit_code(&err))
        }
    }
}
