//! A run of a `[[media]]` job: load the job's index and the previous snapshot's tree, run the
//! engine (src/media/backup.rs), then commit in order — index object for the new packs, tree,
//! manifest last — so a snapshot exists only once every byte it needs is stored.

use crate::config::MediaJob;
use crate::media::backup::{walk_and_store, EngineError, EngineSettings, Outcome};
use crate::media::index::{self, Index, IndexError, IndexFile, Reuse, INDEX_FORMAT};
use crate::media::keys;
use crate::media::previous::Previous;
use crate::media::tree::{self, Opened, TreeBlobs, TreeReader};
use crate::media::walk::WalkSettings;
use crate::snapshot::commit::commit;
use crate::snapshot::keys::new_id;
use crate::snapshot::manifest::{Manifest, MediaSummary, ObjectRef, Tools, FORMAT_VERSION};
use crate::snapshot::Env;
use crate::storage::StorageError;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use std::sync::Arc;

/// What a media run committed.
#[derive(Debug)]
pub struct MediaRun {
    /// The manifest.
    pub manifest: Manifest,
    /// Whether files were skipped or changed while read.
    pub partial: bool,
}

/// Why a media run committed no snapshot.
#[derive(Debug, thiserror::Error)]
pub enum MediaRunError {
    /// The job's index cannot be read.
    #[error("reading the index of `{job}`: {cause}")]
    Index {
        /// The job.
        job: String,
        /// What is wrong with it.
        cause: IndexError,
    },
    /// The job's packs cannot be listed.
    #[error("listing the packs of `{job}`: {cause}")]
    ListPacks {
        /// The job.
        job: String,
        /// What the storage said.
        cause: StorageError,
    },
    /// The engine (walk, reading, pack uploads) failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// Storing the index object or the tree failed.
    #[error(transparent)]
    Store(#[from] StorageError),
    /// Writing the manifest failed (`snapshot::commit`): no snapshot.
    #[error(transparent)]
    Commit(StorageError),
}

/// The job's work: backs up `job` once through the engine ([`walk_and_store`]) and commits the
/// snapshot (the job lifecycle around it is `backup::lifecycle`).
pub async fn run(env: &Env, job: &MediaJob, run_id: i64) -> Result<MediaRun, MediaRunError> {
    crate::media::backup::return_large_blocks();
    let started_at = Utc::now();
    let id = new_id(started_at);
    let reuse = load_reuse(env, &job.name).await?;
    let previous = previous_tree(env, job, &reuse).await;
    let outcome = walk_and_store(
        &env.storage,
        &engine_settings(job, env.config.agent.priority),
        reuse,
        previous,
        env.progress.clone(),
    )
    .await?;
    let warnings = outcome.warnings.clone();
    let manifest = store(env, job, id, started_at, outcome).await?;
    if let Some(media) = &manifest.media {
        super::object_lock::extend_packs(&env.config.storage, &job.name, &media.packs).await?;
    }
    commit(env, &manifest, run_id)
        .await
        .map_err(MediaRunError::Commit)?;
    super::anomaly::check(env, job.anomaly_drop, &[], &manifest);
    for w in &warnings {
        tracing::warn!(job = %job.name, "{w}");
    }
    let partial = !warnings.is_empty();
    if let Some(stats) = &manifest.media {
        tracing::info!(
            job = %job.name, snapshot = %manifest.id, files = stats.files, bytes = stats.bytes,
            files_read = stats.files_read, new_bytes = stats.new_bytes, uploaded = stats.new_stored,
            partial, "media snapshot committed"
        );
    }
    Ok(MediaRun { manifest, partial })
}

/// Which blobs this run may reuse: the job's index, less the packs the bucket lost. The whole
/// index is let go before the previous tree comes in: a backup needs only which blobs it may
/// reuse.
async fn load_reuse(env: &Env, job: &str) -> Result<Arc<Reuse>, MediaRunError> {
    let mut index = Index::load(&env.storage, job)
        .await
        .map_err(|cause| MediaRunError::Index {
            job: job.to_string(),
            cause,
        })?;
    drop_missing_packs(env, job, &mut index).await?;
    tracing::debug!(
        job = %job,
        packs = index.packs.len(),
        blobs = index.blobs.len(),
        objects = index.keys.len(),
        "index loaded"
    );
    Ok(Arc::new(Reuse::of(&index)))
}

/// What the engine is to do for `job`.
fn engine_settings(job: &MediaJob, priority: crate::priority::Priority) -> EngineSettings {
    EngineSettings {
        job: job.name.clone(),
        walk: WalkSettings {
            paths: job.paths.clone(),
            exclude: job.exclude.clone(),
            one_file_system: job.one_file_system,
            follow_symlinks: job.follow_symlinks,
        },
        level: job.compression_level,
        workers: std::thread::available_parallelism().map_or(2, |n| n.get().min(4)),
        priority: Some(priority),
    }
}

/// Stores the index object for the new packs, then the tree; returns the manifest to commit.
async fn store(
    env: &Env,
    job: &MediaJob,
    id: String,
    started_at: DateTime<Utc>,
    outcome: Outcome,
) -> Result<Manifest, MediaRunError> {
    let Outcome {
        tree: tree_bytes,
        tree_raw_size: raw_size,
        reused_packs: mut packs,
        new_packs,
        stats,
        warnings,
    } = outcome;
    // Every new pack holds chunks of this tree, except blobs of a file that changed while it
    // was read (or was skipped after): listing such a pack too only makes prune keep it longer.
    packs.extend(new_packs.iter().map(|p| p.id));
    if !new_packs.is_empty() {
        let file = IndexFile {
            format: INDEX_FORMAT,
            packs: new_packs,
            delete_pending: Vec::new(),
        };
        index::write(&env.storage, &job.name, &file).await?;
    }
    let tree_key = keys::tree_key(&job.name, &id);
    let put = env
        .storage
        .put_bytes(&tree_key, Bytes::from(tree_bytes))
        .await?;
    let partial = !warnings.is_empty();
    let encryption =
        env.storage
            .recipients_for(&tree_key)
            .map(|recipients| super::manifest::Encryption {
                scheme: "age".into(),
                recipients,
            });
    Ok(Manifest {
        format: FORMAT_VERSION,
        id,
        kind: "media".into(),
        job: job.name.clone(),
        host: env.config.agent.hostname.clone(),
        item: keys::ITEM.into(),
        started_at,
        finished_at: Utc::now().max(started_at),
        objects: vec![ObjectRef {
            key: tree_key,
            size: put.size,
            sha256: put.sha256,
            raw_size,
            compression: "zstd".into(),
        }],
        tools: Tools {
            opsagent: env!("CARGO_PKG_VERSION").into(),
            ..Tools::default()
        },
        encryption,
        tables: None,
        binlog: None,
        media: Some(MediaSummary {
            paths: job.paths.iter().map(|p| p.display().to_string()).collect(),
            files: stats.files,
            dirs: stats.dirs,
            symlinks: stats.symlinks,
            bytes: stats.bytes,
            new_bytes: stats.new_bytes,
            new_stored: stats.new_stored,
            files_read: stats.files_read,
            bytes_read: stats.bytes_read,
            status: if partial { "partial" } else { "complete" }.into(),
            warnings,
            packs: packs.into_iter().collect(),
        }),
    })
}

/// Leaves out of `index` the packs the bucket does not hold (deleted by hand, lost): their
/// blobs are then not reused, so the files they held are read and stored again and this
/// snapshot is whole, where reusing them would carry the loss into every later snapshot.
/// Listed after the index was read: a pack is uploaded before the index naming it.
async fn drop_missing_packs(env: &Env, job: &str, index: &mut Index) -> Result<(), MediaRunError> {
    let listed = env
        .storage
        .list(&keys::packs_prefix(job))
        .await
        .map_err(|cause| MediaRunError::ListPacks {
            job: job.to_string(),
            cause,
        })?;
    let present: std::collections::HashSet<_> = listed
        .iter()
        .filter_map(|o| keys::pack_id_of(&o.key))
        .collect();
    index.packs.retain(|id, _| {
        let ok = present.contains(id);
        if !ok {
            tracing::warn!(job, pack = %id, "an indexed pack is missing from the bucket; files whose chunks it held are stored again (hint: `opsagent verify` names what older snapshots lost)");
        }
        ok
    });
    Ok(())
}

/// The newest snapshot's tree of `job`, for change detection; none when there is none or it
/// cannot be read (then every file is read again, which is slower but correct). A format-2
/// tree's blobs are found through `reuse` (a blob only in a pack pending deletion is not, and
/// the tree is then read as unreadable).
async fn previous_tree(env: &Env, job: &MediaJob, reuse: &Reuse) -> Previous {
    let name = job.name.as_str();
    let rows = match env.catalog.snapshots(Some(name)) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(job = name, error = %e, "catalog unreadable; reading every file");
            return Previous::none();
        }
    };
    let Some(m) = rows
        .iter()
        .filter(|r| r.kind == "media")
        .find_map(|r| Manifest::parse(&r.manifest_key, r.manifest.as_bytes()).ok())
    else {
        return Previous::none();
    };
    let Some(obj) = m.objects.first() else {
        return Previous::none();
    };
    match previous_entries(env, name, &obj.key, reuse).await {
        Ok(reader) => Previous::new(reader, &job.paths),
        Err(e) => {
            tracing::warn!(job = name, error = %e, "previous snapshot's tree unreadable; reading every file");
            Previous::none()
        }
    }
}

/// The entries of tree `key`, whichever its format. (The error is a `String` on purpose: it is
/// only logged, since an unreadable previous tree means reading every file, never a failure.)
async fn previous_entries(
    env: &Env,
    job: &str,
    key: &str,
    reuse: &Reuse,
) -> Result<TreeReader, String> {
    let bytes = env
        .storage
        .get_bytes_max(key, crate::media::limits::MAX_TREE)
        .await
        .map_err(|e| e.to_string())?;
    let n = bytes.len() as u64;
    match tree::open(key, std::io::Cursor::new(bytes), n).map_err(|e| e.to_string())? {
        Opened::Entries(r) => Ok(r),
        Opened::Lists(lists) => {
            let blobs = TreeBlobs::fetch(&env.storage, job, key, lists, &|id| reuse.pack_of(id))
                .await
                .map_err(|e| e.to_string())?;
            Ok(blobs.reader())
        }
    }
}
