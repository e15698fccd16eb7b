//! The digest (`[alerts] digest = "0 8 * * *"`): one message at a scheduled time saying how
//! things stand, for the days nothing alerted. Pure: the catalog's rows in ([`DigestData`]),
//! a subject and a plain-text body out ([`build`]); which slot is due ([`due_slot`]).
//! Gathering the rows and queueing the message is [`super::digester`].
//!
//! What it says, for the period since the previous digest (the last 24 hours before the first):
//! every backup job's last backup (time, result, stored size or error) and last restore drill
//! with the RTO (how long the last successful drill took: download, restore and checks); the
//! stored total of the catalog's snapshot rows now against the total recorded with the previous
//! digest, and what was committed in the period; the checks that changed state, with the
//! states they went through and their state now; the notifications that have not been
//! delivered (still retrying, or refused for good). A failed notification that later went
//! through has left the outbox and is not counted.

use super::compose::display_name;
use crate::catalog::{
    CheckStateRow, DigestRow, EventRow, OutboxRow, RunRecord, RunStatus, SnapshotTotals,
};
use crate::quote::human_bytes;
use crate::schedule::{Schedule, Zone};
use chrono::{DateTime, Utc};
use std::fmt::Write;

/// How late a slot is still sent: one missed while the daemon was down is sent when it comes
/// back within this time, else skipped (the next slot is sent as scheduled).
pub const CATCH_UP: chrono::Duration = chrono::Duration::hours(4);
/// The period of the first digest (there is no previous one to start from).
pub const FIRST_PERIOD: chrono::Duration = chrono::Duration::hours(24);
/// The most lines in one list (checks changed, undelivered notifications); the rest counted.
const MAX_LINES: usize = 30;
/// The longest error text quoted.
const MAX_ERROR: usize = 300;

/// A backup job the digest reports on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestJob {
    /// Its name.
    pub name: String,
    /// Its runs' kind in the catalog: `mysql` or `media`.
    pub kind: &'static str,
}

/// One job's runs, as the catalog has them.
#[derive(Debug, Clone, PartialEq)]
pub struct JobReport {
    /// The job.
    pub job: DigestJob,
    /// Its last finished backup.
    pub backup: Option<RunRecord>,
    /// Its last finished restore drill.
    pub drill: Option<RunRecord>,
    /// Its last successful drill (the RTO).
    pub good_drill: Option<RunRecord>,
}

/// Everything one digest says.
#[derive(Debug, Clone)]
pub struct DigestData {
    /// This host's name.
    pub host: String,
    /// Zone of the times shown.
    pub zone: Zone,
    /// The scheduled time this digest is for.
    pub slot: DateTime<Utc>,
    /// The start of the period (the previous digest, or [`FIRST_PERIOD`] before `to`).
    pub from: DateTime<Utc>,
    /// The end of the period: when the digest was built.
    pub to: DateTime<Utc>,
    /// The previous digest, if any.
    pub previous: Option<DigestRow>,
    /// Every backup job, in config order.
    pub jobs: Vec<JobReport>,
    /// The catalog's snapshots now, `added` counting those committed in the period.
    pub totals: SnapshotTotals,
    /// The check events of the period, oldest first.
    pub events: Vec<EventRow>,
    /// Every check's state now.
    pub states: Vec<CheckStateRow>,
    /// Notifications not delivered: attempted and failed, still retrying or refused for good.
    pub undelivered: Vec<OutboxRow>,
}

/// A built digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    /// The subject (and webhook title): `[opsagent] web-01 daily digest: …`.
    pub subject: String,
    /// The plain-text body; its first line is the summary.
    pub text: String,
}

/// The slot to send at `now`: the schedule's last firing at or before `now`, if it is no
/// older than [`CATCH_UP`] and newer than `last` (the newest slot sent). Before any digest was
/// sent only a slot at or after `started` (when the sender started) is: like a job that never
/// ran, the first digest waits for its first slot.
pub fn due_slot(
    schedule: &Schedule,
    zone: Zone,
    now: DateTime<Utc>,
    last: Option<DateTime<Utc>>,
    started: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    schedule
        .last_at_or_before(now, zone, CATCH_UP)
        .filter(|slot| match last {
            Some(l) => *slot > l,
            None => *slot >= started,
        })
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Whether a run committed something (success, or partial: some files skipped).
fn committed(r: &RunRecord) -> bool {
    matches!(r.status, RunStatus::Success | RunStatus::Partial)
}

/// "3 jobs ok, 1 failed, 2 checks changed" (with "N never run" and "N notifications
/// undelivered" when there are any).
fn summary(d: &DigestData, changed: usize) -> String {
    let ok = d
        .jobs
        .iter()
        .filter(|j| j.backup.as_ref().is_some_and(committed))
        .count();
    let never = d.jobs.iter().filter(|j| j.backup.is_none()).count();
    let failed = d.jobs.len() - ok - never;
    let mut parts = vec![
        format!("{} ok", plural(ok, "job", "jobs")),
        format!("{failed} failed"),
    ];
    if never > 0 {
        parts.push(format!("{never} never run"));
    }
    parts.push(format!("{} changed", plural(changed, "check", "checks")));
    if !d.undelivered.is_empty() {
        parts.push(format!(
            "{} undelivered",
            plural(d.undelivered.len(), "notification", "notifications")
        ));
    }
    parts.join(", ")
}

/// "40s", "4m 12s", "2h 5m", "1d 3h".
fn took(d: chrono::Duration) -> String {
    let s = d.num_seconds().max(0);
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {}s", s / 60, s % 60),
        _ => super::compose::age(d),
    }
}

/// `s` on one line, cut to [`MAX_ERROR`] characters.
fn one_line(s: &str) -> String {
    let flat = s.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(MAX_ERROR) {
        Some((i, _)) => format!("{}…", &flat[..i]),
        None => flat,
    }
}

fn when(d: &DigestData, t: DateTime<Utc>) -> String {
    d.zone.format(t, "%Y-%m-%d %H:%M %Z")
}

fn backup_line(d: &DigestData, r: Option<&RunRecord>) -> String {
    let Some(r) = r else {
        return "never".into();
    };
    let at = when(d, r.started_at);
    let stored = human_bytes(r.bytes);
    let took = took(duration(r));
    let err = || one_line(r.error.as_deref().unwrap_or("no error recorded"));
    match r.status {
        RunStatus::Success => format!("{at}: ok, {stored} stored, took {took}"),
        RunStatus::Partial => {
            format!("{at}: ok with warnings (some files skipped), {stored} stored, took {took}")
        }
        RunStatus::Interrupted => format!("{at}: FAILED (interrupted): {}", err()),
        _ => format!("{at}: FAILED: {}", err()),
    }
}

fn duration(r: &RunRecord) -> chrono::Duration {
    r.ended_at.unwrap_or(r.started_at) - r.started_at
}

fn drill_line(d: &DigestData, j: &JobReport) -> String {
    let Some(r) = &j.drill else {
        return "never".into();
    };
    let at = when(d, r.started_at);
    if committed(r) {
        return format!("{at}: ok, RTO {}", took(duration(r)));
    }
    let err = one_line(r.error.as_deref().unwrap_or("no error recorded"));
    match &j.good_drill {
        Some(g) => format!(
            "{at}: FAILED: {err}; RTO {} (the last good drill, {})",
            took(duration(g)),
            when(d, g.started_at)
        ),
        None => format!("{at}: FAILED: {err}; RTO unknown (no drill has succeeded)"),
    }
}

fn jobs_section(d: &DigestData, t: &mut String) {
    let _ = writeln!(t, "Backups");
    if d.jobs.is_empty() {
        let _ = writeln!(t, "  no backup jobs configured");
    }
    for j in &d.jobs {
        let _ = writeln!(t, "  {} ({})", j.job.name, j.job.kind);
        let _ = writeln!(
            t,
            "    last backup    {}",
            backup_line(d, j.backup.as_ref())
        );
        let _ = writeln!(t, "    restore drill  {}", drill_line(d, j));
    }
    let _ = writeln!(t);
}

/// `+1.5 MiB` / `-200 B`.
fn signed_bytes(now: u64, before: u64) -> String {
    match now.cmp(&before) {
        std::cmp::Ordering::Less => format!("-{}", human_bytes(before - now)),
        _ => format!("+{}", human_bytes(now - before)),
    }
}

fn storage_section(d: &DigestData, t: &mut String) {
    let n = &d.totals;
    let _ = writeln!(t, "Storage (sums of the catalog's snapshot rows)");
    let _ = writeln!(
        t,
        "  stored now     {} in {}",
        human_bytes(n.stored_bytes),
        plural(n.count as usize, "snapshot", "snapshots")
    );
    let change = match &d.previous {
        Some(p) => format!(
            "{}, {:+} snapshots since the previous digest ({}: {})",
            signed_bytes(n.stored_bytes, p.stored_bytes),
            n.count as i64 - p.snapshots as i64,
            when(d, p.slot),
            human_bytes(p.stored_bytes)
        ),
        None => "unknown: this is the first digest, no earlier total was recorded".into(),
    };
    let _ = writeln!(t, "  change         {change}");
    let _ = writeln!(
        t,
        "  added          {} in the period, {} stored",
        plural(n.added as usize, "snapshot", "snapshots"),
        human_bytes(n.added_bytes)
    );
    let _ = writeln!(t);
}

/// The checks with events in the period, in the order they first changed, each with the states
/// it went through.
fn changes(events: &[EventRow]) -> Vec<(&str, Vec<&str>)> {
    let mut out: Vec<(&str, Vec<&str>)> = Vec::new();
    for e in events {
        match out.iter_mut().find(|(c, _)| *c == e.check) {
            Some((_, path)) => path.push(&e.to_state),
            None => out.push((&e.check, vec![&e.from_state, &e.to_state])),
        }
    }
    out
}

fn more(t: &mut String, n: usize) {
    if n > MAX_LINES {
        let _ = writeln!(t, "  … and {} more (opsagent status)", n - MAX_LINES);
    }
}

fn checks_section(d: &DigestData, changed: &[(&str, Vec<&str>)], t: &mut String) {
    let _ = writeln!(t, "Checks that changed state");
    if changed.is_empty() {
        let _ = writeln!(t, "  none");
    }
    for (check, path) in changed.iter().take(MAX_LINES) {
        let now = match d.states.iter().find(|s| s.check == *check) {
            Some(s) if s.flapping => format!("{} (flapping)", s.state),
            Some(s) => s.state.clone(),
            None => "no longer checked".into(),
        };
        let _ = writeln!(
            t,
            "  {:<24} {}, now {now}",
            display_name(check),
            path.join(" → ")
        );
    }
    more(t, changed.len());
    let _ = writeln!(t);
}

fn undelivered_section(d: &DigestData, t: &mut String) {
    let _ = writeln!(t, "Notifications not delivered");
    if d.undelivered.is_empty() {
        let _ = writeln!(t, "  none");
    }
    for r in d.undelivered.iter().take(MAX_LINES) {
        let channel = match r.webhook() {
            Some(name) => format!("webhook {name}"),
            None => "mail".into(),
        };
        let state = match r.given_up() {
            true => "refused for good",
            false => "still retrying",
        };
        let _ = writeln!(
            t,
            "  {channel} \"{}\", queued {}, {}, {state}: {}",
            one_line(&r.subject),
            when(d, r.created_at),
            plural(r.attempts as usize, "attempt", "attempts"),
            one_line(r.last_error.as_deref().unwrap_or(""))
        );
    }
    more(t, d.undelivered.len());
    let _ = writeln!(t);
}

/// The digest about `d`.
pub fn build(d: &DigestData) -> Digest {
    let changed = changes(&d.events);
    let head = format!("{} daily digest: {}", d.host, summary(d, changed.len()));
    let mut t = format!("{head}\n");
    let since = match d.previous {
        Some(_) => "since the previous digest",
        None => "the last 24 hours: this is the first digest",
    };
    let _ = writeln!(
        t,
        "slot {}; period {} to {} ({since})\n",
        when(d, d.slot),
        when(d, d.from),
        when(d, d.to)
    );
    jobs_section(d, &mut t);
    storage_section(d, &mut t);
    checks_section(d, &changed, &mut t);
    undelivered_section(d, &mut t);
    let _ = write!(t, "-- \nopsagent on {}\n", d.host);
    Digest {
        subject: format!("[opsagent] {head}"),
        text: t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const UTC: Zone = Zone::Named(chrono_tz::UTC);

    fn t(d: u32, h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, d, h, m, 0).unwrap()
    }

    fn run(job: &str, kind: &str, start: DateTime<Utc>, secs: i64, status: RunStatus) -> RunRecord {
        RunRecord {
            id: 1,
            job: job.into(),
            kind: kind.into(),
            trigger: "schedule".into(),
            started_at: start,
            ended_at: Some(start + chrono::Duration::seconds(secs)),
            status,
            bytes: 3 << 20,
            error: (status == RunStatus::Failed)
                .then(|| "mysqldump: Got error: 2002: Can't connect\n  to server".into()),
            pid: 1,
        }
    }

    fn job(name: &str, kind: &'static str) -> DigestJob {
        DigestJob {
            name: name.into(),
            kind,
        }
    }

    fn event(check: &str, from: &str, to: &str, at: DateTime<Utc>) -> EventRow {
        EventRow {
            id: 0,
            check: check.into(),
            from_state: from.into(),
            to_state: to.into(),
            at,
            since: at,
            value: None,
            threshold: None,
            detail: String::new(),
            delivered: true,
        }
    }

    fn state(check: &str, state: &str) -> CheckStateRow {
        CheckStateRow {
            check: check.into(),
            kind: "disk".into(),
            state: state.into(),
            since: t(20, 6, 0),
            updated_at: t(20, 8, 0),
            value: None,
            threshold: None,
            detail: String::new(),
            flapping: false,
        }
    }

    fn failed_mail() -> OutboxRow {
        OutboxRow {
            id: 7,
            message_id: "<1@x>".into(),
            subject: "[opsagent] FIRING CRIT disk / on web-01".into(),
            mail_from: "a@x".into(),
            rcpt_to: vec!["b@x".into()],
            raw: Vec::new(),
            created_at: t(20, 3, 0),
            attempts: 12,
            next_attempt: t(20, 8, 1),
            last_error: Some("smtp 127.0.0.1:25: connect failed".into()),
            channel: OutboxRow::EMAIL.into(),
            content_type: String::new(),
            headers: Vec::new(),
        }
    }

    /// shop: backed up, drilled (4m 12s); uploads: failed, its last drill failed after a good
    /// one; logs: never run; two checks changed; one mail undelivered.
    fn data() -> DigestData {
        DigestData {
            host: "web-01".into(),
            zone: UTC,
            slot: t(20, 8, 0),
            from: t(19, 8, 0),
            to: t(20, 8, 0),
            previous: Some(DigestRow {
                slot: t(19, 8, 0),
                sent_at: t(19, 8, 0),
                snapshots: 10,
                stored_bytes: 1 << 30,
            }),
            jobs: vec![
                JobReport {
                    job: job("shop", "mysql"),
                    backup: Some(run("shop", "mysql", t(20, 2, 30), 60, RunStatus::Success)),
                    drill: Some(run("shop", "verify", t(16, 3, 0), 252, RunStatus::Success)),
                    good_drill: Some(run("shop", "verify", t(16, 3, 0), 252, RunStatus::Success)),
                },
                JobReport {
                    job: job("uploads", "media"),
                    backup: Some(run("uploads", "media", t(20, 2, 45), 5, RunStatus::Failed)),
                    drill: Some(run("uploads", "verify", t(18, 4, 0), 9, RunStatus::Failed)),
                    good_drill: Some(run(
                        "uploads",
                        "verify",
                        t(11, 4, 0),
                        3700,
                        RunStatus::Success,
                    )),
                },
                JobReport {
                    job: job("logs", "media"),
                    backup: None,
                    drill: None,
                    good_drill: None,
                },
            ],
            totals: SnapshotTotals {
                count: 12,
                stored_bytes: (1 << 30) + (200 << 20),
                added: 3,
                added_bytes: 250 << 20,
            },
            events: vec![
                event("disk:/", "OK", "WARN", t(19, 12, 0)),
                event("tcp:shop", "OK", "CRIT", t(19, 13, 0)),
                event("disk:/", "WARN", "OK", t(19, 14, 0)),
            ],
            states: vec![state("disk:/", "OK"), state("tcp:shop", "CRIT")],
            undelivered: vec![failed_mail()],
        }
    }

    fn line<'a>(text: &'a str, start: &str) -> &'a str {
        text.lines()
            .find(|l| l.trim_start().starts_with(start))
            .unwrap_or_else(|| panic!("no line `{start}` in:\n{text}"))
    }

    #[test]
    fn the_summary_heads_the_subject_and_the_body() {
        let d = build(&data());
        assert_eq!(
            d.subject,
            "[opsagent] web-01 daily digest: 1 job ok, 1 failed, 1 never run, 2 checks changed, 1 notification undelivered"
        );
        assert_eq!(d.text.lines().next(), d.subject.strip_prefix("[opsagent] "));
        assert!(
            d.text.contains(
                "period 2026-11-19 08:00 UTC to 2026-11-20 08:00 UTC (since the previous digest)"
            ),
            "{}",
            d.text
        );
    }

    #[test]
    fn jobs_with_their_last_backup_and_drill() {
        let text = build(&data()).text;
        let shop = text.split("  uploads (media)").next().unwrap();
        assert!(
            shop.contains(
                "  shop (mysql)\n    last backup    2026-11-20 02:30 UTC: ok, 3.0 MiB stored, took 1m 0s\n"
            ),
            "{text}"
        );
        assert!(
            shop.contains("restore drill  2026-11-16 03:00 UTC: ok, RTO 4m 12s\n"),
            "{text}"
        );
        let uploads = text.split("  uploads (media)").nth(1).unwrap();
        let backup = line(uploads, "last backup");
        assert!(
            backup.contains(
                "2026-11-20 02:45 UTC: FAILED: mysqldump: Got error: 2002: Can't connect to server"
            ),
            "{backup}"
        );
        let drill = line(uploads, "restore drill");
        assert!(
            drill.contains("FAILED: mysqldump")
                && drill.contains("RTO 1h 1m (the last good drill, 2026-11-11 04:00 UTC)"),
            "{drill}"
        );
        let logs = text.split("  logs (media)").nth(1).unwrap();
        assert_eq!(line(logs, "last backup"), "    last backup    never");
        assert_eq!(line(logs, "restore drill"), "    restore drill  never");
    }

    #[test]
    fn a_job_never_run_and_no_drill_ever_good() {
        let mut d = data();
        d.jobs[0].backup = None;
        d.jobs[1].good_drill = None;
        d.undelivered.clear();
        d.events.clear();
        let b = build(&d);
        assert!(
            b.subject
                .ends_with(": 0 jobs ok, 1 failed, 2 never run, 0 checks changed"),
            "{}",
            b.subject
        );
        assert!(
            line(&b.text, "restore drill  2026-11-18")
                .contains("RTO unknown (no drill has succeeded)"),
            "{}",
            b.text
        );
        let checks = b.text.split("Checks that changed state\n").nth(1).unwrap();
        assert!(checks.starts_with("  none\n"), "{}", b.text);
        let mails = b
            .text
            .split("Notifications not delivered\n")
            .nth(1)
            .unwrap();
        assert!(mails.starts_with("  none\n"), "{}", b.text);
    }

    #[test]
    fn checks_changed_with_their_path_and_state_now() {
        let mut d = data();
        d.events.push(event("tcp:gone", "OK", "CRIT", t(19, 15, 0)));
        let text = build(&d).text;
        assert!(
            text.contains("  disk /                   OK → WARN → OK, now OK\n"),
            "{text}"
        );
        assert!(
            text.contains("  tcp shop                 OK → CRIT, now CRIT\n"),
            "{text}"
        );
        assert!(
            text.contains("  tcp gone                 OK → CRIT, now no longer checked\n"),
            "{text}"
        );
        assert!(build(&d).subject.contains("3 checks changed"));
    }

    #[test]
    fn undelivered_notifications_and_storage_growth() {
        let mut d = data();
        let mut hook = failed_mail();
        hook.channel = "webhook:chat".into();
        hook.next_attempt = crate::catalog::GIVEN_UP;
        hook.attempts = 1;
        hook.last_error = Some("webhook chat (https://hooks.example.com/…): answered 404".into());
        d.undelivered.push(hook);
        let text = build(&d).text;
        assert!(text.contains("  mail \"[opsagent] FIRING CRIT disk / on web-01\", queued 2026-11-20 03:00 UTC, 12 attempts, still retrying: smtp 127.0.0.1:25: connect failed\n"), "{text}");
        assert!(text.contains("  webhook chat \"[opsagent] FIRING CRIT disk / on web-01\", queued 2026-11-20 03:00 UTC, 1 attempt, refused for good: webhook chat"), "{text}");
        assert!(
            text.contains("  stored now     1.2 GiB in 12 snapshots\n"),
            "{text}"
        );
        assert!(text.contains("  change         +200.0 MiB, +2 snapshots since the previous digest (2026-11-19 08:00 UTC: 1.0 GiB)\n"), "{text}");
        assert!(
            text.contains("  added          3 snapshots in the period, 250.0 MiB stored\n"),
            "{text}"
        );
        d.previous = None;
        let text = build(&d).text;
        assert!(
            text.contains("change         unknown: this is the first digest"),
            "{text}"
        );
        assert!(
            text.contains("(the last 24 hours: this is the first digest)"),
            "{text}"
        );
    }

    #[test]
    fn the_due_slot_is_sent_once_and_caught_up_for_four_hours() {
        let s = Schedule::parse("0 8 * * *").unwrap();
        let start = t(20, 7, 0);
        assert_eq!(due_slot(&s, UTC, t(20, 7, 59), None, start), None);
        assert_eq!(
            due_slot(&s, UTC, t(20, 8, 0), None, start),
            Some(t(20, 8, 0))
        );
        assert_eq!(
            due_slot(&s, UTC, t(20, 8, 0), Some(t(20, 8, 0)), start),
            None
        );
        let late = |now| due_slot(&s, UTC, now, Some(t(19, 8, 0)), t(20, 11, 0));
        assert_eq!(late(t(20, 11, 59)), Some(t(20, 8, 0)), "caught up");
        assert_eq!(late(t(20, 12, 1)), None, "too late: skipped");
        assert_eq!(
            due_slot(&s, UTC, t(20, 9, 0), None, t(20, 8, 30)),
            None,
            "the first digest waits for its first slot"
        );
        let bogota = Zone::parse("America/Bogota").unwrap();
        assert_eq!(
            due_slot(&s, bogota, t(20, 13, 0), None, start),
            Some(t(20, 13, 0)),
            "08:00 in Bogotá"
        );
    }
}
