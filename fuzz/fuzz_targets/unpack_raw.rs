//! fw-unpack on streams nobody signed, as an attacker without the vendor
//! key hands them (e.g. behind an fw-unseal whose exit status a shell
//! ignores): byte 0's low bit set, the harness gzips the rest (so that
//! the fuzzer works on the tar), else the rest is the stream itself.
//!
//! Checked: every such stream is refused, nothing is left in staging and
//! nothing is written beside it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let stream = if flags & 1 == 1 {
        fw_fuzz::gzip(rest, 0, flags & 2 == 2)
    } else {
        rest.to_vec()
    };
    let staging = fw_fuzz::staging();
    let result = fw_unpack::unpack(
        std::io::Cursor::new(stream),
        &staging.staging,
        16 << 20,
        &fw_core::target::SharedFiles::default(),
        fw_fuzz::keyring(),
        false,
        &fw_unpack::Cleanup::new(),
    );
    let (root, inside) = staging.contents();
    assert_eq!(root, ["staging"], "something was written beside staging");
    assert!(inside.is_empty(), "a refusal left {inside:?}");
    assert!(result.is_err(), "an unsigned stream was unpacked");
});
