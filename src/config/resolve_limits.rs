//! Gentle backups: `max_upload_rate` / `max_download_rate` of a storage, and `[agent]`
//! `io_priority`, `nice` and `pause_when`.

use super::defaults;
use super::raw::{RawAgent, RawPauseWhen, RawStorage};
use super::resolve::Ctx;
use super::span::KeyPath;
use super::PauseWhen;
use crate::priority::{Cpu, IoClass, Priority};
use crate::storage::RateLimits;

/// The slowest rate accepted: below it one read or write of the smallest size (64 KiB) would
/// take more than a second.
const MIN_RATE: u64 = 64 << 10;

const RATE_HINT: &str =
    "a size per second, e.g. \"20 MiB/s\", \"500 KiB/s\", \"1 MB/s\" or \"100 Mbit/s\"; leave the key out for no limit";

/// Units of a rate, and bytes per unit.
const UNITS: &[(&str, f64)] = &[
    ("B", 1.0),
    ("KiB", 1024.0),
    ("MiB", 1048576.0),
    ("GiB", 1073741824.0),
    ("kB", 1e3),
    ("KB", 1e3),
    ("MB", 1e6),
    ("GB", 1e9),
    ("bit", 1.0 / 8.0),
    ("kbit", 1e3 / 8.0),
    ("Kbit", 1e3 / 8.0),
    ("Mbit", 1e6 / 8.0),
    ("Gbit", 1e9 / 8.0),
];

/// Why a rate's text is not one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum BadRate {
    /// No `/s`, or no unit at all.
    NotARate,
    /// A unit not in [`UNITS`].
    Unit(String),
    /// Negative.
    Negative,
    /// Zero: nothing would ever go.
    Zero,
    /// Below [`MIN_RATE`].
    TooSlow,
}

/// Bytes per second of `"20 MiB/s"`, `"1.5 MB/s"`, `"100 Mbit/s"`.
pub(super) fn parse_rate(text: &str) -> Result<u64, BadRate> {
    let per_second = text.trim().strip_suffix("/s").ok_or(BadRate::NotARate)?;
    let split = per_second
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
        .ok_or(BadRate::NotARate)?;
    let (number, unit) = per_second.split_at(split);
    let number: f64 = number.trim().parse().map_err(|_| BadRate::NotARate)?;
    let unit = unit.trim();
    let (_, scale) = UNITS
        .iter()
        .find(|(u, _)| *u == unit)
        .ok_or_else(|| BadRate::Unit(unit.to_string()))?;
    let rate = number * scale;
    if rate < 0.0 {
        return Err(BadRate::Negative);
    }
    if rate == 0.0 {
        return Err(BadRate::Zero);
    }
    if rate < MIN_RATE as f64 {
        return Err(BadRate::TooSlow);
    }
    Ok(rate.round() as u64)
}

/// The message and hint of a bad rate `shown`.
fn explain(shown: &str, bad: &BadRate) -> (String, String) {
    let units: Vec<&str> = UNITS.iter().map(|(u, _)| *u).collect();
    match bad {
        BadRate::NotARate => (format!("`{shown}` is not a rate"), RATE_HINT.to_string()),
        BadRate::Unit(u) => (
            format!("`{shown}`: unknown unit `{u}`"),
            match super::diagnostic::did_you_mean(u, &units) {
                Some(s) => format!("did you mean `{s}`? {RATE_HINT}"),
                None => format!("units: {}; {RATE_HINT}", units.join(", ")),
            },
        ),
        BadRate::Negative => (format!("`{shown}` is negative"), RATE_HINT.to_string()),
        BadRate::Zero => (
            format!("`{shown}` would stop every transfer"),
            "leave the key out for no limit".to_string(),
        ),
        BadRate::TooSlow => (
            format!("`{shown}` is below the slowest rate accepted, 64 KiB/s"),
            RATE_HINT.to_string(),
        ),
    }
}

/// A rate key's value: text as [`parse_rate`] reads it; a bare number lacks its unit.
fn rate(cx: &mut Ctx, v: &toml::Value, p: &KeyPath) -> Option<u64> {
    let parsed = match v {
        toml::Value::String(t) => parse_rate(t).map_err(|bad| explain(t, &bad)),
        toml::Value::Integer(_) | toml::Value::Float(_) => Err((
            format!("`{v}` has no unit"),
            format!("write it as a string with its unit: \"{v} MiB/s\"? {RATE_HINT}"),
        )),
        other => Err((
            format!("a rate is text, not a {}", other.type_str()),
            RATE_HINT.to_string(),
        )),
    };
    parsed
        .map_err(|(message, hint)| cx.error(p, message, hint))
        .ok()
}

/// `max_upload_rate` and `max_download_rate` of `[storage]` or a `[storage.NAME]`.
pub(super) fn rate_limits(cx: &mut Ctx, s: &RawStorage, p: &KeyPath) -> RateLimits {
    let mut one =
        |v: &Option<toml::Value>, key: &str| v.as_ref().and_then(|v| rate(cx, v, &p.key(key)));
    RateLimits {
        upload: one(&s.max_upload_rate, "max_upload_rate"),
        download: one(&s.max_download_rate, "max_download_rate"),
    }
}

/// `io_priority` and `nice` of `[agent]`.
pub(super) fn priority(cx: &mut Ctx, a: &RawAgent, p: &KeyPath) -> Priority {
    let io = match a.io_priority.as_deref() {
        None => defaults::IO_PRIORITY,
        Some("idle") => IoClass::Idle,
        Some("best-effort") => IoClass::BestEffort,
        Some(other) => {
            let hint = match super::diagnostic::did_you_mean(other, &["idle", "best-effort"]) {
                Some(s) => format!("did you mean \"{s}\"?"),
                None => "\"idle\" (disk time only when nobody else wants it) or \"best-effort\" (the normal class, its lowest level)".to_string(),
            };
            let at = p.key("io_priority");
            cx.error(&at, format!("unknown IO priority `{other}`"), hint);
            defaults::IO_PRIORITY
        }
    };
    let hint = "a nice value from 0 (as the agent runs) to 19 (the lowest), or \"idle\" (the CPU only when nothing else wants it)";
    let cpu = match &a.nice {
        None => defaults::NICE,
        Some(toml::Value::Integer(n)) if (0..=19).contains(n) => Cpu::Nice(*n as i32),
        Some(toml::Value::String(w)) if w == "idle" => Cpu::Idle,
        Some(toml::Value::Integer(n)) => {
            cx.error(&p.key("nice"), format!("nice {n} is out of range"), hint);
            defaults::NICE
        }
        Some(other) => {
            cx.error(
                &p.key("nice"),
                format!("nice {other} is not a CPU priority"),
                hint,
            );
            defaults::NICE
        }
    };
    Priority { io, cpu }
}

/// `pause_when = { cpu_above = "85%", max_wait = "10m" }` of `[agent]`.
pub(super) fn pause_when(
    cx: &mut Ctx,
    raw: Option<&RawPauseWhen>,
    p: &KeyPath,
) -> Option<PauseWhen> {
    let raw = raw?;
    let at = p.key("pause_when");
    let hint = "cpu_above = \"85%\": a backup waits while the CPU is busier than that";
    let percent = match &raw.cpu_above {
        None => {
            cx.missing(&at.key("cpu_above"), hint);
            return None;
        }
        Some(toml::Value::String(t)) => t.trim().strip_suffix('%').map(|n| n.trim().parse()),
        Some(toml::Value::Integer(n)) => Some(Ok(*n as f64)),
        Some(toml::Value::Float(f)) => Some(Ok(*f)),
        Some(_) => None,
    };
    let cpu_above = match percent {
        Some(Ok(pct)) if (0.0..100.0).contains(&pct) => pct,
        _ => {
            let shown = raw
                .cpu_above
                .as_ref()
                .map(|v| v.to_string())
                .unwrap_or_default();
            let message = format!("cpu_above = {shown} is not a share below 100%");
            cx.error(&at.key("cpu_above"), message, hint);
            return None;
        }
    };
    Some(PauseWhen {
        cpu_above,
        max_wait: raw.max_wait.unwrap_or(defaults::PAUSE_MAX_WAIT),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_with_units() {
        for (text, bytes) in [
            ("20 MiB/s", 20 << 20),
            ("500 KiB/s", 500 << 10),
            ("1 MB/s", 1_000_000),
            ("1.5MiB/s", 3 << 19),
            ("100 Mbit/s", 12_500_000),
            (" 2 GiB/s ", 2 << 30),
            ("64 KiB/s", 64 << 10),
        ] {
            assert_eq!(parse_rate(text), Ok(bytes), "{text}");
        }
    }

    #[test]
    fn bad_rates_say_why() {
        for (text, bad) in [
            ("10", BadRate::NotARate),
            ("10 MiB", BadRate::NotARate),
            ("MiB/s", BadRate::NotARate),
            ("fast/s", BadRate::NotARate),
            ("10/s", BadRate::NotARate),
            ("10 Mb/s", BadRate::Unit("Mb".into())),
            ("-5 MiB/s", BadRate::Negative),
            ("0 MiB/s", BadRate::Zero),
            ("0.0 B/s", BadRate::Zero),
            ("10 KiB/s", BadRate::TooSlow),
        ] {
            assert_eq!(parse_rate(text), Err(bad), "{text}");
        }
        let (message, hint) = explain("10 Mb/s", &BadRate::Unit("Mb".into()));
        assert_eq!(message, "`10 Mb/s`: unknown unit `Mb`");
        assert!(hint.starts_with("did you mean `MB`?"), "{hint}");
    }
}
