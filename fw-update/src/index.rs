//! The release index as the device reads it: verified (detached signature,
//! fw's trust rule), fresh (not past `expires`, not older than the last one
//! this device accepted) and not below the installed security_version.

use fw_core::keyring::Keyring;
use fw_core::{Error, Result};

pub use fw_core::index::{Entry, Index};

/// The device's rules for an index: verified, fresh, the newest entry.
pub trait IndexRules: Sized {
    fn verify(keyring: &Keyring, json: &[u8], signature: &[u8]) -> Result<Self>;
    fn check_fresh(&self, now: u64, last_accepted: Option<u64>) -> Result<()>;
    fn latest(&self, name: Option<&str>) -> Result<&Entry>;
}

impl IndexRules for Index {
    /// Verifies `signature` over `json` by the trust rule, then parses.
    fn verify(keyring: &Keyring, json: &[u8], signature: &[u8]) -> Result<Index> {
        fw_core::trust::verify_detached(keyring, signature, json).map_err(|e| {
            Error::security(format!(
                "the index's signature did not verify: {}; refusing it (is index.json.sig from \
                 the same fw-sign index run, and the vendor's certificate in the keyring?)",
                e.message
            ))
        })?;
        Index::parse(json)
    }

    /// Refuses an index past its expiry (a freeze attack, or a publisher
    /// that stopped re-signing) or older than one already accepted (a
    /// rollback of the index itself).
    fn check_fresh(&self, now: u64, last_accepted: Option<u64>) -> Result<()> {
        if now > self.expires {
            return Err(Error::security(format!(
                "the index expired at {} (it is {} now): a stale index is refused; the \
                 publisher must re-sign it (fw-sign index --expires ...)",
                crate::events::rfc3339(self.expires),
                crate::events::rfc3339(now)
            )));
        }
        if let Some(seen) = last_accepted {
            if self.created < seen {
                return Err(Error::security(format!(
                    "the index was created at {}, before the one this device already accepted \
                     ({}): an old index is being replayed; refusing it",
                    crate::events::rfc3339(self.created),
                    crate::events::rfc3339(seen)
                )));
            }
        }
        Ok(())
    }

    /// The newest entry for firmware `name` (highest security_version,
    /// then newest, then latest listed), or for the only name listed when
    /// `name` is unknown.
    fn latest(&self, name: Option<&str>) -> Result<&Entry> {
        let name = match name {
            Some(name) => name.to_string(),
            None => {
                let mut names: Vec<&str> = self.entries.iter().map(|e| e.name.as_str()).collect();
                names.sort();
                names.dedup();
                match names.as_slice() {
                    [one] => one.to_string(),
                    [] => return Err(Error::failed("the index lists no firmware")),
                    _ => {
                        return Err(Error::usage(format!(
                            "nothing is installed and the index lists several firmwares ({}): \
                             give --name NAME",
                            names.join(", ")
                        )))
                    }
                }
            }
        };
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.name == name)
            .max_by_key(|(i, e)| (e.security_version, e.created, *i))
            .map(|(_, e)| e)
            .ok_or_else(|| {
                Error::failed(format!(
                    "the index lists no firmware named {name:?}: check --index (or --name)"
                ))
            })
    }
}

/// Refuses an entry below the installed security_version (rollback).
pub fn check_not_below(entry: &Entry, installed_floor: u64) -> Result<()> {
    if entry.security_version < installed_floor {
        return Err(Error::security(format!(
            "the index offers {} {} with security_version {}, below the installed {}: a \
             rollback is refused; the publisher must list a current release",
            entry.name, entry.version, entry.security_version, installed_floor
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, version: &str, sv: u64, created: u64) -> String {
        format!(
            r#"{{"name":"{name}","version":"{version}","security_version":{sv},"created":{created},"url":"http://h/{name}-{version}.fw","size":1,"blake3":"{}"}}"#,
            "a".repeat(64)
        )
    }

    fn index(entries: &[String]) -> Index {
        Index::parse(
            format!(
                r#"{{"format":1,"created":100,"expires":200,"entries":[{}]}}"#,
                entries.join(",")
            )
            .as_bytes(),
        )
        .unwrap()
    }

    #[test]
    fn latest_prefers_security_version_then_created() {
        let i = index(&[
            entry("fw", "3", 1, 30),
            entry("fw", "2", 2, 20),
            entry("other", "9", 9, 90),
        ]);
        assert_eq!(i.latest(Some("fw")).unwrap().version, "2");
        assert!(i.latest(None).is_err());
        assert!(i.latest(Some("none")).is_err());
        let single = index(&[entry("fw", "1", 0, 1), entry("fw", "2", 0, 2)]);
        assert_eq!(single.latest(None).unwrap().version, "2");
    }

    #[test]
    fn freshness_and_rollback() {
        let i = index(&[entry("fw", "1", 1, 1)]);
        assert!(i.check_fresh(150, None).is_ok());
        assert_eq!(
            i.check_fresh(201, None).unwrap_err().code,
            fw_core::Exit::Security
        );
        assert_eq!(
            i.check_fresh(150, Some(101)).unwrap_err().code,
            fw_core::Exit::Security
        );
        assert!(check_not_below(&i.entries[0], 1).is_ok());
        assert_eq!(
            check_not_below(&i.entries[0], 2).unwrap_err().code,
            fw_core::Exit::Security
        );
    }
}
