//! `check`: fetch the signed index (a conditional GET with the last ETag), verify it,
//! refuse it if expired, older than the last accepted one, or below the installed
//! security_version, and compare its newest entry with what is installed.

use std::path::PathBuf;

use fw_core::{detail, note, Exit, Result};

use crate::events::{self, State};
use crate::index::{self, Index, IndexRules};
use crate::updater::{Checked, Updater};
use crate::{http, Installed};

/// The most bytes an index or its signature may have.
const INDEX_LIMIT: u64 = 1 << 20;
const SIGNATURE_LIMIT: u64 = 64 << 10;

/// An index with its signature, as fetched or cached.
struct Signed {
    json: Vec<u8>,
    sig: Vec<u8>,
    index: Index,
    etag: Option<String>,
}

impl Updater {
    fn cache(&self, name: &str) -> PathBuf {
        self.downloads.join(name)
    }

    /// The last index this device accepted, if it is still intact.
    fn cached_index(&self) -> Option<Signed> {
        let json = std::fs::read(self.cache("index.json")).ok()?;
        let sig = std::fs::read(self.cache("index.json.sig")).ok()?;
        let index = Index::verify(&self.keyring, &json, &sig).ok()?;
        let etag = std::fs::read_to_string(self.cache("index.etag"))
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty());
        Some(Signed {
            json,
            sig,
            index,
            etag,
        })
    }

    /// Fetches the index and its signature and verifies them. A pair that
    /// does not match is fetched once more (the publisher may have been
    /// replacing both) before it is refused.
    fn fetch_index(&self, cached_etag: Option<&str>) -> Result<Option<Signed>> {
        let url = self.config.index()?;
        let sig_url = format!("{url}.sig");
        let mut etag = cached_etag;
        for attempt in 0..2 {
            let Some((json, response)) =
                http::get_small(url, etag, INDEX_LIMIT, self.config.stall())?
            else {
                return Ok(None);
            };
            let (sig, _) = http::get_small(&sig_url, None, SIGNATURE_LIMIT, self.config.stall())?
                .expect("an unconditional GET is never 304");
            match Index::verify(&self.keyring, &json, &sig) {
                Ok(index) => {
                    let etag = response.header("etag").map(String::from);
                    return Ok(Some(Signed {
                        json,
                        sig,
                        index,
                        etag,
                    }));
                }
                Err(err) if attempt == 0 && err.code == Exit::Security => {
                    detail!("the index and its signature do not match; fetching both again");
                    etag = None;
                }
                Err(err) => return Err(err.context(url)),
            }
        }
        unreachable!("the loop returns")
    }

    /// `check`: emits `checking`, then `update_available` or `updated`
    /// (nothing new), or `check_failed`.
    pub fn check(&mut self) -> Result<Checked> {
        let last = std::fs::metadata(self.cache("index.json"))
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs());
        self.events.last_checked = self.events.last_checked.or(last);
        let installed = self.installed();
        if let Ok(installed) = &installed {
            self.events.name = installed.name.clone().unwrap_or_default();
            self.events.current_version = installed.version.clone().unwrap_or_default();
        }
        self.events.emit(State::Checking, "", None)?;
        let result = installed.and_then(|installed| self.check_with(installed));
        self.failing(State::CheckFailed, result)
    }

    fn check_with(&mut self, installed: Installed) -> Result<Checked> {
        let cached = self.cached_index();
        let fetched = self.fetch_index(cached.as_ref().and_then(|c| c.etag.as_deref()))?;
        let now = events::now();
        let last_accepted = cached.as_ref().map(|c| c.index.created);
        let (index, fresh) = match (fetched, cached) {
            (Some(new), _) => (new.index, Some((new.json, new.sig, new.etag))),
            (None, Some(Signed { index, .. })) => {
                detail!("the index has not changed (304)");
                (index, None)
            }
            (None, None) => unreachable!("a conditional GET is sent only with a cache"),
        };
        index
            .check_fresh(now, last_accepted)
            .map_err(|e| e.context(self.config.index().unwrap_or_default()))?;
        let name = self.config.name.as_deref().or(installed.name.as_deref());
        let entry = index.latest(name)?.clone();
        index::check_not_below(&entry, installed.security_version)
            .map_err(|e| e.context(self.config.index().unwrap_or_default()))?;
        if let Some((json, sig, etag)) = fresh {
            fw_core::atomic::write_path(&self.cache("index.json.sig"), &sig)?;
            fw_core::atomic::write_path(&self.cache("index.json"), &json)?;
            fw_core::atomic::write_path(
                &self.cache("index.etag"),
                etag.unwrap_or_default().as_bytes(),
            )?;
        }
        self.events.last_checked = Some(now);
        self.events.name = entry.name.clone();
        self.events.latest_version = entry.version.clone();
        let available = installed.version.as_deref() != Some(entry.version.as_str());
        if available {
            note!(
                "update available: {} {} (installed: {})",
                entry.name,
                entry.version,
                installed.version.as_deref().unwrap_or("none")
            );
            self.events.emit(State::UpdateAvailable, "", None)?;
        } else {
            detail!("{} {} is the latest", entry.name, entry.version);
            self.events.emit(State::Updated, "", None)?;
        }
        Ok(Checked {
            entry,
            installed,
            available,
        })
    }
}
