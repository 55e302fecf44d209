//! The manifest's JSON (fw-core's manifest), as fw-unpack and fw-verify
//! read it. Checked: the slice and reader parsers agree; an accepted
//! manifest survives writing and reading back unchanged, and every entry
//! is found by its path.
#![no_main]

use fw_core::manifest::Manifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let parsed = Manifest::from_json(data);
    let read = Manifest::from_reader(data);
    match (&parsed, &read) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(_), Err(_)) => {}
        _ => panic!(
            "from_json and from_reader disagree: {:?} / {:?}",
            parsed.is_ok(),
            read.is_ok()
        ),
    }
    if let Ok(manifest) = parsed {
        let again =
            Manifest::from_json(&manifest.to_json()).expect("a written manifest reads back");
        assert_eq!(again, manifest);
        for (i, entry) in manifest.entries.iter().enumerate() {
            assert_eq!(manifest.position(&entry.path), Some(i), "{:?}", entry.path);
        }
    }
});
