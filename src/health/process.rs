//! `[[checks.process]]`: a process runs, found by name (`/proc/PID/comm` or the base name of its
//! first argument) or by pidfile. CRIT when fewer than `min` run, WARN when more than `max`.

use super::state::Level;
use super::{CheckSpec, Sample};
use std::path::{Path, PathBuf};

/// How the process is found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// By name.
    Name(String),
    /// By the pid in a file.
    Pidfile(PathBuf),
}

/// A process check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// What to look for.
    pub target: Target,
    /// At least this many; default 1.
    pub min: u32,
    /// At most this many (WARN above).
    pub max: Option<u32>,
}

/// Pids of processes called `name` under `proc_dir`.
pub fn find_by_name(proc_dir: &Path, name: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(proc_dir).into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        let argv0 = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let argv0 = argv0.split(|b| *b == 0).next().unwrap_or_default();
        let base = Path::new(std::str::from_utf8(argv0).unwrap_or(""))
            .file_name()
            .and_then(|s| s.to_str())
            .unwrap_or("");
        if comm.trim_end() == name || base == name {
            out.push(pid);
        }
    }
    out
}

/// Looks once.
pub fn probe(spec: &CheckSpec, p: &Spec) -> Sample {
    let pids = match &p.target {
        Target::Name(n) => find_by_name(Path::new("/proc"), n),
        Target::Pidfile(f) => match std::fs::read_to_string(f) {
            Ok(s) => match s.trim().parse::<u32>() {
                Ok(pid) if Path::new(&format!("/proc/{pid}")).exists() => vec![pid],
                Ok(pid) => {
                    return Sample::judged(
                        spec,
                        Level::Crit,
                        Some(0.0),
                        format!("pid {pid} from {} is not running", f.display()),
                    )
                }
                Err(_) => {
                    return Sample::judged(
                        spec,
                        Level::Crit,
                        Some(0.0),
                        format!("{} holds no pid", f.display()),
                    )
                }
            },
            Err(e) => {
                return Sample::judged(
                    spec,
                    Level::Crit,
                    Some(0.0),
                    format!("{}: {e}", f.display()),
                )
            }
        },
    };
    let what = match &p.target {
        Target::Name(n) => format!("process `{n}`"),
        Target::Pidfile(f) => format!("process of {}", f.display()),
    };
    let n = pids.len() as u32;
    let shown: Vec<String> = pids.iter().take(5).map(u32::to_string).collect();
    let detail = format!("{n} {what} running (pids {})", shown.join(", "));
    let level = if n < p.min {
        Level::Crit
    } else if p.max.is_some_and(|m| n > m) {
        Level::Warn
    } else {
        Level::Ok
    };
    Sample::judged(spec, level, Some(f64::from(n)), detail)
}
