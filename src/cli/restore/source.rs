//! Which storage a restore reads: `--storage NAME`, else the default storage, else the first
//! copy storage (`[storage.NAME]`) that holds snapshots for the chosen moment, saying so.

use super::Args;
use crate::config::Config;
use crate::error::UsageError;
use crate::restore::plan;
use crate::snapshot::keys::SnapshotKey;
use crate::storage::{Storage, StorageSpec};
use chrono::{DateTime, Utc};

/// The storage chosen and the snapshots chosen in it.
pub struct Source {
    /// Where to read.
    pub storage: Storage,
    /// The snapshots of the moment there.
    pub chosen: Vec<(DateTime<Utc>, SnapshotKey)>,
}

/// The storages to try, in order: `--storage NAME` alone, else the default then every copy.
fn candidates(cfg: &Config, args: &Args) -> anyhow::Result<Vec<(String, StorageSpec)>> {
    let all = std::iter::once(("default".to_string(), cfg.storage.clone()))
        .chain(cfg.copies.iter().map(|c| (c.name.clone(), c.spec.clone())));
    let mut list: Vec<(String, StorageSpec)> = match &args.storage {
        Some(name) => all.filter(|(n, _)| n == name).collect(),
        None => all.collect(),
    };
    if list.is_empty() {
        let names: Vec<String> = std::iter::once("default".to_string())
            .chain(cfg.copies.iter().map(|c| c.name.clone()))
            .collect();
        let name = args.storage.as_deref().unwrap_or_default();
        return Err(UsageError(format!(
            "no storage `{name}` (hint: the storages are {}: [storage] is `default`, each [storage.NAME] is NAME)",
            names.join(", ")
        ))
        .into());
    }
    if let Some(host) = &args.from_host {
        let p = format!("{}/", host.trim_end_matches('/'));
        list = (list.into_iter())
            .map(|(name, spec)| (name, spec.with_prefix(p.clone())))
            .collect();
    }
    Ok(list)
}

/// The storage `--storage NAME` names (with `--from-host`), else the default one.
pub fn first(cfg: &Config, args: &Args) -> anyhow::Result<Storage> {
    let (name, spec) = candidates(cfg, args)?.swap_remove(0);
    Ok(cfg.open_storage(&spec, cfg.limits_of(&name))?)
}

/// Opens the first storage that holds snapshots matching `filter` at `at`; says on stderr why
/// an earlier one was passed over and, when it is not the default, which one is used.
pub fn choose(
    rt: &tokio::runtime::Runtime,
    cfg: &Config,
    args: &Args,
    filter: &plan::Filter,
    at: DateTime<Utc>,
) -> anyhow::Result<Source> {
    let mut last_err = None;
    for (name, spec) in candidates(cfg, args)? {
        let storage = cfg.open_storage(&spec, cfg.limits_of(&name))?;
        let found = try_storage(rt, cfg, filter, at, &storage);
        // Under object lock, what a leaked key can still do is hide objects behind delete
        // markers: the versions underneath are the backups. Used when they hold a newer
        // snapshot for the moment than what is visible.
        let hidden = (spec.object_lock().and_then(|_| storage.undeleted()))
            .and_then(|s| Some((try_storage(rt, cfg, filter, at, &s).ok()?, s)))
            .filter(|(h, _)| newest(h) > found.as_ref().ok().and_then(|c| newest(c)));
        if let Some((chosen, storage)) = hidden {
            eprintln!(
                "warning: in storage `{name}` ({}), the snapshot to restore is hidden behind delete markers: someone deleted objects with a key that may write to the bucket; restoring from the newest versions that are not delete markers (rotate that key; see docs/DISASTER-RECOVERY.md)",
                storage.describe()
            );
            return Ok(Source { storage, chosen });
        }
        match found {
            Ok(chosen) => {
                if name != "default" {
                    eprintln!(
                        "restoring from the copy storage `{name}` ({})",
                        storage.describe()
                    );
                }
                return Ok(Source { storage, chosen });
            }
            Err(e) => {
                if !cfg.copies.is_empty() && args.storage.is_none() {
                    eprintln!(
                        "storage `{name}` ({}): {e}; trying the next storage",
                        storage.describe()
                    );
                }
                last_err = Some(e);
            }
        }
    }
    Err(anyhow::Error::msg(last_err.unwrap_or_default()))
}

/// The time of the newest snapshot in `chosen`.
fn newest(chosen: &[(DateTime<Utc>, SnapshotKey)]) -> Option<DateTime<Utc>> {
    chosen.iter().map(|(t, _)| *t).max()
}

/// The snapshots matching `filter` at `at` in `storage`.
fn try_storage(
    rt: &tokio::runtime::Runtime,
    cfg: &Config,
    filter: &plan::Filter,
    at: DateTime<Utc>,
    storage: &Storage,
) -> Result<Vec<(DateTime<Utc>, SnapshotKey)>, String> {
    rt.block_on(async {
        let snaps = plan::all_snapshots(storage).await?;
        let chosen = plan::choose(&snaps, filter, at, cfg.agent.zone)?;
        plan::break_ties(storage, &snaps, chosen).await
    })
    .map_err(|e| e.to_string())
}
