//! fw-switch: the target's links (`current`, `previous`, `failsafe`),
//! the state around them (security floor, probation, failed versions),
//! and the housekeeping.
//!
//! - `target`: the target directory, its versions and links;
//! - `moves`: `to`, `rollback`, `failsafe`, `set-failsafe`, `commit`;
//! - `failed`: versions that failed after their switch;
//! - `status`: `status`, as text and JSON;
//! - `recover`: finishing or undoing the journal's transaction;
//! - `clean`: `clean` and the removal of trees;
//! - `link_tree`: `link-tree`.

pub mod clean;
pub mod cli;
pub mod failed;
pub mod link_tree;
pub mod moves;
pub mod recover;
pub mod status;
pub mod target;

pub use failed::{Failed, Mark};
pub use link_tree::{link_tree, LinkTreeReport};
pub use moves::RolledBack;
pub use recover::{Outcome, RecoverOptions, Recovered};
pub use status::{Pending, Status, VersionStatus};
pub use target::{Target, Version};
