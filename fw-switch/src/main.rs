use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use fw_core::journal::Journal;
use fw_core::ExitCode as FwExit;
use fw_core::{note, Error, Result};
use fw_switch::cli::{Cli, Command, JournalAction};
use fw_switch::{Outcome, Target};

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
        text += &format!("security floor {}\n", status.security_floor);
        if let Some(journal) = &status.transaction {
            text += &format!(
                "transaction {} (from {} to {}{})\n",
                journal.phase.as_str(),
                journal.from.as_deref().unwrap_or("-"),
                journal.to.as_deref().unwrap_or("-"),
                if journal.boots > 0 {
                    format!(", {} boots", journal.boots)
                } else {
                    String::new()
                }
            );
        }
        text += "\n";
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
    let wait = cli.wait;
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
        Command::Recover {
            max_boots,
            no_boot_count,
            hook_timeout,
            hook_retries,
            hook_retry_interval,
        } => {
            let _lock = lock()?;
            let options = fw_switch::RecoverOptions {
                count_boot: !no_boot_count,
                max_boots: max_boots.max(1),
                hooks: fw_hook::Settings {
                    timeout: (!hook_timeout.is_zero()).then_some(hook_timeout),
                    retries: hook_retries,
                    retry_interval: hook_retry_interval,
                    signal_mask: None,
                },
            };
            let recovered = target.recover(&options)?;
            for line in &recovered.done {
                note!("{line}");
            }
            match recovered.outcome {
                Outcome::Consistent | Outcome::Undone => {
                    if recovered.done.is_empty() {
                        fw_core::detail!("{} is consistent", target.root.display());
                    }
                    Ok(())
                }
                Outcome::RolledBack(version) => Err(Error::new(
                    FwExit::RolledBack,
                    format!("rolled back: current -> {}", version.display()),
                )),
                Outcome::Failsafe(version) => Err(Error::new(
                    FwExit::Failsafe,
                    format!("on the failsafe version: current -> {}", version.display()),
                )),
                Outcome::Stuck(message) => Err(Error::failed(message)),
            }
        }
        Command::Journal { action } => {
            let _lock = lock()?;
            match action {
                JournalAction::Begin => {
                    let from = target
                        .link(fw_core::target::CURRENT)
                        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
                    Journal::begin(from).save(&target.root)
                }
                JournalAction::Set { phase, to } => {
                    let to = to.map(|p| {
                        p.file_name()
                            .unwrap_or(p.as_os_str())
                            .to_string_lossy()
                            .into_owned()
                    });
                    if Journal::load(&target.root)?.is_none() {
                        return Err(Error::usage(
                            "no transaction in flight: `fw-switch journal begin` first",
                        ));
                    }
                    Journal::advance(&target.root, phase, to.as_deref())
                }
                JournalAction::Clear => Journal::clear(&target.root),
            }
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
