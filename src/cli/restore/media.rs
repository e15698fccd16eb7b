//! `opsagent restore` for media jobs: flag checks (media flags with media jobs only, MySQL
//! flags with MySQL jobs only), the plan (what `--path` selects, how much, where it goes), and
//! the restore with its progress bar and summary.

use super::super::human_bytes;
use super::Args;
use crate::config::{Config, Zone};
use crate::error::UsageError;
use crate::restore::media::select::{configured_paths, side_by_side_dir, Destination};
use crate::restore::media::{self, Options, Prepared};
use crate::restore::plan::Chosen;
use crate::storage::Storage;
use chrono::Utc;
use std::io::IsTerminal;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The manifest kind of media snapshots.
pub const KIND: &str = "media";

/// How many entries `--dry-run` lists per snapshot.
const LISTED: usize = 20;

/// A media snapshot ready to restore.
pub struct Planned {
    chosen: Chosen,
    prepared: Prepared,
    /// The default side-by-side directory (state_dir, then the directory), marked with the
    /// snapshot id once restored into.
    marked: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

impl Planned {
    /// A snapshot prepared elsewhere (disaster recovery), restored as its options say.
    pub fn new(chosen: Chosen, prepared: Prepared) -> Planned {
        Planned {
            chosen,
            prepared,
            marked: None,
        }
    }

    /// Its job.
    pub fn job(&self) -> &str {
        &self.prepared.job
    }
}

/// The file in a default side-by-side directory naming the snapshot restored there.
const MARKER: &str = ".opsagent-snapshot";

/// The default side-by-side directory `dir` for snapshot `id`, or, when it already holds
/// another snapshot (two snapshots in one minute share a name), `dir` with the id's random
/// part appended: files of one snapshot must not turn up in another's restore.
fn own_dir(dir: std::path::PathBuf, id: &str) -> std::path::PathBuf {
    let empty = std::fs::read_dir(&dir).map_or(true, |mut r| r.next().is_none());
    let ours = std::fs::read_to_string(dir.join(MARKER)).is_ok_and(|m| m.trim() == id);
    if empty || ours {
        return dir;
    }
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(format!("-{}", id.rsplit('-').next().unwrap_or(id)));
    dir.with_file_name(name)
}

/// Creates the side-by-side directory `dir` below `state_dir` and writes the marker: each name
/// below `state_dir` opened without following a symlink (the opsagent user owns that
/// directory, this may run as root), new directories 0700, the marker 0600.
/// Returns the directory's (device, inode), which the restore then requires of what it opens.
fn mark(
    state_dir: &std::path::Path,
    dir: &std::path::Path,
    id: &str,
) -> anyhow::Result<(u64, u64)> {
    use crate::nofollow::{symlink_in, Dir};
    use std::io::Write;
    let below = dir.strip_prefix(state_dir).unwrap_or(dir);
    let written = Dir::open(state_dir, below, true).and_then(|d| {
        let mut f = d.open_or_create(std::ffi::OsStr::new(MARKER), 0o600)?;
        f.set_len(0)?;
        f.write_all(format!("{id}\n").as_bytes())?;
        let st = rustix::fs::fstat(&d)?;
        Ok((st.st_dev, st.st_ino))
    });
    written.map_err(|e| match symlink_in(&e) {
        Some(s) => anyhow::anyhow!(
            "cannot create {}: {e}; this snapshot was not restored (hint: remove it with `rm -- {}` and find out who planted it, or restore with --to-dir)",
            dir.display(),
            crate::quote::shell(&s.path.to_string_lossy())
        ),
        None => anyhow::anyhow!("cannot create {}: {e}", dir.display()),
    })
}

fn media_flags(args: &Args) -> bool {
    args.path.is_some() || args.to_dir.is_some() || args.delete
}

fn mysql_flags(args: &Args) -> bool {
    !args.databases.is_empty() || args.to_database.is_some() || args.to_file.is_some()
}

const MEDIA_FLAGS: &str = "--path, --to-dir and --delete apply to media jobs";
const MYSQL_FLAGS: &str = "--database, --to-database and --to-file apply to MySQL jobs";

/// Refuses flags that do not fit the jobs named with `--job`, as the configuration knows them.
pub fn check_flags_for_jobs(cfg: &Config, args: &Args) -> Result<(), UsageError> {
    if media_flags(args) && mysql_flags(args) {
        return Err(UsageError(format!(
            "{MEDIA_FLAGS}, {MYSQL_FLAGS}: they cannot be mixed (hint: restore files and databases with two commands)"
        )));
    }
    for j in &args.jobs {
        if mysql_flags(args) && cfg.media.iter().any(|m| &m.name == j) {
            return Err(UsageError(format!("{MYSQL_FLAGS}, but `{j}` is a media job (hint: use --path, --to-dir or --in-place)")));
        }
        if media_flags(args) && cfg.mysql.iter().any(|m| &m.name == j) {
            return Err(UsageError(format!("{MEDIA_FLAGS}, but `{j}` is a MySQL job (hint: use --database, --to-database or --to-file)")));
        }
    }
    Ok(())
}

/// Refuses flags that do not fit the snapshots chosen (the manifests know their kind).
pub fn check_flags_for_snapshots(
    args: &Args,
    files: &[Chosen],
    dumps: &[Chosen],
) -> Result<(), UsageError> {
    let jobs = |v: &[Chosen]| {
        let mut j: Vec<&str> = v.iter().map(|c| c.key.job.as_str()).collect();
        j.dedup();
        j.join(", ")
    };
    if media_flags(args) && !dumps.is_empty() {
        return Err(UsageError(format!(
            "{MEDIA_FLAGS}, but MySQL job(s) {} match too (hint: add --job NAME of the media job)",
            jobs(dumps)
        )));
    }
    if mysql_flags(args) && !files.is_empty() {
        return Err(UsageError(format!(
            "{MYSQL_FLAGS}, but media job(s) {} match too (hint: add --job NAME of the MySQL job)",
            jobs(files)
        )));
    }
    Ok(())
}

/// Loads each media snapshot's tree and selects what to restore where.
pub fn prepare_all(
    rt: &tokio::runtime::Runtime,
    cfg: &Config,
    storage: &Storage,
    args: &Args,
    chosen: Vec<Chosen>,
) -> anyhow::Result<Vec<Planned>> {
    let mut out = Vec::new();
    for c in chosen {
        let job = c.manifest.job.clone();
        let mut marked = None;
        let dest = if args.in_place {
            Destination::InPlace
        } else if let Some(dir) = &args.to_dir {
            Destination::Under(std::path::absolute(dir)?)
        } else {
            let dir = side_by_side_dir(&cfg.agent.state_dir, &job, c.time, cfg.agent.zone);
            let dir = own_dir(dir, &c.key.id);
            marked = Some((cfg.agent.state_dir.clone(), dir.clone()));
            Destination::Under(dir)
        };
        let configured = cfg.media.iter().find(|j| j.name == job);
        let opts = Options {
            dest,
            path: args.path.clone(),
            delete: args.delete,
            exclude: configured.map(|j| j.exclude.clone()).unwrap_or_default(),
            under_identity: None,
            job_paths: configured.map(configured_paths),
        };
        let prepared = rt
            .block_on(media::prepare(storage, &c, opts))
            .map_err(|e| match e {
                media::MediaError::Select(m) => anyhow::Error::new(UsageError(m.to_string())),
                e => anyhow::anyhow!("snapshot {} of `{job}`: {e}", c.key.id),
            })?;
        out.push(Planned {
            chosen: c,
            prepared,
            marked,
        });
    }
    Ok(out)
}

fn counts(p: &Prepared) -> String {
    format!(
        "{} files, {} directories, {} symlinks, {}",
        p.files,
        p.dirs,
        p.symlinks,
        human_bytes(p.bytes)
    )
}

/// Prints what each media restore will do; with `list`, its first entries too.
pub fn print_plan(planned: &[Planned], list: bool, zone: Zone) {
    for Planned {
        chosen: c,
        prepared: p,
        ..
    } in planned
    {
        let age = (Utc::now() - c.time).num_seconds().max(0) as u64;
        let summary = c.manifest.media.as_ref();
        let partial = summary
            .filter(|s| s.status == "partial")
            .map(|s| {
                format!(
                    ", partial: {} entries were skipped at backup",
                    s.warnings.len()
                )
            })
            .unwrap_or_default();
        println!(
            "  files of job {}: snapshot {} of {}, {} old{partial}",
            p.job,
            c.key.id,
            zone.format(c.time, "%Y-%m-%d %H:%M:%S %Z"),
            humantime::format_duration(Duration::from_secs(age / 60 * 60)),
        );
        match &p.options.path {
            Some(sub) => println!("    --path {}: {}", sub.display(), counts(p)),
            None => println!("    all of {}: {}", p.roots.join(", "), counts(p)),
        }
        let what = match (&p.options.dest, p.options.delete) {
            (Destination::Under(d), _) => format!("into {}/ followed by each original path; the originals are not touched", d.display()),
            (Destination::InPlace, false) => "OVER the original paths; files that are not in the snapshot are kept (--delete removes them)".to_string(),
            (Destination::InPlace, true) => "OVER the original paths, and entries that are not in the snapshot are DELETED (except what the job's exclude patterns match, and other file systems)".to_string(),
        };
        println!("    → {what}");
        if list {
            for n in p.nodes.iter().take(LISTED) {
                let shown = p.options.dest.of(n).display().to_string();
                println!("      {}", shown.escape_debug());
            }
            if p.nodes.len() > LISTED {
                println!("      … and {} more", p.nodes.len() - LISTED);
            }
        }
    }
}

/// Restores each planned snapshot, with a progress bar on a terminal; stops at the first that
/// fails (after it restored all it could).
pub fn restore_all(
    rt: &tokio::runtime::Runtime,
    storage: &Storage,
    planned: Vec<Planned>,
) -> anyhow::Result<()> {
    for p in planned {
        restore_one(rt, storage, p)?;
    }
    Ok(())
}

/// Restores one planned snapshot with a progress bar on a terminal and prints what it did;
/// returns the bytes of the files written.
pub fn restore_one(
    rt: &tokio::runtime::Runtime,
    storage: &Storage,
    planned: Planned,
) -> anyhow::Result<u64> {
    let Planned {
        chosen,
        mut prepared,
        marked,
    } = planned;
    if let Some((state_dir, dir)) = marked {
        prepared.options.under_identity = Some(mark(&state_dir, &dir, &chosen.key.id)?);
    }
    let (job, id, dest) = (
        prepared.job.clone(),
        chosen.key.id.clone(),
        prepared.options.dest.clone(),
    );
    let counter = Arc::new(AtomicU64::new(0));
    let bar = std::io::stderr()
        .is_terminal()
        .then(|| super::progress(rt, &job, prepared.bytes, counter.clone()));
    let started = Instant::now();
    let r = rt.block_on(media::execute(storage, prepared, Some(counter)));
    if let Some(b) = bar {
        b.abort();
        eprint!("\r\x1b[2K");
    }
    let report =
        r.map_err(|e| anyhow::anyhow!("restoring files of `{job}` (snapshot {id}) failed: {e}"))?;
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    let c = &report.counts;
    let place = match &dest {
        Destination::Under(d) => format!("into {}", d.display()),
        Destination::InPlace => "in place".to_string(),
    };
    println!(
        "restored files of `{job}` (snapshot {id}) {place}: {} files, {} directories, {} symlinks, {} in {:.1}s ({} packs, {} downloaded)",
        c.files,
        c.dirs,
        c.symlinks,
        human_bytes(c.bytes),
        started.elapsed().as_secs_f64(),
        c.packs,
        human_bytes(c.downloaded)
    );
    if c.swept.removed > 0 || c.swept.kept > 0 {
        println!(
            "  --delete removed {} entries not in the snapshot; kept {} (excluded from backups, or another file system)",
            c.swept.removed, c.swept.kept
        );
    }
    if let Destination::Under(_) = dest {
        println!("  the originals were not touched: compare, then copy back what you need (or restore with --in-place)");
    }
    Ok(c.bytes)
}
