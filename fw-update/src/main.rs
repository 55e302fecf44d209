use std::process::ExitCode;

use clap::Parser;
use fw_core::Result;
use fw_update::cli::{Cli, Cmd};
use fw_update::config::{self, Overrides};
use fw_update::{Action, Updater};

fn run(cli: Cli) -> Result<()> {
    cli.verbosity.apply();
    let file = config::load(cli.config.as_deref())?;
    let settings = config::settle(
        file,
        Overrides {
            index: cli.index,
            target: cli.target,
            keyring: cli.keyring,
            status: cli.status,
            name: cli.name,
            auto_download: cli.auto_download,
            auto_install: cli.auto_install,
            check_interval: cli.check_interval,
            retry_interval: cli.retry_interval,
            max_retries: cli.max_retries,
            download_retries: cli.download_retries,
            stream: cli.stream,
            fw_install: cli.fw_install,
            download_gate: cli.download_gate,
            install_gate: cli.install_gate,
        },
    )?;
    let mut updater = Updater::new(settings)?;
    match cli.command {
        Cmd::Check => updater.cycle(Action::Check),
        Cmd::Download => updater.cycle(Action::Download),
        Cmd::Install => updater.cycle(Action::Install),
        Cmd::Run if cli.once => updater.cycle(Action::Run),
        Cmd::Run => updater.run_forever(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    fw_core::error::report("fw-update", run(cli))
}
