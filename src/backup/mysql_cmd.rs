//! Running the MySQL client tools safely: credentials go to the tool in an option file that lives
//! only in memory (a sealed-off `memfd`, mode 0600, inherited by the child alone and named as
//! `--defaults-extra-file=/dev/fd/N`), so a password never appears on a command line, in the
//! child's environment, on disk, or in a log.

use crate::config::{MysqlEndpoint, MysqlJob};
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Escapes a value for a MySQL option file (`key="value"`), which interprets backslash escapes.
pub fn option_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The `[client]` option file for a job.
pub fn option_file(job: &MysqlJob) -> String {
    let mut s = String::from("[client]\n");
    if let Some(u) = &job.user {
        s.push_str(&format!("user={}\n", option_value(u)));
    }
    if let Some(p) = &job.password {
        s.push_str(&format!("password={}\n", option_value(p.expose())));
    }
    match &job.endpoint {
        MysqlEndpoint::Tcp { host, port } => {
            s.push_str(&format!(
                "host={}\nport={port}\nprotocol=TCP\n",
                option_value(host)
            ));
        }
        MysqlEndpoint::Socket(p) => {
            s.push_str(&format!(
                "socket={}\nprotocol=SOCKET\n",
                option_value(&p.to_string_lossy())
            ));
        }
    }
    s
}

/// An in-memory option file for one child process.
pub struct Credentials {
    fd: OwnedFd,
}

impl Credentials {
    /// Writes the job's option file into a fresh memfd.
    pub fn new(job: &MysqlJob) -> std::io::Result<Credentials> {
        use rustix::fs::{fchmod, memfd_create, MemfdFlags, Mode};
        let fd = memfd_create("opsagent-mysql-options", MemfdFlags::CLOEXEC)?;
        // The client tools ignore world-writable option files; memfds start as 0777.
        fchmod(&fd, Mode::from_raw_mode(0o600))?;
        let mut f = std::fs::File::from(fd);
        f.write_all(option_file(job).as_bytes())?;
        Ok(Credentials { fd: f.into() })
    }

    /// The first argument the tool needs.
    pub fn arg(&self) -> String {
        format!("--defaults-extra-file=/dev/fd/{}", self.fd.as_raw_fd())
    }

    /// Lets `cmd`'s child (and only it) inherit the option file.
    pub fn pass_to(&self, cmd: &mut Command) {
        let raw = self.fd.as_raw_fd();
        // SAFETY: between fork and exec we only call fcntl, which is async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                let fd = rustix::fd::BorrowedFd::borrow_raw(raw);
                rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty())?;
                Ok(())
            });
        }
    }
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
    let creds = Credentials::new(job).map_err(|e| format!("cannot prepare credentials: {e}"))?;
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

/// Adds an operator hint to a client error by its MySQL error number.
pub fn with_hint(err: &str) -> String {
    let hint = if err.contains("1045") || err.contains("Access denied") {
        "check `user` and the password in `password_file`"
    } else if err.contains("2002")
        || err.contains("2003")
        || err.contains("2013")
        || err.contains("Can't connect")
    {
        "is the server running and reachable? check `host`/`port` or `socket`"
    } else if err.contains("1049") || err.contains("Unknown database") {
        "check the names in `databases` (SHOW DATABASES lists them)"
    } else if err.contains("1044") || err.contains("1142") || err.contains("1227") {
        "the backup user lacks a privilege; see the README for the GRANT statement"
    } else {
        return err.to_string();
    };
    format!("{err} (hint: {hint})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_values_are_escaped() {
        assert_eq!(option_value("a b#c"), "\"a b#c\"");
        assert_eq!(option_value("q\"\\\n"), "\"q\\\"\\\\\\n\"");
    }
}
