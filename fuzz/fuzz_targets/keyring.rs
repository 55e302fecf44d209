//! The keyring loader on any bytes (one keyring file), then the loaded
//! keyring used as the tools use it: the trust rule on a detached
//! signature by the harness's vendor key, and fw-unseal on a small package
//! encrypted to the harness's device key and signed by its vendor (so
//! mutated certificates, bindings, revocations and secret keys reach
//! verification and decryption).
//!
//! Checked: a signature verifies only if the keyring trusts the vendor's
//! certificate, never by a key the keyring holds as a secret key only.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use fw_core::keyring::Keyring;
use libfuzzer_sys::fuzz_target;

fn fixtures() -> &'static (Vec<u8>, Vec<u8>) {
    static FIXTURES: OnceLock<(Vec<u8>, Vec<u8>)> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        let data = b"fw fuzz: signed data".to_vec();
        let signature = fw_fuzz::sign(&data);
        (data, signature)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(keyring) = Keyring::from_bytes(Path::new("fuzz.asc"), data) else {
        return;
    };
    let (signed, signature) = fixtures();
    if fw_core::trust::verify_detached(&keyring, signature, signed).is_ok() {
        let vendor = fw_fuzz::keyring().signers[0].fingerprint();
        assert!(
            keyring.signers.iter().any(|c| c.fingerprint() == vendor),
            "a signature verified by a keyring without the vendor's certificate"
        );
    }
    if !keyring.secret_keys.is_empty() {
        let _ = fw_unseal::unseal_bytes(
            &keyring,
            &fw_fuzz::encrypt(&fw_fuzz::signed_message(), true),
            false,
        );
    }
});
