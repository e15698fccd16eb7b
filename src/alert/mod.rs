//! Alerting: check events and failed backup/drill runs become alerts ([`route`]), alerts become
//! notifications grouped, deduplicated and rate-limited like Alertmanager's ([`route::plan`]):
//! one mail ([`compose`]) and one request per webhook ([`webhook`]) per group, written into the
//! durable outbox in the catalog and delivered by SMTP ([`email`]) or HTTP, each channel by its
//! own sender ([`outbox`]); silences and maintenance windows mute them ([`silence`]). The
//! digest ([`digest`], sent by [`digester`]) says at a scheduled time how things stand.
//!
//! The engine keeps no state in memory: the `alerts` table holds what each alert is and what
//! was last mailed about it, so a restarted daemon continues where it stopped. This module owns
//! its configuration ([`AlertConfig`], [`email::EmailSettings`]); `config` resolves the TOML into
//! them.

pub mod chart;
pub mod compose;
pub mod depend;
pub mod digest;
pub mod digester;
pub mod email;
pub mod engine;
pub mod outbox;
pub mod route;
pub mod silence;
pub mod webhook;

pub use engine::{spawn, Alerting, Engine, Setup};

use std::time::Duration;

/// A check's warn and crit lines as its mails draw and word them (built by `config` from the
/// check's limits).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// WARN at or beyond this.
    pub warn: Option<f64>,
    /// CRIT at or beyond this.
    pub crit: Option<f64>,
    /// Higher is worse (`above`), else lower is (`below`).
    pub high_is_bad: bool,
    /// The unit of the value (`%`, `ms`, `days`, empty).
    pub unit: &'static str,
}

/// Check name, or the kind of host checks named per mount (`disk`, `inodes`) → thresholds.
pub type ThresholdMap = std::collections::BTreeMap<String, Thresholds>;

/// The thresholds of check `key` in `map`: by name, else by its kind (`disk:/srv` → `disk`).
pub fn thresholds_of<'a>(map: &'a ThresholdMap, key: &str) -> Option<&'a Thresholds> {
    map.get(key)
        .or_else(|| map.get(key.split_once(':').map(|(k, _)| k)?))
}

/// The lowest level that alerts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MinSeverity {
    /// WARN, UNKNOWN and CRIT alert.
    Warn,
    /// Only CRIT alerts.
    Crit,
}

impl MinSeverity {
    /// The rank a level needs (see [`route::rank`]).
    pub fn rank(self) -> u8 {
        match self {
            MinSeverity::Warn => 1,
            MinSeverity::Crit => 2,
        }
    }
}

/// `[alerts]`, resolved.
#[derive(Debug, Clone)]
pub struct AlertConfig {
    /// Alerts that fire within this time of each other go out in one mail.
    pub group_wait: Duration,
    /// At most one mail per alert per this interval; a RESOLVED is sent only once the check has
    /// stayed fine this long (a flapping check sends one mail, not one per change).
    pub group_interval: Duration,
    /// A reminder while an alert keeps firing.
    pub repeat_interval: Duration,
    /// Mail when an alert resolves.
    pub send_resolved: bool,
    /// The lowest level that alerts.
    pub min_severity: MinSeverity,
    /// Maintenance windows: alerts of the matching checks are recorded but not mailed.
    pub maintenance: Vec<silence::Maintenance>,
    /// `[[alerts.webhook]]`: each gets the same notifications as the mail.
    pub webhooks: Vec<webhook::WebhookSettings>,
    /// `digest`: when the digest goes out (`None`: never, the default).
    pub digest: Option<crate::schedule::Schedule>,
    /// Alert key → the checks it depends on (`depends_on`, and a job's backup alerts on the
    /// MySQL check of the job): while one of those fires, this alert is folded into its mail.
    pub depends: std::collections::BTreeMap<String, Vec<String>>,
}

impl Default for AlertConfig {
    fn default() -> AlertConfig {
        AlertConfig {
            group_wait: Duration::from_secs(30),
            group_interval: Duration::from_secs(300),
            repeat_interval: Duration::from_secs(4 * 3600),
            send_resolved: true,
            min_severity: MinSeverity::Warn,
            maintenance: Vec::new(),
            webhooks: Vec::new(),
            digest: None,
            depends: std::collections::BTreeMap::new(),
        }
    }
}
