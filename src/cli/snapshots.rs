//! `opsagent snapshots [--job J] [--json] [--refresh] [--storage NAME]`: what is backed up,
//! newest first, and how far each copy storage is behind.

use super::{human_bytes, Cli};
use crate::catalog::SnapshotRow;
use crate::snapshot::keys::manifests_prefix;
use crate::snapshot::manifest::{Manifest, MediaSummary};
use crate::snapshot::refresh::{read_rows, refresh};
use crate::snapshot::Env;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

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
    /// List what a copy storage ([storage.NAME]) holds, read from its manifests.
    #[arg(long, value_name = "NAME", conflicts_with = "refresh")]
    pub storage: Option<String>,
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
    let rows = match args.storage.as_deref().filter(|n| *n != "default") {
        Some(name) => copy_rows(&env, name, args.job.as_deref())?,
        None => env.catalog.snapshots(args.job.as_deref())?,
    };
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
    if args.storage.is_none() {
        copies_behind(&env, &rows)?;
    }
    Ok(())
}

/// The snapshots copy storage `name` holds, from its manifests.
fn copy_rows(env: &Env, name: &str, job: Option<&str>) -> anyhow::Result<Vec<SnapshotRow>> {
    let storage = super::copy_storage(&env.config, name)?;
    let rt = super::runtime()?;
    let (rows, bad) = rt.block_on(read_rows(&storage, job))?;
    for b in &bad {
        eprintln!("warning: {b}");
    }
    eprintln!("copy storage `{name}` ({}):", storage.describe());
    Ok(rows)
}

/// For each copy storage: how many of the snapshots listed it holds.
fn copies_behind(env: &Env, rows: &[SnapshotRow]) -> anyhow::Result<()> {
    if env.config.copies.is_empty() {
        return Ok(());
    }
    let rt = super::runtime()?;
    for c in &env.config.copies {
        let jobs: Vec<&str> = (env.config.copy_pairs().into_iter())
            .filter(|(_, to)| *to == c.name)
            .map(|(j, _)| j)
            .collect();
        let wanted: Vec<&SnapshotRow> = rows
            .iter()
            .filter(|r| jobs.contains(&r.job.as_str()))
            .collect();
        let storage = super::copy_storage(&env.config, &c.name)?;
        let there = match rt.block_on(storage.list(&manifests_prefix(None))) {
            Ok(l) => l
                .into_iter()
                .map(|o| o.key)
                .collect::<std::collections::BTreeSet<_>>(),
            Err(e) => {
                println!("copy storage `{}`: cannot be listed: {e}", c.name);
                continue;
            }
        };
        let (held, missing): (Vec<&SnapshotRow>, Vec<&SnapshotRow>) =
            wanted.iter().partition(|r| there.contains(&r.manifest_key));
        // Behind: newer than the newest snapshot of the same job and item the copy holds (an
        // older one missing there may be one the copy's retention does not keep).
        let mut newest: BTreeMap<(&str, &str), DateTime<Utc>> = BTreeMap::new();
        for r in &held {
            let n = newest.entry((&r.job, &r.item)).or_insert(r.started_at);
            *n = (*n).max(r.started_at);
        }
        let behind = missing
            .iter()
            .filter(|r| {
                newest
                    .get(&(&r.job[..], &r.item[..]))
                    .is_none_or(|n| r.started_at > *n)
            })
            .count();
        let held = held.len();
        println!(
            "copy storage `{}` ({}): {held} of the {} snapshots of its jobs{}",
            c.name,
            storage.describe(),
            wanted.len(),
            if behind > 0 {
                format!(", {behind} newer BEHIND (copied after the next run)")
            } else {
                ", up to date".to_string()
            }
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
