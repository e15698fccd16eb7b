//! `depends_on` between checks, resolved into the map the alert engine folds alerts with:
//! alert key → the checks it depends on. Explicit lists from each `[[checks.KIND]]`, plus the
//! implicit ones: a `[[checks.mysql]]` with `job = "J"` is what `backup:J` (freshness),
//! `backup-run:J` (failed runs) and `drill:J` (failed drills) depend on.

use super::raw_checks::RawMysqlCheck;
use super::resolve::Ctx;
use super::span::KeyPath;
use crate::health::CheckSpec;
use std::collections::{BTreeMap, BTreeSet};

/// Alert key → the checks it depends on.
pub type Depends = BTreeMap<String, Vec<String>>;

/// Checks every name in `deps` names a check (`out`, or a host check), refuses a check that
/// depends on itself or a cycle, and adds the implicit dependencies.
pub(super) fn depends(
    cx: &mut Ctx,
    deps: Vec<(String, Vec<String>, KeyPath)>,
    out: &[CheckSpec],
    mysql: &[RawMysqlCheck],
) -> Depends {
    let known: BTreeSet<&str> = out.iter().map(|c| c.name.as_str()).collect();
    let host = |n: &str| {
        ["cpu", "load", "memory", "swap", "gateway"].contains(&n)
            || n.starts_with("disk:")
            || n.starts_with("inodes:")
    };
    let mut map = Depends::new();
    for (check, names, at) in deps {
        for n in names {
            if n == check {
                cx.error(
                    &at,
                    format!("check `{check}` depends on itself"),
                    "name the check it needs, e.g. depends_on = [\"mysql-main\"]",
                );
            } else if !known.contains(n.as_str()) && !host(&n) {
                let names: Vec<&str> = known.iter().copied().take(12).collect();
                cx.error(
                    &at,
                    format!("check `{check}` depends on `{n}`, which is no check"),
                    format!("name a configured check: {}", names.join(", ")),
                );
            } else {
                map.entry(check.clone()).or_default().push(n);
            }
        }
    }
    for c in mysql {
        let (Some(job), Some(name)) = (&c.job, &c.name) else {
            continue;
        };
        for key in ["backup", "backup-run", "drill"] {
            let deps = map.entry(format!("{key}:{job}")).or_default();
            if !deps.contains(name) {
                deps.push(name.clone());
            }
        }
    }
    if let Some(cycle) = find_cycle(&map) {
        cx.error(
            &KeyPath::root().key("checks"),
            format!(
                "checks depend on each other in a circle: {}",
                cycle.join(" → ")
            ),
            "remove one depends_on of the circle: a root cause has no cause of its own",
        );
    }
    map
}

/// A path that comes back to where it started, if any.
fn find_cycle(map: &Depends) -> Option<Vec<String>> {
    for start in map.keys() {
        let mut path = vec![start.clone()];
        if walk(map, start, &mut path) {
            return Some(path);
        }
    }
    None
}

fn walk(map: &Depends, at: &str, path: &mut Vec<String>) -> bool {
    for next in map.get(at).into_iter().flatten() {
        if *next == path[0] {
            path.push(next.clone());
            return true;
        }
        if path.contains(next) || path.len() > map.len() {
            continue;
        }
        path.push(next.clone());
        if walk(map, next, path) {
            return true;
        }
        path.pop();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycles_are_found() {
        let mut m = Depends::new();
        m.insert("a".into(), vec!["b".into()]);
        m.insert("b".into(), vec!["c".into()]);
        assert_eq!(find_cycle(&m), None);
        m.insert("c".into(), vec!["a".into()]);
        let c = find_cycle(&m).unwrap();
        assert_eq!(c.first(), c.last());
        assert_eq!(c.len(), 4);
    }
}
