use std::io::Write;
use std::process::ExitCode;

use fw_core::journal::Journal;
use fw_core::Exit as FwExit;
use fw_core::{note, Error, Result};
use fw_switch::cli::{Cli, Command, JournalAction};
use fw_switch::{Outcome, Target};

fn print_status(status: &fw_switch::Status, json: bool) -> Result<()> {
    let text = if json {
        serde_json::to_string_pretty(status).expect("status serializes") + "\n"
    } else {
        status.to_string()
    };
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .map_err(|e| Error::io("stdout", e))
}

fn recovered(target: &Target, recovered: fw_switch::Recovered) -> Result<()> {
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
        Outcome::BelowFloor(message) => Err(Error::security(message)),
        Outcome::Stuck(message) => Err(Error::failed(message)),
    }
}

fn journal(target: &Target, action: JournalAction) -> Result<()> {
    match action {
        JournalAction::Begin => {
            Journal::begin(&target.root, target.link_name(fw_core::target::CURRENT)).map(drop)
        }
        JournalAction::Set { phase, to } => {
            let to = to.map(|p| fw_switch::target::dir_name(&p));
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
        Command::Status { json } => print_status(&target.status()?, json),
        Command::To { path } => {
            let _lock = lock()?;
            let version = target.switch_to(&path)?;
            note!("current -> {}", version.display());
            Ok(())
        }
        Command::Rollback { hooks } => {
            let _lock = lock()?;
            let rolled = target.rollback(&hooks.settings())?;
            note!("rolled back: current -> {}", rolled.version.display());
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
            hooks,
        } => {
            let _lock = lock()?;
            let options = fw_switch::RecoverOptions {
                count_boot: !no_boot_count,
                max_boots: max_boots.max(1),
                hooks: hooks.settings(),
            };
            recovered(&target, target.recover(&options)?)
        }
        Command::Journal { action } => {
            let _lock = lock()?;
            journal(&target, action)
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
    let cli = fw_core::cli::parse::<Cli>();
    fw_core::error::report("fw-switch", run(cli))
}
