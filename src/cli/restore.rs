//! `opsagent restore --date EXPR …`: plan, confirm, restore with checked hashes, report the RTO.
//! Dumps here; media snapshots (directory trees) in `restore/media.rs`; disaster recovery
//! (`--all`) in `restore/all.rs`.

mod all;
mod binlog;
mod media;
mod source;

use super::{human_bytes, Cli};
use crate::error::UsageError;
use crate::quote;
use crate::restore::{self, date, plan, Step, Target};
use crate::storage::Storage;
use chrono::Utc;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Flags.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The moment to go back to: yesterday, today, now, "3 days ago", "2 hours ago", friday,
    /// 2026-11-20, "2026-11-20 14:00", RFC 3339. Day words mean the end of that day.
    #[arg(long, value_name = "EXPR")]
    pub date: String,
    /// Only this job (repeatable).
    #[arg(long = "job", value_name = "NAME")]
    pub jobs: Vec<String>,
    /// Only this database (repeatable).
    #[arg(long = "database", value_name = "DB")]
    pub databases: Vec<String>,
    /// Only this table of the database (repeatable): side by side or --to-database; with a
    /// binary log archive, only its row events are replayed.
    #[arg(long = "table", value_name = "TABLE", conflicts_with_all = ["in_place", "to_file", "all"])]
    pub tables: Vec<String>,
    /// Restore into this database (must not exist, or be empty).
    #[arg(long, value_name = "NAME", conflicts_with_all = ["in_place", "to_file"])]
    pub to_database: Option<String>,
    /// Replace the live database: load into staging, then swap; the old tables are kept.
    /// Media jobs: write over the original paths (files not in the snapshot are kept).
    #[arg(long, conflicts_with = "to_file")]
    pub in_place: bool,
    /// Write the SQL to a file (.sql plain, .sql.zst compressed, .sql.zst.age as stored); touch no database.
    #[arg(long, value_name = "PATH")]
    pub to_file: Option<PathBuf>,
    /// Media jobs: only what is at or under this path (absolute, or relative to a backed-up
    /// directory).
    #[arg(long, value_name = "SUBPATH")]
    pub path: Option<PathBuf>,
    /// Media jobs: restore under DIR, followed by each original absolute path.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["in_place", "to_database", "to_file"])]
    pub to_dir: Option<PathBuf>,
    /// Media jobs with --in-place: remove what the snapshot does not hold (except what the
    /// job's exclude patterns match, and other file systems).
    #[arg(long, requires = "in_place")]
    pub delete: bool,
    /// Read from this storage: `default` ([storage]) or a copy storage's NAME
    /// ([storage.NAME]). Without it: the default, else the first copy holding the snapshots.
    #[arg(long, value_name = "NAME")]
    pub storage: Option<String>,
    /// Restore another host's backups (its storage prefix, `<HOST>/`).
    #[arg(long, value_name = "HOST")]
    pub from_host: Option<String>,
    /// With a binary log archive: stop the replay before this position (FILE:POS, as
    /// --show-events lists them), leaving out the transaction there and all after it;
    /// --date then only picks the dump (the newest at or before it).
    #[arg(long, value_name = "FILE:POS", conflicts_with_all = ["to_gtid", "to_file", "all"])]
    pub to_position: Option<String>,
    /// With a binary log archive: stop the replay before the transaction with this GTID;
    /// --date then only picks the dump.
    #[arg(long, value_name = "GTID", conflicts_with_all = ["to_file", "all"])]
    pub to_gtid: Option<String>,
    /// Show the plan, then the last N transactions (default 20) of each database the binary
    /// log replay would apply before it stops, with their positions and GTIDs; change nothing.
    #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "20", conflicts_with_all = ["to_file", "all"])]
    pub show_events: Option<usize>,
    /// Show the plan and stop.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask for confirmation (required without a terminal).
    #[arg(long)]
    pub yes: bool,
    /// Disaster recovery: every database of every MySQL job and every media job, restored under
    /// its own name and paths (databases created when missing); databases first, then files.
    /// Refuses a database with tables or a directory with entries unless --in-place.
    #[arg(long, conflicts_with_all = ["jobs", "databases", "to_database", "to_file", "to_dir", "path"])]
    pub all: bool,
}

/// Plans and runs the restore.
pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<()> {
    let cfg = super::load_config(cli)?;
    let zone = cfg.agent.zone;
    let moment =
        date::parse(&args.date, Utc::now(), zone).map_err(|e| UsageError(e.to_string()))?;
    let stop = binlog::stop_at(args)?;
    media::check_flags_for_jobs(&cfg, args)?;
    let target = match (&args.to_database, args.in_place, &args.to_file) {
        (Some(n), _, _) => Target::Database(n.clone()),
        (_, true, _) => Target::InPlace,
        (_, _, Some(p)) => Target::File(p.clone()),
        _ => Target::SideBySide,
    };
    let rt = super::runtime()?;
    if args.all {
        // Disaster recovery reads one storage: `--storage NAME`, else the default.
        let storage = source::first(&cfg, args)?;
        return all::run(&rt, &cfg, &storage, args, moment.at);
    }
    let filter = plan::Filter {
        jobs: args.jobs.clone(),
        databases: args.databases.clone(),
    };
    let source::Source { storage, chosen } = source::choose(&rt, &cfg, args, &filter, moment.at)?;
    let chosen = rt
        .block_on(plan::load(&storage, chosen))
        .map_err(anyhow::Error::msg)?;
    let (files, dumps): (Vec<_>, Vec<_>) = chosen
        .into_iter()
        .partition(|c| c.manifest.kind == media::KIND);
    media::check_flags_for_snapshots(args, &files, &dumps)?;
    binlog::check_flags(args, &stop, &dumps)?;
    if dumps.len() > 1 && matches!(target, Target::Database(_) | Target::File(_)) {
        let dbs: Vec<&str> = dumps.iter().map(|c| c.manifest.item.as_str()).collect();
        return Err(UsageError(format!("--to-database and --to-file take one database, but {} match ({}) (hint: add --database)", dbs.len(), dbs.join(", "))).into());
    }
    let mut steps = if dumps.is_empty() {
        Vec::new()
    } else {
        restore::prepare(&cfg, dumps, &target).map_err(anyhow::Error::msg)?
    };
    for s in &mut steps {
        s.tables = args.tables.clone();
    }
    rt.block_on(restore::binlog::plan_steps(
        &cfg,
        &storage,
        &mut steps,
        &target,
        (moment.at, &stop),
    ))
    .map_err(anyhow::Error::msg)?;
    restore::check_decryptable(&storage, &steps, &target).map_err(anyhow::Error::msg)?;
    let files = media::prepare_all(&rt, &cfg, &storage, args, files)?;
    println!(
        "restore plan: as of `{}` = {} ({zone}), from {}",
        args.date,
        zone.format(moment.at, "%Y-%m-%d %H:%M:%S %Z"),
        storage.describe()
    );
    print_plan(&steps, &target, zone, &cfg.agent.hostname);
    media::print_plan(&files, args.dry_run, zone);
    if let Some(n) = args.show_events {
        binlog::show_events(&rt, &storage, &steps, (n, zone, &cfg.agent.state_dir))?;
    }
    if args.dry_run || args.show_events.is_some() {
        println!("dry run: nothing was changed");
        return Ok(());
    }
    confirm(args.yes)?;
    let total = Instant::now();
    restore_dumps(&rt, &cfg, &storage, &steps, &target)?;
    media::restore_all(&rt, &storage, files)?;
    println!(
        "done in {:.1}s (recovery time)",
        total.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The configured storage, or with `from_host` that host's prefix (`<HOST>/`) on it.
fn restore_dumps(
    rt: &tokio::runtime::Runtime,
    cfg: &crate::config::Config,
    storage: &Storage,
    steps: &[Step],
    target: &Target,
) -> anyhow::Result<()> {
    for step in steps {
        restore_dump(rt, cfg, storage, step, target)?;
    }
    Ok(())
}

/// Restores one database with a progress bar on a terminal, then says where it went.
fn restore_dump(
    rt: &tokio::runtime::Runtime,
    cfg: &crate::config::Config,
    storage: &Storage,
    step: &Step,
    target: &Target,
) -> anyhow::Result<()> {
    let counter = Arc::new(AtomicU64::new(0));
    let size = step.chosen.manifest.stored_size();
    let bar = std::io::stderr().is_terminal().then(|| {
        progress(
            rt,
            &quote::printable(&step.chosen.manifest.item),
            size,
            counter.clone(),
        )
    });
    let started = Instant::now();
    let r = rt.block_on(restore::execute(cfg, storage, step, target, Some(counter)));
    if let Some(b) = bar {
        b.abort();
        eprint!("\r\x1b[2K");
    }
    let name = quote::sql_ident(&step.chosen.manifest.item);
    let warnings = r.map_err(|e| anyhow::anyhow!("restoring {name} failed: {e}"))?;
    report(step, target, started.elapsed());
    for w in warnings {
        println!(
            "  warning: {}; review it before using the copy",
            quote::printable(&w)
        );
    }
    Ok(())
}

fn print_plan(steps: &[Step], target: &Target, zone: crate::config::Zone, hostname: &str) {
    for s in steps {
        let c = &s.chosen;
        let age = Utc::now() - c.time;
        println!(
            "  {} (job {}): snapshot {} of {}, {} old, {} stored / {} SQL",
            quote::sql_ident(&c.manifest.item),
            quote::printable(&c.key.job),
            c.key.id,
            zone.format(c.time, "%Y-%m-%d %H:%M:%S %Z"),
            humantime::format_duration(Duration::from_secs(
                age.num_seconds().max(0) as u64 / 60 * 60
            )),
            human_bytes(c.manifest.stored_size()),
            human_bytes(c.manifest.raw_size())
        );
        let what = match target {
            Target::SideBySide => format!("into the new database {}; the live {} is not touched", quote::sql_ident(&s.target), quote::sql_ident(&c.manifest.item)),
            Target::Database(n) => format!("into the database {}", quote::sql_ident(n)),
            Target::InPlace => format!(
                "OVER the live database {}: loaded into staging first, then swapped in; its current tables are kept in {}",
                quote::sql_ident(&s.target),
                quote::sql_ident(s.pre_restore.as_deref().unwrap_or("?"))
            ),
            Target::File(p) => format!("into the file {}", quote::printable(&p.display().to_string())),
            Target::Recover => format!("into the database {} of its own name (created when missing; empty here)", quote::sql_ident(&s.target)),
        };
        println!("    → {what}");
        let account = crate::restore::sandbox::PREFIX;
        match target {
            Target::File(_) => {}
            Target::InPlace => println!("    → the dump loads as a temporary account {account}… that can change only the staging database"),
            Target::Recover => println!("    → the dump loads as a temporary account {account}… that can change only that database; events keep the status they were dumped with"),
            _ => println!("    → the dump loads as a temporary account {account}… that can change only that database; its events are created disabled"),
        }
        if !s.tables.is_empty() {
            let names: Vec<String> = s.tables.iter().map(|t| quote::sql_ident(t)).collect();
            println!("    → only the table(s) {} (and their triggers); the other tables, views, routines and events are left out", names.join(", "));
        }
        if let Some(rf) = &s.roll_forward {
            println!("    → {}", binlog::roll_line(rf, zone));
        }
        if c.manifest.host != hostname {
            println!(
                "    note: made by host {}, not this host ({})",
                quote::printable(&c.manifest.host),
                quote::printable(hostname)
            );
        }
    }
}

pub(crate) fn confirm(yes: bool) -> anyhow::Result<()> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(UsageError("refusing to restore without a terminal to confirm on (hint: add --yes, or --dry-run to only see the plan)".into()).into());
    }
    eprint!("Proceed? [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if matches!(answer.trim(), "y" | "Y" | "yes" | "YES") {
        Ok(())
    } else {
        Err(UsageError("cancelled; nothing was changed".into()).into())
    }
}

fn report(step: &Step, target: &Target, took: Duration) {
    let db = quote::sql_ident(&step.chosen.manifest.item);
    let secs = took.as_secs_f64();
    match target {
        Target::SideBySide => {
            println!("restored {db} into {} in {secs:.1}s", quote::sql_ident(&step.target));
            let date = step.chosen.time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            let [swap, drop] = side_by_side_hints(&date, step);
            println!("  to make it the live database: {swap}");
            println!("  or compare and copy what you need, then: {drop}");
        }
        Target::Database(n) => println!("restored {db} into {} in {secs:.1}s", quote::sql_ident(n)),
        Target::InPlace => println!(
            "restored {db} in place in {secs:.1}s; the previous tables are in {} (DROP DATABASE it once you are sure)",
            quote::sql_ident(step.pre_restore.as_deref().unwrap_or("?"))
        ),
        Target::File(p) => println!(
            "wrote {db} to {} in {secs:.1}s",
            quote::printable(&p.display().to_string())
        ),
        Target::Recover => println!("restored {db} in {secs:.1}s"),
    }
    if let Some(rf) = &step.roll_forward {
        println!("  {}", binlog::rolled_line(rf));
    }
}

/// The commands printed after a side-by-side restore, names quoted for the shell and for SQL
/// (an admin copies them; a database name can hold quotes or terminal escape codes).
fn side_by_side_hints(date: &str, step: &Step) -> [String; 2] {
    hints_for(
        date,
        &step.chosen.key.job,
        &step.chosen.manifest.item,
        &step.target,
    )
}

fn hints_for(date: &str, job: &str, db: &str, copy: &str) -> [String; 2] {
    [
        format!(
            "opsagent restore --date {} --job {} --database {} --in-place",
            quote::shell(date),
            quote::shell(job),
            quote::shell(db)
        ),
        format!("DROP DATABASE {};", quote::sql_ident(copy)),
    ]
}

pub(crate) fn progress(
    rt: &tokio::runtime::Runtime,
    name: &str,
    total: u64,
    counter: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<()> {
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(name.to_string());
    rt.spawn(async move {
        loop {
            bar.set_position(counter.load(Ordering::Relaxed));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::hints_for;

    #[test]
    fn hints_quote_names_for_the_shell_and_sql() {
        let [swap, drop] = hints_for("2026-11-20T02:30:00Z", "main", "shop", "shop_restored_1");
        assert_eq!(
            swap,
            "opsagent restore --date 2026-11-20T02:30:00Z --job main --database shop --in-place"
        );
        assert_eq!(drop, "DROP DATABASE `shop_restored_1`;");
        let evil = "x'; rm -rf ~; echo '\x1b[2J`y";
        let [swap, drop] = hints_for("2026-11-20T02:30:00Z", "main", evil, &format!("{evil}_r"));
        assert!(
            swap.ends_with(r"--database 'x'\''; rm -rf ~; echo '\''[2J`y' --in-place"),
            "{swap}"
        );
        assert_eq!(drop, "DROP DATABASE `x'; rm -rf ~; echo '[2J``y_r`;");
        assert!(!swap.contains('\x1b') && !drop.contains('\x1b'));
    }
}
