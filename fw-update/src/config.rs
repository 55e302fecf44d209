//! The configuration: one struct for the TOML file and the command line. Every setting
//! is optional in both (`None`: not given); the command line's value wins over the
//! file's ([`Config::over`]), and the accessors give the default for what neither set
//! (Connhex's names and defaults, Upparat's for the gates).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use fw_core::{Error, Result};

/// Where the configuration is read from when `--config` is not given (and
/// `FW_UPDATE_CONFIG` is unset), if it exists.
pub const DEFAULT_CONFIG: &str = "/etc/fw/update.toml";

pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(3600);
pub const DEFAULT_RETRY_INTERVAL: Duration = Duration::from_secs(60);
pub const DEFAULT_MAX_RETRIES: u32 = 60;
pub const DEFAULT_GATE_TIMEOUT: Duration = Duration::from_secs(300);
pub const DEFAULT_DOWNLOAD_RETRIES: u32 = 5;
pub const DEFAULT_DOWNLOAD_BACKOFF: Duration = Duration::from_secs(1);
pub const DEFAULT_STALL_SPEED: u32 = 1024;
pub const DEFAULT_STALL_TIME: Duration = Duration::from_secs(60);
/// fw-install's default --max-time for a stream: a day.
pub const DEFAULT_MAX_TIME: u64 = 86_400;

/// The settings, as the file (TOML keys: the field names) and the command line
/// (`--field-name`) give them. Durations are strings such as "1h", "30s", "24h0m0s"
/// or numbers of seconds; booleans on the command line are `--flag` or `--flag=false`.
#[derive(clap::Args, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The release index's URL (its signature is URL.sig).
    #[arg(long, global = true, value_name = "URL")]
    pub index: Option<String>,
    /// The firmware target [default: $FW_TARGET, else /opt/firmware].
    #[arg(long, global = true, value_name = "T")]
    pub target: Option<PathBuf>,
    /// Trusted certificates (and the device key) [default: $FW_KEYRING,
    /// else /etc/fw/keys].
    #[arg(long, global = true, value_name = "K")]
    pub keyring: Option<PathBuf>,
    /// Append status events to FILE instead of writing them to stdout.
    #[arg(long, global = true, value_name = "FILE")]
    pub status: Option<PathBuf>,
    /// The firmware name to follow when nothing is installed yet.
    #[arg(long, global = true, value_name = "NAME")]
    pub name: Option<String>,
    /// run: download updates [default: false].
    #[arg(long, global = true, value_name = "BOOL", num_args = 0..=1,
          require_equals = true, default_missing_value = "true")]
    pub auto_download: Option<bool>,
    /// run: download and install updates [default: false].
    #[arg(long, global = true, value_name = "BOOL", num_args = 0..=1,
          require_equals = true, default_missing_value = "true")]
    pub auto_install: Option<bool>,
    /// run: time between checks, e.g. 1h, 30m, 24h0m0s [default: 1h].
    #[arg(long, global = true, value_name = "DURATION",
          value_parser = fw_core::cli::parse_duration)]
    #[serde(default, deserialize_with = "duration")]
    pub check_interval: Option<Duration>,
    /// The first wait after a gate's or fw-install's "not now" (exit 3),
    /// doubled for each further one, at most an hour, ±20% [default: 60s].
    #[arg(long, global = true, value_name = "DURATION",
          value_parser = fw_core::cli::parse_duration)]
    #[serde(default, deserialize_with = "duration")]
    pub retry_interval: Option<Duration>,
    /// "Not now" answers retried before giving up [default: 60].
    #[arg(long, global = true, value_name = "N")]
    pub max_retries: Option<u32>,
    /// Kill a gate (with its process group) that runs longer than this; 0:
    /// never [default: 300s].
    #[arg(long, global = true, value_name = "DURATION",
          value_parser = fw_core::cli::parse_duration)]
    #[serde(default, deserialize_with = "duration")]
    pub gate_timeout: Option<Duration>,
    /// A command that says whether to download now: 0 yes, 3 not now.
    #[arg(long, global = true, value_name = "CMD")]
    pub download_gate: Option<String>,
    /// A command that says whether to install now: 0 yes, 3 not now.
    #[arg(long, global = true, value_name = "CMD")]
    pub install_gate: Option<String>,
    /// Retries of an interrupted download [default: 5].
    #[arg(long, global = true, value_name = "N")]
    pub download_retries: Option<u32>,
    /// The first wait before a download retry, doubled per retry (at most
    /// 5 minutes), with jitter [default: 1s].
    #[arg(long, global = true, value_name = "DURATION",
          value_parser = fw_core::cli::parse_duration)]
    #[serde(default, deserialize_with = "duration")]
    pub download_backoff: Option<Duration>,
    /// A transfer under this many bytes/s for stall_time has stalled: it is
    /// abandoned (a download is resumed later) [default: 1024].
    #[arg(long, global = true, value_name = "BYTES",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub stall_speed: Option<u32>,
    /// How long a transfer may stay under stall_speed, in whole seconds
    /// [default: 60s].
    #[arg(long, global = true, value_name = "DURATION",
          value_parser = fw_core::cli::parse_duration)]
    #[serde(default, deserialize_with = "duration")]
    pub stall_time: Option<Duration>,
    /// install --stream: how long fw-install may stream the package in
    /// all, however fast (a server trickling above stall_speed would
    /// hold the target's lock for ever); 0 for no limit [default: 1d].
    #[arg(long, global = true, value_name = "DURATION",
          value_parser = fw_core::cli::parse_duration)]
    #[serde(default, deserialize_with = "duration")]
    pub max_time: Option<Duration>,
    /// install: let fw-install stream the package from its URL instead of
    /// downloading it first (no resume, no BLAKE3 check against the index;
    /// the package's signature, its name, version and security_version
    /// against the index still hold) [default: false].
    #[arg(long, global = true, value_name = "BOOL", num_args = 0..=1,
          require_equals = true, default_missing_value = "true")]
    pub stream: Option<bool>,
    /// install: when a version is installed, fetch by HTTP Range only the
    /// files it lacks (fw-install --delta: fw-fetch), resumable; a server
    /// without Range support sends the whole package, said in one line.
    /// `--full` (or `delta = false`) downloads the whole package instead
    /// [default: true].
    #[arg(long, global = true, value_name = "BOOL", num_args = 0..=1,
          require_equals = true, default_missing_value = "true")]
    pub delta: Option<bool>,
    /// scripts/fw-install [default: $FW_INSTALL, else next to fw-update,
    /// else PATH].
    #[arg(long, global = true, value_name = "PATH")]
    pub fw_install: Option<PathBuf>,
}

impl Config {
    /// `self` (the command line) over `lower` (the file): each setting from `self`
    /// if it gives one, else from `lower`.
    pub fn over(self, lower: Config) -> Config {
        Config {
            index: self.index.or(lower.index),
            target: self.target.or(lower.target),
            keyring: self.keyring.or(lower.keyring),
            status: self.status.or(lower.status),
            name: self.name.or(lower.name),
            auto_download: self.auto_download.or(lower.auto_download),
            auto_install: self.auto_install.or(lower.auto_install),
            check_interval: self.check_interval.or(lower.check_interval),
            retry_interval: self.retry_interval.or(lower.retry_interval),
            max_retries: self.max_retries.or(lower.max_retries),
            gate_timeout: self.gate_timeout.or(lower.gate_timeout),
            download_gate: self.download_gate.or(lower.download_gate),
            install_gate: self.install_gate.or(lower.install_gate),
            download_retries: self.download_retries.or(lower.download_retries),
            download_backoff: self.download_backoff.or(lower.download_backoff),
            stall_speed: self.stall_speed.or(lower.stall_speed),
            stall_time: self.stall_time.or(lower.stall_time),
            max_time: self.max_time.or(lower.max_time),
            stream: self.stream.or(lower.stream),
            delta: self.delta.or(lower.delta),
            fw_install: self.fw_install.or(lower.fw_install),
        }
    }

    /// The index's URL: given, and http(s) (a usage error otherwise).
    pub fn index(&self) -> Result<&str> {
        let index = self.index.as_deref().ok_or_else(|| {
            Error::usage("no index: give --index URL, or `index = \"URL\"` in the config file")
        })?;
        if !(index.starts_with("http://") || index.starts_with("https://")) {
            return Err(Error::usage(format!(
                "index {index:?} is not an http:// or https:// URL"
            )));
        }
        Ok(index)
    }

    /// Checks what serde and clap cannot: every setting is usable.
    pub fn validate(&self) -> Result<()> {
        self.index()?;
        if self.stall_speed == Some(0) {
            return Err(Error::usage("stall_speed must be at least 1 (bytes/s)"));
        }
        Ok(())
    }

    pub fn target(&self) -> PathBuf {
        fw_core::target::resolve(self.target.as_deref())
    }

    pub fn keyring(&self) -> PathBuf {
        fw_core::keyring::resolve(self.keyring.as_deref())
    }

    pub fn auto_download(&self) -> bool {
        self.auto_download.unwrap_or(false)
    }

    pub fn auto_install(&self) -> bool {
        self.auto_install.unwrap_or(false)
    }

    pub fn check_interval(&self) -> Duration {
        self.check_interval.unwrap_or(DEFAULT_CHECK_INTERVAL)
    }

    pub fn retry_interval(&self) -> Duration {
        self.retry_interval.unwrap_or(DEFAULT_RETRY_INTERVAL)
    }

    pub fn max_retries(&self) -> u32 {
        self.max_retries.unwrap_or(DEFAULT_MAX_RETRIES)
    }

    /// `None`: gates run as long as they like.
    pub fn gate_timeout(&self) -> Option<Duration> {
        Some(self.gate_timeout.unwrap_or(DEFAULT_GATE_TIMEOUT)).filter(|t| !t.is_zero())
    }

    /// The download gate's command; empty is none.
    pub fn download_gate(&self) -> Option<&str> {
        self.download_gate
            .as_deref()
            .filter(|s| !s.trim().is_empty())
    }

    /// The install gate's command; empty is none.
    pub fn install_gate(&self) -> Option<&str> {
        self.install_gate
            .as_deref()
            .filter(|s| !s.trim().is_empty())
    }

    pub fn download_retries(&self) -> u32 {
        self.download_retries.unwrap_or(DEFAULT_DOWNLOAD_RETRIES)
    }

    pub fn download_backoff(&self) -> Duration {
        self.download_backoff.unwrap_or(DEFAULT_DOWNLOAD_BACKOFF)
    }

    /// Stall detection as curl takes it: bytes/s, and whole seconds (at least 1).
    pub fn stall(&self) -> crate::http::Stall {
        let time = self.stall_time.unwrap_or(DEFAULT_STALL_TIME);
        crate::http::Stall {
            speed: self.stall_speed.unwrap_or(DEFAULT_STALL_SPEED).max(1),
            secs: time.as_secs_f64().ceil().max(1.0) as u64,
        }
    }

    /// fw-install's --max-time, in whole seconds (0: no limit).
    pub fn max_time_secs(&self) -> u64 {
        self.max_time
            .map_or(DEFAULT_MAX_TIME, |t| t.as_secs_f64().ceil() as u64)
    }

    pub fn stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    pub fn delta(&self) -> bool {
        self.delta.unwrap_or(true)
    }
}

/// A duration in the file: seconds as a number, or a string like "1h", "30s",
/// "24h0m0s"; both read by fw-core's one duration parser.
fn duration<'de, D: Deserializer<'de>>(de: D) -> std::result::Result<Option<Duration>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Value {
        Int(u64),
        Float(f64),
        Text(String),
    }
    let text = match Value::deserialize(de)? {
        Value::Int(secs) => secs.to_string(),
        Value::Float(secs) => secs.to_string(),
        Value::Text(text) => text,
    };
    fw_core::cli::parse_duration(&text)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

/// Reads the file: `--config FILE` (must exist), else `FW_UPDATE_CONFIG`
/// (must exist), else /etc/fw/update.toml if it exists.
pub fn load(path: Option<&Path>) -> Result<Config> {
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
            return Ok(Config::default())
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

/// Parses the file's text; unknown keys are a usage error, so that a typo does not
/// silently leave the default.
pub fn parse(text: &str) -> Result<Config> {
    toml::from_str(text).map_err(|e| {
        Error::usage(format!(
            "{}: fix it (see docs/update.md for the keys)",
            e.to_string().trim().replace('\n', " ")
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_connhex_and_upparat() {
        let c = Config::default();
        assert!(!c.auto_download() && !c.auto_install() && !c.stream());
        assert!(c.delta());
        assert_eq!(c.check_interval(), Duration::from_secs(3600));
        assert_eq!(c.retry_interval(), Duration::from_secs(60));
        assert_eq!(c.max_retries(), 60);
        assert_eq!(c.gate_timeout(), Some(Duration::from_secs(300)));
        assert_eq!((c.stall().speed, c.stall().secs), (1024, 60));
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
            gate_timeout = 0
            download_gate = "test -e /tmp/ok"
            stall_time = 1.5
            stream = true
            delta = false
            "#,
        )
        .unwrap();
        let cli = Config {
            max_retries: Some(7),
            stream: Some(false),
            ..Config::default()
        };
        let c = cli.over(file);
        assert!(c.auto_download() && !c.auto_install());
        assert_eq!(c.check_interval(), Duration::from_secs(86400));
        assert_eq!(c.retry_interval(), Duration::from_secs(5));
        assert_eq!(c.max_retries(), 7);
        assert_eq!(c.gate_timeout(), None);
        assert_eq!(c.download_gate(), Some("test -e /tmp/ok"));
        assert_eq!(c.stall().secs, 2);
        assert!(!c.stream(), "--stream=false overrides the file");
        assert!(!c.delta());
        assert_eq!(c.index().unwrap(), "https://fw.example/index.json");
    }

    #[test]
    fn the_shipped_example_and_the_documented_file_parse() {
        let example = parse(include_str!("../../packaging/examples/update.toml")).unwrap();
        example.validate().unwrap();
        let doc = include_str!("../../docs/update.md");
        let block = doc
            .split("```toml\n")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .expect("docs/update.md shows the configuration file");
        let documented = parse(block).unwrap();
        documented.validate().unwrap();
        assert_eq!(documented.gate_timeout(), Some(Duration::from_secs(300)));
        assert_eq!(
            (documented.stall().speed, documented.stall().secs),
            (1024, 60)
        );
        assert_eq!(documented.max_time_secs(), DEFAULT_MAX_TIME);
        assert_eq!(parse("max_time = \"0s\"").unwrap().max_time_secs(), 0);
        assert_eq!(parse("").unwrap().max_time_secs(), DEFAULT_MAX_TIME);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_usage_errors() {
        let err = parse("auto_downlaod = true").unwrap_err();
        assert_eq!(err.code, fw_core::Exit::Usage);
        let err = parse("index = \"http://h/i\"\ncheck_interval = \"soon\"").unwrap_err();
        assert_eq!(err.code, fw_core::Exit::Usage);
        assert!(err.message.contains("check_interval"), "{}", err.message);
        assert!(Config::default().validate().is_err(), "no index");
        let ftp = Config {
            index: Some("ftp://h/i".into()),
            ..Config::default()
        };
        assert_eq!(ftp.validate().unwrap_err().code, fw_core::Exit::Usage);
        let still = parse("index = \"http://h/i\"\nstall_speed = 0").unwrap();
        assert!(still.validate().is_err());
    }
}
