//! The environment a hook gets: `FW_FROM`, `FW_TO` and `FW_DIRECTION`, passed through
//! from the caller or worked out from the target and the versions' manifests.

use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use fw_core::manifest::Manifest;
use fw_core::{detail, note, Result};

use crate::Direction;

/// What the caller put in our environment for the hook; `None` when unset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GivenEnv {
    /// `FW_FROM`; set but empty means "there is no previous version".
    pub from: Option<OsString>,
    /// `FW_TO`; empty counts as unset.
    pub to: Option<OsString>,
    /// `FW_DIRECTION`; empty counts as unset.
    pub direction: Option<OsString>,
}

impl GivenEnv {
    /// Reads `FW_FROM`, `FW_TO` and `FW_DIRECTION` from our own environment.
    pub fn from_process_env() -> GivenEnv {
        let non_empty = |key: &str| std::env::var_os(key).filter(|v| !v.is_empty());
        GivenEnv {
            from: std::env::var_os("FW_FROM"),
            to: non_empty("FW_TO"),
            direction: non_empty("FW_DIRECTION"),
        }
    }
}

/// The environment the hook gets (besides `FW_HOOK` and `FW_ATTEMPT`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookEnv {
    pub from: OsString,
    pub to: OsString,
    pub direction: Direction,
}

/// Fills in what the caller did not give: `FW_TO` is `version`; `FW_FROM` is
/// where `TARGET/current` resolves to (empty if there is no such link);
/// `FW_DIRECTION` comes from [`default_direction`].
pub fn resolve_env(target: &Path, version: &Path, given: &GivenEnv) -> Result<HookEnv> {
    let to = given
        .to
        .clone()
        .unwrap_or_else(|| version.as_os_str().to_owned());
    let from = match &given.from {
        Some(from) => from.clone(),
        None => current_version(target)
            .map(PathBuf::into_os_string)
            .unwrap_or_default(),
    };
    let direction = match &given.direction {
        Some(value) => Direction::parse(&value.to_string_lossy())?,
        None => {
            let from = (!from.is_empty()).then(|| Path::new(&from));
            default_direction(from, Path::new(&to))
        }
    };
    Ok(HookEnv {
        from,
        to,
        direction,
    })
}

/// Where `TARGET/current` resolves to, if it exists.
pub fn current_version(target: &Path) -> Option<PathBuf> {
    let link = target.join("current");
    if std::fs::symlink_metadata(&link).is_err() {
        detail!("{} does not exist: FW_FROM is empty", link.display());
        return None;
    }
    match std::fs::canonicalize(&link) {
        Ok(path) => Some(path),
        Err(e) => {
            note!(
                "{} does not resolve ({e}): FW_FROM is empty; `fw-switch status` shows the target's links",
                link.display()
            );
            None
        }
    }
}

/// The direction from version `from` (none: a first install) to `to`:
/// `reinstall` when they are the same directory, else `upgrade` or
/// `downgrade` by their manifests (the higher `security_version` wins, then
/// the later `created`; equal on both counts is a `reinstall` when name and
/// version string match too, else an `upgrade`), `upgrade` when there is
/// no `from` or a manifest cannot be read.
pub fn default_direction(from: Option<&Path>, to: &Path) -> Direction {
    let Some(from) = from else {
        return Direction::Upgrade;
    };
    if same_dir(from, to) {
        return Direction::Reinstall;
    }
    match (read_manifest(from), read_manifest(to)) {
        (Ok(old), Ok(new)) => compare_versions(&old, &new),
        (Err(e), _) | (_, Err(e)) => {
            note!(
                "cannot compare {} with {}: {}; FW_DIRECTION defaults to upgrade \
                 (set FW_DIRECTION to override)",
                from.display(),
                to.display(),
                e.message
            );
            Direction::Upgrade
        }
    }
}

/// Going from `old` to `new`: by `security_version`, then by `created`.
pub fn compare_versions(old: &Manifest, new: &Manifest) -> Direction {
    let key = |m: &Manifest| (m.security_version, m.created);
    match key(new).cmp(&key(old)) {
        std::cmp::Ordering::Greater => Direction::Upgrade,
        std::cmp::Ordering::Less => Direction::Downgrade,
        std::cmp::Ordering::Equal if new.name == old.name && new.version == old.version => {
            Direction::Reinstall
        }
        // Packed in the same second with the same security_version.
        std::cmp::Ordering::Equal => Direction::Upgrade,
    }
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// A version's manifest, `DIR/.fw/manifest.json`.
pub fn read_manifest(dir: &Path) -> Result<Manifest> {
    fw_core::target::Installed::load(dir).map(|version| version.manifest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{manifest, version};
    use std::ffi::OsStr;
    use std::os::unix::fs::symlink;

    #[test]
    fn versions_compare_by_security_version_then_created() {
        let d = |a: (u64, u64), b: (u64, u64)| {
            compare_versions(&manifest(a.0, a.1), &manifest(b.0, b.1))
        };
        assert_eq!(d((1, 100), (2, 50)), Direction::Upgrade);
        assert_eq!(d((2, 50), (1, 100)), Direction::Downgrade);
        assert_eq!(d((1, 100), (1, 200)), Direction::Upgrade);
        assert_eq!(d((1, 200), (1, 100)), Direction::Downgrade);
        assert_eq!(d((1, 100), (1, 100)), Direction::Reinstall);
    }

    #[test]
    fn env_defaults_from_the_target() {
        let target = tempfile::tempdir().unwrap();
        let t = target.path().canonicalize().unwrap();
        let v1 = version(&t, "v1", 1, 100);
        let v2 = version(&t, "v2", 2, 100);
        let v0 = version(&t, "v0", 0, 900);

        // No current: no FROM, an upgrade.
        let env = resolve_env(&t, &v2, &GivenEnv::default()).unwrap();
        assert_eq!(env.from, OsString::new());
        assert_eq!(env.to, v2.as_os_str());
        assert_eq!(env.direction, Direction::Upgrade);

        symlink("v1", t.join("current")).unwrap();
        let env = resolve_env(&t, &v2, &GivenEnv::default()).unwrap();
        assert_eq!(env.from, v1.as_os_str());
        assert_eq!(env.direction, Direction::Upgrade);
        let env = resolve_env(&t, &v0, &GivenEnv::default()).unwrap();
        assert_eq!(env.direction, Direction::Downgrade);
        let env = resolve_env(&t, &v1, &GivenEnv::default()).unwrap();
        assert_eq!(env.direction, Direction::Reinstall);

        // What the caller gives passes through, and the rest follows from it.
        let given = GivenEnv {
            from: Some(v2.clone().into_os_string()),
            to: None,
            direction: None,
        };
        let env = resolve_env(&t, &v1, &given).unwrap();
        assert_eq!(env.from, v2.as_os_str());
        assert_eq!(env.direction, Direction::Downgrade);
        let given = GivenEnv {
            from: Some(OsString::new()),
            to: Some("/elsewhere".into()),
            direction: Some("rollback".into()),
        };
        let env = resolve_env(&t, &v1, &given).unwrap();
        assert_eq!(
            (env.from.as_os_str(), env.to.as_os_str(), env.direction),
            (
                OsStr::new(""),
                OsStr::new("/elsewhere"),
                Direction::Rollback
            )
        );

        // A current that does not resolve is no FROM.
        std::fs::remove_file(t.join("current")).unwrap();
        symlink("gone", t.join("current")).unwrap();
        assert_eq!(current_version(&t), None);
    }

    #[test]
    fn unreadable_manifest_defaults_to_upgrade() {
        let target = tempfile::tempdir().unwrap();
        let v1 = version(target.path(), "v1", 5, 100);
        let bare = target.path().join("bare");
        std::fs::create_dir(&bare).unwrap();
        assert_eq!(default_direction(Some(&v1), &bare), Direction::Upgrade);
        assert_eq!(default_direction(None, &bare), Direction::Upgrade);
    }
}
