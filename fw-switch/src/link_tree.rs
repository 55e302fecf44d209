//! `link-tree`: Fussy's way of exposing a version's files at fixed paths
//! (e.g. /etc) through `current`, so that they follow every switch.

use std::path::{Path, PathBuf};

use fw_core::{Error, Result};

/// What `link-tree` did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LinkTreeReport {
    pub linked: u64,
    pub unchanged: u64,
    pub skipped: Vec<PathBuf>,
    pub dirs_created: u64,
}

/// Fussy's link-tree: symlinks every file and symlink under `src` into
/// `dest`, creating directories; a path already linked right is left
/// alone; a real file or other link is replaced only with `force`. Every
/// directory it changed is fsynced before it returns.
pub fn link_tree(src: &Path, dest: &Path, force: bool) -> Result<LinkTreeReport> {
    if !src.is_dir() {
        return Err(Error::usage(format!(
            "{} is not a directory",
            src.display()
        )));
    }
    let src_abs = if src.is_absolute() {
        src.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| Error::io("the current directory", e))?
            .join(src)
    };
    let mut report = LinkTreeReport::default();
    // Directories whose entries changed: fsynced at the end, so that what
    // the report says is linked survives a power cut.
    let mut changed = std::collections::BTreeSet::<PathBuf>::new();
    for entry in walkdir::WalkDir::new(&src_abs)
        .min_depth(1)
        .follow_links(false)
        .sort_by_file_name()
    {
        let entry = entry.map_err(|e| Error::failed(format!("{}: {e}", src.display())))?;
        let rel = entry.path().strip_prefix(&src_abs).expect("below src");
        let out = dest.join(rel);
        let link_to = src_abs.join(rel);
        let existing = std::fs::symlink_metadata(&out).ok();
        if entry.file_type().is_dir() {
            match existing {
                Some(m) if m.is_dir() => {}
                Some(_) if !force => {
                    report.skipped.push(out);
                }
                _ => {
                    if existing.is_some() {
                        std::fs::remove_file(&out).map_err(|e| Error::io(out.display(), e))?;
                    }
                    std::fs::create_dir_all(&out).map_err(|e| Error::io(out.display(), e))?;
                    changed.extend(out.parent().map(Path::to_path_buf));
                    changed.insert(out);
                    report.dirs_created += 1;
                }
            }
            continue;
        }
        match existing {
            Some(m)
                if m.file_type().is_symlink()
                    && std::fs::read_link(&out).ok().as_deref() == Some(link_to.as_path()) =>
            {
                report.unchanged += 1;
            }
            Some(m) if m.is_dir() => report.skipped.push(out),
            Some(_) if !force => report.skipped.push(out),
            _ => {
                if let Some(parent) = out.parent() {
                    if !parent.is_dir() {
                        report.skipped.push(out);
                        continue;
                    }
                }
                let tmp = out.with_file_name(format!(
                    ".{}.fw-link-tree",
                    out.file_name().unwrap_or_default().to_string_lossy()
                ));
                let _ = std::fs::remove_file(&tmp);
                std::os::unix::fs::symlink(&link_to, &tmp)
                    .and_then(|()| std::fs::rename(&tmp, &out))
                    .map_err(|e| Error::io(out.display(), e))?;
                changed.extend(out.parent().map(Path::to_path_buf));
                report.linked += 1;
            }
        }
    }
    for dir in &changed {
        fw_core::target::sync_dir(dir)?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_tree_is_idempotent_and_never_overwrites_without_force() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        std::fs::create_dir_all(src.join("etc/app")).unwrap();
        std::fs::write(src.join("etc/app/conf"), b"x").unwrap();
        std::fs::write(src.join("etc/real"), b"y").unwrap();
        let dest = tmp.path().join("dest");
        std::fs::create_dir_all(dest.join("etc")).unwrap();
        std::fs::write(dest.join("etc/real"), b"mine").unwrap();

        let first = link_tree(&src, &dest, false).unwrap();
        assert_eq!(first.linked, 1);
        assert_eq!(first.skipped, vec![dest.join("etc/real")]);
        assert_eq!(std::fs::read(dest.join("etc/app/conf")).unwrap(), b"x");
        assert_eq!(std::fs::read(dest.join("etc/real")).unwrap(), b"mine");
        let again = link_tree(&src, &dest, false).unwrap();
        assert_eq!((again.linked, again.unchanged), (0, 1));
        let forced = link_tree(&src, &dest, true).unwrap();
        assert_eq!(forced.linked, 1);
        assert_eq!(std::fs::read(dest.join("etc/real")).unwrap(), b"y");
    }
}
