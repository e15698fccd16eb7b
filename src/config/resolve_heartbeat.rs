//! `[heartbeat]` and the jobs' `ping_url`: URLs to an outside monitor.

use super::defaults;
use super::raw::RawHeartbeat;
use super::resolve::{secret_file, Ctx};
use super::span::KeyPath;
use crate::heartbeat::{HeartbeatConfig, PingUrl};
use crate::secret::Secret;
use std::time::Duration;

/// `[heartbeat]` of `raw`, when present, knowing the jobs.
pub(super) fn section(
    cx: &mut Ctx,
    raw: &super::raw::RawConfig,
    mysql: &[super::MysqlJob],
    media: &[super::MediaJob],
    root: &KeyPath,
) -> Option<HeartbeatConfig> {
    let jobs = mysql.iter().map(|j| j.name.clone());
    let jobs = jobs.chain(media.iter().map(|j| j.name.clone())).collect();
    heartbeat(cx, raw.heartbeat.as_ref()?, jobs, &root.key("heartbeat"))
}

/// `[heartbeat]`; `jobs` are the configured job names.
pub(super) fn heartbeat(
    cx: &mut Ctx,
    r: &RawHeartbeat,
    jobs: Vec<String>,
    p: &KeyPath,
) -> Option<HeartbeatConfig> {
    let url = match (&r.url, &r.url_file) {
        (Some(u), None) => ping_url(cx, Secret::new(u.clone()), &p.key("url")),
        (None, Some(f)) => {
            secret_file(cx, f, &p.key("url_file")).and_then(|s| ping_url(cx, s, &p.key("url_file")))
        }
        (Some(_), Some(_)) => {
            cx.error(
                &p.key("url_file"),
                "both `url` and `url_file` are set",
                "keep one: url_file keeps the URL's token out of the config file",
            );
            None
        }
        (None, None) => {
            cx.missing(
                &p.key("url"),
                "url = \"https://hc-ping.com/<uuid>\" (or url_file = \"/etc/opsagent/secrets/heartbeat\")",
            );
            None
        }
    };
    let interval = r.interval.unwrap_or(defaults::HEARTBEAT_INTERVAL);
    if interval < Duration::from_secs(1) {
        cx.error(
            &p.key("interval"),
            "the interval is under a second",
            "e.g. interval = \"1m\"; the monitor's grace time should be a few intervals",
        );
        return None;
    }
    Some(HeartbeatConfig {
        url: url?,
        interval,
        jobs,
    })
}

/// A job's `ping_url`.
pub(super) fn job_ping_url(cx: &mut Ctx, url: Option<&str>, p: &KeyPath) -> Option<PingUrl> {
    ping_url(cx, Secret::new(url?.to_string()), p)
}

fn ping_url(cx: &mut Ctx, url: Secret, p: &KeyPath) -> Option<PingUrl> {
    match reqwest::Url::parse(url.expose().trim()) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {
            Some(PingUrl(Secret::new(url.expose().trim().to_string())))
        }
        _ => {
            // The value is not quoted: it may hold a token.
            cx.error(
                p,
                "not an http(s) URL",
                "e.g. \"https://hc-ping.com/<uuid>\" or an Uptime Kuma push URL",
            );
            None
        }
    }
}
