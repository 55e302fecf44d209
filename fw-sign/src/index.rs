//! `fw-sign index`: the signed release index that devices poll
//! (`fw-update`, docs/update.md).
//!
//! `index.json` is plain JSON listing each package's name, version,
//! security_version, URL, size and BLAKE3 (read from the package file and
//! its signed manifest), with the index's own creation and expiry times.
//! Its signature is *detached* (`index.json.sig`, an armored OpenPGP
//! signature over the exact bytes), checked on the device by the same trust
//! rule as the manifest's: no canonical JSON, and the file stays readable
//! by `jq`, a browser or a CDN.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openpgp::armor;
use openpgp::parse::stream::DecryptorBuilder;
use openpgp::parse::Parse;
use openpgp::policy::StandardPolicy;
use openpgp::serialize::Marshal;
use sequoia_openpgp as openpgp;

use fw_core::index::{Entry, Index, FORMAT};
use fw_core::keyring::Keyring;
use fw_core::manifest::{Manifest, MANIFEST_PATH};
use fw_core::trust::{self, TrustHelper};
use fw_core::{detail, Error, Result};

use crate::keys;
use crate::pack::deterministic_detached_signature;

/// How long an index is valid when `--expires` is not given: 7 days.
pub const DEFAULT_EXPIRES: &str = "7d";

/// What `fw-sign index` is asked to do.
#[derive(Debug, Clone, Default)]
pub struct IndexOptions {
    pub key: PathBuf,
    /// Device keys to decrypt encrypted packages with (to read their
    /// manifests).
    pub decrypt_keys: Vec<PathBuf>,
    pub base_url: String,
    /// Seconds from the index's creation to its expiry.
    pub expires_in: u64,
    pub packages: Vec<PathBuf>,
    pub source_date_epoch: Option<u64>,
}

/// The index and its detached signature (armored).
#[derive(Debug, Clone)]
pub struct SignedIndex {
    pub json: Vec<u8>,
    pub signature: Vec<u8>,
    pub entries: Vec<Entry>,
}
pub use fw_core::cli::parse_duration;

/// Percent-encodes a file name for a URL path segment.
fn url_segment(name: &str) -> String {
    let mut out = String::new();
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Reads the signed manifest of a package, checking the package's signature
/// by `keyring` (the signing key's own certificate: an index lists only
/// packages signed by the key that signs the index).
pub fn package_manifest(keyring: &Keyring, path: &Path) -> Result<Manifest> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path.display(), e))?;
    let helper = TrustHelper::new(keyring);
    let outcome = helper.outcome();
    let policy = StandardPolicy::new();
    let what = path.display().to_string();
    let mut decryptor = DecryptorBuilder::from_reader(std::io::BufReader::new(file))
        .and_then(|b| b.with_policy(&policy, trust::verification_time(), helper))
        .map_err(|e| {
            outcome
                .borrow_mut()
                .error_for(e)
                .context(format!("package {what}"))
        })?;
    let mut manifest = None;
    {
        let gz = flate2::read::MultiGzDecoder::new(&mut decryptor);
        let mut archive = tar::Archive::new(gz);
        let entries = archive
            .entries()
            .map_err(|e| Error::invalid(format!("package {what}: not a tar.gz inside: {e}")))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| {
                outcome
                    .borrow_mut()
                    .error_for(e)
                    .context(format!("package {what}"))
            })?;
            let entry_path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            if manifest.is_none() && entry_path.ends_with(MANIFEST_PATH) {
                let mut json = Vec::new();
                entry
                    .read_to_end(&mut json)
                    .map_err(|e| Error::io(format!("package {what}"), e))?;
                manifest = Some(
                    Manifest::from_json(&json).map_err(|e| e.context(format!("package {what}")))?,
                );
            }
        }
    }
    // Drain to the end so the signature is checked over everything.
    std::io::copy(&mut decryptor, &mut std::io::sink()).map_err(|e| {
        outcome
            .borrow_mut()
            .error_for(e)
            .context(format!("package {what}"))
    })?;
    if outcome.borrow().signer.is_none() {
        return Err(outcome
            .borrow_mut()
            .error_for("no signature was checked")
            .context(format!("package {what}")));
    }
    manifest.ok_or_else(|| {
        Error::invalid(format!(
            "package {what} has no {MANIFEST_PATH}: give packages made by fw-sign pack"
        ))
    })
}

fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Builds and signs the index of `options.packages`.
pub fn index(options: &IndexOptions) -> Result<SignedIndex> {
    if options.packages.is_empty() {
        return Err(Error::usage("give at least one PKG to list in the index"));
    }
    let base = options.base_url.trim_end_matches('/');
    if !(base.contains("://")) {
        return Err(Error::usage(format!(
            "--base-url {:?} is not a URL: give e.g. https://fw.example/releases",
            options.base_url
        )));
    }
    let (mut pair, key_cert) = keys::signing_keypair(&options.key)?;
    let mut certs = vec![key_cert.clone().strip_secret_key_material()];
    for path in &options.decrypt_keys {
        certs.push(fw_core::keyring::read_one(path, "key")?);
    }
    let keyring = Keyring::from_certs(options.key.clone(), certs);

    let mut entries = Vec::new();
    for path in &options.packages {
        let manifest = package_manifest(&keyring, path).map_err(|e| {
            if e.message.contains("encrypted for") {
                e.context("give --decrypt-key with a device key it is encrypted to")
            } else {
                e
            }
        })?;
        let (size, blake3) =
            fw_core::manifest::hash_file(path).map_err(|e| Error::io(path.display(), e))?;
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| Error::usage(format!("{} is not a file", path.display())))?;
        detail!(
            "{}: {} {} (security_version {}), {size} bytes",
            path.display(),
            manifest.name,
            manifest.version,
            manifest.security_version
        );
        entries.push(Entry {
            name: manifest.name,
            version: manifest.version,
            security_version: manifest.security_version,
            created: manifest.created,
            url: format!("{base}/{}", url_segment(&file_name)),
            size,
            blake3,
        });
    }

    let key_created = unix_seconds(pair.public().creation_time());
    let created = match options.source_date_epoch {
        Some(epoch) => epoch.max(key_created),
        None => unix_seconds(SystemTime::now()),
    };
    let expires = created.saturating_add(options.expires_in);
    let json = Index {
        format: FORMAT,
        created,
        expires,
        entries: entries.clone(),
    }
    .to_json();
    let signature = deterministic_detached_signature(
        &mut pair,
        &json,
        UNIX_EPOCH + Duration::from_secs(created),
    )
    .map_err(|e| Error::failed(format!("cannot sign the index: {e}")))?;
    let mut armored = Vec::new();
    {
        let mut writer = armor::Writer::new(&mut armored, armor::Kind::Signature)
            .map_err(|e| Error::failed(format!("cannot armor the signature: {e}")))?;
        openpgp::Packet::from(signature)
            .serialize(&mut writer)
            .map_err(|e| Error::failed(format!("cannot write the signature: {e}")))?;
        writer
            .finalize()
            .map_err(|e| Error::failed(format!("cannot armor the signature: {e}")))?;
    }
    Ok(SignedIndex {
        json,
        signature: armored,
        entries,
    })
}

/// Where the signature goes: `--signature FILE`, else next to stdout's file
/// (`index.json` → `index.json.sig`) when stdout is a regular file.
pub fn signature_path(arg: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(path) = arg {
        return Ok(path);
    }
    let stdout = std::fs::read_link("/proc/self/fd/1").ok();
    let is_file = std::fs::metadata("/proc/self/fd/1")
        .map(|m| m.is_file())
        .unwrap_or(false);
    match stdout {
        Some(path) if is_file && path.is_absolute() => {
            let mut name = path.into_os_string();
            name.push(".sig");
            Ok(PathBuf::from(name))
        }
        _ => Err(Error::usage(
            "stdout is not a file: give --signature FILE for the detached signature, \
             or send the index to a file (> index.json writes index.json.sig beside it)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_percent_encoded() {
        assert_eq!(url_segment("a b.fw"), "a%20b.fw");
    }
}
