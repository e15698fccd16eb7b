//! The alerting engine: each tick folds new check events and finished runs into the `alerts`
//! table ([`Engine::ingest`]) and queues the mail that is due, if any ([`Engine::flush`]);
//! [`spawn`] runs it beside the outbox sender in the daemon, with the digest ([`Digester`]).

use super::compose::{self, Envelope};
use super::digest::DigestJob;
use super::digester::Digester;
use super::email::{EmailSettings, Mailer};
use super::outbox::{self, WebhookSenders};
use super::route::{self, NoticeKind, Rules};
use super::silence::silenced_by;
use super::webhook::payload;
use super::AlertConfig;
use crate::catalog::{AlertRow, Catalog, CatalogError, OutboxRow};
use crate::schedule::Zone;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// Everything alerting needs from the configuration.
#[derive(Debug, Clone)]
pub struct Setup {
    /// `[alerts]`
    pub rules: AlertConfig,
    /// `[alerts.email]`; without it alerts are recorded (and shown by `status`) but not mailed.
    pub email: Option<EmailSettings>,
    /// This host's name, in subjects.
    pub host: String,
    /// Zone for times in mails and maintenance windows.
    pub zone: Zone,
    /// The backup jobs, which the digest reports on.
    pub jobs: Vec<DigestJob>,
    /// The checks' thresholds, which mails draw and word.
    pub thresholds: super::ThresholdMap,
}

impl Setup {
    /// The sender address of notifications (the domain of their ids).
    pub fn sender(&self) -> String {
        match &self.email {
            Some(e) => e.from.clone(),
            None => format!("opsagent@{}", self.host),
        }
    }

    /// Who a mail over `email` goes from and to.
    pub fn envelope(&self, email: &EmailSettings) -> Envelope {
        Envelope {
            host: self.host.clone(),
            from: email.from.clone(),
            to: email.to.clone(),
            zone: self.zone,
        }
    }

    /// Whether `key` is muted at `now` by a silence or a maintenance window.
    pub fn muted(
        &self,
        silences: &[crate::catalog::SilenceRow],
        key: &str,
        now: DateTime<Utc>,
    ) -> bool {
        silenced_by(silences, key, now).is_some()
            || self
                .rules
                .maintenance
                .iter()
                .any(|m| m.mutes(key, now, self.zone))
    }
}

/// Alerting failures (logged by the daemon, which keeps going).
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    /// The catalog failed.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// A mail could not be built (an address lettre refuses).
    #[error("cannot build the alert mail: {0} (hint: check [alerts.email] from and to)")]
    Compose(super::compose::ComposeError),
}

/// One engine over one catalog.
pub struct Engine {
    cat: Arc<Catalog>,
    setup: Setup,
}

impl Engine {
    /// An engine for `setup`.
    pub fn new(cat: Arc<Catalog>, setup: Setup) -> Engine {
        Engine { cat, setup }
    }

    /// Folds undelivered events, unseen finished runs and anomaly changes into the alerts;
    /// returns how many inputs were consumed.
    pub fn ingest(&self) -> Result<usize, AlertError> {
        let mut events = self.cat.events(true, 10_000)?;
        events.reverse();
        let runs = self.cat.unalerted_runs()?;
        let anomalies = self.cat.unalerted_anomalies()?;
        if events.is_empty() && runs.is_empty() && anomalies.is_empty() {
            return Ok(0);
        }
        let before: BTreeMap<String, AlertRow> = self
            .cat
            .alerts()?
            .into_iter()
            .map(|a| (a.key.clone(), a))
            .collect();
        let mut map = before.clone();
        let min = self.setup.rules.min_severity;
        for e in &events {
            route::apply_event(&mut map, e, min);
        }
        for r in &runs {
            route::apply_run(&mut map, r, min);
        }
        for an in &anomalies {
            route::apply_anomaly(&mut map, an, min);
        }
        let changed: Vec<AlertRow> = map
            .values()
            .filter(|a| before.get(&a.key) != Some(*a))
            .cloned()
            .collect();
        let ev: Vec<i64> = events.iter().map(|e| e.id).collect();
        let rs: Vec<i64> = runs.iter().map(|r| r.id).collect();
        let an: Vec<i64> = anomalies.iter().map(|a| a.id).collect();
        self.cat.save_alert_inputs(&changed, &ev, (&rs, &an))?;
        Ok(ev.len() + rs.len() + an.len())
    }

    /// The notifications about `notices`: the mail (with `[alerts.email]`) and one request per
    /// webhook, all carrying `id`.
    fn notifications(
        &self,
        alerts: &[AlertRow],
        notices: &[(usize, NoticeKind)],
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<OutboxRow>, AlertError> {
        let refs: Vec<(NoticeKind, &AlertRow)> =
            notices.iter().map(|(i, k)| (*k, &alerts[*i])).collect();
        let mut out = Vec::new();
        if let Some(email) = &self.setup.email {
            let mut threads: Vec<String> = Vec::new();
            for (i, _) in notices {
                let a = &alerts[*i];
                if let (Some(t), "FIRING" | "FLAPPING") = (&a.thread, a.notified.as_str()) {
                    if !threads.contains(t) {
                        threads.push(t.clone());
                    }
                }
            }
            let env = self.setup.envelope(email);
            let figures = self.figures(&refs, now);
            out.push(
                compose::compose(&refs, &threads, &env, &figures, id, now)
                    .map_err(AlertError::Compose)?,
            );
        }
        let about = payload::About {
            host: &self.setup.host,
            zone: self.setup.zone,
            now,
            id,
        };
        for w in &self.setup.rules.webhooks {
            let p = payload::build(w.format, &refs, &about);
            out.push(payload::row(w, p, id, now));
        }
        Ok(out)
    }

    /// What the mail about `notices` draws: each alert's thresholds and its last hours of
    /// history (a check without numeric history has none and gets no chart).
    fn figures(&self, notices: &[(NoticeKind, &AlertRow)], now: DateTime<Utc>) -> compose::Figures {
        let mut out = compose::Figures::new();
        for (_, a) in notices {
            let points = match self.cat.history(&a.key, now - compose::CHART_SPAN) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(alert = %a.key, error = %e, "cannot read the history for the mail's chart");
                    Vec::new()
                }
            };
            let thresholds = super::thresholds_of(&self.setup.thresholds, &a.key).copied();
            out.insert(a.key.clone(), compose::Figure { thresholds, points });
        }
        out
    }

    /// Queues the notifications due at `now` (one mail, one request per webhook), if any;
    /// returns their subject.
    pub fn flush(&self, now: DateTime<Utc>) -> Result<Option<String>, AlertError> {
        let mut alerts = self.cat.alerts()?;
        let mut forget: Vec<String> = alerts
            .iter()
            .filter(|a| route::finished(a))
            .map(|a| a.key.clone())
            .collect();
        if self.setup.email.is_none() && self.setup.rules.webhooks.is_empty() {
            if !forget.is_empty() {
                self.cat.save_notices(&[], &forget, &[])?;
            }
            return Ok(None);
        }
        let silences = self.cat.silences(Some(now))?;
        let rules = Rules::from(&self.setup.rules);
        // An alert whose root cause fires is told about in the root's mail.
        let folded = super::depend::folded(&alerts, &self.setup.rules.depends);
        let plan = route::plan(&alerts, now, &rules, |k| {
            folded.contains_key(k) || self.setup.muted(&silences, k, now)
        });
        let id = compose::message_id(&self.setup.sender(), now);
        let (quiet, notices): (Vec<_>, Vec<_>) = plan
            .into_iter()
            .partition(|(_, k)| *k == NoticeKind::Resolved && !self.setup.rules.send_resolved);
        let queued = if notices.is_empty() {
            Vec::new()
        } else {
            let shown = super::depend::with_affected(&alerts, &folded);
            self.notifications(&shown, &notices, &id, now)?
        };
        let mut save = Vec::new();
        for (i, k) in quiet.iter().chain(notices.iter()) {
            route::record(&mut alerts[*i], *k, now, &id);
            if route::finished(&alerts[*i]) {
                forget.push(alerts[*i].key.clone());
            } else {
                save.push(alerts[*i].clone());
            }
        }
        if save.is_empty() && forget.is_empty() && queued.is_empty() {
            return Ok(None);
        }
        self.cat.save_notices(&save, &forget, &queued)?;
        Ok(queued.into_iter().next().map(|m| m.subject))
    }

    /// One round: ingest, then flush.
    pub fn tick(&self, now: DateTime<Utc>) -> Result<Option<String>, AlertError> {
        self.ingest()?;
        self.flush(now)
    }
}

/// The running alerting (engine and outbox sender); dropping it stops both.
pub struct Alerting {
    setup: watch::Sender<Setup>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Alerting {
    /// Applies a new configuration (the outbox is retried with the new mail settings).
    pub fn reload(&self, setup: Setup) {
        let _ = self.setup.send(setup);
    }
}

impl Drop for Alerting {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn mailer_for(setup: &Setup) -> Option<Mailer> {
    let email = setup.email.clone()?;
    match Mailer::new(email) {
        Ok(m) => Some(m),
        Err(e) => {
            tracing::error!(error = %e, "alert mails cannot be sent; they wait in the outbox");
            None
        }
    }
}

fn period(setup: &Setup) -> Duration {
    (setup.rules.group_wait / 4).clamp(Duration::from_millis(100), Duration::from_secs(1))
}

/// Starts alerting on the current tokio runtime: the engine, the mail sender and one sender
/// per webhook (restarted when the webhooks change).
pub fn spawn(setup: Setup, cat: Arc<Catalog>) -> Alerting {
    let wake = Arc::new(Notify::new());
    let (queued_tx, queued_rx) = watch::channel(0u64);
    let (mailer_tx, mailer_rx) = watch::channel(mailer_for(&setup));
    let sender = tokio::spawn(outbox::run(cat.clone(), mailer_rx, wake.clone()));
    let (tx, mut rx) = watch::channel(setup);
    let engine = tokio::spawn(async move {
        let mut hooks = WebhookSenders::start(&cat, &[], &queued_rx);
        loop {
            let setup = rx.borrow_and_update().clone();
            if hooks.hooks() != setup.rules.webhooks.as_slice() {
                hooks = WebhookSenders::start(&cat, &setup.rules.webhooks, &queued_rx);
            }
            let pause = period(&setup);
            let what = match setup.email {
                Some(_) => "alert mail queued",
                None => "alert webhook notification queued",
            };
            let engine = Engine::new(cat.clone(), setup.clone());
            let mut digester = Digester::new(cat.clone(), setup);
            loop {
                let now = Utc::now();
                let rounds = [
                    (what, "alerting", engine.tick(now)),
                    ("digest queued", "the digest", digester.tick(now)),
                ];
                for (what, who, round) in rounds {
                    match round {
                        Ok(Some(subject)) => {
                            tracing::info!(%subject, "{what}");
                            wake.notify_one();
                            queued_tx.send_modify(|n| *n = n.wrapping_add(1));
                        }
                        Ok(None) => {}
                        Err(e) => tracing::error!(error = %e, "{who} failed this round"),
                    }
                }
                tokio::select! {
                    changed = rx.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        let _ = mailer_tx.send(mailer_for(&rx.borrow()));
                        break;
                    }
                    _ = tokio::time::sleep(pause) => {}
                }
            }
        }
    });
    Alerting {
        setup: tx,
        tasks: vec![sender, engine],
    }
}
