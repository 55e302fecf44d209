//! One boot of the guest under QEMU (TCG), its serial line read as it
//! comes, and the power cut: SIGKILL of QEMU at the chosen instant.
//!
//! `kill -9` of QEMU loses whatever the guest kernel had not yet written
//! to its virtual disk (the page cache), exactly as a power cut would. The
//! disks are raw files with `cache=unsafe`: what the guest did write is in
//! the host's page cache and stays (the disk's own cache is not lost).

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::marker;
use crate::plan::START;

/// How long a boot may take to reach the guest's script.
const UP_TIMEOUT: Duration = Duration::from_secs(150);

/// A disk of the guest, found there by its serial.
#[derive(Debug, Clone)]
pub struct Disk {
    pub serial: String,
    pub path: PathBuf,
    /// Shared by parallel guests, never written.
    pub read_only: bool,
}

/// What to boot.
#[derive(Debug, Clone)]
pub struct Boot {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// `pc.…=…` arguments for guest.sh, on the kernel command line.
    pub args: Vec<String>,
    pub disks: Vec<Disk>,
    /// Cut the power then, whatever the guest is doing.
    pub timeout: Duration,
    /// Resume a guest saved by [`save`] (the same kernel, arguments and
    /// disks, by serial and size) instead of booting one.
    pub resume: Option<PathBuf>,
    /// A line for the guest's serial input (a resumed guest's job).
    pub input: Option<String>,
}

/// When to cut the power during the traced operation.
#[derive(Debug, Clone)]
pub enum Cut {
    /// Let the guest power itself off.
    Never,
    /// After the `n`th instance of `step` (`None`: after the operation
    /// finished), plus `delay`. If the operation finishes before the step
    /// came, `delay` after its end.
    At {
        step: Option<String>,
        n: usize,
        delay: Duration,
    },
}

/// What a boot showed.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Every serial line, with its time since QEMU started.
    pub lines: Vec<(Duration, String)>,
    /// The power was cut as planned.
    pub cut: bool,
    /// The boot outlived its timeout (and was cut then).
    pub timed_out: bool,
    /// The chosen step was seen before the cut.
    pub reached: bool,
    /// The operation's exit code, if it finished before the cut.
    pub done: Option<i32>,
    /// The last step the guest showed before the power went.
    pub last_step: Option<String>,
    /// QEMU's own complaints.
    pub stderr: String,
    pub elapsed: Duration,
}

impl Outcome {
    /// The serial log as text.
    pub fn log(&self) -> String {
        let mut text = String::new();
        for (at, line) in &self.lines {
            text += &format!("{:9.3} {line}\n", at.as_secs_f64());
        }
        if !self.stderr.is_empty() {
            text += &format!("qemu stderr: {}\n", self.stderr);
        }
        text
    }

    /// Lines the guest addressed to the host (`@@…`), without the `@@`.
    pub fn says(&self) -> impl Iterator<Item = &str> {
        self.lines.iter().filter_map(|(_, l)| l.strip_prefix("@@"))
    }
}

fn qemu_command(boot: &Boot) -> Command {
    let mut cmd = Command::new("qemu-system-x86_64");
    // TCG: /dev/kvm may exist, but the stock kernel hangs under it here,
    // and TCG behaves the same on every machine.
    cmd.args(["-accel", "tcg", "-m", "512", "-smp", "1"])
        .args(["-nodefaults", "-no-user-config", "-display", "none"])
        .args(["-serial", "stdio", "-no-reboot"])
        .arg("-kernel")
        .arg(&boot.kernel)
        .arg("-initrd")
        .arg(&boot.initrd)
        .arg("-append")
        .arg(format!(
            // no_timer_check: on a loaded host the emulated timer can fail
            // the kernel's check and panic the boot.
            "console=ttyS0 quiet panic=-1 no_timer_check {}",
            boot.args.join(" ")
        ));
    for (i, disk) in boot.disks.iter().enumerate() {
        cmd.arg("-drive")
            .arg(format!(
                "id=d{i},file={},format=raw,if=none,cache=unsafe{}",
                disk.path.display(),
                if disk.read_only { ",readonly=on" } else { "" }
            ))
            .arg("-device")
            .arg(format!("virtio-blk-pci,drive=d{i},serial={}", disk.serial));
    }
    if let Some(state) = &boot.resume {
        cmd.arg("-incoming")
            .arg(format!("exec:cat {}", state.display()));
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Boots `boot` until the guest says `@@ready` (guest.sh waits there for
/// a job on its serial input), then saves the running guest to `state`
/// through QEMU's monitor (a migration to a file): resuming it costs a
/// fraction of a boot under emulation, and its tools are in its page
/// cache already.
pub fn save(boot: &Boot, state: &Path) -> Result<()> {
    use std::io::Write;
    use std::os::unix::net::UnixStream;
    let socket = state.with_extension("monitor");
    let _ = std::fs::remove_file(&socket);
    let _ = std::fs::remove_file(state);
    let mut cmd = qemu_command(boot);
    cmd.arg("-monitor")
        .arg(format!("unix:{},server=on,wait=off", socket.display()));
    let mut child = cmd
        .spawn()
        .context("cannot start qemu-system-x86_64: run scripts/deps (package qemu-system-x86)")?;
    let result = (|| -> Result<()> {
        let stdout = child.stdout.take().expect("piped stdout");
        let mut log = String::new();
        let mut ready = false;
        for line in BufReader::new(stdout).lines() {
            let line = line?;
            log += &line;
            log.push('\n');
            if line.trim_end().starts_with("@@ready") {
                ready = true;
                break;
            }
        }
        anyhow::ensure!(ready, "the guest never got ready to be saved:\n{log}");
        let mut monitor = UnixStream::connect(&socket)
            .with_context(|| format!("QEMU's monitor {}", socket.display()))?;
        let mut reader = BufReader::new(monitor.try_clone()?);
        // The monitor answers each command with its output and a new
        // prompt; `migrate` returns once the state is written.
        let until_prompt = |reader: &mut BufReader<UnixStream>| -> Result<String> {
            let mut text = Vec::new();
            let mut byte = [0u8; 1];
            while !text.ends_with(b"(qemu) ") {
                anyhow::ensure!(reader.read(&mut byte)? == 1, "QEMU's monitor closed");
                text.push(byte[0]);
            }
            Ok(String::from_utf8_lossy(&text).into_owned())
        };
        until_prompt(&mut reader)?;
        // Not stopped first: a guest saved stopped would resume stopped.
        // It waits idle for its job, so the migration ends at once.
        writeln!(monitor, "migrate \"exec:cat > {}\"", state.display())?;
        until_prompt(&mut reader)?;
        writeln!(monitor, "info migrate")?;
        let info = until_prompt(&mut reader)?;
        anyhow::ensure!(
            info.contains("completed"),
            "saving the guest failed: {info}"
        );
        Ok(())
    })();
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_file(&socket);
    result
}

/// Boots, reads the serial line, cuts the power as `cut` says (or when
/// `boot.timeout` passes), and returns what the guest showed. A boot that
/// dies before the guest's script starts (an emulation hiccup: nothing
/// has touched the disks yet) is tried again, twice at most.
pub fn run(boot: &Boot, cut: &Cut) -> Result<Outcome> {
    let mut tries = 1;
    loop {
        let out = run_once(boot, cut)?;
        if tries == 3 || out.says().any(|s| s.starts_with("up")) {
            return Ok(out);
        }
        tries += 1;
    }
}

fn run_once(boot: &Boot, cut: &Cut) -> Result<Outcome> {
    let start = Instant::now();
    let mut child = qemu_command(boot)
        .spawn()
        .context("cannot start qemu-system-x86_64: run scripts/deps (package qemu-system-x86)")?;
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    // Kept open until QEMU is gone: the guest's serial input, written
    // once the guest says it listens.
    let mut stdin = child.stdin.take().expect("piped stdin");
    let mut input = boot.input.as_deref();
    let stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = mpsc::channel::<(Instant, String)>();
    // Keep reading, whatever happens: QEMU blocks when its pipe is full.
    let reader = std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf)
                        .trim_end_matches(['\r', '\n'])
                        .replace('\r', "");
                    if tx.send((Instant::now(), line)).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let err_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });

    let mut out = Outcome::default();
    let mut watch = Watch::new(cut);
    let deadline = start + boot.timeout;
    let mut up = false;
    let mut killed = false;
    loop {
        let now = Instant::now();
        // A guest not up by then hangs in its kernel: give up on the boot.
        let deadline = if up {
            deadline
        } else {
            deadline.min(start + UP_TIMEOUT)
        };
        let until = watch.cut_at.map_or(deadline, |c| c.min(deadline));
        if !killed && now >= until {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            killed = true;
            out.cut = watch.cut_at.is_some_and(|c| c <= deadline);
            out.timed_out = !out.cut;
        }
        let wait = if killed {
            Duration::from_secs(30)
        } else {
            until.saturating_duration_since(now)
        };
        match rx.recv_timeout(wait) {
            Ok((at, line)) => {
                up |= line.starts_with("@@up");
                if line.starts_with("@@waiting") {
                    if let Some(text) = input.take() {
                        use std::io::Write;
                        writeln!(stdin, "{text}").context("writing to the guest's serial line")?;
                    }
                }
                // Lines still in the pipe after the kill were written before it.
                watch.see(&line, at, &mut out);
                out.lines.push((at - start, line));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if killed {
                    break;
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let _ = child.wait();
    drop(stdin);
    let _ = reader.join();
    out.stderr = err_reader.join().unwrap_or_default().trim().to_string();
    out.elapsed = start.elapsed();
    Ok(out)
}

/// Follows the operation's steps and decides when the power goes.
struct Watch<'a> {
    cut: &'a Cut,
    running: bool,
    counts: std::collections::HashMap<String, usize>,
    cut_at: Option<Instant>,
}

impl<'a> Watch<'a> {
    fn new(cut: &'a Cut) -> Watch<'a> {
        Watch {
            cut,
            running: false,
            counts: Default::default(),
            cut_at: None,
        }
    }

    fn see(&mut self, line: &str, at: Instant, out: &mut Outcome) {
        let Cut::At { step, n, delay } = self.cut else {
            return;
        };
        let mut this_step = None;
        if line.starts_with("@@go ") {
            self.running = true;
            this_step = Some(START.to_string());
        } else if let Some(rc) = line.strip_prefix("@@done ") {
            // Every line QEMU wrote came before the cut, even those read
            // after it: this operation finished.
            if self.running {
                out.done = rc.trim().parse().ok();
                self.cut_at.get_or_insert(at + *delay);
            }
            self.running = false;
        } else if self.running {
            this_step = marker::step(line);
        }
        let Some(this_step) = this_step else {
            return;
        };
        out.last_step = Some(this_step.clone());
        let count = self.counts.entry(this_step.clone()).or_default();
        *count += 1;
        if step.as_deref() == Some(this_step.as_str()) && *count == *n && self.cut_at.is_none() {
            out.reached = true;
            self.cut_at = Some(at + *delay);
        }
    }
}

/// Makes an empty ext4 disk image of `mib` MiB (4 KiB blocks, as devices
/// use; inode tables initialised now, so no lazy-init thread writes behind
/// the tests' backs).
pub fn make_disk(path: &Path, mib: u64) -> Result<()> {
    let _ = std::fs::remove_file(path);
    let file = std::fs::File::create(path).with_context(|| path.display().to_string())?;
    file.set_len(mib << 20)?;
    drop(file);
    let status = Command::new("mkfs.ext4")
        .args([
            "-q",
            "-F",
            "-b",
            "4096",
            "-E",
            "lazy_itable_init=0,lazy_journal_init=0",
        ])
        .arg(path)
        .status()
        .context("cannot run mkfs.ext4: run scripts/deps (package e2fsprogs)")?;
    anyhow::ensure!(status.success(), "mkfs.ext4 {} failed", path.display());
    Ok(())
}

/// A sparse copy of a disk image.
pub fn copy_disk(from: &Path, to: &Path) -> Result<()> {
    let _ = std::fs::remove_file(to);
    let status = Command::new("cp")
        .arg("--sparse=always")
        .arg(from)
        .arg(to)
        .status()?;
    anyhow::ensure!(status.success(), "cp {} {}", from.display(), to.display());
    Ok(())
}

/// `e2fsck -fn`: the file system of a cleanly unmounted image is sound.
pub fn fsck(path: &Path) -> Result<Option<String>> {
    let out = Command::new("e2fsck")
        .arg("-fn")
        .arg(path)
        .output()
        .context("cannot run e2fsck: run scripts/deps (package e2fsprogs)")?;
    Ok((!out.status.success()).then(|| {
        format!(
            "e2fsck -fn exit {:?}: {}{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }))
}
