//! Where the other fw tools are: next to this binary, else on PATH.

use std::path::{Path, PathBuf};

/// A binary of fw: next to this one, else on PATH.
pub fn tool(name: &str) -> PathBuf {
    if let Some(dir) = exe_dir() {
        let path = dir.join(name);
        if path.is_file() {
            return path;
        }
    }
    PathBuf::from(name)
}

/// The directory of this binary.
pub(crate) fn exe_dir() -> Option<PathBuf> {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
}

/// scripts/fw-install: `--fw-install`/`fw_install`, else `FW_INSTALL`, else
/// next to this binary, else a checkout's `scripts/` (for `cargo build`),
/// else PATH.
pub fn find_fw_install(configured: Option<&Path>) -> PathBuf {
    if let Some(path) = configured {
        return path.to_path_buf();
    }
    if let Some(value) = std::env::var_os("FW_INSTALL").filter(|v| !v.is_empty()) {
        return PathBuf::from(value);
    }
    if let Some(dir) = exe_dir() {
        for candidate in [dir.join("fw-install"), dir.join("../../scripts/fw-install")] {
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    PathBuf::from("fw-install")
}
