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
    let (_, spec) = candidates(cfg, args)?.swap_remove(0);
    Ok(Storage::open(&spec)?.with_encryption(cfg.encryption.as_ref()))
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
        let storage = Storage::open(&spec)?.with_encryption(cfg.encryption.as_ref());
        let found = rt
            .block_on(plan::all_snapshots(&storage))
            .map_err(|e| e.to_string())
            .and_then(|snaps| {
                plan::choose(&snaps, filter, at, cfg.agent.zone).map_err(|e| e.to_string())
            });
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
