//! The few `/proc` files the host checks read every tick (`stat`, `loadavg`, `meminfo`), read
//! into one reused buffer and parsed in place, so a steady sampling tick allocates nothing.
//! (`sysinfo` allocates a reader and a line per CPU on every refresh; it stays the source of
//! the top processes, which are only listed when a value is bad.)

use std::fs::File;
use std::io::{self, Read};

/// A reader of small `/proc` files that keeps its buffer between reads.
#[derive(Debug)]
pub struct ProcReader {
    buf: Vec<u8>,
}

impl Default for ProcReader {
    fn default() -> Self {
        ProcReader::new()
    }
}

impl ProcReader {
    /// A reader with room for the usual sizes (it grows once on hosts with many CPUs or mounts).
    pub fn new() -> ProcReader {
        ProcReader {
            buf: Vec::with_capacity(16 * 1024),
        }
    }

    /// The whole content of `path` (valid until the next read).
    pub fn read(&mut self, path: &str) -> io::Result<&str> {
        self.buf.clear();
        File::open(path)?.read_to_end(&mut self.buf)?;
        std::str::from_utf8(&self.buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

/// CPU time counters from the first line of `/proc/stat`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTimes {
    /// All time (user, nice, system, idle, iowait, irq, softirq, steal; guest time is already
    /// counted in user).
    pub total: u64,
    /// Idle and iowait time.
    pub idle: u64,
}

impl CpuTimes {
    /// Parses the `cpu ` line of a `/proc/stat` text.
    pub fn parse(stat: &str) -> Option<CpuTimes> {
        let line = stat.lines().next()?.strip_prefix("cpu ")?;
        let mut total = 0u64;
        let mut idle = 0u64;
        for (i, field) in line.split_ascii_whitespace().take(8).enumerate() {
            let v: u64 = field.parse().ok()?;
            total += v;
            if i == 3 || i == 4 {
                idle += v;
            }
        }
        Some(CpuTimes { total, idle })
    }

    /// % busy between `earlier` and `self`; `None` when no time passed.
    pub fn busy_since(&self, earlier: &CpuTimes) -> Option<f64> {
        let total = self.total.checked_sub(earlier.total)?;
        let idle = self.idle.saturating_sub(earlier.idle).min(total);
        (total > 0).then(|| (total - idle) as f64 * 100.0 / total as f64)
    }
}

/// The 1-, 5- and 15-minute load averages from a `/proc/loadavg` text.
pub fn load_average(loadavg: &str) -> Option<[f64; 3]> {
    let mut it = loadavg.split_ascii_whitespace();
    let mut out = [0.0; 3];
    for v in &mut out {
        *v = it.next()?.parse().ok()?;
    }
    Some(out)
}

/// The memory figures the checks use, in KiB, from a `/proc/meminfo` text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemInfo {
    /// `MemTotal`.
    pub total: u64,
    /// `MemAvailable`.
    pub available: u64,
    /// `SwapTotal`.
    pub swap_total: u64,
    /// `SwapFree`.
    pub swap_free: u64,
}

impl MemInfo {
    /// Parses a `/proc/meminfo` text; `None` without `MemTotal` and `MemAvailable`.
    pub fn parse(meminfo: &str) -> Option<MemInfo> {
        let mut m = MemInfo::default();
        let (mut total, mut available) = (false, false);
        for line in meminfo.lines() {
            let Some((key, rest)) = line.split_once(':') else {
                continue;
            };
            let slot = match key {
                "MemTotal" => {
                    total = true;
                    &mut m.total
                }
                "MemAvailable" => {
                    available = true;
                    &mut m.available
                }
                "SwapTotal" => &mut m.swap_total,
                "SwapFree" => &mut m.swap_free,
                _ => continue,
            };
            *slot = rest
                .split_ascii_whitespace()
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
        }
        (total && available).then_some(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_busy_between_two_readings() {
        let a = CpuTimes::parse("cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 1 2 3\n").unwrap();
        let b = CpuTimes::parse("cpu  400 0 200 900 100 0 0 0 50 0\n").unwrap();
        assert_eq!(
            a,
            CpuTimes {
                total: 1000,
                idle: 800
            }
        );
        // 600 more ticks, 200 of them idle: 66.7 % busy (guest time is inside user).
        let busy = b.busy_since(&a).unwrap();
        assert!((busy - 66.666).abs() < 0.01, "{busy}");
        assert_eq!(a.busy_since(&a), None);
        assert_eq!(CpuTimes::parse("intr 1 2 3"), None);
    }

    #[test]
    fn load_and_memory_parse() {
        assert_eq!(
            load_average("0.52 0.58 0.59 2/345 6789\n"),
            Some([0.52, 0.58, 0.59])
        );
        assert_eq!(load_average("0.5"), None);
        let m = MemInfo::parse(
            "MemTotal:        8000000 kB\nMemFree: 1 kB\nMemAvailable:    2000000 kB\n\
             SwapTotal:       1000 kB\nSwapFree:        250 kB\n",
        )
        .unwrap();
        assert_eq!(
            (m.total, m.available, m.swap_total, m.swap_free),
            (8_000_000, 2_000_000, 1000, 250)
        );
        assert_eq!(MemInfo::parse("SwapTotal: 1 kB\n"), None);
    }

    #[test]
    fn reads_this_hosts_files() {
        let mut r = ProcReader::new();
        assert!(CpuTimes::parse(r.read("/proc/stat").unwrap()).is_some());
        assert!(load_average(r.read("/proc/loadavg").unwrap()).is_some());
        let m = MemInfo::parse(r.read("/proc/meminfo").unwrap()).unwrap();
        assert!(m.total > 0 && m.available <= m.total, "{m:?}");
    }
}
