//! fw-powercut: power cuts in a real kernel. A QEMU guest (TCG) boots
//! Debian's kernel with an initramfs of busybox, bash, strace and the
//! release fw binaries, runs an fw operation on an ext4 disk with every
//! state-changing syscall traced to its serial line, and the host kills
//! QEMU after a chosen syscall plus a random delay: the guest's page cache
//! is lost as in a power cut. The next boot recovers as the boot service
//! does and checks the target from inside (see guest/guest.sh).
//!
//! The driver is Rust, like the rest of the workspace: CI needs nothing
//! but cargo for it, it shares the workspace's crates (nix to kill QEMU,
//! fastrand for seeded plans), and clippy and the unit tests cover it.

pub mod assets;
pub mod logwrites;
pub mod marker;
pub mod plan;
pub mod run;
pub mod vm;
