//! What a fetch keeps between attempts, in `TARGET/.fw/fetch/`, so that
//! an interrupted delta resumes instead of starting over:
//!
//! ```text
//! lock        flock: one fetch per target (a second one exits 6)
//! state.json  the URL, the package's size and ETag, the head's lengths
//! head        the package's first bytes (the packets before the tar.gz,
//!             its first member)
//! region      the manifest's members (fetched, or from installed manifests)
//! data        the fetched members of the files to install, in manifest
//!             order, each proven against the manifest before it is kept
//! ```
//!
//! Bounded: one package's delta at a time (anything else here is
//! removed), no more than the files the device lacks. Removed when the
//! fetch succeeded or was refused; kept when the network failed. On
//! resume every kept file is proven again and the package's ETag must be
//! the same (If-Range), else the fetch is refused and starts over.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use fw_core::{Error, Exit, Result};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    pub url: String,
    pub size: u64,
    pub etag: Option<String>,
    pub head: u64,
    pub region: u64,
}

pub struct Cache {
    dir: PathBuf,
    _lock: nix::fcntl::Flock<File>,
}

/// The largest state file read.
const MAX_STATE: u64 = 64 << 10;

impl Cache {
    /// Takes `TARGET/.fw/fetch/` (created if missing) for this fetch.
    pub fn open(target: &Path) -> Result<Cache> {
        use nix::fcntl::{Flock, FlockArg};
        let state_dir = fw_core::target::state_dir(target);
        let dir = state_dir.join("fetch");
        for d in [&state_dir, &dir] {
            match std::fs::create_dir(d) {
                Ok(()) => {
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700))
                        .map_err(|e| Error::io(d.display(), e))?;
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Error::io(d.display(), e)),
            }
        }
        let lock_path = dir.join("lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&lock_path)
            .map_err(|e| Error::io(lock_path.display(), e))?;
        let lock = Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|_| {
            Error::new(
                Exit::Busy,
                format!(
                    "another fw-fetch is running on {} ({} is locked): try again later",
                    target.display(),
                    lock_path.display()
                ),
            )
        })?;
        Ok(Cache { dir, _lock: lock })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// What an earlier attempt at `url` left: its state, head and region.
    pub fn resume(&self, url: &str) -> Option<(State, Vec<u8>, Vec<u8>)> {
        let mut text = Vec::new();
        File::open(self.path("state.json"))
            .ok()?
            .take(MAX_STATE)
            .read_to_end(&mut text)
            .ok()?;
        let state: State = serde_json::from_slice(&text).ok()?;
        if state.url != url || state.head > state.size || state.region > 16 << 20 {
            return None;
        }
        let head = std::fs::read(self.path("head")).ok()?;
        let region = std::fs::read(self.path("region")).ok()?;
        (head.len() as u64 == state.head && region.len() as u64 == state.region)
            .then_some((state, head, region))
    }

    /// Removes what an attempt left (all but the lock).
    pub fn clear(&self) -> Result<()> {
        for name in ["state.json", "state.json.tmp", "head", "region", "data"] {
            match std::fs::remove_file(self.path(name)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(self.path(name).display(), e)),
            }
        }
        Ok(())
    }

    /// Records the package and its head, durably, before data is fetched.
    pub fn start(&self, state: &State, head: &[u8], region: &[u8]) -> Result<()> {
        let write = |name: &str, bytes: &[u8]| -> Result<()> {
            let path = self.path(name);
            let mut file = File::create(&path).map_err(|e| Error::io(path.display(), e))?;
            file.write_all(bytes)
                .and_then(|()| file.sync_all())
                .map_err(|e| Error::io(path.display(), e))
        };
        write("head", head)?;
        write("region", region)?;
        let json = serde_json::to_vec(state).expect("a state serializes");
        write("state.json.tmp", &json)?;
        std::fs::rename(self.path("state.json.tmp"), self.path("state.json"))
            .map_err(|e| Error::io(self.path("state.json").display(), e))?;
        fw_core::target::sync_dir(&self.dir)
    }

    /// The data file, for appending (and reading back what it holds).
    pub fn data(&self) -> Result<File> {
        let path = self.path("data");
        std::fs::OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(path.display(), e))
    }

    /// Another handle on the data file, for the thread that passes
    /// fetched files on.
    pub fn data_reader(&self) -> Result<File> {
        let path = self.path("data");
        File::open(&path).map_err(|e| Error::io(path.display(), e))
    }
}

/// Drops what follows byte `len` of the data file.
pub fn truncate(data: &mut File, len: u64) -> Result<()> {
    data.set_len(len)
        .and_then(|()| data.seek(SeekFrom::Start(len)).map(drop))
        .map_err(|e| Error::io("the fetch cache's data file", e))
}
