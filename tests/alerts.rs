//! Alert routing against the real SMTP capture server: firing → one mail, a reminder after
//! repeat_interval, one RESOLVED; three alerts together → one grouped mail; a flapping check
//! over ten minutes → the first FIRING and one FLAPPING notice; a silenced check sends nothing
//! and is listed by `status`. The engine runs in-process on simulated time (default intervals);
//! mails go through the outbox and the real SMTP client.

mod common;

use chrono::{DateTime, Duration, Utc};
use common::alert_env::AlertEnv;
use opsagent::catalog::{EventRow, RunStatus};
use std::process::Command;

fn env(alerts: &str) -> AlertEnv {
    let extra = format!(
        "[[mysql]]\nname = \"main\"\ndatabases = [\"shop\"]\nport = 1\nschedule = \"30 2 * * *\"\n\
         [alerts]\n{alerts}\n"
    );
    AlertEnv::new("oncall", &extra)
}

/// What these tests add to the shared bench.
trait Env {
    fn event(&self, check: &str, from: &str, to: &str, at: DateTime<Utc>);
    fn cli(&self, args: &[&str]) -> (i32, String);
}

impl Env for AlertEnv {
    fn event(&self, check: &str, from: &str, to: &str, at: DateTime<Utc>) {
        let e = EventRow {
            id: 0,
            check: check.into(),
            from_state: from.into(),
            to_state: to.into(),
            at,
            since: at,
            value: Some(93.4),
            threshold: Some(90.0),
            detail: format!("{check}: biggest directories: /srv/www 40.1 GiB"),
            delivered: false,
        };
        self.cat.save_check_round(&[], &[e]).unwrap();
    }

    fn cli(&self, args: &[&str]) -> (i32, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_opsagent"))
            .arg("--config")
            .arg(&self.file)
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.code().unwrap_or(-1), text)
    }
}

/// The value of header `name` (continuation lines unfolded).
fn header(raw: &str, name: &str) -> Option<String> {
    let head = raw.split("\r\n\r\n").next().unwrap_or(raw);
    let mut lines = head.split("\r\n").peekable();
    while let Some(l) = lines.next() {
        if let Some((n, v)) = l.split_once(':') {
            if n.eq_ignore_ascii_case(name) {
                let mut v = v.trim().to_string();
                while lines.peek().is_some_and(|c| c.starts_with([' ', '\t'])) {
                    v.push(' ');
                    v.push_str(lines.next().unwrap().trim());
                }
                return Some(v);
            }
        }
    }
    None
}

fn subject(raw: &str) -> String {
    header(raw, "Subject").unwrap()
}

fn secs(s: i64) -> Duration {
    Duration::seconds(s)
}

#[test]
fn firing_then_one_reminder_then_resolved_with_headers_and_threading() {
    let e = env("");
    let t0 = Utc::now() - Duration::days(1);
    e.event("disk:/", "OK", "CRIT", t0);
    assert_eq!(e.tick(t0), None, "group_wait holds the first mail");
    assert_eq!(e.tick(t0 + secs(29)), None);
    let s = e.tick(t0 + secs(30)).unwrap();
    assert_eq!(s, "[opsagent] FIRING CRIT disk / on web-01");
    let m = e.deliver(1);
    assert_eq!(m.len(), 1);
    let first = &m[0];
    assert_eq!(subject(first), s);
    let id = header(first, "Message-ID").unwrap();
    assert!(
        id.starts_with('<') && id.ends_with("@web-01.example.com>"),
        "{id}"
    );
    assert_eq!(
        header(first, "Auto-Submitted").as_deref(),
        Some("auto-generated")
    );
    assert!(header(first, "Date").is_some());
    assert!(header(first, "In-Reply-To").is_none());
    assert!(header(first, "Content-Type")
        .unwrap()
        .contains("multipart/alternative"));
    for part in [
        "text/plain",
        "text/html",
        "93.4 (threshold 90)",
        "/srv/www 40.1 GiB",
        "opsagent status",
        "silence add disk:/",
    ] {
        assert!(first.contains(part), "{part} missing:\n{first}");
    }
    // Still firing: nothing until repeat_interval (4h), then one reminder in the thread.
    assert_eq!(e.tick(t0 + secs(3600)), None);
    let r = e.tick(t0 + secs(30 + 4 * 3600)).unwrap();
    assert!(
        r.starts_with("[opsagent] FIRING CRIT disk / on web-01"),
        "{r}"
    );
    assert_eq!(e.tick(t0 + secs(31 + 4 * 3600)), None);
    let m = e.deliver(2);
    assert_eq!(header(&m[1], "In-Reply-To"), Some(id.clone()));
    // Resolved: one RESOLVED mail once it stayed fine for group_interval (5m).
    e.event("disk:/", "CRIT", "OK", t0 + secs(5 * 3600));
    assert_eq!(e.tick(t0 + secs(5 * 3600 + 60)), None);
    let s = e.tick(t0 + secs(5 * 3600 + 300)).unwrap();
    assert_eq!(s, "[opsagent] RESOLVED disk / on web-01");
    let m = e.deliver(3);
    assert_eq!(header(&m[2], "References"), Some(id));
    assert_eq!(e.tick(t0 + secs(9 * 3600)), None, "nothing after resolved");
    assert_eq!(m.len(), 3);
}

#[test]
fn three_failing_together_make_one_grouped_mail_with_the_backup_error() {
    let e = env("");
    let t0 = Utc::now() - Duration::days(1);
    e.event("cpu", "OK", "CRIT", t0);
    e.event("tcp:shop", "OK", "WARN", t0 + secs(5));
    let run = e.cat.start_run("main", "mysql", "schedule", t0).unwrap();
    e.cat
        .finish_run(
            run,
            RunStatus::Failed,
            0,
            Some("mariadb-dump: Got error: 1045: Access denied for user 'backup'"),
            t0 + secs(10),
        )
        .unwrap();
    assert_eq!(e.tick(t0 + secs(20)), None);
    let s = e.tick(t0 + secs(30)).unwrap();
    assert_eq!(
        s,
        "[opsagent] FIRING 3 alerts on web-01: backup-run main, cpu, tcp shop"
    );
    let m = e.deliver(1);
    for part in [
        "Access denied for user",
        "FIRING WARN tcp shop on web-01",
        "opsagent snapshots --job main",
    ] {
        assert!(m[0].contains(part), "{part} missing:\n{}", m[0]);
    }
    assert_eq!(e.tick(t0 + secs(600)), None, "one mail, not three");
}

#[test]
fn flapping_for_ten_minutes_sends_the_first_firing_and_one_flapping_notice() {
    use opsagent::health::state::{EventKind, Level, Observation, Policy, Tracker};
    let e = env("");
    let t0 = Utc::now() - Duration::days(1);
    let mut tr = Tracker::new(Level::Ok, t0);
    let mut queued = Vec::new();
    for s in (0..=600).step_by(10) {
        let now = t0 + secs(s);
        if s % 30 == 0 {
            // CRIT for a minute, OK for a minute, …
            let level = if (s / 60) % 2 == 0 {
                Level::Crit
            } else {
                Level::Ok
            };
            let obs = Observation {
                level,
                value: None,
                threshold: None,
                detail: "connection refused".into(),
            };
            if let Some(t) = tr.observe(&obs, now, &Policy::default()) {
                let (from, to) = match t.kind {
                    EventKind::Change => (t.from.as_str(), t.to.as_str()),
                    EventKind::FlapStart => (t.from.as_str(), "FLAPPING"),
                    EventKind::FlapStop => ("FLAPPING", t.to.as_str()),
                };
                e.event("tcp:api", from, to, now);
            }
        }
        queued.extend(e.tick(now));
    }
    assert_eq!(
        queued,
        [
            "[opsagent] FIRING CRIT tcp api on web-01",
            "[opsagent] FLAPPING tcp api on web-01"
        ]
    );
    let m = e.deliver(2);
    assert!(m[1].contains("further changes are not mailed"), "{}", m[1]);
    assert_eq!(header(&m[1], "In-Reply-To"), header(&m[0], "Message-ID"));
}

#[test]
fn a_silenced_check_sends_nothing_and_status_lists_it() {
    let e = env("");
    let (code, out) = e.cli(&[
        "silence",
        "add",
        "tcp:shop",
        "--for",
        "2h",
        "--reason",
        "vendor maintenance",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("silence 1: tcp:shop until "), "{out}");
    let now = Utc::now();
    e.event("tcp:shop", "OK", "CRIT", now - secs(120));
    assert_eq!(e.tick(now), None);
    assert_eq!(e.tick(now + secs(600)), None);
    assert!(e.cat.outbox(None).unwrap().is_empty(), "nothing queued");
    let (_, out) = e.cli(&["status"]);
    let line = out
        .lines()
        .find(|l| l.starts_with("alert tcp:shop"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.contains("FIRING CRIT")
            && line.contains("silenced (#1")
            && line.contains("vendor maintenance"),
        "{line}"
    );
    assert!(out.contains("silence #1 tcp:shop until"), "{out}");
    let (_, json) = e.cli(&["status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["silences"][0]["check"], "tcp:shop");
    assert!(v["alerts"][0]["muted"]
        .as_str()
        .unwrap()
        .contains("silenced"));
    let (_, out) = e.cli(&["silence", "list"]);
    assert!(
        out.contains("tcp:shop") && out.contains("vendor maintenance"),
        "{out}"
    );
    assert_eq!(e.cli(&["silence", "rm", "7"]).0, 2);
    assert_eq!(e.cli(&["silence", "rm", "1"]).0, 0);
    // Unmuted, the difference is mailed.
    assert_eq!(
        e.tick(Utc::now()).as_deref(),
        Some("[opsagent] FIRING CRIT tcp shop on web-01")
    );
    assert_eq!(e.deliver(1).len(), 1);
}

#[test]
fn maintenance_windows_and_min_severity_from_config() {
    let e = env("min_severity = \"crit\"\n[[alerts.maintenance]]\nschedule = \"* * * * *\"\nduration = \"2m\"\nchecks = [\"disk:*\"]");
    let now = Utc::now();
    e.event("disk:/srv", "OK", "CRIT", now - secs(120));
    e.event("cpu", "OK", "WARN", now - secs(120));
    assert_eq!(
        e.tick(now),
        None,
        "disk muted by maintenance, WARN below min_severity"
    );
    let (_, out) = e.cli(&["status"]);
    assert!(out.contains("muted by a maintenance window"), "{out}");
}

#[test]
fn the_commented_alerts_block_of_the_example_config_loads() {
    let example = include_str!("../config/opsagent.example.toml");
    let start = example.find("# [alerts]\n").unwrap();
    let end = start + example[start..].find("\n\n").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("smtp");
    std::fs::write(&secret, "pw\n").unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let block: String = example[start..end]
        .lines()
        .map(|l| l.strip_prefix("# ").unwrap_or(l))
        .map(|l| {
            l.replace("/etc/opsagent/secrets/smtp", secret.to_str().unwrap())
                .replace("/etc/opsagent/smtp-ca.pem", secret.to_str().unwrap())
        })
        .collect::<Vec<_>>()
        .join("\n");
    let text = format!(
        "[agent]\nstate_dir = \"{0}/state\"\n[storage]\ntype = \"local\"\npath = \"{0}/b\"\n{block}\n",
        dir.path().display()
    );
    let cfg = opsagent::config::parse(&dir.path().join("x.toml"), &text)
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(
        cfg.alerts.repeat_interval,
        std::time::Duration::from_secs(4 * 3600)
    );
    assert_eq!(cfg.alerts.maintenance.len(), 1);
    assert_eq!(
        cfg.alerts.digest.as_ref().map(|s| s.as_str()),
        Some("0 8 * * *")
    );
    assert_eq!(cfg.email.unwrap().to, ["oncall@example.com"]);
}

#[test]
fn alert_settings_errors_have_positions() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[agent]\nstate_dir = \"{0}/state\"\n[storage]\ntype = \"local\"\npath = \"{0}/b\"\n\
         [alerts]\nmin_severity = \"loud\"\nrepeat_interval = \"1m\"\n[[alerts.maintenance]]\nschedule = \"0 3 * *\"\n",
        dir.path().display()
    );
    let err = opsagent::config::parse(&dir.path().join("x.toml"), &text)
        .unwrap_err()
        .to_string();
    for part in [
        "x.toml:7:16: `alerts.min_severity`: unknown severity `loud`",
        "`alerts.repeat_interval`: repeat_interval is shorter than group_interval",
        "`alerts.maintenance[0].schedule`",
        "`alerts.maintenance[0].duration`: required key is missing",
    ] {
        assert!(err.contains(part), "{part} missing:\n{err}");
    }
}
