//! stdin and stdout as `File`s on fds 0 and 1: sequoia's readers and
//! writers must be Send + Sync, which the locked, line-buffered std handles
//! are not (fw-sign writes the package, fw-unseal reads it).

use std::fs::File;
use std::os::fd::AsFd;

use crate::{Error, Result};

/// A `File` on a duplicate of fd 0.
pub fn stdin_file() -> Result<File> {
    std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .map(File::from)
        .map_err(|e| Error::io("stdin", e))
}

/// A `File` on a duplicate of fd 1.
pub fn stdout_file() -> Result<File> {
    std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .map(File::from)
        .map_err(|e| Error::io("stdout", e))
}
