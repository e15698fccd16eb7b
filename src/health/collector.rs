//! The collector of the health watch: applies the state machines (for, hysteresis, flapping)
//! to the samples the check tasks send, writes states, events and history to the catalog, and
//! logs the transitions. Failing writes are retried with the next round and logged rate-limited.

use super::history::{time_until_full, LOOKBACK};
use super::state::{EventKind, Level, Observation, Policy, Tracker};
use super::{HealthConfig, Reading, Sample};
use crate::catalog::{Catalog, CatalogError, CheckStateRow, EventRow};
use crate::log_throttle::{Repeated, Report};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long 1-minute points are kept before they are folded into hourly ones.
pub const KEEP_MINUTES: Duration = Duration::from_secs(2 * 86_400);
/// How long hourly points are kept.
pub const KEEP_HOURS: Duration = Duration::from_secs(90 * 86_400);

/// Host check kinds (their rows are kept while the host check is enabled).
const HOST_KINDS: &[&str] = &[
    "cpu",
    "load",
    "memory",
    "swap",
    "disk",
    "inodes",
    "disk-forecast",
];

/// Applies the state machines and writes to the catalog.
pub struct Collector {
    catalog: Arc<Catalog>,
    trackers: HashMap<String, Tracker>,
    full_within: Option<Duration>,
    /// Events a full or failing catalog did not take; stored with the next round's (the
    /// trackers moved on, so they would not be produced again and their alerts would be lost).
    pending: Vec<EventRow>,
    /// Repeated failures to store states and events (logged rate-limited).
    store_failures: Repeated,
    /// Repeated failures to store history points.
    history_failures: Repeated,
}

/// At most this many unstored events are kept for a later round (the oldest go first).
const MAX_PENDING: usize = 1000;

/// Logs a failure to store a round (rate-limited: see [`Repeated`]) and the recovery.
fn round_stored(gate: &mut Repeated, err: Option<&CatalogError>, pending: usize) {
    let now = Instant::now();
    let Some(e) = err else {
        if let Some((rounds, lasted)) = gate.succeeded(now) {
            let lasted = humantime::format_duration(Duration::from_secs(lasted.as_secs()));
            tracing::info!(failed_rounds = rounds, %lasted, "check states and events are stored again");
        }
        return;
    };
    match gate.failed(now) {
        Report::First => {
            tracing::error!(error = %e, pending_events = pending, "cannot store check states and events; the events are kept for the next round (while this lasts, it is logged every 10 minutes)")
        }
        Report::Again { skipped } => {
            tracing::error!(error = %e, pending_events = pending, rounds_not_logged = skipped, "cannot store check states and events, still; the events are kept for the next round")
        }
        Report::Quiet => {}
    }
}

/// Logs a failure to store history points (rate-limited) and the recovery.
fn history_stored(gate: &mut Repeated, err: Option<CatalogError>) {
    let now = Instant::now();
    let Some(e) = err else {
        if gate.succeeded(now).is_some() {
            tracing::info!("check history is stored again");
        }
        return;
    };
    match gate.failed(now) {
        Report::First => tracing::warn!(error = %e, "cannot store check history"),
        Report::Again { skipped } => {
            tracing::warn!(error = %e, rounds_not_logged = skipped, "cannot store check history, still")
        }
        Report::Quiet => {}
    }
}

/// The observation a sample makes for a check now in `current`.
pub fn observe(reading: &Reading, detail: &str, current: Level) -> Observation {
    let (level, value, threshold) = match reading {
        Reading::Value { value, limits } => {
            let (l, t) = limits.level(*value, current);
            (l, Some(*value), t)
        }
        Reading::Judged {
            level,
            value,
            threshold,
        } => (*level, *value, *threshold),
        Reading::Failed => (Level::Unknown, None, None),
    };
    Observation {
        level,
        value,
        threshold,
        detail: detail.to_string(),
    }
}

impl Collector {
    /// Loads the stored states.
    pub fn load(catalog: Arc<Catalog>) -> Collector {
        let trackers = match catalog.check_states() {
            Ok(rows) => rows
                .into_iter()
                .map(|r| (r.check, Tracker::new(Level::parse(&r.state), r.since)))
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read check states; starting from OK");
                HashMap::new()
            }
        };
        Collector {
            catalog,
            trackers,
            full_within: None,
            pending: Vec::new(),
            store_failures: Repeated::default(),
            history_failures: Repeated::default(),
        }
    }

    /// Forgets the checks a new configuration no longer has.
    pub fn configure(&mut self, cfg: &HealthConfig) {
        self.full_within = cfg.host.disk.as_ref().and_then(|d| d.full_within);
        let h = &cfg.host;
        let enabled = |kind: &str| match kind {
            "cpu" => h.cpu.is_some(),
            "load" => h.load.is_some(),
            "memory" => h.memory.is_some(),
            "swap" => h.swap.is_some(),
            "disk-forecast" => h.disk.as_ref().is_some_and(|d| d.full_within.is_some()),
            _ => h.disk.is_some(),
        };
        let Ok(rows) = self.catalog.check_states() else {
            return;
        };
        let keep: Vec<String> = rows
            .into_iter()
            .filter(|r| {
                if HOST_KINDS.contains(&r.kind.as_str()) {
                    enabled(&r.kind)
                } else {
                    cfg.checks.iter().any(|c| c.name == r.check)
                }
            })
            .map(|r| r.check)
            .collect();
        self.trackers.retain(|k, _| keep.contains(k));
        if let Err(e) = self.catalog.retain_checks(&keep) {
            tracing::warn!(error = %e, "cannot forget removed checks");
        }
    }

    /// Judges a batch of samples and stores the outcome.
    pub fn handle(&mut self, batch: Vec<Sample>, now: DateTime<Utc>) {
        let mut hist: Vec<(&str, DateTime<Utc>, f64)> = Vec::with_capacity(batch.len());
        for s in &batch {
            if let Reading::Value { value, .. }
            | Reading::Judged {
                value: Some(value), ..
            } = &s.reading
            {
                hist.push((&s.check, now, *value));
            }
        }
        // A round with nothing to write says nothing about whether the catalog can take one: an
        // empty transaction commits even on a full disk, and must not end a streak of failures.
        if !hist.is_empty() {
            let stored = self.catalog.add_samples(&hist);
            history_stored(&mut self.history_failures, stored.err());
        }
        let forecasts: Vec<Sample> = batch
            .iter()
            .filter(|s| s.kind == "disk" && !matches!(s.reading, Reading::Failed))
            .filter_map(|s| self.forecast(s, now))
            .collect();
        let mut states = Vec::with_capacity(batch.len());
        let mut events = std::mem::take(&mut self.pending);
        for s in batch.iter().chain(forecasts.iter()) {
            if !self.trackers.contains_key(&*s.check) {
                let fresh = Tracker::new(Level::Ok, now);
                self.trackers.insert(s.check.to_string(), fresh);
            }
            let tr = self.trackers.get_mut(&*s.check).expect("tracker just made");
            let obs = observe(&s.reading, &s.detail, tr.state);
            let policy = Policy {
                hold: chrono::Duration::from_std(s.hold).unwrap_or_default(),
                ..Policy::default()
            };
            if let Some(t) = tr.observe(&obs, now, &policy) {
                let (from, to) = match t.kind {
                    EventKind::Change => (t.from.as_str(), t.to.as_str()),
                    EventKind::FlapStart => (t.from.as_str(), "FLAPPING"),
                    EventKind::FlapStop => ("FLAPPING", t.to.as_str()),
                };
                log_event(&s.check, from, to, &t.detail);
                events.push(EventRow {
                    id: 0,
                    check: s.check.to_string(),
                    from_state: from.into(),
                    to_state: to.into(),
                    at: t.at,
                    since: t.since,
                    value: t.value,
                    threshold: t.threshold,
                    detail: t.detail,
                    delivered: false,
                });
            }
            states.push(CheckStateRow {
                check: s.check.to_string(),
                kind: s.kind.to_string(),
                state: tr.state.as_str().into(),
                since: tr.since,
                updated_at: now,
                value: obs.value,
                threshold: obs.threshold,
                detail: obs.detail,
                flapping: tr.flapping,
            });
        }
        if states.is_empty() && events.is_empty() {
            return; // nothing to store (all host checks off: the host loop sends empty batches)
        }
        let saved = self.catalog.save_check_round(&states, &events);
        round_stored(&mut self.store_failures, saved.as_ref().err(), events.len());
        if saved.is_err() {
            let excess = events.len().saturating_sub(MAX_PENDING);
            events.drain(..excess);
            self.pending = events;
        }
    }

    fn forecast(&self, s: &Sample, now: DateTime<Utc>) -> Option<Sample> {
        let within = self.full_within?;
        let since = now - chrono::Duration::from_std(LOOKBACK).ok()?;
        let points = self.catalog.history(&s.check, since).ok()?;
        let mount = s.check.strip_prefix("disk:")?;
        let eta = time_until_full(&points);
        let hours = eta.map(|d| d.as_secs_f64() / 3600.0);
        let (level, detail) = match eta {
            Some(d) if d < within => (
                Level::Warn,
                format!(
                    "{mount} will be full in about {} at the current rate",
                    humantime::format_duration(Duration::from_secs(d.as_secs() / 60 * 60))
                ),
            ),
            Some(d) => (
                Level::Ok,
                format!(
                    "{mount} full in about {} at the current rate",
                    humantime::format_duration(Duration::from_secs(d.as_secs() / 3600 * 3600))
                ),
            ),
            None => (Level::Ok, format!("{mount} is not filling up")),
        };
        Some(Sample {
            check: Arc::from(format!("disk-forecast:{mount}")),
            kind: "disk-forecast",
            reading: Reading::Judged {
                level,
                value: hours,
                threshold: Some(within.as_secs_f64() / 3600.0),
            },
            detail,
            hold: Duration::ZERO,
        })
    }

    /// Folds old history (hourly).
    pub fn downsample(&self, now: DateTime<Utc>) {
        let d = |x: Duration| chrono::Duration::from_std(x).unwrap_or_default();
        if let Err(e) = self
            .catalog
            .downsample_history(now, d(KEEP_MINUTES), d(KEEP_HOURS))
        {
            tracing::warn!(error = %e, "cannot downsample check history");
        }
    }
}

fn log_event(check: &str, from: &str, to: &str, detail: &str) {
    match to {
        "OK" => tracing::info!(check, from, to, detail, "check recovered"),
        _ => tracing::warn!(check, from, to, detail, "check changed state"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::state::Limits;

    fn sample(value: f64) -> Sample {
        Sample {
            check: Arc::from("api"),
            kind: "tcp",
            reading: Reading::Value {
                value,
                limits: Limits::above(80.0, 90.0),
            },
            detail: String::new(),
            hold: Duration::ZERO,
        }
    }

    /// Regression (a flaky `tests/faults/state_full.rs`): with the host checks off the host loop
    /// sends empty batches; on a full disk their empty transactions committed, ended the streak
    /// ("stored again") and the next failure was logged again as the first of a new one.
    #[test]
    fn an_empty_round_neither_ends_nor_extends_a_streak_of_failures() {
        let dir = tempfile::tempdir().unwrap();
        let cat = Arc::new(Catalog::open(&dir.path().join("catalog.sqlite")).unwrap());
        let mut col = Collector::load(cat.clone());
        let side = rusqlite::Connection::open(cat.path()).unwrap();
        let refuse = |table: &str, op: &str| {
            format!("CREATE TRIGGER refuse_{table}_{op} BEFORE {op} ON {table} BEGIN SELECT RAISE(ABORT, 'disk full'); END;")
        };
        for (t, op) in [
            ("check_state", "INSERT"),
            ("check_state", "UPDATE"),
            ("history_minute", "INSERT"),
        ] {
            side.execute_batch(&refuse(t, op)).unwrap();
        }
        let now = Utc::now();
        col.handle(vec![sample(1.0)], now);
        col.handle(Vec::new(), now);
        col.handle(vec![sample(2.0)], now);
        let later = Instant::now();
        let states = col.store_failures.succeeded(later).map(|(n, _)| n);
        assert_eq!(states, Some(2), "one streak of two failed rounds");
        let history = col.history_failures.succeeded(later).map(|(n, _)| n);
        assert_eq!(history, Some(2), "one streak of two failed history writes");
    }
}
