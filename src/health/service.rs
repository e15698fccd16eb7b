//! `[[checks.service]]`: a systemd unit is active, read with
//! `systemctl show -p LoadState,ActiveState,SubState,NRestarts UNIT` (no D-Bus). With
//! `restart = true` a failed unit is restarted with `systemctl restart`, at most
//! `max_restarts` times per hour (as Monit does); past the cap it is left for a human.

use super::state::Level;
use super::{CheckSpec, Sample};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// A service check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// The unit (`nginx.service`).
    pub unit: String,
    /// Restart it when it is not active.
    pub restart: bool,
    /// At most this many restarts per hour; default 3.
    pub max_restarts: u32,
}

/// What `systemctl show` says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitState {
    /// `loaded`, `not-found`, …
    pub load: String,
    /// `active`, `failed`, `inactive`, `activating`, …
    pub active: String,
    /// `running`, `dead`, `exited`, …
    pub sub: String,
    /// Restarts systemd did itself.
    pub n_restarts: Option<u64>,
}

/// Parses `KEY=value` lines.
pub fn parse_show(out: &str) -> UnitState {
    let mut s = UnitState::default();
    for line in out.lines() {
        match line.split_once('=') {
            Some(("LoadState", v)) => s.load = v.to_string(),
            Some(("ActiveState", v)) => s.active = v.to_string(),
            Some(("SubState", v)) => s.sub = v.to_string(),
            Some(("NRestarts", v)) => s.n_restarts = v.parse().ok(),
            _ => {}
        }
    }
    s
}

/// The level of a unit state: active (or reloading) is OK, activating/deactivating WARN,
/// anything else (failed, inactive, not-found) CRIT.
pub fn judge(s: &UnitState) -> Level {
    if s.load == "not-found" {
        return Level::Crit;
    }
    match s.active.as_str() {
        "active" | "reloading" => Level::Ok,
        "activating" | "deactivating" => Level::Warn,
        _ => Level::Crit,
    }
}

/// Restarts done by this check in the last hour.
#[derive(Debug, Default)]
pub struct Restarts(VecDeque<Instant>);

impl Restarts {
    /// Whether another restart is allowed now (and records it if so).
    pub fn allow(&mut self, now: Instant, cap: u32) -> bool {
        while self
            .0
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(3600))
        {
            self.0.pop_front();
        }
        if self.0.len() as u32 >= cap {
            return false;
        }
        self.0.push_back(now);
        true
    }

    /// How many in the last hour.
    pub fn count(&self) -> usize {
        self.0.len()
    }
}

/// Why `systemctl` gave no answer; shown as the check's detail.
#[derive(Debug, thiserror::Error)]
pub enum SystemctlError {
    /// It could not be started.
    #[error("cannot run systemctl: {0}")]
    Spawn(std::io::Error),
    /// It exited with an error.
    #[error("systemctl {args} failed: {stderr}")]
    Failed {
        /// Its arguments, space-separated.
        args: String,
        /// What it printed on stderr, trimmed.
        stderr: String,
    },
}

async fn systemctl(args: &[&str]) -> Result<String, SystemctlError> {
    let out = tokio::process::Command::new("systemctl")
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(SystemctlError::Spawn)?;
    if !out.status.success() {
        return Err(SystemctlError::Failed {
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Looks once (and restarts if configured).
pub async fn probe(spec: &CheckSpec, restarts: &mut Restarts) -> Sample {
    let super::ProbeSpec::Service(s) = &spec.probe else {
        return Sample::failed(spec, "internal: not a service check".into());
    };
    let show = match systemctl(&[
        "show",
        "-p",
        "LoadState,ActiveState,SubState,NRestarts",
        &s.unit,
    ])
    .await
    {
        Ok(o) => parse_show(&o),
        Err(e) => return Sample::failed(spec, e.to_string()),
    };
    let level = judge(&show);
    let mut detail = format!(
        "{} is {} ({}, load state {})",
        s.unit, show.active, show.sub, show.load
    );
    if let Some(n) = show.n_restarts {
        detail.push_str(&format!("; systemd restarted it {n} time(s)"));
    }
    if level == Level::Crit && s.restart && show.load != "not-found" {
        if restarts.allow(Instant::now(), s.max_restarts) {
            match systemctl(&["restart", &s.unit]).await {
                Ok(_) => detail.push_str(&format!(
                    "; restarted by opsagent ({}/{} this hour)",
                    restarts.count(),
                    s.max_restarts
                )),
                Err(e) => detail.push_str(&format!("; restart failed: {e}")),
            }
        } else {
            detail.push_str(&format!(
                "; not restarted: {} restarts in the last hour already",
                s.max_restarts
            ));
        }
    }
    Sample::judged(spec, level, None, detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_judges_systemctl_show() {
        let table = [
            (
                "LoadState=loaded\nActiveState=active\nSubState=running\nNRestarts=2\n",
                Level::Ok,
            ),
            (
                "LoadState=loaded\nActiveState=failed\nSubState=failed\nNRestarts=5\n",
                Level::Crit,
            ),
            (
                "LoadState=loaded\nActiveState=inactive\nSubState=dead\n",
                Level::Crit,
            ),
            (
                "LoadState=loaded\nActiveState=activating\nSubState=auto-restart\n",
                Level::Warn,
            ),
            (
                "LoadState=not-found\nActiveState=inactive\nSubState=dead\n",
                Level::Crit,
            ),
        ];
        for (out, want) in table {
            assert_eq!(judge(&parse_show(out)), want, "{out}");
        }
        assert_eq!(parse_show(table[0].0).n_restarts, Some(2));
    }

    #[test]
    fn restarts_are_capped_per_hour() {
        let mut r = Restarts::default();
        let t = Instant::now();
        assert!(r.allow(t, 2));
        assert!(r.allow(t + Duration::from_secs(60), 2));
        assert!(!r.allow(t + Duration::from_secs(120), 2));
        assert!(r.allow(t + Duration::from_secs(3601), 2));
    }
}
