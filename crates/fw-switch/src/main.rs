use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use fw_core::{note, Error, Result};
use fw_switch::Target;

/// Switch the firmware target's links atomically, and keep it tidy.
///
/// A target holds versions side by side (TARGET/NAME, NAME-1, …) and three
/// relative links: current, previous and failsafe, each replaced by
/// rename(2) and fsync, so a power cut leaves the old link or the new one.
/// Mutating commands take TARGET/.fw/lock: a second writer gets exit 6, or
/// waits with --wait. A target whose `current` is a real directory (set up
/// by hand) is adopted first: it becomes a version and the failsafe.
///
/// Examples:
///   fw-switch status
///   fw-switch to /opt/firmware/sample-setup-2
///   fw-switch rollback
///   fw-switch link-tree /opt/firmware/current/etc /etc
#[derive(Parser)]
#[command(name = "fw-switch", version, about, long_about, verbatim_doc_comment)]
struct Cli {
    /// The firmware target [default: $FW_TARGET, else /opt/firmware].
    #[arg(long, global = true, value_name = "T")]
    target: Option<PathBuf>,
    /// Wait up to SECS for the target lock instead of failing at once
    /// (exit 6) [default when given without SECS: 3600].
    #[arg(long, global = true, value_name = "SECS", num_args = 0..=1, default_missing_value = "3600")]
    wait: Option<f64>,
    #[command(flatten)]
    verbosity: fw_core::cli::Verbosity,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show current, previous, failsafe and every installed version (name,
    /// version, security_version, size, bytes shared with other versions).
    Status {
        /// Print JSON for scripts instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Make PATH current (a verified version of the target: a path or a
    /// directory name); the old current becomes previous.
    To {
        #[arg(value_name = "PATH")]
        path: PathBuf,
    },
    /// Make previous current again (the old current becomes previous).
    Rollback,
    /// Make the failsafe version current.
    Failsafe,
    /// Make PATH the failsafe version: the last resort, never removed.
    SetFailsafe {
        #[arg(value_name = "PATH")]
        path: PathBuf,
    },
    /// Accept the current version: raise the anti-rollback floor to its
    /// security_version (TARGET/.fw/security-floor).
    Commit,
    /// Bring the target to a consistent state (run at boot): adopt a
    /// hand-made current, restore a lost current link, remove leftover
    /// temporary links and dead staging directories.
    Recover,
    /// Remove versions beyond the N newest (never current, previous or
    /// failsafe) and dead staging directories; report what was freed.
    Clean {
        /// How many of the newest versions to keep.
        #[arg(long, value_name = "N", default_value_t = 3)]
        keep: usize,
    },
    /// Symlink every file under SRC (e.g. /opt/firmware/current/etc) into
    /// DEST (e.g. /etc), creating directories; idempotent. Real files in
    /// DEST are left alone unless --force.
    LinkTree {
        #[arg(value_name = "SRC")]
        src: PathBuf,
        #[arg(value_name = "DEST")]
        dest: PathBuf,
        /// Replace files and links in DEST that are in the way.
        #[arg(long)]
        force: bool,
    },
}

fn print_status(status: &fw_switch::Status, json: bool) -> Result<()> {
    let mut out = std::io::stdout().lock();
    let text = if json {
        let mut text = serde_json::to_string_pretty(status).expect("status serializes");
        text.push('\n');
        text
    } else {
        let mut text = format!("target {}\n", status.target.display());
        for (label, value) in [
            ("current", &status.current),
            ("previous", &status.previous),
            ("failsafe", &status.failsafe),
        ] {
            text += &format!("{label:<9} {}\n", value.as_deref().unwrap_or("-"));
        }
        if status.current_is_directory {
            text += "current is a real directory: `fw-switch recover` adopts it\n";
        }
        text += &format!("security floor {}\n\n", status.security_floor);
        text += &format!(
            "{:<28} {:<12} {:>4} {:>12} {:>12}  {}\n",
            "VERSION", "FW VERSION", "SEC", "SIZE", "SHARED", "LINKS"
        );
        for v in &status.versions {
            text += &format!(
                "{:<28} {:<12} {:>4} {:>12} {:>12}  {}{}\n",
                v.dir,
                v.version.as_deref().unwrap_or("-"),
                v.security_version
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "-".into()),
                v.size,
                v.shared_bytes,
                v.links.join(","),
                if v.verified || v.name.is_none() {
                    ""
                } else {
                    " (not verified)"
                }
            );
        }
        if !status.staging.is_empty() {
            text += &format!("\nstaging: {}\n", status.staging.join(", "));
        }
        text
    };
    out.write_all(text.as_bytes())
        .map_err(|e| Error::io("stdout", e))
}

fn run(cli: Cli) -> Result<()> {
    cli.verbosity.apply();
    if let Command::LinkTree { src, dest, force } = &cli.command {
        return link_tree(src, dest, *force);
    }
    let target_path = fw_core::target::resolve(cli.target.as_deref());
    let target = Target::new(&target_path)?;
    let wait = cli.wait.map(std::time::Duration::from_secs_f64);
    let lock = || fw_core::lock::acquire(&target.root, wait);
    match cli.command {
        Command::Status { json } => print_status(&target.status(), json),
        Command::To { path } => {
            let _lock = lock()?;
            let version = target.switch_to(&path)?;
            note!("current -> {}", version.display());
            Ok(())
        }
        Command::Rollback => {
            let _lock = lock()?;
            let version = target.rollback()?;
            note!("rolled back: current -> {}", version.display());
            Ok(())
        }
        Command::Failsafe => {
            let _lock = lock()?;
            let version = target.to_failsafe()?;
            note!("on the failsafe: current -> {}", version.display());
            Ok(())
        }
        Command::SetFailsafe { path } => {
            let _lock = lock()?;
            let version = target.set_failsafe(&path)?;
            note!("failsafe -> {}", version.display());
            Ok(())
        }
        Command::Commit => {
            let _lock = lock()?;
            let floor = target.commit()?;
            note!("committed; security floor {floor}");
            Ok(())
        }
        Command::Recover => {
            let _lock = lock()?;
            let done = target.recover()?;
            if done.is_empty() {
                note!("{} is consistent", target.root.display());
            }
            for line in done {
                note!("{line}");
            }
            Ok(())
        }
        Command::Clean { keep } => {
            let _lock = lock()?;
            let (removed, freed) = target.clean(keep)?;
            note!(
                "removed {} version{}{}, freed {freed} bytes",
                removed.len(),
                if removed.len() == 1 { "" } else { "s" },
                if removed.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", removed.join(", "))
                }
            );
            Ok(())
        }
        Command::LinkTree { .. } => unreachable!("handled above: needs no target"),
    }
}

fn link_tree(src: &std::path::Path, dest: &std::path::Path, force: bool) -> Result<()> {
    let report = fw_switch::link_tree(src, dest, force)?;
    note!(
        "linked {}, unchanged {}, created {} directories",
        report.linked,
        report.unchanged,
        report.dirs_created
    );
    for skipped in &report.skipped {
        note!(
            "left alone (in the way; --force replaces it): {}",
            skipped.display()
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    fw_core::error::report("fw-switch", run(cli))
}
