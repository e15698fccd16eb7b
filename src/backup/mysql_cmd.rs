//! A job's MySQL tools: which dump tool and client to run, its credentials (handed over in
//! memory by `mysql_client`, never on a command line), one-statement queries, operator hints.

use crate::config::MysqlJob;
use crate::mysql_client::{option_file, Credentials};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The credentials of a job, for one child process.
pub fn credentials(job: &MysqlJob) -> std::io::Result<Credentials> {
    Credentials::new(&option_file(
        &job.endpoint,
        job.user.as_deref(),
        job.password.as_ref(),
        "",
    ))
}

/// Finds a program on PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        return Path::new(name).is_file().then(|| PathBuf::from(name));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The dump tool: the job's `dump_command`, else `mariadb-dump`, else `mysqldump`.
pub fn dump_tool(job: &MysqlJob) -> Result<PathBuf, String> {
    match &job.dump_command {
        Some(c) => which(c).ok_or_else(|| {
            format!("dump_command `{c}` was not found (hint: give an absolute path or install the MariaDB/MySQL client)")
        }),
        None => which("mariadb-dump").or_else(|| which("mysqldump")).ok_or_else(|| {
            "neither mariadb-dump nor mysqldump is on PATH (hint: apt install mariadb-client, or set dump_command)".to_string()
        }),
    }
}

/// The SQL client beside the dump tool (`mariadb` or `mysql`).
pub fn client_tool(dump: &Path) -> Result<PathBuf, String> {
    let dir = dump.parent().unwrap_or(Path::new("/usr/bin"));
    ["mariadb", "mysql"]
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
        .or_else(|| which("mariadb"))
        .or_else(|| which("mysql"))
        .ok_or_else(|| {
            "no mariadb or mysql client found (hint: apt install mariadb-client)".to_string()
        })
}

/// Runs one SQL statement with the client, returning its tab-separated output rows.
pub fn query(job: &MysqlJob, client: &Path, sql: &str) -> Result<Vec<String>, String> {
    let creds = credentials(job).map_err(|e| format!("cannot prepare credentials: {e}"))?;
    let mut cmd = Command::new(client);
    cmd.arg(creds.arg()).args([
        "--batch",
        "--skip-column-names",
        "--raw",
        "--default-character-set=utf8mb4",
        "-e",
        sql,
    ]);
    creds.pass_to(&mut cmd);
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", client.display()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(with_hint(&err));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect())
}

/// Whether `err` carries MySQL error number `n` as the tools print it: `ERROR n (…)` (client),
/// `… (n)` (dump tool), `error: n:` (dump tool connecting).
pub fn code(err: &str, n: u32) -> bool {
    [
        format!("ERROR {n} "),
        format!("({n})"),
        format!("error: {n}:"),
    ]
    .iter()
    .any(|p| err.contains(p.as_str()))
}

/// Adds an operator hint to a client error by its MySQL error number.
pub fn with_hint(err: &str) -> String {
    let hint = if code(err, 1044)
        || code(err, 1142)
        || code(err, 1143)
        || code(err, 1227)
        || code(err, 1370)
    {
        "the user lacks a privilege; see the README for the GRANT statements"
    } else if code(err, 1045) || err.contains("Access denied") {
        "check `user` and the password in `password_file`"
    } else if code(err, 2002) || code(err, 2003) || code(err, 2013) || err.contains("Can't connect")
    {
        "is the server running and reachable? check `host`/`port` or `socket`"
    } else if code(err, 1049) || err.contains("Unknown database") {
        "check the names in `databases` (SHOW DATABASES lists them)"
    } else if code(err, 1419) {
        "the server writes a binary log, and then only SUPER may create stored functions: set `log_bin_trust_function_creators = 1` on the server, or restore as a user with SUPER, for whom opsagent sets it during the load"
    } else if err.contains("max_allowed_packet") || code(err, 2006) {
        "a row is larger than the server's max_allowed_packet: raise it (`SET GLOBAL max_allowed_packet = 1073741824`, or `max_allowed_packet = 1G` under [mysqld]) or restore as a user with SUPER, which opsagent raises it for"
    } else {
        return err.to_string();
    };
    format!("{err} (hint: {hint})")
}
