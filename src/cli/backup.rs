//! `opsagent backup [JOB…]`: run jobs now, with a progress line on a terminal.

use super::{human_bytes, Cli};
use crate::backup::{run_job, Trigger};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Flags.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Jobs to run (default: all).
    pub jobs: Vec<String>,
    /// Take the storage prefix over from the agent that owns it (once, when this machine
    /// replaces that one); see `opsagent-owner.json` in the README.
    #[arg(long)]
    pub take_over: bool,
}

/// Runs the jobs one after another; fails if any failed.
pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<()> {
    let cfg = super::load_config(cli)?;
    let names = super::select_jobs(&cfg, &args.jobs)?;
    let mut env = super::open_env(cfg)?;
    let counter = Arc::new(AtomicU64::new(0));
    env.progress = Some(counter.clone());
    let rt = super::runtime()?;
    if args.take_over {
        let me = crate::snapshot::claim::Identity::of(&env)?;
        super::take_over(&rt, &env.storage, &me)?;
    }
    let mut failed = Vec::new();
    for name in &names {
        counter.store(0, Ordering::Relaxed);
        let started = Instant::now();
        let ticker = std::io::stderr()
            .is_terminal()
            .then(|| spawn_progress(&rt, name, counter.clone()));
        let result = rt.block_on(run_job(&env, name, Trigger::Cli));
        if let Some(t) = ticker {
            t.abort();
            eprint!("\r\x1b[2K");
        }
        match result {
            Ok(r) if !r.warnings.is_empty() => {
                println!(
                    "{name}: PARTIAL, 1 snapshot committed ({} stored in {:.1}s) with {} warning(s):",
                    human_bytes(r.bytes),
                    started.elapsed().as_secs_f64(),
                    r.warnings.len()
                );
                for w in r.warnings.iter().take(20) {
                    println!("  {w}");
                }
                if r.warnings.len() > 20 {
                    println!(
                        "  … and {} more (see `opsagent snapshots --json`)",
                        r.warnings.len() - 20
                    );
                }
                failed.push(format!("{name} (partial)"));
            }
            Ok(r) => println!(
                "{name}: ok, {} snapshot(s), {} stored in {:.1}s{}",
                r.snapshots.len(),
                human_bytes(r.bytes),
                started.elapsed().as_secs_f64(),
                if r.pruned > 0 {
                    format!(", {} old snapshot(s) pruned", r.pruned)
                } else {
                    String::new()
                }
            ),
            Err(e) => {
                eprintln!("{name}: FAILED: {e}");
                failed.push(name.clone());
            }
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        anyhow::bail!(
            "{} of {} job(s) failed or were partial: {}",
            failed.len(),
            names.len(),
            failed.join(", ")
        )
    }
}

fn spawn_progress(
    rt: &tokio::runtime::Runtime,
    name: &str,
    counter: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<()> {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {prefix}: {binary_bytes} read ({binary_bytes_per_sec}) {elapsed}",
        )
        .expect("valid template"),
    );
    bar.set_prefix(name.to_string());
    rt.spawn(async move {
        loop {
            bar.set_position(counter.load(Ordering::Relaxed));
            bar.tick();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}
