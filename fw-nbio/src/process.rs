use std::{ffi::OsStr, fmt, path::Path, process::Command, time::Duration};

use crate::{Error, Output, Pipe, Running};

/// Where a process's stderr goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Stderr {
    /// Our own stderr, as with a shell.
    #[default]
    Inherit,
    /// Collected into [`Output::stderr`] and quoted in a [`ProcessError`](crate::ProcessError).
    Capture,
    /// Into its stdout, like `2>&1`.
    Merge,
    /// `/dev/null`.
    Discard,
}

/// One command of a [`Pipe`]: a builder, started when the pipe runs.
///
/// By default its stdin is whatever stands before it in the pipe (`/dev/null` if nothing),
/// its stdout goes to what stands after it (collected by the pipe if nothing), its stderr
/// is inherited, only exit status 0 counts as success, and it runs in a process group of
/// its own so a timeout or a failure elsewhere kills everything it started. Being in a
/// background process group, it cannot read the terminal: such a read fails (EIO)
/// instead of stopping it on SIGTTIN; give it its input through the pipe.
pub struct Process {
    pub(crate) cmd: Command,
    name: Option<String>,
    pub(crate) stderr: Stderr,
    pub(crate) good_exit: Vec<i32>,
    pub(crate) no_input_exit: Vec<i32>,
    pub(crate) by_line: bool,
    pub(crate) timeout: Option<Duration>,
    pub(crate) die_with_parent: bool,
}

impl Process {
    /// A shell command line, run by `sh -c`, as Fussy did for a string.
    pub fn shell(script: impl AsRef<OsStr>) -> Self {
        let script = script.as_ref();
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(script);
        Self::from(cmd).name(script.to_string_lossy())
    }

    /// A program and its arguments, run without a shell. An empty `argv` fails when the pipe runs.
    pub fn argv<I, S>(argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut argv = argv.into_iter();
        let program = argv.next();
        let mut cmd = Command::new(program.as_ref().map_or(OsStr::new(""), AsRef::as_ref));
        cmd.args(argv);
        Self::from(cmd)
    }

    /// A program with no arguments yet; add them with [`arg`](Self::arg) and [`args`](Self::args).
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        Self::from(Command::new(program))
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.cmd.arg(arg);
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.cmd.args(args);
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.cmd.env(key, value);
        self
    }

    pub fn envs<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        self.cmd.envs(vars);
        self
    }

    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        self.cmd.env_remove(key);
        self
    }

    /// Start from an empty environment instead of ours.
    pub fn env_clear(mut self) -> Self {
        self.cmd.env_clear();
        self
    }

    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.cmd.current_dir(dir);
        self
    }

    /// Collect its stderr as it comes: its last 64 KiB into [`Output::stderr`], and its
    /// last lines into the error if it fails.
    pub fn capture_stderr(mut self) -> Self {
        self.stderr = Stderr::Capture;
        self
    }

    /// Send its stderr wherever its stdout goes, like `2>&1`.
    pub fn merge_stderr(mut self) -> Self {
        self.stderr = Stderr::Merge;
        self
    }

    /// Send its stderr to `/dev/null`.
    pub fn discard_stderr(mut self) -> Self {
        self.stderr = Stderr::Discard;
        self
    }

    /// Also accept these exit statuses as success (0 always is); e.g. `grep`'s 1 for "no match".
    pub fn good_exit(mut self, codes: impl IntoIterator<Item = i32>) -> Self {
        self.good_exit.extend(codes);
        self
    }

    /// Exit statuses by which it says "my input ended before it began" (fw's exit 9): the
    /// process before it failed, which is the cause. Such an exit is judged only once every
    /// earlier process has exited, so that their failure, if any, is the one reported,
    /// however the two exits are seen in time.
    pub fn no_input_exit(mut self, codes: impl IntoIterator<Item = i32>) -> Self {
        self.no_input_exit.extend(codes);
        self
    }

    /// Deliver its output to the closures after it, and to an iterating caller if it is last,
    /// one line at a time, without the `\n`; a final line without `\n` is delivered at the end.
    /// Bytes passed on to later processes, files or the collected output are unchanged.
    pub fn by_line(mut self) -> Self {
        self.by_line = true;
        self
    }

    /// Kill its whole process group if it (or something it started that still holds its
    /// output) is still running this long after it started.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Have it killed (SIGKILL) if the thread that starts the pipe dies first, say when
    /// our process is killed, rather than left running on its own (Linux's
    /// `PR_SET_PDEATHSIG`). Only the process itself: what it started lives on unless it
    /// asks the same. Start the pipe on a thread that outlives it (the main thread).
    pub fn die_with_parent(mut self) -> Self {
        self.die_with_parent = true;
        self
    }

    /// The name errors call it by; defaults to its shell script or argv.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The underlying command, for settings this builder lacks (uid, umask via `pre_exec`, ...).
    /// Its stdin, stdout, stderr and process group are overridden when the pipe runs, and
    /// SIGTTIN and SIGTTOU ignored in the child.
    pub fn command_mut(&mut self) -> &mut Command {
        &mut self.cmd
    }

    /// The name errors call it by.
    pub fn display_name(&self) -> String {
        match &self.name {
            Some(name) => name.clone(),
            None => command_line(&self.cmd),
        }
    }

    /// Run it alone and collect its stdout (and stderr, if captured).
    pub fn run(self) -> Result<Output, Error> {
        Pipe::from(self).run()
    }

    /// Run it alone, its failure an outcome rather than an error (see
    /// [`Pipe::run_unchecked`]).
    pub fn run_unchecked(self) -> Result<Output, Error> {
        Pipe::from(self).run_unchecked()
    }

    /// Run it alone and return its stdout as text (invalid UTF-8 replaced by U+FFFD).
    pub fn run_text(self) -> Result<String, Error> {
        Pipe::from(self).run_text()
    }

    /// Start it alone; iterate the result for its output as it comes.
    pub fn spawn(self) -> Result<Running, Error> {
        Pipe::from(self).spawn()
    }

    /// Read its stdin from the file at `path` (Fussy's `<`).
    pub fn from_file(self, path: impl AsRef<Path>) -> Pipe {
        Pipe::from(self).from_file(path)
    }

    /// Write its stdout to the file at `path`, created or truncated (Fussy's `>`).
    pub fn to_file(self, path: impl AsRef<Path>) -> Pipe {
        Pipe::from(self).to_file(path)
    }

    /// Call `f` with each chunk (or line, see [`by_line`](Self::by_line)) of its output,
    /// which still flows on to whatever follows.
    pub fn tap<F: FnMut(&[u8]) + Send + 'static>(self, f: F) -> Pipe {
        Pipe::from(self).tap(f)
    }
}

impl IntoIterator for Process {
    type Item = Result<Vec<u8>, Error>;
    type IntoIter = Running;

    /// Start it alone and iterate its output; a failure to start is the one item.
    fn into_iter(self) -> Running {
        Pipe::from(self).into_iter()
    }
}

impl From<Command> for Process {
    /// Wrap a fully configured [`Command`].
    fn from(cmd: Command) -> Self {
        Self {
            cmd,
            name: None,
            stderr: Stderr::default(),
            good_exit: Vec::new(),
            no_input_exit: Vec::new(),
            by_line: false,
            timeout: None,
            die_with_parent: false,
        }
    }
}

impl fmt::Debug for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Process")
            .field("name", &self.display_name())
            .field("stderr", &self.stderr)
            .field("good_exit", &self.good_exit)
            .field("no_input_exit", &self.no_input_exit)
            .field("by_line", &self.by_line)
            .field("timeout", &self.timeout)
            .field("die_with_parent", &self.die_with_parent)
            .finish()
    }
}

/// `program arg...`, quoting arguments a reader could misparse.
fn command_line(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|word| {
            let word = word.to_string_lossy();
            let plain = !word.is_empty()
                && word
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
            if plain {
                word.into_owned()
            } else {
                format!("'{}'", word.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            Process::shell("echo hi | cat").display_name(),
            "echo hi | cat"
        );
        assert_eq!(
            Process::argv(["grep", "-e", "a b", "it's"]).display_name(),
            r"grep -e 'a b' 'it'\''s'"
        );
        assert_eq!(
            Process::new("ls").arg("-l").name("lister").display_name(),
            "lister"
        );
    }
}
