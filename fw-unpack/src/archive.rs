//! The walk over the archive: its entries in order, then what must follow
//! the last one (zero padding, the end-of-archive marker, the end of the
//! gzip stream), then fw-unseal's proof; the staging directory removed
//! on any failure.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use fw_core::keyring::Keyring;
use fw_core::manifest::SIGNATURE_PATH;
use fw_core::proof;
use fw_core::target::SharedFiles;
use fw_core::trust::Signer;
use fw_core::{Error, Result};

use crate::blocks;
use crate::extractor::{Extractor, CHUNK};
use crate::files::{writer_threads, CloseOnDrop, Files, Writers};
use crate::paths::split_path;
use crate::staging::Cleanup;
use crate::stream::{stream_error, Capped, ProofFeed, METADATA_ALLOWANCE};

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
        let mut current = cleanup.exclusive();
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
    let mut current = cleanup.exclusive();
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

/// [`extract_entries`] with writer threads for the tree's files (see
/// [`crate::files`]), every one done before the result.
fn extract<R: Read + Send + 'static>(
    input: R,
    work: &Path,
    max_bytes: u64,
    shared: &SharedFiles,
    keyring: &Keyring,
    delta: bool,
    cleanup: &Cleanup,
) -> Result<Unpacked> {
    let files = Files::new(cleanup, shared);
    let writers = Writers::default();
    std::thread::scope(|scope| {
        let _close = CloseOnDrop(&writers);
        for _ in 0..writer_threads() {
            std::thread::Builder::new()
                .name("fw-write".into())
                .spawn_scoped(scope, || writers.run(&files))
                .map_err(|e| Error::failed(format!("cannot start a writer thread: {e}")))?;
        }
        extract_entries(input, max_bytes, keyring, delta, work, &files, &writers)
    })
}

fn extract_entries<R: Read + Send + 'static>(
    input: R,
    max_bytes: u64,
    keyring: &Keyring,
    delta: bool,
    work: &Path,
    files: &Files,
    writers: &Writers,
) -> Result<Unpacked> {
    let shared = files.shared;
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
    let mut x = Extractor::new(work, max_bytes, files, writers, keyring);
    let mut count = 0usize;
    // Where the last entry's data (padded) ends in the tar stream.
    let mut entries_end = 0u64;
    let walked = (|| -> Result<()> {
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
        Ok(())
    })();
    // Every file written before anything else is decided; a writer's
    // failure comes from an earlier entry than the walk's own.
    let written = writers.wait_idle();
    written.and(walked)?;
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
    // Before the tree is printed: fw-verify, next, reads the record.
    shared.save();
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
    use fw_core::manifest::{self, Kind, Manifest};
    use std::io::Write;

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
                xattrs: None,
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
            assert_eq!(err.code, fw_core::Exit::Security, "{}", err.message);
            assert!(err.message.contains("manifest"), "{}", err.message);
        }
        assert_eq!(
            std::fs::read_dir(staging.path()).unwrap().count(),
            0,
            "a refusal leaves nothing behind"
        );
    }
}
