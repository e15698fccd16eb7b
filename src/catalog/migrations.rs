//! Schema migrations, keyed by `PRAGMA user_version`. Append only: never edit a shipped step.

use super::{Catalog, CatalogError};

/// Each entry moves the schema from version `i` to `i + 1`.
const STEPS: &[&str] = &[
    // 1: runs of jobs, snapshots (a cache of the manifests in storage).
    "CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        job TEXT NOT NULL,
        kind TEXT NOT NULL,
        trigger TEXT NOT NULL,
        started_at INTEGER NOT NULL,
        ended_at INTEGER,
        status TEXT NOT NULL,
        bytes INTEGER NOT NULL DEFAULT 0,
        error TEXT,
        pid INTEGER NOT NULL
    );
    CREATE INDEX runs_by_job ON runs(job, started_at);
    CREATE TABLE snapshots (
        id TEXT PRIMARY KEY,
        job TEXT NOT NULL,
        kind TEXT NOT NULL,
        host TEXT NOT NULL,
        item TEXT NOT NULL,
        started_at INTEGER NOT NULL,
        finished_at INTEGER NOT NULL,
        size INTEGER NOT NULL,
        stored_size INTEGER NOT NULL,
        manifest_key TEXT NOT NULL,
        manifest TEXT NOT NULL,
        run_id INTEGER
    );
    CREATE INDEX snapshots_by_job ON snapshots(host, job, item, started_at);",
    // 2: health watch: the current state of each check, state-change events (consumed by
    // alerting: `delivered`), and sample history (1-minute points, hourly aggregates).
    "CREATE TABLE check_state (
        check_name TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        state TEXT NOT NULL,
        since INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        value REAL,
        threshold REAL,
        detail TEXT NOT NULL DEFAULT '',
        flapping INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        check_name TEXT NOT NULL,
        from_state TEXT NOT NULL,
        to_state TEXT NOT NULL,
        at INTEGER NOT NULL,
        since INTEGER NOT NULL,
        value REAL,
        threshold REAL,
        detail TEXT NOT NULL DEFAULT '',
        delivered INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX events_undelivered ON events(delivered, id);
    CREATE TABLE history_minute (
        check_name TEXT NOT NULL,
        at INTEGER NOT NULL,
        sum REAL NOT NULL,
        n INTEGER NOT NULL,
        max REAL NOT NULL,
        PRIMARY KEY (check_name, at)
    ) WITHOUT ROWID;
    CREATE TABLE history_hour (
        check_name TEXT NOT NULL,
        at INTEGER NOT NULL,
        avg REAL NOT NULL,
        max REAL NOT NULL,
        n INTEGER NOT NULL,
        PRIMARY KEY (check_name, at)
    ) WITHOUT ROWID;",
    // 3: alerting: the state of every alert and what was last mailed about it (`alerts`), the
    // durable outbox of formatted mails (`outbox`, a row deleted only once the SMTP server
    // accepted it), silences, and which finished runs alerting has looked at (runs finished
    // before this step are history, not news).
    "CREATE TABLE alerts (
        key TEXT PRIMARY KEY,
        firing INTEGER NOT NULL,
        flapping INTEGER NOT NULL DEFAULT 0,
        severity TEXT NOT NULL,
        since INTEGER NOT NULL,
        changed_at INTEGER NOT NULL,
        value REAL,
        threshold REAL,
        detail TEXT NOT NULL DEFAULT '',
        notified TEXT NOT NULL DEFAULT '',
        notified_severity TEXT NOT NULL DEFAULT '',
        notified_at INTEGER,
        thread TEXT
    );
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY,
        message_id TEXT NOT NULL UNIQUE,
        subject TEXT NOT NULL,
        mail_from TEXT NOT NULL,
        rcpt_to TEXT NOT NULL,
        raw BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt INTEGER NOT NULL,
        last_error TEXT
    );
    CREATE TABLE silences (
        id INTEGER PRIMARY KEY,
        pattern TEXT NOT NULL,
        starts_at INTEGER NOT NULL,
        ends_at INTEGER NOT NULL,
        reason TEXT NOT NULL,
        created_by TEXT NOT NULL
    );
    ALTER TABLE runs ADD COLUMN alerted INTEGER NOT NULL DEFAULT 0;
    UPDATE runs SET alerted = 1 WHERE status != 'running';",
    // Heartbeat pings: the last outcome per target (the agent's heartbeat, each job's ping URL).
    "CREATE TABLE pings (
        target TEXT PRIMARY KEY,
        at INTEGER NOT NULL,
        kind TEXT NOT NULL,
        ok INTEGER NOT NULL,
        error TEXT,
        failures INTEGER NOT NULL DEFAULT 0,
        last_ok INTEGER
    );",
    // Webhooks share the outbox with mail: `channel` says who delivers a row (`email`, or
    // `webhook:<name>`); a webhook row's `raw` is the request body, sent with `content_type`
    // and `headers` (`Name: value` lines); mail rows keep the defaults.
    "ALTER TABLE outbox ADD COLUMN channel TEXT NOT NULL DEFAULT 'email';
    ALTER TABLE outbox ADD COLUMN content_type TEXT NOT NULL DEFAULT '';
    ALTER TABLE outbox ADD COLUMN headers TEXT NOT NULL DEFAULT '';
    CREATE INDEX outbox_by_channel ON outbox(channel, next_attempt);",
    // The digest (`[alerts] digest`): one row per scheduled slot sent (its time, `slot`, is
    // the key, so a slot is queued once however often the daemon restarts), with when it was
    // built and the snapshots' stored total then, the base of the next digest's growth.
    "CREATE TABLE digests (
        slot INTEGER PRIMARY KEY,
        sent_at INTEGER NOT NULL,
        snapshots INTEGER NOT NULL,
        stored_bytes INTEGER NOT NULL
    );",
    // The anomaly guard: a snapshot that shrank sharply against the previous one freezes its
    // job's retention until acknowledged (`acked_at`, `acked_by`: `opsagent ack JOB`);
    // `alerted` says whether alerting has seen the row's latest change (set again by an ack,
    // which resolves the alert).
    "CREATE TABLE anomalies (
        id INTEGER PRIMARY KEY,
        job TEXT NOT NULL,
        item TEXT NOT NULL,
        snapshot TEXT NOT NULL,
        detected_at INTEGER NOT NULL,
        detail TEXT NOT NULL,
        acked_at INTEGER,
        acked_by TEXT,
        alerted INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX anomalies_by_job ON anomalies(job, acked_at);",
    // 8: the binary log archive of each MySQL job with `binlog = true`: how far it is
    // committed (file, byte position) and the time of the newest event committed (the RPO).
    "CREATE TABLE binlog_progress (
        job TEXT PRIMARY KEY,
        file TEXT NOT NULL,
        pos INTEGER NOT NULL,
        last_event_at INTEGER,
        updated_at INTEGER NOT NULL,
        error TEXT
    );",
];

/// The schema version this build writes.
pub const CURRENT: i64 = STEPS.len() as i64;

pub(super) fn migrate(cat: &Catalog) -> Result<(), CatalogError> {
    let mut conn = cat.conn();
    // Each step runs in an IMMEDIATE transaction that re-reads the version inside it: a daemon
    // and a CLI verb opening a new catalog at the same moment take turns (the busy timeout
    // waits), and the second skips the steps the first applied (it failed with "table alerts
    // already exists" before).
    for (i, step) in STEPS.iter().enumerate() {
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| cat.q(e))?;
        let found: i64 = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| cat.q(e))?;
        if found > CURRENT {
            return Err(CatalogError::TooNew {
                path: cat.path.clone(),
                found,
                known: CURRENT,
            });
        }
        if found > i as i64 {
            continue;
        }
        tx.execute_batch(step).map_err(|e| cat.q(e))?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)
            .map_err(|e| cat.q(e))?;
        tx.commit().map_err(|e| cat.q(e))?;
    }
    Ok(())
}

#[cfg(test)]
mod race_tests {
    use super::*;

    #[test]
    fn processes_opening_a_new_catalog_at_once_all_succeed() {
        // Many rounds, each on a new file, the threads released together: the collision that
        // failed in CI (WAL switch answered "database is locked") is a matter of timing.
        for _ in 0..30 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("catalog.sqlite");
            let start = std::sync::Arc::new(std::sync::Barrier::new(8));
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let p = path.clone();
                    let start = start.clone();
                    std::thread::spawn(move || {
                        start.wait();
                        Catalog::open(&p).map(drop)
                    })
                })
                .collect();
            for h in handles {
                h.join().unwrap().unwrap();
            }
            let c = Catalog::open(&path).unwrap();
            let v: i64 = c
                .conn()
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .unwrap();
            assert_eq!(v, CURRENT);
        }
    }
}
