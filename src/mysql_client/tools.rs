//! Which MySQL/MariaDB tools to run, and what they can do (asked of the tools themselves,
//! without credentials).

use super::MysqlError;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Databases never dumped by `["*"]` and never replaced in place.
pub const SYSTEM_DATABASES: [&str; 4] =
    ["information_schema", "performance_schema", "mysql", "sys"];

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

/// The dump tool: `dump_command` (a job's setting), else `mariadb-dump`, else `mysqldump`.
pub fn dump_tool(dump_command: Option<&str>) -> Result<PathBuf, MysqlError> {
    match dump_command {
        Some(c) => which(c).ok_or_else(|| MysqlError::DumpCommandNotFound {
            command: c.to_string(),
        }),
        None => which("mariadb-dump")
            .or_else(|| which("mysqldump"))
            .ok_or(MysqlError::NoDumpTool),
    }
}

/// The SQL client beside the dump tool (`mariadb` or `mysql`).
pub fn client_tool(dump: &Path) -> Result<PathBuf, MysqlError> {
    let dir = dump.parent().unwrap_or(Path::new("/usr/bin"));
    ["mariadb", "mysql"]
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
        .or_else(|| which("mariadb"))
        .or_else(|| which("mysql"))
        .ok_or(MysqlError::NoClient)
}

/// The first `mariadb` or `mysql` client on PATH (the `mysql` check, which has no dump tool).
pub fn client_on_path() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    ["mariadb", "mysql"]
        .iter()
        .flat_map(|n| std::env::split_paths(&path).map(move |d| d.join(n)))
        .find(|p| p.is_file())
}

/// The tool's `--version` line (empty when it cannot say).
pub async fn tool_version(tool: &Path) -> String {
    match tokio::process::Command::new(tool)
        .arg("--version")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .await
    {
        Ok(o) => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        Err(_) => String::new(),
    }
}

/// Whether the dump tool has `--dump-history` (MariaDB 10.11 and later).
pub fn has_dump_history(tool: &Path) -> bool {
    Command::new(tool)
        .arg("--help")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("--dump-history"))
        .unwrap_or(false)
}

/// `["--sandbox"]` when `client` knows it (MariaDB's client since 10.5.25/10.11.8: no command
/// that touches the file system, whatever the input says), else nothing (MySQL's `mysql`,
/// where `--binary-mode` alone turns client commands off). Asked once per client path.
pub fn sandbox_flag(client: &Path) -> &'static [&'static str] {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static KNOWN: OnceLock<Mutex<HashMap<PathBuf, bool>>> = OnceLock::new();
    let known = KNOWN.get_or_init(Default::default);
    let cached = known.lock().ok().and_then(|m| m.get(client).copied());
    let has = cached.unwrap_or_else(|| {
        let ok = Command::new(client)
            .args(["--no-defaults", "--sandbox", "--version"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if let Ok(mut m) = known.lock() {
            m.insert(client.to_path_buf(), ok);
        }
        ok
    });
    if has {
        &["--sandbox"]
    } else {
        &[]
    }
}

/// Starts `mariadb-binlog -` (or `mysqlbinlog`, the `tool`) decoding a binary log read from its
/// stdin into SQL on its stdout, table maps of database `from` renamed to `to`; it needs no login.
/// Its stderr goes to `errors` (a file: a pipe nobody reads while stdout is copied could fill).
pub fn binlog_decoder(
    tool: &Path,
    (from, to): (&str, &str),
    errors: std::fs::File,
) -> Result<std::process::Child, MysqlError> {
    // (Its own GTID checks would refuse a replay that starts mid-file; the archive's
    // continuity is checked by the restore's plan.)
    Command::new(tool)
        .arg("--skip-gtid-strict-mode")
        .arg(format!("--rewrite-db={from}->{to}"))
        .arg("-")
        .env("TZ", "UTC")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(errors)
        .spawn()
        .map_err(|e| MysqlError::Spawn {
            program: tool.to_path_buf(),
            cause: e.to_string(),
        })
}
