//! The `status --json` document (also `/api/status` of the status page).

use super::{JobLine, Report};
use crate::catalog::RunRecord;
use chrono::{DateTime, Utc};

/// A job's binary log archive in `--json` (`null` without one).
fn binlog_json(j: &JobLine, now: DateTime<Utc>) -> serde_json::Value {
    match &j.binlog {
        None => serde_json::Value::Null,
        Some(b) => {
            serde_json::json!({"file": b.file, "pos": b.pos, "last_event_at": b.last_event_at.map(|t| t.to_rfc3339()), "archived_up_to": b.updated_at.to_rfc3339(), "data_at_risk_seconds": (now - b.updated_at).num_seconds(), "error": b.error})
        }
    }
}

fn run_json(r: Option<&RunRecord>, now: DateTime<Utc>) -> serde_json::Value {
    match r {
        None => serde_json::Value::Null,
        Some(r) => {
            let at = r.ended_at.unwrap_or(r.started_at);
            serde_json::json!({"at": at.to_rfc3339(), "status": r.status.as_str(), "age_seconds": (now - at).num_seconds(), "error": r.error})
        }
    }
}

/// A job's open anomalies (`null` when its retention is not frozen).
fn frozen_json(j: &JobLine) -> serde_json::Value {
    if j.frozen.is_empty() {
        return serde_json::Value::Null;
    }
    let anomalies: Vec<_> = j
        .frozen
        .iter()
        .map(|a| serde_json::json!({"item": a.item, "snapshot": a.snapshot, "detected_at": a.detected_at.to_rfc3339(), "detail": a.detail}))
        .collect();
    serde_json::json!({"anomalies": anomalies, "command": format!("opsagent ack {}", j.job)})
}

/// The `--json` document.
pub fn to_json(r: &Report, now: DateTime<Utc>) -> serde_json::Value {
    let checks: Vec<_> = r
        .checks
        .iter()
        .map(|c| {
            serde_json::json!({
                "name": c.row.check, "kind": c.row.kind, "state": c.shown(),
                "since": c.row.since.to_rfc3339(), "updated_at": c.row.updated_at.to_rfc3339(),
                "value": c.row.value, "threshold": c.row.threshold, "detail": c.row.detail,
                "flapping": c.row.flapping, "caused_by": r.causes.get(&c.row.check),
            })
        })
        .collect();
    let jobs: Vec<_> = r
        .jobs
        .iter()
        .map(|j| serde_json::json!({"job": j.job, "last_backup": run_json(j.last_backup.as_ref(), now), "last_good_backup": run_json(j.last_good.as_ref(), now), "last_drill": run_json(j.last_drill.as_ref(), now), "frozen": frozen_json(j), "binlog": binlog_json(j, now)}))
        .collect();
    let status = ["OK", "WARN", "CRIT"][r.exit_code() as usize];
    let alerts: Vec<_> = r
        .alerts
        .iter()
        .map(|a| serde_json::json!({"key": a.row.key, "firing": a.row.firing, "flapping": a.row.flapping, "severity": a.row.severity, "since": a.row.since.to_rfc3339(), "notified": a.row.notified, "muted": a.muted}))
        .collect();
    let silences: Vec<_> = r
        .silences
        .iter()
        .map(|s| serde_json::json!({"id": s.id, "check": s.pattern, "until": s.ends_at.to_rfc3339(), "by": s.created_by, "reason": s.reason}))
        .collect();
    let pings: Vec<_> = r
        .pings
        .iter()
        .map(|p| serde_json::json!({"target": p.target, "kind": p.kind, "ok": p.ok, "at": p.at.to_rfc3339(), "error": p.error, "failures": p.failures, "last_ok": p.last_ok.map(|t| t.to_rfc3339())}))
        .collect();
    let outbox: Vec<_> = r
        .outbox
        .iter()
        .map(|m| serde_json::json!({"channel": m.channel, "subject": m.subject, "message_id": m.message_id, "to": m.rcpt_to, "attempts": m.attempts, "refused": m.given_up(), "last_error": m.last_error}))
        .collect();
    serde_json::json!({"host": r.host, "status": status, "exit_code": r.exit_code(), "checks": checks, "jobs": jobs, "pending_events": r.pending_events, "alerts": alerts, "silences": silences, "outbox": outbox, "pings": pings})
}
