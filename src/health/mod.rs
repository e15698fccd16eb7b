//! Health watch: host checks (CPU, load, memory, swap, disks, the default gateway's ping) and
//! configured checks (tcp, http, tls, service, process, mysql, log, rate, ping) plus backup
//! freshness, each sampled on its own
//! interval with a timeout, judged by the state machine in [`state`], stored in the catalog
//! (state, events, history) by [`runner`].
//!
//! This module owns its configuration types ([`HealthConfig`] and the per-kind `Spec`s);
//! `config` resolves the TOML into them. A new check kind is one file plus one arm in
//! [`Prober::probe`].

pub mod collector;
pub mod disk;
pub mod freshness;
pub mod history;
pub mod host;
pub mod http;
pub mod logfile;
pub mod mysql;
pub mod peer;
pub mod ping;
pub mod process;
pub mod procfs;
pub mod rate;
pub mod runner;
pub mod service;
pub mod state;
pub mod tcp;
pub mod tls;

use crate::catalog::Catalog;
use state::{Level, Limits};
use std::sync::{Arc, Mutex, TryLockError};
use std::time::Duration;

pub use runner::{spawn, spawn_with, HostSource, Watch};

/// `[checks]`, resolved.
#[derive(Debug, Clone)]
pub struct HealthConfig {
    /// Default sampling interval.
    pub interval: Duration,
    /// Default timeout of one check.
    pub timeout: Duration,
    /// Host checks.
    pub host: host::HostConfig,
    /// Configured and automatic (backup) checks.
    pub checks: Vec<CheckSpec>,
    /// The ping of the default gateway (`[checks.gateway]`), run only while the host has a
    /// default route when the watch (re)starts; `None`: off.
    pub gateway: Option<CheckSpec>,
}

impl HealthConfig {
    /// The checks to run now: the configured ones, plus the gateway ping when it is on and
    /// this host has a default gateway (read from `/proc/net/route`).
    pub fn active_checks(&self) -> Vec<CheckSpec> {
        let mut checks = self.checks.clone();
        if let Some(g) = &self.gateway {
            match ping::route::default_gateway() {
                Some(_) => checks.push(g.clone()),
                None => tracing::info!("no default gateway: the gateway ping check is off"),
            }
        }
        checks
    }
}

impl Default for HealthConfig {
    fn default() -> HealthConfig {
        HealthConfig {
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
            host: host::HostConfig::default(),
            checks: Vec::new(),
            gateway: None,
        }
    }
}

/// One configured check.
#[derive(Debug, Clone)]
pub struct CheckSpec {
    /// Unique name.
    pub name: String,
    /// Sampling interval.
    pub interval: Duration,
    /// A bad condition must hold this long (`for`).
    pub hold: Duration,
    /// Deadline of one sample; past it the sample is UNKNOWN.
    pub timeout: Duration,
    /// What to probe.
    pub probe: ProbeSpec,
}

/// What a configured check probes.
#[derive(Debug, Clone)]
pub enum ProbeSpec {
    /// `[[checks.tcp]]`
    Tcp(tcp::Spec),
    /// `[[checks.http]]`
    Http(http::Spec),
    /// `[[checks.tls]]`
    Tls(tls::Spec),
    /// `[[checks.service]]`
    Service(service::Spec),
    /// `[[checks.process]]`
    Process(process::Spec),
    /// `[[checks.mysql]]`
    Mysql(mysql::Spec),
    /// `[[checks.log]]`
    Log(logfile::Spec),
    /// `[[checks.rate]]`
    Rate(rate::Spec),
    /// Automatic, one per backup job: backup freshness (kind `backup`, module `freshness`).
    Backup(freshness::Spec),
    /// `[[checks.peer]]`: another agent's heartbeat object in the bucket.
    Peer(peer::Spec),
    /// `[[checks.ping]]` and the automatic `gateway` check.
    Ping(ping::Spec),
}

impl ProbeSpec {
    /// What one sample waits on, for a timeout message (`the read of /var/log/x.log`).
    pub fn waits_on(&self) -> String {
        match self {
            ProbeSpec::Tcp(t) => format!("the connection to {}", t.address),
            ProbeSpec::Tls(t) => format!("the TLS handshake with {}", t.address),
            ProbeSpec::Http(h) => format!("the request to {}", h.url),
            ProbeSpec::Log(l) => format!("the read of {}", l.path.display()),
            ProbeSpec::Rate(r) => format!("the read of {}", r.path.display()),
            ProbeSpec::Service(s) => format!("systemctl's answer about {}", s.unit),
            ProbeSpec::Peer(p) => format!("the heartbeat of {}", p.host),
            ProbeSpec::Ping(p) => format!("the ping round to {}", p.describe()),
            _ => "the check".into(),
        }
    }

    /// The kind's word (`tcp`, `http`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            ProbeSpec::Tcp(_) => "tcp",
            ProbeSpec::Http(_) => "http",
            ProbeSpec::Tls(_) => "tls",
            ProbeSpec::Service(_) => "service",
            ProbeSpec::Process(_) => "process",
            ProbeSpec::Mysql(_) => "mysql",
            ProbeSpec::Log(_) => "log",
            ProbeSpec::Rate(_) => "rate",
            ProbeSpec::Backup(_) => "backup",
            ProbeSpec::Peer(_) => "peer",
            ProbeSpec::Ping(_) => "ping",
        }
    }
}

/// What one sample found, before the state machine.
#[derive(Debug, Clone, PartialEq)]
pub enum Reading {
    /// A number judged against thresholds (with hysteresis, by the state machine).
    Value {
        /// The number.
        value: f64,
        /// Its thresholds.
        limits: Limits,
    },
    /// The probe decided the level itself (a port is closed: CRIT).
    Judged {
        /// The level.
        level: Level,
        /// A number worth keeping (latency), if any.
        value: Option<f64>,
        /// The threshold that decided it, if any.
        threshold: Option<f64>,
    },
    /// The check itself failed: UNKNOWN.
    Failed,
}

/// One sample of one check.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Check name (shared: a sampler keeps its names between ticks).
    pub check: Arc<str>,
    /// Check kind.
    pub kind: &'static str,
    /// What was found.
    pub reading: Reading,
    /// Detail for the operator.
    pub detail: String,
    /// The check's `for`.
    pub hold: Duration,
}

impl Sample {
    /// A sample whose level the probe decided.
    pub fn judged(spec: &CheckSpec, level: Level, value: Option<f64>, detail: String) -> Sample {
        Sample {
            check: Arc::from(spec.name.as_str()),
            kind: spec.probe.kind(),
            reading: Reading::Judged {
                level,
                value,
                threshold: None,
            },
            detail,
            hold: spec.hold,
        }
    }

    /// A numeric sample.
    pub fn value(spec: &CheckSpec, value: f64, limits: Limits, detail: String) -> Sample {
        Sample {
            check: Arc::from(spec.name.as_str()),
            kind: spec.probe.kind(),
            reading: Reading::Value { value, limits },
            detail,
            hold: spec.hold,
        }
    }

    /// A sample whose level the probe decided, with the threshold that decided it.
    pub fn decided(
        spec: &CheckSpec,
        level: Level,
        value: Option<f64>,
        threshold: Option<f64>,
        detail: String,
    ) -> Sample {
        let mut s = Sample::judged(spec, level, value, detail);
        s.reading = Reading::Judged {
            level,
            value,
            threshold,
        };
        s
    }

    /// The check could not run.
    pub fn failed(spec: &CheckSpec, detail: String) -> Sample {
        Sample {
            check: Arc::from(spec.name.as_str()),
            kind: spec.probe.kind(),
            reading: Reading::Failed,
            detail,
            hold: spec.hold,
        }
    }
}

/// The running probe of one configured check, with whatever it keeps between samples.
pub enum Prober {
    /// Stateless probes read their spec.
    Plain(Arc<CheckSpec>),
    /// HTTP holds the shared client (connection pool, TLS config).
    Http(Arc<CheckSpec>, reqwest::Client),
    /// Log and rate checks follow a file (read off the async workers, see [`Prober::probe`]).
    Log(Arc<CheckSpec>, Arc<Mutex<logfile::Watcher>>),
    /// Rate checks count requests per client.
    Rate(Arc<CheckSpec>, Arc<Mutex<rate::Watcher>>),
    /// Service checks remember their restarts.
    Service(Arc<CheckSpec>, service::Restarts),
    /// Backup freshness reads the catalog.
    Backup(Arc<CheckSpec>, Arc<Catalog>),
    /// Ping checks remember their last level (for the thresholds' hysteresis).
    Ping(Arc<CheckSpec>, Level),
}

impl Prober {
    /// Prepares the probe of `spec`.
    pub fn new(spec: CheckSpec, catalog: &Arc<Catalog>) -> Prober {
        let spec = Arc::new(spec);
        match &spec.probe {
            ProbeSpec::Http(h) => {
                let client = http::client(h);
                Prober::Http(spec, client)
            }
            ProbeSpec::Log(l) => {
                let w = logfile::Watcher::new(l);
                Prober::Log(spec, Arc::new(Mutex::new(w)))
            }
            ProbeSpec::Rate(r) => {
                let w = rate::Watcher::new(r);
                Prober::Rate(spec, Arc::new(Mutex::new(w)))
            }
            ProbeSpec::Service(_) => Prober::Service(spec, service::Restarts::default()),
            ProbeSpec::Backup(_) => Prober::Backup(spec, catalog.clone()),
            ProbeSpec::Ping(_) => Prober::Ping(spec, Level::Ok),
            _ => Prober::Plain(spec),
        }
    }

    /// The spec.
    pub fn spec(&self) -> &Arc<CheckSpec> {
        match self {
            Prober::Plain(s)
            | Prober::Http(s, _)
            | Prober::Log(s, _)
            | Prober::Rate(s, _)
            | Prober::Service(s, _)
            | Prober::Backup(s, _)
            | Prober::Ping(s, _) => s,
        }
    }

    /// Takes one sample (the caller applies the timeout). File reads run on the blocking
    /// pool: a slow disk or an odd file delays only its own check, never the async workers.
    pub async fn probe(&mut self) -> Sample {
        match self {
            Prober::Http(spec, client) => http::probe(spec, client).await,
            Prober::Log(spec, w) => off_runtime(spec, w, |w, s| w.probe(s)).await,
            Prober::Rate(spec, w) => off_runtime(spec, w, |w, s| w.probe(s)).await,
            Prober::Service(spec, r) => service::probe(spec, r).await,
            Prober::Backup(spec, cat) => freshness::probe(spec, cat.clone()).await,
            Prober::Ping(spec, last) => match &spec.probe {
                ProbeSpec::Ping(p) => ping::probe(spec, p, last).await,
                _ => Sample::failed(spec, "internal: not a ping check".into()),
            },
            Prober::Plain(spec) => match &spec.probe {
                ProbeSpec::Tcp(t) => tcp::probe(spec, t).await,
                ProbeSpec::Tls(t) => tls::probe(spec, t).await,
                ProbeSpec::Process(p) => process::probe(spec, p),
                ProbeSpec::Mysql(m) => mysql::probe(spec, m).await,
                ProbeSpec::Peer(p) => peer::probe(spec, p).await,
                _ => Sample::failed(spec, "internal: probe without its state".into()),
            },
        }
    }
}

/// Runs `probe` on the blocking pool. A read still running from an earlier sample (past its
/// timeout) holds the lock: this sample is UNKNOWN instead of queueing behind it.
async fn off_runtime<W: Send + 'static>(
    spec: &Arc<CheckSpec>,
    state: &Arc<Mutex<W>>,
    probe: fn(&mut W, &CheckSpec) -> Sample,
) -> Sample {
    let (spec2, state) = (spec.clone(), state.clone());
    let job = tokio::task::spawn_blocking(move || match state.try_lock() {
        Ok(mut w) => probe(&mut w, &spec2),
        // A panic in an earlier read: the state is still usable (at worst a line is lost).
        Err(TryLockError::Poisoned(p)) => probe(&mut p.into_inner(), &spec2),
        Err(TryLockError::WouldBlock) => Sample::failed(
            &spec2,
            "the previous read has not finished (the file or its disk is stuck)".into(),
        ),
    });
    job.await
        .unwrap_or_else(|e| Sample::failed(spec, format!("internal: the read failed: {e}")))
}

/// The part of a deadline a probe may spend on its own connection attempts, so it can report
/// "no answer" (CRIT) itself before the runner's timeout makes the sample UNKNOWN.
pub fn inner_budget(timeout: Duration) -> Duration {
    timeout.mul_f64(0.8)
}
