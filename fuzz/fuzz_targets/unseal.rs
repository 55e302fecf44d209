//! fw-unseal on any bytes (a package, binary or armored, signed or
//! encrypted, mutated), with the harness's keyring, so that encrypted
//! inputs reach decryption.
//!
//! Checked beyond "no panic, no hang, no limit breached": a refusal wrote
//! no plaintext (at most the announcement member), and what a success
//! wrote passes fw-unpack's check of fw-unseal's proof.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut out = Vec::new();
    let result = fw_unseal::unseal(
        fw_fuzz::keyring(),
        std::io::Cursor::new(data.to_vec()),
        &mut out,
        false,
    );
    match result {
        Err(_) => assert!(
            fw_fuzz::only_announcement(&out),
            "a refused package released {} bytes",
            out.len()
        ),
        Ok(_) => {
            if let Err(e) = fw_fuzz::proof_verdict(out) {
                panic!(
                    "fw-unseal's output fails fw-unpack's proof check: {}",
                    e.message
                );
            }
        }
    }
});
