//! `anomaly_drop` of a backup job: how sharp a shrink against the previous snapshot freezes
//! the job's retention (see `backup::anomaly`).

use super::defaults;
use super::raw::RawDrop;
use super::resolve::Ctx;
use super::span::KeyPath;

const HINT: &str = "e.g. anomaly_drop = \"50%\" (or 0.5); \"off\" or 0 turns the guard off";

/// `anomaly_drop`: a fraction in (0, 1) or a percentage `"N%"`; `"off"`, `0` and `"0%"` turn the
/// guard off (`None`). Left out, [`defaults::ANOMALY_DROP`].
pub(super) fn anomaly_drop(cx: &mut Ctx, raw: Option<&RawDrop>, p: &KeyPath) -> Option<f64> {
    let fraction = match raw {
        None => return Some(defaults::ANOMALY_DROP),
        Some(RawDrop::Number(n)) => *n,
        Some(RawDrop::Text(t)) if defaults::ANOMALY_OFF.contains(&t.trim()) => 0.0,
        Some(RawDrop::Text(t)) => match t.trim().strip_suffix('%').map(|n| n.trim().parse::<f64>())
        {
            Some(Ok(pct)) => pct / 100.0,
            _ => {
                cx.error(p, format!("`{t}` is not a share"), HINT);
                return None;
            }
        },
    };
    if fraction == 0.0 {
        return None;
    }
    if !(fraction > 0.0 && fraction < 1.0) {
        cx.error(
            p,
            format!("{fraction} is not between 0 and 1 (a shrink of 100 % or more never happens)"),
            HINT,
        );
        return None;
    }
    Some(fraction)
}

/// `anomaly_expected`, `exclude_tables` (the key `key`): names such as `shop.sessions` or
/// `shop.cache_*` (a trailing `*` matches a prefix); a bad one is left out with an error at its
/// position.
pub(super) fn table_patterns(cx: &mut Ctx, raw: &[String], p: &KeyPath, key: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, pattern) in raw.iter().enumerate() {
        let body = pattern.strip_suffix('*').unwrap_or(pattern);
        if body.is_empty() || body.contains('*') || body.chars().any(char::is_whitespace) {
            cx.error(
                &p.index(i),
                format!("`{pattern}` is not a table name or prefix"),
                format!("e.g. {key} = [\"shop.sessions\", \"shop.cache_*\"]: database.table, a trailing * for every table starting so"),
            );
        } else {
            out.push(pattern.clone());
        }
    }
    out
}
