//! `opsagent snapshots [--job J] [--json] [--refresh]`: what is backed up, newest first.

use super::{human_bytes, Cli};
use crate::catalog::SnapshotRow;
use crate::snapshot::manifest::{Manifest, MediaSummary};
use crate::snapshot::refresh::refresh;

/// Flags.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this job.
    #[arg(long)]
    pub job: Option<String>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    /// Rebuild the list from the manifests in storage first (new machine, lost state_dir).
    #[arg(long)]
    pub refresh: bool,
}

/// Lists snapshots.
pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<()> {
    let cfg = super::load_config(cli)?;
    let zone = cfg.agent.zone;
    let env = super::open_env(cfg)?;
    if args.refresh {
        let rt = super::runtime()?;
        let r = rt.block_on(refresh(&env.storage, &env.catalog))?;
        for b in &r.bad {
            eprintln!("warning: {b}");
        }
        eprintln!(
            "refreshed from {}: {} snapshot(s)",
            env.storage.describe(),
            r.snapshots
        );
    }
    let rows = env.catalog.snapshots(args.job.as_deref())?;
    if args.json {
        let list: Vec<serde_json::Value> = rows.iter().map(json_row).collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    if rows.is_empty() {
        println!(
            "no snapshots{}",
            if args.refresh {
                ""
            } else {
                " (try --refresh to read them from storage)"
            }
        );
        return Ok(());
    }
    println!(
        "{:<12} {:<24} {:<22} {:>10} {:>10} {:>8}  ID",
        "JOB", "WHAT", "TIME", "SIZE", "STORED", "TOOK"
    );
    for r in &rows {
        println!(
            "{:<12} {:<24} {:<22} {:>10} {:>10} {:>7}s  {}",
            r.job,
            what(r),
            zone.format(r.started_at, "%Y-%m-%d %H:%M:%S"),
            human_bytes(r.size),
            human_bytes(r.stored_size),
            (r.finished_at - r.started_at).num_seconds().max(0),
            r.id
        );
    }
    Ok(())
}

/// The database name, or for media snapshots the file count, what was new and the status.
fn what(r: &SnapshotRow) -> String {
    match media_summary(r) {
        Some(m) => format!(
            "{} files, +{}{}",
            m.files,
            human_bytes(m.new_bytes),
            if m.status == "partial" {
                " PARTIAL"
            } else {
                ""
            }
        ),
        None => crate::quote::printable(&r.item),
    }
}

fn media_summary(r: &SnapshotRow) -> Option<MediaSummary> {
    (r.kind == "media")
        .then(|| Manifest::parse(&r.manifest_key, r.manifest.as_bytes()).ok())
        .flatten()
        .and_then(|m| m.media)
}

fn json_row(r: &SnapshotRow) -> serde_json::Value {
    let media = media_summary(r).map(|m| {
        serde_json::json!({
            "files": m.files, "dirs": m.dirs, "symlinks": m.symlinks, "bytes": m.bytes,
            "new_bytes": m.new_bytes, "new_stored": m.new_stored, "status": m.status,
            "warnings": m.warnings, "paths": m.paths,
        })
    });
    serde_json::json!({
        "media": media,
        "id": r.id,
        "job": r.job,
        "kind": r.kind,
        "host": r.host,
        "database": r.item,
        "started_at": r.started_at.to_rfc3339(),
        "finished_at": r.finished_at.to_rfc3339(),
        "size": r.size,
        "stored_size": r.stored_size,
        "manifest_key": r.manifest_key,
    })
}
