//! The serde mirror of the TOML file: every key an operator may write, with its doc comment.
//! No defaults are applied and nothing is checked here beyond types and unknown keys; that is
//! `resolve`'s job, so every problem can be reported at once with its position. The defaults the
//! comments below state are the named constants of `defaults`.

use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// The whole file.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Host-wide settings.
    #[serde(default)]
    pub agent: RawAgent,
    /// Where backups go. Required.
    pub storage: Option<RawStorage>,
    /// MySQL/MariaDB dump jobs.
    #[serde(default)]
    pub mysql: Vec<RawMysql>,
    /// Media (directory tree) backup jobs.
    #[serde(default)]
    pub media: Vec<RawMedia>,
    /// Alert delivery.
    pub alerts: Option<RawAlerts>,
    /// Health checks.
    pub checks: Option<super::raw_checks::RawChecks>,
    /// The Prometheus endpoint.
    pub metrics: Option<super::raw_checks::RawMetrics>,
    /// The status page.
    pub web: Option<super::RawWeb>,
    /// Client-side encryption of backups with age.
    pub encryption: Option<RawEncryption>,
    /// The dead-man's switch: pings to an outside monitor.
    pub heartbeat: Option<RawHeartbeat>,
}

/// `[heartbeat]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHeartbeat {
    /// Ping URL (Healthchecks.io `https://hc-ping.com/<uuid>`, an Uptime Kuma push URL…).
    pub url: Option<String>,
    /// File holding the URL instead (it carries a token), like the other secrets.
    pub url_file: Option<PathBuf>,
    /// How often to ping; default 1m.
    #[serde(default, with = "humantime_serde")]
    pub interval: Option<Duration>,
}

/// `[encryption]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEncryption {
    /// Public keys (`age1…`) every backup object is encrypted to.
    pub recipients: Option<Vec<String>>,
    /// File with more recipients, one per line (`#` comments), as `age -R` reads.
    pub recipients_file: Option<PathBuf>,
    /// Secret key file (`age-keygen -o`): needed only to restore and verify.
    pub identity_file: Option<PathBuf>,
}

/// `[agent]`
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawAgent {
    /// Name used in object keys and mails; default: the system host name.
    pub hostname: Option<String>,
    /// SQLite catalog, outbox, caches; default `/var/lib/opsagent`. Relative paths are resolved
    /// against the working directory when the file is loaded.
    pub state_dir: Option<PathBuf>,
    /// IANA zone for schedules and dates; default: the system's local zone.
    pub timezone: Option<String>,
    /// How long SIGTERM waits for running jobs before giving up on them; default 5m.
    #[serde(default, with = "humantime_serde")]
    pub shutdown_grace: Option<Duration>,
    /// IO class of the dump tool and of the media backup's readers: `"idle"` (default) or
    /// `"best-effort"` (its lowest level).
    pub io_priority: Option<String>,
    /// CPU priority of the dump tool and of the media backup's readers: a nice value 0–19, or
    /// `"idle"` (default: the readers in the idle policy, the dump tool at nice 19).
    pub nice: Option<toml::Value>,
    /// Wait before starting a backup while the machine is busy:
    /// `{ cpu_above = "85%", max_wait = "10m" }`; off by default.
    pub pause_when: Option<RawPauseWhen>,
}

/// `pause_when = { cpu_above = "85%", max_wait = "10m" }`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPauseWhen {
    /// CPU busy share (all cores) above which a backup waits: `"85%"` or `85`.
    pub cpu_above: Option<toml::Value>,
    /// The longest wait; after it the backup starts anyway. Default 10m.
    #[serde(default, with = "humantime_serde")]
    pub max_wait: Option<Duration>,
}

/// `[storage]` and each `[storage.NAME]` (a copy storage). Unknown keys are not refused by
/// serde here (the named tables share the map): `resolve_storage` reports them.
#[derive(Debug, Deserialize, Clone)]
pub struct RawStorage {
    /// `"s3"` or `"local"`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// local: the directory backups go to.
    pub path: Option<PathBuf>,
    /// s3: the bucket.
    pub bucket: Option<String>,
    /// Key prefix inside the bucket or directory; default `"<hostname>/"`.
    pub prefix: Option<String>,
    /// s3: endpoint URL for MinIO and other S3-compatible stores; omit for AWS.
    pub endpoint: Option<String>,
    /// s3: region; default `us-east-1`.
    pub region: Option<String>,
    /// s3: path-style URLs (`endpoint/bucket/key`); default true when `endpoint` is set.
    pub path_style: Option<bool>,
    /// s3: access key id; default from `AWS_ACCESS_KEY_ID`.
    pub access_key_id: Option<String>,
    /// s3: secret key inline (discouraged: warns); prefer `secret_access_key_file`.
    pub secret_access_key: Option<String>,
    /// s3: file holding the secret key.
    pub secret_access_key_file: Option<PathBuf>,
    /// Copy storages only: retention there; default each job's `keep`.
    pub keep: Option<RawKeep>,
    /// s3: the bucket's S3 Object Lock, which prune respects and `check-config --connect`
    /// verifies: `{ mode = "governance" | "compliance", days = N }`.
    pub object_lock: Option<RawObjectLock>,
    /// Every upload to this storage together at most this fast (`"20 MiB/s"`, `"100 Mbit/s"`);
    /// default unlimited.
    pub max_upload_rate: Option<toml::Value>,
    /// Every download from it (restores, drills, copies reading it) at most this fast.
    pub max_download_rate: Option<toml::Value>,
    /// The `[storage.NAME]` tables, and any key not above (an error, reported by `resolve`).
    #[serde(flatten)]
    pub named: std::collections::BTreeMap<String, toml::Value>,
}

/// `anomaly_drop = "50%"`, `0.5` or `"off"`.
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub enum RawDrop {
    /// A fraction (`0.5`), or 0 (off).
    Number(f64),
    /// `"50%"` or `"off"`.
    Text(String),
}

/// `object_lock = { mode = "governance", days = 30 }`
#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawObjectLock {
    /// `"governance"` or `"compliance"`.
    pub mode: Option<String>,
    /// The bucket's default retention, in days.
    pub days: Option<u32>,
}

/// `keep = { last = 3, daily = 7, … }`
#[derive(Debug, Deserialize, Default, Clone, Copy)]
#[serde(deny_unknown_fields)]
pub struct RawKeep {
    /// Keep the newest N snapshots.
    pub last: Option<u32>,
    /// Keep the newest snapshot of each of the last N hours that have one.
    pub hourly: Option<u32>,
    /// … days.
    pub daily: Option<u32>,
    /// … ISO weeks.
    pub weekly: Option<u32>,
    /// … months.
    pub monthly: Option<u32>,
    /// … years.
    pub yearly: Option<u32>,
}

/// `[[mysql]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMysql {
    /// Job name (letters, digits, `-`, `_`), unique among all jobs.
    pub name: Option<String>,
    /// Databases to dump, or `["*"]` for every non-system database.
    pub databases: Option<Vec<String>>,
    /// TCP host; default 127.0.0.1 unless `socket` is set.
    pub host: Option<String>,
    /// TCP port; default 3306.
    pub port: Option<u16>,
    /// Unix socket (absolute path); excludes host/port.
    pub socket: Option<PathBuf>,
    /// MySQL user; default: the client's default (the Unix user with socket auth).
    pub user: Option<String>,
    /// File holding the password; optional (socket auth).
    pub password_file: Option<PathBuf>,
    /// Crontab line or `@daily`-style word.
    pub schedule: Option<String>,
    /// Retention policy.
    pub keep: Option<RawKeep>,
    /// Dump tool: default `mariadb-dump`, else `mysqldump`, whichever is on PATH.
    pub dump_command: Option<String>,
    /// Extra arguments for the dump tool.
    #[serde(default)]
    pub extra_args: Vec<String>,
    /// zstd level 1–19; default 3.
    pub compression_level: Option<i32>,
    /// MySQL user for restores and drills (they create databases and write); default: `user`.
    pub restore_user: Option<String>,
    /// Password file of `restore_user`.
    pub restore_password_file: Option<PathBuf>,
    /// When the daemon runs a restore drill of this job (crontab or @weekly…; "off" disables);
    /// default "@weekly".
    pub verify_schedule: Option<String>,
    /// This job's own ping URL: `/start` at a run's start, the URL on success, `/fail` with
    /// the error on failure (Healthchecks.io style; Uptime Kuma push URLs get `status=`).
    pub ping_url: Option<String>,
    /// Copy storages (`[storage.NAME]`) each committed snapshot is copied to.
    #[serde(default)]
    pub copy_to: Vec<String>,
    /// A shrink against the previous snapshot that freezes retention: `"50%"` or `0.5`
    /// (default 50 %), `"off"` or 0 to disable.
    pub anomaly_drop: Option<RawDrop>,
    /// Tables (`db.table`, a trailing `*` for a prefix) whose shrinks are expected (a cache
    /// or sessions table emptied on purpose): they never freeze retention.
    #[serde(default)]
    pub anomaly_expected: Vec<String>,
    /// Archive the server's binary log continuously (point-in-time restores).
    pub binlog: Option<bool>,
    /// Tables left out of the dumps: `db.table`, a trailing `*` for a prefix.
    #[serde(default)]
    pub exclude_tables: Vec<String>,
    /// A command run after each restore drill against the scratch database (the application
    /// proving it can use the copy); its failure fails the drill.
    pub drill_command: Option<String>,
    /// Client sessions a restore loads a dump on at once (1–64); default: the host's cores.
    pub restore_threads: Option<i64>,
    /// How often the archive commits what the server wrote; default 10s.
    #[serde(default, with = "humantime_serde")]
    pub binlog_interval: Option<Duration>,
    /// How far behind the archive may fall before the job's freshness check warns (twice that:
    /// critical); default 5m.
    #[serde(default, with = "humantime_serde")]
    pub binlog_max_lag: Option<Duration>,
}

/// `[[media]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMedia {
    /// Job name (letters, digits, `-`, `_`), unique among all jobs.
    pub name: Option<String>,
    /// Directories (or files) to back up, absolute or relative to the working directory.
    pub paths: Option<Vec<PathBuf>>,
    /// gitignore-style patterns of what to leave out (`cache/`, `*.tmp`, `/tmp-uploads`).
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Crontab line or `@daily`-style word.
    pub schedule: Option<String>,
    /// Retention policy.
    pub keep: Option<RawKeep>,
    /// Stay on the file system of each path (do not descend into mounts); default true.
    pub one_file_system: Option<bool>,
    /// Back up what symlinks point to instead of the links; default false.
    pub follow_symlinks: Option<bool>,
    /// zstd level 1–19 for compressible content; default 3.
    pub compression_level: Option<i32>,
    /// How long prune keeps unreferenced packs before deleting them; default 24h.
    #[serde(default, with = "humantime_serde")]
    pub prune_grace: Option<Duration>,
    /// When the daemon runs a drill of this job: every pack of the newest snapshot downloaded
    /// and checked (crontab or @monthly…); default "off" (it downloads the whole snapshot).
    pub verify_schedule: Option<String>,
    /// This job's own ping URL: `/start` at a run's start, the URL on success, `/fail` with
    /// the error on failure (Healthchecks.io style; Uptime Kuma push URLs get `status=`).
    pub ping_url: Option<String>,
    /// Copy storages (`[storage.NAME]`) each committed snapshot is copied to.
    #[serde(default)]
    pub copy_to: Vec<String>,
    /// A shrink against the previous snapshot that freezes retention: `"50%"` or `0.5`
    /// (default 50 %), `"off"` or 0 to disable.
    pub anomaly_drop: Option<RawDrop>,
}

/// `[alerts]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlerts {
    /// `[alerts.email]`
    pub email: Option<RawEmail>,
    /// Alerts firing within this time of each other go in one mail; default 30s.
    #[serde(default, with = "humantime_serde")]
    pub group_wait: Option<Duration>,
    /// At most one mail per alert per this interval, and a RESOLVED only after the check stayed
    /// fine this long; default 5m.
    #[serde(default, with = "humantime_serde")]
    pub group_interval: Option<Duration>,
    /// A reminder while an alert keeps firing; default 4h.
    #[serde(default, with = "humantime_serde")]
    pub repeat_interval: Option<Duration>,
    /// Mail when an alert resolves; default true.
    pub send_resolved: Option<bool>,
    /// `"warn"` (default: WARN, UNKNOWN and CRIT alert) or `"crit"`.
    pub min_severity: Option<String>,
    /// `[[alerts.maintenance]]` windows: alerts are recorded but not mailed.
    #[serde(default)]
    pub maintenance: Vec<RawMaintenance>,
    /// `[[alerts.webhook]]`: more ways to reach a person, beside the mail.
    #[serde(default)]
    pub webhook: Vec<RawWebhook>,
    /// When the digest (every job's last backup and drill, growth, changes) goes out: a
    /// crontab line in `agent.timezone`, e.g. `"0 8 * * *"`; default: no digest.
    pub digest: Option<String>,
}

/// `[[alerts.webhook]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebhook {
    /// Its name, in logs and `status`.
    pub name: Option<String>,
    /// Where to POST (it usually holds a token).
    pub url: Option<String>,
    /// File holding the URL instead, like the other secrets.
    pub url_file: Option<PathBuf>,
    /// `"json"` (default), `"slack"` (Slack, Mattermost) or `"ntfy"`.
    pub format: Option<String>,
    /// Deadline of one request; default 10s.
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
}

/// `[[alerts.maintenance]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMaintenance {
    /// When each window starts (crontab line or `@daily`-style word).
    pub schedule: Option<String>,
    /// How long it lasts.
    #[serde(default, with = "humantime_serde")]
    pub duration: Option<Duration>,
    /// Alert keys or prefixes ending in `*` it mutes; default `["*"]` (all).
    pub checks: Option<Vec<String>>,
}

/// `[alerts.email]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEmail {
    /// SMTP server host name.
    pub smtp_host: Option<String>,
    /// Port; default 587 for starttls, 465 for tls, 25 for none.
    pub smtp_port: Option<u16>,
    /// `"starttls"` (default), `"tls"` or `"none"`.
    pub tls: Option<String>,
    /// SMTP AUTH user.
    pub username: Option<String>,
    /// File holding the SMTP password.
    pub password_file: Option<PathBuf>,
    /// Sender address.
    pub from: Option<String>,
    /// Recipients (at least one).
    pub to: Option<Vec<String>>,
    /// Extra CA certificate (PEM) to trust for the SMTP server.
    pub ca_file: Option<PathBuf>,
    /// Connection timeout; default 30s.
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
}
