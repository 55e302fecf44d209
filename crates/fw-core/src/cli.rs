//! What every fw binary's command line shares.

use std::io::BufRead;
use std::path::PathBuf;

use crate::error::{Error, Result};

/// `-q`/`-v`: less or more on stderr.
#[derive(clap::Args, Debug, Clone, Copy, Default)]
pub struct Verbosity {
    /// Say less on stderr (errors only).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub quiet: u8,
    /// Say more on stderr.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

impl Verbosity {
    pub fn apply(self) {
        crate::log::set_verbosity(self.verbose, self.quiet);
    }
}

/// The PATH argument, or else one line read from stdin (as the previous
/// stage of a pipeline prints it). `previous` names that stage for the
/// error message.
pub fn path_or_stdin_line(arg: Option<PathBuf>, previous: &str) -> Result<PathBuf> {
    if let Some(path) = arg {
        return Ok(path);
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| Error::io("stdin", e))?;
    let line = line.trim_end_matches(['\n', '\r']);
    if line.is_empty() {
        return Err(Error::usage(format!(
            "no PATH: give it as an argument or as one line on stdin (from {previous})"
        )));
    }
    Ok(PathBuf::from(line))
}

/// Prints a path as one line on stdout for the next stage. A failed write
/// (a full disk, a closed pipe) is an error, never a panic.
pub fn print_path(path: &std::path::Path) -> Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", path.display())
        .and_then(|()| stdout.flush())
        .map_err(|e| Error::io("stdout", e))
}
