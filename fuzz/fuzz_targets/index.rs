//! fw-update's release index JSON: parsed (after its signature verified,
//! in the product), then what fw-update asks of it.
#![no_main]

use fw_update::index::{check_not_below, Index};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(index) = Index::parse(data) else {
        return;
    };
    let _ = index.check_fresh(1_700_000_000, Some(index.created));
    let _ = index.latest(None);
    for entry in &index.entries {
        let latest = index.latest(Some(&entry.name)).expect("a listed name has a latest entry");
        assert_eq!(latest.name, entry.name);
        assert!(latest.security_version >= entry.security_version);
        let _ = check_not_below(latest, entry.security_version);
    }
});
