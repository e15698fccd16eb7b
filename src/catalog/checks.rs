//! Health watch tables: the current state of every check (`check_state`), state-change
//! `events` (with a `delivered` flag for alerting), and sample history downsampled from 1-minute
//! points (`history_minute`) to hourly aggregates (`history_hour`).

use super::{from_millis, to_millis, Catalog, CatalogError};
use chrono::{DateTime, Duration, Utc};
use rusqlite::params;

/// One row of `check_state`.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckStateRow {
    /// Check name (`cpu`, `disk:/var`, `tcp:shop`).
    pub check: String,
    /// Check kind (`cpu`, `disk`, `tcp`, …).
    pub kind: String,
    /// `OK`, `WARN`, `CRIT` or `UNKNOWN`.
    pub state: String,
    /// In that state since.
    pub since: DateTime<Utc>,
    /// Last sample.
    pub updated_at: DateTime<Utc>,
    /// Last value.
    pub value: Option<f64>,
    /// Threshold it was compared with.
    pub threshold: Option<f64>,
    /// Last detail.
    pub detail: String,
    /// Whether the check is flapping.
    pub flapping: bool,
}

/// One row of `events`.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    /// Row id (0 before insertion).
    pub id: i64,
    /// Check name.
    pub check: String,
    /// State before (`OK`…).
    pub from_state: String,
    /// State after (`OK`…, or `FLAPPING`).
    pub to_state: String,
    /// When it changed.
    pub at: DateTime<Utc>,
    /// Since when the condition held.
    pub since: DateTime<Utc>,
    /// The value that decided it.
    pub value: Option<f64>,
    /// The threshold crossed.
    pub threshold: Option<f64>,
    /// Detail for the operator.
    pub detail: String,
    /// Whether alerting has sent it.
    pub delivered: bool,
}

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 3_600_000;

impl Catalog {
    /// Every check's stored state, by name.
    pub fn check_states(&self) -> Result<Vec<CheckStateRow>, CatalogError> {
        let conn = self.conn();
        let mut st = conn
            .prepare_cached("SELECT check_name, kind, state, since, updated_at, value, threshold, detail, flapping FROM check_state ORDER BY check_name")
            .map_err(|e| self.q(e))?;
        let rows = st
            .query_map([], |r| {
                Ok(CheckStateRow {
                    check: r.get(0)?,
                    kind: r.get(1)?,
                    state: r.get(2)?,
                    since: from_millis(r.get(3)?),
                    updated_at: from_millis(r.get(4)?),
                    value: r.get(5)?,
                    threshold: r.get(6)?,
                    detail: r.get(7)?,
                    flapping: r.get::<_, i64>(8)? != 0,
                })
            })
            .map_err(|e| self.q(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.q(e))
    }

    /// Stores the states and new events of one round of checks in one transaction.
    pub fn save_check_round(
        &self,
        states: &[CheckStateRow],
        events: &[EventRow],
    ) -> Result<(), CatalogError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.q(e))?;
        {
            let mut upsert = tx
                .prepare_cached(
                    "INSERT INTO check_state (check_name, kind, state, since, updated_at, value, threshold, detail, flapping)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                     ON CONFLICT(check_name) DO UPDATE SET kind = ?2, state = ?3, since = ?4, updated_at = ?5,
                       value = ?6, threshold = ?7, detail = ?8, flapping = ?9",
                )
                .map_err(|e| self.q(e))?;
            for s in states {
                upsert
                    .execute(params![
                        s.check,
                        s.kind,
                        s.state,
                        to_millis(s.since),
                        to_millis(s.updated_at),
                        s.value,
                        s.threshold,
                        s.detail,
                        s.flapping as i64
                    ])
                    .map_err(|e| self.q(e))?;
            }
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO events (check_name, from_state, to_state, at, since, value, threshold, detail, delivered)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 0)",
                )
                .map_err(|e| self.q(e))?;
            for e in events {
                insert
                    .execute(params![
                        e.check,
                        e.from_state,
                        e.to_state,
                        to_millis(e.at),
                        to_millis(e.since),
                        e.value,
                        e.threshold,
                        e.detail
                    ])
                    .map_err(|e| self.q(e))?;
            }
        }
        tx.commit().map_err(|e| self.q(e))
    }

    /// Forgets the state of checks that are no longer configured.
    pub fn retain_checks(&self, names: &[String]) -> Result<usize, CatalogError> {
        let conn = self.conn();
        let stored: Vec<String> = {
            let mut st = conn
                .prepare("SELECT check_name FROM check_state")
                .map_err(|e| self.q(e))?;
            let v = st
                .query_map([], |r| r.get(0))
                .map_err(|e| self.q(e))?
                .collect::<Result<_, _>>()
                .map_err(|e| self.q(e))?;
            v
        };
        let mut n = 0;
        for s in stored.iter().filter(|s| !names.contains(s)) {
            n += conn
                .execute("DELETE FROM check_state WHERE check_name = ?1", params![s])
                .map_err(|e| self.q(e))?;
        }
        Ok(n)
    }

    /// Events, newest first; only undelivered ones when `undelivered`.
    pub fn events(&self, undelivered: bool, limit: usize) -> Result<Vec<EventRow>, CatalogError> {
        self.event_rows(
            "(?1 = 0 OR delivered = 0) ORDER BY id DESC LIMIT ?2",
            params![undelivered as i64, limit as i64],
        )
    }

    /// The events of changes after `after` and at or before `until`, oldest first (the
    /// digest's "checks that changed").
    pub fn events_between(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<EventRow>, CatalogError> {
        self.event_rows(
            "at > ?1 AND at <= ?2 ORDER BY at, id",
            params![to_millis(after), to_millis(until)],
        )
    }

    fn event_rows(
        &self,
        filter: &str,
        args: impl rusqlite::Params,
    ) -> Result<Vec<EventRow>, CatalogError> {
        let conn = self.conn();
        let mut st = conn
            .prepare_cached(&format!("SELECT id, check_name, from_state, to_state, at, since, value, threshold, detail, delivered FROM events WHERE {filter}"))
            .map_err(|e| self.q(e))?;
        let rows = st
            .query_map(args, |r| {
                Ok(EventRow {
                    id: r.get(0)?,
                    check: r.get(1)?,
                    from_state: r.get(2)?,
                    to_state: r.get(3)?,
                    at: from_millis(r.get(4)?),
                    since: from_millis(r.get(5)?),
                    value: r.get(6)?,
                    threshold: r.get(7)?,
                    detail: r.get(8)?,
                    delivered: r.get::<_, i64>(9)? != 0,
                })
            })
            .map_err(|e| self.q(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.q(e))
    }

    /// Marks an event as sent by alerting.
    pub fn mark_event_delivered(&self, id: i64) -> Result<(), CatalogError> {
        self.conn()
            .execute("UPDATE events SET delivered = 1 WHERE id = ?1", params![id])
            .map_err(|e| self.q(e))?;
        Ok(())
    }

    /// Adds samples to their 1-minute points (several samples in a minute are averaged).
    pub fn add_samples(&self, samples: &[(&str, DateTime<Utc>, f64)]) -> Result<(), CatalogError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.q(e))?;
        {
            let mut st = tx
                .prepare_cached(
                    "INSERT INTO history_minute (check_name, at, sum, n, max) VALUES (?1, ?2, ?3, 1, ?3)
                     ON CONFLICT(check_name, at) DO UPDATE SET sum = sum + ?3, n = n + 1, max = max(max, ?3)",
                )
                .map_err(|e| self.q(e))?;
            for (check, at, v) in samples {
                let minute = to_millis(*at).div_euclid(MINUTE_MS) * MINUTE_MS;
                st.execute(params![check, minute, v])
                    .map_err(|e| self.q(e))?;
            }
        }
        tx.commit().map_err(|e| self.q(e))
    }

    /// The 1-minute averages of `check` since `since`, oldest first.
    pub fn history(
        &self,
        check: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<(DateTime<Utc>, f64)>, CatalogError> {
        let conn = self.conn();
        let mut st = conn
            .prepare_cached("SELECT at, sum / n FROM history_minute WHERE check_name = ?1 AND at >= ?2 ORDER BY at")
            .map_err(|e| self.q(e))?;
        let rows = st
            .query_map(params![check, to_millis(since)], |r| {
                Ok((from_millis(r.get(0)?), r.get(1)?))
            })
            .map_err(|e| self.q(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.q(e))
    }

    /// Folds minute points older than `minutes` into hourly aggregates and drops hourly ones
    /// older than `hours`: the history stays bounded. Returns the minute rows folded.
    pub fn downsample_history(
        &self,
        now: DateTime<Utc>,
        minutes: Duration,
        hours: Duration,
    ) -> Result<usize, CatalogError> {
        let cut = (to_millis(now - minutes)).div_euclid(HOUR_MS) * HOUR_MS;
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.q(e))?;
        tx.execute(
            "INSERT INTO history_hour (check_name, at, avg, max, n)
             SELECT check_name, (at / ?2) * ?2, sum(sum) / sum(n), max(max), sum(n)
             FROM history_minute WHERE at < ?1 GROUP BY check_name, (at / ?2) * ?2
             ON CONFLICT(check_name, at) DO UPDATE SET
               avg = (avg * n + excluded.avg * excluded.n) / (n + excluded.n),
               max = max(max, excluded.max), n = n + excluded.n",
            params![cut, HOUR_MS],
        )
        .map_err(|e| self.q(e))?;
        let folded = tx
            .execute("DELETE FROM history_minute WHERE at < ?1", params![cut])
            .map_err(|e| self.q(e))?;
        tx.execute(
            "DELETE FROM history_hour WHERE at < ?1",
            params![to_millis(now - hours)],
        )
        .map_err(|e| self.q(e))?;
        tx.commit().map_err(|e| self.q(e))?;
        Ok(folded)
    }

    /// Hourly aggregates of `check` (time, average, maximum), oldest first.
    pub fn history_hourly(
        &self,
        check: &str,
    ) -> Result<Vec<(DateTime<Utc>, f64, f64)>, CatalogError> {
        let conn = self.conn();
        let mut st = conn
            .prepare("SELECT at, avg, max FROM history_hour WHERE check_name = ?1 ORDER BY at")
            .map_err(|e| self.q(e))?;
        let rows = st
            .query_map(params![check], |r| {
                Ok((from_millis(r.get(0)?), r.get(1)?, r.get(2)?))
            })
            .map_err(|e| self.q(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.q(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn cat() -> (tempfile::TempDir, Catalog) {
        let dir = tempfile::tempdir().unwrap();
        let c = Catalog::open(&dir.path().join("c.sqlite")).unwrap();
        (dir, c)
    }

    #[test]
    fn states_and_events_round_trip() {
        let (_d, c) = cat();
        let t = Utc.with_ymd_and_hms(2026, 11, 20, 3, 0, 0).unwrap();
        let s = CheckStateRow {
            check: "cpu".into(),
            kind: "cpu".into(),
            state: "CRIT".into(),
            since: t,
            updated_at: t,
            value: Some(97.5),
            threshold: Some(90.0),
            detail: "top: php-fpm 80%".into(),
            flapping: false,
        };
        let e = EventRow {
            id: 0,
            check: "cpu".into(),
            from_state: "OK".into(),
            to_state: "CRIT".into(),
            at: t,
            since: t,
            value: Some(97.5),
            threshold: Some(90.0),
            detail: "top".into(),
            delivered: false,
        };
        c.save_check_round(std::slice::from_ref(&s), &[e]).unwrap();
        c.save_check_round(std::slice::from_ref(&s), &[]).unwrap();
        assert_eq!(c.check_states().unwrap(), vec![s]);
        let ev = c.events(true, 10).unwrap();
        assert_eq!(ev.len(), 1);
        c.mark_event_delivered(ev[0].id).unwrap();
        assert!(c.events(true, 10).unwrap().is_empty());
        assert_eq!(c.retain_checks(&["disk:/".into()]).unwrap(), 1);
        assert!(c.check_states().unwrap().is_empty());
    }

    #[test]
    fn history_is_averaged_per_minute_and_downsampled() {
        let (_d, c) = cat();
        let t0 = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
        // Three days of one sample every 30 s: 2 per minute.
        let mut samples = Vec::new();
        for i in 0..(3 * 24 * 120) {
            samples.push(("cpu", t0 + Duration::seconds(30 * i), (i % 2) as f64 * 10.0));
        }
        c.add_samples(&samples).unwrap();
        let now = t0 + Duration::days(3);
        let pts = c.history("cpu", now - Duration::hours(1)).unwrap();
        assert_eq!(pts.len(), 60);
        assert!(pts.iter().all(|(_, v)| (*v - 5.0).abs() < 1e-9));
        let folded = c
            .downsample_history(now, Duration::days(2), Duration::days(90))
            .unwrap();
        assert_eq!(folded, 24 * 60);
        let hours = c.history_hourly("cpu").unwrap();
        assert_eq!(hours.len(), 24);
        assert_eq!((hours[0].1, hours[0].2), (5.0, 10.0));
        // 91 days later everything hourly is gone too.
        c.downsample_history(
            now + Duration::days(91),
            Duration::days(2),
            Duration::days(90),
        )
        .unwrap();
        assert!(c.history_hourly("cpu").unwrap().is_empty());
    }
}
