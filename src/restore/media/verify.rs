//! The restore drill of a media job (`opsagent verify JOB`): the newest snapshot's tree is
//! read (sha256 checked), every chunk it needs must be listed in the index, in a pack the
//! manifest lists, with sizes that add up; then every pack the manifest lists is downloaded
//! once and checked: its id (BLAKE3 of its bytes), its header against the index, and every
//! blob in it against its own hash. Nothing is written to disk. Problems name the pack and
//! every file they touch.

use super::packs::{pipeline, BlobWork, FetchError, Fetched, PackWork, TaskError};
use super::{load_tree, Damage, MediaError};
use crate::config::Zone;
use crate::media::index::{Index, IndexError};
use crate::media::tree::{Node, NodeKind};
use crate::media::{keys, pack, Id};
use crate::restore::plan::{all_snapshots, choose, load, Chosen, Filter};
use crate::storage::Storage;
use chrono::Utc;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

/// What a media drill checked.
#[derive(Debug, Clone, Default)]
pub struct MediaDrill {
    /// The snapshot id.
    pub snapshot: String,
    /// Regular files in its tree.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Packs downloaded and checked.
    pub packs: u64,
    /// Bytes downloaded.
    pub downloaded: u64,
    /// Blobs checked against their hashes.
    pub blobs: u64,
    /// Seconds it took.
    pub seconds: f64,
}

/// State of the pack checks, owned by the checking thread.
struct Checking {
    nodes: Arc<Vec<Node>>,
    users: HashMap<Id, Vec<usize>>,
    index: Arc<Index>,
    damage: Damage,
    drill: MediaDrill,
}

impl Checking {
    fn lose_blob(&mut self, blob: &Id) {
        for i in self.users.get(blob).into_iter().flatten() {
            self.damage.file(&self.nodes[*i].path.display());
        }
    }

    fn check(&mut self, w: &PackWork, got: Result<Fetched, FetchError>) {
        let f = match got {
            Ok(f) => f,
            Err(why) => {
                self.damage.problem(&w.key, &why.to_string());
                for b in &w.blobs {
                    self.lose_blob(&b.entry.id);
                }
                return;
            }
        };
        self.drill.packs += 1;
        self.drill.downloaded += f.bytes.len() as u64;
        if !f.id_ok {
            self.damage.problem(
                &w.key,
                "its bytes do not hash to its id (damaged in storage)",
            );
        }
        let listed = self.index.packs.get(&w.id).map(|p| &p.blobs);
        match pack::parse_header(&w.key, &f.bytes) {
            Ok(h) if Some(&h) == listed => {}
            Ok(_) => self
                .damage
                .problem(&w.key, "its header and the index list different blobs"),
            Err(e) => self.damage.problem(&w.key, &e.to_string()),
        }
        for b in &w.blobs {
            self.drill.blobs += 1;
            if let Err(e) = pack::extract(&w.key, &f.bytes, &b.entry) {
                self.damage.problem(&w.key, &e.to_string());
                self.lose_blob(&b.entry.id);
            }
        }
    }
}

/// Checks that every chunk of `nodes` is indexed, in a pack of `listed`, and adds up.
/// Returns which files use which blob.
fn check_tree(
    nodes: &[Node],
    index: &Index,
    listed: &HashSet<Id>,
    manifest_key: &str,
    damage: &mut Damage,
) -> HashMap<Id, Vec<usize>> {
    let mut users: HashMap<Id, Vec<usize>> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        if n.kind != NodeKind::File {
            continue;
        }
        let path = n.path.display();
        let mut total = 0;
        for c in &n.chunks {
            users.entry(*c).or_default().push(i);
            match index.blobs.get(c) {
                None => {
                    damage.problem(&path, &format!("chunk {c} is in no index object"));
                    damage.file(&path);
                }
                Some(l) => {
                    total += l.entry.raw_length;
                    if !listed.contains(&l.pack) {
                        damage.problem(
                            manifest_key,
                            &format!(
                                "pack {} holds chunks of the snapshot but is not listed",
                                l.pack
                            ),
                        );
                    }
                }
            }
        }
        if total != n.size && n.chunks.iter().all(|c| index.blobs.contains_key(c)) {
            damage.problem(
                &path,
                &format!(
                    "its chunks add up to {total} bytes, the tree says {}",
                    n.size
                ),
            );
            damage.file(&path);
        }
    }
    users
}

/// Why a media drill failed.
#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    /// Listing or choosing the snapshots failed (the restore planner's message, kept as text
    /// so this does not depend on the planner's error type).
    #[error("{0}")]
    Snapshots(String),
    /// The job has snapshots, none of them media.
    #[error("job `{job}` has no media snapshot in storage")]
    NoSnapshot {
        /// The job.
        job: String,
    },
    /// The snapshot's tree cannot be read.
    #[error(transparent)]
    Tree(MediaError),
    /// The job's index cannot be read.
    #[error("reading the index of `{job}`: {cause}")]
    Index {
        /// The job.
        job: String,
        /// What is wrong.
        cause: IndexError,
    },
    /// A download or the checking thread failed.
    #[error(transparent)]
    Task(#[from] TaskError),
    /// Packs or chunks are damaged or missing: every problem and the files affected.
    #[error("snapshot {snapshot}: {damage}")]
    Damaged {
        /// The snapshot id.
        snapshot: String,
        /// What is damaged.
        damage: Damage,
    },
}

/// The newest media snapshot of `job`, its manifest read.
async fn newest(storage: &Storage, job: &str, zone: Zone) -> Result<Chosen, DrillError> {
    let snaps = all_snapshots(storage)
        .await
        .map_err(|e| DrillError::Snapshots(e.to_string()))?;
    let filter = Filter {
        jobs: vec![job.to_string()],
        databases: vec![],
    };
    let chosen = choose(&snaps, &filter, Utc::now(), zone)
        .map_err(|e| DrillError::Snapshots(e.to_string()))?;
    let chosen = super::super::plan::break_ties(storage, &snaps, chosen)
        .await
        .map_err(|e| DrillError::Snapshots(e.to_string()))?;
    let chosen = load(storage, chosen)
        .await
        .map_err(|e| DrillError::Snapshots(e.to_string()))?;
    chosen
        .into_iter()
        .find(|c| c.manifest.kind == "media")
        .ok_or_else(|| DrillError::NoSnapshot {
            job: job.to_string(),
        })
}

/// Every pack the manifest lists, with all its blobs to check; a pack no index object lists
/// is recorded as damage.
fn pack_work(job: &str, packs: Vec<Id>, index: &Index, damage: &mut Damage) -> Vec<PackWork> {
    let mut work = Vec::new();
    for id in packs {
        let key = keys::pack_key(job, &id);
        match index.packs.get(&id) {
            Some(p) => work.push(PackWork {
                id,
                key,
                blobs: p
                    .blobs
                    .iter()
                    .map(|b| BlobWork {
                        entry: *b,
                        targets: Vec::new(),
                    })
                    .collect(),
            }),
            None => damage.problem(&key, "the manifest lists it but no index object does"),
        }
    }
    work
}

/// Runs the drill of media job `job` on its newest snapshot. The error lists every problem
/// and the files affected.
pub async fn drill(storage: &Storage, job: &str, zone: Zone) -> Result<MediaDrill, DrillError> {
    let started = Instant::now();
    let m = newest(storage, job, zone).await?.manifest;
    let nodes = Arc::new(load_tree(storage, &m).await.map_err(DrillError::Tree)?);
    let mut index = Index::load(storage, job)
        .await
        .map_err(|cause| DrillError::Index {
            job: job.to_string(),
            cause,
        })?;
    let packs = m
        .media
        .as_ref()
        .map(|s| s.packs.clone())
        .unwrap_or_default();
    index.prefer(&packs);
    let index = Arc::new(index);
    let listed: HashSet<Id> = packs.iter().copied().collect();
    let mut damage = Damage::default();
    let users = check_tree(&nodes, &index, &listed, &m.key(), &mut damage);
    let work = pack_work(job, packs, &index, &mut damage);
    let files = nodes.iter().filter(|n| n.kind == NodeKind::File);
    let drill = MediaDrill {
        snapshot: m.id.clone(),
        files: files.clone().count() as u64,
        bytes: files.map(|n| n.size).sum(),
        ..MediaDrill::default()
    };
    let state = Checking {
        nodes,
        users,
        index,
        damage,
        drill,
    };
    let mut done = pipeline(storage, work, 2, state, |s, w, got| s.check(w, got)).await?;
    done.drill.seconds = started.elapsed().as_secs_f64();
    if done.damage.is_empty() {
        Ok(done.drill)
    } else {
        Err(DrillError::Damaged {
            snapshot: m.id,
            damage: done.damage,
        })
    }
}
