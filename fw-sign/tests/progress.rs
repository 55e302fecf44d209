//! fw-sign pack's progress bar: one bar over the whole pack, with a total
//! known from the walk, that runs to its total once.

use fw_core::progress::ProgressBar;

#[test]
fn the_bar_has_the_trees_total_and_runs_to_it() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("key.asc");
    std::fs::write(&key, fw_sign::keygen("test <t@example>").unwrap()).unwrap();
    let dir = tmp.path().join("fw");
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::write(dir.join("bin/big"), vec![7u8; 300_000]).unwrap();
    std::fs::write(dir.join("small"), b"12345").unwrap();
    // A hard link is read once.
    std::fs::hard_link(dir.join("small"), dir.join("bin/same")).unwrap();
    let options = fw_sign::PackOptions {
        dir,
        key,
        encrypt_for: vec![],
        version: Some("1".into()),
        security_version: 0,
        exclude: vec![],
        source_date_epoch: None,
    };
    // A hidden bar keeps its state: what a terminal would show.
    let bar = ProgressBar::hidden();
    fw_sign::pack::pack_with_progress(&options, std::io::sink(), &bar).unwrap();
    // Each byte is read twice: hashed, then packed.
    let tree = 300_005;
    assert_eq!(bar.length(), Some(2 * tree));
    assert_eq!(bar.position(), 2 * tree);
    assert!(bar.is_finished());
}
