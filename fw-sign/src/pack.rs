//! `fw-sign pack`: a directory into the package of DESIGN.md: tar → gzip
//! → OpenPGP literal → one-pass signature → optional encryption.
//!
//! Files are read twice: once to hash them for the manifest, which must
//! come first, and once into the archive, where they are hashed again so
//! that a file changed in between fails the pack instead of shipping a
//! package whose manifest lies.
//!
//! The tree's gzip members are written first, into an unlinked spool
//! file, because the manifest says where each file's members lie (its
//! `gz` ranges, the table of contents of HTTP Range deltas); then the
//! manifest's own members and the spool go out inside the OpenPGP
//! message (`message.rs`). Every file with content gets members of its
//! own, so that a delta downloads exactly the files a device lacks.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flate2::Compression;
use globset::{Glob, GlobSet, GlobSetBuilder};
use openpgp::crypto::{KeyPair, Signer as _};
use openpgp::packet::signature::subpacket::{Subpacket, SubpacketArea, SubpacketValue};
use openpgp::packet::signature::Signature4;
use openpgp::packet::Signature;
use openpgp::serialize::MarshalInto;
use openpgp::types::{HashAlgorithm, SignatureType, Timestamp};
use openpgp::Cert;
use sequoia_openpgp as openpgp;

use fw_core::archive;
use fw_core::manifest::{self, Entry, Kind, Manifest, MANIFEST_PATH, SIGNATURE_PATH};
use fw_core::progress::{ProgressBar, ProgressReader};
use fw_core::{detail, note, Error, Result};

use crate::{keys, message};

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
        let Some(kind) = Kind::of(meta.file_type()) else {
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
            mtime: None,
            gz: None,
            xattrs: None,
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
        let xattrs = fw_core::xattrs::read(&abs).map_err(|e| {
            Error::io(
                format!("{}: reading its extended attributes", abs.display()),
                e,
            )
        })?;
        if !xattrs.is_empty() {
            if kind == Kind::Symlink {
                return Err(Error::invalid(format!(
                    "{}: a symlink with extended attributes ({}): fw carries them on files \
                     and directories only; remove them (setfattr -h -x NAME)",
                    abs.display(),
                    xattrs.keys().cloned().collect::<Vec<_>>().join(", ")
                )));
            }
            fw_core::xattrs::validate(&xattrs).map_err(|why| {
                Error::invalid(format!(
                    "{}: {why}; remove it (setfattr -x NAME) or --exclude the entry",
                    abs.display()
                ))
            })?;
            entry.xattrs = Some(Box::new(xattrs));
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
    use rayon::prelude::*;
    fw_core::progress::set_total(progress, 2 * tree_bytes(entries));
    // On all cores: a root filesystem is mostly small files, each hashed
    // on one (large ones are hashed on all cores by hash_file_counting).
    let hashed: Vec<Option<(u64, String)>> = entries
        .par_iter()
        .map(|source| {
            if source.entry.kind != Kind::File || source.entry.hardlink.is_some() {
                return Ok(None);
            }
            manifest::hash_file_counting(&source.abs, |n| progress.inc(n))
                .map(Some)
                .map_err(|e| Error::io(source.abs.display(), e))
        })
        .collect::<Result<_>>()?;
    let mut by_path: HashMap<String, (u64, String)> = HashMap::new();
    let mut total = 0;
    for (source, hashed) in entries.iter_mut().zip(hashed) {
        if source.entry.kind != Kind::File {
            continue;
        }
        let (size, hash) = match (&source.entry.hardlink, hashed) {
            (Some(first), _) => by_path[first].clone(),
            (None, Some((size, hash))) => {
                total += size;
                by_path.insert(source.rel.clone(), (size, hash.clone()));
                (size, hash)
            }
            (None, None) => unreachable!("every file without a hard link was hashed"),
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
    let mut ctx = hash_algo.context()?.for_signature(4);
    ctx.update(data);
    sign_hashed(signer, hash_algo, ctx, time)
}

/// A v4 binary signature made at `time` over what `ctx` has hashed (the
/// data), as [`deterministic_detached_signature`] makes it.
pub(crate) fn sign_hashed(
    signer: &mut KeyPair,
    hash_algo: HashAlgorithm,
    mut ctx: openpgp::crypto::hash::Context,
    time: SystemTime,
) -> openpgp::Result<Signature> {
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

/// Counts and hashes what passes through, to prove the archive holds
/// what the manifest says.
struct CheckedReader<R> {
    inner: R,
    hasher: blake3::Hasher,
    count: u64,
}

impl<R: Read> Read for CheckedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

fn write_error(err: io::Error) -> Error {
    Error::io("the package (stdout or its spool file)", err)
}

/// The tree's members, spooled.
struct Tree {
    spool: std::fs::File,
    /// Their total length.
    len: u64,
    /// The `gz` range of each entry with data.
    ranges: Vec<Option<[u64; 2]>>,
}

/// The tree's tar stream as gzip members into `spool`: each entry's
/// header(s), each file's data in members of its own (cut before and
/// after it), then the end-of-archive blocks.
fn write_tree(
    spool: std::fs::File,
    name: &str,
    entries: &[SourceEntry],
    progress: &ProgressBar,
) -> Result<Tree> {
    let out = io::BufWriter::with_capacity(256 << 10, spool);
    let mut gz = fw_gz::GzWriter::new(out, Compression::new(6));
    // Member numbers where each file's data starts and ends.
    let mut cuts: Vec<Option<(u64, u64)>> = Vec::with_capacity(entries.len());
    let zeros = [0u8; archive::BLOCK as usize];
    for source in entries {
        let e = &source.entry;
        let header = archive::header_bytes(name, e)
            .map_err(|err| Error::invalid(format!("{}: cannot be a tar entry: {err}", e.path)))?;
        gz.write_all(&header).map_err(write_error)?;
        let size = e.size.unwrap_or(0);
        if e.kind != Kind::File || e.hardlink.is_some() || size == 0 {
            cuts.push(None);
            continue;
        }
        let file =
            std::fs::File::open(&source.abs).map_err(|err| Error::io(source.abs.display(), err))?;
        let mut reader = CheckedReader {
            inner: ProgressReader::new(file.take(size), progress.clone()),
            hasher: blake3::Hasher::new(),
            count: 0,
        };
        let first = gz.cut().map_err(write_error)?;
        io::copy(&mut reader, &mut gz).map_err(|err| match err.raw_os_error() {
            Some(_) if err.kind() != io::ErrorKind::StorageFull => {
                Error::io(source.abs.display(), err)
            }
            _ => write_error(err),
        })?;
        let unchanged = reader.count == size
            && Some(reader.hasher.finalize().to_hex().as_str()) == e.blake3.as_deref();
        if !unchanged {
            return Err(Error::failed(format!(
                "{}: the file changed while it was being packed; pack again from a \
                 tree nothing else writes to",
                source.abs.display()
            )));
        }
        let end = gz.cut().map_err(write_error)?;
        gz.write_all(&zeros[..archive::padding(size)])
            .map_err(write_error)?;
        cuts.push(Some((first, end)));
    }
    gz.write_all(&[0u8; 2 * archive::BLOCK as usize])
        .map_err(write_error)?;
    let (out, lengths) = gz.finish_with_lengths().map_err(write_error)?;
    let spool = out.into_inner().map_err(|e| write_error(e.into_error()))?;
    // Member number -> offset of its first byte.
    let mut offsets = Vec::with_capacity(lengths.len() + 1);
    let mut total = 0u64;
    for len in &lengths {
        offsets.push(total);
        total += *len as u64;
    }
    offsets.push(total);
    // Relative to the end of the previous file's members (see Entry::gz).
    let mut previous_end = 0u64;
    let ranges = cuts
        .into_iter()
        .map(|cut| {
            cut.map(|(first, end)| {
                let (start, stop) = (offsets[first as usize], offsets[end as usize]);
                let gap = start - previous_end;
                previous_end = stop;
                [gap, stop - start]
            })
        })
        .collect();
    Ok(Tree {
        spool,
        len: total,
        ranges,
    })
}

/// The members that open the tar.gz: the manifest's tar header, then each
/// chunk of the manifest (fw-core's `manifest::json_chunks`) in a member
/// of its own, then its padding and the signature's entry; the first
/// member marked with where the tree's members begin (fw-gz `FB`) and the
/// chunks' table (`FC`), so that a delta fetches only the chunks that no
/// installed manifest has. Compressed at gzip's best: they are small, and
/// every delta downloads some of them.
fn head_members(name: &str, manifest: &[u8], signature: &[u8], created: u64) -> Vec<u8> {
    let level = Compression::best();
    let members = |bytes: &[u8]| -> Vec<u8> {
        bytes
            .chunks(fw_gz::BLOCK)
            .flat_map(|block| fw_gz::compress_member(block, level))
            .collect()
    };
    let header = archive::fw_file_header(name, MANIFEST_PATH, manifest.len() as u64, created);
    let mut out = members(&header);
    let mut table = Vec::new();
    for range in manifest::json_chunks(manifest) {
        let chunk = &manifest[range];
        let compressed = members(chunk);
        table.push(fw_gz::Chunk {
            members: compressed.len() as u32,
            len: chunk.len() as u32,
            hash: blake3::hash(chunk).as_bytes()[..16]
                .try_into()
                .expect("16 bytes"),
        });
        out.extend(compressed);
    }
    let mut tail = vec![0u8; archive::padding(manifest.len() as u64)];
    tail.extend(archive::fw_file_bytes(
        name,
        SIGNATURE_PATH,
        signature,
        created,
    ));
    out.extend(members(&tail));
    fw_gz::mark_head(&out, fw_gz::Chunk::encode(&table).as_deref())
}

fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Packs `options.dir` into `out`.
pub fn pack<W: Write>(options: &PackOptions, out: W) -> Result<PackSummary> {
    pack_with_progress(options, out, &ProgressBar::hidden())
}

/// Packs `options.dir` into `out`, counting into `progress` the bytes of
/// the tree as they are read, first to hash them, then to pack them (its
/// total is twice the tree's bytes, set from the walk).
pub fn pack_with_progress<W: Write>(
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
    for source in &mut entries {
        source.entry.mtime = Some(source.mtime);
    }

    // The tree's members first, into an unlinked spool file: the manifest,
    // which comes first in the package, says where each file's members lie.
    let spool = tempfile::tempfile()
        .map_err(|e| Error::io("cannot create an unlinked spool file in $TMPDIR", e))?;
    let tree = write_tree(spool, &name, &entries, progress)?;
    fw_core::progress::finish(progress);
    for (source, range) in entries.iter_mut().zip(tree.ranges) {
        source.entry.gz = range;
    }
    let with_xattrs = entries.iter().any(|s| s.entry.xattrs.is_some());
    let manifest = Manifest {
        format: if with_xattrs {
            manifest::FORMAT_XATTRS
        } else {
            manifest::FORMAT
        },
        name: name.clone(),
        version: options
            .version
            .clone()
            .unwrap_or_else(|| created.to_string()),
        security_version: options.security_version,
        created,
        tool: format!("fw-sign {}", fw_core::FW_VERSION),
        gz_length: Some(tree.len),
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
    let head = head_members(&name, &manifest_json, &signature, created);
    message::write(
        out,
        &head,
        (tree.spool, tree.len),
        &mut signing_pair,
        &recipients,
        created_time,
    )?;

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
