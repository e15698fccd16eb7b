//! Every default the configuration applies to a key left out, in one place. The resolvers
//! (`resolve*.rs`) use these names; the doc comments in `raw.rs` and `raw_checks.rs` state the
//! same values for operators. Defaults owned by an engine stay with it: the host check
//! thresholds (`health::host::default_check`, `health::disk::DiskConfig`) and the alert timings
//! (`alert::AlertConfig::default`).

use super::raw::RawKeep;
use std::time::Duration;

const MINUTE: u64 = 60;
const HOUR: u64 = 3600;
const DAY: u64 = 86_400;

// [agent]

/// `[agent] state_dir`: the catalog, outbox and caches.
pub const STATE_DIR: &str = "/var/lib/opsagent";
/// `[agent] shutdown_grace`: how long SIGTERM waits for running jobs.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5 * MINUTE);
/// `[agent] io_priority`: the dump tool and the media readers get disk time only when nobody
/// else wants it (the APIs on the same disk come first).
pub const IO_PRIORITY: crate::priority::IoClass = crate::priority::IoClass::Idle;
/// `[agent] nice`: the media readers get the CPU only when the services do not want it, and the
/// dump tool runs at the lowest nice value (src/priority.rs says why not idle).
pub const NICE: crate::priority::Cpu = crate::priority::Cpu::Idle;
/// `[agent] pause_when.max_wait`: after this, a backup waiting for a busy CPU starts anyway.
pub const PAUSE_MAX_WAIT: Duration = Duration::from_secs(10 * MINUTE);

// [storage]

/// `[storage] region` of `type = "s3"`.
pub const S3_REGION: &str = "us-east-1";

// [[mysql]] and [[media]]

/// `keep` of a backup job: the newest 3, then one a day for 7 days, a week for 4 weeks, a month
/// for 12 months.
pub const KEEP: RawKeep = RawKeep {
    last: Some(3),
    hourly: None,
    daily: Some(7),
    weekly: Some(4),
    monthly: Some(12),
    yearly: None,
};
/// `compression_level`: zstd's own default.
pub const COMPRESSION_LEVEL: i32 = 3;
/// The zstd levels `compression_level` accepts.
pub const COMPRESSION_LEVELS: std::ops::RangeInclusive<i32> = 1..=19;
/// `[[mysql]] host` when no `socket` is set.
pub const MYSQL_HOST: &str = "127.0.0.1";
/// `[[mysql]] port` (and `[[checks.mysql]] port`).
pub const MYSQL_PORT: u16 = 3306;
/// `[[mysql]] verify_schedule`: a restore drill a week. (`[[media]]` drills are off unless set:
/// they download the whole snapshot.)
pub const MYSQL_VERIFY_SCHEDULE: &str = "@weekly";
/// `verify_schedule` words that turn drills off.
pub const VERIFY_OFF: [&str; 2] = ["off", "never"];
/// `[[media]] one_file_system`: do not descend into other mounts.
pub const ONE_FILE_SYSTEM: bool = true;
/// `[[media]] follow_symlinks`: store links as links.
pub const FOLLOW_SYMLINKS: bool = false;
/// `[[media]] prune_grace`: how long prune keeps unreferenced packs.
pub const PRUNE_GRACE: Duration = Duration::from_secs(DAY);
/// `anomaly_drop` of a backup job: a snapshot whose size, or a table's rows (for media: the
/// file count or bytes), fell by this share or more against the previous snapshot, or whose
/// content is this share or more rewritten (media), freezes the job's retention.
pub const ANOMALY_DROP: f64 = 0.5;
/// `anomaly_drop` words that turn the guard off.
pub const ANOMALY_OFF: [&str; 2] = ["off", "never"];

// [alerts] and [alerts.email]

/// `[alerts] send_resolved`.
pub const SEND_RESOLVED: bool = true;
/// `[[alerts.maintenance]] checks`: every check.
pub const MAINTENANCE_CHECKS: &str = "*";
/// The longest maintenance window kept (a longer `duration` is cut to this).
pub const MAINTENANCE_MAX: Duration = Duration::from_secs(366 * DAY);
/// `[alerts.email] tls`.
pub const SMTP_TLS: &str = "starttls";
/// `[alerts.email] smtp_port` with `tls = "starttls"` (submission).
pub const SMTP_PORT_STARTTLS: u16 = 587;
/// … with `tls = "tls"` (SMTPS).
pub const SMTP_PORT_TLS: u16 = 465;
/// … with `tls = "none"` (a local relay).
pub const SMTP_PORT_PLAIN: u16 = 25;
/// `[alerts.email] timeout`.
pub const SMTP_TIMEOUT: Duration = Duration::from_secs(30);
/// Deadline of one webhook request (`[[alerts.webhook]] timeout`).
pub const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);
/// `[[alerts.webhook]] format`: opsagent's own JSON body.
pub const WEBHOOK_FORMAT: &str = "json";

// [checks]

/// `[checks] interval`.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(30);
/// The shortest interval a check may have.
pub const CHECK_INTERVAL_MIN: Duration = Duration::from_secs(1);
/// `[checks] timeout` (never more than the interval).
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(10);
/// `[checks] backup_grace`: how late a job's last good backup may be past its schedule period.
pub const BACKUP_GRACE: Duration = Duration::from_secs(HOUR);
/// The shortest interval of the automatic backup freshness checks.
pub const FRESHNESS_INTERVAL_MIN: Duration = Duration::from_secs(MINUTE);
/// The period assumed for a schedule with no next slot.
pub const FRESHNESS_PERIOD_FALLBACK: Duration = Duration::from_secs(DAY);
/// A configured check's `for`: no hold.
pub const HOLD: Duration = Duration::ZERO;
/// `[[checks.http]] method`.
pub const HTTP_METHOD: &str = "GET";
/// `[[checks.http]] tls_verify`.
pub const HTTP_TLS_VERIFY: bool = true;
/// `[[checks.tls]] warn_days`, `crit_days`.
pub const TLS_DAYS: (f64, f64) = (14.0, 7.0);
/// `[[checks.service]] restart`.
pub const SERVICE_RESTART: bool = false;
/// `[[checks.service]] max_restarts` per hour.
pub const SERVICE_MAX_RESTARTS: u32 = 3;
/// `[[checks.process]] min`.
pub const PROCESS_MIN: u32 = 1;
/// `[[checks.mysql]] warn`, `crit`: % of max_connections in use.
pub const MYSQL_CONNECTIONS: (f64, f64) = (80.0, 90.0);
/// `[[checks.log]] window`.
pub const LOG_WINDOW: Duration = Duration::from_secs(5 * MINUTE);
/// `[[checks.log]] warn`: matches per window.
pub const LOG_WARN: u64 = 1;
/// `[[checks.rate]] window`.
pub const RATE_WINDOW: Duration = Duration::from_secs(MINUTE);
/// `[[checks.rate]] top`: client addresses named in the detail.
pub const RATE_TOP: usize = 5;
/// The hysteresis of `[[checks.rate]]` thresholds (a fraction of the threshold).
pub const RATE_HYSTERESIS: f64 = 0.1;

/// `[[checks.ping]] count`: probes per round (also `[checks.gateway]`).
pub const PING_COUNT: u32 = 5;
/// The most probes a round may have.
pub const PING_COUNT_MAX: u32 = 1000;
/// `[[checks.ping]] probe_interval`: time between two probes of a round.
pub const PING_PROBE_INTERVAL: Duration = Duration::from_millis(200);
/// The shortest `probe_interval` (a check measures, it does not flood).
pub const PING_PROBE_INTERVAL_MIN: Duration = Duration::from_millis(10);
/// `[[checks.ping]] probe_timeout`: how long a probe waits for its answer.
pub const PING_PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// `[[checks.ping]] loss_warn`, `loss_crit` in percent.
pub const PING_LOSS: (f64, f64) = (10.0, 25.0);
/// `[checks.gateway] loss_warn`, `loss_crit` in percent: two and three of five probes lost.
pub const GATEWAY_LOSS: (f64, f64) = (30.0, 60.0);
/// `[checks.gateway] for`: a few rounds in a row, not one lost burst.
pub const GATEWAY_HOLD: Duration = Duration::from_secs(2 * MINUTE);

/// `[heartbeat] interval`.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(MINUTE);

/// `[[checks.peer]] max_age`.
pub const PEER_MAX_AGE: Duration = Duration::from_secs(5 * MINUTE);

/// How often the binary log archive commits what the server wrote (`binlog_interval`).
pub const BINLOG_INTERVAL: Duration = Duration::from_secs(10);

/// The binary log archive's lag that makes the job's freshness check warn (`binlog_max_lag`).
pub const BINLOG_MAX_LAG: Duration = Duration::from_secs(300);

/// Most client sessions a restore loads one dump on (`restore_threads`; default one per core).
pub const MAX_RESTORE_THREADS: usize = 64;
