//! Human messages on stderr, filtered by `-q`/`-v`. Stdout is never used:
//! it belongs to the next stage of the pipeline.

use std::sync::atomic::{AtomicI8, Ordering};

static LEVEL: AtomicI8 = AtomicI8::new(0);

/// Sets the level from counts of `-v` and `-q` flags: below 0 only errors,
/// 0 notes and warnings, above 0 details.
pub fn set_verbosity(verbose: u8, quiet: u8) {
    let level = verbose as i16 - quiet as i16;
    LEVEL.store(level.clamp(-1, 2) as i8, Ordering::Relaxed);
}

pub fn level() -> i8 {
    LEVEL.load(Ordering::Relaxed)
}

/// A note for a person watching (shown unless `-q`).
#[macro_export]
macro_rules! note {
    ($($arg:tt)*) => {
        if $crate::log::level() >= 0 {
            eprintln!("{}: {}", env!("CARGO_PKG_NAME"), format_args!($($arg)*));
        }
    };
}

/// A detail shown only with `-v`.
#[macro_export]
macro_rules! detail {
    ($($arg:tt)*) => {
        if $crate::log::level() >= 1 {
            eprintln!("{}: {}", env!("CARGO_PKG_NAME"), format_args!($($arg)*));
        }
    };
}
