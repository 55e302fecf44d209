//! fw-fixate: turns a verified staging tree into an installed version.
//!
//! 1. Refuses a tree whose `.fw/verified` does not record the BLAKE3 of its
//!    current manifest (run fw-verify first).
//! 2. Shares: every file whose content, mode and owner equal a file of any
//!    installed version (found through their manifests, not by hashing
//!    them again) is replaced by a hard link to it, atomically (link to a
//!    temporary name, rename over). fw-unpack's fast path has usually done
//!    this already; fixate does what is left. Installed files are never
//!    opened for writing.
//! 3. Makes the tree durable (syncfs), then moves it to `TARGET/NAME` (or
//!    `NAME-1`, `NAME-2`, …) with one rename(2) that never replaces, and
//!    makes that directory entry durable (fsync of the target).
//!
//! A tree whose manifest is identical (same bytes, so same name, version
//! and content) to an installed version's is refused (exit 5) unless
//! `reinstall`: installing it again would only make a NAME-1 copy of it.
//!
//! A crash before the rename leaves the tree in `.fw/staging`, which
//! `fw-switch clean` and `fw-switch recover` remove; the version never
//! appears under its final name incomplete.

pub mod cli;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use fw_core::journal::{Journal, Phase};
use fw_core::manifest::{Kind, Manifest};
use fw_core::target::SharedFiles;
use fw_core::{Error, Result};

pub use fw_core::target::sync_dir;
pub use fw_core::verified::verified_manifest;

/// What fixate did.
#[derive(Debug, Clone, Default)]
pub struct Fixated {
    pub path: PathBuf,
    pub shared_files: u64,
    pub shared_bytes: u64,
    pub written_files: u64,
    pub written_bytes: u64,
}

/// Replaces staging files by hard links to identical installed files.
fn share(tree: &Path, manifest: &Manifest, shared: &SharedFiles, out: &mut Fixated) -> Result<()> {
    // Links each hard-link group of the tree has in the tree.
    let mut in_tree: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
    for entry in &manifest.entries {
        if let Some(first) = &entry.hardlink {
            *in_tree.entry(first.as_str()).or_insert(1) += 1;
        }
    }
    for entry in manifest.entries.iter().filter(|e| e.kind == Kind::File) {
        let path = tree.join(&entry.path);
        let size = entry.size.unwrap_or(0);
        let meta = std::fs::symlink_metadata(&path).map_err(|e| Error::io(path.display(), e))?;
        // More links than the tree makes: fw-unpack linked it from an
        // installed version already (the common case of an upgrade).
        let group = entry.hardlink.as_deref().unwrap_or(&entry.path);
        if meta.nlink() > in_tree.get(group).copied().unwrap_or(1) {
            out.shared_files += 1;
            out.shared_bytes += size;
            continue;
        }
        let installed = shared.find(entry);
        let already = installed
            .as_ref()
            .is_some_and(|(_, m)| m.dev() == meta.dev() && m.ino() == meta.ino());
        match installed {
            Some(_) if already => {
                out.shared_files += 1;
                out.shared_bytes += size;
            }
            Some((source, before)) => {
                let tmp = path.with_file_name(format!(
                    ".fw-link-{}",
                    path.file_name().and_then(|n| n.to_str()).unwrap_or("file")
                ));
                let _ = std::fs::remove_file(&tmp);
                std::fs::hard_link(&source, &tmp)
                    .and_then(|()| std::fs::rename(&tmp, &path))
                    .map_err(|e| {
                        let _ = std::fs::remove_file(&tmp);
                        Error::io(
                            format!("linking {} to {}", path.display(), source.display()),
                            e,
                        )
                    })?;
                shared.linked(&source, &before);
                out.shared_files += 1;
                out.shared_bytes += size;
            }
            None if entry.hardlink.is_some() => {}
            None => {
                out.written_files += 1;
                out.written_bytes += size;
            }
        }
    }
    Ok(())
}

/// The first free name among NAME, NAME-1, NAME-2, … and moves `tree`
/// there without ever replacing anything.
fn move_into_place(tree: &Path, target: &Path, name: &str) -> Result<PathBuf> {
    use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};
    for n in 0..10_000u32 {
        let candidate = if n == 0 {
            target.join(name)
        } else {
            target.join(format!("{name}-{n}"))
        };
        if candidate.symlink_metadata().is_ok() {
            continue;
        }
        // The journal names the directory before it exists, so that
        // `fw-switch recover` can remove it if we die right after the rename.
        let candidate_name = candidate
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or(name);
        Journal::advance(target, Phase::Fixating, Some(candidate_name))?;
        match renameat2(
            AT_FDCWD,
            tree,
            AT_FDCWD,
            &candidate,
            RenameFlags::RENAME_NOREPLACE,
        ) {
            Ok(()) => return Ok(candidate),
            Err(nix::errno::Errno::EEXIST) => continue,
            Err(nix::errno::Errno::EXDEV) => {
                return Err(Error::failed(format!(
                    "{} is on another file system than {}: fw-fixate moves, never copies; \
                     unpack with --target {}",
                    tree.display(),
                    target.display(),
                    target.display()
                )))
            }
            Err(e) => {
                return Err(Error::io(
                    format!("moving {} to {}", tree.display(), candidate.display()),
                    std::io::Error::from(e),
                ))
            }
        }
    }
    Err(Error::failed(format!(
        "no free name for {name} in {}",
        target.display()
    )))
}

/// Refuses a tree identical to an installed version: one whose manifest
/// has the tree's digest. Only digests are compared (equal digests, equal
/// bytes): no installed manifest is parsed or held.
fn refuse_reinstall(target: &Path, manifest: &Manifest, digest: &str) -> Result<()> {
    let same = fw_core::target::installed_dirs(target)
        .into_iter()
        .find(|dir| fw_core::target::manifest_digest(dir).is_ok_and(|d| d == digest));
    match same {
        Some(same) => {
            let dir = same.file_name().unwrap_or_default().to_string_lossy();
            Err(Error::invalid(format!(
                "{} {} is installed already as {dir} in {} (identical manifest): nothing \
                 changed; `fw-switch to {dir}` makes it current, --reinstall installs it again",
                manifest.name,
                manifest.version,
                target.display()
            )))
        }
        None => Ok(()),
    }
}

/// Fixates the verified staging tree `tree` into `target`; with
/// `reinstall`, also a tree identical to an installed version. `flush`
/// shows the wait for the disk (see [`fw_core::progress::flushing`]).
pub fn fixate(
    tree: &Path,
    target: &Path,
    reinstall: bool,
    flush: fw_core::progress::ProgressBar,
) -> Result<Fixated> {
    let tree = tree
        .canonicalize()
        .map_err(|e| Error::io(tree.display(), e))?;
    let target = target
        .canonicalize()
        .map_err(|e| Error::io(target.display(), e))?;
    if tree.parent() == Some(target.as_path()) {
        return Err(Error::usage(format!(
            "{} is installed already; give a staging tree from fw-unpack",
            tree.display()
        )));
    }
    let verified = fw_core::verified::verified_version(&tree)?;
    let manifest = verified.manifest;
    if !reinstall {
        refuse_reinstall(&target, &manifest, &verified.digest)?;
    }
    let mut out = Fixated::default();
    let shared = SharedFiles::of_target(&target);
    share(&tree, &manifest, &shared, &mut out)?;
    shared.save();

    // Every byte of the new version on disk before it gets its name.
    let dir = std::fs::File::open(&tree).map_err(|e| Error::io(tree.display(), e))?;
    fw_core::progress::flushing(flush, || nix::unistd::syncfs(&dir))
        .map_err(|e| Error::io(format!("syncfs {}", tree.display()), e.into()))?;

    let work_dir = tree.parent().map(Path::to_path_buf);
    out.path = move_into_place(&tree, &target, &manifest.name)?;
    sync_dir(&target)?;
    let installed_name = out.path.file_name().and_then(|n| n.to_str());
    Journal::advance(&target, Phase::Fixated, installed_name)?;
    // The now empty `unpack-XXXX` directory fw-unpack made.
    if let Some(work) = work_dir {
        if work.starts_with(fw_core::target::staging_dir(&target)) {
            let _ = std::fs::remove_dir(&work);
        }
    }
    Ok(out)
}
