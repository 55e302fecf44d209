//! `status`: the target as `rauc status` shows a system: every installed
//! version with its state, manifest version and security_version, the
//! security floor, and what to run next when a version is pending. As
//! JSON (serde) for scripts, as text (`Display`) for people.

use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use fw_core::journal::{Journal, Phase};
use fw_core::manifest::{Kind, Manifest};
use fw_core::target::{CURRENT, FAILSAFE, PREVIOUS};
use fw_core::verified::is_verified;
use fw_core::Result;

use crate::failed::{Failed, Mark};
use crate::target::{dir_name, Target};

/// One installed version.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct VersionStatus {
    /// The directory's name in the target.
    pub dir: String,
    pub name: Option<String>,
    pub version: Option<String>,
    pub security_version: Option<u64>,
    pub created: Option<u64>,
    /// Bytes of file content in the version.
    pub size: u64,
    /// Of those, bytes in files shared (hard-linked) with another version.
    pub shared_bytes: u64,
    /// Which links name it.
    pub links: Vec<String>,
    pub verified: bool,
    /// Its states, in this order: current, previous, failsafe, pending,
    /// failed.
    pub states: Vec<String>,
    /// Why and when it failed after its switch, if it did.
    pub failed: Option<Mark>,
    /// Its security_version is below the floor: no link may move to it.
    pub below_floor: bool,
}

/// The version on probation.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Pending {
    pub version: String,
    /// Where `recover` rolls it back to.
    pub from: Option<String>,
    /// Boots counted without a commit.
    pub boots: u32,
}

/// The whole target.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub target: PathBuf,
    pub current: Option<String>,
    pub previous: Option<String>,
    pub failsafe: Option<String>,
    /// `current` is a real directory: a device set up by hand, not yet
    /// adopted (any mutating command adopts it).
    pub current_is_directory: bool,
    pub security_floor: u64,
    /// Newest first: by the manifest's `created`, then by name.
    pub versions: Vec<VersionStatus>,
    /// Staging directories left by unpacks (of live or dead processes).
    pub staging: Vec<String>,
    /// The journal: a transaction in flight, or the version on probation.
    pub transaction: Option<Journal>,
    /// The version on probation until `fw-switch commit`.
    pub pending: Option<Pending>,
    /// What to run next, for people (also shown by the text form).
    pub next: Option<String>,
}

/// Bytes of file content in a version, and of those, bytes in inodes
/// linked more than once (shared with other versions).
fn sizes(dir: &Path, manifest: &Manifest) -> (u64, u64) {
    let mut size = 0;
    let mut shared = 0;
    for entry in manifest
        .entries
        .iter()
        .filter(|e| e.kind == Kind::File && e.hardlink.is_none())
    {
        let bytes = entry.size.unwrap_or(0);
        size += bytes;
        if std::fs::symlink_metadata(dir.join(&entry.path)).is_ok_and(|m| m.nlink() > 1) {
            shared += bytes;
        }
    }
    (size, shared)
}

impl Target {
    /// The target's status. An unreadable journal, floor or list of failed
    /// versions is an error, as for every other command.
    pub fn status(&self) -> Result<Status> {
        let links = [
            (CURRENT, self.link_name(CURRENT)),
            (PREVIOUS, self.link_name(PREVIOUS)),
            (FAILSAFE, self.link_name(FAILSAFE)),
        ];
        let floor = fw_core::floor::read(&self.root)?;
        let failed = Failed::load(&self.root)?;
        let transaction = Journal::load(&self.root)?;
        let pending = transaction
            .as_ref()
            .and_then(Journal::pending)
            .map(|p| Pending {
                version: p.to.clone().unwrap_or_default(),
                from: p.from.clone(),
                boots: p.boots,
            });
        let versions = self
            .versions()
            .into_iter()
            .map(|v| {
                let manifest = v.installed.as_ref().map(|i| &i.manifest);
                let (size, shared_bytes) = manifest.map_or((0, 0), |m| sizes(&v.dir, m));
                let named: Vec<String> = links
                    .iter()
                    .filter(|(_, n)| n.as_deref() == Some(v.name.as_str()))
                    .map(|(l, _)| l.to_string())
                    .collect();
                let mark = failed.get(&v).cloned();
                let mut states = named.clone();
                if pending.as_ref().is_some_and(|p| p.version == v.name) {
                    states.push("pending".into());
                }
                if mark.is_some() {
                    states.push("failed".into());
                }
                VersionStatus {
                    name: manifest.map(|m| m.name.clone()),
                    version: manifest.map(|m| m.version.clone()),
                    security_version: manifest.map(|m| m.security_version),
                    created: manifest.map(|m| m.created),
                    verified: is_verified(&v.dir),
                    below_floor: v.security_version() < floor,
                    dir: v.name,
                    size,
                    shared_bytes,
                    links: named,
                    states,
                    failed: mark,
                }
            })
            .collect();
        let next = pending.as_ref().map(|p| {
            format!(
                "{} is pending: run `fw-switch commit` once it is healthy; otherwise \
                 `fw-switch recover` (at boot) rolls it back{} after --max-boots boots \
                 without a commit (3 unless the boot service says otherwise; {} so far)",
                p.version,
                p.from
                    .as_deref()
                    .map(|f| format!(" to {f}"))
                    .unwrap_or_default(),
                p.boots
            )
        });
        Ok(Status {
            target: self.root.clone(),
            current: links[0].1.clone(),
            previous: links[1].1.clone(),
            failsafe: links[2].1.clone(),
            current_is_directory: std::fs::symlink_metadata(self.root.join(CURRENT))
                .map(|m| m.is_dir())
                .unwrap_or(false),
            security_floor: floor,
            versions,
            staging: self.staging_dirs().iter().map(|p| dir_name(p)).collect(),
            transaction,
            pending,
            next,
        })
    }
}

/// 1234567 -> "1.2 MB".
fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "target    {}", self.target.display())?;
        for (label, link) in [
            ("current", &self.current),
            ("previous", &self.previous),
            ("failsafe", &self.failsafe),
        ] {
            let version = link
                .as_deref()
                .and_then(|dir| self.versions.iter().find(|v| v.dir == dir));
            let mut notes = Vec::new();
            if let Some(v) = version {
                notes.extend(
                    v.states
                        .iter()
                        .filter(|s| ["pending", "failed"].contains(&s.as_str()))
                        .cloned(),
                );
                if v.below_floor {
                    notes.push("below the security floor".into());
                }
            }
            let notes = if notes.is_empty() {
                String::new()
            } else {
                format!(" ({})", notes.join(", "))
            };
            writeln!(f, "{label:<9} {}{notes}", link.as_deref().unwrap_or("-"))?;
        }
        if self.current_is_directory {
            writeln!(
                f,
                "current is a real directory: `fw-switch recover` adopts it"
            )?;
        }
        writeln!(f, "security floor {}", self.security_floor)?;
        if let Some(journal) = self
            .transaction
            .as_ref()
            .filter(|j| j.phase != Phase::Pending)
        {
            writeln!(
                f,
                "transaction {} (from {} to {}): in flight; `fw-switch recover` finishes or undoes it",
                journal.phase.as_str(),
                journal.from.as_deref().unwrap_or("-"),
                journal.to.as_deref().unwrap_or("-"),
            )?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "{:<28} {:<12} {:>4}  {:<26} {:>9} {:>9}",
            "VERSION", "FW VERSION", "SEC", "STATE", "SIZE", "SHARED"
        )?;
        for v in &self.versions {
            let mut state = v.states.join(", ");
            if v.name.is_some() && !v.verified {
                state += if state.is_empty() {
                    "not verified"
                } else {
                    ", not verified"
                };
            }
            writeln!(
                f,
                "{:<28} {:<12} {:>4}  {:<26} {:>9} {:>9}",
                v.dir,
                v.version.as_deref().unwrap_or("-"),
                v.security_version
                    .map_or_else(|| "-".into(), |s| s.to_string()),
                if state.is_empty() { "-" } else { &state },
                human(v.size),
                human(v.shared_bytes),
            )?;
        }
        for v in &self.versions {
            if let Some(mark) = &v.failed {
                writeln!(
                    f,
                    "\n{} {}: rollback never picks it; `fw-switch commit` on it clears the mark",
                    v.dir, mark.reason
                )?;
            }
        }
        if !self.staging.is_empty() {
            writeln!(f, "\nstaging: {}", self.staging.join(", "))?;
        }
        if let Some(next) = &self.next {
            writeln!(f, "\nnext: {next}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_for_people() {
        assert_eq!(human(999), "999 B");
        assert_eq!(human(1_234_567), "1.2 MB");
        assert_eq!(human(8_000_000_000), "8.0 GB");
    }
}
