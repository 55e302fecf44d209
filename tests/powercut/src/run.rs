//! A run: templates and calibrations (one setup boot per VM), the planned
//! cuts on VMs in parallel, the checks, and the report.
//!
//! Each boot after the first checks the disk the previous boot was cut
//! on, then cuts the next case on a fresh copy of its template: one boot
//! per cut instead of two. The check's disk is unmounted before the next
//! operation starts, so the cut cannot touch it.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::assets::{self, Kernel};
use crate::logwrites::Log;
use crate::plan::{self, Calibration, Case};
use crate::vm::{self, Boot, Cut, Disk, Outcome};

/// Cases that once failed: run first, every time.
const REGRESSIONS: &str = include_str!("../regressions");

/// How big each test disk is.
const DISK_MIB: u64 = 64;
/// How big dm-log-writes' log disk is.
const LOG_MIB: u64 = 256;
/// A setup boot (several installs per phase) may take this long.
const SETUP_TIMEOUT: Duration = Duration::from_secs(1200);
/// A boot that checks one cut and makes the next.
const CUT_TIMEOUT: Duration = Duration::from_secs(400);

/// What the guest boots, made once per run.
pub struct Lab {
    pub kernel: Kernel,
    pub guest: assets::Guest,
    pub work: PathBuf,
    /// Keep every boot's serial log here (else only failures').
    pub logs: Option<PathBuf>,
}

impl Lab {
    /// Builds the initramfs from the binaries in `bins`.
    pub fn new(repo: &Path, work: &Path, bins: &Path) -> Result<Lab> {
        let kernel = Kernel::find(&work.join("kernel"))?;
        let build = work.join("build");
        std::fs::create_dir_all(&build)?;
        let guest = assets::build(&build, bins, &kernel, repo)?;
        Ok(Lab {
            kernel,
            guest,
            work: work.to_path_buf(),
            logs: None,
        })
    }

    fn boot(&self, args: Vec<String>, mut disks: Vec<Disk>, timeout: Duration) -> Boot {
        disks.push(Disk {
            serial: "tools".into(),
            path: self.guest.tools.clone(),
            read_only: true,
        });
        Boot {
            kernel: self.kernel.vmlinuz.clone(),
            initrd: self.guest.initrd.clone(),
            args,
            disks,
            timeout,
            resume: None,
            input: None,
        }
    }

    fn saved_guest(&self) -> PathBuf {
        self.work.join("guest.state")
    }

    /// The boot of every check and cut: the saved guest resumed with the
    /// disk to check and the disk to cut (or empty ones in `dir`, as the
    /// saved guest had), given its job on the serial line.
    fn job_boot(
        &self,
        dir: &Path,
        check: Option<&Path>,
        cut: Option<&Path>,
        job: &[String],
    ) -> Result<Boot> {
        self.job_boot_logged(dir, check, cut, None, job)
    }

    /// The same with a disk for dm-log-writes' log.
    fn job_boot_logged(
        &self,
        dir: &Path,
        check: Option<&Path>,
        cut: Option<&Path>,
        log: Option<&Path>,
        job: &[String],
    ) -> Result<Boot> {
        let mut disks = Vec::new();
        for (serial, disk, mib) in [
            ("check", check, DISK_MIB),
            ("cut", cut, DISK_MIB),
            ("log", log, LOG_MIB),
        ] {
            let path = match disk {
                Some(path) => path.to_path_buf(),
                None => {
                    let empty = dir.join(format!("empty-{serial}.img"));
                    std::fs::File::create(&empty)?.set_len(mib << 20)?;
                    empty
                }
            };
            disks.push(Disk {
                serial: serial.into(),
                path,
                read_only: false,
            });
        }
        let mut boot = self.boot(vec!["pc.wait=1".into()], disks, CUT_TIMEOUT);
        boot.resume = Some(self.saved_guest());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        boot.input = Some(format!("{} pc.date={now}", job.join(" ")));
        Ok(boot)
    }

    /// Boots the guest once and saves it where it waits for its job.
    pub fn save_guest(&self) -> Result<()> {
        let dir = self.work.join("save");
        std::fs::create_dir_all(&dir)?;
        let boot = self.job_boot(&dir, None, None, &[])?;
        let mut cold = boot.clone();
        cold.resume = None;
        vm::save(&cold, &self.saved_guest())?;
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }

    fn template(&self, phase: &str) -> PathBuf {
        self.work.join("templates").join(format!("{phase}.img"))
    }

    /// Makes the template of each phase and learns its steps: the phases
    /// spread over `vms` parallel boots.
    pub fn setup(&self, phases: &[String], vms: usize) -> Result<BTreeMap<String, Calibration>> {
        std::fs::create_dir_all(self.work.join("templates"))?;
        let groups: Vec<Vec<String>> = (0..vms.min(phases.len()).max(1))
            .map(|v| phases.iter().skip(v).step_by(vms.max(1)).cloned().collect())
            .collect();
        let results = Mutex::new(BTreeMap::new());
        std::thread::scope(|scope| -> Result<()> {
            let handles: Vec<_> = groups
                .iter()
                .map(|group| scope.spawn(|| self.setup_group(group, &results)))
                .collect();
            for handle in handles {
                handle.join().expect("a setup thread panicked")?;
            }
            Ok(())
        })?;
        Ok(results.into_inner().unwrap())
    }

    fn setup_group(
        &self,
        phases: &[String],
        results: &Mutex<BTreeMap<String, Calibration>>,
    ) -> Result<()> {
        let mut disks = Vec::new();
        for phase in phases {
            let template = self.template(phase);
            vm::make_disk(&template, DISK_MIB)?;
            let scratch = self
                .work
                .join("templates")
                .join(format!("{phase}.calibrate.img"));
            let file = std::fs::File::create(&scratch)?;
            file.set_len(DISK_MIB << 20)?;
            disks.push(Disk {
                serial: format!("s-{phase}"),
                path: template,
                read_only: false,
            });
            disks.push(Disk {
                serial: format!("c-{phase}"),
                path: scratch,
                read_only: false,
            });
        }
        let boot = self.boot(
            vec![format!("pc.setup={}", phases.join(","))],
            disks.clone(),
            SETUP_TIMEOUT,
        );
        let out = vm::run(&boot, &Cut::Never)?;
        let log = self.work.join(format!("setup-{}.log", phases.join("+")));
        std::fs::write(&log, out.log())?;
        let fatal: Vec<&str> = out.says().filter(|s| s.starts_with("fatal")).collect();
        if out.timed_out || !fatal.is_empty() {
            bail!(
                "the setup boot of {} failed ({}): see {}",
                phases.join(", "),
                if out.timed_out {
                    "timed out".to_string()
                } else {
                    fatal.join("; ")
                },
                log.display()
            );
        }
        for phase in phases {
            let calibration = calibration_of(&out, phase).with_context(|| {
                format!("the setup boot did not run {phase}: see {}", log.display())
            })?;
            results.lock().unwrap().insert(phase.clone(), calibration);
            if let Some(problem) = vm::fsck(&self.template(phase))? {
                bail!("the template of {phase} is not a sound file system: {problem}");
            }
        }
        for disk in disks.iter().filter(|d| d.serial.starts_with("c-")) {
            let _ = std::fs::remove_file(&disk.path);
        }
        Ok(())
    }
}

/// The steps of `phase`'s uncut run in a setup boot's log.
fn calibration_of(out: &Outcome, phase: &str) -> Option<Calibration> {
    let go = format!("@@go {phase}");
    let start = out.lines.iter().position(|(_, l)| *l == go)?;
    let t0 = out.lines[start].0;
    let mut steps = Vec::new();
    for (at, line) in &out.lines[start + 1..] {
        let ms = (*at - t0).as_millis() as u64;
        if line.starts_with("@@done") {
            out.lines
                .iter()
                .any(|(_, l)| *l == format!("@@setup {phase}"))
                .then_some(())?;
            return Some(Calibration::new(&steps, ms));
        }
        if let Some(step) = crate::marker::step(line) {
            steps.push((step, ms));
        }
    }
    None
}

/// How one cut ended.
#[derive(Debug, Clone)]
pub struct CaseResult {
    pub case: Case,
    pub failures: Vec<String>,
    pub known: Vec<String>,
    /// The last step before the power went.
    pub last_step: Option<String>,
    pub reached: bool,
    pub done: Option<i32>,
    /// Where the logs (and the disk as cut) of a failure are.
    pub kept: Option<PathBuf>,
}

/// Judges the check part of `check` (the boot after `cut`).
fn judge(case: Case, cut: &Outcome, check: &Outcome, image: &Path) -> CaseResult {
    let mut failures = Vec::new();
    let mut known = Vec::new();
    for said in cut.says().filter(|s| s.starts_with("fatal")) {
        failures.push(format!("cut boot: {said}"));
    }
    if cut.timed_out {
        failures.push("the operation never reached the cut: the boot timed out".into());
    }
    let mut checked = false;
    for said in check.says().take_while(|s| !s.starts_with("go ")) {
        if let Some(what) = said.strip_prefix("fail ") {
            failures.push(what.to_string());
        } else if let Some(what) = said.strip_prefix("known ") {
            known.push(what.to_string());
        } else if said.starts_with("fatal") {
            failures.push(format!("check boot: {said}"));
        } else if said == format!("checked {}", case.phase) {
            checked = true;
        }
    }
    if !checked {
        failures.push(if check.timed_out {
            "the check did not finish: timed out".into()
        } else {
            "the check did not finish".into()
        });
    } else {
        match vm::fsck(image) {
            Ok(None) => {}
            Ok(Some(problem)) => failures.push(problem),
            Err(e) => failures.push(format!("{e:#}")),
        }
    }
    CaseResult {
        case,
        failures,
        known,
        last_step: cut.last_step.clone(),
        reached: cut.reached,
        done: cut.done,
        kept: None,
    }
}

fn cut_of(case: &Case) -> Cut {
    Cut::At {
        step: case.step.clone(),
        n: case.n,
        delay: Duration::from_millis(case.delay_ms),
    }
}

/// The cut in flight on a VM: its case, the disk cut, the boot's output.
struct Pending {
    case: Case,
    image: PathBuf,
    out: Outcome,
}

impl Lab {
    /// Runs `cases` on `vms` VMs in parallel; `progress` hears of each result.
    pub fn cut_all(
        &self,
        cases: Vec<Case>,
        vms: usize,
        progress: &(dyn Fn(&CaseResult, usize) + Sync),
    ) -> Result<Vec<CaseResult>> {
        let queue = Mutex::new(cases.into_iter().collect::<VecDeque<_>>());
        let results = Mutex::new(Vec::new());
        std::thread::scope(|scope| -> Result<()> {
            let handles: Vec<_> = (0..vms.max(1))
                .map(|v| {
                    let (queue, results) = (&queue, &results);
                    scope.spawn(move || self.worker(v, queue, results, progress))
                })
                .collect();
            for handle in handles {
                handle.join().expect("a VM thread panicked")?;
            }
            Ok(())
        })?;
        Ok(results.into_inner().unwrap())
    }

    fn worker(
        &self,
        v: usize,
        queue: &Mutex<VecDeque<Case>>,
        results: &Mutex<Vec<CaseResult>>,
        progress: &(dyn Fn(&CaseResult, usize) + Sync),
    ) -> Result<()> {
        let dir = self.work.join(format!("vm{v}"));
        std::fs::create_dir_all(&dir)?;
        let mut pending: Option<Pending> = None;
        for round in 0.. {
            let next = queue.lock().unwrap().pop_front();
            if next.is_none() && pending.is_none() {
                break;
            }
            let mut job = Vec::new();
            if let Some(p) = &pending {
                let rc = p.out.done.map_or("cut".to_string(), |c| c.to_string());
                job.push(format!("pc.check={}:{rc}", p.case.phase));
                // The disk as the cut left it, in case the check fails.
                vm::copy_disk(&p.image, &dir.join("as-cut.img"))?;
            }
            let image = dir.join(format!("disk{}.img", round % 2));
            if let Some(case) = &next {
                vm::copy_disk(&self.template(&case.phase), &image)?;
                job.push(format!("pc.cut={}:{}", case.phase, case.data));
            }
            let boot = self.job_boot(
                &dir,
                pending.as_ref().map(|p| p.image.as_path()),
                next.as_ref().map(|_| image.as_path()),
                &job,
            )?;
            let cut = next.as_ref().map_or(Cut::Never, cut_of);
            let out = vm::run(&boot, &cut)?;
            if let Some(logs) = &self.logs {
                std::fs::create_dir_all(logs)?;
                let name = next
                    .as_ref()
                    .map_or("last".to_string(), |c| c.phase.clone());
                std::fs::write(logs.join(format!("vm{v}-{round:03}-{name}.log")), out.log())?;
            }
            if let Some(p) = pending.take() {
                let mut result = judge(p.case, &p.out, &out, &p.image);
                if !result.failures.is_empty() {
                    result.kept = Some(self.keep(&result, &p.out, &out, &dir)?);
                }
                let mut results = results.lock().unwrap();
                results.push(result);
                progress(results.last().unwrap(), results.len());
            }
            if let Some(case) = next {
                let started = out.says().any(|s| s.starts_with("go "));
                if started {
                    pending = Some(Pending { case, image, out });
                } else {
                    let result = CaseResult {
                        case,
                        failures: vec!["the operation never started (the boot hung before)".into()],
                        known: Vec::new(),
                        last_step: None,
                        reached: false,
                        done: None,
                        kept: None,
                    };
                    let mut results = results.lock().unwrap();
                    results.push(result);
                    progress(results.last().unwrap(), results.len());
                }
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }

    /// Keeps a failure's logs and disk under failures/.
    fn keep(
        &self,
        result: &CaseResult,
        cut: &Outcome,
        check: &Outcome,
        dir: &Path,
    ) -> Result<PathBuf> {
        let failures = self.work.join("failures");
        std::fs::create_dir_all(&failures)?;
        let n = std::fs::read_dir(&failures)?.count();
        let name = format!("{n:03}-{}", result.case.phase);
        let mut text = format!("case {}\n", result.case);
        for failure in &result.failures {
            let _ = writeln!(text, "failure: {failure}");
        }
        let _ = writeln!(text, "\n--- the boot that was cut ---\n{}", cut.log());
        let _ = writeln!(text, "\n--- the boot that checked ---\n{}", check.log());
        let kept = failures.join(format!("{name}.log"));
        std::fs::write(&kept, text)?;
        // Disks of the first few failures only: 64 MiB each, if not sparse.
        if n < 20 {
            let _ = std::fs::rename(dir.join("as-cut.img"), failures.join(format!("{name}.img")));
        }
        Ok(kept)
    }

    /// One case by itself: its phase's setup, the cut, the check.
    pub fn replay(&self, case: &Case) -> Result<CaseResult> {
        std::thread::scope(|scope| -> Result<()> {
            let saving = scope.spawn(|| self.save_guest());
            self.setup(std::slice::from_ref(&case.phase), 1)?;
            saving.join().expect("the saving thread panicked")
        })?;
        let dir = self.work.join("replay");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        if case.cache_loss.is_some() {
            let logged = self.log_phase(&case.phase, &case.data)?;
            let mut result = self.check_replayed(&dir, case, &logged)?;
            result.kept = Some(dir);
            return Ok(result);
        }
        let image = dir.join("disk.img");
        vm::copy_disk(&self.template(&case.phase), &image)?;
        let job = [format!("pc.cut={}:{}", case.phase, case.data)];
        let cut = vm::run(
            &self.job_boot(&dir, None, Some(&image), &job)?,
            &cut_of(case),
        )?;
        vm::copy_disk(&image, &dir.join("as-cut.img"))?;
        let rc = cut.done.map_or("cut".to_string(), |c| c.to_string());
        let job = [format!("pc.check={}:{rc}", case.phase)];
        let check = vm::run(&self.job_boot(&dir, Some(&image), None, &job)?, &Cut::Never)?;
        let mut result = judge(case.clone(), &cut, &check, &image);
        std::fs::write(dir.join("cut.log"), cut.log())?;
        std::fs::write(dir.join("check.log"), check.log())?;
        result.kept = Some(dir);
        Ok(result)
    }
}

/// A phase's operation logged by dm-log-writes: the log and what the
/// operation did.
pub struct Logged {
    pub log: Log,
    pub path: PathBuf,
    /// ext4's data mode it ran with.
    pub data: String,
    /// The entries between which the operation ran.
    pub start: usize,
    pub done: usize,
    /// Its exit code.
    pub rc: Option<i32>,
}

impl Logged {
    /// The flush points a cut may follow: from the operation's start to
    /// the first after its end.
    pub fn barriers(&self) -> Vec<usize> {
        let mut points: Vec<usize> = (self.start..self.log.entries.len())
            .filter(|&i| self.log.entries[i].is_barrier())
            .collect();
        if let Some(after) = points.iter().position(|&i| i > self.done) {
            points.truncate(after + 1);
        }
        points
    }
}

impl Lab {
    /// Runs `phase`'s operation once with every write logged.
    pub fn log_phase(&self, phase: &str, data: &str) -> Result<Logged> {
        let dir = self.work.join(format!("log-{phase}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let disk = dir.join("disk.img");
        vm::copy_disk(&self.template(phase), &disk)?;
        let path = dir.join("log.img");
        std::fs::File::create(&path)?.set_len(LOG_MIB << 20)?;
        let job = [format!("pc.log={phase}:{data}")];
        let out = vm::run(
            &self.job_boot_logged(&dir, None, Some(&disk), Some(&path), &job)?,
            &Cut::Never,
        )?;
        std::fs::write(dir.join("boot.log"), out.log())?;
        anyhow::ensure!(
            out.says().any(|s| s == format!("logged {phase}")),
            "logging the writes of {phase} failed: see {}",
            dir.join("boot.log").display()
        );
        let rc = out.says().find_map(|s| {
            s.strip_prefix("done ")
                .and_then(|rc| rc.trim().parse().ok())
        });
        let log = Log::open(&path)?;
        let start = log.mark("start").context("no start mark in the log")?;
        let done = log.mark("done").context("no done mark in the log")?;
        let _ = std::fs::remove_file(&disk);
        Ok(Logged {
            log,
            path,
            data: data.to_string(),
            start,
            done,
            rc,
        })
    }

    /// Checks a disk as `case` (a disk-cache case) makes it from its
    /// phase's log.
    pub fn check_replayed(&self, dir: &Path, case: &Case, logged: &Logged) -> Result<CaseResult> {
        let (barrier, subset) = case.cache_loss.context("not a disk-cache case")?;
        let points = logged.barriers();
        let upto = points[barrier.min(points.len() - 1)];
        let extra = subset.map_or(Vec::new(), |seed| logged.log.some_unflushed(upto, seed));
        let image = dir.join("replayed.img");
        vm::copy_disk(&self.template(&case.phase), &image)?;
        logged.log.replay(&image, upto, &extra)?;
        let finished = upto > logged.done;
        let rc = match (finished, logged.rc) {
            (true, Some(rc)) => rc.to_string(),
            _ => "cut".into(),
        };
        vm::copy_disk(&image, &dir.join("as-cut.img"))?;
        let job = [format!("pc.check={}:{rc}", case.phase)];
        let check = vm::run(&self.job_boot(dir, Some(&image), None, &job)?, &Cut::Never)?;
        let cut = Outcome {
            done: finished.then_some(logged.rc).flatten(),
            last_step: Some(format!("flush#{barrier}")),
            reached: true,
            cut: true,
            ..Outcome::default()
        };
        let mut result = judge(case.clone(), &cut, &check, &image);
        if !result.failures.is_empty() {
            result.kept = Some(self.keep(&result, &cut, &check, dir)?);
        }
        Ok(result)
    }

    /// Logs each phase once, then checks `cases` (disk-cache cases) on
    /// `vms` VMs in parallel.
    pub fn cache_loss_all(
        &self,
        cases: Vec<Case>,
        logs: &BTreeMap<String, Logged>,
        vms: usize,
        progress: &(dyn Fn(&CaseResult, usize) + Sync),
    ) -> Result<Vec<CaseResult>> {
        let queue = Mutex::new(cases.into_iter().collect::<VecDeque<_>>());
        let results = Mutex::new(Vec::new());
        std::thread::scope(|scope| -> Result<()> {
            let handles: Vec<_> = (0..vms.max(1))
                .map(|v| {
                    let (queue, results) = (&queue, &results);
                    scope.spawn(move || -> Result<()> {
                        let dir = self.work.join(format!("vm{v}"));
                        std::fs::create_dir_all(&dir)?;
                        loop {
                            let Some(case) = queue.lock().unwrap().pop_front() else {
                                break;
                            };
                            let result = self.check_replayed(&dir, &case, &logs[&case.phase])?;
                            let mut results = results.lock().unwrap();
                            results.push(result);
                            progress(results.last().unwrap(), results.len());
                        }
                        let _ = std::fs::remove_dir_all(&dir);
                        Ok(())
                    })
                })
                .collect();
            for handle in handles {
                handle.join().expect("a VM thread panicked")?;
            }
            Ok(())
        })?;
        Ok(results.into_inner().unwrap())
    }

    /// Logs the phases' operations, `vms` at a time.
    pub fn log_all(
        &self,
        phases: &[String],
        vms: usize,
        seed: u64,
    ) -> Result<BTreeMap<String, Logged>> {
        let queue = Mutex::new(phases.iter().cloned().collect::<VecDeque<_>>());
        let logs = Mutex::new(BTreeMap::new());
        let mut rng = fastrand::Rng::with_seed(seed);
        let modes: BTreeMap<String, &str> = phases
            .iter()
            .map(|p| (p.clone(), if rng.bool() { "ordered" } else { "writeback" }))
            .collect();
        std::thread::scope(|scope| -> Result<()> {
            let handles: Vec<_> = (0..vms.max(1))
                .map(|_| {
                    scope.spawn(|| -> Result<()> {
                        loop {
                            let Some(phase) = queue.lock().unwrap().pop_front() else {
                                break;
                            };
                            let logged = self.log_phase(&phase, modes[&phase])?;
                            logs.lock().unwrap().insert(phase, logged);
                        }
                        Ok(())
                    })
                })
                .collect();
            for handle in handles {
                handle.join().expect("a VM thread panicked")?;
            }
            Ok(())
        })?;
        Ok(logs.into_inner().unwrap())
    }
}

/// The summary: counts, steps hit per phase, known issues, failures with
/// their replay lines.
pub fn report(
    results: &[CaseResult],
    calibrations: &BTreeMap<String, Calibration>,
    flush_points: &BTreeMap<String, usize>,
    seed: u64,
    vms: usize,
    elapsed: Duration,
) -> String {
    let failed: Vec<&CaseResult> = results.iter().filter(|r| !r.failures.is_empty()).collect();
    let (cache, page): (Vec<&CaseResult>, Vec<&CaseResult>) =
        results.iter().partition(|r| r.case.cache_loss.is_some());
    let mut text = String::new();
    let _ = writeln!(
        text,
        "power cuts in a QEMU guest (tests/powercut): {} run, {} recovered consistently, {} failed \
         (seed {seed}, {vms} VMs, {}m{:02}s)",
        results.len(),
        results.len() - failed.len(),
        failed.len(),
        elapsed.as_secs() / 60,
        elapsed.as_secs() % 60
    );
    let _ = writeln!(
        text,
        "  {:4}  cuts losing the guest's page cache (QEMU killed after a traced syscall):",
        page.len()
    );
    for (phase, calibration) in calibrations {
        let mine: Vec<&CaseResult> = page
            .iter()
            .copied()
            .filter(|r| &r.case.phase == phase)
            .collect();
        let steps = calibration.steps();
        let hit: std::collections::BTreeSet<&str> = mine
            .iter()
            .filter_map(|r| r.last_step.as_deref())
            .filter(|s| steps.contains(s))
            .collect();
        let after_end = mine.iter().filter(|r| r.done.is_some()).count();
        let _ = writeln!(
            text,
            "  {:4}    {phase}: after {} of its {} steps, {after_end} after it finished, {} failed",
            mine.len(),
            hit.len(),
            steps.len(),
            mine.iter().filter(|r| !r.failures.is_empty()).count()
        );
    }
    if !cache.is_empty() {
        let _ = writeln!(
            text,
            "  {:4}  cuts losing the disk's volatile cache too (dm-log-writes replayed to a flush, \
             half with some later writes):",
            cache.len()
        );
        for (phase, points) in flush_points {
            let mine: Vec<&CaseResult> = cache
                .iter()
                .copied()
                .filter(|r| &r.case.phase == phase)
                .collect();
            let hit: std::collections::BTreeSet<usize> = mine
                .iter()
                .filter_map(|r| r.case.cache_loss)
                .map(|c| c.0)
                .collect();
            let _ = writeln!(
                text,
                "  {:4}    {phase}: at {} of its {points} flush points, {} after it finished, {} failed",
                mine.len(),
                hit.len(),
                mine.iter().filter(|r| r.done.is_some()).count(),
                mine.iter().filter(|r| !r.failures.is_empty()).count()
            );
        }
    }
    let mut known = BTreeMap::<&str, usize>::new();
    for r in results {
        for k in &r.known {
            *known.entry(k.as_str()).or_default() += 1;
        }
    }
    for (what, count) in known {
        let _ = writeln!(text, "  known issue, accepted: {what} (after {count} cuts)");
    }
    for r in &failed {
        let _ = writeln!(
            text,
            "  FAILED {} (last step {}{}): {}{}",
            r.case,
            r.last_step.as_deref().unwrap_or("-"),
            r.done
                .map(|c| format!(", finished with {c}"))
                .unwrap_or_default(),
            r.failures.join("; "),
            r.kept
                .as_ref()
                .map(|k| format!(" [{}]", k.display()))
                .unwrap_or_default()
        );
    }
    text
}

/// CPU time of this process's finished children (QEMU above all).
fn children_cpu() -> Duration {
    use nix::sys::resource::{getrusage, UsageWho};
    getrusage(UsageWho::RUSAGE_CHILDREN)
        .map(|u| {
            let t = |tv: nix::sys::time::TimeVal| {
                Duration::new(tv.tv_sec() as u64, tv.tv_usec() as u32 * 1000)
            };
            t(u.user_time()) + t(u.system_time())
        })
        .unwrap_or_default()
}

/// Runs a whole power-cut campaign.
pub struct Campaign {
    pub phases: Vec<String>,
    /// Cuts that lose the guest's page cache.
    pub cuts: usize,
    /// Cuts that lose the disk's volatile cache too.
    pub cache_cuts: usize,
    pub vms: usize,
    pub seed: u64,
}

impl Campaign {
    pub fn run(&self, lab: &Lab) -> Result<(Vec<CaseResult>, String)> {
        let start = Instant::now();
        eprintln!(
            "powercut: setting up {} phases on {} VMs",
            self.phases.len(),
            self.vms
        );
        // The guest to resume for every cut is saved while the templates
        // are made.
        let calibrations = std::thread::scope(|scope| {
            let saving = scope.spawn(|| lab.save_guest());
            let calibrations = lab.setup(&self.phases, self.vms);
            saving.join().expect("the saving thread panicked")?;
            calibrations
        })?;
        for (phase, c) in &calibrations {
            eprintln!(
                "powercut: {phase}: {} steps ({} calls) in {} ms",
                c.steps().len(),
                c.marks.len(),
                c.total_ms
            );
        }
        let (cache_regressions, regressions): (Vec<Case>, Vec<Case>) =
            plan::regressions(REGRESSIONS)?
                .into_iter()
                .filter(|c| self.phases.contains(&c.phase))
                .partition(|c| c.cache_loss.is_some());
        let mut cases = regressions.clone();
        cases.extend(plan::plan(
            &calibrations,
            self.cuts.saturating_sub(regressions.len()),
            self.seed,
        ));
        let total = cases.len() + self.cache_cuts;
        let _ = std::fs::remove_dir_all(lab.work.join("failures"));
        let progress = |r: &CaseResult, n: usize| {
            eprintln!(
                "powercut: [{n}/{total}] {} {} (last step {}{})",
                r.case,
                if r.failures.is_empty() {
                    "ok"
                } else {
                    "FAILED"
                },
                r.last_step.as_deref().unwrap_or("-"),
                r.done
                    .map(|c| format!(", finished with {c}"))
                    .unwrap_or_default()
            );
            for f in &r.failures {
                eprintln!("powercut:     {f}");
            }
        };
        let cpu_before = children_cpu();
        let cutting = Instant::now();
        let mut results = lab.cut_all(cases, self.vms, &progress)?;
        let mut flush_points = BTreeMap::new();
        if self.cache_cuts > 0 {
            eprintln!("powercut: logging every write of each phase (dm-log-writes)");
            let logs = lab.log_all(&self.phases, self.vms, self.seed)?;
            let barriers: BTreeMap<String, (usize, String)> = logs
                .iter()
                .map(|(p, l)| (p.clone(), (l.barriers().len(), l.data.clone())))
                .collect();
            for (phase, (points, _)) in &barriers {
                flush_points.insert(phase.clone(), *points);
            }
            let mut cases = cache_regressions.clone();
            cases.extend(plan::plan_cache_loss(
                &barriers,
                self.cache_cuts.saturating_sub(cache_regressions.len()),
                self.seed,
            ));
            let offset = results.len();
            let progress = |r: &CaseResult, n: usize| progress(r, offset + n);
            results.extend(lab.cache_loss_all(cases, &logs, self.vms, &progress)?);
        }
        let mut text = report(
            &results,
            &calibrations,
            &flush_points,
            self.seed,
            self.vms,
            start.elapsed(),
        );
        let cpu = children_cpu().saturating_sub(cpu_before);
        let _ = writeln!(
            text,
            "  time: {:.0} s to set up, {:.0} s to cut; {:.1} s of CPU per cut (so about {:.0} s \
             for the cuts on an idle machine with {} cores for {} VMs)",
            (cutting - start).as_secs_f64(),
            cutting.elapsed().as_secs_f64(),
            cpu.as_secs_f64() / results.len().max(1) as f64,
            cpu.as_secs_f64() / self.vms.max(1) as f64,
            self.vms,
            self.vms
        );
        Ok((results, text))
    }
}
