//! The tree's entries: each checked against the manifest (type, mode,
//! owner, times, links, size, extended attributes) and against the tree
//! made so far (never through a link, hard links only to earlier files),
//! then created.

use std::io::{self, Read};

use nix::sys::stat::{utimensat, UtimensatFlags};

use fw_core::manifest::{self, Kind};
use fw_core::{xattrs, Result};

use super::{owner, Extractor, PendingDir};
use crate::files::timespec;
use crate::paths::split_path;

fn entry_kind_name(kind: tar::EntryType) -> &'static str {
    match kind {
        tar::EntryType::Char => "a character device node",
        tar::EntryType::Block => "a block device node",
        tar::EntryType::Fifo => "a fifo",
        tar::EntryType::GNUSparse => "a sparse file",
        tar::EntryType::XGlobalHeader => "a PAX global header",
        tar::EntryType::GNULongName | tar::EntryType::GNULongLink => "a stray GNU long-name header",
        _ => "an entry of an unsupported type",
    }
}

impl Extractor<'_> {
    pub(crate) fn tree_entry(
        &mut self,
        (top, rel, display): (&str, &str, &str),
        entry: &mut tar::Entry<'_, impl Read>,
    ) -> Result<()> {
        let display = display.to_string();
        if top != self.name {
            return Err(self.refuse(
                &display,
                format!("a second top-level directory besides {:?}", self.name),
            ));
        }
        if rel == manifest::FW_DIR || rel.starts_with(".fw/") {
            return Err(self.refuse(
                &display,
                ".fw/ is fw's own and holds only the manifest and its signature",
            ));
        }
        let index = self
            .manifest
            .as_ref()
            .expect("the manifest came first")
            .position(rel);
        if let Some(index) = index {
            if std::mem::replace(&mut self.seen[index], true) {
                return Err(self.refuse(&display, "the path appears twice in the archive"));
            }
        }
        let header = entry.header().clone();
        let etype = header.entry_type();
        let kind = match etype {
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::Link => {
                Kind::File
            }
            tar::EntryType::Directory => Kind::Dir,
            tar::EntryType::Symlink => Kind::Symlink,
            other => {
                return Err(self.refuse(
                    &display,
                    format!("{} cannot be in a package", entry_kind_name(other)),
                ))
            }
        };
        if rel == "." && kind != Kind::Dir {
            return Err(self.refuse(&display, "the top-level entry must be a directory"));
        }
        // Never write through a link: the parent must be a directory this
        // run made (and so, by induction, every ancestor: a directory is
        // made only inside one this run made).
        if rel != "." {
            let parent = rel.rsplit_once('/').map_or(".", |(parent, _)| parent);
            match self.created_at(parent) {
                Some(Kind::Dir) => {}
                Some(_) => {
                    return Err(self.refuse(
                        &display,
                        format!("it would be written through the symlink or file {top}/{parent}"),
                    ))
                }
                None => {
                    return Err(self.refuse(
                        &display,
                        format!(
                            "its directory {top}/{parent} does not come before it in the archive"
                        ),
                    ))
                }
            }
        }
        // A hard link may only name an earlier regular file of this tree.
        let link_target = if etype == tar::EntryType::Link {
            let target = entry
                .link_name_bytes()
                .ok_or_else(|| self.refuse(&display, "a hard link without a target"))?;
            let target_rel = match split_path(&target) {
                Ok((target_top, target_rel)) if target_top == self.name => target_rel,
                _ => {
                    return Err(self.refuse(
                        &display,
                        format!(
                            "its hard-link target {:?} is not an earlier file of the same tree",
                            String::from_utf8_lossy(&target)
                        ),
                    ))
                }
            };
            if self.created_at(&target_rel) != Some(Kind::File) {
                return Err(self.refuse(
                    &display,
                    format!("its hard-link target {top}/{target_rel} is not an earlier regular file of the tree"),
                ));
            }
            Some(target_rel)
        } else {
            None
        };
        let manifest = self.manifest.as_ref().expect("the manifest came first");
        let Some(index) = index else {
            return Err(self.refuse(&display, "the manifest does not list it"));
        };
        let listed = &manifest.entries[index];
        if listed.kind != kind {
            return Err(self.refuse(
                &display,
                format!("the manifest lists it as a {}", listed.kind.as_str()),
            ));
        }
        let mode = header.mode().unwrap_or(0) & 0o7777;
        if kind != Kind::Symlink && etype != tar::EntryType::Link && mode != listed.mode {
            return Err(self.refuse(
                &display,
                format!(
                    "mode {mode:o} differs from the manifest's {:o}",
                    listed.mode
                ),
            ));
        }
        if let Some(why) = header_mismatch(&header, listed, link_target.as_deref()) {
            return Err(self.refuse(&display, why));
        }
        // The archive's attributes (PAX records) must be the manifest's,
        // which are what is restored.
        let archived = match entry.pax_extensions() {
            Ok(Some(records)) => {
                let records: std::result::Result<Vec<_>, _> = records
                    .map(|r| r.map(|r| (r.key_bytes(), r.value_bytes())))
                    .collect();
                match records {
                    Ok(records) => xattrs::from_pax(records),
                    Err(_) => return Err(self.refuse(&display, "its PAX header is malformed")),
                }
            }
            Ok(None) => xattrs::Xattrs::new(),
            Err(_) => return Err(self.refuse(&display, "its PAX header is malformed")),
        };
        let listed = &self
            .manifest
            .as_ref()
            .expect("the manifest came first")
            .entries[index];
        let some = |x: &xattrs::Xattrs| !x.is_empty();
        if Some(&archived).filter(|x| some(x)) != listed.xattrs.as_deref().filter(|x| some(x)) {
            return Err(self.refuse(
                &display,
                "its extended attributes differ from the manifest's",
            ));
        }
        let listed_xattrs = listed.xattrs.clone();
        // Written content is hashed against the manifest: with --delta
        // that is its only proof; either way it goes into the record of
        // proven inodes, so that fw-verify does not read it again.
        let blake3 = listed.blake3.clone();
        let path = self.tree.join(rel);
        match etype {
            tar::EntryType::Directory => {
                // Made with its final mode and owner when that leaves it
                // writable here; else 0700 until finish_dirs.
                let made_final =
                    rel != "." && mode & 0o700 == 0o700 && self.created_final(&header, mode);
                if rel != "." {
                    use std::os::unix::fs::DirBuilderExt;
                    let _lock = self.files.cleanup().lock();
                    std::fs::DirBuilder::new()
                        .mode(if made_final { mode } else { 0o700 })
                        .create(&path)
                        .map_err(|e| self.io(&path, e))?;
                }
                let (uid, gid) = owner(&header);
                self.dirs.push(PendingDir {
                    path,
                    xattrs: listed_xattrs,
                    mode,
                    uid: uid as u64,
                    gid: gid as u64,
                    mtime: header.mtime().unwrap_or(0),
                    made_final,
                });
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| self.refuse(&display, "a symlink without a target"))?;
                let target = std::str::from_utf8(&target)
                    .map_err(|_| self.refuse(&display, "its symlink target is not UTF-8"))?
                    .to_string();
                if target.is_empty() || target.contains('\0') {
                    return Err(self.refuse(&display, "an empty symlink target"));
                }
                if listed.target.as_deref() != Some(target.as_str()) {
                    return Err(self.refuse(&display, "its target differs from the manifest's"));
                }
                let _lock = self.files.cleanup().lock();
                std::os::unix::fs::symlink(&target, &path).map_err(|e| self.io(&path, e))?;
                if self.as_root && owner(&header) != self.creator {
                    let (uid, gid) = owner(&header);
                    std::os::unix::fs::lchown(&path, Some(uid), Some(gid))
                        .map_err(|e| self.io(&path, e))?;
                }
                let mtime = timespec(header.mtime().unwrap_or(0));
                utimensat(
                    nix::fcntl::AT_FDCWD,
                    &path,
                    &mtime,
                    &mtime,
                    UtimensatFlags::NoFollowSymlink,
                )
                .map_err(|e| self.io(&path, io::Error::from(e)))?;
            }
            tar::EntryType::Link => {
                let target_rel = link_target.expect("checked above");
                // The file it names may still be with a writer thread.
                self.writers.wait_idle()?;
                let _lock = self.files.cleanup().lock();
                let first = self.tree.join(&target_rel);
                let before = std::fs::symlink_metadata(&first).map_err(|e| self.io(&first, e))?;
                // linkat without AT_SYMLINK_FOLLOW: the target is the file itself.
                std::fs::hard_link(&first, &path).map_err(|e| self.io(&path, e))?;
                // The link moved the inode's ctime: so does its record.
                self.files.shared.linked(&first, &before);
            }
            _ => {
                let size = header.entry_size().unwrap_or(u64::MAX);
                if Some(size) != listed.size {
                    return Err(self.refuse(&display, "its size differs from the manifest's"));
                }
                if let Some((installed, before)) = self.files.shared.find(listed) {
                    self.link_installed(&installed, &before, &path, size)?;
                } else {
                    let create = self.create_mode(&header, mode);
                    let finish = self.finish_plan(&header, mode, listed_xattrs, blake3);
                    // Marked created now: a hard link to it waits for the
                    // writers first.
                    self.write_content(&display, path, entry, size, create, finish)?;
                }
            }
        }
        self.created[index] = Some(kind);
        Ok(())
    }
}

/// What of a tree entry's header differs from its manifest entry, beyond
/// the type and mode checked before: owner, modification time (format 2
/// manifests list it), hard-link target.
fn header_mismatch(
    header: &tar::Header,
    listed: &manifest::Entry,
    link_target: Option<&str>,
) -> Option<String> {
    let (uid, gid) = owner(header);
    if (uid, gid) != (listed.uid, listed.gid) {
        return Some(format!(
            "owner {uid}:{gid} differs from the manifest's {}:{}",
            listed.uid, listed.gid
        ));
    }
    if let Some(mtime) = listed.mtime {
        if header.mtime().ok() != Some(mtime) {
            return Some("its modification time differs from the manifest's".into());
        }
    }
    if listed.hardlink.as_deref() != link_target {
        return Some("its hard-link target differs from the manifest's".into());
    }
    None
}
