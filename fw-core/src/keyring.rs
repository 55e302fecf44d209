//! Loading the keyring: a directory of OpenPGP certificates and keys
//! (`*.asc`, `*.pgp`, `*.gpg`) or one such file.
//!
//! Certificates without secret material are the trusted signers. Keys with
//! secret material (the device's decryption key) are used to decrypt only:
//! a device key that leaks from one device must not let its finder sign
//! firmware for the whole fleet.

use std::path::{Path, PathBuf};

use openpgp::cert::CertParser;
use openpgp::parse::Parse;
use openpgp::Cert;
use sequoia_openpgp as openpgp;

use crate::error::{Error, Result};

/// Where the keyring is when `--keyring` is not given.
pub const DEFAULT_KEYRING: &str = "/etc/fw/keys";

/// `--keyring K`, else `FW_KEYRING`, else `/etc/fw/keys`.
pub fn resolve(arg: Option<&Path>) -> PathBuf {
    if let Some(path) = arg {
        return path.to_path_buf();
    }
    match std::env::var_os("FW_KEYRING") {
        Some(value) if !value.is_empty() => PathBuf::from(value),
        _ => PathBuf::from(DEFAULT_KEYRING),
    }
}

#[derive(Debug, Clone)]
pub struct Keyring {
    /// Where it was loaded from, for messages.
    pub source: PathBuf,
    /// Trusted signers: certificates without secret key material.
    pub signers: Vec<Cert>,
    /// Keys with secret material, used for decryption only.
    pub secret_keys: Vec<Cert>,
}

impl Keyring {
    /// Loads every certificate and key under `path`.
    pub fn load(path: &Path) -> Result<Keyring> {
        let meta = std::fs::metadata(path).map_err(|e| {
            Error::failed(format!(
                "keyring {}: {e}: give --keyring DIR or set FW_KEYRING",
                path.display()
            ))
        })?;
        let files = if meta.is_dir() {
            let mut files = Vec::new();
            let entries = std::fs::read_dir(path)
                .map_err(|e| Error::io(format!("keyring {}", path.display()), e))?;
            for entry in entries {
                let entry =
                    entry.map_err(|e| Error::io(format!("keyring {}", path.display()), e))?;
                let file = entry.path();
                let is_key_file = matches!(
                    file.extension().and_then(|e| e.to_str()),
                    Some("asc" | "pgp" | "gpg")
                );
                if is_key_file && file.is_file() {
                    files.push(file);
                }
            }
            files.sort();
            files
        } else {
            vec![path.to_path_buf()]
        };

        let mut keyring = Keyring::from_certs(path, []);
        for file in &files {
            keyring.add_parsed(file, CertParser::from_file(file))?;
        }
        keyring.non_empty()
    }

    /// Loads the certificates and keys of one keyring file's bytes;
    /// `source` names it in messages. What [`Keyring::load`] does with
    /// each file.
    pub fn from_bytes(source: &Path, bytes: &[u8]) -> Result<Keyring> {
        let mut keyring = Keyring::from_certs(source, []);
        keyring.add_parsed(source, CertParser::from_bytes(bytes))?;
        keyring.non_empty()
    }

    fn add_parsed(&mut self, file: &Path, parser: openpgp::Result<CertParser>) -> Result<()> {
        let parser =
            parser.map_err(|e| Error::failed(format!("keyring file {}: {e}", file.display())))?;
        for cert in parser {
            let cert = cert.map_err(|e| {
                Error::failed(format!(
                    "keyring file {}: not a valid OpenPGP certificate: {e}",
                    file.display()
                ))
            })?;
            self.add(cert);
        }
        Ok(())
    }

    fn non_empty(self) -> Result<Keyring> {
        if self.signers.is_empty() && self.secret_keys.is_empty() {
            return Err(Error::failed(format!(
                "keyring {} holds no OpenPGP certificates (*.asc, *.pgp, *.gpg): \
                 add the vendor's certificate there",
                self.source.display()
            )));
        }
        Ok(self)
    }

    /// Builds a keyring from certificates already in memory.
    pub fn from_certs(source: impl Into<PathBuf>, certs: impl IntoIterator<Item = Cert>) -> Self {
        let mut keyring = Keyring {
            source: source.into(),
            signers: Vec::new(),
            secret_keys: Vec::new(),
        };
        for cert in certs {
            keyring.add(cert);
        }
        keyring
    }

    fn add(&mut self, cert: Cert) {
        let list = if cert.is_tsk() {
            &mut self.secret_keys
        } else {
            &mut self.signers
        };
        // The same certificate in two files (or twice in one) merges, so
        // that a revocation shipped separately takes effect.
        if let Some(known) = list
            .iter_mut()
            .find(|c| c.fingerprint() == cert.fingerprint())
        {
            if let Ok(merged) = known.clone().merge_public_and_secret(cert) {
                *known = merged;
            }
        } else {
            list.push(cert);
        }
    }
}

/// Reads exactly one certificate or key from a file (armored or binary).
pub fn read_one(path: &Path, what: &str) -> Result<Cert> {
    Cert::from_file(path).map_err(|e| {
        Error::failed(format!(
            "{what} {}: not an OpenPGP {what}: {e}",
            path.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use openpgp::cert::CertBuilder;
    use openpgp::serialize::Serialize;

    #[test]
    fn splits_signers_from_secret_keys() {
        let (vendor, _) = CertBuilder::general_purpose(Some("vendor"))
            .generate()
            .unwrap();
        let (device, _) = CertBuilder::general_purpose(Some("device"))
            .generate()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut out = std::fs::File::create(dir.path().join("vendor.pgp")).unwrap();
        vendor.serialize(&mut out).unwrap();
        let mut out = std::fs::File::create(dir.path().join("device.gpg")).unwrap();
        device.as_tsk().serialize(&mut out).unwrap();
        std::fs::write(dir.path().join("README"), "not a key").unwrap();

        let keyring = Keyring::load(dir.path()).unwrap();
        assert_eq!(keyring.signers.len(), 1);
        assert_eq!(keyring.signers[0].fingerprint(), vendor.fingerprint());
        assert_eq!(keyring.secret_keys.len(), 1);
        assert_eq!(keyring.secret_keys[0].fingerprint(), device.fingerprint());
    }

    #[test]
    fn from_bytes_reads_one_file_as_load_does() {
        let (vendor, _) = CertBuilder::general_purpose(Some("vendor"))
            .generate()
            .unwrap();
        let (device, _) = CertBuilder::general_purpose(Some("device"))
            .generate()
            .unwrap();
        let mut bytes = Vec::new();
        vendor.serialize(&mut bytes).unwrap();
        device.as_tsk().serialize(&mut bytes).unwrap();
        let keyring = Keyring::from_bytes(Path::new("k.pgp"), &bytes).unwrap();
        assert_eq!(keyring.signers[0].fingerprint(), vendor.fingerprint());
        assert_eq!(keyring.secret_keys[0].fingerprint(), device.fingerprint());
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("k.pgp"), &bytes).unwrap();
        let loaded = Keyring::load(&dir.path().join("k.pgp")).unwrap();
        assert_eq!(loaded.signers, keyring.signers);
        assert_eq!(loaded.secret_keys, keyring.secret_keys);
        for bad in [&b""[..], b"not a key", &bytes[..bytes.len() / 2]] {
            assert!(Keyring::from_bytes(Path::new("bad.asc"), bad).is_err());
        }
    }

    #[test]
    fn empty_keyring_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let err = Keyring::load(dir.path()).unwrap_err();
        assert!(
            err.message.contains("add the vendor's certificate"),
            "{}",
            err.message
        );
    }
}
