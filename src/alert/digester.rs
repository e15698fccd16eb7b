//! Sends the digest ([`super::digest`]): at each slot of `[alerts] digest` it gathers the
//! catalog's rows, builds the digest and queues one mail (with `[alerts.email]`) and one
//! message per `[[alerts.webhook]]` in the outbox, which delivers and retries them like alert
//! notifications. The slot is recorded in the same transaction, so it is queued once, across
//! restarts and even with two daemons on one catalog; a slot missed while the daemon was down
//! is sent when it comes back within [`super::digest::CATCH_UP`], else skipped (the first
//! digest of a catalog waits for its first slot; see [`super::digest::due_slot`]). Driven by the
//! alerting task ([`super::spawn`]), which calls [`Digester::tick`] beside the engine's tick.

use super::compose;
use super::digest::{self, DigestData, JobReport, FIRST_PERIOD};
use super::engine::{AlertError, Setup};
use super::webhook::payload;
use crate::catalog::{Catalog, CatalogError, DigestRow, OutboxRow};
use chrono::{DateTime, Utc};
use std::sync::Arc;

/// The longest the digester waits before looking at the clock again (it may jump).
const LOOK_AT_LEAST_EVERY: chrono::Duration = chrono::Duration::minutes(1);

/// The digest's sender over one catalog and one configuration.
pub struct Digester {
    cat: Arc<Catalog>,
    setup: Setup,
    next_look: Option<DateTime<Utc>>,
    started: Option<DateTime<Utc>>,
}

impl Digester {
    /// A digester for `setup` (it sends nothing without `[alerts] digest`).
    pub fn new(cat: Arc<Catalog>, setup: Setup) -> Digester {
        Digester {
            cat,
            setup,
            next_look: None,
            started: None,
        }
    }

    /// Queues the digest due at `now`, if one is; returns its subject. Looks at the catalog
    /// only at the schedule's slots (and at least once a minute).
    pub fn tick(&mut self, now: DateTime<Utc>) -> Result<Option<String>, AlertError> {
        let Some(schedule) = &self.setup.rules.digest else {
            return Ok(None);
        };
        if self.setup.email.is_none() && self.setup.rules.webhooks.is_empty() {
            return Ok(None);
        }
        if self.next_look.is_some_and(|t| now < t) {
            return Ok(None);
        }
        let started = *self.started.get_or_insert(now);
        let zone = self.setup.zone;
        let latest = now + LOOK_AT_LEAST_EVERY;
        self.next_look = Some(
            schedule
                .next_after(now, zone)
                .map_or(latest, |n| n.min(latest)),
        );
        let last = self.cat.last_digest()?;
        let Some(slot) = digest::due_slot(schedule, zone, now, last.map(|d| d.slot), started)
        else {
            return Ok(None);
        };
        let data = gather(&self.cat, &self.setup, slot, last, now)?;
        let built = digest::build(&data);
        let charts = day_charts(&self.cat, &self.setup, &data, now);
        let rows = self.rows(&built, charts, now)?;
        let row = DigestRow {
            slot,
            sent_at: now,
            snapshots: data.totals.count,
            stored_bytes: data.totals.stored_bytes,
        };
        if !self.cat.save_digest(&row, &rows)? {
            return Ok(None);
        }
        Ok(Some(built.subject))
    }

    /// The digest's mail (with `[alerts.email]`) and one message per webhook.
    fn rows(
        &self,
        d: &digest::Digest,
        charts: Vec<compose::Captioned>,
        now: DateTime<Utc>,
    ) -> Result<Vec<OutboxRow>, AlertError> {
        let s = &self.setup;
        let id = compose::message_id(&s.sender(), now);
        let mut out = Vec::new();
        if let Some(email) = &s.email {
            let mail = compose::text_mail(
                &s.envelope(email),
                d.subject.clone(),
                d.text.clone(),
                charts,
                &id,
                now,
            );
            out.push(mail.map_err(AlertError::Compose)?);
        }
        let about = payload::About {
            host: &s.host,
            zone: s.zone,
            now,
            id: &id,
        };
        for w in &s.rules.webhooks {
            let p = payload::message(
                w.format,
                &about,
                &d.subject,
                &d.text,
                "digest",
                "clipboard",
                true,
            );
            out.push(payload::row(w, p, &id, now));
        }
        Ok(out)
    }
}

/// The charts a digest shows at most.
pub const MAX_DAY_CHARTS: usize = 8;

/// The day's charts of the digest, drawn as alert mails draw theirs: the checks not OK now
/// first, then those that changed state in the period, each over the last 24 hours.
fn day_charts(
    cat: &Catalog,
    setup: &Setup,
    data: &DigestData,
    now: DateTime<Utc>,
) -> Vec<compose::Captioned> {
    let mut names: Vec<&str> = (data.states.iter())
        .filter(|s| s.state != "OK")
        .map(|s| s.check.as_str())
        .collect();
    for e in &data.events {
        if !names.contains(&e.check.as_str()) {
            names.push(&e.check);
        }
    }
    let from = now - chrono::Duration::hours(24);
    let mut out = Vec::new();
    for name in names {
        if out.len() == MAX_DAY_CHARTS {
            break;
        }
        let Ok(points) = cat.history(name, from) else {
            continue;
        };
        let th = super::thresholds_of(&setup.thresholds, name);
        let chart = super::chart::Chart {
            points: &points,
            from,
            to: now,
            warn: th.and_then(|t| t.warn),
            crit: th.and_then(|t| t.crit),
            mark: None,
        };
        if let Ok(png) = chart.png(super::chart::SMALL_SIZE) {
            out.push(compose::Captioned {
                title: compose::display_name(name),
                caption: compose::chart_caption("last 24 hours", &points, th, None),
                png,
            });
        }
    }
    out
}

/// The catalog's rows for the digest of `slot`, built at `now`; `previous` is the last digest
/// sent (the period starts there, else [`FIRST_PERIOD`] before `now`).
fn gather(
    cat: &Catalog,
    setup: &Setup,
    slot: DateTime<Utc>,
    previous: Option<DigestRow>,
    now: DateTime<Utc>,
) -> Result<DigestData, CatalogError> {
    let from = previous.map_or(now - FIRST_PERIOD, |p| p.sent_at);
    let mut jobs = Vec::new();
    for j in &setup.jobs {
        jobs.push(JobReport {
            job: j.clone(),
            backup: cat.last_finished_run(&j.name, j.kind, false)?,
            drill: cat.last_finished_run(&j.name, "verify", false)?,
            good_drill: cat.last_finished_run(&j.name, "verify", true)?,
        });
    }
    let undelivered = cat
        .outbox(None)?
        .into_iter()
        .filter(|r| r.attempts > 0)
        .collect();
    Ok(DigestData {
        host: setup.host.clone(),
        zone: setup.zone,
        slot,
        from,
        to: now,
        previous,
        jobs,
        totals: cat.snapshot_totals(from)?,
        events: cat.events_between(from, now)?,
        states: cat.check_states()?,
        undelivered,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::digest::DigestJob;
    use crate::alert::email::{EmailSettings, SmtpTls};
    use crate::schedule::{Schedule, Zone};
    use chrono::TimeZone;

    fn setup() -> Setup {
        let rules = crate::alert::AlertConfig {
            digest: Some(Schedule::parse("0 8 * * *").unwrap()),
            ..Default::default()
        };
        Setup {
            rules,
            email: Some(EmailSettings {
                smtp_host: "127.0.0.1".into(),
                smtp_port: 25,
                tls: SmtpTls::None,
                username: None,
                password: None,
                from: "opsagent@web-01.example.com".into(),
                to: vec!["oncall@example.com".into()],
                ca_file: None,
                timeout: std::time::Duration::from_secs(5),
            }),
            host: "web-01".into(),
            zone: Zone::Named(chrono_tz::UTC),
            thresholds: Default::default(),
            jobs: vec![DigestJob {
                name: "uploads".into(),
                kind: "media",
            }],
        }
    }

    fn t(d: u32, h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, d, h, m, 0).unwrap()
    }

    #[test]
    fn one_digest_per_slot_across_restarts_and_no_late_catch_up() {
        let dir = tempfile::tempdir().unwrap();
        let cat = Arc::new(Catalog::open(&dir.path().join("c.sqlite")).unwrap());
        let mut d = Digester::new(cat.clone(), setup());
        assert_eq!(d.tick(t(20, 7, 59)).unwrap(), None);
        let subject = d.tick(t(20, 8, 0)).unwrap().expect("the 08:00 digest");
        assert_eq!(
            subject,
            "[opsagent] web-01 daily digest: 0 jobs ok, 0 failed, 1 never run, 0 checks changed"
        );
        let rows = cat.outbox(None).unwrap();
        assert_eq!(rows.len(), 1);
        let raw = String::from_utf8_lossy(&rows[0].raw);
        assert!(
            raw.contains("Subject: [opsagent] web-01 daily digest"),
            "{raw}"
        );
        assert!(raw.contains("uploads (media)"), "{raw}");
        // A restarted daemon (a new digester) in the same slot sends nothing.
        let mut again = Digester::new(cat.clone(), setup());
        assert_eq!(again.tick(t(20, 8, 1)).unwrap(), None);
        // Down over the next slot, back 5 hours late: skipped; 3 hours late the day after: sent.
        let mut late = Digester::new(cat.clone(), setup());
        assert_eq!(late.tick(t(21, 13, 0)).unwrap(), None);
        let mut back = Digester::new(cat.clone(), setup());
        assert!(back.tick(t(22, 11, 0)).unwrap().is_some());
        let last = cat.last_digest().unwrap().unwrap();
        assert_eq!((last.slot, last.sent_at), (t(22, 8, 0), t(22, 11, 0)));
        assert_eq!(cat.outbox(None).unwrap().len(), 2);
    }

    #[test]
    fn the_first_digest_waits_for_its_first_slot() {
        let dir = tempfile::tempdir().unwrap();
        let cat = Arc::new(Catalog::open(&dir.path().join("c.sqlite")).unwrap());
        let mut d = Digester::new(cat.clone(), setup());
        assert_eq!(
            d.tick(t(20, 9, 0)).unwrap(),
            None,
            "08:00 passed before it started"
        );
        assert!(d.tick(t(21, 8, 0)).unwrap().is_some());
    }

    #[test]
    fn no_digest_without_the_option_or_a_channel() {
        let dir = tempfile::tempdir().unwrap();
        let cat = Arc::new(Catalog::open(&dir.path().join("c.sqlite")).unwrap());
        let mut off = setup();
        off.rules.digest = None;
        assert_eq!(
            Digester::new(cat.clone(), off).tick(t(20, 8, 0)).unwrap(),
            None
        );
        let mut nowhere = setup();
        nowhere.email = None;
        assert_eq!(
            Digester::new(cat.clone(), nowhere)
                .tick(t(20, 8, 0))
                .unwrap(),
            None
        );
        assert_eq!(cat.last_digest().unwrap(), None);
    }
}
