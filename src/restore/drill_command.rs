//! `drill_command` of a `[[mysql]]` job: after a drill loaded a snapshot into its scratch
//! database and read every table, the application proves it can use the copy (e.g. `php
//! artisan migrate:status`). The command runs with `sh -c`, its environment naming the scratch
//! database and a temporary read-only account on it (`OPSAGENT_DRILL_DATABASE`, `_HOST` and
//! `_PORT` or `_SOCKET`, `_USER`, `_PASSWORD`); its exit status and last lines become part of
//! the drill's result. It gets [`TIMEOUT`], then is killed. The account is dropped either way.

use super::sandbox::{Access, Sandbox};
use super::RestoreError;
use crate::config::MysqlJob;
use crate::mysql_client::Endpoint;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long the command may run.
pub const TIMEOUT: Duration = Duration::from_secs(600);
/// How much of its output is kept (its end).
const KEEP: usize = 4096;
/// Lines of it quoted in the drill's result.
const LINES: usize = 10;

/// Runs `command` against the scratch database `db`; its last lines on success.
pub fn run(job: &MysqlJob, client: &Path, db: &str, command: &str) -> Result<String, RestoreError> {
    let account = Sandbox::create_with(job, client, db, Access::Read)?;
    let result = run_as(job, &account, db, command);
    if let Err(e) = account.drop_account(job, client) {
        tracing::warn!(error = %e, "cannot drop the drill command's account; the next restore drops it after a day");
    }
    result
}

fn run_as(
    job: &MysqlJob,
    account: &Sandbox,
    db: &str,
    command: &str,
) -> Result<String, RestoreError> {
    let failed = |status: String, output: String| RestoreError::DrillCommand {
        command: command.to_string(),
        status,
        output,
    };
    let mut cmd = Command::new("/bin/sh");
    // stderr joins stdout; the command is in the environment, never in a shell string we build.
    cmd.args(["-c", "exec 2>&1; eval \"$OPSAGENT_DRILL_COMMAND\""])
        .env("OPSAGENT_DRILL_COMMAND", command)
        .env("OPSAGENT_DRILL_DATABASE", db)
        .env("OPSAGENT_DRILL_USER", &account.user)
        .env(
            "OPSAGENT_DRILL_PASSWORD",
            account
                .login(job)
                .password
                .map(|p| p.expose().to_string())
                .unwrap_or_default(),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    match &job.endpoint {
        Endpoint::Tcp { host, port } => cmd
            .env("OPSAGENT_DRILL_HOST", host)
            .env("OPSAGENT_DRILL_PORT", port.to_string()),
        Endpoint::Socket(p) => cmd.env("OPSAGENT_DRILL_SOCKET", p),
    };
    let mut child = cmd
        .spawn()
        .map_err(|e| failed("could not start".into(), e.to_string()))?;
    let mut out = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        let mut tail: Vec<u8> = Vec::new();
        let mut buf = [0u8; 8192];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 {
                break;
            }
            tail.extend_from_slice(&buf[..n]);
            if tail.len() > KEEP * 2 {
                tail.drain(..tail.len() - KEEP);
            }
        }
        tail
    });
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if started.elapsed() > TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            Err(_) => break None,
        }
    };
    let tail = reader.join().unwrap_or_default();
    let output = last_lines(&tail);
    match status {
        Some(s) if s.success() => Ok(output),
        Some(s) => Err(failed(s.to_string(), output)),
        None => Err(failed(
            format!("killed after {}", humantime::format_duration(TIMEOUT)),
            output,
        )),
    }
}

/// The last [`LINES`] lines of `tail`, printable.
fn last_lines(tail: &[u8]) -> String {
    let text = String::from_utf8_lossy(tail);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let from = lines.len().saturating_sub(LINES);
    crate::quote::printable(&lines[from..].join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_lines_are_kept_printable() {
        let many: String = (1..=30).map(|i| format!("line {i}\n")).collect();
        let kept = last_lines(many.as_bytes());
        assert!(
            kept.starts_with("line 21") && kept.ends_with("line 30"),
            "{kept}"
        );
        assert!(!last_lines(b"a\x1b[2Jb\n").contains('\x1b'));
    }
}
