//! What every fw binary's command line shares: parsing (usage errors in
//! the chosen log format), -q/-v, where the target is, and the checks of
//! stdin and stdout that turn a person's slip into one line saying what to
//! do.

use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};

use crate::error::{Error, Exit, Result};

/// Parses the command line of `C`. A usage error exits 2 as clap reports
/// it, or, when logs are JSON (`--log-format json` among the arguments, or
/// `FW_LOG_FORMAT=json`), as one JSON error line like every other error.
pub fn parse<C: clap::Parser>() -> C {
    let err = match C::try_parse() {
        Ok(cli) => return cli,
        Err(err) => err,
    };
    use clap::error::ErrorKind;
    let json = log_format_in_args(std::env::args()).unwrap_or_else(crate::log::Format::from_env)
        == crate::log::Format::Json;
    if !json
        || matches!(
            err.kind(),
            ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
        )
    {
        err.exit();
    }
    crate::log::set_format(crate::log::Format::Json);
    let text = err.render().to_string();
    let first = text.lines().next().unwrap_or_default();
    let message = format!(
        "{} (see {} --help)",
        first.strip_prefix("error: ").unwrap_or(first),
        C::command().get_name()
    );
    crate::log::Record::new(crate::log::Level::Error, "error")
        .field("code", Exit::Usage.code())
        .field("exit", Exit::Usage.name())
        .emit(C::command().get_name(), &message);
    std::process::exit(Exit::Usage.code().into());
}

/// `--log-format F` or `--log-format=F` among `args`, when F is valid.
fn log_format_in_args(args: impl Iterator<Item = String>) -> Option<crate::log::Format> {
    use clap::ValueEnum;
    let mut args = args.skip(1);
    let mut found = None;
    while let Some(arg) = args.next() {
        let value = match arg.strip_prefix("--log-format") {
            Some("") => args.next(),
            Some(rest) => rest.strip_prefix('=').map(str::to_string),
            None => continue,
        };
        if let Some(format) = value.and_then(|v| crate::log::Format::from_str(&v, false).ok()) {
            found = Some(format);
        }
    }
    found
}

/// `-q`/`-v`: less or more on stderr.
#[derive(clap::Args, Debug, Clone, Copy, Default)]
pub struct Verbosity {
    /// Say less on stderr (errors only).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub quiet: u8,
    /// Say more on stderr.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// How messages on stderr look: human one-liners, or one JSON object
    /// per line [default: $FW_LOG_FORMAT, else human].
    #[arg(long, global = true, value_name = "FORMAT", value_enum)]
    pub log_format: Option<crate::log::Format>,
}

impl Verbosity {
    pub fn apply(self) {
        crate::log::configure(self.verbose, self.quiet, self.log_format);
    }
}

/// The PATH argument, or else one line read from stdin (as the previous
/// stage of a pipeline prints it). `previous` names that stage for the
/// error message. A terminal on stdin is refused rather than waited on;
/// a pipe that ends without a line means `previous` failed (exit 9, quiet).
pub fn path_or_stdin_line(arg: Option<PathBuf>, previous: &str) -> Result<PathBuf> {
    if let Some(path) = arg {
        return Ok(path);
    }
    refuse_terminal_stdin(&format!(
        "give PATH as an argument, or pipe {previous}'s output in"
    ))?;
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| Error::io("stdin", e))?;
    let line = line.trim_end_matches(['\n', '\r']);
    if line.is_empty() {
        return Err(no_input(
            previous,
            Error::usage(format!(
                "no PATH: give it as an argument or as one line on stdin (from {previous})"
            )),
        ));
    }
    Ok(PathBuf::from(line))
}

/// True if stdin is a pipe or a socket: the output of another process.
pub fn stdin_is_pipe() -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata("/proc/self/fd/0")
        .map(|m| m.file_type().is_fifo() || m.file_type().is_socket())
        .unwrap_or(false)
}

/// The error for stdin that ended before its first byte or line. From a
/// pipe, the stage before (`previous`) failed and has said why: exit 9,
/// reported only with -v, so that one failure makes one line. Otherwise
/// (an empty file, /dev/null) it is `otherwise`.
pub fn no_input(previous: &str, otherwise: Error) -> Error {
    if stdin_is_pipe() {
        Error::no_input(format!(
            "no input: {previous} (the stage before) ended without output; its own message \
             says why"
        ))
    } else {
        otherwise
    }
}

/// Refuses a terminal on stdin: a person would wait for input that never
/// comes. `what_to_do` completes the message.
pub fn refuse_terminal_stdin(what_to_do: &str) -> Result<()> {
    if std::io::stdin().is_terminal() {
        return Err(Error::usage(format!("stdin is a terminal: {what_to_do}")));
    }
    Ok(())
}

/// Refuses a terminal on stdout for binary output, which would garble it.
pub fn refuse_terminal_stdout(what_to_do: &str) -> Result<()> {
    if std::io::stdout().is_terminal() {
        return Err(Error::usage(format!("stdout is a terminal: {what_to_do}")));
    }
    Ok(())
}

/// The first bytes of `input`, left unread (up to `n`); empty once the
/// input has ended.
pub fn peek<R: BufRead>(input: &mut R, n: usize) -> Result<Vec<u8>> {
    loop {
        match input.fill_buf() {
            Ok(buf) => return Ok(buf[..buf.len().min(n)].to_vec()),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io("stdin", e)),
        }
    }
}

/// A path the user named must exist: the same error and exit code (1) in
/// every tool when it does not.
pub fn existing(path: &Path) -> Result<&Path> {
    match std::fs::symlink_metadata(path) {
        Ok(_) => Ok(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::failed(format!(
            "{}: no such file or directory",
            path.display()
        ))),
        Err(e) => Err(Error::io(path.display(), e)),
    }
}

/// The target a tool writes to, as [`crate::target::resolve`] finds it.
/// On the default target, a user who is not root and cannot write it is
/// told what to do instead of meeting "Permission denied" halfway.
pub fn target_to_write(arg: Option<&Path>) -> Result<PathBuf> {
    let path = crate::target::resolve(arg);
    if path != Path::new(crate::target::DEFAULT_TARGET) || nix::unistd::geteuid().is_root() {
        return Ok(path);
    }
    if nix::unistd::access(&path, nix::unistd::AccessFlags::W_OK).is_err() {
        return Err(Error::failed(format!(
            "{} (the default target) is not writable by this user: run as root, or use \
             --target DIR / FW_TARGET",
            path.display()
        )));
    }
    Ok(path)
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

/// Parses a duration: `90`, `90s`, `50ms`, `15m`, `1h`, `7d`, `1w`, or
/// sums like `24h0m0s` (Go's notation, as Connhex writes it).
pub fn parse_duration(text: &str) -> std::result::Result<std::time::Duration, String> {
    let text = text.trim();
    let bad = || {
        format!(
            "{text:?} is not a duration: write e.g. 30s, 15m, 1h, 7d or 24h0m0s (no unit: seconds)"
        )
    };
    if text.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = text.parse::<f64>() {
        return std::time::Duration::try_from_secs_f64(secs).map_err(|_| bad());
    }
    let mut total = 0f64;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let number: f64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            "w" => 604800.0,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total += number * scale;
    }
    std::time::Duration::try_from_secs_f64(total).map_err(|_| bad())
}

/// Makes the allocator give buffers of 128 KiB and more back to the system
/// when they are freed. glibc otherwise raises that threshold after the
/// first such free and keeps later megabyte buffers (gzip members handed
/// between threads) in its heaps: +20 MiB of peak memory in fw-sign. The
/// price is a page fault per page of every such buffer: fw-unpack, which
/// stays under 32 MiB without it, does not pay it.
pub fn return_large_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a tunable of the allocator.
    unsafe {
        nix::libc::mallopt(nix::libc::M_MMAP_THRESHOLD, 128 << 10);
    }
}

/// The pipe buffer fw's stages ask for between them: 64 KiB (Linux's
/// default) makes a producer and a consumer with bursty work take turns on
/// two cores instead of running side by side.
pub const PIPE_BUFFER: usize = 1 << 20;

/// Grows the pipe behind `fd` (stdin or stdout) to [`PIPE_BUFFER`], or as
/// far as `/proc/sys/fs/pipe-max-size` allows. Not a pipe, or refused: left
/// as it is, since this only affects speed.
pub fn grow_pipe(fd: std::os::fd::BorrowedFd<'_>) {
    use nix::fcntl::{fcntl, FcntlArg};
    let is_fifo = nix::sys::stat::fstat(fd)
        .map(|st| st.st_mode & nix::libc::S_IFMT == nix::libc::S_IFIFO)
        .unwrap_or(false);
    if !is_fifo {
        return;
    }
    let max = std::fs::read_to_string("/proc/sys/fs/pipe-max-size")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .unwrap_or(PIPE_BUFFER);
    let _ = fcntl(
        fd,
        FcntlArg::F_SETPIPE_SZ(PIPE_BUFFER.min(max) as nix::libc::c_int),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_log_format_is_found_among_the_arguments() {
        let args = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let found = |list: &[&str]| log_format_in_args(args(list).into_iter());
        use crate::log::Format;
        assert_eq!(found(&["t", "--log-format", "json"]), Some(Format::Json));
        assert_eq!(found(&["t", "x", "--log-format=json"]), Some(Format::Json));
        assert_eq!(found(&["t", "--log-format=human"]), Some(Format::Human));
        assert_eq!(found(&["t", "--log-format"]), None);
        assert_eq!(found(&["t", "--log-format", "xml"]), None);
    }

    #[test]
    fn durations_parse_like_go_and_connhex() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(
            parse_duration("24h0m0s").unwrap(),
            Duration::from_secs(86400)
        );
        assert_eq!(parse_duration("50ms").unwrap(), Duration::from_millis(50));
        assert!(parse_duration("1y").is_err());
        assert!(parse_duration("m").is_err());
    }
}
