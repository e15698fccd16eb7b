//! `[heartbeat]`: a dead-man's switch outward. While this host is healthy the agent pings a URL
//! every `interval`; when a check is CRIT or a job's last run failed it pings `<url>/fail` with a
//! short text naming them. If the server, the agent or its network dies the pings stop, and the
//! outside service (Healthchecks.io, Uptime Kuma, a cron monitor) alerts: the one failure the
//! agent cannot report itself. Jobs may have their own `ping_url`: `/start` when a run starts,
//! the URL on success, `/fail` with the error on failure, as borgmatic's hooks do.
//!
//! Two URL styles: Healthchecks.io (`<url>`, `<url>/start`, `<url>/fail`, a text body) and
//! Uptime Kuma push URLs (`…/api/push/<token>`: `?status=up|down&msg=…`), told apart by that path.
//! A failed ping is recorded in the catalog (`opsagent status` shows it), logged once per
//! outage, retried sooner than the interval, and never stops anything else. The URL holds a
//! token: it is never logged, only its scheme and host.

use crate::catalog::{Catalog, RunStatus};
use crate::log_throttle::{Repeated, Report};
use crate::secret::Secret;
use chrono::Utc;
use std::collections::HashSet;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::watch;

/// How soon a failed periodic ping is tried again (at most the interval).
pub const RETRY: Duration = Duration::from_secs(15);
/// Longest text sent with a `/fail` ping.
pub const MAX_BODY: usize = 10 * 1024;
/// Deadline of one ping.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// A URL to ping; its path and query are a secret (they authenticate the pings).
#[derive(Debug, Clone, PartialEq)]
pub struct PingUrl(pub Secret);

impl PingUrl {
    /// `scheme://host/…`, for messages and the catalog.
    pub fn describe(&self) -> String {
        match reqwest::Url::parse(self.0.expose()) {
            Ok(u) => format!("{}://{}/…", u.scheme(), u.host_str().unwrap_or("?")),
            Err(_) => "(invalid URL)".into(),
        }
    }

    fn is_kuma(&self) -> bool {
        self.0.expose().contains("/api/push/")
    }

    /// The request for `signal`.
    fn request(&self, client: &reqwest::Client, signal: &Signal) -> reqwest::RequestBuilder {
        let base = self.0.expose().trim_end_matches('/');
        if self.is_kuma() {
            let (status, msg) = match signal {
                Signal::Ok => ("up", "OK"),
                Signal::Start => ("up", "started"),
                Signal::Fail(text) => ("down", text.as_str()),
            };
            let msg: String = msg.chars().take(250).collect();
            return match reqwest::Url::parse(base) {
                Ok(mut u) => {
                    u.query_pairs_mut()
                        .append_pair("status", status)
                        .append_pair("msg", &msg);
                    client.get(u)
                }
                Err(_) => client.get(base),
            };
        }
        match signal {
            Signal::Ok => client.get(base),
            Signal::Start => client.get(format!("{base}/start")),
            Signal::Fail(text) => client
                .post(format!("{base}/fail"))
                .body(truncate(text, MAX_BODY)),
        }
    }
}

/// `[heartbeat]`, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct HeartbeatConfig {
    /// Where to ping.
    pub url: PingUrl,
    /// How often.
    pub interval: Duration,
    /// The configured jobs (a removed job's old failure does not count).
    pub jobs: Vec<String>,
}

/// What a ping says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// All is well.
    Ok,
    /// A job run starts.
    Start,
    /// Something is wrong: what, in a few lines.
    Fail(String),
}

impl Signal {
    fn kind(&self) -> &'static str {
        match self {
            Signal::Ok => "ok",
            Signal::Start => "start",
            Signal::Fail(_) => "fail",
        }
    }
}

/// A ping that did not get through.
#[derive(Debug, thiserror::Error)]
#[error("ping to {target} failed: {cause}")]
pub struct PingError {
    /// Where (without its secret part).
    pub target: String,
    /// What went wrong.
    pub cause: String,
}

fn client() -> reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .timeout(TIMEOUT)
                .user_agent(concat!("opsagent/", env!("CARGO_PKG_VERSION")))
                .build()
                .unwrap_or_default()
        })
        .clone()
}

/// Sends one ping; any 2xx answer counts as delivered. The answer's body is not read.
pub async fn ping(url: &PingUrl, signal: &Signal) -> Result<(), PingError> {
    let fail = |cause: String| PingError {
        target: url.describe(),
        cause,
    };
    let resp = url
        .request(&client(), signal)
        .send()
        .await
        // The error text may quote the URL: keep only its kind.
        .map_err(|e| fail(reqwest_cause(&e)))?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(fail(format!("answered {}", resp.status())))
    }
}

fn reqwest_cause(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        format!("no answer within {}", humantime::format_duration(TIMEOUT))
    } else if e.is_connect() {
        "cannot connect".into()
    } else {
        "request failed".into()
    }
}

/// Pings `url` for job `job` and records the outcome under `job <name>`; a failure is logged.
pub async fn ping_job(url: &PingUrl, job: &str, signal: &Signal, catalog: &Catalog) {
    let result = ping(url, signal).await;
    let error = result.as_ref().err().map(|e| e.to_string());
    if let Some(e) = &error {
        tracing::warn!(job, "{e}");
    }
    let target = format!("job {job} ({})", url.describe());
    if let Err(e) = catalog.record_ping(&target, Utc::now(), signal.kind(), error.as_deref()) {
        tracing::warn!(error = %e, "cannot record the ping in the catalog");
    }
}

/// The running heartbeat; dropping it stops the pings.
pub struct Heartbeat {
    config: watch::Sender<Option<Arc<HeartbeatConfig>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Heartbeat {
    /// Applies a new `[heartbeat]` (or its removal).
    pub fn reload(&self, config: Option<HeartbeatConfig>) {
        let _ = self.config.send(config.map(Arc::new));
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the periodic heartbeat on the current runtime.
pub fn spawn(config: Option<HeartbeatConfig>, catalog: Arc<Catalog>) -> Heartbeat {
    let (tx, rx) = watch::channel(config.map(Arc::new));
    let task = tokio::spawn(beat(rx, catalog));
    Heartbeat { config: tx, task }
}

async fn beat(mut rx: watch::Receiver<Option<Arc<HeartbeatConfig>>>, catalog: Arc<Catalog>) {
    let mut outage = Repeated::default();
    loop {
        let Some(cfg) = rx.borrow_and_update().clone() else {
            if rx.changed().await.is_err() {
                return;
            }
            continue;
        };
        let signal = {
            let (catalog, jobs) = (catalog.clone(), cfg.jobs.clone());
            tokio::task::spawn_blocking(move || judge(&catalog, &jobs))
                .await
                .unwrap_or(Signal::Ok)
        };
        let result = ping(&cfg.url, &signal).await;
        let error = result.as_ref().err().map(|e| e.to_string());
        match &error {
            Some(e) => match outage.failed(std::time::Instant::now()) {
                Report::First => tracing::warn!(
                    "heartbeat: {e}; retrying every {}",
                    humantime::format_duration(RETRY.min(cfg.interval))
                ),
                Report::Again { skipped } => {
                    tracing::warn!("heartbeat: {e} ({skipped} more failed attempts not logged)")
                }
                Report::Quiet => {}
            },
            None => {
                if let Some((n, d)) = outage.succeeded(std::time::Instant::now()) {
                    tracing::info!(target = %cfg.url.describe(), failed = n, "heartbeat pings get through again after {}", humantime::format_duration(Duration::from_secs(d.as_secs())));
                }
            }
        }
        if let Err(e) = catalog.record_ping(
            &cfg.url.describe(),
            Utc::now(),
            signal.kind(),
            error.as_deref(),
        ) {
            tracing::warn!(error = %e, "cannot record the heartbeat in the catalog");
        }
        let wait = if error.is_some() {
            RETRY.min(cfg.interval)
        } else {
            cfg.interval
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            changed = rx.changed() => if changed.is_err() { return },
        }
    }
}

/// `Fail` naming every CRIT check and every configured job whose last run failed; else `Ok`.
pub fn judge(catalog: &Catalog, jobs: &[String]) -> Signal {
    let mut lines = Vec::new();
    match catalog.check_states() {
        Ok(states) => {
            for s in states.iter().filter(|s| s.state == "CRIT") {
                lines.push(format!("CRIT {}: {}", s.check, truncate(&s.detail, 300)));
            }
        }
        Err(e) => lines.push(format!("the catalog cannot be read: {e}")),
    }
    let mut seen = HashSet::new();
    for r in catalog.recent_runs(500).unwrap_or_default() {
        if r.status == RunStatus::Running || !jobs.contains(&r.job) {
            continue;
        }
        if !seen.insert((r.job.clone(), r.kind.clone())) {
            continue; // only the newest finished run of each job and kind counts
        }
        if matches!(r.status, RunStatus::Failed | RunStatus::Interrupted) {
            let why = r.error.as_deref().unwrap_or("no detail");
            lines.push(format!(
                "{} of job {} failed: {}",
                if r.kind == "verify" {
                    "drill"
                } else {
                    "backup"
                },
                r.job,
                truncate(why, 300)
            ));
        }
    }
    if lines.is_empty() {
        Signal::Ok
    } else {
        Signal::Fail(lines.join("\n"))
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_never_shows_and_kuma_urls_are_told_apart() {
        let hc = PingUrl(Secret::new("https://hc-ping.com/5f1e-secret-uuid"));
        assert_eq!(hc.describe(), "https://hc-ping.com/…");
        assert!(!hc.is_kuma());
        let kuma = PingUrl(Secret::new("http://kuma.lan:3001/api/push/Tok3n"));
        assert_eq!(kuma.describe(), "http://kuma.lan/…");
        assert!(kuma.is_kuma());
        let r = kuma
            .request(&reqwest::Client::new(), &Signal::Fail("disk full".into()))
            .build()
            .unwrap();
        assert_eq!(r.url().query(), Some("status=down&msg=disk+full"));
        let r = hc
            .request(&reqwest::Client::new(), &Signal::Fail("x".repeat(20_000)))
            .build()
            .unwrap();
        assert_eq!(r.url().path(), "/5f1e-secret-uuid/fail");
        assert!(r.body().unwrap().as_bytes().unwrap().len() <= MAX_BODY + 3);
    }

    #[test]
    fn judge_names_crit_checks_and_failed_last_runs_of_configured_jobs() {
        let dir = tempfile::tempdir().unwrap();
        let c = Catalog::open(&dir.path().join("c.sqlite")).unwrap();
        let jobs = vec!["main".to_string()];
        assert_eq!(judge(&c, &jobs), Signal::Ok);
        let t = Utc::now();
        let id = c.start_run("main", "mysql", "schedule", t).unwrap();
        c.finish_run(id, RunStatus::Failed, 0, Some("access denied"), t)
            .unwrap();
        let old = c.start_run("gone", "mysql", "schedule", t).unwrap();
        c.finish_run(old, RunStatus::Failed, 0, Some("x"), t)
            .unwrap();
        let Signal::Fail(text) = judge(&c, &jobs) else {
            panic!("a failed run must fail the heartbeat");
        };
        assert_eq!(text, "backup of job main failed: access denied");
        let id = c.start_run("main", "mysql", "schedule", t).unwrap();
        c.finish_run(id, RunStatus::Success, 1, None, t).unwrap();
        assert_eq!(judge(&c, &jobs), Signal::Ok, "the newest run counts");
    }
}
