//! The one TOML file: load → raw serde mirror (`raw`) → validation that reports every problem at
//! once with `file:line:col` and a hint (`resolve`) → the resolved [`Config`] the rest of the
//! program uses. Probing the outside world (`check-config --connect`) is not done here.

mod credentials;
mod defaults;
pub mod diagnostic;
pub mod raw;
pub mod raw_checks;
mod resolve;
mod resolve_alerts;
mod resolve_anomaly;
mod resolve_checks;
mod resolve_depends;
mod resolve_email;
mod resolve_encryption;
mod resolve_freshness;
mod resolve_heartbeat;
mod resolve_limits;
mod resolve_media;
mod resolve_mysql;
mod resolve_peer;
mod resolve_ping;
mod resolve_probes;
mod resolve_s3;
mod resolve_storage;
mod resolve_web;
pub mod span;
mod thresholds;
pub use thresholds::thresholds;

pub use crate::schedule::{Schedule, Zone};
pub use diagnostic::{ConfigError, ConfigErrors};

use crate::retention::KeepPolicy;
use crate::secret::Secret;
use crate::storage::{EncryptionSpec, RateLimits, Storage, StorageError, StorageSpec};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use credentials::{load_credentials, with_credentials, Credentials};

/// Where the configuration is read from when neither `--config` nor `OPSAGENT_CONFIG` says.
pub const DEFAULT_PATH: &str = "/etc/opsagent/opsagent.toml";

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub file: PathBuf,
    /// `[agent]`
    pub agent: Agent,
    /// `[storage]`
    pub storage: StorageSpec,
    /// `[storage] max_upload_rate`, `max_download_rate`.
    pub storage_limits: RateLimits,
    /// `[storage.NAME]`: copy storages, in name order.
    pub copies: Vec<CopyStorage>,
    /// `[encryption]`, when backups are encrypted with age.
    pub encryption: Option<EncryptionSpec>,
    /// `[[mysql]]` jobs.
    pub mysql: Vec<MysqlJob>,
    /// `[[media]]` jobs.
    pub media: Vec<MediaJob>,
    /// `[alerts.email]`, when configured.
    pub email: Option<EmailSettings>,
    /// `[alerts]`: grouping, reminders, maintenance windows.
    pub alerts: crate::alert::AlertConfig,
    /// Things that work but deserve a second look (inline secrets, loose file modes).
    pub warnings: Vec<ConfigError>,
    /// `[checks]`: the health watch.
    pub health: crate::health::HealthConfig,
    /// `[metrics] listen`: the Prometheus endpoint, when enabled.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// `[heartbeat]`, when set.
    pub heartbeat: Option<crate::heartbeat::HeartbeatConfig>,
    /// `[web]`: the status page, when enabled.
    pub web: Option<WebSettings>,
}

/// `[web]`, resolved.
#[derive(Debug, Clone)]
pub struct WebSettings {
    /// Where the status page listens (loopback unless a password is set).
    pub listen: std::net::SocketAddr,
    /// The HTTP basic auth password (`password_file`); `None`: no auth (loopback only).
    pub password: Option<Secret>,
}

pub use resolve_web::RawWeb;

/// A `[storage.NAME]`: a second place jobs copy their committed snapshots to (`copy_to`).
#[derive(Debug, Clone)]
pub struct CopyStorage {
    /// Its name (`--storage NAME`).
    pub name: String,
    /// Where it is.
    pub spec: StorageSpec,
    /// Retention there, when it differs from each job's `keep`.
    pub keep: Option<KeepPolicy>,
    /// Its `max_upload_rate`, `max_download_rate`.
    pub limits: RateLimits,
}

/// `[agent]`, resolved.
#[derive(Debug, Clone)]
pub struct Agent {
    /// This host's name in object keys and mails.
    pub hostname: String,
    /// Absolute path of the state directory.
    pub state_dir: PathBuf,
    /// Zone for schedules and dates.
    pub zone: Zone,
    /// How long a stopping daemon waits for running jobs.
    pub shutdown_grace: Duration,
    /// `io_priority` and `nice`: how the dump tool and the media readers run.
    pub priority: crate::priority::Priority,
    /// `pause_when`: waiting for a cooler machine before a backup, when set.
    pub pause_when: Option<PauseWhen>,
}

/// `[agent] pause_when`, resolved.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PauseWhen {
    /// CPU busy % (all cores) above which a backup waits.
    pub cpu_above: f64,
    /// The longest wait; then the backup starts anyway.
    pub max_wait: Duration,
}

/// Which databases a MySQL job dumps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Databases {
    /// Every database except information_schema, performance_schema, mysql and sys.
    All,
    /// These, in this order.
    List(Vec<String>),
}

/// How to reach a MySQL/MariaDB server (owned by the client adapter).
pub use crate::mysql_client::Endpoint as MysqlEndpoint;

/// A `[[mysql]]` job, resolved.
#[derive(Debug, Clone)]
pub struct MysqlJob {
    /// Unique job name.
    pub name: String,
    /// What to dump.
    pub databases: Databases,
    /// Where the server is.
    pub endpoint: MysqlEndpoint,
    /// The MySQL user, if set.
    pub user: Option<String>,
    /// The password read from `password_file`.
    pub password: Option<Secret>,
    /// When to run.
    pub schedule: Schedule,
    /// Retention.
    pub keep: KeepPolicy,
    /// Dump tool, if set (else `mariadb-dump` or `mysqldump` from PATH).
    pub dump_command: Option<String>,
    /// Extra arguments for the dump tool.
    pub extra_args: Vec<String>,
    /// zstd level.
    pub compression_level: i32,
    /// User for restores and drills, if not `user`.
    pub restore_user: Option<String>,
    /// Its password.
    pub restore_password: Option<Secret>,
    /// When the daemon runs a restore drill (`None`: never).
    pub verify_schedule: Option<Schedule>,
    /// Pinged at each run's start and end.
    pub ping_url: Option<crate::heartbeat::PingUrl>,
    /// Copy storages each committed snapshot is copied to.
    pub copy_to: Vec<String>,
    /// The anomaly guard's share (`None`: off): see `backup::anomaly`.
    pub anomaly_drop: Option<f64>,
    /// `anomaly_expected`: patterns of what may shrink without freezing retention.
    pub anomaly_expected: Vec<String>,
    /// `binlog = true`: the binary log archive (`backup::binlog`), when on.
    pub binlog: Option<BinlogSettings>,
    /// `exclude_tables`: tables left out of the dumps (`db.table`, `db.prefix_*`).
    pub exclude_tables: Vec<String>,
    /// `drill_command`: run after each drill against the scratch copy (`restore::drill_command`).
    pub drill_command: Option<String>,
    /// `restore_threads`: client sessions a restore or drill loads on (`restore::parallel`).
    pub restore_threads: usize,
}

/// How a MySQL job archives the server's binary log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BinlogSettings {
    /// How often what the server wrote is committed to storage.
    pub interval: std::time::Duration,
    /// The archive's lag that makes the job's freshness check warn (twice: critical).
    pub max_lag: std::time::Duration,
}

impl MysqlJob {
    /// `program` (a MySQL/MariaDB client tool) logged in with this job's connection settings:
    /// its user, or the restore user or a load account in a job made for them.
    pub fn login(&self, program: &std::path::Path) -> crate::mysql_client::Client {
        crate::mysql_client::Client::new(
            program,
            &self.endpoint,
            self.user.as_deref(),
            self.password.as_ref(),
            "",
        )
    }

    /// The settings restores and drills connect with: `restore_user` and its password when
    /// set, else the job's own user and password.
    pub fn for_restore(&self) -> MysqlJob {
        let mut j = self.clone();
        if let Some(u) = &self.restore_user {
            j.user = Some(u.clone());
            j.password = self.restore_password.clone();
        }
        j
    }
}

pub use crate::alert::email::{EmailSettings, SmtpTls};

/// A `[[media]]` job, resolved.
#[derive(Debug, Clone)]
pub struct MediaJob {
    /// Unique job name.
    pub name: String,
    /// Absolute paths to back up.
    pub paths: Vec<PathBuf>,
    /// gitignore-style exclude patterns.
    pub exclude: Vec<String>,
    /// When to run.
    pub schedule: Schedule,
    /// Retention.
    pub keep: KeepPolicy,
    /// Do not cross into other file systems.
    pub one_file_system: bool,
    /// Follow symlinks instead of storing them.
    pub follow_symlinks: bool,
    /// zstd level for compressible content.
    pub compression_level: i32,
    /// How long unreferenced packs survive prune.
    pub prune_grace: Duration,
    /// When the daemon runs a drill (`None`: never, the default).
    pub verify_schedule: Option<Schedule>,
    /// Pinged at each run's start and end.
    pub ping_url: Option<crate::heartbeat::PingUrl>,
    /// Copy storages each committed snapshot is copied to.
    pub copy_to: Vec<String>,
    /// The anomaly guard's share (`None`: off): see `backup::anomaly`.
    pub anomaly_drop: Option<f64>,
}

impl Config {
    /// The alerting part of this configuration.
    pub fn alert_setup(&self) -> crate::alert::Setup {
        crate::alert::Setup {
            rules: self.alerts.clone(),
            email: self.email.clone(),
            host: self.agent.hostname.clone(),
            zone: self.agent.zone,
            jobs: self
                .job_names()
                .into_iter()
                .filter_map(|name| {
                    Some(crate::alert::digest::DigestJob {
                        name: name.to_string(),
                        kind: self.job_kind(name)?,
                    })
                })
                .collect(),
            thresholds: thresholds::thresholds(&self.health),
        }
    }

    /// Every (job, copy storage) pair the jobs' `copy_to` names, jobs in config order.
    pub fn copy_pairs(&self) -> Vec<(&str, &str)> {
        let jobs = (self.mysql.iter().map(|j| (&j.name, &j.copy_to)))
            .chain(self.media.iter().map(|j| (&j.name, &j.copy_to)));
        jobs.flat_map(|(job, to)| to.iter().map(move |s| (job.as_str(), s.as_str())))
            .collect()
    }

    /// All job names, in config order.
    pub fn job_names(&self) -> Vec<&str> {
        self.mysql
            .iter()
            .map(|j| j.name.as_str())
            .chain(self.media.iter().map(|j| j.name.as_str()))
            .collect()
    }

    /// The catalog's run kind of backup job `name`: `mysql` or `media` (`None`: no such job).
    pub fn job_kind(&self, name: &str) -> Option<&'static str> {
        if self.mysql.iter().any(|j| j.name == name) {
            Some("mysql")
        } else if self.media.iter().any(|j| j.name == name) {
            Some("media")
        } else {
            None
        }
    }

    /// The bandwidth limits of storage `name` (`default` is `[storage]`; unknown: none).
    pub fn limits_of(&self, name: &str) -> RateLimits {
        if name == "default" {
            return self.storage_limits;
        }
        let copy = self.copies.iter().find(|c| c.name == name);
        copy.map_or_else(RateLimits::default, |c| c.limits)
    }

    /// `spec` opened as this configuration uses a storage: with its encryption, paced by
    /// `limits` (one token bucket per storage and direction in the process), its uploads'
    /// hashing and encryption at the agent's priority.
    pub fn open_storage(
        &self,
        spec: &StorageSpec,
        limits: RateLimits,
    ) -> Result<Storage, StorageError> {
        let storage = Storage::open(spec)?.with_encryption(self.encryption.as_ref());
        let storage = storage.with_priority(self.agent.priority);
        Ok(storage.with_rate_limits(limits))
    }

    /// The catalog's path.
    pub fn catalog_path(&self) -> PathBuf {
        self.agent.state_dir.join("catalog.sqlite")
    }
}

/// The largest configuration file read (a TOML file of this size is a mistake).
const MAX_CONFIG_FILE: u64 = 16 << 20;

/// Reads and validates a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let read = crate::secret::read_small_file(path, MAX_CONFIG_FILE, false);
    let bytes = read.map_err(|e| {
        let hint = match &e {
            crate::secret::SmallFileError::Io(io) => match io.kind() {
                std::io::ErrorKind::NotFound => "create it (the package installs a commented default; see config/opsagent.example.toml), or point --config / OPSAGENT_CONFIG at another file".to_string(),
                std::io::ErrorKind::PermissionDenied => {
                    "run as root or as a member of the `opsagent` group".to_string()
                }
                _ => "check the path".to_string(),
            },
            _ => "point --config / OPSAGENT_CONFIG at the TOML configuration file".to_string(),
        };
        ConfigErrors::whole_file(path, format!("cannot read the configuration: {e}"), Some(hint))
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        ConfigErrors::whole_file(
            path,
            format!(
                "cannot read the configuration: it is not UTF-8 text ({})",
                e.utf8_error()
            ),
            Some("save the file as UTF-8".to_string()),
        )
    })?;
    parse(path, &text)
}

/// Validates configuration text as if read from `path` (relative paths in it resolve against the
/// working directory).
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigErrors> {
    resolve::resolve(path, text)
}

/// The configuration path from `--config`, else `OPSAGENT_CONFIG`, else the default.
pub fn path_from(flag: Option<&Path>) -> PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    match std::env::var_os("OPSAGENT_CONFIG") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(DEFAULT_PATH),
    }
}
