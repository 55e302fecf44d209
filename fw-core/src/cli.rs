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
