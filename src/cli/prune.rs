//! `opsagent prune [--dry-run] [--credentials FILE] [JOB…]`: apply (or show) the retention policy now; for media
//! jobs, then collect the packs no remaining snapshot uses; and abort multipart uploads
//! interrupted runs left open.

use super::{human_bytes, Cli};
use crate::backup::prune::{self, apply_all};
use crate::media::prune::Report;
use crate::snapshot::orphan_uploads;

/// Why retention keeps (or removes) a snapshot; for one the object lock holds, until when.
fn reasons(
    d: &crate::retention::Decision<crate::snapshot::keys::SnapshotKey>,
    lock: Option<crate::storage::ObjectLock>,
    zone: crate::schedule::Zone,
) -> String {
    match (d.reasons.as_slice(), lock) {
        ([r], Some(lock)) if *r == prune::LOCKED => format!(
            "locked by the bucket's object lock ({} days): removable after {}",
            lock.days,
            zone.format(prune::unlocked_at(d.time, lock), "%Y-%m-%d %H:%M")
        ),
        _ => d.reasons.join(","),
    }
}

/// Flags.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Show what would be removed, remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// An S3 key that may delete (TOML: access_key_id, secret_access_key), used instead of the
    /// configured one: the server's own key can then be append-only (write, never delete).
    #[arg(long, value_name = "FILE")]
    pub credentials: Option<std::path::PathBuf>,
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
        .map(|j| (j.name.clone(), j.keep))
        .chain(cfg.media.iter().map(|j| (j.name.clone(), j.keep)))
        .filter(|(name, _)| names.contains(name))
        .collect();
    let mut cfg = cfg;
    if let Some(file) = &args.credentials {
        let c = crate::config::load_credentials(file)?;
        cfg.storage = crate::config::with_credentials(&cfg.storage, &c).ok_or_else(|| {
            crate::error::UsageError("--credentials applies to S3 storage; this one is a local directory (hint: leave it out)".into())
        })?;
    }
    let env = super::open_env(cfg)?;
    let rt = super::runtime()?;
    if !args.dry_run {
        rt.block_on(crate::snapshot::claim::guard(&env))?;
    }
    let swept = rt.block_on(orphan_uploads::sweep(
        &env,
        chrono::Utc::now(),
        args.dry_run,
    ))?;
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
        let _lock = crate::snapshot::lock::JobLock::acquire(&env.config.agent.state_dir, &name)?;
        let pruned = rt.block_on(apply_all(&env, &name, &keep, args.dry_run, true))?;
        println!("{name}: keep {keep}");
        for an in &pruned.frozen {
            println!(
                "  retention FROZEN: kept every snapshot because of the anomaly found {} in snapshot {}: {} (run `opsagent ack {name}` once checked)",
                zone.format(an.detected_at, "%Y-%m-%d %H:%M"),
                an.snapshot,
                an.detail
            );
        }
        for d in &pruned.decisions {
            let verb = match (d.keep, args.dry_run) {
                (true, _) => "keep  ",
                (false, true) => "would remove",
                (false, false) => "removed",
            };
            let why = reasons(d, prune::storage_lock(&env), zone);
            println!(
                "  {verb} {:<24} {}  {}  {why}",
                d.item.item,
                zone.format(d.time, "%Y-%m-%d %H:%M"),
                d.item.id,
            );
        }
        if let Some(r) = &pruned.packs {
            print_packs(r);
        }
    }
    Ok(())
}

/// What collecting a media job's packs did, a few lines.
fn print_packs(r: &Report) {
    let w = |done: &'static str, would: &'static str| if r.dry_run { would } else { done };
    println!(
        "  packs: {} in use by {} snapshot(s) of {} found; {} {} ({}), {} back in use",
        r.live,
        r.snapshots,
        r.packs,
        w("marked for deletion", "would mark for deletion"),
        r.marked,
        human_bytes(r.marked_bytes),
        r.unmarked,
    );
    println!(
        "  packs: {} {} ({} freed); {} pending ({}) until their grace period ends",
        w("deleted", "would delete"),
        r.deleted,
        human_bytes(r.deleted_bytes),
        r.pending,
        human_bytes(r.pending_bytes),
    );
    match &r.repack_skipped {
        Some(why) => println!("  repack: skipped: {why}"),
        None if r.repacked > 0 => println!(
            "  repack: {} {} mostly unused pack(s) ({} into {})",
            w("copied the live part of", "would copy the live part of"),
            r.repacked,
            human_bytes(r.repacked_bytes),
            human_bytes(r.repack_written),
        ),
        None => {}
    }
    if r.trees_deleted > 0 || r.manifests_rewritten > 0 {
        println!(
            "  {} {} tree(s) of interrupted runs, {} {} manifest pack list(s)",
            w("deleted", "would delete"),
            r.trees_deleted,
            w("rewrote", "would rewrite"),
            r.manifests_rewritten,
        );
    }
    for warning in &r.warnings {
        println!("  warning: {warning}");
    }
}
