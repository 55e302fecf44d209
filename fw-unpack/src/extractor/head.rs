//! The package's first two entries: the manifest, written straight to
//! its file, and its signature, checked by the keyring's trust rule
//! before the manifest's JSON is parsed.

use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;

use fw_core::manifest::{self, Kind, Manifest, MANIFEST_PATH, SIGNATURE_PATH};
use fw_core::{Error, Result};

use super::{Extractor, CHUNK};
use crate::stream::stream_error;

impl Extractor<'_> {
    pub(crate) fn first_entries(
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
            (SIGNATURE_PATH, fw_core::manifest::MAX_SIGNATURE)
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
                let _lock = self.files.cleanup().lock();
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
            let create = self.create_mode(header, 0o644);
            let file = self.write_file(&display, &path, entry, size, create)?;
            let finish = self.finish_plan(header, 0o644, None, None);
            return self.finish_file(file, &path, &finish);
        }
        let mut signature = Vec::with_capacity(size as usize);
        entry
            .take(size)
            .read_to_end(&mut signature)
            .map_err(|e| stream_error(e, &display, self.max_bytes))?;
        let create = self.create_mode(header, 0o644);
        let file = self.write_file(&display, &path, &mut &signature[..], size, create)?;
        let finish = self.finish_plan(header, 0o644, None, None);
        self.finish_file(file, &path, &finish)?;

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
}
