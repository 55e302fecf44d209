//! fw-hook: runs one hook of a firmware version (`PATH/.pre-install`,
//! `PATH/.post-install` or `PATH/.health-check`) the way DESIGN.md says:
//! `$1` is the version's absolute path, the working directory is that path,
//! `FW_HOOK`, `FW_FROM`, `FW_TO`, `FW_DIRECTION` and `FW_ATTEMPT` are in its
//! environment, its output is forwarded line by line to our stderr with a
//! `[NAME] ` prefix, exit 3 means "not now, retry later" (retried with
//! doubling, jittered back-off), and a timeout kills its whole process group.
//!
//! The hook runs through [`fw_nbio`], which starts it in a process group of
//! its own and kills that group on timeout or interruption.

pub mod cli;

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use fw_core::manifest::{Manifest, MANIFEST_PATH};
use fw_core::{detail, note, Error, ExitCode, Result};
use fw_nbio::{Failure, Killer, Pipe, Process, Sink};
use nix::sys::signal::SigSet;

/// The exit status by which a hook asks to be run again later.
pub const RETRY_LATER: i32 = 3;

/// Back-off delays never grow past this (unless `--retry-interval` itself is larger).
pub const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// The hooks a version may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum HookName {
    /// PATH/.pre-install: before the current link moves to the version.
    PreInstall,
    /// PATH/.post-install: after the current link moved to the version.
    PostInstall,
    /// PATH/.health-check: after post-install; its failure rolls back.
    HealthCheck,
}

impl HookName {
    pub const ALL: [HookName; 3] = [
        HookName::PreInstall,
        HookName::PostInstall,
        HookName::HealthCheck,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            HookName::PreInstall => "pre-install",
            HookName::PostInstall => "post-install",
            HookName::HealthCheck => "health-check",
        }
    }

    /// The hook's file name inside a version's directory, e.g. `.pre-install`.
    pub fn file_name(self) -> String {
        format!(".{}", self.as_str())
    }

    /// Parses a hook name; anything else is a usage error (exit 2).
    pub fn parse(name: &str) -> Result<HookName> {
        HookName::ALL
            .into_iter()
            .find(|h| h.as_str() == name)
            .ok_or_else(|| {
                Error::usage(format!(
                    "{name:?} is not a hook name: use pre-install, post-install or health-check"
                ))
            })
    }
}

impl fmt::Display for HookName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `FW_DIRECTION`: how the version a hook runs for relates to the one it replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Upgrade,
    Downgrade,
    Reinstall,
    Rollback,
}

impl Direction {
    pub const ALL: [Direction; 4] = [
        Direction::Upgrade,
        Direction::Downgrade,
        Direction::Reinstall,
        Direction::Rollback,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Upgrade => "upgrade",
            Direction::Downgrade => "downgrade",
            Direction::Reinstall => "reinstall",
            Direction::Rollback => "rollback",
        }
    }

    /// Parses an `FW_DIRECTION` value; anything else is a usage error (exit 2).
    pub fn parse(value: &str) -> Result<Direction> {
        Direction::ALL
            .into_iter()
            .find(|d| d.as_str() == value)
            .ok_or_else(|| {
                Error::usage(format!(
                    "FW_DIRECTION={value:?} is not a direction: set it to upgrade, downgrade, \
                     reinstall or rollback, or unset it to let fw-hook work it out"
                ))
            })
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the caller put in our environment for the hook; `None` when unset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GivenEnv {
    /// `FW_FROM`; set but empty means "there is no previous version".
    pub from: Option<OsString>,
    /// `FW_TO`; empty counts as unset.
    pub to: Option<OsString>,
    /// `FW_DIRECTION`; empty counts as unset.
    pub direction: Option<OsString>,
}

impl GivenEnv {
    /// Reads `FW_FROM`, `FW_TO` and `FW_DIRECTION` from our own environment.
    pub fn from_process_env() -> GivenEnv {
        let non_empty = |key: &str| std::env::var_os(key).filter(|v| !v.is_empty());
        GivenEnv {
            from: std::env::var_os("FW_FROM"),
            to: non_empty("FW_TO"),
            direction: non_empty("FW_DIRECTION"),
        }
    }
}

/// The environment the hook gets (besides `FW_HOOK` and `FW_ATTEMPT`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookEnv {
    pub from: OsString,
    pub to: OsString,
    pub direction: Direction,
}

/// Fills in what the caller did not give: `FW_TO` is `version`; `FW_FROM` is
/// where `TARGET/current` resolves to (empty if there is no such link);
/// `FW_DIRECTION` comes from [`default_direction`].
pub fn resolve_env(target: &Path, version: &Path, given: &GivenEnv) -> Result<HookEnv> {
    let to = given
        .to
        .clone()
        .unwrap_or_else(|| version.as_os_str().to_owned());
    let from = match &given.from {
        Some(from) => from.clone(),
        None => current_version(target)
            .map(PathBuf::into_os_string)
            .unwrap_or_default(),
    };
    let direction = match &given.direction {
        Some(value) => Direction::parse(&value.to_string_lossy())?,
        None => {
            let from = (!from.is_empty()).then(|| Path::new(&from));
            default_direction(from, Path::new(&to))
        }
    };
    Ok(HookEnv {
        from,
        to,
        direction,
    })
}

/// Where `TARGET/current` resolves to, if it exists.
pub fn current_version(target: &Path) -> Option<PathBuf> {
    let link = target.join("current");
    if std::fs::symlink_metadata(&link).is_err() {
        detail!("{} does not exist: FW_FROM is empty", link.display());
        return None;
    }
    match std::fs::canonicalize(&link) {
        Ok(path) => Some(path),
        Err(e) => {
            note!(
                "{} does not resolve ({e}): FW_FROM is empty; `fw-switch status` shows the target's links",
                link.display()
            );
            None
        }
    }
}

/// The direction from version `from` (none: a first install) to `to`:
/// `reinstall` when they are the same directory, else `upgrade` or
/// `downgrade` by their manifests (the higher `security_version` wins, then
/// the later `created`; equal on both counts is a `reinstall` when name and
/// version string match too, else an `upgrade`), `upgrade` when there is
/// no `from` or a manifest cannot be read.
pub fn default_direction(from: Option<&Path>, to: &Path) -> Direction {
    let Some(from) = from else {
        return Direction::Upgrade;
    };
    if same_dir(from, to) {
        return Direction::Reinstall;
    }
    match (read_manifest(from), read_manifest(to)) {
        (Ok(old), Ok(new)) => compare_versions(&old, &new),
        (Err(e), _) | (_, Err(e)) => {
            note!(
                "cannot compare {} with {}: {}; FW_DIRECTION defaults to upgrade \
                 (set FW_DIRECTION to override)",
                from.display(),
                to.display(),
                e.message
            );
            Direction::Upgrade
        }
    }
}

/// Going from `old` to `new`: by `security_version`, then by `created`.
pub fn compare_versions(old: &Manifest, new: &Manifest) -> Direction {
    let key = |m: &Manifest| (m.security_version, m.created);
    match key(new).cmp(&key(old)) {
        std::cmp::Ordering::Greater => Direction::Upgrade,
        std::cmp::Ordering::Less => Direction::Downgrade,
        std::cmp::Ordering::Equal if new.name == old.name && new.version == old.version => {
            Direction::Reinstall
        }
        // Packed in the same second with the same security_version.
        std::cmp::Ordering::Equal => Direction::Upgrade,
    }
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// A version's manifest, `DIR/.fw/manifest.json`.
pub fn read_manifest(dir: &Path) -> Result<Manifest> {
    let path = dir.join(MANIFEST_PATH);
    let json = std::fs::read(&path).map_err(|e| Error::io(path.display(), e))?;
    Manifest::from_json(&json).map_err(|e| e.context(dir.display()))
}

/// How hooks are run: per-attempt timeout and the retry policy for exit 3.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Kill the hook's process group after this long; `None`: never.
    pub timeout: Option<Duration>,
    /// How many times to run the hook again after it exits 3.
    pub retries: u32,
    /// The delay before the first retry; it doubles for each further one.
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

/// Parses a number of seconds (`0.5`, `300`); `zero_means_none` makes `0` mean "never".
pub fn parse_seconds(value: &str) -> std::result::Result<Duration, String> {
    let secs: f64 = value
        .trim()
        .parse()
        .map_err(|_| format!("{value:?} is not a number of seconds (e.g. 5 or 0.5)"))?;
    Duration::try_from_secs_f64(secs)
        .map_err(|_| format!("{value:?} is not a usable number of seconds: give 0 or more"))
}

/// The delay before retry number `retry` (0 for the first): `interval`
/// doubled `retry` times, capped at [`MAX_BACKOFF`] (or `interval` if that
/// is larger), then scaled by `jitter`, a factor in `[0.8, 1.2]`.
pub fn backoff(interval: Duration, retry: u32, jitter: f64) -> Duration {
    let cap = MAX_BACKOFF.max(interval).as_secs_f64();
    let doubled = (interval.as_secs_f64() * 2f64.powi(retry.min(64) as i32)).min(cap);
    Duration::try_from_secs_f64(doubled * jitter.clamp(0.8, 1.2)).unwrap_or(MAX_BACKOFF)
}

/// A random factor in `[0.8, 1.2]`, so that many devices told to retry
/// later do not all come back at the same instant.
pub fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    let unit = (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64;
    0.8 + 0.4 * unit
}

/// Stops a hook run from another thread (a signal handler's thread): kills
/// the running hook's process group, or cuts a back-off sleep short.
#[derive(Debug, Default)]
pub struct Interrupt {
    state: Mutex<InterruptState>,
    wake: Condvar,
}

#[derive(Debug, Default)]
struct InterruptState {
    signal: Option<i32>,
    killer: Option<Killer>,
}

impl Interrupt {
    pub fn new() -> Self {
        Self::default()
    }

    /// Interrupts the run because of `signal`: the hook (if running) is killed
    /// with its process group and no further attempt is made.
    pub fn trigger(&self, signal: i32) {
        let mut state = self.lock();
        state.signal.get_or_insert(signal);
        if let Some(killer) = &state.killer {
            killer.kill();
        }
        self.wake.notify_all();
    }

    /// The signal that interrupted the run, if any.
    pub fn signal(&self) -> Option<i32> {
        self.lock().signal
    }

    fn lock(&self) -> MutexGuard<'_, InterruptState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers the killer of the attempt about to start, unless already interrupted.
    fn arm(&self, killer: Killer) -> std::result::Result<(), i32> {
        let mut state = self.lock();
        if let Some(signal) = state.signal {
            return Err(signal);
        }
        state.killer = Some(killer);
        Ok(())
    }

    fn disarm(&self) {
        self.lock().killer = None;
    }

    /// Sleeps for `delay` unless interrupted first.
    fn sleep(&self, delay: Duration) -> std::result::Result<(), i32> {
        let state = self.lock();
        let (state, _) = self
            .wake
            .wait_timeout_while(state, delay, |s| s.signal.is_none())
            .unwrap_or_else(|e| e.into_inner());
        match state.signal {
            Some(signal) => Err(signal),
            None => Ok(()),
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

/// The version directory `path`, absolute and checked to be a directory.
pub fn version_dir(path: &Path) -> Result<PathBuf> {
    let abs = std::fs::canonicalize(path).map_err(|e| {
        Error::usage(format!(
            "{}: {e}: give the version's directory (e.g. /opt/firmware/NAME)",
            path.display()
        ))
    })?;
    if !abs.is_dir() {
        return Err(Error::usage(format!(
            "{} is not a directory: give the version's directory (e.g. /opt/firmware/NAME)",
            path.display()
        )));
    }
    Ok(abs)
}

/// The hook `version/.NAME` if there is one; an error if it is there but
/// cannot be run (not a regular file, not executable, a dangling link).
pub fn find_hook(version: &Path, name: HookName) -> Result<Option<PathBuf>> {
    let hook = version.join(name.file_name());
    match std::fs::symlink_metadata(&hook) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("hook {}", hook.display()), e)),
        Ok(_) => {}
    }
    let meta = std::fs::metadata(&hook).map_err(|e| {
        Error::failed(format!(
            "hook {} is a link that does not resolve ({e}): point it at an executable \
             file in the version, or remove it",
            hook.display()
        ))
    })?;
    if !meta.is_file() {
        return Err(Error::failed(format!(
            "hook {} is not a regular file: a hook must be an executable file \
             (a script with a #! line, or a program); replace or remove it",
            hook.display()
        )));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(Error::failed(format!(
            "hook {} is not executable: make it so in the source tree \
             (chmod 755 {}) and repack the version, or remove it",
            hook.display(),
            name.file_name()
        )));
    }
    Ok(Some(hook))
}

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
    let lines = SharedLines::new(req.name, out);
    let attempts = req.settings.retries.saturating_add(1);
    for attempt in 1..=attempts {
        match run_once(req, &hook, &version, &env, attempt, interrupt, &lines)? {
            Attempt::Succeeded => {
                detail!("{} succeeded on attempt {attempt}", hook.display());
                return Ok(Outcome::Succeeded { attempts: attempt });
            }
            Attempt::RetryLater if attempt < attempts => {
                let delay = backoff(req.settings.retry_interval, attempt - 1, jitter());
                note!(
                    "{} asked to retry later (exit {RETRY_LATER}) on attempt {attempt} of {attempts}; \
                     retrying in {:.2}s",
                    hook.display(),
                    delay.as_secs_f64()
                );
                interrupt
                    .sleep(delay)
                    .map_err(|signal| interrupted(&hook, signal, false))?;
            }
            Attempt::RetryLater => {
                return Err(Error::new(
                    ExitCode::RetryLater,
                    format!(
                        "hook {} still asks to retry later (exit {RETRY_LATER}) after {attempts} \
                         attempt{}: run it again later, or allow more with --retries and \
                         --retry-interval",
                        hook.display(),
                        if attempts == 1 { "" } else { "s" }
                    ),
                ));
            }
        }
    }
    unreachable!("the last attempt returns")
}

enum Attempt {
    Succeeded,
    RetryLater,
}

fn run_once(
    req: &Request,
    hook: &Path,
    version: &Path,
    env: &HookEnv,
    attempt: u32,
    interrupt: &Interrupt,
    lines: &SharedLines,
) -> Result<Attempt> {
    let mut process = Process::new(hook)
        .arg(version)
        .current_dir(version)
        .env("FW_HOOK", req.name.as_str())
        .env("FW_ATTEMPT", attempt.to_string())
        .env("FW_FROM", &env.from)
        .env("FW_TO", &env.to)
        .env("FW_DIRECTION", env.direction.as_str())
        .merge_stderr()
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
    let mut pipe = Pipe::from(process);
    interrupt
        .arm(pipe.killer())
        .map_err(|signal| interrupted(hook, signal, false))?;
    let result = forward(pipe, lines);
    interrupt.disarm();
    let what = format!("hook {}", hook.display());
    let failure = match result {
        Ok(None) => return Ok(Attempt::Succeeded),
        Ok(Some(failure)) => failure,
        Err(fw_nbio::Error::Process(failed)) => failed.failure,
        Err(fw_nbio::Error::Spawn { error, .. }) => return Err(cannot_start(hook, error)),
        Err(fw_nbio::Error::Killed) => {
            return Err(interrupted(hook, interrupt.signal().unwrap_or(0), true))
        }
        Err(other) => return Err(Error::failed(format!("{what}: {other}"))),
    };
    Err(Error::failed(match &failure {
        Failure::Exit(RETRY_LATER) => return Ok(Attempt::RetryLater),
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

/// The hook's output on its way to our stderr: split into lines, each
/// written as `[NAME] line` as soon as it is complete.
///
/// It is the pipe's [`Sink::writer`] rather than an iteration of the
/// [`fw_nbio::Running`] with `by_line`: iterating gives no exit statuses,
/// and fw-nbio counts a last process killed by `SIGPIPE` as a success (it
/// takes it for a reader that stopped reading), which a hook must not get
/// away with; also, that iterator yields a final line without `\n` only
/// after the failure it ends with, where a caller stopping at the error
/// loses it, and it is often the message the hook died with.
struct LineWriter {
    prefix: Vec<u8>,
    partial: Vec<u8>,
    out: Box<dyn Write + Send>,
}

impl LineWriter {
    fn emit(&mut self, line: &[u8]) {
        let mut buf = Vec::with_capacity(self.prefix.len() + line.len() + 1);
        buf.extend_from_slice(&self.prefix);
        buf.extend_from_slice(line);
        buf.push(b'\n');
        // One write per line, so lines from other writers to the same stderr
        // do not cut into ours. A stderr nobody reads is no reason to fail.
        let _ = self.out.write_all(&buf).and_then(|()| self.out.flush());
    }

    fn feed(&mut self, mut chunk: &[u8]) {
        while let Some(nl) = chunk.iter().position(|&b| b == b'\n') {
            if self.partial.is_empty() {
                self.emit(&chunk[..nl]);
            } else {
                let mut line = std::mem::take(&mut self.partial);
                line.extend_from_slice(&chunk[..nl]);
                self.emit(&line);
            }
            chunk = &chunk[nl + 1..];
        }
        self.partial.extend_from_slice(chunk);
        // A line longer than this is passed on in pieces rather than held.
        if self.partial.len() >= MAX_LINE {
            self.finish();
        }
    }

    /// Passes on a last line that has no `\n`.
    fn finish(&mut self) {
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.emit(&line);
        }
    }
}

/// A [`LineWriter`] the pipe can own while we keep a hand on it.
#[derive(Clone)]
struct SharedLines(Arc<Mutex<LineWriter>>);

impl SharedLines {
    fn new(name: HookName, out: Box<dyn Write + Send>) -> Self {
        SharedLines(Arc::new(Mutex::new(LineWriter {
            prefix: format!("[{name}] ").into_bytes(),
            partial: Vec::new(),
            out,
        })))
    }

    fn lock(&self) -> MutexGuard<'_, LineWriter> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Write for SharedLines {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.lock().feed(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Runs `pipe` (the hook, its stderr merged into its stdout) to its end,
/// its output going to `lines`; a hook killed by `SIGPIPE` is a failure too.
fn forward(
    pipe: Pipe,
    lines: &SharedLines,
) -> std::result::Result<Option<Failure>, fw_nbio::Error> {
    let result = pipe.sink(Sink::writer(lines.clone())).run();
    lines.lock().finish();
    let output = result?;
    Ok(output
        .statuses
        .first()
        .and_then(|status| status.signal())
        .map(Failure::Signal))
}

/// The longest line held back waiting for its `\n`.
const MAX_LINE: usize = 64 * 1024;

fn cannot_start(hook: &Path, error: io::Error) -> Error {
    const ENOEXEC: i32 = 8;
    const EACCES: i32 = 13;
    const ENOENT: i32 = 2;
    let hint = match error.raw_os_error() {
        Some(ENOENT) => {
            let interpreter = shebang(hook)
                .map(|i| format!(" ({})", i.to_string_lossy()))
                .unwrap_or_default();
            format!(
                "its interpreter{interpreter} is not installed: fix the #! line or install \
                 the interpreter"
            )
        }
        Some(EACCES) => "permission denied: make it executable, and check that its file \
                         system is not mounted noexec"
            .to_owned(),
        Some(ENOEXEC) => "it is not a program the kernel can run: start a script with a #! \
                          line such as #!/bin/sh"
            .to_owned(),
        _ => "check the hook and the version's directory".to_owned(),
    };
    Error::failed(format!(
        "hook {} cannot be started: {error}; {hint}",
        hook.display()
    ))
}

/// The interpreter named on a script's `#!` line.
fn shebang(hook: &Path) -> Option<OsString> {
    let mut head = [0u8; 256];
    let n = io::Read::read(&mut std::fs::File::open(hook).ok()?, &mut head).ok()?;
    let line = head[..n].strip_prefix(b"#!")?;
    let line = &line[..line.iter().position(|&b| b == b'\n').unwrap_or(line.len())];
    let word = line
        .split(|b| b.is_ascii_whitespace())
        .find(|w| !w.is_empty())?;
    Some(OsStr::from_bytes(word).to_owned())
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
    use std::os::unix::fs::symlink;

    fn manifest(security_version: u64, created: u64) -> Manifest {
        Manifest {
            format: fw_core::manifest::FORMAT,
            name: "sample".into(),
            version: "1".into(),
            security_version,
            created,
            tool: "test".into(),
            gz_length: None,
            entries: Vec::new(),
        }
    }

    fn version(parent: &Path, name: &str, security_version: u64, created: u64) -> PathBuf {
        let dir = parent.join(name);
        std::fs::create_dir_all(dir.join(".fw")).unwrap();
        std::fs::write(
            dir.join(MANIFEST_PATH),
            manifest(security_version, created).to_json(),
        )
        .unwrap();
        dir
    }

    fn hook(dir: &Path, name: HookName, script: &str) -> PathBuf {
        let path = dir.join(name.file_name());
        std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn request(version: &Path, name: HookName) -> Request {
        Request {
            name,
            version: version.to_path_buf(),
            target: version.parent().unwrap().to_path_buf(),
            given: GivenEnv::default(),
            settings: Settings {
                timeout: Some(Duration::from_secs(30)),
                retries: 3,
                retry_interval: Duration::from_millis(1),
                signal_mask: None,
            },
        }
    }

    /// A writer whose bytes the test can read afterwards.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn run_captured(req: &Request) -> (Result<Outcome>, String) {
        let out = Captured::default();
        let result = run(req, &Interrupt::new(), Box::new(out.clone()));
        (result, out.text())
    }

    #[test]
    fn names_parse_and_refuse() {
        for name in HookName::ALL {
            assert_eq!(HookName::parse(name.as_str()).unwrap(), name);
        }
        assert_eq!(HookName::PreInstall.file_name(), ".pre-install");
        let err = HookName::parse("install").unwrap_err();
        assert_eq!(err.code, ExitCode::Usage);
        assert!(err.message.contains("pre-install"), "{}", err.message);
        assert_eq!(Direction::parse("rollback").unwrap(), Direction::Rollback);
        assert_eq!(
            Direction::parse("sideways").unwrap_err().code,
            ExitCode::Usage
        );
    }

    #[test]
    fn versions_compare_by_security_version_then_created() {
        let d = |a: (u64, u64), b: (u64, u64)| {
            compare_versions(&manifest(a.0, a.1), &manifest(b.0, b.1))
        };
        assert_eq!(d((1, 100), (2, 50)), Direction::Upgrade);
        assert_eq!(d((2, 50), (1, 100)), Direction::Downgrade);
        assert_eq!(d((1, 100), (1, 200)), Direction::Upgrade);
        assert_eq!(d((1, 200), (1, 100)), Direction::Downgrade);
        assert_eq!(d((1, 100), (1, 100)), Direction::Reinstall);
    }

    #[test]
    fn env_defaults_from_the_target() {
        let target = tempfile::tempdir().unwrap();
        let t = target.path().canonicalize().unwrap();
        let v1 = version(&t, "v1", 1, 100);
        let v2 = version(&t, "v2", 2, 100);
        let v0 = version(&t, "v0", 0, 900);

        // No current: no FROM, an upgrade.
        let env = resolve_env(&t, &v2, &GivenEnv::default()).unwrap();
        assert_eq!(env.from, OsString::new());
        assert_eq!(env.to, v2.as_os_str());
        assert_eq!(env.direction, Direction::Upgrade);

        symlink("v1", t.join("current")).unwrap();
        let env = resolve_env(&t, &v2, &GivenEnv::default()).unwrap();
        assert_eq!(env.from, v1.as_os_str());
        assert_eq!(env.direction, Direction::Upgrade);
        let env = resolve_env(&t, &v0, &GivenEnv::default()).unwrap();
        assert_eq!(env.direction, Direction::Downgrade);
        let env = resolve_env(&t, &v1, &GivenEnv::default()).unwrap();
        assert_eq!(env.direction, Direction::Reinstall);

        // What the caller gives passes through, and the rest follows from it.
        let given = GivenEnv {
            from: Some(v2.clone().into_os_string()),
            to: None,
            direction: None,
        };
        let env = resolve_env(&t, &v1, &given).unwrap();
        assert_eq!(env.from, v2.as_os_str());
        assert_eq!(env.direction, Direction::Downgrade);
        let given = GivenEnv {
            from: Some(OsString::new()),
            to: Some("/elsewhere".into()),
            direction: Some("rollback".into()),
        };
        let env = resolve_env(&t, &v1, &given).unwrap();
        assert_eq!(
            (env.from.as_os_str(), env.to.as_os_str(), env.direction),
            (
                OsStr::new(""),
                OsStr::new("/elsewhere"),
                Direction::Rollback
            )
        );

        // A current that does not resolve is no FROM.
        std::fs::remove_file(t.join("current")).unwrap();
        symlink("gone", t.join("current")).unwrap();
        assert_eq!(current_version(&t), None);
    }

    #[test]
    fn unreadable_manifest_defaults_to_upgrade() {
        let target = tempfile::tempdir().unwrap();
        let v1 = version(target.path(), "v1", 5, 100);
        let bare = target.path().join("bare");
        std::fs::create_dir(&bare).unwrap();
        assert_eq!(default_direction(Some(&v1), &bare), Direction::Upgrade);
        assert_eq!(default_direction(None, &bare), Direction::Upgrade);
    }

    #[test]
    fn backoff_doubles_with_bounded_jitter() {
        let i = Duration::from_secs(5);
        assert_eq!(backoff(i, 0, 1.0), Duration::from_secs(5));
        assert_eq!(backoff(i, 1, 1.0), Duration::from_secs(10));
        assert_eq!(backoff(i, 2, 1.0), Duration::from_secs(20));
        assert_eq!(backoff(i, 2, 0.8), Duration::from_secs(16));
        assert_eq!(backoff(i, 0, 5.0), Duration::from_secs(6));
        assert_eq!(backoff(i, 1000, 1.0), MAX_BACKOFF);
        assert_eq!(backoff(Duration::ZERO, 3, 1.0), Duration::ZERO);
        for _ in 0..100 {
            let j = jitter();
            assert!((0.8..=1.2).contains(&j), "{j}");
        }
    }

    #[test]
    fn seconds_parse() {
        assert_eq!(parse_seconds("0.5").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_seconds("300").unwrap(), Duration::from_secs(300));
        assert!(parse_seconds("-1").is_err());
        assert!(parse_seconds("inf").is_err());
        assert!(parse_seconds("NaN").is_err());
        assert!(parse_seconds("soon").is_err());
    }

    #[test]
    fn missing_and_unrunnable_hooks() {
        let dir = tempfile::tempdir().unwrap();
        let v = dir.path();
        assert_eq!(find_hook(v, HookName::PreInstall).unwrap(), None);
        let (result, out) = run_captured(&request(v, HookName::PreInstall));
        assert_eq!(result.unwrap(), Outcome::Missing);
        assert_eq!(out, "");

        let h = hook(v, HookName::PostInstall, "true");
        std::fs::set_permissions(&h, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = find_hook(v, HookName::PostInstall).unwrap_err();
        assert_eq!(err.code, ExitCode::Failed);
        assert!(err.message.contains("not executable"), "{}", err.message);

        std::fs::create_dir(v.join(".health-check")).unwrap();
        let err = find_hook(v, HookName::HealthCheck).unwrap_err();
        assert!(
            err.message.contains("not a regular file"),
            "{}",
            err.message
        );

        symlink("nowhere", v.join(".pre-install")).unwrap();
        let err = find_hook(v, HookName::PreInstall).unwrap_err();
        assert!(err.message.contains("does not resolve"), "{}", err.message);
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
        assert_eq!(err.code, ExitCode::Failed);
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
        assert_eq!(err.code, ExitCode::RetryLater);
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
