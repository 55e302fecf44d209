//! What the device runs, from `fw-switch status --json`.

use std::path::Path;
use std::time::Duration;

use fw_core::{Error, Result};
use fw_nbio::Process;

use crate::tools::tool;

/// `fw-switch status` reads a few small files: a minute means it hangs.
const STATUS_TIMEOUT: Duration = Duration::from_secs(60);

/// What the device runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Installed {
    pub name: Option<String>,
    pub version: Option<String>,
    /// The highest security_version installed, or the committed floor.
    pub security_version: u64,
}

impl Installed {
    /// Asks `fw-switch status --json` about `target`.
    pub fn of(target: &Path) -> Result<Installed> {
        let switch = tool("fw-switch");
        let output = Process::new(&switch)
            .arg("-q")
            .arg("--target")
            .arg(target)
            .args(["status", "--json"])
            .timeout(STATUS_TIMEOUT)
            .die_with_parent()
            .run()
            .map_err(|e| match e {
                fw_nbio::Error::Spawn { error, .. } => Error::failed(format!(
                    "cannot run {} ({error}): install fw's tools next to fw-update or on PATH",
                    switch.display()
                )),
                other => Error::failed(format!(
                    "fw-switch status on {}: {other}: fix what it says",
                    target.display()
                )),
            })?;
        let mut installed = Installed::from_status_json(&output.stdout)?;
        // The committed floor, from its one reader (fw_core::floor).
        installed.security_version = installed
            .security_version
            .max(fw_core::floor::read(target)?);
        Ok(installed)
    }

    pub fn from_status_json(json: &[u8]) -> Result<Installed> {
        let status: serde_json::Value = serde_json::from_slice(json)
            .map_err(|e| Error::failed(format!("fw-switch status --json gave bad JSON: {e}")))?;
        let current = status["current"].as_str();
        // The committed floor is added by `of` (fw_core::floor).
        let mut installed = Installed::default();
        for version in status["versions"].as_array().into_iter().flatten() {
            if let Some(sv) = version["security_version"].as_u64() {
                installed.security_version = installed.security_version.max(sv);
            }
            if current.is_some() && version["dir"].as_str() == current {
                installed.name = version["name"].as_str().map(String::from);
                installed.version = version["version"].as_str().map(String::from);
            }
        }
        Ok(installed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installed_from_status() {
        let json = br#"{"current":"fw-1","security_floor":1,"versions":[
            {"dir":"fw","name":"fw","version":"v1","security_version":3},
            {"dir":"fw-1","name":"fw","version":"v2","security_version":2}]}"#;
        let installed = Installed::from_status_json(json).unwrap();
        assert_eq!(installed.version.as_deref(), Some("v2"));
        assert_eq!(installed.name.as_deref(), Some("fw"));
        assert_eq!(installed.security_version, 3);
        let empty = Installed::from_status_json(br#"{"current":null,"versions":[]}"#).unwrap();
        assert_eq!(empty, Installed::default());
    }
}
