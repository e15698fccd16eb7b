//! `[checks]` and `[metrics]`: host check thresholds (on by default, each overridable or
//! `enabled = false`), the configured `[[checks.KIND]]` lists, and one automatic backup
//! freshness check per backup job — resolved into `health::HealthConfig`.

use super::defaults;
use super::raw_checks::*;
use super::resolve::{valid_name, Ctx};
use super::resolve_ping::{gateway as gateway_ping, GATEWAY};
use super::resolve_probes::{address, http, log, mysql, process, rate, service, tls};
use super::span::KeyPath;
use super::{MysqlJob, Zone};
use crate::health::host::{default_check, HostCheck, HostConfig};
use crate::health::state::Limits;
use crate::health::{self, disk::DiskConfig, CheckSpec, HealthConfig, ProbeSpec};
use std::time::Duration;

/// Names the host checks use; configured checks cannot take them.
const RESERVED: &[&str] = &["cpu", "load", "memory", "swap", "disk", "inodes", GATEWAY];

/// The keys every `[[checks.KIND]]` table has, for [`Builder::add`].
macro_rules! common {
    ($c:expr) => {
        (&$c.name, $c.interval, $c.hold, $c.timeout, &$c.depends_on)
    };
}

pub(super) fn checks(
    cx: &mut Ctx,
    raw: Option<&RawChecks>,
    jobs: &[MysqlJob],
    media: &[super::MediaJob],
    zone: Zone,
    storage: Option<&crate::storage::StorageSpec>,
    p: &KeyPath,
) -> (HealthConfig, super::resolve_depends::Depends) {
    let empty = RawChecks::default();
    let r = raw.unwrap_or(&empty);
    let interval = r.interval.unwrap_or(defaults::CHECK_INTERVAL);
    if interval < defaults::CHECK_INTERVAL_MIN {
        cx.error(
            &p.key("interval"),
            "the interval is shorter than 1s",
            "e.g. interval = \"30s\"",
        );
    }
    let timeout = r.timeout.unwrap_or(defaults::CHECK_TIMEOUT).min(interval);
    let host = HostConfig {
        cpu: host_check(cx, "cpu", r.cpu, &p.key("cpu")),
        load: host_check(cx, "load", r.load, &p.key("load")),
        memory: host_check(cx, "memory", r.memory, &p.key("memory")),
        swap: host_check(cx, "swap", r.swap, &p.key("swap")),
        disk: disk(cx, r.disk.as_ref(), &p.key("disk")),
    };
    let gateway = gateway_ping(cx, r.gateway.as_ref(), interval, timeout, &p.key(GATEWAY));
    let mut b = Builder {
        cx,
        interval,
        timeout,
        seen: Vec::new(),
        out: Vec::new(),
        deps: Vec::new(),
    };
    configured(&mut b, r, jobs, p);
    for (i, c) in r.peer.iter().enumerate() {
        let q = p.key("peer").index(i);
        let probe = super::resolve_peer::peer(b.cx, c, storage, &q);
        b.add(&q, common!(c), probe);
    }
    let (mut out, deps) = (b.out, b.deps);
    let grace = r.backup_grace.unwrap_or(defaults::BACKUP_GRACE);
    super::resolve_freshness::backup_checks(
        &mut out,
        (jobs, media),
        zone,
        grace,
        (interval, timeout),
    );
    let depends = super::resolve_depends::depends(cx, deps, &out, &r.mysql);
    let health = HealthConfig {
        interval,
        timeout,
        host,
        checks: out,
        gateway,
    };
    (health, depends)
}

/// The `[[checks.KIND]]` lists, in the order of the kinds.
fn configured(b: &mut Builder, r: &RawChecks, jobs: &[MysqlJob], p: &KeyPath) {
    for (i, c) in r.tcp.iter().enumerate() {
        let q = p.key("tcp").index(i);
        let probe = address(b.cx, c.address.as_deref(), &q.key("address"))
            .map(|address| ProbeSpec::Tcp(health::tcp::Spec { address }));
        b.add(&q, common!(c), probe);
    }
    for (i, c) in r.http.iter().enumerate() {
        let q = p.key("http").index(i);
        let probe = http(b.cx, c, &q);
        b.add(&q, common!(c), probe);
    }
    for (i, c) in r.tls.iter().enumerate() {
        let q = p.key("tls").index(i);
        let probe = tls(b.cx, c, &q);
        b.add(&q, common!(c), probe);
    }
    for (i, c) in r.service.iter().enumerate() {
        let q = p.key("service").index(i);
        let probe = service(c);
        b.add(&q, common!(c), probe);
    }
    for (i, c) in r.process.iter().enumerate() {
        let q = p.key("process").index(i);
        let probe = process(b.cx, c, &q);
        b.add(&q, common!(c), probe);
    }
    for (i, c) in r.mysql.iter().enumerate() {
        let q = p.key("mysql").index(i);
        let probe = mysql(b.cx, c, jobs, &q);
        b.add(&q, common!(c), probe);
    }
    for (i, c) in r.log.iter().enumerate() {
        let q = p.key("log").index(i);
        let probe = log(b.cx, c, &q);
        b.add(&q, common!(c), probe);
    }
    for (i, c) in r.rate.iter().enumerate() {
        let q = p.key("rate").index(i);
        let probe = rate(b.cx, c, &q);
        b.add(&q, common!(c), probe);
    }
    for (i, c) in r.ping.iter().enumerate() {
        let q = p.key("ping").index(i);
        let timeout = c
            .timeout
            .unwrap_or(b.timeout)
            .min(c.interval.unwrap_or(b.interval));
        let probe = super::resolve_ping::ping(b.cx, c, timeout, &q);
        b.add(&q, common!(c), probe);
    }
}

struct Builder<'c, 'a> {
    cx: &'c mut Ctx<'a>,
    interval: Duration,
    timeout: Duration,
    seen: Vec<(String, KeyPath)>,
    out: Vec<CheckSpec>,
    /// `depends_on` of each check: (check, names, where).
    deps: Vec<(String, Vec<String>, KeyPath)>,
}

type Common<'r> = (
    &'r Option<String>,
    Option<Duration>,
    Option<Duration>,
    Option<Duration>,
    &'r Option<Vec<String>>,
);

impl Builder<'_, '_> {
    fn add(
        &mut self,
        q: &KeyPath,
        (name, interval, hold, timeout, depends_on): Common,
        probe: Option<ProbeSpec>,
    ) {
        if let (Some(n), Some(d)) = (name, depends_on) {
            self.deps.push((n.clone(), d.clone(), q.key("depends_on")));
        }
        let name = match name {
            None => {
                self.cx.missing(
                    &q.key("name"),
                    "name = \"shop-web\": a short name for the check",
                );
                None
            }
            Some(n) if !valid_name(n, 64, true) => {
                self.cx.error(
                    &q.key("name"),
                    format!("`{n}` is not a valid check name"),
                    "use letters, digits, `.`, `-` and `_` (at most 64)",
                );
                None
            }
            Some(n) if RESERVED.contains(&n.as_str()) => {
                self.cx.error(
                    &q.key("name"),
                    format!("`{n}` is the name of a host check"),
                    format!("pick another name, e.g. `{n}-app`"),
                );
                None
            }
            Some(n) => {
                if let Some((_, first)) = self.seen.iter().find(|(s, _)| s == n) {
                    let first = first.to_string();
                    self.cx.error(
                        &q.key("name"),
                        format!("duplicate check name `{n}` (also used by `{first}`)"),
                        "every check needs its own name: states and alerts are keyed by it",
                    );
                }
                self.seen.push((n.clone(), q.clone()));
                Some(n.clone())
            }
        };
        let interval = interval.unwrap_or(self.interval);
        if interval < defaults::CHECK_INTERVAL_MIN {
            self.cx.error(
                &q.key("interval"),
                "the interval is shorter than 1s",
                "e.g. interval = \"30s\"",
            );
        }
        let timeout = timeout.unwrap_or(self.timeout).min(interval);
        if let (Some(name), Some(probe)) = (name, probe) {
            self.out.push(CheckSpec {
                name,
                interval,
                hold: hold.unwrap_or(defaults::HOLD),
                timeout,
                probe,
            });
        }
    }
}

pub(super) fn host_check(
    cx: &mut Ctx,
    kind: &str,
    r: Option<RawHostCheck>,
    p: &KeyPath,
) -> Option<HostCheck> {
    let d = default_check(kind);
    let r = r.unwrap_or_default();
    if r.enabled == Some(false) {
        return None;
    }
    let limits = limits(cx, d.limits, r.warn, r.crit, p);
    Some(HostCheck {
        limits,
        hold: r.hold.unwrap_or(d.hold),
    })
}

/// Thresholds over the defaults, checking that warn comes before crit.
pub(super) fn limits(
    cx: &mut Ctx,
    d: Limits,
    warn: Option<f64>,
    crit: Option<f64>,
    p: &KeyPath,
) -> Limits {
    let l = Limits {
        warn: warn.or(d.warn),
        crit: crit.or(d.crit),
        ..d
    };
    if let (Some(w), Some(c)) = (l.warn, l.crit) {
        let wrong = if l.high_is_bad { w > c } else { w < c };
        if wrong {
            let (word, hint) = if l.high_is_bad {
                ("above", "warn must be at most crit")
            } else {
                ("below", "here lower is worse: warn must be at least crit")
            };
            cx.error(&p.key("warn"), format!("warn {w} is {word} crit {c}"), hint);
        }
    }
    l
}

fn disk(cx: &mut Ctx, r: Option<&RawDiskCheck>, p: &KeyPath) -> Option<DiskConfig> {
    let d = DiskConfig::default();
    let Some(r) = r else { return Some(d) };
    if r.enabled == Some(false) {
        return None;
    }
    let space = limits(cx, d.space, r.warn, r.crit, p);
    let inodes = limits(
        cx,
        d.inodes,
        r.inodes_warn,
        r.inodes_crit,
        &p.key("inodes_warn"),
    );
    let full_within = match r.full_within {
        Some(z) if z.is_zero() => None,
        Some(x) => Some(x),
        None => d.full_within,
    };
    Some(DiskConfig {
        space,
        inodes,
        hold: r.hold.unwrap_or(d.hold),
        full_within,
        ignore: r.ignore.clone(),
    })
}

/// `[metrics] listen`.
pub(super) fn metrics(
    cx: &mut Ctx,
    r: Option<&RawMetrics>,
    p: &KeyPath,
) -> Option<std::net::SocketAddr> {
    let l = r?.listen.as_ref()?;
    match l.parse() {
        Ok(a) => Some(a),
        Err(_) => {
            cx.error(
                &p.key("listen"),
                format!("`{l}` is not an address:port"),
                "e.g. listen = \"127.0.0.1:9187\" (keep it on loopback)",
            );
            None
        }
    }
}
