//! fw-unseal's SEIPD v1 reader (seipd.rs) and what it hands sequoia's
//! verifier: the input is the plaintext of the encryption layer, which
//! the harness encrypts to its device key with a fixed session key, so
//! that every input gets through decryption and the fuzzer works on the
//! MDC handling and the signed message inside. The first byte's low bit
//! says whether the harness appends a correct MDC (else the input ends
//! with whatever MDC it has).
//!
//! Checked as in `unseal`: a refusal wrote no plaintext, a success's
//! output passes the proof check.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, inner)) = data.split_first() else {
        return;
    };
    let message = fw_fuzz::encrypt(inner, flags & 1 == 1);
    let mut out = Vec::new();
    match fw_unseal::unseal(
        fw_fuzz::keyring(),
        std::io::Cursor::new(message),
        &mut out,
        false,
    ) {
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
