//! `.fw/verified`: the BLAKE3 of the manifest that fw-verify verified in a
//! tree. fw-fixate and fw-switch require it to match the manifest there.

use std::path::Path;

use crate::error::{Error, Result};
use crate::manifest::{Manifest, MANIFEST_PATH};

pub const VERIFIED_PATH: &str = ".fw/verified";

/// The tree's manifest, if `.fw/verified` records exactly it.
pub fn verified_manifest(tree: &Path) -> Result<Manifest> {
    let json = std::fs::read(tree.join(MANIFEST_PATH)).map_err(|e| {
        Error::invalid(format!(
            "{}: not an fw version tree (no {MANIFEST_PATH}: {e})",
            tree.display()
        ))
    })?;
    let recorded = std::fs::read_to_string(tree.join(VERIFIED_PATH)).unwrap_or_default();
    if recorded.trim() != Manifest::digest(&json) {
        return Err(Error::invalid(format!(
            "{} was not verified (no matching {VERIFIED_PATH}): run fw-verify on it first",
            tree.display()
        )));
    }
    Manifest::from_json(&json)
}

pub fn is_verified(tree: &Path) -> bool {
    verified_manifest(tree).is_ok()
}

/// Records `digest` in `.fw/verified` (atomically), unless it is there
/// already: an intact installed version is never written to.
pub fn record(tree: &Path, digest: &str) -> Result<()> {
    let file = tree.join(VERIFIED_PATH);
    let content = format!("{digest}\n");
    if std::fs::read_to_string(&file).ok().as_deref() == Some(content.as_str()) {
        return Ok(());
    }
    let tmp = tree.join(".fw/.verified.tmp");
    std::fs::write(&tmp, &content).map_err(|e| Error::io(tmp.display(), e))?;
    std::fs::rename(&tmp, &file).map_err(|e| Error::io(file.display(), e))
}
