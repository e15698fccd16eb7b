//! `opsagent ack JOB`: acknowledge the anomalies that froze a job's retention (a snapshot that
//! shrank sharply, see `backup::anomaly`). Retention resumes at the next backup or prune, and
//! alerting resolves `anomaly:JOB`.

use super::Cli;
use crate::catalog::Catalog;
use chrono::Utc;

/// Flags.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The job whose anomalies were checked (the shrink was expected, or the data restored).
    pub job: String,
}

/// Records the acknowledgement in the catalog and says what it lifted.
pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<()> {
    let cfg = super::load_config(cli)?;
    super::select_jobs(&cfg, std::slice::from_ref(&args.job))?;
    let cat = Catalog::open(&cfg.catalog_path())?;
    let zone = cfg.agent.zone;
    let acked = cat.ack_anomalies(&args.job, Utc::now(), &super::silence::who())?;
    if acked.is_empty() {
        println!(
            "{}: no anomaly to acknowledge; retention is not frozen",
            args.job
        );
        return Ok(());
    }
    for an in &acked {
        println!(
            "{}: acknowledged the anomaly of {} (snapshot {}): {}",
            args.job,
            zone.format(an.detected_at, "%Y-%m-%d %H:%M"),
            an.snapshot,
            an.detail
        );
    }
    println!(
        "{}: retention resumes at the next backup or `opsagent prune {}`",
        args.job, args.job
    );
    Ok(())
}
