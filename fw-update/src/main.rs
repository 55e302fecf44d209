use std::process::ExitCode;

use fw_core::Result;
use fw_update::cli::{Cli, Cmd};
use fw_update::{config, Action, Updater};

fn run(cli: Cli) -> Result<()> {
    cli.verbosity.apply();
    let file = config::load(cli.config.as_deref())?;
    let mut settings = cli.settings;
    if cli.full {
        settings.delta = Some(false);
    }
    let mut updater = Updater::new(settings.over(file))?;
    match cli.command {
        Cmd::Check => updater.cycle(Action::Check),
        Cmd::Download => updater.cycle(Action::Download),
        Cmd::Install => updater.cycle(Action::Install),
        Cmd::Run if cli.once => updater.cycle(Action::Run),
        Cmd::Run => updater.run_forever(),
    }
}

fn main() -> ExitCode {
    // Before any thread starts: a SIGCHLD inherited ignored would lose every child's status.
    fw_nbio::reset_sigchld();
    let cli = fw_core::cli::parse::<Cli>();
    fw_core::error::report("fw-update", run(cli))
}
