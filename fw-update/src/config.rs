//! The configuration: a TOML file with Connhex's names and defaults, and the
//! command line's options over it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use fw_core::{Error, Result};

/// Where the configuration is read from when `--config` is not given (and
/// `FW_UPDATE_CONFIG` is unset), if it exists.
pub const DEFAULT_CONFIG: &str = "/etc/fw/update.toml";

/// A duration in the file: seconds as a number, or a string like "1h",
/// "30s", "24h0m0s".
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum DurationValue {
    Int(u64),
    Float(f64),
    Text(String),
}

impl DurationValue {
    pub fn to_duration(&self, key: &str) -> Result<Duration> {
        match self {
            DurationValue::Int(secs) => Ok(Duration::from_secs(*secs)),
            DurationValue::Float(secs) => Duration::try_from_secs_f64(*secs)
                .map_err(|_| Error::usage(format!("{key} = {secs} is not a duration"))),
            DurationValue::Text(text) => {
                fw_core::cli::parse_duration(text).map_err(|e| Error::usage(format!("{key}: {e}")))
            }
        }
    }
}

/// The file, as written. Every key is optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub index: Option<String>,
    pub target: Option<PathBuf>,
    pub keyring: Option<PathBuf>,
    pub status: Option<PathBuf>,
    pub name: Option<String>,
    pub auto_download: Option<bool>,
    pub auto_install: Option<bool>,
    pub check_interval: Option<DurationValue>,
    pub retry_interval: Option<DurationValue>,
    pub max_retries: Option<u32>,
    pub download_retries: Option<u32>,
    pub download_backoff: Option<DurationValue>,
    pub stream: Option<bool>,
    pub fw_install: Option<PathBuf>,
    pub download_gate: Option<String>,
    pub install_gate: Option<String>,
}

/// The settings in force: command line, else file, else defaults.
#[derive(Debug, Clone)]
pub struct Settings {
    pub index: String,
    pub target: PathBuf,
    pub keyring: PathBuf,
    pub status: Option<PathBuf>,
    pub name: Option<String>,
    pub auto_download: bool,
    pub auto_install: bool,
    pub check_interval: Duration,
    pub retry_interval: Duration,
    pub max_retries: u32,
    pub download_retries: u32,
    pub download_backoff: Duration,
    pub stream: bool,
    pub fw_install: Option<PathBuf>,
    pub download_gate: Option<String>,
    pub install_gate: Option<String>,
}

/// Defaults (Connhex: auto_download = false, auto_install = false,
/// check_interval = 1h; Upparat: retry_interval = 60 s, max_retries = 60).
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(3600);
pub const DEFAULT_RETRY_INTERVAL: Duration = Duration::from_secs(60);
pub const DEFAULT_MAX_RETRIES: u32 = 60;
pub const DEFAULT_DOWNLOAD_RETRIES: u32 = 5;
pub const DEFAULT_DOWNLOAD_BACKOFF: Duration = Duration::from_secs(1);

/// What the command line gives (each overrides the file).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub index: Option<String>,
    pub target: Option<PathBuf>,
    pub keyring: Option<PathBuf>,
    pub status: Option<PathBuf>,
    pub name: Option<String>,
    pub auto_download: bool,
    pub auto_install: bool,
    pub check_interval: Option<Duration>,
    pub retry_interval: Option<Duration>,
    pub max_retries: Option<u32>,
    pub download_retries: Option<u32>,
    pub stream: bool,
    pub fw_install: Option<PathBuf>,
    pub download_gate: Option<String>,
    pub install_gate: Option<String>,
}

/// Reads the file: `--config FILE` (must exist), else `FW_UPDATE_CONFIG`
/// (must exist), else /etc/fw/update.toml if it exists.
pub fn load(path: Option<&Path>) -> Result<FileConfig> {
    let (path, required) = match path {
        Some(p) => (p.to_path_buf(), true),
        None => match std::env::var_os("FW_UPDATE_CONFIG") {
            Some(v) if !v.is_empty() => (PathBuf::from(v), true),
            _ => (PathBuf::from(DEFAULT_CONFIG), false),
        },
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(FileConfig::default())
        }
        Err(e) => {
            return Err(Error::usage(format!(
                "config {}: {e}: give an existing --config FILE",
                path.display()
            )))
        }
    };
    parse(&text).map_err(|e| e.context(format!("config {}", path.display())))
}

pub fn parse(text: &str) -> Result<FileConfig> {
    toml::from_str(text).map_err(|e| {
        Error::usage(format!(
            "{}: fix it (see docs/update.md for the keys)",
            e.to_string().trim().replace('\n', " ")
        ))
    })
}

/// Merges the command line over the file over the defaults.
pub fn settle(file: FileConfig, cli: Overrides) -> Result<Settings> {
    let duration = |cli: Option<Duration>,
                    file: &Option<DurationValue>,
                    key: &str,
                    default: Duration|
     -> Result<Duration> {
        match (cli, file) {
            (Some(d), _) => Ok(d),
            (None, Some(v)) => v.to_duration(key),
            (None, None) => Ok(default),
        }
    };
    let index = cli.index.or(file.index).ok_or_else(|| {
        Error::usage("no index: give --index URL, or `index = \"URL\"` in the config file")
    })?;
    if !(index.starts_with("http://") || index.starts_with("https://")) {
        return Err(Error::usage(format!(
            "index {index:?} is not an http:// or https:// URL"
        )));
    }
    let empty_is_none = |s: Option<String>| s.filter(|s| !s.trim().is_empty());
    Ok(Settings {
        index,
        target: fw_core::target::resolve(cli.target.or(file.target).as_deref()),
        keyring: fw_core::keyring::resolve(cli.keyring.or(file.keyring).as_deref()),
        status: cli.status.or(file.status),
        name: cli.name.or(file.name),
        auto_download: cli.auto_download || file.auto_download.unwrap_or(false),
        auto_install: cli.auto_install || file.auto_install.unwrap_or(false),
        check_interval: duration(
            cli.check_interval,
            &file.check_interval,
            "check_interval",
            DEFAULT_CHECK_INTERVAL,
        )?,
        retry_interval: duration(
            cli.retry_interval,
            &file.retry_interval,
            "retry_interval",
            DEFAULT_RETRY_INTERVAL,
        )?,
        max_retries: cli
            .max_retries
            .or(file.max_retries)
            .unwrap_or(DEFAULT_MAX_RETRIES),
        download_retries: cli
            .download_retries
            .or(file.download_retries)
            .unwrap_or(DEFAULT_DOWNLOAD_RETRIES),
        download_backoff: duration(
            None,
            &file.download_backoff,
            "download_backoff",
            DEFAULT_DOWNLOAD_BACKOFF,
        )?,
        stream: cli.stream || file.stream.unwrap_or(false),
        fw_install: cli.fw_install.or(file.fw_install),
        download_gate: empty_is_none(cli.download_gate.or(file.download_gate)),
        install_gate: empty_is_none(cli.install_gate.or(file.install_gate)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_connhex_and_upparat() {
        let s = settle(
            FileConfig::default(),
            Overrides {
                index: Some("http://h/index.json".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert!(!s.auto_download && !s.auto_install);
        assert_eq!(s.check_interval, Duration::from_secs(3600));
        assert_eq!(s.retry_interval, Duration::from_secs(60));
        assert_eq!(s.max_retries, 60);
    }

    #[test]
    fn file_values_and_command_line_over_them() {
        let file = parse(
            r#"
            index = "https://fw.example/index.json"
            auto_download = true
            check_interval = "24h0m0s"
            retry_interval = 5
            max_retries = 3
            download_gate = "test -e /tmp/ok"
            "#,
        )
        .unwrap();
        let s = settle(
            file,
            Overrides {
                max_retries: Some(7),
                ..Default::default()
            },
        )
        .unwrap();
        assert!(s.auto_download && !s.auto_install);
        assert_eq!(s.check_interval, Duration::from_secs(86400));
        assert_eq!(s.retry_interval, Duration::from_secs(5));
        assert_eq!(s.max_retries, 7);
        assert_eq!(s.download_gate.as_deref(), Some("test -e /tmp/ok"));
    }

    #[test]
    fn unknown_keys_and_bad_durations_are_usage_errors() {
        let err = parse("auto_downlaod = true").unwrap_err();
        assert_eq!(err.code, fw_core::ExitCode::Usage);
        let file = parse("index = \"http://h/i\"\ncheck_interval = \"soon\"").unwrap();
        let err = settle(file, Overrides::default()).unwrap_err();
        assert!(err.message.contains("check_interval"), "{}", err.message);
    }
}
