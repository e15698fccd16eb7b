//! The binary log's part of a restore's output: the plan's roll-forward line, the report's,
//! and `--show-events` (the last transactions before the stop, with the positions and GTIDs
//! `--to-position`/`--to-gtid` take).

use crate::config::Zone;
use crate::error::UsageError;
use crate::quote;
use crate::restore::binlog::{RollForward, StopAt};
use crate::restore::Step;
use crate::storage::Storage;

const TIME: &str = "%Y-%m-%d %H:%M:%S";

/// `--to-position` / `--to-gtid`, checked.
pub(super) fn stop_at(args: &super::Args) -> Result<StopAt, UsageError> {
    match (&args.to_position, &args.to_gtid) {
        (Some(p), _) => StopAt::position(p).map_err(UsageError),
        (_, Some(g)) => StopAt::gtid(g).map_err(UsageError),
        _ => Ok(StopAt::Moment),
    }
}

/// Flags that need MySQL snapshots, refused when none matches.
pub(super) fn check_flags(
    args: &super::Args,
    stop: &StopAt,
    dumps: &[crate::restore::plan::Chosen],
) -> Result<(), UsageError> {
    if !dumps.is_empty() {
        return Ok(());
    }
    if !args.tables.is_empty() {
        return Err(UsageError("--table applies to MySQL snapshots, and none matches (hint: add --job with a [[mysql]] job, or leave --table out)".into()));
    }
    if *stop != StopAt::Moment {
        return Err(UsageError("--to-position and --to-gtid apply to MySQL jobs that archive their binary log, and no MySQL snapshot matches (hint: add --job with such a job)".into()));
    }
    Ok(())
}

/// The plan's line for a roll forward with the binary log.
pub(super) fn roll_line(rf: &RollForward, zone: Zone) -> String {
    let until = match (&rf.stop, rf.reach) {
        (StopAt::Moment, Some(r)) if r < rf.to => format!(
            "{} (the newest event archived; the moment asked is later)",
            zone.format(r, "%Y-%m-%d %H:%M:%S %Z")
        ),
        (StopAt::Moment, _) => {
            format!("{} included", zone.format(rf.to, "%Y-%m-%d %H:%M:%S %Z"))
        }
        (stop, _) => stop.describe().unwrap_or_default(),
    };
    let files: std::collections::BTreeSet<&str> =
        rf.segments.iter().map(|s| s.file.as_str()).collect();
    let events: u64 = rf.segments.iter().map(|s| s.events).sum();
    format!(
        "then the binary log from {}:{} up to {until}: {} segment(s) of {} ({events} events archived; other databases' are left out, --show-events counts this one's)",
        rf.from.file,
        rf.from.pos,
        rf.segments.len(),
        files.into_iter().collect::<Vec<_>>().join(", ")
    )
}

/// The report's line after a roll forward.
pub(super) fn rolled_line(rf: &RollForward) -> String {
    match rf.stop.target() {
        Some(stop) => format!("rolled forward with the binary log up to, not including, {stop}"),
        None => {
            let to = rf.reach.map_or(rf.to, |r| r.min(rf.to));
            format!(
                "rolled forward with the binary log to {} (UTC): every transaction committed by then",
                to.format(TIME)
            )
        }
    }
}

/// `--show-events N`: reads each step's binary log as the replay would and prints the last `n`
/// transactions before the stop.
pub(super) fn show_events(
    rt: &tokio::runtime::Runtime,
    storage: &Storage,
    steps: &[Step],
    (n, zone, state_dir): (usize, Zone, &std::path::Path),
) -> anyhow::Result<()> {
    let mut any = false;
    for step in steps {
        let Some(rf) = &step.roll_forward else {
            continue;
        };
        any = true;
        let db = &step.chosen.manifest.item;
        let work = crate::restore::binlog::work_dir(state_dir);
        let p = rt
            .block_on(crate::restore::binlog::preview(storage, rf, db, n, &work))
            .map_err(|e| {
                anyhow::anyhow!("reading the binary log of {}: {e}", quote::sql_ident(db))
            })?;
        println!(
            "\nbinary log of {} after the dump ({}:{}): {} transaction(s), {} event(s) to replay; the last {}:",
            quote::sql_ident(db),
            rf.from.file,
            rf.from.pos,
            p.transactions,
            p.events,
            p.recent.len()
        );
        println!(
            "  {:<22} {:<19} {:<16} {:>6}  {:<20} STATEMENT",
            "POSITION", "TIME", "GTID", "ROWS", "TABLES"
        );
        for (file, t) in &p.recent {
            let at = chrono::DateTime::from_timestamp(t.timestamp, 0).unwrap_or_default();
            let tables: Vec<String> = t.tables.iter().map(|n| quote::printable(n)).collect();
            println!(
                "  {:<22} {:<19} {:<16} {:>6}  {:<20} {}",
                format!("{file}:{}", t.pos),
                zone.format(at, TIME),
                t.gtid.as_deref().unwrap_or("-"),
                t.row_events,
                tables.join(","),
                t.statement.as_deref().map_or("-".into(), quote::printable)
            );
        }
        match &p.stopped_at {
            Some((file, pos, ts)) => {
                let at = chrono::DateTime::from_timestamp(*ts, 0).unwrap_or_default();
                println!(
                    "  the replay stops at {file}:{pos} ({}), the first transaction it leaves out",
                    zone.format(at, TIME)
                );
            }
            None => println!("  the replay runs to the newest event archived"),
        }
        if let Some((file, t)) = p.recent.last() {
            let gtid = (t.gtid.as_ref()).map_or(String::new(), |g| format!(" or --to-gtid {g}"));
            println!(
                "  to leave out a transaction and all after it: --to-position {file}:{}{gtid} (with the same --date, which picks the dump)",
                t.pos
            );
        }
    }
    if !any {
        println!("no binary log replay in this plan: the jobs do not archive their binary log, or the moment is the dump's own");
    }
    Ok(())
}
