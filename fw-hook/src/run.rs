//! Running a hook: each attempt through fw-nbio (its own process group, killed with it
//! on timeout or interruption, killed if we die), its output forwarded line by line
//! with a `[NAME] ` prefix, and exit 3 retried with fw-core's back-off.

use std::io::{self, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fw_core::retry::{self, Attempt, Backoff};
use fw_core::{detail, note, Error, Exit, Result};
use fw_nbio::{Failure, Pipe, Process, Sink};
use nix::sys::signal::SigSet;

use crate::{
    cannot_start, find_hook, resolve_env, version_dir, GivenEnv, HookEnv, HookName, Interrupt,
};

/// The exit status by which a hook asks to be run again later.
pub const RETRY_LATER: i32 = 3;

/// How hooks are run: per-attempt timeout and the retry policy for exit 3.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Kill the hook's process group after this long; `None`: never.
    pub timeout: Option<Duration>,
    /// How many times to run the hook again after it exits 3.
    pub retries: u32,
    /// The delay before the first retry; it doubles for each further one, at most an
    /// hour, ±20% ([`Backoff::not_now`]).
    pub retry_interval: Duration,
    /// The signal mask the hook starts with; `None`: the calling thread's.
    /// A caller that blocks signals to wait for them (SIGTERM, ...) sets this
    /// to its mask from before, or the hook would start with them blocked
    /// and never die of them: neither std nor fw-nbio resets the mask.
    pub signal_mask: Option<SigSet>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            timeout: Some(Duration::from_secs(300)),
            retries: 3,
            retry_interval: Duration::from_secs(5),
            signal_mask: None,
        }
    }
}

/// What running a hook came to, when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The version has no such hook: nothing to do.
    Missing,
    /// The hook exited 0 on this attempt (1 for the first).
    Succeeded { attempts: u32 },
}

/// One hook run: which hook, for which version, on which target.
#[derive(Debug, Clone)]
pub struct Request {
    pub name: HookName,
    /// The version's directory, as given (made absolute here).
    pub version: PathBuf,
    pub target: PathBuf,
    pub given: GivenEnv,
    pub settings: Settings,
}

/// Where the hook's lines go, shared by its attempts.
type Out = Arc<Mutex<Box<dyn Write + Send>>>;

/// Runs the hook `req.name` of version `req.version`, forwarding its output
/// line by line to `out` with a `[NAME] ` prefix, retrying while it exits 3.
///
/// Errors: exit 2 for a bad `PATH` or `FW_DIRECTION`; exit 3 if the hook
/// still asks to retry later when the retries are used up; exit 1 for any
/// other failure (the hook cannot run, exits non-zero, is killed by a
/// signal, times out, or we are interrupted).
pub fn run(req: &Request, interrupt: &Interrupt, out: Box<dyn Write + Send>) -> Result<Outcome> {
    let version = version_dir(&req.version)?;
    let Some(hook) = find_hook(&version, req.name)? else {
        detail!(
            "{} has no {} hook ({}): nothing to do",
            version.display(),
            req.name,
            version.join(req.name.file_name()).display()
        );
        return Ok(Outcome::Missing);
    };
    let env = resolve_env(&req.target, &version, &req.given)?;
    detail!(
        "running {} with FW_FROM={:?} FW_TO={:?} FW_DIRECTION={}",
        hook.display(),
        env.from,
        env.to,
        env.direction
    );
    let out: Out = Arc::new(Mutex::new(out));
    let attempts = req.settings.retries.saturating_add(1);
    let done = retry::until_done(
        req.settings.retries,
        Backoff::not_now(req.settings.retry_interval),
        |attempt| run_once(req, &hook, &version, &env, attempt, interrupt, &out),
        |attempt, delay| {
            note!(
                "{} asked to retry later (exit {RETRY_LATER}) on attempt {attempt} of {attempts}; \
                 retrying in {:.2}s",
                hook.display(),
                delay.as_secs_f64()
            );
            interrupt
                .sleep(delay)
                .map_err(|signal| interrupted(&hook, signal, false))
        },
    )?;
    match done {
        Some(attempt) => {
            detail!("{} succeeded on attempt {attempt}", hook.display());
            Ok(Outcome::Succeeded { attempts: attempt })
        }
        None => Err(Error::new(
            Exit::RetryLater,
            format!(
                "hook {} still asks to retry later (exit {RETRY_LATER}) after {attempts} \
                 attempt{}: run it again later, or allow more with --retries and \
                 --retry-interval",
                hook.display(),
                if attempts == 1 { "" } else { "s" }
            ),
        )),
    }
}

/// One attempt: `Done(attempt)` when the hook exited 0, `NotNow` when it exited 3.
fn run_once(
    req: &Request,
    hook: &Path,
    version: &Path,
    env: &HookEnv,
    attempt: u32,
    interrupt: &Interrupt,
    out: &Out,
) -> Result<Attempt<u32>> {
    let mut process = Process::new(hook)
        .arg(version)
        .current_dir(version)
        .env("FW_HOOK", req.name.as_str())
        .env("FW_ATTEMPT", attempt.to_string())
        .env("FW_FROM", &env.from)
        .env("FW_TO", &env.to)
        .env("FW_DIRECTION", env.direction.as_str())
        .merge_stderr()
        .die_with_parent()
        .name(hook.display().to_string());
    if let Some(timeout) = req.settings.timeout {
        process = process.timeout(timeout);
    }
    if let Some(mask) = req.settings.signal_mask {
        // SAFETY: between fork and exec only pthread_sigmask runs, which is
        // async-signal-safe, on a mask copied in before the fork.
        unsafe {
            process
                .command_mut()
                .pre_exec(move || mask.thread_set_mask().map_err(io::Error::from));
        }
    }
    let mut pipe = Pipe::from(process).sink(prefixed_lines(req.name, out.clone()));
    interrupt
        .arm(pipe.killer())
        .map_err(|signal| interrupted(hook, signal, false))?;
    // The hook's exit status is an answer (3: not now), not an error of the pipe.
    let result = pipe.run_unchecked();
    interrupt.disarm();
    let what = format!("hook {}", hook.display());
    let failure = match result {
        Ok(output) => match output.failure {
            None => return Ok(Attempt::Done(attempt)),
            Some(failed) => failed.failure,
        },
        Err(fw_nbio::Error::Spawn { error, .. }) => return Err(cannot_start(hook, error)),
        Err(fw_nbio::Error::Killed) => {
            return Err(interrupted(hook, interrupt.signal().unwrap_or(0), true))
        }
        Err(other) => return Err(Error::failed(format!("{what}: {other}"))),
    };
    Err(Error::failed(match &failure {
        Failure::Exit(RETRY_LATER) => return Ok(Attempt::NotNow),
        Failure::Exit(code) => format!(
            "{what} failed with exit status {code}: see its output above \
             (lines starting [{}]) and fix what it reports",
            req.name
        ),
        Failure::Signal(_) => format!(
            "{what} {}: see its output above (lines starting [{}]) \
             and find out what killed it",
            failure, req.name
        ),
        Failure::TimedOut(after) => format!(
            "{what} timed out after {}s and was killed with its process group: \
             make it finish sooner, or allow more time with --timeout",
            after.as_secs_f64()
        ),
    }))
}

/// The hook's output on its way to `out`: each line written as `[NAME] line` as soon
/// as it is complete (a last one without `\n` too, also when the hook fails: it is
/// often the message it died with).
fn prefixed_lines(name: HookName, out: Out) -> Sink {
    let prefix = format!("[{name}] ").into_bytes();
    Sink::lines(move |line| {
        let mut buf = Vec::with_capacity(prefix.len() + line.len() + 1);
        buf.extend_from_slice(&prefix);
        buf.extend_from_slice(line);
        buf.push(b'\n');
        // One write per line, so lines from other writers to the same stderr do not
        // cut into ours. A stderr nobody reads is no reason to fail.
        let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
        let _ = out.write_all(&buf).and_then(|()| out.flush());
    })
}

fn interrupted(hook: &Path, signal: i32, was_running: bool) -> Error {
    let signal = nix::sys::signal::Signal::try_from(signal)
        .map(|s| s.as_str().to_owned())
        .unwrap_or_else(|_| format!("signal {signal}"));
    let killed = if was_running {
        "; the hook was killed with its process group"
    } else {
        ""
    };
    Error::failed(format!(
        "interrupted by {signal} while running hook {}{killed}: run fw-hook again \
         when the version is ready",
        hook.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{hook, request, run_captured, Captured};

    #[test]
    fn a_missing_hook_is_nothing_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let (result, out) = run_captured(&request(dir.path(), HookName::PreInstall));
        assert_eq!(result.unwrap(), Outcome::Missing);
        assert_eq!(out, "");
    }

    #[test]
    fn output_is_prefixed_and_a_partial_last_line_kept_even_on_failure() {
        let dir = tempfile::tempdir().unwrap();
        hook(
            dir.path(),
            HookName::PreInstall,
            "echo one; echo two >&2; printf 'no newline'; exit 7",
        );
        let (result, out) = run_captured(&request(dir.path(), HookName::PreInstall));
        let err = result.unwrap_err();
        assert_eq!(err.code, Exit::Failed);
        assert!(err.message.contains("exit status 7"), "{}", err.message);
        assert_eq!(
            out,
            "[pre-install] one\n[pre-install] two\n[pre-install] no newline\n"
        );
    }

    #[test]
    fn sigpipe_is_a_failure_too() {
        let dir = tempfile::tempdir().unwrap();
        hook(
            dir.path(),
            HookName::PostInstall,
            "echo before; kill -PIPE $$",
        );
        let (result, out) = run_captured(&request(dir.path(), HookName::PostInstall));
        let err = result.unwrap_err();
        assert!(err.message.contains("SIGPIPE"), "{}", err.message);
        assert_eq!(out, "[post-install] before\n");
    }

    #[test]
    fn long_lines_are_passed_on_in_pieces() {
        let dir = tempfile::tempdir().unwrap();
        hook(
            dir.path(),
            HookName::PreInstall,
            "head -c 200000 /dev/zero | tr '\\0' x; echo; echo end",
        );
        let (result, out) = run_captured(&request(dir.path(), HookName::PreInstall));
        result.unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines.len() >= 4, "{}", lines.len());
        assert_eq!(lines.last(), Some(&"[pre-install] end"));
        let xs: usize = lines.iter().map(|l| l.matches('x').count()).sum();
        assert_eq!(xs, 200000);
        assert!(lines.iter().all(|l| l.starts_with("[pre-install] ")));
    }

    #[test]
    fn exit_3_is_retried_then_given_up() {
        let dir = tempfile::tempdir().unwrap();
        hook(
            dir.path(),
            HookName::HealthCheck,
            "echo \"try $FW_ATTEMPT\"; exit 3",
        );
        let mut req = request(dir.path(), HookName::HealthCheck);
        req.settings.retries = 2;
        let (result, out) = run_captured(&req);
        let err = result.unwrap_err();
        assert_eq!(err.code, Exit::RetryLater);
        assert!(err.message.contains("3 attempts"), "{}", err.message);
        assert_eq!(
            out,
            "[health-check] try 1\n[health-check] try 2\n[health-check] try 3\n"
        );

        hook(
            dir.path(),
            HookName::HealthCheck,
            "[ \"$FW_ATTEMPT\" -ge 2 ] || exit 3",
        );
        let (result, _) = run_captured(&req);
        assert_eq!(result.unwrap(), Outcome::Succeeded { attempts: 2 });
    }

    #[test]
    fn interrupted_before_start_runs_nothing() {
        let dir = tempfile::tempdir().unwrap();
        hook(dir.path(), HookName::PreInstall, "echo ran");
        let interrupt = Interrupt::new();
        interrupt.trigger(libc_sigterm());
        let out = Captured::default();
        let err = run(
            &request(dir.path(), HookName::PreInstall),
            &interrupt,
            Box::new(out.clone()),
        )
        .unwrap_err();
        assert!(err.message.contains("SIGTERM"), "{}", err.message);
        assert_eq!(out.text(), "");
    }

    #[test]
    fn interrupt_kills_a_running_hook() {
        let dir = tempfile::tempdir().unwrap();
        hook(
            dir.path(),
            HookName::PreInstall,
            "echo started; exec sleep 1000",
        );
        let interrupt = std::sync::Arc::new(Interrupt::new());
        let req = request(dir.path(), HookName::PreInstall);
        // The hook's first line tells us it runs; then interrupt it.
        let (tx, rx) = std::sync::mpsc::channel();
        struct Lines(std::sync::mpsc::Sender<Vec<u8>>);
        impl Write for Lines {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                let _ = self.0.send(buf.to_vec());
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let runner = {
            let interrupt = interrupt.clone();
            std::thread::spawn(move || run(&req, &interrupt, Box::new(Lines(tx))))
        };
        assert_eq!(rx.recv().unwrap(), b"[pre-install] started\n");
        interrupt.trigger(libc_sigterm());
        let err = runner.join().unwrap().unwrap_err();
        assert!(
            err.message.contains("SIGTERM") && err.message.contains("killed"),
            "{}",
            err.message
        );
    }

    fn libc_sigterm() -> i32 {
        nix::sys::signal::Signal::SIGTERM as i32
    }
}
