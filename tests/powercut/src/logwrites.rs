//! The strictest model: a disk whose volatile write cache loses whatever
//! it had not been told to flush. In the guest, dm-log-writes sits
//! between ext4 and the disk and logs, onto a second disk, every write as
//! the disk completes it and every flush after the writes it covers (see
//! drivers/md/dm-log-writes.c). Replaying the log onto the disk as it was
//! before gives the disk a power cut leaves:
//!
//! - up to a flush (or FUA) entry: the cache lost everything after it;
//! - that, plus any subset of the writes up to the next flush: the cache
//!   wrote some of them, in any order, before the power went.
//!
//! The format (the kernel's, as xfstests' replay-log reads it): a super
//! block in the first sector (magic, version, entries, sector size), then
//! per entry one sector of header (sector, sectors, flags, data length;
//! a mark's name follows its header) and, but for discards, the data.
//! Parsed here, the log being ours and its lengths bounded by its file.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};

const MAGIC: u64 = 0x006a_7366_7773_6872;
const VERSION: u64 = 1;
pub const FLUSH: u64 = 1;
pub const FUA: u64 = 2;
pub const DISCARD: u64 = 4;
pub const MARK: u64 = 8;

/// One logged write, flush or mark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Where on the disk, in sectors of the log's sector size.
    pub sector: u64,
    pub sectors: u64,
    pub flags: u64,
    /// Where its data is in the log.
    pub data_at: u64,
    pub mark: Option<String>,
}

impl Entry {
    pub fn is_write(&self) -> bool {
        self.sectors > 0 && self.flags & DISCARD == 0
    }

    /// A point the disk promised durable: a flush, or a write with FUA.
    pub fn is_barrier(&self) -> bool {
        self.flags & (FLUSH | FUA) != 0
    }
}

/// A dm-log-writes log.
pub struct Log {
    file: File,
    sector_size: u64,
    pub entries: Vec<Entry>,
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

impl Log {
    pub fn open(path: &Path) -> Result<Log> {
        let mut file = File::open(path).with_context(|| path.display().to_string())?;
        let len = file.metadata()?.len();
        let mut sup = [0u8; 28];
        file.read_exact(&mut sup)
            .with_context(|| format!("{}: no log super block", path.display()))?;
        ensure!(
            le64(&sup, 0) == MAGIC,
            "{}: not a dm-log-writes log",
            path.display()
        );
        ensure!(
            le64(&sup, 8) == VERSION,
            "{}: log version {}",
            path.display(),
            le64(&sup, 8)
        );
        let count = le64(&sup, 16);
        let sector_size = u32::from_le_bytes(sup[24..28].try_into().unwrap()) as u64;
        ensure!(
            sector_size.is_power_of_two() && (512..=4096).contains(&sector_size),
            "{}: sector size {sector_size}",
            path.display()
        );
        let mut entries = Vec::new();
        let mut at = sector_size;
        let mut header = vec![0u8; sector_size as usize];
        for i in 0..count {
            ensure!(
                at + sector_size <= len,
                "{}: entry {i} past the end",
                path.display()
            );
            file.seek(SeekFrom::Start(at))?;
            file.read_exact(&mut header)?;
            let (sector, sectors, flags, data_len) = (
                le64(&header, 0),
                le64(&header, 8),
                le64(&header, 16),
                le64(&header, 24),
            );
            let data_at = at + sector_size;
            let mark = (flags & MARK != 0).then(|| {
                let n = (data_len as usize).min(header.len() - 32);
                String::from_utf8_lossy(&header[32..32 + n]).into_owned()
            });
            let data = if flags & DISCARD != 0 {
                0
            } else {
                sectors * sector_size
            };
            ensure!(
                data_at + data <= len,
                "{}: entry {i}'s data past the end",
                path.display()
            );
            entries.push(Entry {
                sector,
                sectors,
                flags,
                data_at,
                mark,
            });
            at = data_at + data;
        }
        Ok(Log {
            file,
            sector_size,
            entries,
        })
    }

    /// The index of the mark named `name`.
    pub fn mark(&self, name: &str) -> Option<usize> {
        self.entries
            .iter()
            .position(|e| e.mark.as_deref() == Some(name))
    }

    /// A random subset (by `seed`) of the writes after entry `upto` that no
    /// flush covers yet: those before the next flush or FUA write. (A
    /// subset reaching past it would be a state no disk leaves: the
    /// journal's tail moved on without the writes it waited for.)
    pub fn some_unflushed(&self, upto: usize, seed: u64) -> Vec<usize> {
        let mut rng = fastrand::Rng::with_seed(seed);
        (upto + 1..self.entries.len())
            .take_while(|&i| !self.entries[i].is_barrier())
            .filter(|&i| self.entries[i].is_write() && rng.bool())
            .collect()
    }

    /// Writes the entries `upto` (all before it, and it) and then `extra`
    /// onto `disk`: the disk as the log's device held it before, made what
    /// a power cut then leaves.
    pub fn replay(&self, disk: &Path, upto: usize, extra: &[usize]) -> Result<()> {
        let out = std::fs::OpenOptions::new()
            .write(true)
            .open(disk)
            .with_context(|| disk.display().to_string())?;
        let mut buf = Vec::new();
        for i in (0..=upto.min(self.entries.len().saturating_sub(1))).chain(extra.iter().copied()) {
            let Some(entry) = self.entries.get(i) else {
                bail!("no entry {i} in the log");
            };
            if entry.sectors == 0 {
                continue;
            }
            let bytes = (entry.sectors * self.sector_size) as usize;
            buf.resize(bytes, 0);
            if entry.flags & DISCARD != 0 {
                buf.fill(0);
            } else {
                self.file.read_exact_at(&mut buf, entry.data_at)?;
            }
            out.write_all_at(&buf, entry.sector * self.sector_size)?;
        }
        let mut out = out;
        out.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log as the kernel writes it: 512-byte sectors.
    fn log_bytes(entries: &[(u64, u64, u64, &[u8])]) -> Vec<u8> {
        let mut out = vec![0u8; 512];
        out[0..8].copy_from_slice(&MAGIC.to_le_bytes());
        out[8..16].copy_from_slice(&VERSION.to_le_bytes());
        out[16..24].copy_from_slice(&(entries.len() as u64).to_le_bytes());
        out[24..28].copy_from_slice(&512u32.to_le_bytes());
        for (sector, sectors, flags, data) in entries {
            let mut header = vec![0u8; 512];
            header[0..8].copy_from_slice(&sector.to_le_bytes());
            header[8..16].copy_from_slice(&sectors.to_le_bytes());
            header[16..24].copy_from_slice(&flags.to_le_bytes());
            if flags & MARK != 0 {
                header[24..32].copy_from_slice(&(data.len() as u64).to_le_bytes());
                header[32..32 + data.len()].copy_from_slice(data);
            }
            out.extend(header);
            if flags & MARK == 0 {
                out.extend_from_slice(data);
            }
        }
        out
    }

    #[test]
    fn replays_up_to_a_flush_and_a_chosen_subset_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path();
        let a = vec![b'a'; 512];
        let b = vec![b'b'; 1024];
        let c = vec![b'c'; 512];
        let log = tmp.join("log");
        std::fs::write(
            &log,
            log_bytes(&[
                (0, 0, MARK, b"start"),
                (1, 1, 0, &a),
                (0, 0, FLUSH, b""),
                (2, 2, 0, &b),
                (5, 1, 0, &c),
                (0, 0, FLUSH, b""),
            ]),
        )
        .unwrap();
        let log = Log::open(&log).unwrap();
        assert_eq!(log.mark("start"), Some(0));
        let barriers: Vec<usize> = (0..log.entries.len())
            .filter(|&i| log.entries[i].is_barrier())
            .collect();
        assert_eq!(barriers, vec![2, 5]);

        let disk = tmp.join("disk");
        std::fs::write(&disk, vec![0u8; 8 * 512]).unwrap();
        log.replay(&disk, 2, &[4]).unwrap();
        let bytes = std::fs::read(&disk).unwrap();
        assert_eq!(&bytes[512..1024], &a[..]);
        assert!(bytes[1024..2560].iter().all(|&x| x == 0), "b was lost");
        assert_eq!(&bytes[2560..3072], &c[..]);

        // The writes a cut after the first flush may keep: only b and c,
        // never past the second flush.
        for seed in 0..20 {
            let some = log.some_unflushed(2, seed);
            assert!(some.iter().all(|&i| i == 3 || i == 4), "{some:?}");
        }
        assert!((0..20).any(|seed| log.some_unflushed(2, seed).len() == 2));
        assert!(log.some_unflushed(5, 1).is_empty());

        // A log cut short, or not a log, is refused.
        let short = tmp.join("short");
        let whole = std::fs::read(tmp.join("log")).unwrap();
        std::fs::write(&short, &whole[..whole.len() - 100]).unwrap();
        assert!(Log::open(&short).is_err());
        std::fs::write(&short, vec![0u8; 4096]).unwrap();
        assert!(Log::open(&short).is_err());
    }
}
