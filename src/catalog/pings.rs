//! The last heartbeat ping per target (`pings`), for `opsagent status`.

use super::{from_millis, to_millis, Catalog, CatalogError};
use chrono::{DateTime, Utc};
use rusqlite::params;

/// The last ping to one target.
#[derive(Debug, Clone, PartialEq)]
pub struct PingRow {
    /// Where, without its secret part (`https://hc-ping.com/…`, `job main`).
    pub target: String,
    /// When the last attempt was made.
    pub at: DateTime<Utc>,
    /// What was sent: `ok`, `fail`, `start`.
    pub kind: String,
    /// Whether it was delivered.
    pub ok: bool,
    /// Why not.
    pub error: Option<String>,
    /// Failed attempts in a row.
    pub failures: u32,
    /// The last delivered ping.
    pub last_ok: Option<DateTime<Utc>>,
}

impl Catalog {
    /// Records an attempt to ping `target`.
    pub fn record_ping(
        &self,
        target: &str,
        at: DateTime<Utc>,
        kind: &str,
        error: Option<&str>,
    ) -> Result<(), CatalogError> {
        let ok = error.is_none();
        self.conn()
            .execute(
                "INSERT INTO pings (target, at, kind, ok, error, failures, last_ok)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT(target) DO UPDATE SET at = ?2, kind = ?3, ok = ?4, error = ?5,
                   failures = CASE WHEN ?4 THEN 0 ELSE failures + 1 END,
                   last_ok = CASE WHEN ?4 THEN ?2 ELSE last_ok END",
                params![
                    target,
                    to_millis(at),
                    kind,
                    ok,
                    error,
                    u32::from(!ok),
                    ok.then(|| to_millis(at)),
                ],
            )
            .map_err(|e| self.q(e))?;
        Ok(())
    }

    /// Every target's last ping, by target.
    pub fn pings(&self) -> Result<Vec<PingRow>, CatalogError> {
        let conn = self.conn();
        let mut st = conn
            .prepare(
                "SELECT target, at, kind, ok, error, failures, last_ok FROM pings ORDER BY target",
            )
            .map_err(|e| self.q(e))?;
        let rows = st
            .query_map([], |r| {
                Ok(PingRow {
                    target: r.get(0)?,
                    at: from_millis(r.get(1)?),
                    kind: r.get(2)?,
                    ok: r.get(3)?,
                    error: r.get(4)?,
                    failures: r.get(5)?,
                    last_ok: r.get::<_, Option<i64>>(6)?.map(from_millis),
                })
            })
            .map_err(|e| self.q(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.q(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_count_up_and_reset_on_success() {
        let dir = tempfile::tempdir().unwrap();
        let c = Catalog::open(&dir.path().join("c.sqlite")).unwrap();
        let t = |s: i64| DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap();
        c.record_ping("hc", t(0), "ok", None).unwrap();
        c.record_ping("hc", t(60), "ok", Some("refused")).unwrap();
        c.record_ping("hc", t(70), "ok", Some("refused")).unwrap();
        let p = &c.pings().unwrap()[0];
        assert_eq!((p.ok, p.failures, p.last_ok), (false, 2, Some(t(0))));
        assert_eq!(p.error.as_deref(), Some("refused"));
        c.record_ping("hc", t(80), "fail", None).unwrap();
        let p = &c.pings().unwrap()[0];
        assert_eq!((p.ok, p.failures, p.last_ok), (true, 0, Some(t(80))));
        assert_eq!(p.kind, "fail");
    }
}
