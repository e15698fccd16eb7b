//! `[agent] pause_when = { cpu_above = "85%", max_wait = "10m" }`: before a backup starts, it
//! waits while the machine's CPU is busier than the threshold, for at most `max_wait`; then it
//! starts anyway. Both are logged, so a late backup explains itself. The CPU share is the one
//! the `cpu` host check computes (`health::procfs`, all cores, from `/proc/stat`).

use crate::config::PauseWhen;
use crate::health::procfs::{CpuTimes, ProcReader};
use std::time::{Duration, Instant};

/// The first look at the CPU: short, so a cool machine starts at once.
const FIRST_SAMPLE: Duration = Duration::from_secs(1);
/// Each later look while waiting.
const SAMPLE: Duration = Duration::from_secs(5);

/// The CPU busy share over the next `window`; `None` when `/proc/stat` cannot be read.
async fn cpu_busy(proc: &mut ProcReader, window: Duration) -> Option<f64> {
    let before = proc.read("/proc/stat").ok().and_then(CpuTimes::parse)?;
    tokio::time::sleep(window).await;
    let after = proc.read("/proc/stat").ok().and_then(CpuTimes::parse)?;
    after.busy_since(&before)
}

/// Waits until the CPU is at most `p.cpu_above` busy, or `p.max_wait` has passed.
pub async fn until_cool(job: &str, p: &PauseWhen) {
    let started = Instant::now();
    let mut proc = ProcReader::new();
    let mut window = FIRST_SAMPLE.min(p.max_wait).max(Duration::from_millis(100));
    let mut waiting = false;
    loop {
        let Some(busy) = cpu_busy(&mut proc, window).await else {
            tracing::warn!(job, "pause_when: cannot read /proc/stat; starting");
            return;
        };
        let waited = started.elapsed();
        if busy <= p.cpu_above {
            if waiting {
                tracing::info!(
                    job,
                    waited_secs = waited.as_secs(),
                    "CPU {busy:.0}% ≤ {:.0}%: starting",
                    p.cpu_above
                );
            }
            return;
        }
        if waited >= p.max_wait {
            tracing::warn!(
                job,
                waited_secs = waited.as_secs(),
                "CPU still {busy:.0}% > {:.0}% after {}: starting anyway (pause_when.max_wait)",
                p.cpu_above,
                humantime::format_duration(p.max_wait)
            );
            return;
        }
        if !waiting {
            tracing::info!(job, max_wait = %humantime::format_duration(p.max_wait), "waiting: CPU {busy:.0}% > {:.0}%", p.cpu_above);
            waiting = true;
        }
        window = SAMPLE
            .min(p.max_wait - waited)
            .max(Duration::from_millis(100));
    }
}
