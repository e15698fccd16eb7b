//! `[[checks.ping]]` and `[checks.gateway]`: the target (`target` for ICMP echo or
//! `tcp = "host:port"`), the round (`count`, `probe_interval`, `probe_timeout`, which must fit
//! in the check's timeout) and the thresholds (loss in percent, p95 round-trip time).

use super::defaults;
use super::raw_checks::{RawGateway, RawPercent, RawPing};
use super::resolve::Ctx;
use super::resolve_checks::limits;
use super::resolve_probes::address;
use super::span::KeyPath;
use crate::health::ping::round::Thresholds;
use crate::health::ping::{Spec, Target};
use crate::health::state::Limits;
use crate::health::{inner_budget, CheckSpec, ProbeSpec};
use std::net::IpAddr;
use std::time::Duration;

/// The name of the automatic gateway check (reserved for it).
pub(super) const GATEWAY: &str = "gateway";

/// One `[[checks.ping]]` whose check times out after `timeout`.
pub(super) fn ping(cx: &mut Ctx, c: &RawPing, timeout: Duration, q: &KeyPath) -> Option<ProbeSpec> {
    let target = match (&c.target, &c.tcp) {
        (Some(_), Some(_)) => {
            cx.error(
                &q.key("tcp"),
                "both `target` and `tcp` are set",
                "ping a host with ICMP (target = \"192.0.2.1\") or time TCP connects (tcp = \"192.0.2.1:22\"), not both",
            );
            None
        }
        (None, None) => {
            cx.missing(
                &q.key("target"),
                "target = \"192.0.2.1\" (a host name or IPv4/IPv6 address), or tcp = \"host:port\"",
            );
            None
        }
        (Some(t), None) => host(cx, t, &q.key("target")).map(Target::Icmp),
        (None, Some(a)) => address(cx, Some(a), &q.key("tcp")).map(Target::Tcp),
    };
    let spec = round(cx, c, target, defaults::PING_LOSS, timeout, q)?;
    Some(ProbeSpec::Ping(spec))
}

/// `[checks.gateway]`: the automatic ping of the default gateway, on unless `enabled = false`.
pub(super) fn gateway(
    cx: &mut Ctx,
    r: Option<&RawGateway>,
    interval: Duration,
    timeout: Duration,
    p: &KeyPath,
) -> Option<CheckSpec> {
    let g = r.cloned().unwrap_or_default();
    if g.enabled == Some(false) {
        return None;
    }
    let interval = g.interval.unwrap_or(interval);
    if interval < defaults::CHECK_INTERVAL_MIN {
        cx.error(
            &p.key("interval"),
            "the interval is shorter than 1s",
            "e.g. interval = \"30s\"",
        );
    }
    let timeout = g.timeout.unwrap_or(timeout).min(interval);
    let as_ping = RawPing {
        count: g.count,
        probe_interval: g.probe_interval,
        probe_timeout: g.probe_timeout,
        loss_warn: g.loss_warn.clone(),
        loss_crit: g.loss_crit.clone(),
        rtt_warn: g.rtt_warn,
        rtt_crit: g.rtt_crit,
        ..RawPing::default()
    };
    let spec = round(
        cx,
        &as_ping,
        Some(Target::Gateway),
        defaults::GATEWAY_LOSS,
        timeout,
        p,
    )?;
    Some(CheckSpec {
        name: GATEWAY.into(),
        interval,
        hold: g.hold.unwrap_or(defaults::GATEWAY_HOLD),
        timeout,
        probe: ProbeSpec::Ping(spec),
    })
}

/// The round and thresholds of a ping table, checked against the check's `timeout`.
fn round(
    cx: &mut Ctx,
    c: &RawPing,
    target: Option<Target>,
    loss_default: (f64, f64),
    timeout: Duration,
    q: &KeyPath,
) -> Option<Spec> {
    let count = c.count.unwrap_or(defaults::PING_COUNT);
    if !(1..=defaults::PING_COUNT_MAX).contains(&count) {
        cx.error(
            &q.key("count"),
            format!(
                "count = {count} is not between 1 and {}",
                defaults::PING_COUNT_MAX
            ),
            "e.g. count = 5 probes per round",
        );
    }
    let spacing = c.probe_interval.unwrap_or(defaults::PING_PROBE_INTERVAL);
    if spacing < defaults::PING_PROBE_INTERVAL_MIN {
        cx.error(
            &q.key("probe_interval"),
            format!("probe_interval {spacing:?} is shorter than 10ms"),
            "e.g. probe_interval = \"200ms\"",
        );
    }
    let wait = c.probe_timeout.unwrap_or(defaults::PING_PROBE_TIMEOUT);
    if wait.is_zero() {
        cx.error(
            &q.key("probe_timeout"),
            "probe_timeout is 0",
            "e.g. probe_timeout = \"1s\": how long a probe waits for its answer",
        );
    }
    let loss = Limits::above(
        percent(cx, c.loss_warn.as_ref(), &q.key("loss_warn")).unwrap_or(loss_default.0),
        percent(cx, c.loss_crit.as_ref(), &q.key("loss_crit")).unwrap_or(loss_default.1),
    );
    let loss = limits(cx, loss, None, None, &q.key("loss_warn"));
    let ms = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1000.0);
    let rtt = match (ms(c.rtt_warn), ms(c.rtt_crit)) {
        (None, None) => None,
        (w, cr) => {
            let none = Limits {
                warn: None,
                crit: None,
                ..Limits::above(0.0, 0.0)
            };
            Some(limits(cx, none, w, cr, &q.key("rtt_warn")))
        }
    };
    let mut spec = Spec {
        target: target?,
        count,
        spacing,
        wait,
        thresholds: Thresholds { loss, rtt },
    };
    let budget = inner_budget(timeout);
    let chosen = c.count.is_some() || c.probe_interval.is_some() || c.probe_timeout.is_some();
    if !chosen && spec.round_time() > budget {
        // The default round shrinks to fit a short `[checks] timeout` (the gateway check is on
        // by default: a config valid before it existed stays valid).
        let f = budget.as_secs_f64() / spec.round_time().as_secs_f64();
        spec.spacing = spec.spacing.mul_f64(f);
        spec.wait = spec.wait.mul_f64(f);
        // Rounding may leave it a nanosecond over (a 2 s interval refused its own default).
        let over = spec.round_time().saturating_sub(budget);
        spec.wait = spec.wait.saturating_sub(over);
    }
    if spec.round_time() > budget {
        cx.error(
            &q.key("count"),
            format!(
                "a round takes up to {:?} ((count - 1) × probe_interval + probe_timeout), more than the {budget:?} the check's timeout of {timeout:?} leaves it",
                spec.round_time()
            ),
            "lower count, probe_interval or probe_timeout, or raise timeout (and interval): a round may use 80 % of the timeout",
        );
    }
    Some(spec)
}

/// `loss_warn = "10%"` (or `10`): a percentage from 0 to 100.
fn percent(cx: &mut Ctx, raw: Option<&RawPercent>, p: &KeyPath) -> Option<f64> {
    const HINT: &str = "a percentage, e.g. loss_warn = \"10%\"";
    let v = match raw? {
        RawPercent::Number(n) => *n,
        RawPercent::Text(t) => match t.trim().strip_suffix('%').map(|n| n.trim().parse::<f64>()) {
            Some(Ok(v)) => v,
            _ => {
                cx.error(p, format!("`{t}` is not a percentage"), HINT);
                return None;
            }
        },
    };
    if !(0.0..=100.0).contains(&v) {
        cx.error(p, format!("{v}% is not between 0% and 100%"), HINT);
        return None;
    }
    Some(v)
}

/// A host name or an IPv4/IPv6 address (`[::1]` accepted).
fn host(cx: &mut Ctx, t: &str, p: &KeyPath) -> Option<String> {
    let bare = t.trim_start_matches('[').trim_end_matches(']');
    let name_ok = !bare.is_empty()
        && bare.len() <= 253
        && bare.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if bare.parse::<IpAddr>().is_ok() || name_ok {
        return Some(t.to_string());
    }
    cx.error(
        p,
        format!("`{t}` is not a host name or an IP address"),
        "e.g. target = \"192.0.2.1\", \"2001:db8::1\" or \"db.example.com\"",
    );
    None
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    #[test]
    fn the_default_ping_round_fits_any_check_timeout() {
        for ms in (1_000..=2_000)
            .step_by(100)
            .chain([2_500, 3_000, 7_000, 9_000, 30_000])
        {
            let text = format!(
                "[storage]\ntype = \"local\"\npath = \"/tmp/x\"\n[checks]\ninterval = \"{ms}ms\"\n\
                 [checks.gateway]\n[[checks.ping]]\nname = \"p\"\ntarget = \"127.0.0.1\"\n"
            );
            let parsed = crate::config::parse(Path::new("t.toml"), &text);
            assert!(
                parsed.is_ok(),
                "interval {ms} ms: {}",
                parsed.err().unwrap()
            );
        }
    }
}
