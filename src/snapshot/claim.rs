//! Who may write to a storage prefix: the owner object `<prefix>opsagent-owner.json`.
//!
//! Two agents writing one prefix (a cloned VM, a copied configuration with the same `prefix`, a
//! test box pointed at the production bucket) would prune each other's snapshots and sweep each
//! other's uploads as orphans. So the first agent to write claims the prefix: it stores its
//! agent id (random, kept in `state_dir/agent-id`), host name, machine id and the time. Every
//! backup and prune checks the claim first and refuses, naming the other owner, when it is not
//! ours. Reading (listing, restores, drills) never checks: restoring on a new machine after a
//! disaster must just work.
//!
//! Taking over is a one-off, explicit act, as `restic unlock` or `borg break-lock` are:
//! `opsagent backup --take-over` (or `check-config --connect --take-over`) rewrites the claim
//! with this agent, remembering whom it replaced. There is no setting that takes over for good,
//! which would defeat the check. The claim is written, then read back: of two agents claiming at
//! the same moment only the one whose write landed last goes on.

use super::Env;
use crate::media::limits::MAX_MANIFEST;
use crate::storage::{Storage, StorageError};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The owner object's key, relative to the storage prefix.
pub const OWNER_KEY: &str = "opsagent-owner.json";
/// The owner object format this build writes.
pub const OWNER_FORMAT: u32 = 1;
/// The file in `state_dir` that holds this agent's id.
pub const AGENT_ID_FILE: &str = "agent-id";

/// The owner object (docs/FORMAT.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerRecord {
    /// Format version.
    pub format: u32,
    /// The owning agent's id (32 hex digits from its `state_dir/agent-id`).
    pub agent_id: String,
    /// Its host name (`[agent] hostname`).
    pub hostname: String,
    /// Its `/etc/machine-id`, when it has one.
    #[serde(default)]
    pub machine_id: Option<String>,
    /// Its state directory.
    #[serde(default)]
    pub state_dir: Option<String>,
    /// When it claimed the prefix.
    pub created_at: DateTime<Utc>,
    /// The owner it replaced with `--take-over`, as [`OwnerRecord::who`] described it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taken_over_from: Option<String>,
}

impl OwnerRecord {
    /// `web-01 (agent 1a2b3c4d…, machine 5e6f…, state /var/lib/opsagent, since 2026-11-20 07:30 UTC)`.
    pub fn who(&self) -> String {
        let mut s = format!("{} (agent {}", self.hostname, short(&self.agent_id));
        if let Some(m) = &self.machine_id {
            s += &format!(", machine {}", short(m));
        }
        if let Some(d) = &self.state_dir {
            s += &format!(", state {d}");
        }
        s + &format!(", since {})", self.created_at.format("%Y-%m-%d %H:%M UTC"))
    }
}

fn short(id: &str) -> String {
    id.chars().take(12).collect()
}

/// This agent, as it would write itself into the owner object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// From `state_dir/agent-id`.
    pub agent_id: String,
    /// `[agent] hostname`.
    pub hostname: String,
    /// `/etc/machine-id`, if readable and not empty.
    pub machine_id: Option<String>,
    /// The state directory.
    pub state_dir: PathBuf,
}

/// Why writing to the prefix is refused.
#[derive(Debug, thiserror::Error)]
pub enum OwnerError {
    /// Another agent owns the prefix.
    #[error("{storage} belongs to another opsagent: {owner}; this agent is {me}. Two agents writing one prefix would prune each other's snapshots, so backups and prune are refused (hint: if that agent is gone for good and this one replaces it, run `opsagent backup --take-over` once; otherwise give this agent its own `[storage] prefix`. Listing and restores work without taking over{same})")]
    Foreign {
        /// The storage, as [`Storage::describe`] prints it.
        storage: String,
        /// The owner, as [`OwnerRecord::who`] prints it.
        owner: String,
        /// This agent, described the same way.
        me: String,
        /// A remark when the owner looks like this very machine.
        same: String,
    },
    /// The owner object exists but cannot be understood.
    #[error(
        "the owner object `{OWNER_KEY}` in {storage} is not readable: {reason} (hint: {hint})"
    )]
    Unreadable {
        /// The storage.
        storage: String,
        /// What is wrong.
        reason: String,
        /// What to do.
        hint: &'static str,
    },
    /// The agent id file cannot be read or created.
    #[error("cannot read or create the agent id {path}: {source} (hint: check that state_dir is writable and not full)")]
    AgentId {
        /// `state_dir/agent-id`.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The storage failed.
    #[error("cannot check the owner of the storage prefix: {0}")]
    Storage(#[from] StorageError),
}

/// What [`ensure`] found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// There was no owner object; this agent now owns the prefix.
    Created,
    /// This agent already owned it.
    Ours,
    /// Another agent owned it; this one took over (only with `take_over`).
    TakenOver {
        /// The previous owner.
        previous: OwnerRecord,
    },
}

impl Identity {
    /// This agent: its id from `state_dir/agent-id` (created with a random id if missing).
    pub fn load_or_create(state_dir: &Path, hostname: &str) -> Result<Identity, OwnerError> {
        let path = state_dir.join(AGENT_ID_FILE);
        let agent_id = agent_id(&path).map_err(|source| OwnerError::AgentId { path, source })?;
        let machine_id = std::fs::read_to_string("/etc/machine-id")
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty());
        Ok(Identity {
            agent_id,
            hostname: hostname.to_string(),
            machine_id,
            state_dir: state_dir.to_path_buf(),
        })
    }

    /// The agent of `env`'s configuration.
    pub fn of(env: &Env) -> Result<Identity, OwnerError> {
        let agent = &env.config.agent;
        Identity::load_or_create(&agent.state_dir, &agent.hostname)
    }

    /// The owner object this agent writes.
    pub fn record(&self, now: DateTime<Utc>) -> OwnerRecord {
        OwnerRecord {
            format: OWNER_FORMAT,
            agent_id: self.agent_id.clone(),
            hostname: self.hostname.clone(),
            machine_id: self.machine_id.clone(),
            state_dir: Some(self.state_dir.display().to_string()),
            created_at: now,
            taken_over_from: None,
        }
    }
}

/// Reads the id in `path`, or writes a new random one there (linked into place, so two
/// processes starting at once agree on one id). Neither the file nor the temp file is reached
/// through a symlink (root-run verbs do this in a directory the opsagent user owns).
fn agent_id(path: &Path) -> std::io::Result<String> {
    use std::os::unix::fs::OpenOptionsExt;
    let read = |p: &Path| -> std::io::Result<Option<String>> {
        let opened = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(p);
        match opened.and_then(std::io::read_to_string) {
            Ok(s) if is_agent_id(s.trim()) => Ok(Some(s.trim().to_string())),
            Ok(_) => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "not 32 hex digits",
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    };
    if let Some(id) = read(path)? {
        return Ok(id);
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut rnd = [0u8; 16];
    getrandom::fill(&mut rnd).map_err(|e| std::io::Error::other(e.to_string()))?;
    let id = hex::encode(rnd);
    // A name of this call's own: tasks of one daemon (the upload sweep, the heartbeat object)
    // create the id at the same moment, and a name shared by the process let one remove the
    // other's file before it was linked (seen in CI: "agent-id: No such file or directory").
    let tmp = dir.join(format!(".{AGENT_ID_FILE}.{}.{id}", std::process::id()));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        f.write_all(format!("{id}\n").as_bytes())?;
        f.sync_all()?;
        match std::fs::hard_link(&tmp, path) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(e),
            _ => Ok(()),
        }
    })();
    let _ = std::fs::remove_file(&tmp);
    written?;
    read(path)?.ok_or_else(|| std::io::Error::other("the agent id vanished after writing it"))
}

fn is_agent_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The owner object of `storage`, if there is one.
pub async fn read(storage: &Storage) -> Result<Option<OwnerRecord>, OwnerError> {
    let bytes = match storage.get_bytes_max(OWNER_KEY, MAX_MANIFEST).await {
        Ok(b) => b,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let unreadable = |reason: String, hint| OwnerError::Unreadable {
        storage: storage.describe(),
        reason,
        hint,
    };
    let rec: OwnerRecord = serde_json::from_slice(&bytes).map_err(|e| {
        unreadable(
            e.to_string(),
            "look at it; `opsagent backup --take-over` replaces it with this agent",
        )
    })?;
    if rec.format == 0 || rec.format > OWNER_FORMAT {
        return Err(unreadable(
            format!("format {} is newer than this opsagent knows", rec.format),
            "upgrade opsagent",
        ));
    }
    Ok(Some(rec))
}

/// Makes sure this agent may write to `storage`: claims the prefix when nobody has, accepts
/// our own claim, and refuses another agent's unless `take_over`.
pub async fn ensure(
    storage: &Storage,
    me: &Identity,
    take_over: bool,
) -> Result<Claim, OwnerError> {
    let found = match read(storage).await {
        Ok(found) => found,
        // A garbled owner object is replaced only on request.
        Err(OwnerError::Unreadable { .. }) if take_over => None,
        Err(e) => return Err(e),
    };
    let (claim, rec) = match found {
        Some(rec) if rec.agent_id == me.agent_id => return Ok(Claim::Ours),
        Some(rec) if !take_over => return Err(foreign(storage, &rec, me)),
        Some(previous) => {
            let mut rec = me.record(Utc::now());
            rec.taken_over_from = Some(previous.who());
            (Claim::TakenOver { previous }, rec)
        }
        None => (Claim::Created, me.record(Utc::now())),
    };
    let body = serde_json::to_vec_pretty(&rec).expect("the owner record serialises");
    storage.put_bytes(OWNER_KEY, Bytes::from(body)).await?;
    // Read back: if another agent claimed at the same moment, the last write won.
    match read(storage).await? {
        Some(now) if now.agent_id == me.agent_id => {
            if let Claim::TakenOver { previous } = &claim {
                tracing::warn!(storage = %storage.describe(), previous = %previous.who(), "took over the storage prefix from another agent");
            } else {
                tracing::info!(storage = %storage.describe(), "claimed the storage prefix for this agent");
            }
            Ok(claim)
        }
        Some(other) => Err(foreign(storage, &other, me)),
        None => Err(OwnerError::Unreadable {
            storage: storage.describe(),
            reason: "it vanished right after it was written".into(),
            hint: "check the bucket's lifecycle rules and other writers",
        }),
    }
}

fn foreign(storage: &Storage, owner: &OwnerRecord, me: &Identity) -> OwnerError {
    let here = me.state_dir.display().to_string();
    let same = match (&owner.machine_id, &me.machine_id) {
        (Some(a), Some(b)) if a == b && owner.state_dir.as_deref() == Some(here.as_str()) => {
            format!(
                ". The owner is this machine and state directory: was {} removed or replaced?",
                me.state_dir.join(AGENT_ID_FILE).display()
            )
        }
        (Some(a), Some(b)) if a == b => {
            ". The owner is this machine with another state directory: two configurations \
             share one prefix"
                .to_string()
        }
        _ => String::new(),
    };
    let machine = me.machine_id.as_deref().map(short);
    let me_text = format!(
        "{} (agent {}{}, state {})",
        me.hostname,
        short(&me.agent_id),
        machine
            .map(|m| format!(", machine {m}"))
            .unwrap_or_default(),
        me.state_dir.display()
    );
    OwnerError::Foreign {
        storage: storage.describe(),
        owner: owner.who(),
        me: me_text,
        same,
    }
}

/// The check every writing run makes first: claim or confirm the prefix for this agent.
pub async fn guard(env: &Env) -> Result<(), OwnerError> {
    let me = Identity::of(env)?;
    ensure(&env.storage, &me, false).await.map(drop)
}

/// Like [`guard`] but never writes: an absent owner object is fine (nobody claimed yet).
pub async fn check_only(env: &Env) -> Result<(), OwnerError> {
    let me = Identity::of(env)?;
    match read(&env.storage).await? {
        Some(rec) if rec.agent_id != me.agent_id => Err(foreign(&env.storage, &rec, &me)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me(dir: &Path, host: &str) -> Identity {
        Identity::load_or_create(dir, host).unwrap()
    }

    #[test]
    fn tasks_creating_the_agent_id_at_once_all_get_the_same_one() {
        for _ in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("state").join(AGENT_ID_FILE);
            let start = std::sync::Arc::new(std::sync::Barrier::new(8));
            let ids: Vec<String> = (0..8)
                .map(|_| {
                    let (p, start) = (path.clone(), start.clone());
                    std::thread::spawn(move || {
                        start.wait();
                        agent_id(&p)
                    })
                })
                .collect::<Vec<_>>()
                .into_iter()
                .map(|h| h.join().unwrap().unwrap())
                .collect();
            assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
            let left: Vec<_> = std::fs::read_dir(dir.path().join("state"))
                .unwrap()
                .collect();
            assert_eq!(left.len(), 1, "temporary files left: {left:?}");
        }
    }

    #[test]
    fn agent_id_is_created_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let a = me(&dir.path().join("state"), "web-01");
        assert!(is_agent_id(&a.agent_id), "{a:?}");
        assert_eq!(me(&dir.path().join("state"), "web-01").agent_id, a.agent_id);
        assert_ne!(me(&dir.path().join("other"), "web-01").agent_id, a.agent_id);
        std::fs::write(dir.path().join("state").join(AGENT_ID_FILE), "garbage\n").unwrap();
        let err = Identity::load_or_create(&dir.path().join("state"), "x").unwrap_err();
        assert!(err.to_string().contains("agent-id"), "{err}");
    }

    #[tokio::test]
    async fn first_claims_second_is_refused_until_it_takes_over() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::in_memory();
        let (a, b) = (
            me(&dir.path().join("a"), "web-01"),
            me(&dir.path().join("b"), "web-02"),
        );
        assert_eq!(ensure(&storage, &a, false).await.unwrap(), Claim::Created);
        assert_eq!(ensure(&storage, &a, false).await.unwrap(), Claim::Ours);
        let err = ensure(&storage, &b, false).await.unwrap_err().to_string();
        for needle in [
            "in-memory storage belongs to another opsagent",
            "web-01 (agent",
            "this agent is web-02",
            "--take-over",
            "restores work",
        ] {
            assert!(err.contains(needle), "`{needle}` missing: {err}");
        }
        match ensure(&storage, &b, true).await.unwrap() {
            Claim::TakenOver { previous } => assert_eq!(previous.agent_id, a.agent_id),
            other => panic!("{other:?}"),
        }
        let rec = read(&storage).await.unwrap().unwrap();
        assert_eq!(rec.hostname, "web-02");
        assert!(rec.taken_over_from.unwrap().starts_with("web-01 (agent"));
        assert!(ensure(&storage, &a, false).await.is_err());
    }

    #[tokio::test]
    async fn garbled_or_newer_owner_objects_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::in_memory();
        let a = me(dir.path(), "web-01");
        storage
            .put_bytes(OWNER_KEY, Bytes::from_static(b"{nope"))
            .await
            .unwrap();
        let err = ensure(&storage, &a, false).await.unwrap_err().to_string();
        assert!(
            err.contains("opsagent-owner.json") && err.contains("--take-over"),
            "{err}"
        );
        assert_eq!(ensure(&storage, &a, true).await.unwrap(), Claim::Created);
        let mut rec = a.record(Utc::now());
        rec.format = 99;
        let body = serde_json::to_vec(&rec).unwrap();
        storage
            .put_bytes(OWNER_KEY, Bytes::from(body))
            .await
            .unwrap();
        let err = ensure(&storage, &a, false).await.unwrap_err().to_string();
        assert!(err.contains("upgrade opsagent"), "{err}");
    }
}
