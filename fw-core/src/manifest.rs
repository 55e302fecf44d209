//! The signed manifest: every entry of a firmware tree, and what it is.
//!
//! It lives at `NAME/.fw/manifest.json` (with its detached signature at
//! `NAME/.fw/manifest.sig`), and is the first entry of every package.
//! `.fw/` itself is fw's own and never listed.
//!
//! Modification times are listed (`mtime`) but are not part of a file's
//! identity: two builds of the same file are the same file, fw-verify does
//! not compare them, and sharing between versions ignores them. They are
//! there so that a delta upgrade (fw-fetch), which synthesises each tar
//! header from the manifest, restores the same times as a full install.
//!
//! Format 2 also says where each file's content lies in the package's
//! tar.gz (`gz`, and the top-level `gz_length`): the table of contents that
//! lets fw-fetch download by HTTP Range only the files a device lacks,
//! authenticated by the manifest's signature. Format 1 manifests (no
//! `mtime`, no `gz`) are still read.

use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Where the manifest and its signature sit inside a version's tree.
pub const FW_DIR: &str = ".fw";
pub const MANIFEST_PATH: &str = ".fw/manifest.json";
pub const SIGNATURE_PATH: &str = ".fw/manifest.sig";

/// The largest manifest fw-unpack reads (its raw JSON): about 37,000
/// entries of a root filesystem's; a 10,000-file root filesystem's
/// manifest is about 2.7 MiB.
/// fw-sign refuses to pack a tree whose manifest would be larger.
pub const MAX_JSON: u64 = 8 << 20;

/// The largest manifest signature any tool reads into memory (a real one
/// is a few hundred bytes).
pub const MAX_SIGNATURE: u64 = 64 << 10;

/// The longest path component a Linux file system holds (NAME_MAX).
pub const NAME_MAX: usize = 255;

/// The manifest's format version that fw-sign writes for a tree without
/// extended attributes.
pub const FORMAT: u32 = 2;
/// The format fw-sign writes for a tree with extended attributes (format
/// 2 and entries' `xattrs`): an fw that cannot restore them refuses the
/// manifest by its format, with "upgrade fw".
pub const FORMAT_XATTRS: u32 = 3;
/// The oldest format still read (no `mtime`, no `gz`).
pub const OLDEST_FORMAT: u32 = 1;

/// Names a version directory may not take: they are the target's links.
pub const RESERVED_NAMES: &[&str] = &["current", "previous", "failsafe"];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    /// The firmware's name: the packed directory's name.
    pub name: String,
    pub version: String,
    /// Anti-rollback counter: a device refuses anything below the highest
    /// it has installed.
    pub security_version: u64,
    /// Seconds since the epoch (SOURCE_DATE_EPOCH when set).
    pub created: u64,
    /// The packing tool and its version, e.g. `fw-sign 0.1.0`.
    pub tool: String,
    /// Bytes of the package's tar.gz after the gzip members of the
    /// manifest and its signature (format 2): the end of the last range
    /// that an entry's `gz` can name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gz_length: Option<u64>,
    /// Every entry of the tree but `.fw/`, sorted by path; `.` is the root.
    pub entries: Vec<Entry>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    File,
    Dir,
    Symlink,
}

impl Kind {
    /// The kind of a file system object, if a manifest can hold it (no
    /// sockets, device nodes or fifos).
    pub fn of(file_type: std::fs::FileType) -> Option<Kind> {
        if file_type.is_dir() {
            Some(Kind::Dir)
        } else if file_type.is_file() {
            Some(Kind::File)
        } else if file_type.is_symlink() {
            Some(Kind::Symlink)
        } else {
            None
        }
    }

    /// The name the manifest uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Dir => "dir",
            Kind::Symlink => "symlink",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Relative to the version's directory, `/`-separated, UTF-8.
    pub path: String,
    #[serde(rename = "type")]
    pub kind: Kind,
    /// Permission bits, including setuid, setgid and sticky (0o7777).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Files: size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Files: BLAKE3 of the content, lowercase hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blake3: Option<String>,
    /// Symlinks: the target, exactly as stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Files that are hard links within the tree: the path of the first
    /// file (in manifest order) of the same inode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardlink: Option<String>,
    /// Modification time, seconds since 1970 (format 2). Informational:
    /// restored on unpack, never compared, not part of a file's identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtime: Option<u64>,
    /// Files with content (format 2): `[gap, length]` of the gzip members
    /// holding exactly the file's bytes, in the package's tar.gz: they
    /// start `gap` bytes after the previous such file's members end (the
    /// first: after the manifest's and its signature's members). Relative,
    /// so that the line of a file that did not change is the same in the
    /// next version's manifest (see [`json_chunks`]); [`Manifest::gz_ranges`]
    /// adds them up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gz: Option<[u64; 2]>,
    /// Files and directories (format 3): extended attributes, name →
    /// value in lowercase hex (see [`crate::xattrs`]); a hard link lists
    /// its inode's, as its first file does. Boxed: most entries have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xattrs: Option<Box<crate::xattrs::Xattrs>>,
}

impl Manifest {
    /// Compact JSON with one entry per line: a diff of two manifests
    /// shows the entries that changed, `grep` finds one, and the manifest,
    /// which every delta upgrade downloads whole, stays small (a third of
    /// the pretty-printed size, 15% less compressed).
    pub fn to_json(&self) -> Vec<u8> {
        let top = Manifest {
            format: self.format,
            name: self.name.clone(),
            version: self.version.clone(),
            security_version: self.security_version,
            created: self.created,
            tool: self.tool.clone(),
            gz_length: self.gz_length,
            entries: Vec::new(),
        };
        let mut json = serde_json::to_vec(&top).expect("a manifest always serializes");
        debug_assert!(json.ends_with(b"[]}"));
        json.truncate(json.len() - 2);
        for (i, entry) in self.entries.iter().enumerate() {
            json.extend_from_slice(if i == 0 { b"\n" } else { b",\n" });
            serde_json::to_writer(&mut json, entry).expect("an entry always serializes");
        }
        json.extend_from_slice(b"\n]}\n");
        json
    }

    /// Parses and checks a manifest: known format, a usable name, safe and
    /// sorted unique paths, the fields each kind needs.
    pub fn from_json(json: &[u8]) -> Result<Manifest> {
        let manifest: Manifest = serde_json::from_slice(json)
            .map_err(|e| Error::invalid(format!("{MANIFEST_PATH} is malformed: {e}")))?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// As [`Manifest::from_json`], reading the JSON from `reader` (a
    /// file), so that its bytes are not held beside the manifest.
    pub fn from_reader(reader: impl Read) -> Result<Manifest> {
        let manifest: Manifest = serde_json::from_reader(reader)
            .map_err(|e| Error::invalid(format!("{MANIFEST_PATH} is malformed: {e}")))?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// The index of `path` among the entries (sorted by [`path_order`]).
    pub fn position(&self, path: &str) -> Option<usize> {
        self.entries
            .binary_search_by(|e| path_order(&e.path, path))
            .ok()
    }

    pub fn validate(&self) -> Result<()> {
        if !(OLDEST_FORMAT..=FORMAT_XATTRS).contains(&self.format) {
            return Err(Error::invalid(format!(
                "{MANIFEST_PATH} has format {}, this fw reads formats {OLDEST_FORMAT} to \
                 {FORMAT_XATTRS}: upgrade fw",
                self.format
            )));
        }
        validate_name(&self.name)?;
        let mut previous: Option<&str> = None;
        // The members of successive files follow each other in the tar.gz.
        let mut gz_end = 0u64;
        for entry in &self.entries {
            // The path first: an error names what is wrong with the entry
            // itself before what it refers to.
            validate_path(&entry.path)?;
            if let Some([gap, length]) = entry.gz {
                let end = gz_end.checked_add(gap).and_then(|o| o.checked_add(length));
                let fits = entry.kind == Kind::File
                    && entry.hardlink.is_none()
                    && entry.size.is_some_and(|s| s > 0)
                    && length > 0
                    && end.is_some_and(|end| Some(end) <= self.gz_length);
                if !fits {
                    return Err(Error::invalid(format!(
                        "{MANIFEST_PATH}: entry {:?} names gzip members that are out of order \
                         or out of the package",
                        entry.path
                    )));
                }
                gz_end = end.unwrap_or(u64::MAX);
            }
            if let Some(prev) = previous {
                if path_order(prev, &entry.path) != std::cmp::Ordering::Less {
                    return Err(Error::invalid(format!(
                        "{MANIFEST_PATH}: entry {:?} is out of order or listed twice",
                        entry.path
                    )));
                }
            }
            previous = Some(&entry.path);
            let complete = match entry.kind {
                Kind::File => {
                    entry.size.is_some()
                        && entry.blake3.as_deref().is_some_and(is_blake3_hex)
                        && entry.target.is_none()
                }
                Kind::Dir => entry.size.is_none() && entry.target.is_none(),
                Kind::Symlink => entry.target.is_some() && entry.blake3.is_none(),
            };
            if let Some(xattrs) = &entry.xattrs {
                let allowed = self.format >= FORMAT_XATTRS && entry.kind != Kind::Symlink;
                let checked = if allowed {
                    crate::xattrs::validate(xattrs)
                } else {
                    Err(format!(
                        "extended attributes on a {} in a format {} manifest",
                        entry.kind.as_str(),
                        self.format
                    ))
                };
                if let Err(why) = checked {
                    return Err(Error::invalid(format!(
                        "{MANIFEST_PATH}: entry {:?}: {why}",
                        entry.path
                    )));
                }
            }
            if !complete || entry.mode & !0o7777 != 0 {
                return Err(Error::invalid(format!(
                    "{MANIFEST_PATH}: entry {:?} is incomplete or inconsistent",
                    entry.path
                )));
            }
        }
        Ok(())
    }

    /// Where each entry's gzip members are (`[start, end)`, counted from
    /// the first member after the manifest's and its signature's), from
    /// the relative `gz` fields; `None` for entries without data.
    pub fn gz_ranges(&self) -> Vec<Option<(u64, u64)>> {
        let mut end = 0u64;
        self.entries
            .iter()
            .map(|e| {
                e.gz.map(|[gap, length]| {
                    let start = end.saturating_add(gap);
                    end = start.saturating_add(length);
                    (start, end)
                })
            })
            .collect()
    }

    /// BLAKE3 of the manifest's bytes, the identity `.fw/verified` records.
    pub fn digest(json: &[u8]) -> String {
        blake3::hash(json).to_hex().to_string()
    }
}

/// Lines per chunk of a manifest's JSON, on average (see [`json_chunks`]).
pub const CHUNK_LINES: u64 = 32;
/// The most bytes in one chunk.
pub const MAX_CHUNK: usize = 256 << 10;

/// Cuts a manifest's JSON into chunks of whole lines, where the content
/// says: after the first line (the fields that change with every
/// version), after a line whose BLAKE3's first 8 bytes (little-endian) are
/// a multiple of [`CHUNK_LINES`], before a chunk would pass [`MAX_CHUNK`],
/// and at the end. An entry whose line did not change from one version to
/// the next (`gz` is relative for that) lies in the same chunks in both
/// manifests, wherever the changes are: fw-sign gives each chunk gzip
/// members of its own, and a delta fetches only the chunks that no
/// installed version's manifest has.
pub fn json_chunks(json: &[u8]) -> Vec<std::ops::Range<usize>> {
    let mut chunks = Vec::new();
    let (mut start, mut at) = (0usize, 0usize);
    let mut first = true;
    while at < json.len() {
        let end = json[at..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(json.len(), |i| at + i + 1);
        if end - start > MAX_CHUNK && at > start {
            chunks.push(start..at);
            start = at;
        }
        let hash = blake3::hash(&json[at..end]);
        let value = u64::from_le_bytes(hash.as_bytes()[..8].try_into().expect("8 bytes"));
        if first || value % CHUNK_LINES == 0 {
            chunks.push(start..end);
            start = end;
        }
        first = false;
        at = end;
    }
    if start < json.len() {
        chunks.push(start..json.len());
    }
    chunks
}

/// Sort order of manifest and tar entries: by path bytes, but comparing
/// component by component, so that a directory's entries follow it
/// directly (`a/b` before `a.txt`).
pub fn path_order(a: &str, b: &str) -> std::cmp::Ordering {
    if a == "." || b == "." {
        return (a != ".").cmp(&(b != "."));
    }
    // The same order as `a.split('/').cmp(b.split('/'))`, without
    // splitting (that was 6% of fw-unpack's CPU in an upgrade, by the
    // binary searches of every entry): a separator sorts before any
    // byte, so the first differing byte decides.
    let key = |c: u8| if c == b'/' { 0 } else { c as u16 + 1 };
    let (a, b) = (a.as_bytes(), b.as_bytes());
    match a.iter().zip(b).position(|(x, y)| x != y) {
        Some(i) => key(a[i]).cmp(&key(b[i])),
        None => a.len().cmp(&b.len()),
    }
}

fn is_blake3_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A firmware name is one path component that cannot be mistaken for a
/// link of the target or a hidden file.
pub fn validate_name(name: &str) -> Result<()> {
    let bad = name.is_empty()
        || name.len() > 200
        || name.starts_with('.')
        || name.contains('/')
        || name.contains('\0')
        || name.chars().any(char::is_control)
        || RESERVED_NAMES.contains(&name);
    if bad {
        return Err(Error::invalid(format!(
            "{name:?} cannot be a firmware name: it must be one path component, not hidden, \
             not one of {RESERVED_NAMES:?}; rename the directory"
        )));
    }
    Ok(())
}

/// A manifest path is `.` or a relative path of normal components, none
/// longer than a file name may be.
pub fn validate_path(path: &str) -> Result<()> {
    if path == "." {
        return Ok(());
    }
    if let Some(long) = path.split('/').find(|c| c.len() > NAME_MAX) {
        return Err(Error::invalid(format!(
            "entry path {path:?} has a component of {} bytes, more than a file name may have \
             ({NAME_MAX}, NAME_MAX): no device can hold it; rename {long:.40}…",
            long.len()
        )));
    }
    let bad = path.is_empty()
        || path.starts_with('/')
        || path.contains('\0')
        || path
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
        || path == FW_DIR
        || path.starts_with(".fw/");
    if bad {
        return Err(Error::invalid(format!(
            "{MANIFEST_PATH}: unsafe entry path {path:?}"
        )));
    }
    Ok(())
}

/// Size and BLAKE3 (hex) of a file's content. Large files are hashed on
/// all cores, a chunk at a time: read, not mapped, so that memory stays
/// flat (a mapped 2 GiB file shows as 2 GiB of resident memory).
pub fn hash_file(path: &Path) -> std::io::Result<(u64, String)> {
    hash_file_counting(path, |_| ())
}

/// As [`hash_file`], telling `count` the bytes of each chunk hashed (for a
/// progress bar).
pub fn hash_file_counting(path: &Path, count: impl FnMut(u64)) -> std::io::Result<(u64, String)> {
    hash_open_file(&mut std::fs::File::open(path)?, count)
}

/// As [`hash_file_counting`], for a file already open.
pub fn hash_open_file(
    file: &mut std::fs::File,
    mut count: impl FnMut(u64),
) -> std::io::Result<(u64, String)> {
    const LARGE: u64 = 4 << 20;
    let mut hasher = blake3::Hasher::new();
    let large = file.metadata()?.len() >= LARGE;
    let mut buf = vec![0u8; if large { 1 << 20 } else { 64 << 10 }];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if large {
            hasher.update_rayon(&buf[..n]);
        } else {
            hasher.update(&buf[..n]);
        }
        count(n as u64);
    }
    Ok((hasher.count(), hasher.finalize().to_hex().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_order_compares_component_by_component() {
        // Every path of up to 4 bytes over an alphabet with the separator,
        // bytes either side of it and a NUL, against the definition.
        let alphabet = ["/", ".", "-", "0", "a", "\0"];
        let mut paths = vec![String::new()];
        for _ in 0..4 {
            let longer: Vec<String> = paths
                .iter()
                .flat_map(|p| alphabet.iter().map(move |c| format!("{p}{c}")))
                .collect();
            paths.extend(longer);
            paths.dedup();
        }
        paths.sort();
        paths.dedup();
        for a in &paths {
            for b in &paths {
                if a == "." || b == "." {
                    continue;
                }
                assert_eq!(
                    path_order(a, b),
                    a.split('/').cmp(b.split('/')),
                    "{a:?} vs {b:?}"
                );
            }
        }
        assert_eq!(path_order(".", "a"), std::cmp::Ordering::Less);
        assert_eq!(path_order("a/b", "a.txt"), std::cmp::Ordering::Less);
    }

    fn sample() -> Manifest {
        Manifest {
            format: FORMAT,
            name: "sample".into(),
            version: "1.0".into(),
            security_version: 3,
            created: 0,
            tool: "fw-sign test".into(),
            gz_length: None,
            entries: vec![
                Entry {
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
                    xattrs: None,
                },
                Entry {
                    path: "bin".into(),
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
                    xattrs: None,
                },
                Entry {
                    path: "bin/app".into(),
                    kind: Kind::File,
                    mode: 0o4755,
                    uid: 0,
                    gid: 0,
                    size: Some(3),
                    blake3: Some(blake3::hash(b"abc").to_hex().to_string()),
                    target: None,
                    hardlink: None,
                    mtime: None,
                    gz: None,
                    xattrs: None,
                },
                Entry {
                    path: "bin.txt".into(),
                    kind: Kind::Symlink,
                    mode: 0o777,
                    uid: 0,
                    gid: 0,
                    size: None,
                    blake3: None,
                    target: Some("bin/app".into()),
                    hardlink: None,
                    mtime: Some(1),
                    gz: None,
                    xattrs: None,
                },
            ],
        }
    }

    #[test]
    fn round_trips_through_json() {
        let manifest = sample();
        let json = manifest.to_json();
        assert_eq!(Manifest::from_json(&json).unwrap(), manifest);
    }

    #[test]
    fn refuses_unsafe_paths_and_names() {
        for path in [
            "../x",
            "/etc/passwd",
            "a//b",
            "a/./b",
            ".fw/manifest.json",
            "",
        ] {
            assert!(validate_path(path).is_err(), "{path}");
        }
        let long = format!("a/{}", "n".repeat(NAME_MAX + 1));
        let err = validate_path(&long).unwrap_err();
        assert!(err.message.contains("NAME_MAX"), "{}", err.message);
        assert!(validate_path(&format!("a/{}", "n".repeat(NAME_MAX))).is_ok());
        for name in ["current", ".hidden", "a/b", ""] {
            assert!(validate_name(name).is_err(), "{name}");
        }
        let mut manifest = sample();
        manifest.entries[2].path = "bin/../../x".into();
        assert_eq!(
            Manifest::from_json(&manifest.to_json()).unwrap_err().code,
            crate::Exit::Invalid
        );
    }

    #[test]
    fn refuses_duplicates_and_disorder() {
        let mut manifest = sample();
        manifest.entries.swap(2, 3);
        assert!(manifest.validate().is_err());
        let mut manifest = sample();
        let dup = manifest.entries[2].clone();
        manifest.entries.insert(2, dup);
        assert!(manifest.validate().is_err());
    }

    #[test]
    fn gzip_ranges_must_follow_each_other_inside_the_package() {
        let mut manifest = sample();
        manifest.entries[2].gz = Some([10, 5]);
        assert!(manifest.validate().is_err(), "no gz_length");
        manifest.gz_length = Some(15);
        manifest.validate().unwrap();
        assert_eq!(manifest.gz_ranges()[2], Some((10, 15)));
        manifest.gz_length = Some(14);
        assert!(manifest.validate().is_err(), "past the end");
        manifest.gz_length = Some(100);
        manifest.entries[1].gz = Some([0, 1]);
        assert!(manifest.validate().is_err(), "a directory has no members");
        manifest.entries[1].gz = None;
        manifest.entries[2].gz = Some([u64::MAX, 2]);
        assert!(manifest.validate().is_err(), "overflow");
        let mut old = sample();
        old.format = OLDEST_FORMAT;
        Manifest::from_json(&old.to_json()).unwrap();
        old.format = FORMAT_XATTRS + 1;
        assert!(Manifest::from_json(&old.to_json()).is_err());
    }

    #[test]
    fn extended_attributes_need_format_3_a_file_or_directory_and_valid_names() {
        let mut manifest = sample();
        let xattrs: crate::xattrs::Xattrs = [("user.a".to_string(), "00ff".to_string())].into();
        manifest.entries[2].xattrs = Some(Box::new(xattrs.clone()));
        assert!(manifest.validate().is_err(), "format 2 has no xattrs");
        manifest.format = FORMAT_XATTRS;
        manifest.validate().unwrap();
        let json = manifest.to_json();
        assert!(String::from_utf8_lossy(&json).contains(r#""xattrs":{"user.a":"00ff"}"#));
        assert_eq!(Manifest::from_json(&json).unwrap(), manifest);
        let symlink = manifest
            .entries
            .iter()
            .position(|e| e.kind == Kind::Symlink)
            .unwrap();
        let mut on_symlink = manifest.clone();
        on_symlink.entries[symlink].xattrs = Some(Box::new(xattrs));
        assert!(on_symlink.validate().is_err(), "not on a symlink");
        manifest.entries[2].xattrs = Some(Box::new(
            [("security.selinux".to_string(), "00".to_string())].into(),
        ));
        assert!(manifest.validate().is_err(), "not carried");
    }

    #[test]
    fn json_chunks_cover_the_manifest_and_survive_changes_elsewhere() {
        let mut manifest = sample();
        for i in 0..400 {
            let mut e = manifest.entries[2].clone();
            e.path = format!("bin/f{i:04}");
            manifest.entries.push(e);
        }
        manifest
            .entries
            .sort_by(|a, b| path_order(&a.path, &b.path));
        let json = manifest.to_json();
        let chunks = json_chunks(&json);
        assert!(chunks.len() > 5, "{} chunks", chunks.len());
        assert_eq!(
            chunks[0].end,
            json.iter().position(|&b| b == b'\n').unwrap() + 1
        );
        let mut at = 0;
        for c in &chunks {
            assert_eq!(c.start, at);
            assert!(json[c.end - 1] == b'\n' || c.end == json.len());
            at = c.end;
        }
        assert_eq!(at, json.len());
        // A new version: another version string, one entry changed. Every
        // chunk but the first line's and the changed one's is the same.
        let mut next = manifest.clone();
        next.version = "2.0".into();
        next.entries[300].size = Some(4);
        let json2 = next.to_json();
        let set = |j: &[u8]| -> std::collections::HashSet<Vec<u8>> {
            json_chunks(j).into_iter().map(|r| j[r].to_vec()).collect()
        };
        let (old, new) = (set(&json), set(&json2));
        assert_eq!(new.difference(&old).count(), 2);
    }

    #[test]
    fn directory_contents_sort_before_siblings_with_dots() {
        assert_eq!(path_order("a/b", "a.txt"), std::cmp::Ordering::Less);
        assert_eq!(path_order(".", "a"), std::cmp::Ordering::Less);
        assert_eq!(path_order("a", "a/b"), std::cmp::Ordering::Less);
    }

    #[test]
    fn hashes_files_small_and_large() {
        let dir = tempfile::tempdir().unwrap();
        let small = dir.path().join("small");
        std::fs::write(&small, b"abc").unwrap();
        assert_eq!(
            hash_file(&small).unwrap(),
            (3, blake3::hash(b"abc").to_hex().to_string())
        );
        let data = vec![7u8; 5 << 20];
        let large = dir.path().join("large");
        std::fs::write(&large, &data).unwrap();
        assert_eq!(
            hash_file(&large).unwrap(),
            (data.len() as u64, blake3::hash(&data).to_hex().to_string())
        );
    }
}
