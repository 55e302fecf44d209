//! fw-unpack's archive path with its manifest checks, on archives the
//! vendor key of the harness signed: the input's first byte is flags,
//! the rest a tar stream. The harness signs the first entry's data as the
//! manifest's signature (second entry) and fixes header checksums (bit 0
//! off: leaves them), gzips the tar as fw-sign does (bits 1-2: one fw
//! member, members of 512 or 4096 bytes, or plain gzip) and frames it
//! with fw-unseal's proof, signed by the same key; fw-unpack then checks
//! it as always.
//!
//! Checked: nothing is ever written beside the staging directory; a
//! refusal leaves staging empty; an accepted tree holds only what its
//! manifest lists, with the listed types.
#![no_main]

use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use fw_core::manifest::{Kind, Manifest};
use libfuzzer_sys::fuzz_target;

fn check_tree(tree: &Path) {
    let json = std::fs::read(tree.join(".fw/manifest.json")).expect("the manifest");
    let manifest = Manifest::from_json(&json).expect("an accepted manifest");
    let mut stack = vec![String::new()];
    while let Some(rel) = stack.pop() {
        let dir = if rel.is_empty() {
            tree.to_path_buf()
        } else {
            tree.join(&rel)
        };
        for entry in std::fs::read_dir(&dir).expect("readable") {
            let entry = entry.expect("readable");
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            if path == ".fw" {
                continue;
            }
            let kind = entry.file_type().expect("a type");
            let listed = manifest
                .position(&path)
                .map(|i| manifest.entries[i].kind)
                .unwrap_or_else(|| panic!("{path:?} was unpacked but is not listed"));
            let found = if kind.is_dir() {
                Kind::Dir
            } else if kind.is_symlink() {
                Kind::Symlink
            } else if kind.is_file() {
                Kind::File
            } else {
                panic!(
                    "{path:?} is a {kind:?} (fifo/device: {})",
                    kind.is_fifo() || kind.is_block_device() || kind.is_char_device()
                );
            };
            assert_eq!(found, listed, "{path:?}");
            if kind.is_dir() {
                stack.push(path);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, tar)) = data.split_first() else {
        return;
    };
    let tar = fw_fuzz::reseal_tar(tar, true, flags & 1 == 0);
    let gz = match (flags >> 1) & 3 {
        0 => fw_fuzz::gzip(&tar, 0, false),
        1 => fw_fuzz::gzip(&tar, 512, false),
        2 => fw_fuzz::gzip(&tar, 4096, false),
        _ => fw_fuzz::gzip(&tar, 0, true),
    };
    let stream = fw_fuzz::seal(&gz);
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
    match result {
        Err(_) => assert!(inside.is_empty(), "a refusal left {inside:?}"),
        Ok(unpacked) => {
            assert_eq!(inside.len(), 1, "{inside:?}");
            check_tree(&unpacked.tree);
            let work = unpacked.tree.parent().expect("the work directory");
            std::fs::remove_dir_all(work).expect("removable");
        }
    }
});
