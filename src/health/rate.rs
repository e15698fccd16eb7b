//! `[[checks.rate]]`: requests per `window` in an access log (nginx/Apache combined format: the
//! client address is the first field), WARN/CRIT at `warn`/`crit`, with the top client
//! addresses in the detail — the "request spam" hint. Follows the file like `log` checks do.

use super::logfile::{Follower, Window};
use super::state::Limits;
use super::{CheckSpec, Sample};
use regex::Regex;
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A rate check.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The access log.
    pub path: PathBuf,
    /// Only lines matching this count (default: every line).
    pub pattern: Option<Regex>,
    /// Counting window; default 1m.
    pub window: Duration,
    /// Requests per window.
    pub limits: Limits,
    /// How many client addresses the detail names; default 5.
    pub top: usize,
}

/// Distinct clients counted per sample; the rest are counted together as `(others)`.
pub const MAX_CLIENTS: usize = 10_000;

/// The state of one rate check.
#[derive(Debug)]
pub struct Watcher {
    follower: Follower,
    window: Window,
    clients: VecDeque<(Instant, HashMap<String, u64>)>,
}

impl Watcher {
    /// Starts following the file.
    pub fn new(spec: &Spec) -> Watcher {
        Watcher {
            follower: Follower::new(spec.path.clone()),
            window: Window::default(),
            clients: VecDeque::new(),
        }
    }

    /// Reads new lines and counts them.
    pub fn probe(&mut self, spec: &CheckSpec) -> Sample {
        let super::ProbeSpec::Rate(r) = &spec.probe else {
            return Sample::failed(spec, "internal: not a rate check".into());
        };
        let now = Instant::now();
        let mut n = 0;
        let mut by_client: HashMap<String, u64> = HashMap::new();
        let res = self.follower.read_new(|line| {
            if r.pattern.as_ref().is_none_or(|p| p.is_match(line)) {
                n += 1;
                let addr = line.split_whitespace().next().unwrap_or("-");
                // A flood from many addresses must not grow the table without end.
                let key = if by_client.len() < MAX_CLIENTS || by_client.contains_key(addr) {
                    addr
                } else {
                    "(others)"
                };
                *by_client.entry(key.chars().take(64).collect()).or_default() += 1;
            }
        });
        if let Err(e) = res {
            return Sample::failed(spec, e.to_string());
        }
        let total = self.window.add(now, n, r.window);
        while self
            .clients
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) >= r.window)
        {
            self.clients.pop_front();
        }
        if !by_client.is_empty() {
            self.clients.push_back((now, by_client));
        }
        let detail = format!(
            "{total} request(s) in {} in the last {}; top clients: {}",
            r.path.display(),
            humantime::format_duration(r.window),
            top_clients(&self.clients, r.top)
        );
        Sample::value(spec, total as f64, r.limits, detail)
    }
}

/// "203.0.113.9 (9120), 198.51.100.4 (31)".
fn top_clients(slots: &VecDeque<(Instant, HashMap<String, u64>)>, n: usize) -> String {
    let mut sum: HashMap<&str, u64> = HashMap::new();
    for (_, m) in slots {
        for (k, v) in m {
            *sum.entry(k).or_default() += v;
        }
    }
    let mut v: Vec<(&str, u64)> = sum.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    if v.is_empty() {
        return "none".into();
    }
    v.iter()
        .take(n)
        .map(|(k, c)| format!("{k} ({c})"))
        .collect::<Vec<_>>()
        .join(", ")
}
