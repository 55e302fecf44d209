//! The staging directory: where unpacking happens, how much room it
//! has, and its removal on failure or signal.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use fw_core::{Error, Result};

/// The staging directory being written, shared with a signal handler that
/// removes it. Every change to the file system happens under `lock` (shared
/// between the threads that write files), so the handler, which takes it
/// exclusively, never races a half-made entry.
#[derive(Clone, Default)]
pub struct Cleanup {
    current: Arc<RwLock<Option<PathBuf>>>,
}

impl Cleanup {
    pub fn new() -> Self {
        Self::default()
    }

    /// Held while changing the file system.
    pub(crate) fn lock(&self) -> RwLockReadGuard<'_, Option<PathBuf>> {
        self.current.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Held while setting or removing the directory being written.
    pub(crate) fn exclusive(&self) -> RwLockWriteGuard<'_, Option<PathBuf>> {
        self.current.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Removes the staging directory being written, if any, and keeps the
    /// lock so that nothing more is written; for a signal handler's thread
    /// that exits the process next.
    pub fn abort(&self) -> Option<PathBuf> {
        let mut guard = self.exclusive();
        let removed = guard.take();
        if let Some(dir) = &removed {
            let _ = std::fs::remove_dir_all(dir);
        }
        std::mem::forget(guard);
        removed
    }
}

/// The default `--max-bytes`: 90% of the space free for unprivileged
/// writers on the staging directory's file system.
pub fn default_max_bytes(staging: &Path) -> Result<u64> {
    let stat = nix::sys::statvfs::statvfs(staging).map_err(|e| {
        Error::failed(format!(
            "{}: cannot read free space: {e}",
            staging.display()
        ))
    })?;
    let free = (stat.blocks_available() as u64).saturating_mul(stat.fragment_size() as u64);
    Ok(free / 10 * 9)
}

/// Makes `TARGET/.fw/staging` (mode 0700) if missing.
pub fn prepare_staging(target: &Path) -> Result<PathBuf> {
    if !target.is_dir() {
        return Err(Error::failed(format!(
            "target {} is not a directory: create it, or give --target",
            target.display()
        )));
    }
    let state = fw_core::target::state_dir(target);
    let staging = fw_core::target::staging_dir(target);
    for dir in [&state, &staging] {
        match std::fs::create_dir(dir) {
            Ok(()) => std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| Error::io(dir.display(), e))?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io(dir.display(), e)),
        }
        fw_core::target::require_real_dir(dir)?;
    }
    Ok(staging)
}
