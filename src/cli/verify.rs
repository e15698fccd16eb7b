//! `opsagent verify [--storage NAME] [JOB…]`: restore drills now (databases restored into scratch databases;
//! media jobs: every pack and blob of the newest snapshot checked).

use super::{human_bytes, Cli};
use crate::restore::verify::{run_drill, Outcome};

/// Flags.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Drill from this copy storage ([storage.NAME]) instead of the default one.
    #[arg(long, value_name = "NAME")]
    pub storage: Option<String>,
    /// Jobs to drill (default: all).
    pub jobs: Vec<String>,
}

/// Runs the drills; fails if any failed.
pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<()> {
    let cfg = super::load_config(cli)?;
    let names = super::select_jobs(&cfg, &args.jobs)?;
    let mut env = super::open_env(cfg)?;
    if let Some(name) = args.storage.as_deref().filter(|n| *n != "default") {
        env.storage = super::copy_storage(&env.config, name)?;
        env.copy = Some(name.to_string());
        println!(
            "drills read the copy storage `{name}` ({})",
            env.storage.describe()
        );
    }
    let rt = super::runtime()?;
    let mut failed = Vec::new();
    for name in &names {
        match rt.block_on(run_drill(&env, name)) {
            Ok(Outcome::Files(d)) => println!(
                "{name}: files snapshot {}: ok, {} files ({}), {} packs ({}) and {} blobs checked in {:.1}s",
                d.snapshot,
                d.files,
                human_bytes(d.bytes),
                d.packs,
                human_bytes(d.downloaded),
                d.blobs,
                d.seconds
            ),
            Ok(Outcome::Databases(drills)) => {
                for d in drills {
                    let rolled = d.rolled.map_or(String::new(), |(to, c)| {
                        format!(
                            ", rolled forward with the binary log to {} UTC; {}",
                            to.format("%H:%M:%S"),
                            compared(c)
                        )
                    });
                    println!(
                        "{name}: `{}` snapshot {}: ok, {} tables, {} rows, restored in {:.1}s{rolled}",
                        d.database, d.snapshot, d.tables, d.rows, d.seconds
                    );
                }
            }
            Err(e) => {
                eprintln!("{name}: restore drill FAILED: {e}");
                failed.push(name.clone());
            }
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("restore drill failed for {}", failed.join(", "))
    }
}

/// How a rolled-forward drill copy compared with the live database, for people.
fn compared(c: crate::restore::binlog::drill::Compared) -> String {
    use crate::restore::binlog::drill::Compared;
    match c {
        Compared::Tables(n) => format!("{n} unchanged table(s) match the live row counts"),
        Compared::Lagging => "not compared with the live database: the archive lags".into(),
        Compared::Statements(n) => format!("not compared with the live database: the binary log holds {n} statement(s) since, whose tables are unknown (binlog_format = ROW makes every change a row event)"),
    }
}
