//! `opsagent restore --all`: disaster recovery in one command. Prints the plan (each database
//! and media tree, its snapshot, size and target), asks, restores databases first and then
//! files, and ends with one line: what was recovered and the total recovery time. The work is
//! in `restore/all.rs`; this file prints.

use super::media::{self, Planned};
use super::{confirm, human_bytes, print_plan, restore_dump, Args};
use crate::config::Config;
use crate::quote;
use crate::restore::all::{self, Missing, Plan, Request};
use crate::restore::{Step, Target};
use crate::storage::Storage;
use chrono::{DateTime, Utc};
use std::time::{Duration, Instant};

/// What was asked and what came back, counted for the last line.
#[derive(Debug, Default, Clone, PartialEq)]
struct Tally {
    /// Databases restored, and planned (including those that cannot be).
    databases: (usize, usize),
    /// Media trees restored, and planned.
    trees: (usize, usize),
    /// SQL and file bytes restored.
    bytes: u64,
}

/// Plans, confirms and runs the recovery; fails (exit 1) when anything was not restored, after
/// restoring everything else.
pub fn run(
    rt: &tokio::runtime::Runtime,
    cfg: &Config,
    storage: &Storage,
    args: &Args,
    at: DateTime<Utc>,
) -> anyhow::Result<()> {
    let req = Request {
        at,
        in_place: args.in_place,
        delete: args.delete,
    };
    let plan = all::plan(rt.handle(), cfg, storage, &req)?;
    let Plan {
        dumps,
        media: trees,
        missing,
        unconfigured,
    } = plan;
    let trees: Vec<Planned> = trees.into_iter().map(|(c, p)| Planned::new(c, p)).collect();
    print(cfg, storage, args, at, (&dumps, &trees));
    for m in &missing {
        println!("  NOT restorable: {}", describe(m));
    }
    for j in &unconfigured {
        println!(
            "  not restored: job {} has snapshots in storage but is not in this configuration",
            quote::printable(j)
        );
    }
    if args.dry_run {
        println!("dry run: nothing was changed");
        return Ok(());
    }
    if dumps.is_empty() && trees.is_empty() {
        anyhow::bail!("nothing to restore: every job above is NOT restorable; nothing was changed");
    }
    confirm(args.yes)?;
    let total = Instant::now();
    let mysql_missing = missing
        .iter()
        .filter(|m| cfg.mysql.iter().any(|j| j.name == m.job))
        .count();
    let mut tally = Tally {
        databases: (0, dumps.len() + mysql_missing),
        trees: (0, trees.len() + missing.len() - mysql_missing),
        bytes: 0,
    };
    let mut failed: Vec<String> = missing.iter().map(describe).collect();
    failed.extend(execute(rt, cfg, storage, (&dumps, trees), &mut tally));
    for f in &failed {
        println!("NOT restored: {f}");
    }
    println!("{}", summary(&tally, total.elapsed()));
    if failed.is_empty() {
        Ok(())
    } else {
        anyhow::bail!(
            "disaster recovery incomplete: {} item(s) not restored (listed above); everything else was",
            failed.len()
        )
    }
}

/// The plan: where it reads from, the order and why, then each database and media tree.
fn print(
    cfg: &Config,
    storage: &Storage,
    args: &Args,
    at: DateTime<Utc>,
    (dumps, trees): (&[(Step, Target)], &[Planned]),
) {
    let zone = cfg.agent.zone;
    println!(
        "disaster recovery plan: as of `{}` = {} ({zone}), from {}",
        args.date,
        zone.format(at, "%Y-%m-%d %H:%M:%S %Z"),
        storage.describe()
    );
    println!("  databases first, then files: the data of record is in the databases (rows name the files), they come back quicker, and the application can start on them while files still arrive");
    for (step, target) in dumps {
        print_plan(
            std::slice::from_ref(step),
            target,
            zone,
            &cfg.agent.hostname,
        );
    }
    media::print_plan(trees, false, zone);
}

/// Restores every database, then every media tree, each on its own; returns what failed.
fn execute(
    rt: &tokio::runtime::Runtime,
    cfg: &Config,
    storage: &Storage,
    (dumps, trees): (&[(Step, Target)], Vec<Planned>),
    tally: &mut Tally,
) -> Vec<String> {
    let mut failed = Vec::new();
    for (step, target) in dumps {
        match restore_dump(rt, cfg, storage, step, target) {
            Ok(()) => {
                tally.databases.0 += 1;
                tally.bytes += step.chosen.manifest.raw_size();
            }
            Err(e) => failed.push(format!(
                "database {} (job {}): {e:#}",
                quote::sql_ident(&step.chosen.manifest.item),
                quote::printable(&step.chosen.key.job)
            )),
        }
    }
    for p in trees {
        let job = p.job().to_string();
        match media::restore_one(rt, storage, p) {
            Ok(bytes) => {
                tally.trees.0 += 1;
                tally.bytes += bytes;
            }
            Err(e) => failed.push(format!("files of job {}: {e:#}", quote::printable(&job))),
        }
    }
    failed
}

fn describe(m: &Missing) -> String {
    format!("{}: {}", m.what(), quote::printable(&m.why))
}

/// `n` things, `k of n` when some failed.
fn count(done: usize, of: usize, one: &str, many: &str) -> String {
    let noun = if of == 1 { one } else { many };
    if done == of {
        format!("{of} {noun}")
    } else {
        format!("{done} of {of} {noun}")
    }
}

/// A duration as people read a recovery time: `4.2s`, `2m 14s`, `1h 3m 0s`.
fn took(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{:.1}s", d.as_secs_f64()),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        _ => format!("{}h {}m {}s", s / 3600, s % 3600 / 60, s % 60),
    }
}

/// The last line: `recovered 4 databases and 2 media trees (3.1 GiB) in 2m 14s`.
fn summary(t: &Tally, d: Duration) -> String {
    format!(
        "recovered {} and {} ({}) in {} (recovery time)",
        count(t.databases.0, t.databases.1, "database", "databases"),
        count(t.trees.0, t.trees.1, "media tree", "media trees"),
        human_bytes(t.bytes),
        took(d)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_line_says_what_came_back_and_how_long_it_took() {
        let t = Tally {
            databases: (4, 4),
            trees: (2, 2),
            bytes: 3 * 1024 * 1024 * 1024 + 100 * 1024 * 1024,
        };
        assert_eq!(
            summary(&t, Duration::from_secs(134)),
            "recovered 4 databases and 2 media trees (3.1 GiB) in 2m 14s (recovery time)"
        );
        let t = Tally {
            databases: (1, 2),
            trees: (1, 1),
            bytes: 0,
        };
        let line = summary(&t, Duration::from_millis(4200));
        assert!(
            line.starts_with("recovered 1 of 2 databases and 1 media tree ("),
            "{line}"
        );
        assert!(line.ends_with("in 4.2s (recovery time)"), "{line}");
        assert_eq!(took(Duration::from_secs(3780)), "1h 3m 0s");
    }
}
