//! Dependencies between checks, like Alertmanager's inhibit rules without writing any: while a
//! check an alert depends on fires (`depends_on`, see `AlertConfig::depends`), the alert is
//! not mailed on its own; the root's mail lists it ("also affected: …"). Once the root
//! resolves, whatever still fires is mailed as usual, as after a silence ends.

use crate::catalog::AlertRow;
use std::collections::{BTreeMap, BTreeSet};

/// Each firing alert with a firing check up its dependency chain → the topmost such check
/// (the root cause the mail names).
pub fn folded(
    alerts: &[AlertRow],
    depends: &BTreeMap<String, Vec<String>>,
) -> BTreeMap<String, String> {
    let firing: BTreeSet<&str> = (alerts.iter().filter(|a| a.firing))
        .map(|a| a.key.as_str())
        .collect();
    roots(&firing, depends)
}

/// Each of `failing` with a failing check up its dependency chain → the topmost such check
/// (`status` shows it as the cause).
pub fn roots(
    failing: &BTreeSet<&str>,
    depends: &BTreeMap<String, Vec<String>>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for key in failing {
        if let Some(root) = root_of(key, depends, failing) {
            out.insert(key.to_string(), root);
        }
    }
    out
}

/// The firing ancestor of `key` farthest up the chain (every ancestor is visited once, so a
/// cycle cannot loop).
fn root_of(
    key: &str,
    depends: &BTreeMap<String, Vec<String>>,
    firing: &BTreeSet<&str>,
) -> Option<String> {
    let mut seen: BTreeSet<&str> = BTreeSet::from([key]);
    let mut level: Vec<&str> = vec![key];
    let mut root = None;
    while !level.is_empty() {
        let mut next = Vec::new();
        for k in level {
            for d in depends.get(k).into_iter().flatten() {
                if seen.insert(d.as_str()) {
                    if firing.contains(d.as_str()) {
                        root = Some(d.clone());
                    }
                    next.push(d.as_str());
                }
            }
        }
        level = next;
    }
    root
}

/// `alerts` as a mail shows them: each root's detail ends with the alerts folded under it.
pub fn with_affected(alerts: &[AlertRow], folded: &BTreeMap<String, String>) -> Vec<AlertRow> {
    let mut under: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (dependent, root) in folded {
        under
            .entry(root.as_str())
            .or_default()
            .push(super::compose::display_name(dependent));
    }
    alerts
        .iter()
        .map(|a| {
            let mut a = a.clone();
            if let Some(names) = under.get(a.key.as_str()).filter(|_| a.firing) {
                a.detail = format!("{}; also affected: {}", a.detail, names.join(", "));
            }
            a
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn alert(key: &str, firing: bool) -> AlertRow {
        AlertRow {
            key: key.into(),
            firing,
            flapping: false,
            severity: "CRIT".into(),
            since: Utc::now(),
            changed_at: Utc::now(),
            value: None,
            threshold: None,
            detail: "down".into(),
            notified: String::new(),
            notified_severity: String::new(),
            notified_at: None,
            thread: None,
        }
    }

    fn deps(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<String>> {
        let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (a, b) in pairs {
            m.entry(a.to_string()).or_default().push(b.to_string());
        }
        m
    }

    #[test]
    fn dependents_fold_under_the_topmost_firing_root() {
        let d = deps(&[
            ("api", "mysql"),
            ("backup:main", "mysql"),
            ("mysql", "disk:/"),
        ]);
        let alerts = [
            alert("mysql", true),
            alert("api", true),
            alert("backup:main", true),
            alert("disk:/", false),
        ];
        let f = folded(&alerts, &d);
        assert_eq!(f.get("api").map(String::as_str), Some("mysql"));
        assert_eq!(f.get("backup:main").map(String::as_str), Some("mysql"));
        assert!(!f.contains_key("mysql"));
        // The disk fires too: everything folds under it.
        let alerts = [
            alert("disk:/", true),
            alert("mysql", true),
            alert("api", true),
        ];
        let f = folded(&alerts, &d);
        assert_eq!(f.get("api").map(String::as_str), Some("disk:/"));
        assert_eq!(f.get("mysql").map(String::as_str), Some("disk:/"));
        let shown = with_affected(&alerts, &f);
        assert_eq!(shown[0].detail, "down; also affected: api, mysql");
        // A dependent failing alone stands alone.
        let f = folded(&[alert("mysql", false), alert("api", true)], &d);
        assert!(f.is_empty());
    }

    #[test]
    fn a_cycle_does_not_loop() {
        let d = deps(&[("a", "b"), ("b", "a")]);
        let f = folded(&[alert("a", true), alert("b", true)], &d);
        assert_eq!(f.len(), 2);
    }
}
