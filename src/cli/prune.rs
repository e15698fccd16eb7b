//! `opsagent prune [--dry-run] [JOB…]`: apply (or show) the retention policy now.

use super::Cli;
use crate::backup::prune::apply;

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
