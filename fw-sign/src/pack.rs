//! `fw-sign pack`: a directory into the package of DESIGN.md, in one
//! streaming pass: tar → gzip → OpenPGP literal → one-pass signature →
//! optional encryption, written as it is produced.
//!
//! Files are read twice: once to hash them for the manifest, which must
//! come first, and once into the archive, where they are hashed again so
//! that a file changed in between fails the pack instead of shipping a
//! package whose manifest lies.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flate2::Compression;
use globset::{Glob, GlobSet, GlobSetBuilder};
use openpgp::crypto::{KeyPair, Signer as _};
use openpgp::packet::signature::subpacket::{Subpacket, SubpacketArea, SubpacketValue};
use openpgp::packet::signature::Signature4;
use openpgp::packet::Signature;
use openpgp::serialize::stream::{Encryptor, LiteralWriter, Message, Signer};
use openpgp::serialize::MarshalInto;
use openpgp::types::{DataFormat, HashAlgorithm, SignatureType, SymmetricAlgorithm, Timestamp};
use openpgp::Cert;
use sequoia_openpgp as openpgp;

use fw_core::manifest::{self, Entry, Kind, Manifest, MANIFEST_PATH, SIGNATURE_PATH};
use fw_core::progress::{ProgressBar, ProgressReader};
use fw_core::{detail, note, Error, Result};

use crate::keys;

/// What `fw-sign pack` is asked to do.
#[derive(Debug, Clone, Default)]
pub struct PackOptions {
    pub dir: PathBuf,
    pub key: PathBuf,
    pub encrypt_for: Vec<PathBuf>,
    pub version: Option<String>,
    pub security_version: u64,
    pub exclude: Vec<String>,
    /// SOURCE_DATE_EPOCH: fixes the creation time and clamps mtimes, so the
    /// same tree packs to the same tar.gz.
    pub source_date_epoch: Option<u64>,
}

/// What was packed, for the summary on stderr.
#[derive(Debug, Clone)]
pub struct PackSummary {
    pub name: String,
    pub version: String,
    pub entries: usize,
    pub content_bytes: u64,
}

/// One entry of the source tree, in manifest order.
struct SourceEntry {
    rel: String,
    abs: PathBuf,
    mtime: u64,
    entry: Entry,
}

/// Reads `SOURCE_DATE_EPOCH` the way reproducible-builds.org specifies.
pub fn source_date_epoch_from_env() -> Result<Option<u64>> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(value) if !value.is_empty() => value.trim().parse().map(Some).map_err(|_| {
            Error::usage(format!(
                "SOURCE_DATE_EPOCH={value:?} is not a number of seconds since 1970"
            ))
        }),
        _ => Ok(None),
    }
}

/// The firmware's name: the directory's own name.
pub fn firmware_name(dir: &Path) -> Result<String> {
    let named = if dir.file_name().is_some() {
        dir.to_path_buf()
    } else {
        // `.`, `..`, `/`: name it after what it really is.
        dir.canonicalize()
            .map_err(|e| Error::io(dir.display(), e))?
    };
    let name = named.file_name().ok_or_else(|| {
        Error::invalid(format!("{}: cannot pack the root directory", dir.display()))
    })?;
    let name = name.to_str().ok_or_else(|| {
        Error::invalid(format!(
            "{}: the directory's name is not UTF-8",
            dir.display()
        ))
    })?;
    manifest::validate_name(name)?;
    Ok(name.to_string())
}

fn exclusions(globs: &[String]) -> Result<GlobSet> {
    let mut set = GlobSetBuilder::new();
    for glob in globs {
        set.add(
            Glob::new(glob).map_err(|e| {
                Error::usage(format!("--exclude {glob:?} is not a valid glob: {e}"))
            })?,
        );
    }
    set.build()
        .map_err(|e| Error::usage(format!("--exclude: {e}")))
}

/// Walks the tree without following symlinks, in manifest order, and
/// refuses what a package cannot hold.
fn scan(dir: &Path, excluded: &GlobSet, clamp: Option<u64>) -> Result<Vec<SourceEntry>> {
    let root_meta = std::fs::symlink_metadata(dir).map_err(|e| Error::io(dir.display(), e))?;
    if !root_meta.is_dir() {
        return Err(Error::invalid(format!(
            "{} is not a directory: give the directory to pack (symlinks are not followed)",
            dir.display()
        )));
    }
    if dir.join(manifest::FW_DIR).symlink_metadata().is_ok() {
        return Err(Error::invalid(format!(
            "{} has a .fw entry at its top: .fw/ is fw's own; remove or rename it",
            dir.display()
        )));
    }
    // Never pack the package into itself (`fw-sign pack dir > dir/x.fw`).
    let stdout_inode = std::fs::metadata("/dev/stdout")
        .ok()
        .filter(|m| m.is_file())
        .map(|m| (m.dev(), m.ino()));

    let walker = walkdir::WalkDir::new(dir)
        .follow_links(false)
        .sort_by(|a, b| a.file_name().cmp(b.file_name()))
        .into_iter()
        .filter_entry(|e| {
            let rel = e.path().strip_prefix(dir).unwrap_or(e.path());
            rel.as_os_str().is_empty() || !excluded.is_match(rel)
        });

    let mut entries = Vec::new();
    let mut first_of_inode: HashMap<(u64, u64), String> = HashMap::new();
    for item in walker {
        let item = item.map_err(|e| {
            let path = e
                .path()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            match e.into_io_error() {
                Some(io) => Error::io(path, io),
                None => Error::invalid(format!("{path}: cannot walk the tree")),
            }
        })?;
        let abs = item.path().to_path_buf();
        let rel_path = abs.strip_prefix(dir).expect("walkdir stays below its root");
        let rel = if rel_path.as_os_str().is_empty() {
            ".".to_string()
        } else {
            rel_path
                .to_str()
                .ok_or_else(|| {
                    Error::invalid(format!(
                        "{}: the path is not UTF-8: rename it",
                        abs.display()
                    ))
                })?
                .to_string()
        };
        let meta = std::fs::symlink_metadata(&abs).map_err(|e| Error::io(abs.display(), e))?;
        if stdout_inode == Some((meta.dev(), meta.ino())) {
            continue;
        }
        let file_type = meta.file_type();
        let kind = if file_type.is_dir() {
            Kind::Dir
        } else if file_type.is_file() {
            Kind::File
        } else if file_type.is_symlink() {
            Kind::Symlink
        } else {
            return Err(Error::invalid(format!(
                "{}: sockets, device nodes and fifos cannot be packed; create them at \
                 install time (post-install hook) or --exclude them",
                abs.display()
            )));
        };
        let mtime = u64::try_from(meta.mtime()).unwrap_or(0);
        let mut entry = Entry {
            path: rel.clone(),
            kind,
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
            size: None,
            blake3: None,
            target: None,
            hardlink: None,
        };
        match kind {
            Kind::File => {
                if meta.nlink() > 1 {
                    let inode = (meta.dev(), meta.ino());
                    if let Some(first) = first_of_inode.get(&inode) {
                        entry.hardlink = Some(first.clone());
                    } else {
                        first_of_inode.insert(inode, rel.clone());
                    }
                }
            }
            Kind::Symlink => {
                let target = std::fs::read_link(&abs).map_err(|e| Error::io(abs.display(), e))?;
                let target = target.to_str().ok_or_else(|| {
                    Error::invalid(format!(
                        "{}: the symlink's target is not UTF-8",
                        abs.display()
                    ))
                })?;
                if target.is_empty() || target.contains('\0') {
                    return Err(Error::invalid(format!(
                        "{}: empty symlink target",
                        abs.display()
                    )));
                }
                entry.target = Some(target.to_string());
            }
            Kind::Dir => {}
        }
        manifest::validate_path(&rel).map_err(|_| {
            Error::invalid(format!("{}: this path cannot be packed", abs.display()))
        })?;
        entries.push(SourceEntry {
            rel,
            abs,
            mtime: clamp.map_or(mtime, |c| mtime.min(c)),
            entry,
        });
    }
    entries.sort_by(|a, b| manifest::path_order(&a.rel, &b.rel));
    Ok(entries)
}

/// Hashes every regular file (a hard-link group once) into the manifest.
/// `progress` gets a total of twice the
/// bytes of the tree (each file is read twice: hashed here, then packed)
/// and counts the first pass.
fn hash_files(entries: &mut [SourceEntry], progress: &ProgressBar) -> Result<u64> {
    let mut by_path: HashMap<String, (u64, String)> = HashMap::new();
    let mut total = 0;
    fw_core::progress::set_total(progress, 2 * tree_bytes(entries));
    for source in entries.iter_mut() {
        if source.entry.kind != Kind::File {
            continue;
        }
        let (size, hash) = match &source.entry.hardlink {
            Some(first) => by_path[first].clone(),
            None => {
                let (size, hash) = manifest::hash_file_counting(&source.abs, |n| progress.inc(n))
                    .map_err(|e| Error::io(source.abs.display(), e))?;
                total += size;
                by_path.insert(source.rel.clone(), (size, hash.clone()));
                (size, hash)
            }
        };
        source.entry.size = Some(size);
        source.entry.blake3 = Some(hash);
    }
    Ok(total)
}

/// The bytes of the files of `entries` (each hard-linked file once), as
/// the file system says before they are read: the total of the bar.
fn tree_bytes(entries: &[SourceEntry]) -> u64 {
    entries
        .iter()
        .filter(|s| s.entry.kind == Kind::File && s.entry.hardlink.is_none())
        .filter_map(|s| std::fs::symlink_metadata(&s.abs).ok())
        .map(|m| m.len())
        .sum()
}

/// A detached v4 signature over `data` made at `time`, without sequoia's
/// random salt notation, so that deterministic algorithms (Ed25519, RSA)
/// give the same bytes for the same input: the tar.gz holding it stays
/// reproducible.
pub fn deterministic_detached_signature(
    signer: &mut KeyPair,
    data: &[u8],
    time: SystemTime,
) -> openpgp::Result<Signature> {
    let hash_algo = HashAlgorithm::SHA512;
    let public = signer.public().clone();
    let hashed = SubpacketArea::new(vec![
        Subpacket::new(
            SubpacketValue::SignatureCreationTime(Timestamp::try_from(time)?),
            false,
        )?,
        Subpacket::new(
            SubpacketValue::IssuerFingerprint(public.fingerprint()),
            false,
        )?,
    ])?;
    let unhashed = SubpacketArea::new(vec![Subpacket::new(
        SubpacketValue::Issuer(public.keyid()),
        false,
    )?])?;

    // RFC 4880 5.2.4: data, then the hashed part of the packet, then the
    // v4 trailer.
    let hashed_bytes = hashed.to_vec()?;
    let hashed_len = u16::try_from(hashed_bytes.len())?;
    let mut header = vec![
        4,
        u8::from(SignatureType::Binary),
        u8::from(public.pk_algo()),
        u8::from(hash_algo),
    ];
    header.extend_from_slice(&hashed_len.to_be_bytes());
    let mut ctx = hash_algo.context()?.for_signature(4);
    ctx.update(data);
    ctx.update(&header);
    ctx.update(&hashed_bytes);
    ctx.update(&[0x04, 0xff]);
    ctx.update(&((header.len() + hashed_bytes.len()) as u32).to_be_bytes());
    let digest = ctx.into_digest()?;
    let mpis = signer.sign(hash_algo, &digest)?;
    Ok(Signature4::new(
        SignatureType::Binary,
        public.pk_algo(),
        hash_algo,
        hashed,
        unhashed,
        [digest[0], digest[1]],
        mpis,
    )
    .into())
}

/// Files at least this large get gzip members of their own (see
/// `GzWriter::cut_marker`).
const OWN_MEMBERS: u64 = 16 << 10;

/// Counts and hashes what passes through, to prove the archive holds
/// what the manifest says. With `cut`, marks the start and the end of the
/// file's data as gzip member boundaries.
struct CheckedReader<R> {
    inner: R,
    hasher: blake3::Hasher,
    count: u64,
    cut: Option<Arc<AtomicBool>>,
}

impl<R: Read> Read for CheckedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(cut) = &self.cut {
            // Before the first byte of data is written (after the tar
            // header), and after the last (before the padding).
            if self.count == 0 {
                cut.store(true, Ordering::Relaxed);
            }
        }
        let n = self.inner.read(buf)?;
        if n == 0 {
            if let Some(cut) = &self.cut {
                cut.store(true, Ordering::Relaxed);
            }
        }
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

fn header_for(
    kind: tar::EntryType,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: u64,
    size: u64,
) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_uid(uid as u64);
    header.set_gid(gid as u64);
    header.set_mtime(mtime);
    header.set_size(size);
    header
}

fn tar_error(path: &str, err: io::Error) -> Error {
    match err.kind() {
        // Writing the package failed: the output's problem, not the entry's.
        io::ErrorKind::BrokenPipe | io::ErrorKind::StorageFull | io::ErrorKind::WriteZero => {
            Error::io("stdout", err)
        }
        // Reading the file failed.
        _ if err.raw_os_error().is_some() => Error::io(path, err),
        _ => Error::invalid(format!("{path}: cannot be written as a tar entry: {err}")),
    }
}

/// Writes the tar stream of DESIGN.md: manifest, signature, then the tree.
fn write_tar<W: Write>(
    out: fw_gz::GzWriter<W>,
    name: &str,
    manifest_json: &[u8],
    signature: &[u8],
    created: u64,
    entries: &[SourceEntry],
    progress: &ProgressBar,
) -> Result<fw_gz::GzWriter<W>> {
    let cut = out.cut_marker();
    let mut tar = tar::Builder::new(out);
    tar.mode(tar::HeaderMode::Complete);
    for (path, data) in [(MANIFEST_PATH, manifest_json), (SIGNATURE_PATH, signature)] {
        let mut header = header_for(
            tar::EntryType::Regular,
            0o644,
            0,
            0,
            created,
            data.len() as u64,
        );
        let full = format!("{name}/{path}");
        tar.append_data(&mut header, &full, data)
            .map_err(|e| tar_error(&full, e))?;
    }
    for source in entries {
        let e = &source.entry;
        let full = if e.path == "." {
            format!("{name}/")
        } else {
            format!("{name}/{}", e.path)
        };
        match (e.kind, &e.hardlink) {
            (Kind::Dir, _) => {
                let mut header = header_for(
                    tar::EntryType::Directory,
                    e.mode,
                    e.uid,
                    e.gid,
                    source.mtime,
                    0,
                );
                tar.append_data(&mut header, &full, io::empty())
                    .map_err(|err| tar_error(&full, err))?;
            }
            (Kind::Symlink, _) => {
                let mut header = header_for(
                    tar::EntryType::Symlink,
                    e.mode,
                    e.uid,
                    e.gid,
                    source.mtime,
                    0,
                );
                let target = e.target.as_deref().unwrap_or_default();
                tar.append_link(&mut header, &full, target)
                    .map_err(|err| tar_error(&full, err))?;
            }
            (Kind::File, Some(first)) => {
                let mut header =
                    header_for(tar::EntryType::Link, e.mode, e.uid, e.gid, source.mtime, 0);
                tar.append_link(&mut header, &full, format!("{name}/{first}"))
                    .map_err(|err| tar_error(&full, err))?;
            }
            (Kind::File, None) => {
                let size = e.size.unwrap_or(0);
                let file = std::fs::File::open(&source.abs)
                    .map_err(|err| Error::io(source.abs.display(), err))?;
                let mut reader = CheckedReader {
                    inner: ProgressReader::new(file.take(size), progress.clone()),
                    hasher: blake3::Hasher::new(),
                    count: 0,
                    cut: (size >= OWN_MEMBERS).then(|| Arc::clone(&cut)),
                };
                let mut header = header_for(
                    tar::EntryType::Regular,
                    e.mode,
                    e.uid,
                    e.gid,
                    source.mtime,
                    size,
                );
                tar.append_data(&mut header, &full, &mut reader)
                    .map_err(|err| tar_error(&full, err))?;
                let unchanged = reader.count == size
                    && Some(reader.hasher.finalize().to_hex().as_str()) == e.blake3.as_deref();
                if !unchanged {
                    return Err(Error::failed(format!(
                        "{}: the file changed while it was being packed; pack again from a \
                         tree nothing else writes to",
                        source.abs.display()
                    )));
                }
            }
        }
    }
    tar.into_inner().map_err(|e| Error::io("stdout", e))
}

fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn openpgp_error(err: anyhow::Error) -> Error {
    match err.downcast::<io::Error>() {
        Ok(io) => Error::io("stdout", io),
        Err(other) => Error::failed(format!("OpenPGP: {other}")),
    }
}

/// Packs `options.dir` into `out`.
pub fn pack<W: Write + Send + Sync>(options: &PackOptions, out: W) -> Result<PackSummary> {
    pack_with_progress(options, out, &ProgressBar::hidden())
}

/// Packs `options.dir` into `out`, counting into `progress` the bytes of
/// the tree as they are read, first to hash them, then to pack them (its
/// total is twice the tree's bytes, set from the walk).
pub fn pack_with_progress<W: Write + Send + Sync>(
    options: &PackOptions,
    out: W,
    progress: &ProgressBar,
) -> Result<PackSummary> {
    let name = firmware_name(&options.dir)?;
    let excluded = exclusions(&options.exclude)?;
    let (mut signing_pair, _key_cert) = keys::signing_keypair(&options.key)?;
    let recipient_certs: Vec<(PathBuf, Cert)> = options
        .encrypt_for
        .iter()
        .map(|path| {
            Ok((
                path.clone(),
                fw_core::keyring::read_one(path, "certificate")?,
            ))
        })
        .collect::<Result<_>>()?;
    let recipients = keys::recipients(&recipient_certs)?;

    // With SOURCE_DATE_EPOCH the signatures are dated then, but never before
    // the signing key existed: a key is not alive before its creation.
    let key_created = unix_seconds(signing_pair.public().creation_time());
    let created = match options.source_date_epoch {
        Some(epoch) => epoch.max(key_created),
        None => unix_seconds(SystemTime::now()),
    };
    let created_time = UNIX_EPOCH + Duration::from_secs(created);

    let mut entries = scan(&options.dir, &excluded, options.source_date_epoch)?;
    let content_bytes = hash_files(&mut entries, progress)?;
    // Files that changed size since the walk: the bar still ends at its total.
    progress.set_length(2 * content_bytes);
    let manifest = Manifest {
        format: manifest::FORMAT,
        name: name.clone(),
        version: options
            .version
            .clone()
            .unwrap_or_else(|| created.to_string()),
        security_version: options.security_version,
        created,
        tool: format!("fw-sign {}", fw_core::FW_VERSION),
        entries: entries.iter().map(|s| s.entry.clone()).collect(),
    };
    manifest.validate()?;
    let manifest_json = manifest.to_json();
    if manifest_json.len() as u64 > manifest::MAX_JSON {
        return Err(Error::invalid(format!(
            "the manifest of {} entries would be {} bytes, more than devices read ({} bytes): \
             pack fewer entries (--exclude), or split the tree",
            entries.len(),
            manifest_json.len(),
            manifest::MAX_JSON
        )));
    }
    let signature =
        deterministic_detached_signature(&mut signing_pair, &manifest_json, created_time)
            .and_then(|sig| openpgp::Packet::from(sig).to_vec())
            .map_err(|e| Error::failed(format!("cannot sign the manifest: {e}")))?;
    detail!(
        "manifest: {} entries, {} bytes of content",
        entries.len(),
        content_bytes
    );

    let message = Message::new(out);
    let message = if recipients.is_empty() {
        message
    } else {
        Encryptor::for_recipients(message, recipients)
            .symmetric_algo(SymmetricAlgorithm::AES256)
            .build()
            .map_err(openpgp_error)?
    };
    // SHA-256: hardware-accelerated (SHA-NI) on current x86 and ARM CPUs,
    // about twice as fast as SHA-512 for the device hashing every byte.
    let message = Signer::new(message, signing_pair)
        .and_then(|s| s.hash_algo(HashAlgorithm::SHA256))
        .and_then(|s| s.creation_time(created_time).build())
        .map_err(openpgp_error)?;
    let literal = LiteralWriter::new(message)
        .format(DataFormat::Binary)
        .date(created_time)
        .and_then(|l| l.build())
        .map_err(openpgp_error)?;
    // Independent members compressed on every core (see fw-gz); no name
    // and a zero mtime in their headers: reproducible.
    let gzip = fw_gz::GzWriter::new(literal, Compression::new(6));
    let gzip = write_tar(
        gzip,
        &name,
        &manifest_json,
        &signature,
        created,
        &entries,
        progress,
    )?;
    let literal = gzip.finish().map_err(|e| Error::io("stdout", e))?;
    literal.finalize().map_err(openpgp_error)?;
    fw_core::progress::finish(progress);

    note!(
        "packed {} {} ({} entries, {} bytes){}",
        name,
        manifest.version,
        entries.len(),
        content_bytes,
        if options.encrypt_for.is_empty() {
            ""
        } else {
            ", encrypted"
        }
    );
    Ok(PackSummary {
        name,
        version: manifest.version,
        entries: entries.len(),
        content_bytes,
    })
}
