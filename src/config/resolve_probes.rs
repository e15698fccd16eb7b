//! The probes of the configured `[[checks.KIND]]` lists: one function per kind, turning its raw
//! table into a `health::ProbeSpec` (the name, interval and hold are `resolve_checks`'s).

use super::defaults;
use super::raw_checks::*;
use super::resolve::{secret_file, Ctx};
use super::resolve_checks::limits;
use super::span::KeyPath;
use super::{MysqlEndpoint, MysqlJob};
use crate::health::state::Limits;
use crate::health::{self, ProbeSpec};
use std::path::{Path, PathBuf};

pub(super) fn address(cx: &mut Ctx, a: Option<&str>, p: &KeyPath) -> Option<String> {
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

pub(super) fn http(cx: &mut Ctx, c: &RawHttp, q: &KeyPath) -> Option<ProbeSpec> {
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
        .unwrap_or_else(|| defaults::HTTP_METHOD.into())
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
    let ms = |d: Option<std::time::Duration>| d.map(|d| d.as_secs_f64() * 1000.0);
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
        tls_verify: c.tls_verify.unwrap_or(defaults::HTTP_TLS_VERIFY),
    }))
}

pub(super) fn tls(cx: &mut Ctx, c: &RawTls, q: &KeyPath) -> Option<ProbeSpec> {
    let address = address(cx, c.address.as_deref(), &q.key("address"))?;
    let host = address
        .rsplit_once(':')
        .map(|(h, _)| h.trim_matches(|c| c == '[' || c == ']').to_string())
        .unwrap_or_default();
    let days = limits(
        cx,
        Limits::below(defaults::TLS_DAYS.0, defaults::TLS_DAYS.1),
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

pub(super) fn process(cx: &mut Ctx, c: &RawProcess, q: &KeyPath) -> Option<ProbeSpec> {
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
    let min = c.min.unwrap_or(defaults::PROCESS_MIN);
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

pub(super) fn mysql(
    cx: &mut Ctx,
    c: &RawMysqlCheck,
    jobs: &[MysqlJob],
    q: &KeyPath,
) -> Option<ProbeSpec> {
    let connections = limits(
        cx,
        Limits::above(defaults::MYSQL_CONNECTIONS.0, defaults::MYSQL_CONNECTIONS.1),
        c.warn,
        c.crit,
        q,
    );
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
                host: c
                    .host
                    .clone()
                    .unwrap_or_else(|| defaults::MYSQL_HOST.into()),
                port: c.port.unwrap_or(defaults::MYSQL_PORT),
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

pub(super) fn log(cx: &mut Ctx, c: &RawLog, q: &KeyPath) -> Option<ProbeSpec> {
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
    let warn = c.warn.unwrap_or(defaults::LOG_WARN) as f64;
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
        window: c.window.unwrap_or(defaults::LOG_WINDOW),
        limits,
    }))
}

pub(super) fn rate(cx: &mut Ctx, c: &RawRate, q: &KeyPath) -> Option<ProbeSpec> {
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
        hysteresis: defaults::RATE_HYSTERESIS,
        ..Limits::above(0.0, 0.0)
    };
    let limits = limits(cx, l, c.warn.map(|x| x as f64), c.crit.map(|x| x as f64), q);
    Some(ProbeSpec::Rate(health::rate::Spec {
        path: path?,
        pattern,
        window: c.window.unwrap_or(defaults::RATE_WINDOW),
        limits,
        top: c.top.unwrap_or(defaults::RATE_TOP),
    }))
}

/// `[[checks.service]]`: the unit (default `<name>.service`) and the restart policy.
pub(super) fn service(c: &RawService) -> Option<ProbeSpec> {
    let unit = c
        .unit
        .clone()
        .or_else(|| c.name.as_ref().map(|n| format!("{n}.service")))?;
    Some(ProbeSpec::Service(health::service::Spec {
        unit,
        restart: c.restart.unwrap_or(defaults::SERVICE_RESTART),
        max_restarts: c.max_restarts.unwrap_or(defaults::SERVICE_MAX_RESTARTS),
    }))
}
