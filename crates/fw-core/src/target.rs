//! The on-device layout of DESIGN.md: where the target is and the paths
//! fw keeps inside it.

use std::path::{Path, PathBuf};

/// Where the target is when `--target` is not given.
pub const DEFAULT_TARGET: &str = "/opt/firmware";

/// `--target T`, else `FW_TARGET`, else `/opt/firmware`.
pub fn resolve(arg: Option<&Path>) -> PathBuf {
    if let Some(path) = arg {
        return path.to_path_buf();
    }
    match std::env::var_os("FW_TARGET") {
        Some(value) if !value.is_empty() => PathBuf::from(value),
        _ => PathBuf::from(DEFAULT_TARGET),
    }
}

/// `TARGET/.fw`: fw's own state.
pub fn state_dir(target: &Path) -> PathBuf {
    target.join(".fw")
}

/// `TARGET/.fw/staging`: fw-unpack's work, on the target's filesystem.
pub fn staging_dir(target: &Path) -> PathBuf {
    state_dir(target).join("staging")
}
