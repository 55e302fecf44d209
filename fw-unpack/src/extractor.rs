//! The state of one extraction and the writing of what it creates: files
//! (never following or replacing anything), links to installed files,
//! and directories' modes, owners and times at the end. The package's
//! first entries ([`head`]) and its tree ([`tree`]) are checked in
//! modules of their own.

mod head;
mod tree;

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::sys::stat::{utimensat, UtimensatFlags};

use fw_core::keyring::Keyring;
use fw_core::manifest::{self, Kind, Manifest};
use fw_core::trust::Signer;
use fw_core::{xattrs, Error, Result};

use crate::files::{tampered, timespec, Files, Finish, Job, Large, Task, Writers, PIECE, SMALL};
use crate::stream::stream_error;

pub(crate) const CHUNK: usize = 256 << 10;

/// A directory whose mode and times are set once everything inside it
/// has been written.
struct PendingDir {
    path: PathBuf,
    /// Set last: a default ACL must not apply to what is created inside.
    xattrs: Option<Box<xattrs::Xattrs>>,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    /// Created with its final mode and owner already.
    made_final: bool,
}

/// One extraction under way: where it writes, what it created so far,
/// and what the manifest allows.
pub(crate) struct Extractor<'a> {
    /// `…/staging/unpack-XXXX`.
    work: PathBuf,
    /// `work/NAME`, once known.
    pub(crate) tree: PathBuf,
    pub(crate) name: String,
    pub(crate) manifest: Option<Manifest>,
    /// What this run created, by index of the manifest's entries (every
    /// entry created is listed there); the root from the start.
    pub(crate) created: Vec<Option<Kind>>,
    /// Which entries the archive held, to refuse a second one.
    seen: Vec<bool>,
    dirs: Vec<PendingDir>,
    as_root: bool,
    /// Who creates files here (the owner a new file gets) and the
    /// process's umask: a file whose mode and owner come out right from
    /// its creation needs no fchown or fchmod.
    creator: (u32, u32),
    umask: u32,
    max_bytes: u64,
    pub(crate) content: u64,
    pub(crate) shared_files: u64,
    pub(crate) shared_bytes: u64,
    /// Where files are written, by this thread or by `writers`.
    files: &'a Files<'a>,
    writers: &'a Writers,
    /// Files handed to the writers so far: a job's place in the archive.
    jobs: u64,
    keyring: &'a Keyring,
    /// Who signed the manifest.
    pub(crate) signer: Option<Signer>,
}

impl<'a> Extractor<'a> {
    pub(crate) fn new(
        work: &Path,
        max_bytes: u64,
        files: &'a Files<'a>,
        writers: &'a Writers,
        keyring: &'a Keyring,
    ) -> Self {
        Extractor {
            work: work.to_path_buf(),
            tree: PathBuf::new(),
            name: String::new(),
            manifest: None,
            created: Vec::new(),
            seen: Vec::new(),
            dirs: Vec::new(),
            as_root: nix::unistd::geteuid().is_root(),
            creator: (
                nix::unistd::geteuid().as_raw(),
                nix::unistd::getegid().as_raw(),
            ),
            umask: current_umask(),
            max_bytes,
            content: 0,
            shared_files: 0,
            shared_bytes: 0,
            files,
            writers,
            jobs: 0,
            keyring,
            signer: None,
        }
    }
}

impl Extractor<'_> {
    pub(crate) fn refuse(&self, entry: &str, why: impl std::fmt::Display) -> Error {
        Error::invalid(format!("entry {entry:?}: {why}; refusing the package"))
    }

    fn io(&self, path: &Path, err: io::Error) -> Error {
        Error::io(path.display(), err)
    }

    /// True if a file created with `mode` gets exactly that mode and the
    /// header's owner (or, not as root, the creator's): the common case,
    /// two system calls fewer per file. Setuid, setgid and sticky bits
    /// always go through fchown then fchmod.
    fn created_final(&self, header: &tar::Header, mode: u32) -> bool {
        mode & 0o7000 == 0
            && mode & self.umask == 0
            && (!self.as_root || owner(header) == self.creator)
    }

    /// The mode to create a file with: its final one if
    /// [`Extractor::created_final`], else 0600 until [`Extractor::finish_file`].
    pub(crate) fn create_mode(&self, header: &tar::Header, mode: u32) -> u32 {
        if self.created_final(header, mode) {
            mode
        } else {
            0o600
        }
    }

    /// Counts `size` more bytes of content against `--max-bytes`.
    fn count_content(&mut self, rel_display: &str, size: u64) -> Result<()> {
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
        Ok(())
    }

    /// Creates one of `.fw/`'s files (the manifest, its signature) here,
    /// with `data`'s bytes, never following or replacing anything, with
    /// the mode [`Extractor::create_mode`] gives; the tree's files go to
    /// [`Extractor::write_content`].
    fn write_file(
        &mut self,
        rel_display: &str,
        path: &Path,
        data: &mut dyn Read,
        size: u64,
        mode: u32,
    ) -> Result<File> {
        self.count_content(rel_display, size)?;
        let mut file = self.files.create(path, mode)?;
        let mut buf = vec![0u8; CHUNK.min(size.max(1) as usize)];
        let mut written = 0u64;
        loop {
            let n = match data.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(stream_error(e, rel_display, self.max_bytes)),
            };
            self.files.write(&mut file, path, &buf[..n])?;
            written += n as u64;
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

    /// Hands a regular file's content to the writer threads: a small
    /// file whole (the writer checks it against `finish.blake3`), a large
    /// one created here and handed over in pieces, hashed here in order
    /// and finished once every piece is written and the content matched.
    fn write_content(
        &mut self,
        rel_display: &str,
        path: PathBuf,
        data: &mut dyn Read,
        size: u64,
        create_mode: u32,
        finish: Finish,
    ) -> Result<()> {
        self.count_content(rel_display, size)?;
        self.jobs += 1;
        let seq = self.jobs;
        let job = |task| Job {
            seq,
            display: rel_display.to_string(),
            task,
        };
        let short = || {
            stream_error(
                io::Error::from(io::ErrorKind::UnexpectedEof),
                rel_display,
                self.max_bytes,
            )
        };
        if size <= SMALL {
            let mut bytes = Vec::with_capacity(size as usize);
            data.take(size)
                .read_to_end(&mut bytes)
                .map_err(|e| stream_error(e, rel_display, self.max_bytes))?;
            if bytes.len() as u64 != size {
                return Err(short());
            }
            return self.writers.submit(job(Task::Small {
                path,
                create_mode,
                data: bytes,
                finish,
            }));
        }
        let large = Large::new(self.files.create(&path, create_mode)?, path);
        let mut hasher = finish.blake3.as_ref().map(|_| blake3::Hasher::new());
        let mut written = 0u64;
        loop {
            let want = (size - written.min(size)).clamp(1, PIECE as u64);
            let mut piece = Vec::with_capacity(want as usize);
            data.take(want)
                .read_to_end(&mut piece)
                .map_err(|e| stream_error(e, rel_display, self.max_bytes))?;
            if piece.is_empty() {
                break;
            }
            if let Some(hasher) = &mut hasher {
                hasher.update(&piece);
            }
            let at = written;
            written += piece.len() as u64;
            large.piece_out();
            self.writers.submit(job(Task::Piece {
                large: large.clone(),
                at,
                data: piece,
            }))?;
        }
        if written != size {
            return Err(short());
        }
        if let (Some(hasher), Some(want)) = (hasher, &finish.blake3) {
            if hasher.finalize().to_hex().as_str() != want {
                return Err(tampered(rel_display));
            }
        }
        if large.checked(finish) {
            self.files.finish_large(&large)?;
        }
        Ok(())
    }

    /// The upgrade fast path: links an identical installed file into the
    /// tree; its bytes in the archive are skipped. The installed inode is never
    /// touched (no chmod, chown or utimes): other versions share it.
    fn link_installed(
        &mut self,
        installed: &Path,
        before: &std::fs::Metadata,
        path: &Path,
        size: u64,
    ) -> Result<()> {
        self.content = self.content.saturating_add(size);
        {
            let _lock = self.files.cleanup().lock();
            std::fs::hard_link(installed, path).map_err(|e| self.io(path, e))?;
        }
        self.files.shared.linked(installed, before);
        // The entry's data is not read: the archive skips it on the way to
        // the next entry, and fails there if the stream ends inside it.
        self.shared_files += 1;
        self.shared_bytes += size;
        Ok(())
    }

    /// What a file written with [`Extractor::create_mode`] still needs:
    /// owner (as root) and mode unless it was created with them, the
    /// manifest's attributes, mtime; `blake3` is the content's, which the
    /// writing proves: the file goes into the record of proven inodes.
    pub(crate) fn finish_plan(
        &self,
        header: &tar::Header,
        mode: u32,
        xattrs: Option<Box<xattrs::Xattrs>>,
        blake3: Option<String>,
    ) -> Finish {
        let done = self.created_final(header, mode);
        Finish {
            owner: (!done && self.as_root).then(|| owner(header)),
            mode: (!done).then_some(mode),
            xattrs,
            mtime: header.mtime().unwrap_or(0),
            blake3,
        }
    }

    /// Finishes a file this thread wrote (see [`Files::finish`]).
    fn finish_file(&self, file: File, path: &Path, finish: &Finish) -> Result<()> {
        self.files.finish(file, path, finish)
    }

    /// What this run created at `rel`.
    fn created_at(&self, rel: &str) -> Option<Kind> {
        let manifest = self.manifest.as_ref()?;
        self.created[manifest.position(rel)?]
    }

    /// Modes, owners and times of directories, deepest first, once nothing
    /// more is written into them.
    pub(crate) fn finish_dirs(&mut self) -> Result<()> {
        let _lock = self.files.cleanup().lock();
        let fw_dir = self.tree.join(manifest::FW_DIR);
        std::fs::set_permissions(&fw_dir, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| Error::io(fw_dir.display(), e))?;
        for dir in self.dirs.iter().rev() {
            if !dir.made_final {
                if self.as_root {
                    std::os::unix::fs::lchown(
                        &dir.path,
                        Some(dir.uid as u32),
                        Some(dir.gid as u32),
                    )
                    .map_err(|e| Error::io(dir.path.display(), e))?;
                }
                std::fs::set_permissions(&dir.path, std::fs::Permissions::from_mode(dir.mode))
                    .map_err(|e| Error::io(dir.path.display(), e))?;
            }
            if let Some(xattrs) = &dir.xattrs {
                xattrs::apply(&dir.path, xattrs).map_err(|e| Error::io(dir.path.display(), e))?;
            }
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

/// The process's umask (read by setting it and back: nothing here
/// creates files meanwhile).
fn current_umask() -> u32 {
    let mask = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    nix::sys::stat::umask(mask);
    mask.bits() as u32
}

fn owner(header: &tar::Header) -> (u32, u32) {
    let uid = header.uid().unwrap_or(0).min(u32::MAX as u64) as u32;
    let gid = header.gid().unwrap_or(0).min(u32::MAX as u64) as u32;
    (uid, gid)
}
