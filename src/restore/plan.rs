//! Which snapshot to restore: for each selected database, the newest snapshot at or before the
//! moment, found from the manifests in storage (so it works with an empty catalog, on a new
//! machine, and for another host's prefix).

use crate::config::Zone;
use crate::snapshot::keys::{manifests_prefix, parse_manifest_key, SnapshotKey};
use crate::snapshot::manifest::Manifest;
use crate::storage::{Storage, StorageError};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

/// Why no snapshot could be picked or read.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// Listing or reading manifests failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A manifest was rejected.
    #[error("{cause}")]
    Manifest {
        /// Why.
        cause: String,
    },
    /// A database asked for has no snapshot.
    #[error("no snapshot of database {} in storage{} (hint: `opsagent snapshots --refresh` lists what there is)", crate::quote::sql_ident(database), job_note(jobs))]
    NoSnapshotOf {
        /// The database.
        database: String,
        /// The jobs asked for.
        jobs: Vec<String>,
    },
    /// Nothing matches.
    #[error(
        "no snapshots in storage{} (hint: `opsagent snapshots --refresh` lists what there is)",
        job_note(jobs)
    )]
    NoSnapshots {
        /// The jobs asked for.
        jobs: Vec<String>,
    },
    /// Every snapshot is later than the moment.
    #[error(
        "no snapshot of {} (job `{job}`) at or before {at}; the oldest is {oldest} ({oldest_id})",
        crate::quote::sql_ident(database)
    )]
    TooEarly {
        /// The database.
        database: String,
        /// Its job.
        job: String,
        /// The moment, as shown.
        at: String,
        /// The oldest snapshot's time, as shown.
        oldest: String,
        /// The oldest snapshot.
        oldest_id: String,
    },
}

/// A snapshot and its time.
type Timed = (DateTime<Utc>, SnapshotKey);

/// What to restore.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only these jobs (all when empty).
    pub jobs: Vec<String>,
    /// Only these databases (all when empty).
    pub databases: Vec<String>,
}

/// A snapshot picked for restore, with its manifest.
#[derive(Debug, Clone)]
pub struct Chosen {
    /// Its key parts.
    pub key: SnapshotKey,
    /// When it was taken.
    pub time: DateTime<Utc>,
    /// Its manifest.
    pub manifest: Manifest,
}

/// Lists every snapshot in storage as (time, key), oldest first.
pub async fn all_snapshots(storage: &Storage) -> Result<Vec<Timed>, PlanError> {
    let listed = storage.list(&manifests_prefix(None)).await?;
    let mut v: Vec<_> = listed
        .iter()
        .filter_map(|o| parse_manifest_key(&o.key))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.id.cmp(&b.1.id)));
    Ok(v)
}

/// Picks, per (job, database) matching `filter`, the newest snapshot at or before `at`.
/// Errors name what is missing: no snapshot at all, or none early enough (with the oldest one).
pub fn choose(
    snapshots: &[(DateTime<Utc>, SnapshotKey)],
    filter: &Filter,
    at: DateTime<Utc>,
    zone: Zone,
) -> Result<Vec<Timed>, PlanError> {
    let mut series: BTreeMap<(String, String), Vec<&Timed>> = BTreeMap::new();
    for s in snapshots {
        let job_ok = filter.jobs.is_empty() || filter.jobs.contains(&s.1.job);
        let db_ok = filter.databases.is_empty() || filter.databases.contains(&s.1.item);
        if job_ok && db_ok {
            series
                .entry((s.1.job.clone(), s.1.item.clone()))
                .or_default()
                .push(s);
        }
    }
    for db in &filter.databases {
        if !series.keys().any(|(_, d)| d == db) {
            return Err(PlanError::NoSnapshotOf {
                database: db.clone(),
                jobs: filter.jobs.clone(),
            });
        }
    }
    if series.is_empty() {
        return Err(PlanError::NoSnapshots {
            jobs: filter.jobs.clone(),
        });
    }
    let mut out = Vec::new();
    for ((job, db), list) in series {
        match list.iter().rev().find(|s| s.0 <= at) {
            Some(s) => out.push((*s).clone()),
            None => {
                let oldest = list[0];
                return Err(PlanError::TooEarly {
                    database: db,
                    job,
                    at: zone.format(at, "%Y-%m-%d %H:%M:%S %Z"),
                    oldest: zone.format(oldest.0, "%Y-%m-%d %H:%M:%S %Z"),
                    oldest_id: oldest.1.id.clone(),
                });
            }
        }
    }
    Ok(out)
}

fn job_note(jobs: &[String]) -> String {
    if jobs.is_empty() {
        String::new()
    } else {
        format!(" for job {}", jobs.join(", "))
    }
}

/// Snapshot ids have whole seconds: of snapshots of one series taken in the same second as a
/// chosen one, the one that started last (its manifest says, to the millisecond) is chosen.
pub async fn break_ties(
    storage: &Storage,
    all: &[Timed],
    chosen: Vec<Timed>,
) -> Result<Vec<Timed>, PlanError> {
    let mut out = Vec::new();
    for (time, key) in chosen {
        let ties: Vec<&Timed> = (all.iter())
            .filter(|(t, k)| *t == time && k.job == key.job && k.item == key.item)
            .collect();
        let mut best: Option<(DateTime<Utc>, DateTime<Utc>, &Timed)> = None;
        for tied in ties.iter().filter(|_| ties.len() > 1) {
            let bytes = storage
                .get_bytes_max(&tied.1.key, crate::media::limits::MAX_MANIFEST)
                .await?;
            // A manifest that does not read cannot be restored anyway: not a candidate.
            let Ok(m) = Manifest::parse(&tied.1.key, &bytes) else {
                continue;
            };
            if best.is_none_or(|(s, f, _)| (m.started_at, m.finished_at) > (s, f)) {
                best = Some((m.started_at, m.finished_at, tied));
            }
        }
        out.push(best.map_or((time, key), |(_, _, t)| (*t).clone()));
    }
    Ok(out)
}

/// Reads the manifests of the chosen snapshots.
pub async fn load(storage: &Storage, chosen: Vec<Timed>) -> Result<Vec<Chosen>, PlanError> {
    let mut out = Vec::new();
    for (time, key) in chosen {
        let bytes = storage
            .get_bytes_max(&key.key, crate::media::limits::MAX_MANIFEST)
            .await?;
        let manifest = Manifest::parse(&key.key, &bytes).map_err(|e| PlanError::Manifest {
            cause: e.to_string(),
        })?;
        out.push(Chosen {
            key,
            time,
            manifest,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn snap(day: u32, hour: u32, job: &str, db: &str) -> (DateTime<Utc>, SnapshotKey) {
        let t = Utc.with_ymd_and_hms(2026, 11, day, hour, 0, 0).unwrap();
        let id = format!("{}-00000000", t.format("%Y%m%dT%H%M%SZ"));
        (
            t,
            SnapshotKey {
                job: job.into(),
                item: db.into(),
                key: format!("snapshots/{job}/{db}/{id}.json"),
                id,
            },
        )
    }

    #[test]
    fn newest_at_or_before_per_database() {
        let all = vec![
            snap(20, 2, "main", "shop"),
            snap(21, 2, "main", "shop"),
            snap(22, 2, "main", "shop"),
            snap(21, 3, "main", "crm"),
        ];
        let utc = Zone::Named(chrono_tz::UTC);
        let at = Utc.with_ymd_and_hms(2026, 11, 21, 23, 59, 59).unwrap();
        let got = choose(&all, &Filter::default(), at, utc).unwrap();
        let ids: Vec<_> = got
            .iter()
            .map(|(t, k)| (k.item.as_str(), t.format("%d %H").to_string()))
            .collect();
        assert_eq!(
            ids,
            vec![("crm", "21 03".to_string()), ("shop", "21 02".to_string())]
        );
        let only = Filter {
            databases: vec!["shop".into()],
            ..Default::default()
        };
        assert_eq!(choose(&all, &only, at, utc).unwrap().len(), 1);
        // Too early: names the oldest snapshot.
        let early = Utc.with_ymd_and_hms(2026, 11, 19, 0, 0, 0).unwrap();
        let e = choose(&all, &only, early, utc).unwrap_err().to_string();
        assert!(e.contains("the oldest is 2026-11-20 02:00:00"), "{e}");
        let e = choose(
            &all,
            &Filter {
                databases: vec!["nope".into()],
                ..Default::default()
            },
            at,
            utc,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("no snapshot of database `nope`"), "{e}");
        let e = choose(
            &all,
            &Filter {
                jobs: vec!["x".into()],
                ..Default::default()
            },
            at,
            utc,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("for job x"), "{e}");
    }

    #[test]
    fn media_snapshots_are_one_series_per_job() {
        let all = vec![
            snap(20, 2, "main", "shop"),
            snap(20, 3, "uploads", "files"),
            snap(21, 3, "uploads", "files"),
        ];
        let utc = Zone::Named(chrono_tz::UTC);
        let at = Utc.with_ymd_and_hms(2026, 11, 20, 23, 0, 0).unwrap();
        let only = Filter {
            jobs: vec!["uploads".into()],
            ..Default::default()
        };
        let got = choose(&all, &only, at, utc).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(
            (got[0].1.item.as_str(), got[0].0.format("%d %H").to_string()),
            ("files", "20 03".into())
        );
        assert_eq!(choose(&all, &Filter::default(), at, utc).unwrap().len(), 2);
    }
}
