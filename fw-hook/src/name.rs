//! The hooks a version may have, and `FW_DIRECTION`'s values.

use std::fmt;

use fw_core::{Error, Result};

/// The hooks a version may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum HookName {
    /// PATH/.pre-install: before the current link moves to the version.
    PreInstall,
    /// PATH/.post-install: after the current link moved to the version.
    PostInstall,
    /// PATH/.health-check: after post-install; its failure rolls back.
    HealthCheck,
}

impl HookName {
    pub const ALL: [HookName; 3] = [
        HookName::PreInstall,
        HookName::PostInstall,
        HookName::HealthCheck,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            HookName::PreInstall => "pre-install",
            HookName::PostInstall => "post-install",
            HookName::HealthCheck => "health-check",
        }
    }

    /// The hook's file name inside a version's directory, e.g. `.pre-install`.
    pub fn file_name(self) -> String {
        format!(".{}", self.as_str())
    }

    /// Parses a hook name; anything else is a usage error (exit 2).
    pub fn parse(name: &str) -> Result<HookName> {
        HookName::ALL
            .into_iter()
            .find(|h| h.as_str() == name)
            .ok_or_else(|| {
                Error::usage(format!(
                    "{name:?} is not a hook name: use pre-install, post-install or health-check"
                ))
            })
    }
}

impl fmt::Display for HookName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `FW_DIRECTION`: how the version a hook runs for relates to the one it replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Upgrade,
    Downgrade,
    Reinstall,
    Rollback,
}

impl Direction {
    pub const ALL: [Direction; 4] = [
        Direction::Upgrade,
        Direction::Downgrade,
        Direction::Reinstall,
        Direction::Rollback,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Upgrade => "upgrade",
            Direction::Downgrade => "downgrade",
            Direction::Reinstall => "reinstall",
            Direction::Rollback => "rollback",
        }
    }

    /// Parses an `FW_DIRECTION` value; anything else is a usage error (exit 2).
    pub fn parse(value: &str) -> Result<Direction> {
        Direction::ALL
            .into_iter()
            .find(|d| d.as_str() == value)
            .ok_or_else(|| {
                Error::usage(format!(
                    "FW_DIRECTION={value:?} is not a direction: set it to upgrade, downgrade, \
                     reinstall or rollback, or unset it to let fw-hook work it out"
                ))
            })
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fw_core::Exit;

    #[test]
    fn names_parse_and_refuse() {
        for name in HookName::ALL {
            assert_eq!(HookName::parse(name.as_str()).unwrap(), name);
        }
        assert_eq!(HookName::PreInstall.file_name(), ".pre-install");
        let err = HookName::parse("install").unwrap_err();
        assert_eq!(err.code, Exit::Usage);
        assert!(err.message.contains("pre-install"), "{}", err.message);
        assert_eq!(Direction::parse("rollback").unwrap(), Direction::Rollback);
        assert_eq!(Direction::parse("sideways").unwrap_err().code, Exit::Usage);
    }
}
