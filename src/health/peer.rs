//! `[[checks.peer]]`: another agent's heartbeat object, read from the bucket both use. Each
//! running agent writes `<prefix>opsagent-heartbeat.json` every check interval (its host, the
//! time, its worst check state, each job's newest snapshot); a peer reads it and goes CRIT when
//! it is older than `max_age` (that agent, its server or its network is down) or when a job's
//! newest snapshot is older than `max_backup_age`. Two servers watch each other with the storage
//! they already have, no SaaS needed. The object is untrusted input: its size is bounded and
//! its host must be the one expected.

use super::state::Level;
use super::{CheckSpec, Sample};
use crate::storage::{Storage, StorageSpec};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The heartbeat object's key, directly under an agent's prefix.
pub const HEARTBEAT_KEY: &str = "opsagent-heartbeat.json";
/// The format this build writes.
pub const HEARTBEAT_FORMAT: u32 = 1;
/// Largest heartbeat object read.
pub const MAX_HEARTBEAT: u64 = 256 * 1024;

/// What an agent says about itself in the bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Presence {
    /// [`HEARTBEAT_FORMAT`].
    pub format: u32,
    /// The agent's host name.
    pub host: String,
    /// When it was written.
    pub written_at: DateTime<Utc>,
    /// Its worst check state (`OK`, `WARN`, `CRIT`, `UNKNOWN`).
    pub worst: String,
    /// Each job's newest snapshot.
    pub jobs: Vec<JobPresence>,
}

/// One job in a [`Presence`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobPresence {
    /// Job name.
    pub job: String,
    /// When its newest snapshot finished, if it has one.
    pub newest: Option<DateTime<Utc>>,
}

impl Presence {
    /// What this agent says about itself: its worst check state and each job's newest
    /// snapshot, from the catalog.
    pub fn of(
        host: &str,
        jobs: &[String],
        catalog: &crate::catalog::Catalog,
    ) -> Result<Presence, crate::catalog::CatalogError> {
        let rank = |s: &str| match s {
            "CRIT" => 3,
            "UNKNOWN" => 2,
            "WARN" => 1,
            _ => 0,
        };
        let worst = catalog
            .check_states()?
            .into_iter()
            .map(|c| c.state)
            .max_by_key(|s| rank(s))
            .unwrap_or_else(|| "OK".into());
        let snapshots = catalog.snapshots(None)?;
        let jobs = jobs
            .iter()
            .map(|j| JobPresence {
                job: j.clone(),
                newest: snapshots
                    .iter()
                    .filter(|s| &s.job == j)
                    .map(|s| s.finished_at)
                    .max(),
            })
            .collect();
        Ok(Presence {
            format: HEARTBEAT_FORMAT,
            host: host.to_string(),
            written_at: Utc::now(),
            worst,
            jobs,
        })
    }
}

/// A peer check.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    /// The host the peer's heartbeat must name.
    pub host: String,
    /// Where the peer writes (this agent's storage with the peer's prefix).
    pub storage: StorageSpec,
    /// Older than this, the peer is down: CRIT.
    pub max_age: Duration,
    /// A job whose newest snapshot is older than this: CRIT. `None`: not checked.
    pub max_backup_age: Option<Duration>,
}

/// Reads the peer's heartbeat once.
pub async fn probe(spec: &CheckSpec, p: &Spec) -> Sample {
    let crit = |detail: String| Sample::judged(spec, Level::Crit, None, detail);
    let storage = match Storage::open(&p.storage) {
        Ok(s) => s,
        Err(e) => return Sample::failed(spec, e.to_string()),
    };
    let bytes = match storage.get_bytes_max(HEARTBEAT_KEY, MAX_HEARTBEAT).await {
        Ok(b) => b,
        Err(e) if e.is_not_found() => {
            return crit(format!(
                "no heartbeat of {} in {} (hint: is opsagent running there, with this storage and prefix?)",
                p.host,
                storage.describe()
            ))
        }
        Err(e) => return Sample::failed(spec, e.to_string()),
    };
    let presence: Presence = match serde_json::from_slice(&bytes) {
        Ok(x) => x,
        Err(e) => {
            return crit(format!(
                "the heartbeat object in {} is not one opsagent writes: {e}",
                storage.describe()
            ))
        }
    };
    judge(spec, p, &presence, Utc::now())
}

/// The verdict on a heartbeat read at `now`.
pub fn judge(spec: &CheckSpec, p: &Spec, presence: &Presence, now: DateTime<Utc>) -> Sample {
    let crit = |detail: String| Sample::judged(spec, Level::Crit, None, detail);
    if presence.host != p.host {
        return crit(format!(
            "the heartbeat at {}'s prefix names host `{}` (hint: check the peer check's prefix)",
            p.host,
            crate::quote::printable(&presence.host)
        ));
    }
    let age = (now - presence.written_at).to_std().unwrap_or_default();
    let secs = |d: Duration| humantime::format_duration(Duration::from_secs(d.as_secs()));
    if age > p.max_age {
        return crit(format!(
            "{} last wrote its heartbeat {} ago (max {}): the agent, its server or its network is down",
            p.host,
            secs(age),
            secs(p.max_age)
        ));
    }
    let mut stale = Vec::new();
    let mut newest = Vec::new();
    for j in presence.jobs.iter().take(1000) {
        let job = crate::quote::printable(&j.job);
        match j.newest {
            Some(t) => {
                let a = (now - t).to_std().unwrap_or_default();
                newest.push(format!("{job} {} ago", secs(a)));
                if p.max_backup_age.is_some_and(|m| a > m) {
                    stale.push(format!("{job}'s newest backup is {} old", secs(a)));
                }
            }
            None => {
                newest.push(format!("{job} none"));
                if p.max_backup_age.is_some() {
                    stale.push(format!("{job} has no backup"));
                }
            }
        }
    }
    if !stale.is_empty() {
        return crit(format!("{}: {}", p.host, stale.join("; ")));
    }
    let detail = format!(
        "{}: heartbeat {} ago, its worst check {}; newest backups: {}",
        p.host,
        secs(age),
        crate::quote::printable(&presence.worst),
        if newest.is_empty() {
            "no jobs".to_string()
        } else {
            newest.join(", ")
        }
    );
    Sample::judged(spec, Level::Ok, Some(age.as_secs_f64()), detail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::{ProbeSpec, Reading};

    fn spec(max_backup_age: Option<Duration>) -> (CheckSpec, Spec) {
        let p = Spec {
            host: "web-01".into(),
            storage: StorageSpec::Local {
                path: "/nonexistent".into(),
                prefix: "web-01".into(),
            },
            max_age: Duration::from_secs(300),
            max_backup_age,
        };
        let c = CheckSpec {
            name: "peer".into(),
            interval: Duration::from_secs(30),
            hold: Duration::ZERO,
            timeout: Duration::from_secs(10),
            probe: ProbeSpec::Peer(p.clone()),
        };
        (c, p)
    }

    fn level(s: &Sample) -> Level {
        match s.reading {
            Reading::Judged { level, .. } => level,
            _ => Level::Unknown,
        }
    }

    #[test]
    fn old_heartbeats_other_hosts_and_old_backups_are_crit() {
        let now = Utc::now();
        let mut pr = Presence {
            format: 1,
            host: "web-01".into(),
            written_at: now - chrono::Duration::seconds(20),
            worst: "OK".into(),
            jobs: vec![JobPresence {
                job: "main".into(),
                newest: Some(now - chrono::Duration::hours(30)),
            }],
        };
        let (c, p) = spec(None);
        let s = judge(&c, &p, &pr, now);
        assert_eq!(level(&s), Level::Ok, "{s:?}");
        assert!(
            s.detail.contains("heartbeat 20s ago") && s.detail.contains("main 1day 6h ago"),
            "{}",
            s.detail
        );
        let (c2, p2) = spec(Some(Duration::from_secs(26 * 3600)));
        let s = judge(&c2, &p2, &pr, now);
        assert_eq!(level(&s), Level::Crit);
        assert!(
            s.detail.contains("main's newest backup is 1day 6h old"),
            "{}",
            s.detail
        );
        pr.written_at = now - chrono::Duration::minutes(7);
        let s = judge(&c, &p, &pr, now);
        assert_eq!(level(&s), Level::Crit);
        assert!(
            s.detail
                .contains("web-01 last wrote its heartbeat 7m ago (max 5m)"),
            "{}",
            s.detail
        );
        pr.host = "web-02".into();
        assert!(judge(&c, &p, &pr, now)
            .detail
            .contains("names host `web-02`"));
    }
}
