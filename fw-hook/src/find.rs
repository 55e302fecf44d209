//! Finding a version's hook, and saying why one cannot run.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use fw_core::{Error, Result};

use crate::HookName;

/// The version directory `path`, absolute and checked to be a directory.
pub fn version_dir(path: &Path) -> Result<PathBuf> {
    // A missing path exits 1 as in every tool.
    let abs = std::fs::canonicalize(fw_core::cli::existing(path)?).map_err(|e| {
        Error::usage(format!(
            "{}: {e}: give the version's directory (e.g. /opt/firmware/NAME)",
            path.display()
        ))
    })?;
    if !abs.is_dir() {
        return Err(Error::usage(format!(
            "{} is not a directory: give the version's directory (e.g. /opt/firmware/NAME)",
            path.display()
        )));
    }
    Ok(abs)
}

/// The hook `version/.NAME` if there is one; an error if it is there but
/// cannot be run (not a regular file, not executable, a dangling link).
pub fn find_hook(version: &Path, name: HookName) -> Result<Option<PathBuf>> {
    let hook = version.join(name.file_name());
    match std::fs::symlink_metadata(&hook) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("hook {}", hook.display()), e)),
        Ok(_) => {}
    }
    let meta = std::fs::metadata(&hook).map_err(|e| {
        Error::failed(format!(
            "hook {} is a link that does not resolve ({e}): point it at an executable \
             file in the version, or remove it",
            hook.display()
        ))
    })?;
    if !meta.is_file() {
        return Err(Error::failed(format!(
            "hook {} is not a regular file: a hook must be an executable file \
             (a script with a #! line, or a program); replace or remove it",
            hook.display()
        )));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(Error::failed(format!(
            "hook {} is not executable: make it so in the source tree \
             (chmod 755 {}) and repack the version, or remove it",
            hook.display(),
            name.file_name()
        )));
    }
    Ok(Some(hook))
}

/// Runs the hook `req.name` of version `req.version`, forwarding its output
/// line by line to `out` with a `[NAME] ` prefix, retrying while it exits 3.
///
/// Errors: exit 2 for a bad `PATH` or `FW_DIRECTION`; exit 3 if the hook
/// still asks to retry later when the retries are used up; exit 1 for any
/// other failure (the hook cannot run, exits non-zero, is killed by a
/// signal, times out, or we are interrupted).
pub(crate) fn cannot_start(hook: &Path, error: io::Error) -> Error {
    const ENOEXEC: i32 = 8;
    const EACCES: i32 = 13;
    const ENOENT: i32 = 2;
    let hint = match error.raw_os_error() {
        Some(ENOENT) => {
            let interpreter = shebang(hook)
                .map(|i| format!(" ({})", i.to_string_lossy()))
                .unwrap_or_default();
            format!(
                "its interpreter{interpreter} is not installed: fix the #! line or install \
                 the interpreter"
            )
        }
        Some(EACCES) => "permission denied: make it executable, and check that its file \
                         system is not mounted noexec"
            .to_owned(),
        Some(ENOEXEC) => "it is not a program the kernel can run: start a script with a #! \
                          line such as #!/bin/sh"
            .to_owned(),
        _ => "check the hook and the version's directory".to_owned(),
    };
    Error::failed(format!(
        "hook {} cannot be started: {error}; {hint}",
        hook.display()
    ))
}

/// The interpreter named on a script's `#!` line.
fn shebang(hook: &Path) -> Option<OsString> {
    let mut head = [0u8; 256];
    let n = io::Read::read(&mut std::fs::File::open(hook).ok()?, &mut head).ok()?;
    let line = head[..n].strip_prefix(b"#!")?;
    let line = &line[..line.iter().position(|&b| b == b'\n').unwrap_or(line.len())];
    let word = line
        .split(|b| b.is_ascii_whitespace())
        .find(|w| !w.is_empty())?;
    Some(OsStr::from_bytes(word).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::hook;
    use fw_core::Exit;
    use std::os::unix::fs::symlink;

    #[test]
    fn missing_and_unrunnable_hooks() {
        let dir = tempfile::tempdir().unwrap();
        let v = dir.path();
        assert_eq!(find_hook(v, HookName::PreInstall).unwrap(), None);

        let h = hook(v, HookName::PostInstall, "true");
        std::fs::set_permissions(&h, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = find_hook(v, HookName::PostInstall).unwrap_err();
        assert_eq!(err.code, Exit::Failed);
        assert!(err.message.contains("not executable"), "{}", err.message);

        std::fs::create_dir(v.join(".health-check")).unwrap();
        let err = find_hook(v, HookName::HealthCheck).unwrap_err();
        assert!(
            err.message.contains("not a regular file"),
            "{}",
            err.message
        );

        symlink("nowhere", v.join(".pre-install")).unwrap();
        let err = find_hook(v, HookName::PreInstall).unwrap_err();
        assert!(err.message.contains("does not resolve"), "{}", err.message);
    }
}
