//! `TARGET/.fw/failed`: the versions that failed after their switch, kept
//! in the target's state (a version's own `.fw/` holds only its manifest,
//! signature and verified record).
//!
//! `recover` marks the version it rolls back from; rollback, manual or
//! automatic, never picks a marked version; `fw-switch commit` of it
//! clears the mark. A mark names the version's directory and the digest
//! of its manifest, so a later version installed under a reused name is
//! not taken for the failed one.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use fw_core::target::state_dir;
use fw_core::{Error, Result};

use crate::target::Version;

/// The file's name in `TARGET/.fw`.
pub const FAILED: &str = "failed";

/// Why and when a version failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    /// The BLAKE3 of the failed version's manifest.
    pub manifest: Option<String>,
    pub reason: String,
    /// Seconds since the epoch.
    pub time: u64,
}

/// Every mark, by directory name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failed(BTreeMap<String, Mark>);

fn digest(version: &Version) -> Option<String> {
    version.installed.as_ref().map(|i| i.digest.clone())
}

impl Failed {
    /// The marks of `target`; none when the file does not exist. An
    /// unreadable file is an error: rollback must not pick a failed version
    /// by accident.
    pub fn load(target: &Path) -> Result<Failed> {
        let path = state_dir(target).join(FAILED);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                Error::failed(format!(
                    "{}: unreadable list of failed versions ({e}); remove it (rollback may \
                     then pick a version that failed before) and run fw-switch status",
                    path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Failed::default()),
            Err(e) => Err(Error::io(path.display(), e)),
        }
    }

    /// The mark of `version`, if it is the version that failed.
    pub fn get(&self, version: &Version) -> Option<&Mark> {
        self.0
            .get(&version.name)
            .filter(|mark| mark.manifest == digest(version))
    }

    pub fn contains(&self, version: &Version) -> bool {
        self.get(version).is_some()
    }

    /// Marks `version` failed for `reason` (a mark already there is kept:
    /// the first failure says most).
    pub fn mark(target: &Path, version: &Version, reason: &str) -> Result<()> {
        let mut failed = Failed::load(target)?;
        if failed.contains(version) {
            return Ok(());
        }
        let time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        failed.0.insert(
            version.name.clone(),
            Mark {
                manifest: digest(version),
                reason: reason.to_string(),
                time,
            },
        );
        failed.save(target)
    }

    /// Removes the mark of the version named `name`, if any.
    pub fn unmark(target: &Path, name: &str) -> Result<()> {
        let mut failed = Failed::load(target)?;
        if failed.0.remove(name).is_some() {
            failed.save(target)?;
        }
        Ok(())
    }

    fn save(&self, target: &Path) -> Result<()> {
        let dir = state_dir(target);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(dir.display(), e))?;
        let mut json = serde_json::to_vec_pretty(self).expect("marks serialize");
        json.push(b'\n');
        fw_core::atomic::write(&dir, FAILED, &json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(target: &Path, name: &str, manifest: &str) -> Version {
        let dir = target.join(name);
        std::fs::create_dir_all(dir.join(".fw")).unwrap();
        std::fs::write(dir.join(".fw/manifest.json"), manifest).unwrap();
        Version::read(&dir)
    }

    const MANIFEST: &str = r#"{"format":1,"name":"fw","version":"1","security_version":1,
        "created":1,"tool":"t","entries":[]}"#;

    #[test]
    fn marks_hold_for_the_same_manifest_only() {
        let target = tempfile::tempdir().unwrap();
        let t = target.path();
        let v = version(t, "fw-1", MANIFEST);
        assert!(!Failed::load(t).unwrap().contains(&v));
        Failed::mark(t, &v, "post-install failed").unwrap();
        Failed::mark(t, &v, "later reason").unwrap();
        let failed = Failed::load(t).unwrap();
        assert_eq!(failed.get(&v).unwrap().reason, "post-install failed");
        // The directory removed and its name reused by another version.
        std::fs::remove_dir_all(t.join("fw-1")).unwrap();
        let other = version(t, "fw-1", &MANIFEST.replace("\"1\"", "\"2\""));
        assert!(!Failed::load(t).unwrap().contains(&other));
        Failed::unmark(t, "fw-1").unwrap();
        assert_eq!(Failed::load(t).unwrap(), Failed::default());
    }

    #[test]
    fn an_unreadable_list_is_an_error() {
        let target = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(target.path().join(".fw")).unwrap();
        std::fs::write(target.path().join(".fw/failed"), "{").unwrap();
        assert!(Failed::load(target.path()).is_err());
    }
}
