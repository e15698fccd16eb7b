//! The ping tests' kit: a configuration with ping checks only, and `opsagent status --json`
//! polled until the checks reach a state, keeping every sample seen on the way.

use super::agent::{host_checks_off, opsagent, Daemon};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a state change may take on a busy 2-core machine (rounds every 3 s, `for` 5 s).
pub const WITHIN: Duration = Duration::from_secs(90);

/// `[agent]`, local storage, rounds every 3 s, no host checks (and no gateway), then `checks`.
pub fn config(dir: &Path, checks: &str) -> PathBuf {
    let cfg = dir.join("opsagent.toml");
    let text = format!(
        "[agent]\nstate_dir = \"{0}/state\"\ntimezone = \"UTC\"\n[storage]\ntype = \"local\"\npath = \"{0}/b\"\n\
         [checks]\ninterval = \"3s\"\ntimeout = \"3s\"\n{1}{checks}",
        dir.display(),
        host_checks_off()
    );
    std::fs::write(&cfg, text).unwrap();
    cfg
}

/// A `[[checks.ping]]` of 100 probes 10 ms apart, each waiting `wait`, with `for = "5s"`.
pub fn ping(name: &str, target: &str, loss: (u32, u32), wait: &str) -> String {
    format!(
        "[[checks.ping]]\nname = \"{name}\"\n{target}\ncount = 100\nprobe_interval = \"10ms\"\n\
         probe_timeout = \"{wait}\"\nloss_warn = \"{}%\"\nloss_crit = \"{}%\"\nfor = \"5s\"\n",
        loss.0, loss.1
    )
}

/// Every check `status --json` shows, by name.
pub fn checks(cfg: &Path) -> Vec<Value> {
    let out = opsagent(cfg, &["status", "--json"]);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    doc["checks"].as_array().cloned().unwrap_or_default()
}

pub fn find<'a>(all: &'a [Value], name: &str) -> Option<&'a Value> {
    all.iter().find(|c| c["name"] == name)
}

/// Polls `status` until `done` holds for the checks; returns every distinct sample of `name`
/// seen meanwhile (by `updated_at`). Fails naming `what` and the daemon's log after [`WITHIN`].
pub fn watch(
    cfg: &Path,
    d: &Daemon,
    what: &str,
    name: &str,
    mut done: impl FnMut(&[Value]) -> bool,
) -> Vec<Value> {
    let t0 = Instant::now();
    let mut seen: Vec<Value> = Vec::new();
    loop {
        let all = checks(cfg);
        if let Some(c) = find(&all, name) {
            if seen
                .last()
                .is_none_or(|l| l["updated_at"] != c["updated_at"])
            {
                seen.push(c.clone());
            }
        }
        if done(&all) {
            return seen;
        }
        assert!(
            t0.elapsed() < WITHIN,
            "{what} did not happen within {WITHIN:?}; checks: {all:#?}\nlog:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

pub fn state(all: &[Value], name: &str) -> String {
    find(all, name).map_or(String::new(), |c| c["state"].as_str().unwrap_or("").into())
}
