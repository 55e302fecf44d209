//! What the fuzz targets (fuzz/, scripts/fuzz) found, replayed on stable
//! against the real binaries: each input in fuzz/regressions/TARGET is one
//! finding, kept also as a seed of its target. The inputs are made with the
//! fuzz harness's keys (fuzz/keys: a vendor and a device key trusted
//! nowhere else), so the keyring here is theirs.

use std::path::{Path, PathBuf};

use fw_e2e::*;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// The fuzz harness's keyring: the vendor's certificate and the device key.
fn fuzz_keyring(dir: &Path) -> PathBuf {
    let keyring = dir.join("keyring");
    std::fs::create_dir(&keyring).unwrap();
    let keys = root().join("fuzz/keys");
    std::fs::copy(keys.join("vendor.asc"), keyring.join("vendor.asc")).unwrap();
    std::fs::copy(keys.join("device.key"), keyring.join("device-key.asc")).unwrap();
    keyring
}

fn findings(target: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("fuzz/regressions").join(target))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no findings of {target}");
    files
}

/// fw-unseal on what the `unseal` target found: refused with exit 4 or 5
/// (never a panic: the first one was encrypted data ending right after a
/// partial body chunk, which made sequoia's packet parser panic when
/// fw-unseal read it again after its error), and no plaintext released
/// (at most the announcement member).
#[test]
fn fw_unseal_refuses_what_fuzzing_found() {
    let dir = tempfile::tempdir().unwrap();
    let keyring = fuzz_keyring(dir.path());
    for input in findings("unseal") {
        let output = run_file(fw("fw-unseal").arg("--keyring").arg(&keyring), &input);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            matches!(output.status.code(), Some(4 | 5)),
            "{}: exit {:?}; stderr: {stderr}",
            input.display(),
            output.status
        );
        assert!(stderr.contains("error:"), "{}: {stderr}", input.display());
        // Empty, or only empty gzip members (the announcement).
        let mut released = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::MultiGzDecoder::new(&output.stdout[..]),
            &mut released,
        )
        .or_else(|e| {
            if output.stdout.is_empty() {
                Ok(0)
            } else {
                Err(e)
            }
        })
        .unwrap();
        assert!(
            released.is_empty(),
            "{}: {} bytes released",
            input.display(),
            released.len()
        );
    }
}
