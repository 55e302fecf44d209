//! The release index JSON (fw-core's index, as fw-update reads it):
//! parsed (after its signature verified, in the product), then what
//! fw-update asks of it. Checked: an accepted index survives writing
//! (as fw-sign index writes it) and reading back unchanged; every listed
//! name has a latest entry, the highest security_version of its name.
#![no_main]

use fw_update::index::{check_not_below, Index, IndexRules};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(index) = Index::parse(data) else {
        return;
    };
    let again = Index::parse(&index.to_json()).expect("a written index reads back");
    assert_eq!(again, index);
    let _ = index.check_fresh(1_700_000_000, Some(index.created));
    let _ = index.latest(None);
    for entry in &index.entries {
        let latest = index
            .latest(Some(&entry.name))
            .expect("a listed name has a latest entry");
        assert_eq!(latest.name, entry.name);
        assert!(latest.security_version >= entry.security_version);
        let _ = check_not_below(latest, entry.security_version);
    }
});
