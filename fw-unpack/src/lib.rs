//! fw-unpack: extracts the tar.gz that fw-unseal emits into a fresh
//! directory under `TARGET/.fw/staging/`, refusing anything that could
//! reach outside it or that the package format does not allow.
//!
//! The archive must have exactly DESIGN.md's shape: `NAME/.fw/manifest.json`
//! first, `NAME/.fw/manifest.sig` second, then `NAME/` and the tree, every
//! entry listed in the manifest with the same type and mode. The manifest's
//! raw bytes (at most [`manifest::MAX_JSON`]) are checked against its
//! signature by the keyring's trust rule before the JSON is parsed, so
//! only vendor-signed JSON is ever parsed; it then narrows what may be
//! written (fw-verify checks the tree against it).
//!
//! The bytes come from fw-unseal, which releases most of a package before
//! its signature is checked; so the stream is trusted only at its end, by
//! fw-unseal's proof (fw-core's `proof` module): the signature that
//! verified, checked here over exactly the raw bytes read, by the same
//! keyring and rule, before success is reported. Without a valid proof,
//! or with anything after it: exit 4, nothing left behind. Until then the
//! bytes are hostile, and every read is bounded: tar's extension headers
//! ([`blocks`]), the manifest and its signature, the decompressed total.
//!
//! With `--delta`, the stream comes from fw-fetch, not fw-unseal: no outer
//! signature covers it and there is no proof, so the signed manifest is
//! the root of trust. Its signature is verified as above before it is
//! parsed; every entry's header must match the manifest (type, mode,
//! owner, size, times, link targets); every file written is hashed as it
//! is written and must match its BLAKE3 before success; data fw-fetch
//! marked as omitted (fw-gz `FH`) may only be skipped, for a file linked
//! from an installed version, and reading it is an error. The mode is
//! chosen by the command line, never by the stream: without `--delta`
//! omitted members are refused and the proof is required.
//!
//! Safety does not depend on the tar crate's own checks: every path is
//! checked component by component, every parent must be a directory this
//! run created (never a symlink), files are created with O_EXCL and
//! O_NOFOLLOW, hard links may only point at earlier regular files of the
//! tree, and the decompressed stream is capped so that neither content
//! nor tar metadata can exhaust the disk or memory. Success is reported
//! only after the gzip stream ended with valid trailers and nothing but
//! whole gzip members followed: a stream cut short (as fw-unseal cuts one
//! that did not verify) never unpacks.

pub mod blocks;
pub mod cli;

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use nix::sys::stat::{utimensat, UtimensatFlags};
use nix::sys::time::TimeSpec;

use fw_core::keyring::Keyring;
use fw_core::manifest::{self, Kind, Manifest, MANIFEST_PATH, SIGNATURE_PATH};
use fw_core::proof;
use fw_core::target::SharedFiles;
use fw_core::trust::Signer;
use fw_core::{Error, Result};

/// The largest signature of the manifest read into memory (a real one is
/// a few hundred bytes).
const MAX_SIGNATURE: u64 = 64 << 10;
/// The longest path component Linux file systems hold (NAME_MAX).
const NAME_MAX: usize = 255;
/// Room for tar headers and padding on top of `--max-bytes` of content.
const METADATA_ALLOWANCE: u64 = 64 << 20;
const CHUNK: usize = 256 << 10;

/// What was unpacked.
#[derive(Debug, Clone)]
pub struct Unpacked {
    /// The extracted tree: `TARGET/.fw/staging/unpack-XXXX/NAME`.
    pub tree: PathBuf,
    pub name: String,
    pub entries: u64,
    /// Content bytes in the package.
    pub bytes: u64,
    /// Files (and their bytes) linked to installed versions, not written.
    pub shared_files: u64,
    pub shared_bytes: u64,
    /// Who signed the bytes, by fw-unseal's proof (with `--delta`: who
    /// signed the manifest).
    pub signer: Signer,
}

/// The staging directory being written, shared with a signal handler that
/// removes it. Every change to the file system happens under `lock`, so
/// the handler never races a half-made entry.
#[derive(Clone, Default)]
pub struct Cleanup {
    current: Arc<Mutex<Option<PathBuf>>>,
}

impl Cleanup {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Option<PathBuf>> {
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Removes the staging directory being written, if any, and keeps the
    /// lock so that nothing more is written; for a signal handler's thread
    /// that exits the process next.
    pub fn abort(&self) -> Option<PathBuf> {
        let mut guard = self.lock();
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
    }
    Ok(staging)
}

/// Counts the decompressed bytes and fails past a cap, so that a
/// decompression bomb stops at the cap whatever the tar headers claim.
struct Capped<R> {
    inner: R,
    read: u64,
    cap: u64,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read > self.cap {
            return Err(io::Error::other(CapExceeded));
        }
        Ok(n)
    }
}

/// Skipped bytes count against the cap like read ones.
impl<R: io::Seek> io::Seek for Capped<R> {
    fn seek(&mut self, pos: io::SeekFrom) -> io::Result<u64> {
        let skip = match pos {
            io::SeekFrom::Current(n) if n >= 0 => n as u64,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "the archive only skips forward",
                ))
            }
        };
        if self.read.saturating_add(skip) > self.cap {
            return Err(io::Error::other(CapExceeded));
        }
        let offset = self.inner.seek(pos)?;
        self.read += skip;
        Ok(offset)
    }
}

#[derive(Debug)]
struct CapExceeded;
impl std::fmt::Display for CapExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the decompressed stream exceeds the size limit")
    }
}
impl std::error::Error for CapExceeded {}

fn stream_error(err: io::Error, at: &str, max_bytes: u64) -> Error {
    let inner = err.get_ref();
    if let Some(layout) = inner.and_then(|e| e.downcast_ref::<fw_gz::ProofLayout>()) {
        return Error::security(format!("{at}: {layout}; refusing the package"));
    }
    if let Some(refused) = inner.and_then(|e| e.downcast_ref::<blocks::Refused>()) {
        return Error::invalid(format!("{at}: {refused}; refusing the package"));
    }
    let capped = inner.is_some_and(|inner| inner.downcast_ref::<CapExceeded>().is_some());
    if capped {
        return Error::invalid(format!(
            "{at}: the package unpacks to more than --max-bytes {max_bytes}: refusing it \
             (a decompression bomb, or raise --max-bytes)"
        ));
    }
    Error::invalid(format!(
        "{at}: the gzip/tar stream is truncated or corrupt ({err}): it did not come whole \
         from fw-unseal (or fw-fetch); fetch the package again"
    ))
}

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

/// Splits an archive path into NAME and the path below it (`.` for NAME
/// itself), refusing anything but plain relative components.
fn split_path(raw: &[u8]) -> std::result::Result<(String, String), String> {
    let path = std::str::from_utf8(raw).map_err(|_| "its path is not UTF-8".to_string())?;
    if path.starts_with('/') {
        return Err("it is an absolute path".into());
    }
    let trimmed = path.strip_suffix('/').unwrap_or(path);
    let mut parts = trimmed.split('/');
    let top = parts.next().unwrap_or_default();
    let rest: Vec<&str> = parts.collect();
    for part in std::iter::once(top).chain(rest.iter().copied()) {
        match part {
            "" => return Err("it has an empty path component".into()),
            "." => return Err("it has a `.` path component".into()),
            ".." => return Err("it has a `..` path component".into()),
            _ if part.contains('\0') => return Err("it has a NUL byte".into()),
            _ if part.len() > NAME_MAX => {
                return Err(format!(
                    "it has a path component of {} bytes, more than a file name may have \
                     ({NAME_MAX}, NAME_MAX)",
                    part.len()
                ))
            }
            _ => {}
        }
    }
    let rel = if rest.is_empty() {
        ".".to_string()
    } else {
        rest.join("/")
    };
    Ok((top.to_string(), rel))
}

fn timespec(secs: u64) -> TimeSpec {
    TimeSpec::new(secs.min(i64::MAX as u64) as i64, 0)
}

/// A directory whose mode and times are set once everything inside it
/// has been written.
struct PendingDir {
    path: PathBuf,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
}

struct Extractor<'a> {
    /// `…/staging/unpack-XXXX`.
    work: PathBuf,
    /// `work/NAME`, once known.
    tree: PathBuf,
    name: String,
    manifest: Option<Manifest>,
    /// What this run created, by index of the manifest's entries (every
    /// entry created is listed there); the root from the start.
    created: Vec<Option<Kind>>,
    /// Which entries the archive held, to refuse a second one.
    seen: Vec<bool>,
    dirs: Vec<PendingDir>,
    as_root: bool,
    max_bytes: u64,
    content: u64,
    shared: &'a SharedFiles,
    shared_files: u64,
    shared_bytes: u64,
    cleanup: &'a Cleanup,
    writeback: Writeback,
    keyring: &'a Keyring,
    /// `--delta`: fw-fetch's stream (see the module's comment).
    delta: bool,
    /// Who signed the manifest.
    signer: Option<Signer>,
}

impl Extractor<'_> {
    fn refuse(&self, entry: &str, why: impl std::fmt::Display) -> Error {
        Error::invalid(format!("entry {entry:?}: {why}; refusing the package"))
    }

    fn io(&self, path: &Path, err: io::Error) -> Error {
        Error::io(path.display(), err)
    }

    /// Creates a file with `data`'s bytes, never following or replacing
    /// anything.
    fn write_file(
        &mut self,
        rel_display: &str,
        path: &Path,
        data: &mut dyn Read,
        size: u64,
        blake3: Option<&str>,
    ) -> Result<File> {
        self.content = self.content.saturating_add(size);
        if self.content > self.max_bytes {
            return Err(self.refuse(
                rel_display,
                format!(
                    "the package holds more than --max-bytes {} of content \
                     (a decompression bomb, or raise --max-bytes)",
                    self.max_bytes
                ),
            ));
        }
        let mut file = {
            let _lock = self.cleanup.lock();
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
                .open(path)
                .map_err(|e| self.io(path, e))?
        };
        let mut buf = vec![0u8; CHUNK.min(size.max(1) as usize)];
        let mut written = 0u64;
        let mut hasher = blake3.map(|_| blake3::Hasher::new());
        loop {
            let n = match data.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(stream_error(e, rel_display, self.max_bytes)),
            };
            if let Some(hasher) = &mut hasher {
                hasher.update(&buf[..n]);
            }
            let _lock = self.cleanup.lock();
            file.write_all(&buf[..n]).map_err(|e| self.io(path, e))?;
            written += n as u64;
        }
        if let (Some(hasher), Some(want)) = (hasher, blake3) {
            if written == size && hasher.finalize().to_hex().as_str() != want {
                return Err(Error::security(format!(
                    "entry {rel_display:?}: its content differs from the signed manifest's \
                     BLAKE3: tampered with or damaged on the way; refusing the package"
                )));
            }
        }
        if written != size {
            return Err(stream_error(
                io::Error::from(io::ErrorKind::UnexpectedEof),
                rel_display,
                self.max_bytes,
            ));
        }
        Ok(file)
    }

    /// The upgrade fast path: links an identical installed file into the
    /// tree; its bytes in the archive are skipped. The installed inode is never
    /// touched (no chmod, chown or utimes): other versions share it.
    fn link_installed(&mut self, installed: &Path, path: &Path, size: u64) -> Result<()> {
        self.content = self.content.saturating_add(size);
        {
            let _lock = self.cleanup.lock();
            std::fs::hard_link(installed, path).map_err(|e| self.io(path, e))?;
        }
        // The entry's data is not read: the archive skips it on the way to
        // the next entry, and fails there if the stream ends inside it.
        self.shared_files += 1;
        self.shared_bytes += size;
        Ok(())
    }

    /// Owner (as root), mode and mtime of a file just written. The owner
    /// goes first: chown clears setuid and setgid bits.
    /// Then hands the file to the writeback thread.
    fn finish_file(&self, file: File, path: &Path, header: &tar::Header, mode: u32) -> Result<()> {
        let _lock = self.cleanup.lock();
        if self.as_root {
            let (uid, gid) = owner(header);
            std::os::unix::fs::fchown(&file, Some(uid), Some(gid)).map_err(|e| self.io(path, e))?;
        }
        file.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(|e| self.io(path, e))?;
        let mtime = timespec(header.mtime().unwrap_or(0));
        nix::sys::stat::futimens(&file, &mtime, &mtime)
            .map_err(|e| self.io(path, io::Error::from(e)))?;
        self.writeback.push(file);
        Ok(())
    }

    fn first_entries(
        &mut self,
        index: usize,
        (top, rel, display): (&str, &str, &str),
        entry: &mut dyn Read,
        header: &tar::Header,
    ) -> Result<()> {
        let display = display.to_string();
        let (want, limit) = if index == 0 {
            (MANIFEST_PATH, manifest::MAX_JSON)
        } else {
            (SIGNATURE_PATH, MAX_SIGNATURE)
        };
        if rel != want || header.entry_type() != tar::EntryType::Regular {
            return Err(self.refuse(
                &display,
                format!(
                    "an fw package starts with NAME/{MANIFEST_PATH} then NAME/{SIGNATURE_PATH}; \
                     this is not one (made by fw-sign pack?)"
                ),
            ));
        }
        let size = header.entry_size().unwrap_or(u64::MAX);
        if size > limit {
            return Err(self.refuse(
                &display,
                format!("larger than {limit} bytes, more than fw-sign pack writes"),
            ));
        }
        if index == 0 {
            manifest::validate_name(top).map_err(|e| self.refuse(&display, e.message))?;
            self.name = top.to_string();
            self.tree = self.work.join(top);
            let fw_dir = self.tree.join(manifest::FW_DIR);
            {
                let _lock = self.cleanup.lock();
                std::fs::create_dir(&self.tree).map_err(|e| self.io(&self.tree, e))?;
                std::fs::create_dir(&fw_dir).map_err(|e| self.io(&fw_dir, e))?;
            }
        } else if top != self.name {
            return Err(self.refuse(
                &display,
                format!("a second top-level directory besides {:?}", self.name),
            ));
        }
        let path = self.tree.join(rel);
        if index == 0 {
            // Straight to its file: the manifest is not held in memory.
            let file = self.write_file(&display, &path, entry, size, None)?;
            return self.finish_file(file, &path, header, 0o644);
        }
        let mut signature = Vec::with_capacity(size as usize);
        entry
            .take(size)
            .read_to_end(&mut signature)
            .map_err(|e| stream_error(e, &display, self.max_bytes))?;
        let file = self.write_file(&display, &path, &mut &signature[..], size, None)?;
        self.finish_file(file, &path, header, 0o644)?;

        // Only JSON the vendor signed is parsed.
        let json_path = self.tree.join(MANIFEST_PATH);
        let open = || {
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
                .open(&json_path)
                .map(|f| io::BufReader::with_capacity(CHUNK, f))
                .map_err(|e| Error::io(json_path.display(), e))
        };
        let signer = fw_core::trust::verify_detached_reader(self.keyring, &signature, open()?)
            .map_err(|e| {
                Error::security(format!(
                    "{}/{SIGNATURE_PATH}: the manifest's signature: {}",
                    self.name, e.message
                ))
            })?;
        self.signer = Some(signer);
        let manifest = Manifest::from_reader(open()?)
            .map_err(|e| self.refuse(&format!("{}/{MANIFEST_PATH}", self.name), e.message))?;
        if manifest.name != self.name {
            return Err(self.refuse(
                &display,
                format!(
                    "the manifest names the firmware {:?}, the archive {:?}",
                    manifest.name, self.name
                ),
            ));
        }
        self.created = vec![None; manifest.entries.len()];
        self.seen = vec![false; manifest.entries.len()];
        if let Some(root) = manifest.position(".") {
            self.created[root] = Some(Kind::Dir);
        }
        self.manifest = Some(manifest);
        Ok(())
    }

    /// What this run created at `rel`.
    fn created_at(&self, rel: &str) -> Option<Kind> {
        let manifest = self.manifest.as_ref()?;
        self.created[manifest.position(rel)?]
    }

    fn tree_entry(
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
        // Never write through a link: every ancestor, from the top down,
        // must be a directory this run made.
        if rel != "." {
            let parts: Vec<&str> = rel.split('/').collect();
            for depth in 1..parts.len() {
                let ancestor = parts[..depth].join("/");
                match self.created_at(&ancestor) {
                    Some(Kind::Dir) => {}
                    Some(_) => {
                        return Err(self.refuse(
                            &display,
                            format!(
                                "it would be written through the symlink or file {top}/{ancestor}"
                            ),
                        ))
                    }
                    None => {
                        return Err(self.refuse(
                            &display,
                            format!(
                            "its directory {top}/{ancestor} does not come before it in the archive"
                        ),
                        ))
                    }
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
        // With --delta, written content is proven against the manifest.
        let blake3 = listed.blake3.clone().filter(|_| self.delta);
        let path = self.tree.join(rel);
        match etype {
            tar::EntryType::Directory => {
                if rel != "." {
                    let _lock = self.cleanup.lock();
                    std::fs::create_dir(&path).map_err(|e| self.io(&path, e))?;
                }
                let (uid, gid) = owner(&header);
                self.dirs.push(PendingDir {
                    path,
                    mode,
                    uid: uid as u64,
                    gid: gid as u64,
                    mtime: header.mtime().unwrap_or(0),
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
                let _lock = self.cleanup.lock();
                std::os::unix::fs::symlink(&target, &path).map_err(|e| self.io(&path, e))?;
                if self.as_root {
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
                let _lock = self.cleanup.lock();
                // linkat without AT_SYMLINK_FOLLOW: the target is the file itself.
                std::fs::hard_link(self.tree.join(&target_rel), &path)
                    .map_err(|e| self.io(&path, e))?;
            }
            _ => {
                let size = header.entry_size().unwrap_or(u64::MAX);
                if Some(size) != listed.size {
                    return Err(self.refuse(&display, "its size differs from the manifest's"));
                }
                if let Some(installed) = self.shared.find(listed) {
                    self.link_installed(installed, &path, size)?;
                } else {
                    let file = self.write_file(&display, &path, entry, size, blake3.as_deref())?;
                    self.finish_file(file, &path, &header, mode)?;
                }
            }
        }
        self.created[index] = Some(kind);
        Ok(())
    }

    /// Modes, owners and times of directories, deepest first, once nothing
    /// more is written into them.
    fn finish_dirs(&mut self) -> Result<()> {
        let _lock = self.cleanup.lock();
        let fw_dir = self.tree.join(manifest::FW_DIR);
        std::fs::set_permissions(&fw_dir, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| Error::io(fw_dir.display(), e))?;
        for dir in self.dirs.iter().rev() {
            if self.as_root {
                std::os::unix::fs::lchown(&dir.path, Some(dir.uid as u32), Some(dir.gid as u32))
                    .map_err(|e| Error::io(dir.path.display(), e))?;
            }
            std::fs::set_permissions(&dir.path, std::fs::Permissions::from_mode(dir.mode))
                .map_err(|e| Error::io(dir.path.display(), e))?;
            let mtime = timespec(dir.mtime);
            utimensat(
                nix::fcntl::AT_FDCWD,
                &dir.path,
                &mtime,
                &mtime,
                UtimensatFlags::NoFollowSymlink,
            )
            .map_err(|e| Error::io(dir.path.display(), io::Error::from(e)))?;
        }
        Ok(())
    }
}

/// Starts writing each finished file's pages to disk, in a thread of its
/// own, so that fw-fixate's syncfs finds most of the tree already written
/// instead of paying for all of it after the unpack (on ext4 this is also
/// when blocks are allocated: work taken off the extracting thread). Only
/// a hint: errors are ignored, syncfs reports them.
struct Writeback {
    files: Option<std::sync::mpsc::SyncSender<File>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writeback {
    fn start() -> Writeback {
        let (tx, rx) = std::sync::mpsc::sync_channel::<File>(256);
        let thread = std::thread::spawn(move || {
            use std::os::fd::AsRawFd;
            for file in rx {
                // SAFETY: a plain syscall on a descriptor we own; no memory
                // is passed.
                unsafe {
                    nix::libc::sync_file_range(
                        file.as_raw_fd(),
                        0,
                        0,
                        nix::libc::SYNC_FILE_RANGE_WRITE,
                    );
                }
            }
        });
        Writeback {
            files: Some(tx),
            thread: Some(thread),
        }
    }

    fn push(&self, file: File) {
        if let Some(files) = &self.files {
            let _ = files.send(file);
        }
    }
}

impl Drop for Writeback {
    fn drop(&mut self) {
        self.files.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
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

/// Gives memory freed since to the system. The allocator keeps freed
/// chunks of its per-thread heaps resident; with thousands of small gzip
/// members handed between the threads (one per file, see fw-gz), a
/// 12,000-entry upgrade reached 40 MiB of RSS for 12 MiB of live heap;
/// trimmed every 1024 entries, 25 MiB.
fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory of the allocator's heaps.
    unsafe {
        nix::libc::malloc_trim(0);
    }
}

fn owner(header: &tar::Header) -> (u32, u32) {
    let uid = header.uid().unwrap_or(0).min(u32::MAX as u64) as u32;
    let gid = header.gid().unwrap_or(0).min(u32::MAX as u64) as u32;
    (uid, gid)
}

/// Shows fw-gz's raw stream to the check of fw-unseal's proof.
struct ProofFeed(proof::Checker);

impl fw_gz::RawObserver for ProofFeed {
    fn announce(&mut self, payload: &[u8]) {
        self.0.announce(payload)
    }
    fn data(&mut self, bytes: &[u8]) {
        self.0.data(bytes)
    }
    fn proof(&mut self, payload: &[u8]) {
        self.0.proof(payload)
    }
}

/// Unpacks `input` (fw-unseal's output; with `delta`, fw-fetch's) into a
/// fresh directory under `staging`, trusting it only once fw-unseal's
/// proof (not with `delta`: every file's content instead) and the
/// manifest's signature verified by `keyring`. Files identical to a file in `shared`
/// (the installed versions) are hard-linked to it and their bytes skipped,
/// so an upgrade writes only what changed. On failure the directory is
/// removed and the error names the entry.
pub fn unpack<R: Read + Send + 'static>(
    input: R,
    staging: &Path,
    max_bytes: u64,
    shared: &SharedFiles,
    keyring: &Keyring,
    delta: bool,
    cleanup: &Cleanup,
) -> Result<Unpacked> {
    let work = {
        let mut current = cleanup.lock();
        let dir = tempfile::Builder::new()
            // The pid tells `fw-switch clean` whether its writer is alive.
            .prefix(&format!("unpack-{}-", std::process::id()))
            .tempdir_in(staging)
            .map_err(|e| Error::io(staging.display(), e))?
            .keep();
        *current = Some(dir.clone());
        dir
    };
    let result = extract(input, &work, max_bytes, shared, keyring, delta, cleanup);
    let mut current = cleanup.lock();
    if result.is_err() {
        if let Err(e) = std::fs::remove_dir_all(&work) {
            if e.kind() != io::ErrorKind::NotFound {
                fw_core::note!("could not remove {}: {e}", work.display());
            }
        }
    }
    *current = None;
    result
}

fn extract<R: Read + Send + 'static>(
    input: R,
    work: &Path,
    max_bytes: u64,
    shared: &SharedFiles,
    keyring: &Keyring,
    delta: bool,
    cleanup: &Cleanup,
) -> Result<Unpacked> {
    let (checker, verdict) = proof::checker(keyring.clone());
    let capped = Capped {
        // Inflates in threads of its own (on every core for fw-sign's
        // members), so that inflating overlaps writing the files; the
        // thread that reads the raw stream feeds the proof's check. Only
        // fw-fetch's stream (--delta) may hold omitted members.
        inner: match delta {
            false => fw_gz::GzReader::observed(
                input,
                fw_gz::threads(),
                Some(Box::new(ProofFeed(checker))),
            ),
            true => fw_gz::GzReader::accepting_omitted(input),
        },
        read: 0,
        cap: max_bytes.saturating_add(METADATA_ALLOWANCE),
    };
    let mut archive = tar::Archive::new(blocks::Blocks::new(capped));
    let mut x = Extractor {
        work: work.to_path_buf(),
        tree: PathBuf::new(),
        name: String::new(),
        manifest: None,
        created: Vec::new(),
        seen: Vec::new(),
        dirs: Vec::new(),
        as_root: nix::unistd::geteuid().is_root(),
        max_bytes,
        content: 0,
        shared,
        shared_files: 0,
        shared_bytes: 0,
        cleanup,
        writeback: Writeback::start(),
        keyring,
        delta,
        signer: None,
    };
    let mut count = 0usize;
    // Where the last entry's data (padded) ends in the tar stream.
    let mut entries_end = 0u64;
    {
        // With seek, the data of files linked from installed versions is
        // skipped, mostly without inflating it (see fw-gz).
        let entries = archive
            .entries_with_seek()
            .map_err(|e| stream_error(e, "the archive", max_bytes))?;
        for entry in entries {
            let at = if count == 0 {
                "the first entry".to_string()
            } else {
                format!("after entry {count}")
            };
            let mut entry = entry.map_err(|e| stream_error(e, &at, max_bytes))?;
            entries_end = entry.raw_file_position() + entry.size().div_ceil(512) * 512;
            let raw_path = entry.path_bytes().into_owned();
            let shown = String::from_utf8_lossy(&raw_path).into_owned();
            let (top, rel) = split_path(&raw_path).map_err(|why| x.refuse(&shown, why))?;
            if count < 2 {
                let header = entry.header().clone();
                x.first_entries(count, (&top, &rel, &shown), &mut entry, &header)?;
            } else {
                x.tree_entry((&top, &rel, &shown), &mut entry)?;
                if count.is_multiple_of(1024) {
                    return_freed_memory();
                }
            }
            count += 1;
        }
    }
    if count == 0 {
        return Err(Error::invalid(
            "the archive is empty: an fw package starts with NAME/.fw/manifest.json",
        ));
    }
    if count < 2 {
        return Err(Error::invalid(format!(
            "the archive ends after the manifest, without {SIGNATURE_PATH}"
        )));
    }
    let manifest = x.manifest.as_ref().expect("the manifest came first");
    let absent = x.created.iter().filter(|c| c.is_none()).count();
    if let Some(missing) = x.created.iter().position(Option::is_none) {
        let missing = &manifest.entries[missing];
        return Err(Error::invalid(format!(
            "the archive lacks {absent} entries the manifest lists, e.g. {}/{}; refusing the package",
            x.name, missing.path
        )));
    }

    // After tar's end: only zero padding, then the gzip trailer(s) and EOF.
    let mut rest = archive.into_inner();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match rest.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(stream_error(e, "after the end of the archive", max_bytes)),
        };
        if buf[..n].iter().any(|&b| b != 0) {
            return Err(Error::invalid(
                "data follows the end of the tar archive: refusing the package",
            ));
        }
    }
    // The tar stream must end with its end-of-archive marker, two zero
    // blocks: the gzip stream may be cut between two whole members, and
    // tar alone would take the early EOF for the end.
    if rest.inner.read < entries_end + 1024 {
        return Err(stream_error(
            io::Error::from(io::ErrorKind::UnexpectedEof),
            "the end of the archive (no end-of-archive marker)",
            max_bytes,
        ));
    }
    // The stream ended right after fw-unseal's proof: check it over every
    // byte read. With --delta there is none: every file written was proven
    // against the signed manifest instead, and omitted data never read.
    let signer = match delta {
        false => verdict.wait()?,
        true => x.signer.take().expect("the manifest's signature verified"),
    };
    x.finish_dirs()?;
    Ok(Unpacked {
        tree: x.tree.clone(),
        name: x.name.clone(),
        entries: count as u64,
        bytes: x.content,
        shared_files: x.shared_files,
        shared_bytes: x.shared_bytes,
        signer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_safe_paths_only() {
        assert_eq!(split_path(b"fw/").unwrap(), ("fw".into(), ".".into()));
        assert_eq!(split_path(b"fw/a/b").unwrap(), ("fw".into(), "a/b".into()));
        assert_eq!(split_path(b"fw/dir/").unwrap(), ("fw".into(), "dir".into()));
        let longest = format!("fw/{}", "n".repeat(255));
        assert!(split_path(longest.as_bytes()).is_ok());
        for bad in [
            &b"/etc/passwd"[..],
            b"fw/../x",
            b"fw//x",
            b"./fw/x",
            b"fw/./x",
            b"fw/\xff",
            format!("fw/{}", "n".repeat(256)).as_bytes(),
        ] {
            assert!(split_path(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    /// A minimal valid archive: manifest, signature (not checked here), root.
    fn minimal_tar() -> Vec<u8> {
        let manifest = Manifest {
            format: manifest::FORMAT,
            name: "fw".into(),
            version: "1".into(),
            security_version: 0,
            created: 0,
            tool: "test".into(),
            gz_length: None,
            entries: vec![manifest::Entry {
                path: ".".into(),
                kind: Kind::Dir,
                mode: 0o755,
                uid: 0,
                gid: 0,
                size: None,
                blake3: None,
                target: None,
                hardlink: None,
                mtime: None,
                gz: None,
            }],
        };
        let mut builder = tar::Builder::new(Vec::new());
        for (path, data) in [
            ("fw/.fw/manifest.json", manifest.to_json()),
            ("fw/.fw/manifest.sig", b"sig".to_vec()),
        ] {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            builder.append_data(&mut header, path, &data[..]).unwrap();
        }
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(0o755);
        header.set_size(0);
        builder
            .append_data(&mut header, "fw/", io::empty())
            .unwrap();
        builder.into_inner().unwrap()
    }

    #[test]
    fn nothing_unsigned_is_unpacked() {
        let tar = minimal_tar();
        let staging = tempfile::tempdir().unwrap();
        let keyring = Keyring::from_certs("no keys", []);
        for (stream, delta) in [
            (gzip(&tar), false),
            ([gzip(&tar), gzip(b"")].concat(), false),
            (gzip(&tar), true),
        ] {
            let err = unpack(
                io::Cursor::new(stream),
                staging.path(),
                1 << 30,
                &SharedFiles::default(),
                &keyring,
                delta,
                &Cleanup::new(),
            )
            .unwrap_err();
            assert_eq!(err.code, fw_core::ExitCode::Security, "{}", err.message);
            assert!(err.message.contains("manifest"), "{}", err.message);
        }
        assert_eq!(
            std::fs::read_dir(staging.path()).unwrap().count(),
            0,
            "a refusal leaves nothing behind"
        );
    }
}
