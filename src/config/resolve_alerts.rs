//! `[alerts]`: grouping, reminders, resolved mails, the lowest severity, maintenance windows,
//! webhooks, the digest's schedule. (`[alerts.email]` is `resolve_email`.)

use super::defaults;
use super::raw::{RawAlerts, RawWebhook};
use super::resolve::{schedule, secret_file, valid_name, Ctx};
use super::span::KeyPath;
use crate::alert::silence::Maintenance;
use crate::alert::webhook::{WebhookFormat, WebhookSettings, WebhookUrl};
use crate::alert::{AlertConfig, MinSeverity};
use crate::secret::Secret;
use std::time::Duration;

pub(super) fn alerts(cx: &mut Ctx, raw: Option<&RawAlerts>, p: &KeyPath) -> AlertConfig {
    let mut c = AlertConfig::default();
    let Some(a) = raw else {
        return c;
    };
    c.group_wait = a.group_wait.unwrap_or(c.group_wait);
    c.group_interval = a.group_interval.unwrap_or(c.group_interval);
    c.repeat_interval = a.repeat_interval.unwrap_or(c.repeat_interval);
    c.send_resolved = a.send_resolved.unwrap_or(defaults::SEND_RESOLVED);
    if c.repeat_interval < c.group_interval {
        cx.error(
            &p.key("repeat_interval"),
            "repeat_interval is shorter than group_interval",
            "reminders come at most once per group_interval; e.g. repeat_interval = \"4h\"",
        );
    }
    if c.repeat_interval.is_zero() {
        cx.error(
            &p.key("repeat_interval"),
            "repeat_interval is zero",
            "e.g. \"4h\"",
        );
    }
    match a
        .min_severity
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("warn") | Some("warning") => {}
        Some("crit") | Some("critical") => c.min_severity = MinSeverity::Crit,
        Some(other) => cx.error(
            &p.key("min_severity"),
            format!("unknown severity `{other}`"),
            "use \"warn\" (WARN, UNKNOWN and CRIT alert) or \"crit\" (only CRIT)",
        ),
    }
    for (i, w) in a.webhook.iter().enumerate() {
        let wp = p.key("webhook").index(i);
        if let Some(w) = webhook_settings(cx, w, &wp) {
            if c.webhooks.iter().any(|o| o.name == w.name) {
                cx.error(
                    &wp.key("name"),
                    format!("duplicate webhook name `{}`", w.name),
                    "give each [[alerts.webhook]] its own name",
                );
            }
            c.webhooks.push(w);
        }
    }
    maintenance(cx, a, p, &mut c);
    if let Some(text) = a.digest.as_deref() {
        c.digest = schedule(cx, Some(text), &p.key("digest"));
        if a.email.is_none() && a.webhook.is_empty() {
            cx.warn(
                &p.key("digest"),
                "a digest is scheduled but there is no [alerts.email] or [[alerts.webhook]] to send it to",
                "add [alerts.email], or remove `digest`",
            );
        }
    }
    c
}

/// `[[alerts.maintenance]]`.
fn maintenance(cx: &mut Ctx, a: &RawAlerts, p: &KeyPath, c: &mut AlertConfig) {
    for (i, m) in a.maintenance.iter().enumerate() {
        let mp = p.key("maintenance").index(i);
        let sched = schedule(cx, m.schedule.as_deref(), &mp.key("schedule"));
        let duration = match m.duration {
            None => {
                cx.missing(
                    &mp.key("duration"),
                    "duration = \"2h\": how long each window lasts",
                );
                None
            }
            Some(d) if d.is_zero() => {
                cx.error(
                    &mp.key("duration"),
                    "the window lasts no time",
                    "e.g. duration = \"2h\"",
                );
                None
            }
            Some(d) => Some(d),
        };
        let checks = m
            .checks
            .clone()
            .unwrap_or_else(|| vec![defaults::MAINTENANCE_CHECKS.into()]);
        if checks.is_empty() {
            cx.error(
                &mp.key("checks"),
                "the list is empty: this window mutes nothing",
                "name checks (\"disk:/\", \"backup-run:main\", prefixes like \"disk:*\") or leave it out for all",
            );
        }
        if let (Some(schedule), Some(duration)) = (sched, duration) {
            c.maintenance.push(Maintenance {
                schedule,
                duration: duration.min(defaults::MAINTENANCE_MAX),
                checks,
            });
        }
    }
}

/// One `[[alerts.webhook]]`.
fn webhook_settings(cx: &mut Ctx, w: &RawWebhook, p: &KeyPath) -> Option<WebhookSettings> {
    let name = match w.name.as_deref() {
        None => {
            cx.missing(&p.key("name"), "name = \"ops-chat\"");
            None
        }
        Some(n) if !valid_name(n, 64, true) => {
            cx.error(
                &p.key("name"),
                format!("`{n}` is not a usable webhook name"),
                "use letters, digits, `.`, `-` and `_` (it appears in logs and status)",
            );
            None
        }
        Some(n) => Some(n.to_string()),
    };
    let url = webhook_url(cx, w, p);
    let format = match w.format.as_deref().unwrap_or(defaults::WEBHOOK_FORMAT) {
        "json" => Some(WebhookFormat::Json),
        "slack" | "mattermost" => Some(WebhookFormat::Slack),
        "ntfy" => Some(WebhookFormat::Ntfy),
        other => {
            cx.error(
                &p.key("format"),
                format!("unknown webhook format `{other}`"),
                "use \"json\" (a generic JSON document), \"slack\" (Slack and Mattermost incoming webhooks) or \"ntfy\"",
            );
            None
        }
    };
    let timeout = w.timeout.unwrap_or(defaults::WEBHOOK_TIMEOUT);
    if timeout < Duration::from_millis(100) || timeout > Duration::from_secs(300) {
        cx.error(
            &p.key("timeout"),
            "the timeout must be between 100ms and 5m",
            "e.g. timeout = \"10s\"",
        );
        return None;
    }
    Some(WebhookSettings {
        name: name?,
        url: url?,
        format: format?,
        timeout,
    })
}

/// `url` or `url_file`: an http(s) URL with a host. Its value is never quoted in a message:
/// it usually holds a token.
fn webhook_url(cx: &mut Ctx, w: &RawWebhook, p: &KeyPath) -> Option<WebhookUrl> {
    let (secret, at) = match (&w.url, &w.url_file) {
        (Some(u), None) => (Secret::new(u.clone()), p.key("url")),
        (None, Some(f)) => (secret_file(cx, f, &p.key("url_file"))?, p.key("url_file")),
        (Some(_), Some(_)) => {
            cx.error(
                &p.key("url_file"),
                "both `url` and `url_file` are set",
                "keep one: url_file keeps the URL's token out of the config file",
            );
            return None;
        }
        (None, None) => {
            cx.missing(
                &p.key("url"),
                "url = \"https://hooks.slack.com/services/…\" (or url_file = \"/etc/opsagent/secrets/webhook\")",
            );
            return None;
        }
    };
    let text = secret.expose().trim();
    match reqwest::Url::parse(text) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {
            Some(WebhookUrl(Secret::new(text.to_string())))
        }
        _ => {
            cx.error(
                &at,
                "not an http(s) URL",
                "e.g. \"https://hooks.slack.com/services/…\", \"https://ntfy.sh/<topic>\" or your receiver's URL",
            );
            None
        }
    }
}
