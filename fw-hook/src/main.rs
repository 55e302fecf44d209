use std::process::ExitCode;
use std::sync::Arc;

use fw_core::Result;
use fw_hook::cli::Cli;
use fw_hook::{GivenEnv, Interrupt, Request, Settings};

fn run(cli: Cli) -> Result<()> {
    cli.verbosity.apply();
    let interrupt = Arc::new(Interrupt::new());
    // Kills the running hook's process group on SIGTERM, SIGINT or SIGHUP;
    // the run then ends with an error. The hook starts with the mask from before.
    let on_signal = interrupt.clone();
    let signal_mask =
        fw_core::signals::on_termination(move |signal| on_signal.trigger(signal as i32))?;
    let request = Request {
        name: cli.name,
        version: cli.path,
        target: fw_core::target::resolve(cli.target.as_deref()),
        given: GivenEnv::from_process_env(),
        settings: Settings {
            timeout: (!cli.timeout.is_zero()).then_some(cli.timeout),
            retries: cli.retries,
            retry_interval: cli.retry_interval,
            signal_mask: Some(signal_mask),
        },
    };
    // Hooks speak on stderr; with JSON logs, each line as a record.
    fw_hook::run(&request, &interrupt, fw_core::log::child_output("fw-hook")).map(drop)
}

fn main() -> ExitCode {
    // Before any thread starts: a SIGCHLD inherited ignored would lose the hook's status.
    fw_nbio::reset_sigchld();
    let cli = fw_core::cli::parse::<Cli>();
    fw_core::error::report("fw-hook", run(cli))
}
