//! fw-hook: runs one hook of a firmware version (`PATH/.pre-install`,
//! `PATH/.post-install` or `PATH/.health-check`) the way DESIGN.md says:
//! `$1` is the version's absolute path, the working directory is that path,
//! `FW_HOOK`, `FW_FROM`, `FW_TO`, `FW_DIRECTION` and `FW_ATTEMPT` are in its
//! environment, its output is forwarded line by line to our stderr with a
//! `[NAME] ` prefix, exit 3 means "not now, retry later" (retried with
//! doubling, jittered back-off), and a timeout kills its whole process group.
//!
//! The hook runs through [`fw_nbio`], which starts it in a process group of
//! its own and kills that group on timeout or interruption.

pub mod cli;
mod env;
mod find;
mod interrupt;
mod name;
mod run;
#[cfg(test)]
mod testing;

pub use env::{
    compare_versions, current_version, default_direction, read_manifest, resolve_env, GivenEnv,
    HookEnv,
};
pub use find::{find_hook, version_dir};
pub use interrupt::Interrupt;
pub use name::{Direction, HookName};
pub use run::{run, Outcome, Request, Settings, RETRY_LATER};

use find::cannot_start;
