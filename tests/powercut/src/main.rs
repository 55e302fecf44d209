use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};

use fw_powercut::plan::{Case, PHASES};
use fw_powercut::run::{Campaign, Lab};

/// Cut a QEMU guest's power during fw's installs, recovery and
/// housekeeping, then boot again, run `fw-switch recover` as at boot and
/// check the target from inside.
///
/// Needs qemu-system-x86, busybox-static, e2fsprogs, strace and the kernel
/// that scripts/deps fetches into target/powercut/kernel, and the release
/// binaries (`cargo build --release`).
#[derive(Parser)]
#[command(name = "fw-powercut", version, about, long_about)]
struct Cli {
    /// Where the kernel is and the images and logs go.
    #[arg(long, value_name = "DIR", default_value_os_t = repo().join("target/powercut"))]
    work: PathBuf,
    /// The fw binaries the guest runs.
    #[arg(long, value_name = "DIR", default_value_os_t = repo().join("target/release"))]
    bins: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Cut the power N times, spread over the phases and their steps.
    Run {
        /// How many cuts.
        #[arg(long, value_name = "N", default_value_t = 100)]
        cuts: usize,
        /// Cuts that lose the disk's volatile cache too: each phase's
        /// writes and flushes logged once (dm-log-writes), replayed to a
        /// flush point (and half the time some writes after it).
        #[arg(long, value_name = "N", default_value_t = 0)]
        cache_cuts: usize,
        /// The long run: 1000 cuts and 200 disk-cache cuts.
        #[arg(long, conflicts_with_all = ["cuts", "cache_cuts"])]
        long: bool,
        /// VMs in parallel.
        #[arg(long, value_name = "N", default_value_t = 2)]
        vms: usize,
        /// The plan's seed [default: from the clock; printed].
        #[arg(long, value_name = "S")]
        seed: Option<u64>,
        /// Only these phases (repeatable) [default: all].
        #[arg(long, value_name = "PHASE", value_parser = clap::builder::PossibleValuesParser::new(PHASES))]
        phase: Vec<String>,
        /// Append the summary to FILE too (scripts/test's crash report).
        #[arg(long, value_name = "FILE")]
        report: Option<PathBuf>,
        /// Keep the serial log of every boot in WORK/logs (else only
        /// failures' are kept, in WORK/failures).
        #[arg(long)]
        keep_logs: bool,
    },
    /// Run one case again, as a failure record names it
    /// (PHASE@STEP#N+DELAYms/DATA or PHASE@done+DELAYms/DATA).
    Replay {
        #[arg(value_name = "CASE")]
        case: Case,
    },
}

/// The workspace root (this crate is tests/powercut).
fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("fw-powercut: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> Result<bool> {
    let repo = repo().canonicalize()?;
    let mut lab = Lab::new(&repo, &cli.work, &cli.bins)?;
    match cli.command {
        Command::Run {
            cuts,
            cache_cuts,
            long,
            vms,
            seed,
            phase,
            report,
            keep_logs,
        } => {
            if keep_logs {
                let logs = cli.work.join("logs");
                let _ = std::fs::remove_dir_all(&logs);
                lab.logs = Some(logs);
            }
            let (cuts, cache_cuts) = if long {
                (1000, 200)
            } else {
                (cuts, cache_cuts)
            };
            let phases: Vec<String> = if phase.is_empty() {
                PHASES.iter().map(|p| p.to_string()).collect()
            } else {
                phase
            };
            if cuts < phases.len() {
                bail!("{cuts} cuts cannot cover {} phases", phases.len());
            }
            let seed = seed.unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
            });
            eprintln!("powercut: {cuts} cuts, {cache_cuts} disk-cache cuts, seed {seed}");
            let campaign = Campaign {
                phases,
                cuts,
                cache_cuts,
                vms,
                seed,
            };
            let (results, text) = campaign.run(&lab)?;
            print!("{text}");
            std::fs::write(cli.work.join("report.txt"), &text)?;
            if let Some(file) = report {
                use std::io::Write;
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&file)?
                    .write_all(text.as_bytes())?;
            }
            Ok(results.iter().all(|r| r.failures.is_empty()))
        }
        Command::Replay { case } => {
            let result = lab.replay(&case)?;
            println!(
                "{case}: {} (last step {}{}; logs in {})",
                if result.failures.is_empty() {
                    "recovered consistently"
                } else {
                    "FAILED"
                },
                result.last_step.as_deref().unwrap_or("-"),
                result
                    .done
                    .map(|c| format!(", finished with {c}"))
                    .unwrap_or_default(),
                result
                    .kept
                    .as_ref()
                    .map(|k| k.display().to_string())
                    .unwrap_or_default()
            );
            for failure in &result.failures {
                println!("  {failure}");
            }
            for known in &result.known {
                println!("  known: {known}");
            }
            Ok(result.failures.is_empty())
        }
    }
}
