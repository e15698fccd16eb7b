//! `[checks]` and `[metrics]`: host check thresholds (on by default, each overridable or
//! `enabled = false`), the configured `[[checks.KIND]]` lists, and one automatic backup
//! freshness check per backup job — resolved into `health::HealthConfig`.

use super::raw_checks::*;
use super::resolve::{secret_file, valid_name, Ctx};
use super::span::KeyPath;
use super::{MysqlEndpoint, MysqlJob, Schedule, Zone};
use crate::health::host::{default_check, HostCheck, HostConfig};
use crate::health::state::Limits;
use crate::health::{self, disk::DiskConfig, CheckSpec, HealthConfig, ProbeSpec};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Names the host checks use; configured checks cannot take them.
const RESERVED: &[&str] = &["cpu", "load", "memory", "swap", "disk", "inodes"];

pub(super) fn checks(
    cx: &mut Ctx,
    raw: Option<&RawChecks>,
    jobs: &[MysqlJob],
    media: &[super::MediaJob],
    zone: Zone,
    p: &KeyPath,
) -> HealthConfig {
    let empty = RawChecks::default();
    let r = raw.unwrap_or(&empty);
    let interval = r.interval.unwrap_or(Duration::from_secs(30));
    if interval < Duration::from_secs(1) {
        cx.error(
            &p.key("interval"),
            "the interval is shorter than 1s",
            "e.g. interval = \"30s\"",
        );
    }
    let timeout = r.timeout.unwrap_or(Duration::from_secs(10)).min(interval);
    let host = HostConfig {
        cpu: host_check(cx, "cpu", r.cpu, &p.key("cpu")),
        load: host_check(cx, "load", r.load, &p.key("load")),
        memory: host_check(cx, "memory", r.memory, &p.key("memory")),
        swap: host_check(cx, "swap", r.swap, &p.key("swap")),
        disk: disk(cx, r.disk.as_ref(), &p.key("disk")),
    };
    let mut b = Builder {
        cx,
        interval,
        timeout,
        seen: Vec::new(),
        out: Vec::new(),
    };
    for (i, c) in r.tcp.iter().enumerate() {
        let q = p.key("tcp").index(i);
        let probe = address(b.cx, c.address.as_deref(), &q.key("address"))
            .map(|address| ProbeSpec::Tcp(health::tcp::Spec { address }));
        b.add(&q, (&c.name, c.interval, c.hold, c.timeout), probe);
    }
    for (i, c) in r.http.iter().enumerate() {
        let q = p.key("http").index(i);
        let probe = http(b.cx, c, &q);
        b.add(&q, (&c.name, c.interval, c.hold, c.timeout), probe);
    }
    for (i, c) in r.tls.iter().enumerate() {
        let q = p.key("tls").index(i);
        let probe = tls(b.cx, c, &q);
        b.add(&q, (&c.name, c.interval, c.hold, c.timeout), probe);
    }
    for (i, c) in r.service.iter().enumerate() {
        let q = p.key("service").index(i);
        let unit = c
            .unit
            .clone()
            .or_else(|| c.name.as_ref().map(|n| format!("{n}.service")));
        let probe = unit.map(|unit| {
            ProbeSpec::Service(health::service::Spec {
                unit,
                restart: c.restart.unwrap_or(false),
                max_restarts: c.max_restarts.unwrap_or(3),
            })
        });
        b.add(&q, (&c.name, c.interval, c.hold, c.timeout), probe);
    }
    for (i, c) in r.process.iter().enumerate() {
        let q = p.key("process").index(i);
        let probe = process(b.cx, c, &q);
        b.add(&q, (&c.name, c.interval, c.hold, c.timeout), probe);
    }
    for (i, c) in r.mysql.iter().enumerate() {
        let q = p.key("mysql").index(i);
        let probe = mysql(b.cx, c, jobs, &q);
        b.add(&q, (&c.name, c.interval, c.hold, c.timeout), probe);
    }
    for (i, c) in r.log.iter().enumerate() {
        let q = p.key("log").index(i);
        let probe = log(b.cx, c, &q);
        b.add(&q, (&c.name, c.interval, c.hold, c.timeout), probe);
    }
    for (i, c) in r.rate.iter().enumerate() {
        let q = p.key("rate").index(i);
        let probe = rate(b.cx, c, &q);
        b.add(&q, (&c.name, c.interval, c.hold, c.timeout), probe);
    }
    let grace = r.backup_grace.unwrap_or(Duration::from_secs(3600));
    let mut out = b.out;
    let backup_jobs = jobs
        .iter()
        .map(|j| (&j.name, &j.schedule, "mysql"))
        .chain(media.iter().map(|j| (&j.name, &j.schedule, "media")));
    for (name, schedule, kind) in backup_jobs {
        out.push(CheckSpec {
            name: format!("backup:{name}"),
            interval: interval.max(Duration::from_secs(60)),
            hold: Duration::ZERO,
            timeout,
            probe: ProbeSpec::Backup(health::backup::Spec {
                job: name.clone(),
                kind: kind.into(),
                period: period(schedule, zone),
                grace,
            }),
        });
    }
    HealthConfig {
        interval,
        timeout,
        host,
        checks: out,
    }
}

/// The longest gap between the next few slots of a schedule.
pub(super) fn period(s: &Schedule, zone: Zone) -> Duration {
    let mut t = chrono::Utc::now();
    let mut longest = Duration::ZERO;
    let Some(mut prev) = s.next_after(t, zone) else {
        return Duration::from_secs(86_400);
    };
    for _ in 0..16 {
        t = prev;
        let Some(next) = s.next_after(t, zone) else {
            break;
        };
        longest = longest.max((next - prev).to_std().unwrap_or_default());
        prev = next;
    }
    longest
}

struct Builder<'c, 'a> {
    cx: &'c mut Ctx<'a>,
    interval: Duration,
    timeout: Duration,
    seen: Vec<(String, KeyPath)>,
    out: Vec<CheckSpec>,
}

type Common<'r> = (
    &'r Option<String>,
    Option<Duration>,
    Option<Duration>,
    Option<Duration>,
);

impl Builder<'_, '_> {
    fn add(
        &mut self,
        q: &KeyPath,
        (name, interval, hold, timeout): Common,
        probe: Option<ProbeSpec>,
    ) {
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
                    "pick another name, e.g. `{n}-app`",
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
        if interval < Duration::from_secs(1) {
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
                hold: hold.unwrap_or(Duration::ZERO),
                timeout,
                probe,
            });
        }
    }
}

fn host_check(cx: &mut Ctx, kind: &str, r: Option<RawHostCheck>, p: &KeyPath) -> Option<HostCheck> {
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
fn limits(cx: &mut Ctx, d: Limits, warn: Option<f64>, crit: Option<f64>, p: &KeyPath) -> Limits {
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

fn address(cx: &mut Ctx, a: Option<&str>, p: &KeyPath) -> Option<String> {
    let Some(a) = a else {
        cx.missing(p, "address = \"127.0.0.1:3306\" (host:port)");
        return None;
    };
    match a.rsplit_once(':') {
        Some((h, port)) if !h.is_empty() && port.parse::<u16>().is_ok_and(|n| n > 0) => {
            Some(a.to_string())
        }
        _ => {
            cx.error(
                p,
                format!("`{a}` is not host:port"),
                "e.g. \"127.0.0.1:443\" or \"example.com:443\" ([::1]:443 for IPv6)",
            );
            None
        }
    }
}

fn http(cx: &mut Ctx, c: &RawHttp, q: &KeyPath) -> Option<ProbeSpec> {
    let url = match &c.url {
        None => {
            cx.missing(&q.key("url"), "url = \"https://shop.example.com/health\"");
            None
        }
        Some(u) => match reqwest::Url::parse(u) {
            Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => Some(u.clone()),
            Ok(_) => {
                cx.error(
                    &q.key("url"),
                    format!("`{u}` is not an http(s) URL"),
                    "use http:// or https://",
                );
                None
            }
            Err(e) => {
                cx.error(
                    &q.key("url"),
                    format!("`{u}` is not a URL: {e}"),
                    "e.g. url = \"https://shop.example.com/health\"",
                );
                None
            }
        },
    };
    let method = c
        .method
        .clone()
        .unwrap_or_else(|| "GET".into())
        .to_ascii_uppercase();
    if !["GET", "HEAD", "POST", "PUT", "OPTIONS", "DELETE", "PATCH"].contains(&method.as_str()) {
        cx.error(
            &q.key("method"),
            format!("unknown HTTP method `{method}`"),
            "GET, HEAD, POST, PUT, OPTIONS, DELETE or PATCH",
        );
    }
    let status = match &c.status {
        None => Vec::new(),
        Some(OneOrMany::One(s)) => vec![*s],
        Some(OneOrMany::Many(v)) => v.clone(),
    };
    if let Some(s) = status.iter().find(|s| !(100..600).contains(*s)) {
        cx.error(
            &q.key("status"),
            format!("{s} is not an HTTP status code"),
            "e.g. status = 200 or status = [200, 301]",
        );
    }
    let ms = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1000.0);
    let latency = match (ms(c.latency_warn), ms(c.latency_crit)) {
        (None, None) => None,
        (w, c2) => Some(limits(
            cx,
            Limits {
                warn: None,
                crit: None,
                ..Limits::above(0.0, 0.0)
            },
            w,
            c2,
            &q.key("latency_warn"),
        )),
    };
    Some(ProbeSpec::Http(health::http::Spec {
        url: url?,
        method,
        status,
        body: c.body.clone(),
        latency,
        tls_verify: c.tls_verify.unwrap_or(true),
    }))
}

fn tls(cx: &mut Ctx, c: &RawTls, q: &KeyPath) -> Option<ProbeSpec> {
    let address = address(cx, c.address.as_deref(), &q.key("address"))?;
    let host = address
        .rsplit_once(':')
        .map(|(h, _)| h.trim_matches(|c| c == '[' || c == ']').to_string())
        .unwrap_or_default();
    let days = limits(
        cx,
        Limits::below(14.0, 7.0),
        c.warn_days,
        c.crit_days,
        &q.key("warn_days"),
    );
    Some(ProbeSpec::Tls(health::tls::Spec {
        address,
        server_name: c.server_name.clone().unwrap_or(host),
        days,
    }))
}

fn absolute(p: &Path) -> PathBuf {
    std::env::current_dir()
        .map(|d| d.join(p))
        .unwrap_or_else(|_| p.to_path_buf())
}

fn process(cx: &mut Ctx, c: &RawProcess, q: &KeyPath) -> Option<ProbeSpec> {
    let target = match (&c.process, &c.pidfile) {
        (Some(_), Some(_)) => {
            cx.error(
                &q.key("pidfile"),
                "both `process` and `pidfile` are set",
                "look a process up by name or by pidfile, not both",
            );
            return None;
        }
        (_, Some(f)) => health::process::Target::Pidfile(absolute(f)),
        (Some(n), None) => health::process::Target::Name(n.clone()),
        (None, None) => health::process::Target::Name(c.name.clone()?),
    };
    let min = c.min.unwrap_or(1);
    if c.max.is_some_and(|m| m < min) {
        cx.error(
            &q.key("max"),
            "max is below min",
            "max must be at least min (default 1)",
        );
    }
    Some(ProbeSpec::Process(health::process::Spec {
        target,
        min,
        max: c.max,
    }))
}

fn mysql(cx: &mut Ctx, c: &RawMysqlCheck, jobs: &[MysqlJob], q: &KeyPath) -> Option<ProbeSpec> {
    let connections = limits(cx, Limits::above(80.0, 90.0), c.warn, c.crit, q);
    let own = c.host.is_some()
        || c.port.is_some()
        || c.socket.is_some()
        || c.user.is_some()
        || c.password_file.is_some();
    let (endpoint, user, password) = if let Some(j) = &c.job {
        if own {
            cx.error(&q.key("job"), "`job` and connection settings are both set", "use the job's server and credentials, or give host/socket/user/password_file, not both");
        }
        let Some(job) = jobs.iter().find(|x| &x.name == j) else {
            let names: Vec<&str> = jobs.iter().map(|x| x.name.as_str()).collect();
            cx.error(
                &q.key("job"),
                format!("no [[mysql]] job named `{j}`"),
                format!("jobs: {}", names.join(", ")),
            );
            return None;
        };
        (job.endpoint.clone(), job.user.clone(), job.password.clone())
    } else {
        let ep = match &c.socket {
            Some(s) if c.host.is_some() || c.port.is_some() => {
                cx.error(
                    &q.key("socket"),
                    "both `socket` and `host`/`port` are set",
                    "use either socket or host and port",
                );
                MysqlEndpoint::Socket(s.clone())
            }
            Some(s) => MysqlEndpoint::Socket(s.clone()),
            None => MysqlEndpoint::Tcp {
                host: c.host.clone().unwrap_or_else(|| "127.0.0.1".into()),
                port: c.port.unwrap_or(3306),
            },
        };
        let password = c
            .password_file
            .as_ref()
            .and_then(|f| secret_file(cx, f, &q.key("password_file")));
        (ep, c.user.clone(), password)
    };
    Some(ProbeSpec::Mysql(health::mysql::Spec {
        endpoint,
        user,
        password,
        connections,
    }))
}

fn regex(cx: &mut Ctx, pattern: Option<&str>, p: &KeyPath) -> Option<regex::Regex> {
    match regex::Regex::new(pattern?) {
        Ok(r) => Some(r),
        Err(e) => {
            let msg = e
                .to_string()
                .lines()
                .last()
                .unwrap_or("invalid")
                .trim()
                .to_string();
            cx.error(
                p,
                format!("invalid regular expression: {msg}"),
                "Rust regex syntax; e.g. pattern = \"(ERROR|CRITICAL)\"",
            );
            None
        }
    }
}

fn log(cx: &mut Ctx, c: &RawLog, q: &KeyPath) -> Option<ProbeSpec> {
    let path = c.path.as_deref().map(absolute);
    if path.is_none() {
        cx.missing(
            &q.key("path"),
            "path = \"/var/www/shop/storage/logs/laravel.log\"",
        );
    }
    if c.pattern.is_none() {
        cx.missing(&q.key("pattern"), "pattern = \"\\\\.(ERROR|CRITICAL):\"");
    }
    let pattern = regex(cx, c.pattern.as_deref(), &q.key("pattern"));
    let warn = c.warn.unwrap_or(1) as f64;
    let crit = c.crit.map(|x| x as f64);
    let limits = limits(
        cx,
        Limits {
            crit: None,
            hysteresis: 0.0,
            ..Limits::above(warn, 0.0)
        },
        Some(warn),
        crit,
        q,
    );
    Some(ProbeSpec::Log(health::logfile::Spec {
        path: path?,
        pattern: pattern?,
        window: c.window.unwrap_or(Duration::from_secs(300)),
        limits,
    }))
}

fn rate(cx: &mut Ctx, c: &RawRate, q: &KeyPath) -> Option<ProbeSpec> {
    let path = c.path.as_deref().map(absolute);
    if path.is_none() {
        cx.missing(&q.key("path"), "path = \"/var/log/nginx/access.log\"");
    }
    let pattern = match &c.pattern {
        Some(p) => Some(regex(cx, Some(p), &q.key("pattern"))?),
        None => None,
    };
    if c.warn.is_none() && c.crit.is_none() {
        cx.missing(
            &q.key("warn"),
            "warn = 600: requests per window that deserve a look",
        );
    }
    let l = Limits {
        warn: None,
        crit: None,
        hysteresis: 0.1,
        ..Limits::above(0.0, 0.0)
    };
    let limits = limits(cx, l, c.warn.map(|x| x as f64), c.crit.map(|x| x as f64), q);
    Some(ProbeSpec::Rate(health::rate::Spec {
        path: path?,
        pattern,
        window: c.window.unwrap_or(Duration::from_secs(60)),
        limits,
        top: c.top.unwrap_or(5),
    }))
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
