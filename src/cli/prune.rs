//! `opsagent prune [--dry-run] [JOB…]`: apply (or show) the retention policy now, and abort
//! multipart uploads interrupted runs left open.

use super::Cli;
use crate::backup::prune::apply;
use crate::backup::stale;

/// Flags.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Show what would be removed, remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Jobs (default: all).
    pub jobs: Vec<String>,
}

/// Plans and applies retention per job and database.
pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<()> {
    let cfg = super::load_config(cli)?;
    let zone = cfg.agent.zone;
    let names = super::select_jobs(&cfg, &args.jobs)?;
    let jobs: Vec<_> = cfg
        .mysql
        .iter()
        .filter(|j| names.contains(&j.name))
        .map(|j| (j.name.clone(), j.keep))
        .collect();
    let env = super::open_env(cfg)?;
    let rt = super::runtime()?;
    if !args.dry_run {
        rt.block_on(crate::backup::owner::guard(&env))?;
    }
    let swept = rt.block_on(stale::sweep(&env, chrono::Utc::now(), args.dry_run))?;
    for u in &swept.aborted {
        let verb = if args.dry_run {
            "would abort"
        } else {
            "aborted"
        };
        println!(
            "{verb} stale upload {} (started {})",
            u.key,
            zone.format(u.initiated, "%Y-%m-%d %H:%M")
        );
    }
    for u in &swept.busy {
        println!("left upload {} alone: its job is running", u.key);
    }
    for (name, keep) in jobs {
        let _lock = crate::backup::lock::JobLock::acquire(&env.config.agent.state_dir, &name)?;
        let plan = rt.block_on(apply(&env, &name, &keep, args.dry_run))?;
        println!("{name}: keep {keep}");
        for d in &plan {
            let verb = match (d.keep, args.dry_run) {
                (true, _) => "keep  ",
                (false, true) => "would remove",
                (false, false) => "removed",
            };
            println!(
                "  {verb} {:<24} {}  {}  {}",
                d.item.item,
                zone.format(d.time, "%Y-%m-%d %H:%M"),
                d.item.id,
                d.reasons.join(",")
            );
        }
    }
    Ok(())
}
