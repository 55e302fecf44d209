use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use fw_core::{Error, Result};
use fw_hook::cli::Cli;
use fw_hook::{GivenEnv, Interrupt, Request, Settings};

/// Kills the running hook's process group on SIGTERM, SIGINT or SIGHUP; the
/// run then ends with an error. Returns the signal mask from before, for the
/// hook to start with.
fn interrupt_on_signals(interrupt: Arc<Interrupt>) -> Result<nix::sys::signal::SigSet> {
    use nix::sys::signal::{SigSet, Signal};
    let mut signals = SigSet::empty();
    for signal in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        signals.add(signal);
    }
    // Blocked here, before any other thread starts, so only the waiter below
    // sees them. Children would inherit the mask: the hook gets `before`.
    let before = signals
        .thread_swap_mask(nix::sys::signal::SigmaskHow::SIG_BLOCK)
        .map_err(|e| Error::failed(format!("cannot block signals: {e}")))?;
    std::thread::spawn(move || {
        while let Ok(signal) = signals.wait() {
            interrupt.trigger(signal as i32);
        }
    });
    Ok(before)
}

fn run(cli: Cli) -> Result<()> {
    cli.verbosity.apply();
    let interrupt = Arc::new(Interrupt::new());
    let signal_mask = interrupt_on_signals(interrupt.clone())?;
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
    fw_hook::run(&request, &interrupt, Box::new(std::io::stderr())).map(drop)
}

fn main() -> ExitCode {
    // Before any thread starts: a SIGCHLD inherited ignored would lose the hook's status.
    fw_nbio::reset_sigchld();
    let cli = Cli::parse();
    fw_core::error::report("fw-hook", run(cli))
}
