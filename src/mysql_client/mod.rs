//! The one adapter to the MySQL/MariaDB client tools (used by backups, restores and the `mysql`
//! check): where the server is; credentials handed to a child in an option file that lives
//! only in memory — a `memfd` of mode 0600, inherited by that child alone and named as
//! `--defaults-extra-file=/dev/fd/N` — so a password never appears on a command line, in the
//! child's environment, on disk, or in a log; and every spawn of a tool ([`Client`], `tools`):
//! streamed stdin/stdout, stderr kept capped for the message, the exit status read only after
//! the stream is drained. One load talks the client protocol itself instead ([`Connection`],
//! `protocol`: the rows of a parallel restore). Errors are [`MysqlError`]; hints by MySQL error
//! number in `hint`.

mod client;
mod error;
mod hint;
mod protocol;
mod tools;

pub use client::{Client, Finished, Output, Running};
pub use error::MysqlError;
pub use hint::{code, with_hint};
pub use protocol::Connection;
pub use tools::{
    binlog_decoder, client_on_path, client_tool, dump_tool, has_dump_history, sandbox_flag,
    tool_version, which, SYSTEM_DATABASES,
};

use crate::secret::Secret;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

/// How to reach a MySQL/MariaDB server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// TCP.
    Tcp {
        /// Host name or address.
        host: String,
        /// Port.
        port: u16,
    },
    /// A Unix socket.
    Socket(PathBuf),
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Tcp { host, port } => write!(f, "{host}:{port}"),
            Endpoint::Socket(p) => write!(f, "socket {}", p.display()),
        }
    }
}

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

/// The `[client]` option file for a login; `extra` lines (e.g. `connect-timeout=5\n`) are
/// appended as they are.
pub fn option_file(
    endpoint: &Endpoint,
    user: Option<&str>,
    password: Option<&Secret>,
    extra: &str,
) -> String {
    let mut s = String::from("[client]\n");
    if let Some(u) = user {
        s.push_str(&format!("user={}\n", option_value(u)));
    }
    if let Some(p) = password {
        s.push_str(&format!("password={}\n", option_value(p.expose())));
    }
    match endpoint {
        Endpoint::Tcp { host, port } => {
            s.push_str(&format!(
                "host={}\nport={port}\nprotocol=TCP\n",
                option_value(host)
            ));
        }
        Endpoint::Socket(p) => {
            s.push_str(&format!(
                "socket={}\nprotocol=SOCKET\n",
                option_value(&p.to_string_lossy())
            ));
        }
    }
    s.push_str(extra);
    s
}

/// An in-memory option file for one child process (spawns go through [`Client`]).
struct Credentials {
    fd: OwnedFd,
}

impl Credentials {
    /// Writes `option_file` into a fresh memfd.
    fn new(option_file: &str) -> std::io::Result<Credentials> {
        use rustix::fs::{fchmod, memfd_create, MemfdFlags, Mode};
        let fd = memfd_create("opsagent-mysql-options", MemfdFlags::CLOEXEC)?;
        // The client tools ignore world-writable option files; memfds start as 0777.
        fchmod(&fd, Mode::from_raw_mode(0o600))?;
        let mut f = std::fs::File::from(fd);
        f.write_all(option_file.as_bytes())?;
        Ok(Credentials { fd: f.into() })
    }

    /// The first argument the tool needs.
    fn arg(&self) -> String {
        format!("--defaults-extra-file=/dev/fd/{}", self.fd.as_raw_fd())
    }

    /// Lets `cmd`'s child (and only it) inherit the option file.
    fn pass_to(&self, cmd: &mut std::process::Command) {
        use std::os::unix::process::CommandExt;
        let raw = self.fd.as_raw_fd();
        // SAFETY: between fork and exec the hook only calls fcntl, which is async-signal-safe.
        unsafe {
            cmd.pre_exec(move || inherit(raw));
        }
    }

    /// [`Credentials::pass_to`] for a tokio command.
    fn pass_to_async(&self, cmd: &mut tokio::process::Command) {
        let raw = self.fd.as_raw_fd();
        // SAFETY: as in `pass_to`.
        unsafe {
            cmd.pre_exec(move || inherit(raw));
        }
    }
}

/// Clears close-on-exec on `raw` in the child between fork and exec.
fn inherit(raw: RawFd) -> std::io::Result<()> {
    // SAFETY: `raw` is the memfd owned by the parent's `Credentials`, open across the fork.
    let fd = unsafe { rustix::fd::BorrowedFd::borrow_raw(raw) };
    rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_values_are_escaped() {
        assert_eq!(option_value("a b#c"), "\"a b#c\"");
        assert_eq!(option_value("q\"\\\n"), "\"q\\\"\\\\\\n\"");
    }

    #[test]
    fn option_file_has_the_login() {
        let ep = Endpoint::Tcp {
            host: "127.0.0.1".into(),
            port: 3306,
        };
        let f = option_file(
            &ep,
            Some("mon\"itor"),
            Some(&Secret::new("pw")),
            "connect-timeout=5\n",
        );
        assert_eq!(f, "[client]\nuser=\"mon\\\"itor\"\npassword=\"pw\"\nhost=\"127.0.0.1\"\nport=3306\nprotocol=TCP\nconnect-timeout=5\n");
    }
}
