//! The checks' thresholds as alert mails draw and word them ([`crate::alert::Thresholds`]),
//! read from the resolved health configuration.

use crate::alert::{ThresholdMap, Thresholds};
use crate::health::state::Limits;
use crate::health::{HealthConfig, ProbeSpec};

fn t(l: &Limits, unit: &'static str) -> Thresholds {
    Thresholds {
        warn: l.warn,
        crit: l.crit,
        high_is_bad: l.high_is_bad,
        unit,
    }
}

/// Host checks by kind (`disk`, `inodes` stand for every mount's check), configured checks by
/// name. A ping check's value is its loss: its lines are the loss thresholds (the round-trip
/// time it is also judged on is in its detail).
pub fn thresholds(h: &HealthConfig) -> ThresholdMap {
    let mut m = ThresholdMap::new();
    let host = &h.host;
    for (name, c, unit) in [
        ("cpu", &host.cpu, "%"),
        ("load", &host.load, ""),
        ("memory", &host.memory, "%"),
        ("swap", &host.swap, "%"),
    ] {
        if let Some(c) = c {
            m.insert(name.into(), t(&c.limits, unit));
        }
    }
    if let Some(d) = &host.disk {
        m.insert("disk".into(), t(&d.space, "%"));
        m.insert("inodes".into(), t(&d.inodes, "%"));
    }
    for c in h.checks.iter().chain(&h.gateway) {
        let th = match &c.probe {
            ProbeSpec::Http(s) => s.latency.as_ref().map(|l| t(l, "ms")),
            ProbeSpec::Rate(s) => Some(t(&s.limits, "")),
            ProbeSpec::Tls(s) => Some(t(&s.days, "days")),
            ProbeSpec::Mysql(s) => Some(t(&s.connections, "%")),
            ProbeSpec::Log(s) => Some(t(&s.limits, "")),
            ProbeSpec::Ping(s) => Some(t(&s.thresholds.loss, "%")),
            _ => None,
        };
        if let Some(th) = th {
            m.insert(c.name.clone(), th);
        }
    }
    m
}
