//! Host checks from one sampler: `cpu` (% busy), `load` (5-minute load average per core),
//! `memory` (% available), `swap` (% used), and the disks (see [`super::disk`]), read from
//! `/proc` (see [`super::procfs`]). The top processes (by `sysinfo`) are only collected when a
//! value is bad, for the event's detail.

use super::disk::{DiskConfig, DiskSampler};
use super::procfs::{load_average, CpuTimes, MemInfo, ProcReader};
use super::state::Limits;
use super::{Reading, Sample};
use std::sync::Arc;
use std::time::Duration;
use sysinfo::{ProcessRefreshKind, ProcessesToUpdate, System};

/// The host checks' names, which are also their kinds (the disks name one check per mount).
const HOST_NAMES: [&str; 4] = ["cpu", "load", "memory", "swap"];

/// One host check's thresholds and `for`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HostCheck {
    /// Thresholds.
    pub limits: Limits,
    /// `for`.
    pub hold: Duration,
}

/// `[checks.cpu]`, `[checks.load]`, … resolved; `None` when disabled.
#[derive(Debug, Clone, PartialEq)]
pub struct HostConfig {
    /// % CPU busy; default warn 80, crit 90, for 5m.
    pub cpu: Option<HostCheck>,
    /// 5-minute load average per core; default warn 2, crit 4, for 5m.
    pub load: Option<HostCheck>,
    /// % memory available (lower is worse); default warn 10, crit 5, for 2m.
    pub memory: Option<HostCheck>,
    /// % swap used; default warn 50, crit 80, for 5m.
    pub swap: Option<HostCheck>,
    /// Disks.
    pub disk: Option<DiskConfig>,
}

/// The default thresholds of each host check.
pub fn default_check(kind: &str) -> HostCheck {
    let m = |s: u64| Duration::from_secs(60 * s);
    match kind {
        "cpu" => HostCheck {
            limits: Limits::above(80.0, 90.0),
            hold: m(5),
        },
        "load" => HostCheck {
            limits: Limits::above(2.0, 4.0),
            hold: m(5),
        },
        "memory" => HostCheck {
            limits: Limits::below(10.0, 5.0),
            hold: m(2),
        },
        _ => HostCheck {
            limits: Limits::above(50.0, 80.0),
            hold: m(5),
        },
    }
}

impl Default for HostConfig {
    fn default() -> HostConfig {
        HostConfig {
            cpu: Some(default_check("cpu")),
            load: Some(default_check("load")),
            memory: Some(default_check("memory")),
            swap: Some(default_check("swap")),
            disk: Some(DiskConfig::default()),
        }
    }
}

/// Samples the host; keep one per daemon. After the first ticks a round allocates nothing
/// while every value is good (check names are shared, `/proc` is read into one buffer, the
/// mount list is rebuilt only when `/proc/self/mountinfo` changes); a bad value's detail
/// (top processes, biggest directories) is built when it is needed.
pub struct HostSampler {
    /// For the top processes only.
    sys: System,
    proc: ProcReader,
    cpu_before: Option<CpuTimes>,
    /// Usable cores (cgroup quota and affinity included), read once.
    cores: f64,
    names: [Arc<str>; 4],
    disks: DiskSampler,
}

impl Default for HostSampler {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether `value` is at or past the warn threshold (no hysteresis: for deciding on detail).
fn bad(value: f64, l: &Limits) -> bool {
    l.level(value, super::state::Level::Ok).0 != super::state::Level::Ok
}

impl HostSampler {
    /// A sampler; the first CPU figure comes from the second tick.
    pub fn new() -> HostSampler {
        HostSampler {
            sys: System::new(),
            proc: ProcReader::new(),
            cpu_before: None,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()) as f64,
            names: HOST_NAMES.map(Arc::from),
            disks: DiskSampler::default(),
        }
    }

    /// One round of host samples (blocking: call from a blocking thread).
    pub fn sample(&mut self, cfg: &HostConfig) -> Vec<Sample> {
        let mut out = Vec::with_capacity(8);
        self.sample_into(cfg, &mut out);
        out
    }

    /// One round of host samples appended to `out` (blocking). A file that cannot be read
    /// makes that check's sample UNKNOWN with the reason.
    pub fn sample_into(&mut self, cfg: &HostConfig, out: &mut Vec<Sample>) {
        if let Some(c) = &cfg.cpu {
            let now = self.proc.read("/proc/stat").ok().and_then(CpuTimes::parse);
            match (now, self.cpu_before) {
                (Some(now), Some(before)) => {
                    if let Some(v) = now.busy_since(&before) {
                        let detail = if bad(v, &c.limits) {
                            self.top_processes(true)
                        } else {
                            String::new()
                        };
                        out.push(self.value(0, v, c, detail));
                    }
                }
                (None, _) => out.push(self.failed(0, c, "cannot read /proc/stat")),
                (Some(_), None) => {}
            }
            self.cpu_before = now;
        }
        if let Some(c) = &cfg.load {
            match self.proc.read("/proc/loadavg").ok().and_then(load_average) {
                Some([one, five, fifteen]) => {
                    let v = five / self.cores;
                    let detail = if bad(v, &c.limits) {
                        let cores = self.cores;
                        format!("load {one:.2} {five:.2} {fifteen:.2} on {cores} cores")
                    } else {
                        String::new()
                    };
                    out.push(self.value(1, v, c, detail));
                }
                None => out.push(self.failed(1, c, "cannot read /proc/loadavg")),
            }
        }
        if cfg.memory.is_some() || cfg.swap.is_some() {
            let mem = self
                .proc
                .read("/proc/meminfo")
                .ok()
                .and_then(MemInfo::parse);
            if let Some(c) = &cfg.memory {
                match mem {
                    Some(m) => {
                        let v = m.available as f64 * 100.0 / m.total.max(1) as f64;
                        let detail = if bad(v, &c.limits) {
                            self.top_processes(false)
                        } else {
                            String::new()
                        };
                        out.push(self.value(2, v, c, detail));
                    }
                    None => out.push(self.failed(2, c, "cannot read /proc/meminfo")),
                }
            }
            if let (Some(c), Some(m)) = (&cfg.swap, mem) {
                if m.swap_total > 0 {
                    let used = m.swap_total.saturating_sub(m.swap_free);
                    let v = used as f64 * 100.0 / m.swap_total as f64;
                    out.push(self.value(3, v, c, String::new()));
                }
            }
        }
        if let Some(d) = &cfg.disk {
            self.disks.sample_into(d, &mut self.proc, out);
        }
    }

    fn value(&self, i: usize, value: f64, c: &HostCheck, detail: String) -> Sample {
        Sample {
            check: self.names[i].clone(),
            kind: HOST_NAMES[i],
            reading: Reading::Value {
                value,
                limits: c.limits,
            },
            detail,
            hold: c.hold,
        }
    }

    fn failed(&self, i: usize, c: &HostCheck, why: &str) -> Sample {
        Sample {
            check: self.names[i].clone(),
            kind: HOST_NAMES[i],
            reading: Reading::Failed,
            detail: why.to_string(),
            hold: c.hold,
        }
    }

    /// "top: mysqld (pid 812) 85.2%, …" by CPU or by resident memory.
    fn top_processes(&mut self, by_cpu: bool) -> String {
        let kind = ProcessRefreshKind::nothing().with_cpu().with_memory();
        self.sys
            .refresh_processes_specifics(ProcessesToUpdate::All, true, kind);
        if by_cpu {
            // Process CPU is measured between two refreshes.
            std::thread::sleep(
                sysinfo::MINIMUM_CPU_UPDATE_INTERVAL.max(Duration::from_millis(300)),
            );
            self.sys
                .refresh_processes_specifics(ProcessesToUpdate::All, true, kind);
        }
        let mut procs: Vec<(f64, String)> = self
            .sys
            .processes()
            .iter()
            .map(|(pid, p)| {
                let v = if by_cpu {
                    f64::from(p.cpu_usage())
                } else {
                    p.memory() as f64
                };
                (v, format!("{} (pid {pid})", p.name().to_string_lossy()))
            })
            .collect();
        procs.sort_by(|a, b| b.0.total_cmp(&a.0));
        let list: Vec<String> = procs
            .iter()
            .take(5)
            .map(|(v, n)| {
                if by_cpu {
                    format!("{n} {v:.1}%")
                } else {
                    format!("{n} {:.0} MiB", v / 1_048_576.0)
                }
            })
            .collect();
        format!("top processes: {}", list.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::state::Level;

    #[test]
    fn samples_this_host() {
        let mut s = HostSampler::new();
        let cfg = HostConfig::default();
        let first = s.sample(&cfg);
        assert!(
            first.iter().all(|x| &*x.check != "cpu"),
            "cpu needs two ticks"
        );
        std::thread::sleep(Duration::from_millis(250));
        let second = s.sample(&cfg);
        let names: Vec<&str> = second.iter().map(|x| &*x.check).collect();
        for n in ["cpu", "load", "memory"] {
            assert!(names.contains(&n), "{names:?}");
        }
        for x in &second {
            let Reading::Value { value, .. } = x.reading else {
                panic!("{x:?}")
            };
            assert!(value.is_finite() && value >= 0.0, "{x:?}");
        }
    }

    #[test]
    fn recorded_samples_against_default_thresholds() {
        // (check, value, expected level from OK)
        let table = [
            ("cpu", 79.9, Level::Ok),
            ("cpu", 85.0, Level::Warn),
            ("cpu", 97.0, Level::Crit),
            ("load", 1.0, Level::Ok),
            ("load", 2.5, Level::Warn),
            ("load", 6.0, Level::Crit),
            ("memory", 40.0, Level::Ok),
            ("memory", 8.0, Level::Warn),
            ("memory", 2.0, Level::Crit),
            ("swap", 10.0, Level::Ok),
            ("swap", 90.0, Level::Crit),
        ];
        for (kind, v, want) in table {
            let c = default_check(kind);
            assert_eq!(c.limits.level(v, Level::Ok).0, want, "{kind} {v}");
        }
        assert_eq!(default_check("cpu").hold, Duration::from_secs(300));
    }

    #[test]
    fn top_processes_names_this_process() {
        let mut s = HostSampler::new();
        let d = s.top_processes(false);
        assert!(d.starts_with("top processes: "), "{d}");
        assert!(d.contains("(pid "), "{d}");
    }
}
