//! `TARGET/.fw/inodes`: the record of inodes whose content fw proved
//! against a signed manifest, so that a file linked into a new version (or
//! written by fw-unpack, which hashed every byte it wrote) is not read
//! again to prove the same thing. It plays the part of git's index: an
//! entry holds the inode's device, number, size, modification, change and
//! birth times and its BLAKE3, and proves the content only while all of
//! them still match `lstat`. Any write, truncation, chmod, chown or
//! utimes through the file system changes the change time (ctime), which
//! nothing but the clock sets.
//!
//! Racy entries, as git calls them: a change in the same clock tick as
//! the last change fw saw leaves ctime as it was. So an entry made by
//! hashing ([`Record::hash_and_record`]) is kept only if the file's ctime,
//! read after the hashing, is older than the clock read before it: then
//! nothing changed the file since the read began. fw-unpack's own files
//! and links are recorded with the ctime after its last change; staging is
//! root's 0700 directory under `TARGET/.fw`, which nothing else writes.
//! Left open, as in git: a change made in the same tick right after fw's
//! own (or after a clock step backwards) that also restores size and
//! mtime. `fw-verify --full` reads everything and ignores the record.
//!
//! The record is a cache: a missing, damaged, foreign-owned or
//! group/other-writable one is ignored (and, if it cannot be trusted, not
//! written); losing it only costs reading again. Entries untouched for
//! [`KEEP`] saves are dropped. Its format (text, one line per inode):
//!
//! ```text
//! fw-inodes 1 GENERATION
//! GEN DEV INO SIZE MTIME_NS CTIME_NS BTIME_NS BLAKE3_128
//! ```
//!
//! (times in nanoseconds since 1970, the BLAKE3's first 128 bits in hex).

use std::collections::HashMap;
use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::UNIX_EPOCH;

use nix::fcntl::{openat, OFlag, AT_FDCWD};
use nix::sys::stat::Mode;

/// The record's name in `TARGET/.fw`.
pub const NAME: &str = "inodes";
/// Saves an entry survives without being used.
pub const KEEP: u32 = 16;
/// The largest record read (about 500,000 inodes).
pub const MAX_BYTES: u64 = 64 << 20;
const MAGIC: &str = "fw-inodes 1";

/// What of an inode's `lstat` an entry must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime: (i64, i64),
    pub ctime: (i64, i64),
    pub btime: (i64, i64),
}

impl Stat {
    pub fn of(meta: &Metadata) -> Stat {
        // Birth time where the file system keeps one (statx), else 0.
        let btime = meta
            .created()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or((0, 0), |d| (d.as_secs() as i64, d.subsec_nanos() as i64));
        Stat {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
            btime,
        }
    }
}

/// What the record keeps of an inode: small, since a root filesystem has
/// tens of thousands (fw-unpack's memory bound holds at the manifest's
/// limit of entries): times as nanoseconds, and 128 bits of the BLAKE3,
/// compared with the manifest's only (a record only fw writes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    generation: u32,
    size: u64,
    mtime: i64,
    ctime: i64,
    btime: i64,
    blake3: [u8; 16],
}

fn nanos((secs, nsec): (i64, i64)) -> i64 {
    secs.saturating_mul(1_000_000_000).saturating_add(nsec)
}

impl Entry {
    fn of(stat: &Stat, blake3: [u8; 16], generation: u32) -> Entry {
        Entry {
            generation,
            size: stat.size,
            mtime: nanos(stat.mtime),
            ctime: nanos(stat.ctime),
            btime: nanos(stat.btime),
            blake3,
        }
    }

    /// True if the entry describes the inode as `stat` does.
    fn matches(&self, stat: &Stat) -> bool {
        (self.size, self.mtime, self.ctime, self.btime)
            == (
                stat.size,
                nanos(stat.mtime),
                nanos(stat.ctime),
                nanos(stat.btime),
            )
    }
}

/// The record of one target, loaded; [`Record::save`] writes it back.
#[derive(Debug, Default)]
pub struct Record {
    /// `TARGET/.fw`, if it is ours (owned by this user, not writable by
    /// others): else nothing is read or written.
    dir: Option<std::path::PathBuf>,
    generation: u32,
    entries: HashMap<(u64, u64), Entry>,
    changed: bool,
}

/// The first 128 bits of a BLAKE3 given in hex (64 digits; 32 are read).
fn parse_hash(hex: &str) -> Option<[u8; 16]> {
    let digits = hex.as_bytes().get(..32)?;
    let value = |d: u8| (d as char).to_digit(16).map(|v| v as u8);
    let mut out = [0u8; 16];
    for (byte, pair) in out.iter_mut().zip(digits.chunks(2)) {
        *byte = value(pair[0])? << 4 | value(pair[1])?;
    }
    Some(out)
}

/// The clock file times are taken from, at its own (coarse) resolution;
/// if it cannot be read, the earliest time, so that nothing hashed is
/// taken for unchanged since.
fn coarse_now() -> (i64, i64) {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_REALTIME_COARSE)
        .map_or((i64::MIN, 0), |t| (t.tv_sec(), t.tv_nsec()))
}

/// Opens `dir` without following a symlink if it is this user's and
/// nobody else may write it.
fn open_own_dir(dir: &Path) -> Option<OwnedFd> {
    let fd = openat(
        AT_FDCWD,
        dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    let stat = nix::sys::stat::fstat(&fd).ok()?;
    (stat.st_uid == nix::unistd::geteuid().as_raw() && stat.st_mode & 0o022 == 0).then_some(fd)
}

impl Record {
    /// An empty record that is never saved (for a tree with no target).
    pub fn none() -> Record {
        Record::default()
    }

    /// The record of `target` (empty if there is none or it cannot be
    /// trusted).
    pub fn load(target: &Path) -> Record {
        let dir = crate::target::state_dir(target);
        let Some(fd) = open_own_dir(&dir) else {
            return Record::default();
        };
        let mut record = Record {
            dir: Some(dir),
            ..Record::default()
        };
        if let Some(file) = open_own_file(&fd) {
            match record.read(file) {
                Ok(true) => {}
                Ok(false) => {
                    crate::detail!("{NAME}: damaged record ignored; files are read again");
                    record.entries = HashMap::new();
                }
                // Not readable whole as text: as if there were none.
                Err(_) => {
                    record.entries = HashMap::new();
                    record.generation = 0;
                }
            }
        }
        record.generation += 1;
        record
    }

    /// Reads the record from `file` a line at a time: false if it is
    /// damaged; an error if it cannot be read whole as UTF-8 text. The
    /// lines are counted first, so that the map is made once at its size
    /// (no old and new table side by side while it grows) and the text
    /// (about 100 bytes an inode) is never held whole.
    fn read(&mut self, mut file: File) -> io::Result<bool> {
        use io::{BufRead, Seek};
        // The shortest line an entry can have: 7 numbers, the hash, newline.
        const SHORTEST: usize = 7 * 2 + 32 + 1;
        let (mut lines, mut bytes) = (0usize, 0usize);
        let mut counting = io::BufReader::new((&mut file).take(MAX_BYTES));
        loop {
            let chunk = counting.fill_buf()?;
            if chunk.is_empty() {
                break;
            }
            lines += chunk.iter().filter(|&&b| b == b'\n').count();
            let n = chunk.len();
            bytes += n;
            counting.consume(n);
        }
        drop(counting);
        file.seek(io::SeekFrom::Start(0))?;
        // Not more than a record of that size can hold (a damaged one
        // of empty lines does not reserve millions).
        self.entries
            .reserve(lines.saturating_sub(1).min(bytes / SHORTEST));
        let mut reader = io::BufReader::new(file.take(MAX_BYTES));
        let mut line = String::new();
        let mut head = true;
        let mut parsed = false;
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                break;
            }
            // After a damaged line, read on all the same: a read error or
            // text that is not UTF-8 further on makes it unreadable.
            if head || parsed {
                let text = line
                    .strip_suffix('\n')
                    .map_or(line.as_str(), |l| l.strip_suffix('\r').unwrap_or(l));
                parsed = match head {
                    true => self.parse_head(text),
                    false => self.parse_line(text),
                }
                .is_some();
                head = false;
            }
        }
        Ok(parsed)
    }

    fn parse_head(&mut self, head: &str) -> Option<()> {
        self.generation = head.strip_prefix(MAGIC)?.trim().parse().ok()?;
        Some(())
    }

    fn parse_line(&mut self, line: &str) -> Option<()> {
        let f: Vec<&str> = line.split(' ').collect();
        if f.len() != 8 || f[7].len() != 32 {
            return None;
        }
        let n = |i: usize| f[i].parse::<i64>().ok();
        let u = |i: usize| f[i].parse::<u64>().ok();
        let entry = Entry {
            generation: f[0].parse().ok()?,
            size: u(3)?,
            mtime: n(4)?,
            ctime: n(5)?,
            btime: n(6)?,
            blake3: parse_hash(f[7])?,
        };
        self.entries.insert((u(1)?, u(2)?), entry);
        Some(())
    }

    /// True if the record proves that the inode `meta` describes holds
    /// content with the BLAKE3 `blake3` (hex); the entry is kept alive.
    pub fn proves(&mut self, meta: &Metadata, blake3: &str) -> bool {
        let stat = Stat::of(meta);
        let generation = self.generation;
        match self.entries.get_mut(&(stat.dev, stat.ino)) {
            Some(entry) if entry.matches(&stat) && Some(entry.blake3) == parse_hash(blake3) => {
                if entry.generation != generation {
                    entry.generation = generation;
                    self.changed = true;
                }
                true
            }
            _ => false,
        }
    }

    /// Records that `meta`'s inode holds content with the BLAKE3
    /// `blake3`, which the caller proved (it wrote or hashed it) and
    /// nothing changed since. Empty files are not recorded: fw-verify
    /// proves them by their size.
    pub fn insert(&mut self, meta: &Metadata, blake3: &str) {
        let Some(hash) = parse_hash(blake3) else {
            return;
        };
        let stat = Stat::of(meta);
        if stat.size == 0 {
            return;
        }
        self.entries.insert(
            (stat.dev, stat.ino),
            Entry::of(&stat, hash, self.generation),
        );
        self.changed = true;
    }

    /// After fw linked the inode `before` described (proven then) to a new
    /// name: the link changed only its ctime, which the entry takes,
    /// provided nothing else of it changed.
    pub fn relinked(&mut self, before: &Metadata, after: &Metadata) {
        let (old, new) = (Stat::of(before), Stat::of(after));
        let same = Stat {
            ctime: old.ctime,
            ..new
        } == old;
        let generation = self.generation;
        if let Some(entry) = self.entries.get_mut(&(old.dev, old.ino)) {
            if same && entry.matches(&old) {
                *entry = Entry::of(&new, entry.blake3, generation);
                self.changed = true;
            } else {
                self.entries.remove(&(old.dev, old.ino));
            }
        }
    }

    /// Hashes the file at `path` (no symlink followed) and records it if
    /// its BLAKE3 is `want` (see [`Record::insert_hashed`]). Returns its
    /// size and BLAKE3 (hex); `count` gets the bytes of each chunk read.
    pub fn hash_and_record(
        &mut self,
        path: &Path,
        want: &str,
        count: impl FnMut(u64),
    ) -> io::Result<(u64, String)> {
        let hashed = hash(path, count)?;
        if hashed.blake3 == want {
            self.insert_hashed(&hashed);
        }
        Ok((hashed.size, hashed.blake3))
    }

    /// Records a file [`hash`] read, unless something changed it since
    /// the read began (the racy rule above). The caller compared its
    /// BLAKE3 with the manifest's.
    pub fn insert_hashed(&mut self, hashed: &Hashed) {
        if let Some(proof) = hashed.proof() {
            self.insert_proof(proof);
        }
    }

    /// Records what [`Hashed::proof`] gave.
    pub fn insert_proof(&mut self, proof: Proof) {
        if proof.stat.size == 0 {
            return;
        }
        self.entries.insert(
            (proof.stat.dev, proof.stat.ino),
            Entry::of(&proof.stat, proof.blake3, self.generation),
        );
        self.changed = true;
    }

    /// Writes the record back (atomically), without the entries unused
    /// for [`KEEP`] saves; nothing if nothing changed or the record is
    /// not this user's. Failing to write it only costs reading again, so
    /// the error is for the caller to note, not to fail on.
    pub fn save(&mut self) -> io::Result<()> {
        let Some(dir) = &self.dir else {
            return Ok(());
        };
        if !self.changed {
            return Ok(());
        }
        let Some(fd) = open_own_dir(dir) else {
            return Ok(());
        };
        let oldest = self.generation.saturating_sub(KEEP);
        self.entries.retain(|_, e| e.generation >= oldest);
        let mut keys: Vec<(u64, u64)> = self.entries.keys().copied().collect();
        keys.sort_unstable();
        let tmp = format!(".{NAME}.tmp-{}", std::process::id());
        let _ = nix::unistd::unlinkat(&fd, tmp.as_str(), nix::unistd::UnlinkatFlags::NoRemoveDir);
        // Written as it is formatted: no second copy of the record in memory.
        crate::atomic::replace_at_with(fd.as_fd(), &tmp, NAME, |out| {
            writeln!(out, "{MAGIC} {}", self.generation)?;
            for key in &keys {
                let e = &self.entries[key];
                write!(
                    out,
                    "{} {} {} {} {} {} {} ",
                    e.generation, key.0, key.1, e.size, e.mtime, e.ctime, e.btime
                )?;
                for byte in e.blake3 {
                    write!(out, "{byte:02x}")?;
                }
                writeln!(out)?;
            }
            Ok(())
        })?;
        self.changed = false;
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Opens `inodes` in the directory `dir` if it is this user's, not
/// writable by others and at most [`MAX_BYTES`] (no symlink followed).
fn open_own_file(dir: &OwnedFd) -> Option<File> {
    let fd = openat(
        dir,
        NAME,
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    let file = File::from(fd);
    let meta = file.metadata().ok()?;
    let own = meta.is_file()
        && meta.uid() == nix::unistd::geteuid().as_raw()
        && meta.mode() & 0o022 == 0
        && meta.len() <= MAX_BYTES;
    own.then_some(file)
}

/// A file's content as [`hash`] read it.
#[derive(Debug)]
pub struct Hashed {
    pub size: u64,
    /// Hex.
    pub blake3: String,
    /// Read after the content.
    meta: Metadata,
    /// The clock before the content was read.
    started: (i64, i64),
}

/// What recording a hashed file takes: small, for many files hashed
/// in parallel before they are recorded.
#[derive(Debug, Clone, Copy)]
pub struct Proof {
    stat: Stat,
    blake3: [u8; 16],
}

impl Hashed {
    /// What to record, unless something changed the file since the read
    /// began (the racy rule of the module's comment). The caller compared
    /// its BLAKE3 with the manifest's.
    pub fn proof(&self) -> Option<Proof> {
        let changed = (self.meta.ctime(), self.meta.ctime_nsec());
        if changed >= self.started {
            return None;
        }
        Some(Proof {
            stat: Stat::of(&self.meta),
            blake3: parse_hash(&self.blake3)?,
        })
    }
}

/// Size and BLAKE3 of the file at `path` (opened without following a
/// symlink; large files on all cores), with what [`Record::insert_hashed`]
/// needs to record it.
pub fn hash(path: &Path, count: impl FnMut(u64)) -> io::Result<Hashed> {
    let started = coarse_now();
    let fd = openat(
        AT_FDCWD,
        path,
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let mut file = File::from(fd);
    let (size, blake3) = crate::manifest::hash_open_file(&mut file, count)?;
    let meta = file.metadata()?;
    Ok(Hashed {
        size,
        blake3,
        meta,
        started,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn target() -> (tempfile::TempDir, std::path::PathBuf) {
        let root = tempfile::tempdir().unwrap();
        let state = crate::target::state_dir(root.path());
        std::fs::create_dir(&state).unwrap();
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
        let path = root.path().to_path_buf();
        (root, path)
    }

    fn hash(data: &[u8]) -> String {
        blake3::hash(data).to_hex().to_string()
    }

    #[test]
    fn proves_until_anything_changes_and_survives_a_save() {
        let (_root, target) = target();
        let file = target.join("a");
        std::fs::write(&file, b"content").unwrap();
        // Older than the clock: hashing records it.
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut record = Record::load(&target);
        let (size, got) = record
            .hash_and_record(&file, &hash(b"content"), |_| ())
            .unwrap();
        assert_eq!((size, got.as_str()), (7, hash(b"content").as_str()));
        let meta = std::fs::symlink_metadata(&file).unwrap();
        assert!(record.proves(&meta, &hash(b"content")));
        assert!(!record.proves(&meta, &hash(b"other")), "another hash");
        record.save().unwrap();

        let mut again = Record::load(&target);
        assert_eq!(again.len(), 1);
        assert!(again.proves(&meta, &hash(b"content")));
        // Same size, same mtime restored: the ctime still tells.
        std::fs::write(&file, b"CONTENT").unwrap();
        let m = filetime_of(&meta);
        nix::sys::stat::utimensat(
            AT_FDCWD,
            &file,
            &m,
            &m,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .unwrap();
        let meta = std::fs::symlink_metadata(&file).unwrap();
        assert_eq!(
            meta.mtime(),
            std::fs::symlink_metadata(&file).unwrap().mtime()
        );
        assert!(!again.proves(&meta, &hash(b"content")), "a rewrite is seen");
    }

    fn filetime_of(meta: &Metadata) -> nix::sys::time::TimeSpec {
        nix::sys::time::TimeSpec::new(meta.mtime(), meta.mtime_nsec())
    }

    #[test]
    fn hashes_parse_as_hex_only() {
        let hex = hash(b"x");
        assert_eq!(
            parse_hash(&hex).unwrap(),
            blake3::hash(b"x").as_bytes()[..16]
        );
        assert!(parse_hash("é").is_none());
        assert!(parse_hash(&"é".repeat(20)).is_none(), "no panic on UTF-8");
        assert!(parse_hash(&"g".repeat(32)).is_none());
        assert!(parse_hash(&hex[..31]).is_none());
    }

    #[test]
    fn a_file_changed_during_the_tick_is_not_recorded() {
        let (_root, target) = target();
        let file = target.join("fresh");
        let mut record = Record::load(&target);
        // Written now: its ctime is not older than the clock read before
        // hashing it (unless a tick passes in between, which the loop
        // retries).
        for _ in 0..100 {
            std::fs::write(&file, b"x").unwrap();
            record.hash_and_record(&file, &hash(b"x"), |_| ()).unwrap();
            let meta = std::fs::symlink_metadata(&file).unwrap();
            if !record.proves(&meta, &hash(b"x")) {
                return;
            }
            record.entries.clear();
            std::fs::remove_file(&file).unwrap();
        }
        panic!("a file changed in the same tick was recorded 100 times");
    }

    #[test]
    fn a_relink_moves_the_ctime_and_a_foreign_record_is_ignored() {
        let (_root, target) = target();
        let file = target.join("a");
        std::fs::write(&file, b"data").unwrap();
        let before = std::fs::symlink_metadata(&file).unwrap();
        let mut record = Record::load(&target);
        record.insert(&before, &hash(b"data"));
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::hard_link(&file, target.join("b")).unwrap();
        let after = std::fs::symlink_metadata(&file).unwrap();
        assert!(
            !record.proves(&after, &hash(b"data")),
            "the link moved ctime"
        );
        record.relinked(&before, &after);
        assert!(record.proves(&after, &hash(b"data")));
        record.save().unwrap();

        // Damaged: ignored, not an error.
        let path = crate::target::state_dir(&target).join(NAME);
        std::fs::write(&path, b"fw-inodes 1 3\ngarbage\n").unwrap();
        assert!(Record::load(&target).is_empty());
        // Writable by others: neither read nor written.
        std::fs::set_permissions(
            crate::target::state_dir(&target),
            std::fs::Permissions::from_mode(0o777),
        )
        .unwrap();
        let mut open = Record::load(&target);
        open.insert(&after, &hash(b"data"));
        open.save().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"fw-inodes 1 3\ngarbage\n");
    }
}
