//! The serde mirror of `[checks]` (host checks and `[[checks.KIND]]` lists) and `[metrics]`.
//! Like `raw`, nothing is checked here beyond types and unknown keys; the defaults stated below
//! are the named constants of `defaults` (host check thresholds: `health::host`).

use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// `[checks]`
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawChecks {
    /// Default interval of every check; default 30s.
    #[serde(default, with = "humantime_serde")]
    pub interval: Option<Duration>,
    /// Default timeout of one sample; default 10s (never more than the interval).
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// Backup freshness: how late a job's last good backup may be past its schedule period;
    /// default 1h.
    #[serde(default, with = "humantime_serde")]
    pub backup_grace: Option<Duration>,
    /// `[checks.cpu]`: % busy; warn 80, crit 90, for 5m.
    pub cpu: Option<RawHostCheck>,
    /// `[checks.load]`: 5-minute load average per core; warn 2, crit 4, for 5m.
    pub load: Option<RawHostCheck>,
    /// `[checks.memory]`: % available (lower is worse); warn 10, crit 5, for 2m.
    pub memory: Option<RawHostCheck>,
    /// `[checks.swap]`: % used; warn 50, crit 80, for 5m.
    pub swap: Option<RawHostCheck>,
    /// `[checks.disk]`: every real filesystem, space and inodes.
    pub disk: Option<RawDiskCheck>,
    /// `[checks.gateway]`: the ping of the default gateway; on while the host has one.
    pub gateway: Option<RawGateway>,
    /// `[[checks.tcp]]`
    #[serde(default)]
    pub tcp: Vec<RawTcp>,
    /// `[[checks.http]]`
    #[serde(default)]
    pub http: Vec<RawHttp>,
    /// `[[checks.tls]]`
    #[serde(default)]
    pub tls: Vec<RawTls>,
    /// `[[checks.service]]`
    #[serde(default)]
    pub service: Vec<RawService>,
    /// `[[checks.process]]`
    #[serde(default)]
    pub process: Vec<RawProcess>,
    /// `[[checks.mysql]]`
    #[serde(default)]
    pub mysql: Vec<RawMysqlCheck>,
    /// `[[checks.log]]`
    #[serde(default)]
    pub log: Vec<RawLog>,
    /// `[[checks.rate]]`
    #[serde(default)]
    pub rate: Vec<RawRate>,
    /// `[[checks.peer]]`
    #[serde(default)]
    pub peer: Vec<RawPeer>,
    /// `[[checks.ping]]`
    #[serde(default)]
    pub ping: Vec<RawPing>,
}

/// `[checks.cpu]` and the other host checks.
#[derive(Debug, Deserialize, Default, Clone, Copy)]
#[serde(deny_unknown_fields)]
pub struct RawHostCheck {
    /// `false` turns the check off.
    pub enabled: Option<bool>,
    /// WARN threshold.
    pub warn: Option<f64>,
    /// CRIT threshold.
    pub crit: Option<f64>,
    /// How long the condition must hold.
    #[serde(default, rename = "for", with = "humantime_serde")]
    pub hold: Option<Duration>,
}

/// `[checks.disk]`
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawDiskCheck {
    /// `false` turns disk checks off.
    pub enabled: Option<bool>,
    /// % space used for WARN; default 80.
    pub warn: Option<f64>,
    /// % space used for CRIT; default 90.
    pub crit: Option<f64>,
    /// % inodes used for WARN; default 80.
    pub inodes_warn: Option<f64>,
    /// % inodes used for CRIT; default 90.
    pub inodes_crit: Option<f64>,
    /// How long the condition must hold; default 0.
    #[serde(default, rename = "for", with = "humantime_serde")]
    pub hold: Option<Duration>,
    /// WARN when the forecast says full within this; default 24h; "0s" turns the forecast off.
    #[serde(default, with = "humantime_serde")]
    pub full_within: Option<Duration>,
    /// Mount points to leave alone.
    #[serde(default)]
    pub ignore: Vec<PathBuf>,
}

/// `status = 200` or `status = [200, 301]`.
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub enum OneOrMany {
    /// One code.
    One(u16),
    /// Several.
    Many(Vec<u16>),
}

macro_rules! raw_check {
    ($(#[$doc:meta])* $name:ident { $($(#[$fdoc:meta])* $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            /// Check name (letters, digits, `-`, `_`, `.`), unique among all checks.
            pub name: Option<String>,
            /// Sampling interval; default `[checks] interval`.
            #[serde(default, with = "humantime_serde")]
            pub interval: Option<Duration>,
            /// How long a bad condition must hold before the state changes; default 0.
            #[serde(default, rename = "for", with = "humantime_serde")]
            pub hold: Option<Duration>,
            /// Deadline of one sample; default `[checks] timeout`.
            #[serde(default, with = "humantime_serde")]
            pub timeout: Option<Duration>,
            /// Checks this one depends on: while one of them fails, this check's alerts are
            /// folded into that check's mail.
            pub depends_on: Option<Vec<String>>,
            $($(#[$fdoc])* pub $field: $ty,)*
        }
    };
}

raw_check!(
    /// `[[checks.tcp]]`
    RawTcp {
        /// `host:port` that must accept connections.
        address: Option<String>,
    }
);

raw_check!(
    /// `[[checks.http]]`
    RawHttp {
        /// The URL.
        url: Option<String>,
        /// HTTP method; default GET.
        method: Option<String>,
        /// Expected status code(s); default any 2xx/3xx.
        status: Option<OneOrMany>,
        /// A substring the body must contain.
        body: Option<String>,
        /// Response time for WARN.
        #[serde(default, with = "humantime_serde")]
        latency_warn: Option<Duration>,
        /// Response time for CRIT.
        #[serde(default, with = "humantime_serde")]
        latency_crit: Option<Duration>,
        /// Verify the certificate; default true.
        tls_verify: Option<bool>,
    }
);

raw_check!(
    /// `[[checks.tls]]`
    RawTls {
        /// `host:port` serving TLS.
        address: Option<String>,
        /// SNI name; default the host of `address`.
        server_name: Option<String>,
        /// Days before expiry for WARN; default 14.
        warn_days: Option<f64>,
        /// Days before expiry for CRIT; default 7.
        crit_days: Option<f64>,
    }
);

raw_check!(
    /// `[[checks.service]]`
    RawService {
        /// The systemd unit; default `<name>.service`.
        unit: Option<String>,
        /// Restart the unit when it is down; default false.
        restart: Option<bool>,
        /// At most this many restarts per hour; default 3.
        max_restarts: Option<u32>,
    }
);

raw_check!(
    /// `[[checks.process]]`
    RawProcess {
        /// Process name to look for; default the check's name (unless `pidfile` is set).
        process: Option<String>,
        /// A pidfile instead of a name.
        pidfile: Option<PathBuf>,
        /// At least this many must run; default 1.
        min: Option<u32>,
        /// WARN when more run.
        max: Option<u32>,
    }
);

raw_check!(
    /// `[[checks.mysql]]`
    RawMysqlCheck {
        /// Use the server and credentials of this `[[mysql]]` job.
        job: Option<String>,
        /// TCP host; default 127.0.0.1.
        host: Option<String>,
        /// TCP port; default 3306.
        port: Option<u16>,
        /// Unix socket.
        socket: Option<PathBuf>,
        /// User.
        user: Option<String>,
        /// File holding the password.
        password_file: Option<PathBuf>,
        /// % of max_connections in use for WARN; default 80.
        warn: Option<f64>,
        /// … for CRIT; default 90.
        crit: Option<f64>,
    }
);

raw_check!(
    /// `[[checks.log]]`
    RawLog {
        /// The log file.
        path: Option<PathBuf>,
        /// Regex a line must match to count.
        pattern: Option<String>,
        /// Counting window; default 5m.
        #[serde(default, with = "humantime_serde")]
        window: Option<Duration>,
        /// Matches per window for WARN; default 1.
        warn: Option<u64>,
        /// Matches per window for CRIT.
        crit: Option<u64>,
    }
);

raw_check!(
    /// `[[checks.rate]]`
    RawRate {
        /// The access log.
        path: Option<PathBuf>,
        /// Only lines matching this regex count; default every line.
        pattern: Option<String>,
        /// Counting window; default 1m.
        #[serde(default, with = "humantime_serde")]
        window: Option<Duration>,
        /// Requests per window for WARN.
        warn: Option<u64>,
        /// Requests per window for CRIT.
        crit: Option<u64>,
        /// Client addresses named in the detail; default 5.
        top: Option<usize>,
    }
);

raw_check!(
    /// `[[checks.peer]]`
    RawPeer {
        /// The other agent's host name (its `[agent] hostname`).
        host: Option<String>,
        /// Its storage prefix in this agent's bucket; default `<host>/`.
        prefix: Option<String>,
        /// Older heartbeats mean it is down; default 5m.
        #[serde(default, with = "humantime_serde")]
        max_age: Option<Duration>,
        /// A job whose newest snapshot is older is CRIT; default not checked.
        #[serde(default, with = "humantime_serde")]
        max_backup_age: Option<Duration>,
    }
);

/// `"10%"` or `10`: a percentage.
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub enum RawPercent {
    /// `10` (percent).
    Number(f64),
    /// `"10%"`.
    Text(String),
}

/// The keys of a ping round, shared by `[[checks.ping]]` and `[checks.gateway]` (their defaults
/// are in `defaults`: `PING_*` and `GATEWAY_*`).
macro_rules! ping_table {
    ($(#[$doc:meta])* $name:ident { $($(#[$fdoc:meta])* $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Deserialize, Default, Clone)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            $($(#[$fdoc])* pub $field: $ty,)*
            /// Sampling interval (one round); default `[checks] interval`.
            #[serde(default, with = "humantime_serde")]
            pub interval: Option<Duration>,
            /// How long a bad condition must hold before the state changes.
            #[serde(default, rename = "for", with = "humantime_serde")]
            pub hold: Option<Duration>,
            /// Deadline of one round; default `[checks] timeout`.
            #[serde(default, with = "humantime_serde")]
            pub timeout: Option<Duration>,
            /// Probes per round; default 5. Without `count`, `probe_interval` and
            /// `probe_timeout` the default round shrinks to fit 80 % of the timeout.
            pub count: Option<u32>,
            /// Time between two probes of a round; default 200ms.
            #[serde(default, with = "humantime_serde")]
            pub probe_interval: Option<Duration>,
            /// How long a probe waits for its answer; default 1s.
            #[serde(default, with = "humantime_serde")]
            pub probe_timeout: Option<Duration>,
            /// Loss for WARN (`"10%"`).
            pub loss_warn: Option<RawPercent>,
            /// Loss for CRIT (`"25%"`).
            pub loss_crit: Option<RawPercent>,
            /// The round's p95 round-trip time for WARN (`"100ms"`); default not judged.
            #[serde(default, with = "humantime_serde")]
            pub rtt_warn: Option<Duration>,
            /// … for CRIT.
            #[serde(default, with = "humantime_serde")]
            pub rtt_crit: Option<Duration>,
        }
    };
}

ping_table!(
    /// `[[checks.ping]]`
    RawPing {
        /// Check name (letters, digits, `-`, `_`, `.`), unique among all checks.
        name: Option<String>,
        /// Host name or IPv4/IPv6 address to send ICMP echo requests to.
        target: Option<String>,
        /// `host:port` to time TCP connects to instead of ICMP.
        tcp: Option<String>,
        /// Checks this one depends on (see the other kinds).
        depends_on: Option<Vec<String>>,
    }
);

ping_table!(
    /// `[checks.gateway]`: loss warn 30%, crit 60%, for 2m.
    RawGateway {
        /// `false` turns the gateway ping off.
        enabled: Option<bool>,
    }
);

/// `[metrics]`
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    /// Address of the Prometheus text endpoint (`127.0.0.1:9187`); off when absent.
    pub listen: Option<String>,
}
