//! `[[mysql]]` jobs: the databases, the server, credentials, schedules and dump settings.

use super::defaults;
use super::raw::RawMysql;
use super::resolve::{
    compression_level, job_name, keep, schedule, secret_file, verify_schedule, Ctx,
};
use super::span::KeyPath;
use super::{Databases, MysqlEndpoint, MysqlJob};

const SYSTEM_DATABASES: [&str; 4] = ["information_schema", "performance_schema", "mysql", "sys"];

/// Resolves one `[[mysql]]` table; problems go to `cx`.
pub(super) fn mysql_job(cx: &mut Ctx, m: &RawMysql, p: &KeyPath) -> Option<MysqlJob> {
    let name = job_name(cx, m.name.as_deref(), p);
    let databases = databases(cx, m.databases.as_deref(), &p.key("databases"));
    let endpoint = mysql_endpoint(cx, m, p);
    let password = m
        .password_file
        .as_ref()
        .and_then(|f| secret_file(cx, f, &p.key("password_file")));
    let schedule = schedule(cx, m.schedule.as_deref(), &p.key("schedule"));
    let keep = keep(cx, m.keep.unwrap_or(defaults::KEEP), &p.key("keep"));
    let verify_schedule = verify_schedule(
        cx,
        m.verify_schedule.as_deref(),
        Some(defaults::MYSQL_VERIFY_SCHEDULE),
        &p.key("verify_schedule"),
    );
    let restore_password = m
        .restore_password_file
        .as_ref()
        .and_then(|f| secret_file(cx, f, &p.key("restore_password_file")));
    let compression_level = compression_level(cx, m.compression_level, &p.key("compression_level"));
    dump_settings(cx, m, p);
    let ping_url =
        super::resolve_heartbeat::job_ping_url(cx, m.ping_url.as_deref(), &p.key("ping_url"));
    let anomaly_drop =
        super::resolve_anomaly::anomaly_drop(cx, m.anomaly_drop.as_ref(), &p.key("anomaly_drop"));
    let anomaly_expected = super::resolve_anomaly::table_patterns(
        cx,
        &m.anomaly_expected,
        &p.key("anomaly_expected"),
        "anomaly_expected",
    );
    let binlog = binlog(cx, m, p);
    Some(MysqlJob {
        anomaly_drop,
        anomaly_expected,
        binlog,
        drill_command: drill_command(cx, m, p),
        restore_threads: restore_threads(cx, m, p),
        exclude_tables: super::resolve_anomaly::table_patterns(
            cx,
            &m.exclude_tables,
            &p.key("exclude_tables"),
            "exclude_tables",
        ),
        name: name?,
        databases: databases?,
        endpoint: endpoint?,
        user: m.user.clone(),
        password,
        schedule: schedule?,
        keep: keep?,
        dump_command: m.dump_command.clone(),
        extra_args: m.extra_args.clone(),
        compression_level,
        verify_schedule: verify_schedule?,
        restore_user: m.restore_user.clone(),
        restore_password,
        ping_url,
        copy_to: m.copy_to.clone(),
    })
}

/// `binlog`, `binlog_interval`, `binlog_max_lag`: the settings when `binlog = true`.
fn binlog(cx: &mut Ctx, m: &RawMysql, p: &KeyPath) -> Option<super::BinlogSettings> {
    if m.binlog != Some(true) {
        for (k, set) in [
            ("binlog_interval", m.binlog_interval.is_some()),
            ("binlog_max_lag", m.binlog_max_lag.is_some()),
        ] {
            if set {
                cx.error(
                    &p.key(k),
                    format!("`{k}` needs binlog = true"),
                    "add binlog = true to archive the binary log, or remove it",
                );
            }
        }
        return None;
    }
    let interval = m
        .binlog_interval
        .unwrap_or(super::defaults::BINLOG_INTERVAL);
    if interval < std::time::Duration::from_secs(1)
        || interval > std::time::Duration::from_secs(3600)
    {
        cx.error(
            &p.key("binlog_interval"),
            format!(
                "{} is not an archiving interval",
                humantime::format_duration(interval)
            ),
            "between 1s and 1h; e.g. binlog_interval = \"10s\"",
        );
    }
    let max_lag = m.binlog_max_lag.unwrap_or(super::defaults::BINLOG_MAX_LAG);
    if max_lag <= interval {
        cx.error(
            &p.key("binlog_max_lag"),
            format!(
                "{} is not longer than binlog_interval",
                humantime::format_duration(max_lag)
            ),
            "the archive lags up to one interval normally; e.g. binlog_max_lag = \"5m\"",
        );
    }
    Some(super::BinlogSettings { interval, max_lag })
}

/// `restore_threads`: 1 to [`MAX_RESTORE_THREADS`]; default the host's cores.
fn restore_threads(cx: &mut Ctx, m: &RawMysql, p: &KeyPath) -> usize {
    use super::defaults::MAX_RESTORE_THREADS;
    let cores = || std::thread::available_parallelism().map_or(1, |n| n.get());
    match m.restore_threads {
        None => cores().min(MAX_RESTORE_THREADS),
        Some(n) if (1..=MAX_RESTORE_THREADS as i64).contains(&n) => n as usize,
        Some(n) => {
            cx.error(
                &p.key("restore_threads"),
                format!("`restore_threads` is {n}: it must be 1 to {MAX_RESTORE_THREADS}"),
                "the client sessions a restore loads on at once; leave it out for one per core",
            );
            1
        }
    }
}

/// `drill_command`: any non-empty command line.
fn drill_command(cx: &mut Ctx, m: &RawMysql, p: &KeyPath) -> Option<String> {
    let c = m.drill_command.as_ref()?;
    if c.trim().is_empty() || c.contains('\0') {
        cx.error(&p.key("drill_command"), "`drill_command` is empty", "e.g. drill_command = \"php artisan migrate:status\", run in the scratch copy's environment (OPSAGENT_DRILL_DATABASE…), or remove it");
        return None;
    }
    Some(c.clone())
}

/// `databases`: a list of names, or `["*"]` for every non-system database.
fn databases(cx: &mut Ctx, list: Option<&[String]>, p: &KeyPath) -> Option<Databases> {
    match list {
        None => {
            cx.missing(
                p,
                "databases = [\"shop\"] or [\"*\"] for every non-system database",
            );
            None
        }
        Some([]) => {
            cx.error(
                p,
                "the list is empty: this job would back up nothing",
                "name the databases, or use [\"*\"] for every non-system database",
            );
            None
        }
        Some(v) if v.iter().any(|d| d == "*") => {
            if v.len() > 1 {
                cx.error(
                    p,
                    "\"*\" already means every database",
                    "use either [\"*\"] or a list of names",
                );
            }
            Some(Databases::All)
        }
        Some(v) => {
            for (i, d) in v.iter().enumerate() {
                database_name(cx, d, &p.index(i));
            }
            Some(Databases::List(v.to_vec()))
        }
    }
}

/// One name of `databases`: an error when MySQL cannot have it, a warning for a system database.
fn database_name(cx: &mut Ctx, d: &str, p: &KeyPath) {
    // `/`, `\\`, `.` and spaces are fine in (quoted) names: MariaDB encodes them.
    if d.is_empty() || d.chars().count() > 64 || d.contains('\0') || d.ends_with(' ') {
        cx.error(
            p,
            format!("`{d}` is not a valid database name"),
            "MySQL names are 1 to 64 characters, without NUL or trailing spaces",
        );
    } else if SYSTEM_DATABASES.contains(&d.to_ascii_lowercase().as_str()) {
        cx.warn(p, format!("`{d}` is a system database"), "users and grants live in `mysql`; dumping it is fine but it is not restorable under another name");
    }
}

/// `user` and `extra_args`: nothing the dump tool would misread or show to every user.
fn dump_settings(cx: &mut Ctx, m: &RawMysql, p: &KeyPath) {
    if m.user.as_deref() == Some("") {
        cx.error(
            &p.key("user"),
            "the user is empty",
            "remove `user` to use the client default, or name the MySQL user",
        );
    }
    for (i, a) in m.extra_args.iter().enumerate() {
        if a.starts_with("--password") || a == "-p" || (a.starts_with("-p") && a.len() > 2) {
            cx.error(
                &p.key("extra_args").index(i),
                "a password on the dump command line is visible to every user in `ps`",
                "put it in a file and set password_file",
            );
        }
    }
}

fn mysql_endpoint(cx: &mut Ctx, m: &RawMysql, p: &KeyPath) -> Option<MysqlEndpoint> {
    match &m.socket {
        Some(s) => {
            if m.host.is_some() || m.port.is_some() {
                cx.error(
                    &p.key("socket"),
                    "both `socket` and `host`/`port` are set",
                    "use either socket = \"/run/mysqld/mysqld.sock\" or host and port",
                );
                return None;
            }
            if !s.is_absolute() {
                cx.error(
                    &p.key("socket"),
                    format!("`{}` is a relative path", s.display()),
                    "the socket needs an absolute path, e.g. /run/mysqld/mysqld.sock",
                );
                return None;
            }
            Some(MysqlEndpoint::Socket(s.clone()))
        }
        None => {
            let host = m
                .host
                .clone()
                .unwrap_or_else(|| defaults::MYSQL_HOST.to_string());
            if host.is_empty() || host.contains(char::is_whitespace) {
                cx.error(
                    &p.key("host"),
                    format!("`{host}` is not a host name"),
                    "e.g. host = \"127.0.0.1\"",
                );
                return None;
            }
            if m.port == Some(0) {
                cx.error(
                    &p.key("port"),
                    "port 0 is not a port",
                    "MySQL listens on 3306 by default",
                );
                return None;
            }
            Some(MysqlEndpoint::Tcp {
                host,
                port: m.port.unwrap_or(defaults::MYSQL_PORT),
            })
        }
    }
}
