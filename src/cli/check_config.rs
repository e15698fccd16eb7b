//! `opsagent check-config [--connect]`: validate, summarise what will run, optionally probe storage.

use super::Cli;
use crate::config::{Config, Databases, MediaJob, MysqlJob, Schedule, SmtpTls, Zone};
use crate::storage::Storage;
use chrono::{DateTime, Utc};

/// Flags.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Also try the storage (list the bucket or directory).
    #[arg(long)]
    pub connect: bool,
    /// With --connect: take the storage prefix over from the agent that owns it.
    #[arg(long, requires = "connect")]
    pub take_over: bool,
}

/// Prints the summary; errors (exit 2) come from loading.
pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<()> {
    let cfg = super::load_config(cli)?;
    print!("{}", summary(&cfg));
    if args.connect {
        let storage = Storage::open(&cfg.storage)?;
        let rt = super::runtime()?;
        match rt.block_on(storage.check_access()) {
            Ok(()) => println!(
                "storage check: ok, {} is reachable and listable",
                storage.describe()
            ),
            Err(e) => anyhow::bail!("storage check failed: {e}"),
        }
        let locks = std::iter::once(("[storage]".to_string(), &cfg.storage))
            .chain((cfg.copies.iter()).map(|c| (format!("[storage.{}]", c.name), &c.spec)));
        for (what, spec) in locks {
            if let Some(lock) = spec.object_lock() {
                object_lock(&rt, &what, spec, lock)?;
            }
        }
        owner(&rt, &cfg, &storage, args.take_over)?;
        restore_users(&cfg);
        super::check_binlog::check(&cfg.mysql);
    }
    Ok(())
}

/// Checks that the bucket of `spec` has object lock enabled, which `lock` needs: opsagent
/// sets the retention of every object it writes, so a default retention is not needed; one
/// that is longer than `lock` is reported (it wins for objects written by other tools).
fn object_lock(
    rt: &tokio::runtime::Runtime,
    what: &str,
    spec: &crate::storage::StorageSpec,
    lock: crate::storage::ObjectLock,
) -> anyhow::Result<()> {
    let Some(bucket) = crate::storage::multipart::Uploads::open(spec)? else {
        return Ok(());
    };
    let found = rt.block_on(bucket.object_lock())?;
    if !found.enabled {
        anyhow::bail!(
            "object lock check failed: {what} says object_lock, but the bucket has no object lock enabled, so nothing written there could be locked (hint: create a bucket with object lock: `aws s3api create-bucket --bucket NAME --object-lock-enabled-for-bucket`, `mc mb --with-lock ALIAS/NAME`; most providers cannot enable it on an existing bucket; or remove object_lock)"
        );
    }
    println!(
        "object lock: ok, the bucket of {what} has object lock enabled; opsagent locks every object it writes there {} for {} days",
        lock.mode(),
        lock.days
    );
    if let (Some(mode), Some(days)) = (&found.mode, found.days) {
        println!("  the bucket's default retention ({mode}, {days} days) applies to objects written without a lock of their own");
    }
    Ok(())
}

/// Says, per `[[mysql]]` job, whether its restore user can make the load account restores and
/// drills run as (see `restore::sandbox`). A warning, not a failure: backups work without it.
fn restore_users(cfg: &Config) {
    use crate::backup::mysql_cmd::{client_tool, dump_tool};
    for job in &cfg.mysql {
        let j = job.for_restore();
        let probed = dump_tool(&j)
            .and_then(|d| client_tool(&d))
            .map_err(crate::restore::RestoreError::from)
            .and_then(|c| crate::restore::sandbox::probe(&j, &c));
        match probed {
            Ok(()) => println!(
                "restores of {}: ok, the restore user can make the load account restores run as",
                crate::quote::printable(&job.name)
            ),
            Err(e) => println!(
                "warning: restores and drills of {} would fail: {e}",
                crate::quote::printable(&job.name)
            ),
        }
    }
}

/// Claims the prefix when nobody has (or takes it over), and says who owns it. Touches only
/// `state_dir/agent-id`, not the catalog (this may run as root before the daemon ever did).
fn owner(
    rt: &tokio::runtime::Runtime,
    cfg: &Config,
    storage: &Storage,
    take_over: bool,
) -> anyhow::Result<()> {
    use crate::snapshot::claim::{ensure, Claim, Identity};
    let me = Identity::load_or_create(&cfg.agent.state_dir, &cfg.agent.hostname)?;
    if take_over {
        return super::take_over(rt, storage, &me);
    }
    match rt.block_on(ensure(storage, &me, false)) {
        Ok(Claim::Created) => println!("storage owner: claimed for this agent ({})", me.hostname),
        Ok(_) => println!("storage owner: this agent ({})", me.hostname),
        Err(e) => anyhow::bail!("storage owner check failed: {e}"),
    }
    Ok(())
}

/// The human summary of a valid configuration (no secrets).
pub fn summary(cfg: &Config) -> String {
    let mut s = header(cfg);
    if cfg.mysql.is_empty() && cfg.media.is_empty() {
        s += "  jobs      none (add [[mysql]] or [[media]] sections to back up databases or directories)\n";
    } else {
        s += "  jobs\n";
    }
    let now = Utc::now();
    for j in &cfg.mysql {
        s += &mysql_job(j, cfg.agent.zone, now);
    }
    for j in &cfg.media {
        s += &media_job(j, cfg.agent.zone, now);
    }
    s += &checks_summary(&cfg.health);
    s += &alerts_summary(cfg);
    if let Some(w) = &cfg.web {
        let auth = match &w.password {
            Some(_) => "HTTP basic auth (password_file)",
            None => "no password: loopback only",
        };
        s += &format!("  web       status page on http://{}/ ({auth})\n", w.listen);
    }
    for w in &cfg.warnings {
        s += &format!("warning: {w}\n");
    }
    s
}

/// The file, host, state directory, storage and encryption.
fn header(cfg: &Config) -> String {
    let zone = cfg.agent.zone;
    let mut s = format!("configuration {} is valid\n", cfg.file.display());
    s += &format!("  host      {} (times in {zone})\n", cfg.agent.hostname);
    s += &format!("  state     {}\n", cfg.agent.state_dir.display());
    s += &format!(
        "  backups   {}{}\n",
        Storage::open(&cfg.storage)
            .map(|st| st.describe())
            .unwrap_or_default(),
        limits(cfg.storage_limits)
    );
    for c in &cfg.copies {
        let keep = c
            .keep
            .as_ref()
            .map_or("each job's keep".to_string(), |k| format!("keep {k}"));
        s += &format!(
            "  copy      `{}`: {}; {keep}{}\n",
            c.name,
            Storage::open(&c.spec)
                .map(|st| st.describe())
                .unwrap_or_default(),
            limits(c.limits)
        );
    }
    s += &gentle(&cfg.agent);
    if let Some(e) = &cfg.encryption {
        s += &format!(
            "  encrypted with age to {} recipient(s); identity {}\n",
            e.recipients.len(),
            e.identity_file
                .as_ref()
                .map_or("not configured (backups only)".to_string(), |p| p
                    .display()
                    .to_string())
        );
    }
    s
}

/// `; uploads ≤ 20.0 MiB/s; downloads ≤ …` of a storage (nothing when unlimited).
fn limits(l: crate::storage::RateLimits) -> String {
    let mut s = String::new();
    for (what, rate) in [("uploads", l.upload), ("downloads", l.download)] {
        if let Some(r) = rate {
            s += &format!("; {what} ≤ {}/s", crate::quote::human_bytes(r));
        }
    }
    s
}

/// How gently backups run: `io_priority`, `nice`, `pause_when`.
fn gentle(a: &crate::config::Agent) -> String {
    let mut s = format!(
        "  gently    dump tool and media readers at IO class {}, {}",
        a.priority.io.as_str(),
        a.priority.cpu
    );
    if let Some(p) = &a.pause_when {
        s += &format!(
            "; backups wait while CPU > {}% (at most {})",
            p.cpu_above,
            humantime::format_duration(p.max_wait)
        );
    }
    s + "\n"
}

/// The next firing of `schedule` as shown, or "never".
fn next_run(schedule: &Schedule, zone: Zone, now: DateTime<Utc>) -> String {
    schedule
        .next_after(now, zone)
        .map(|t| zone.format(t, "%Y-%m-%d %H:%M %Z"))
        .unwrap_or_else(|| "never".into())
}

fn mysql_job(j: &MysqlJob, zone: Zone, now: DateTime<Utc>) -> String {
    let dbs = match &j.databases {
        Databases::All => "every database".to_string(),
        Databases::List(v) => v.join(", "),
    };
    let next = next_run(&j.schedule, zone, now);
    let mut s = format!("    {:<12} mysql  {dbs} on {}\n", j.name, j.endpoint);
    s += &format!(
        "    {:<12}        schedule \"{}\", next run {next}; keep {}\n",
        "",
        j.schedule.as_str(),
        j.keep
    );
    let drill = match &j.verify_schedule {
        Some(v) => format!("\"{}\", next {}", v.as_str(), next_run(v, zone, now)),
        None => "off".to_string(),
    };
    s += &format!("    {:<12}        restore drill {drill}\n", "");
    s + &copy_to(&j.copy_to)
}

/// A job's `copy_to` line, when it has one.
fn copy_to(to: &[String]) -> String {
    match to.is_empty() {
        true => String::new(),
        false => format!("    {:<12}        copied to {}\n", "", to.join(", ")),
    }
}

fn media_job(j: &MediaJob, zone: Zone, now: DateTime<Utc>) -> String {
    let next = next_run(&j.schedule, zone, now);
    let paths: Vec<String> = j.paths.iter().map(|p| p.display().to_string()).collect();
    let mut s = format!("    {:<12} media  {}\n", j.name, paths.join(", "));
    if !j.exclude.is_empty() {
        s += &format!("    {:<12}        exclude {}\n", "", j.exclude.join(", "));
    }
    s += &format!(
        "    {:<12}        schedule \"{}\", next run {next}; keep {}\n",
        "",
        j.schedule.as_str(),
        j.keep
    );
    s + &copy_to(&j.copy_to)
}

/// Where alert mails go, or that none do; each webhook (its URL shown as `scheme://host/…`);
/// when the digest goes out.
fn alerts_summary(cfg: &Config) -> String {
    let mut s = mail_summary(cfg);
    for w in &cfg.alerts.webhooks {
        s += &format!(
            "  webhook   {} ({}) to {}, timeout {}\n",
            w.name,
            w.format.name(),
            w.url.describe(),
            humantime::format_duration(w.timeout)
        );
    }
    if let Some(d) = &cfg.alerts.digest {
        let zone = cfg.agent.zone;
        s += &format!(
            "  digest    \"{}\", next {}\n",
            d.as_str(),
            next_run(d, zone, Utc::now())
        );
    }
    s
}

fn mail_summary(cfg: &Config) -> String {
    let Some(e) = &cfg.email else {
        return "  alerts    no email configured ([alerts.email])\n".to_string();
    };
    let tls = match e.tls {
        SmtpTls::Starttls => "STARTTLS",
        SmtpTls::Tls => "TLS",
        SmtpTls::None => "no TLS",
    };
    format!(
        "  alerts    email to {} via {}:{} ({tls}); group_wait {}, repeat_interval {}; try it: opsagent notify-test\n",
        e.to.join(", "),
        e.smtp_host,
        e.smtp_port,
        humantime::format_duration(cfg.alerts.group_wait),
        humantime::format_duration(cfg.alerts.repeat_interval)
    )
}

/// One line for the host checks, one for the configured and automatic ones.
fn checks_summary(h: &crate::health::HealthConfig) -> String {
    let host = &h.host;
    let on: Vec<&str> = [
        ("cpu", host.cpu.is_some()),
        ("load", host.load.is_some()),
        ("memory", host.memory.is_some()),
        ("swap", host.swap.is_some()),
        ("disks (space, inodes, time to full)", host.disk.is_some()),
        ("the default gateway's ping", h.gateway.is_some()),
    ]
    .iter()
    .filter(|(_, enabled)| *enabled)
    .map(|(n, _)| *n)
    .collect();
    let mut s = format!(
        "  checks    every {}: host {}\n",
        humantime::format_duration(h.interval),
        if on.is_empty() {
            "checks off".to_string()
        } else {
            on.join(", ")
        }
    );
    if !h.checks.is_empty() {
        let names: Vec<&str> = h.checks.iter().map(|c| c.name.as_str()).collect();
        s += &format!("            {} more: {}\n", names.len(), names.join(", "));
    }
    s
}
