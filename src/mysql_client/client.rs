//! Spawning a client tool logged in to a server: the credentials go in an in-memory option file
//! (never on the command line), stdin and stdout are streamed or collected, stderr is kept
//! capped (its first and last [`STDERR_KEEP`]` / 2` bytes) for the message, and the exit status
//! is read only after the caller's stream is drained and closed.

use super::{option_file, Credentials, Endpoint, MysqlError};
use crate::priority::Priority;
use crate::secret::Secret;
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};

/// Bytes of a tool's stderr kept for messages: its first and its last half of this.
pub const STDERR_KEEP: usize = 64 << 10;

/// A client tool (`mariadb`, `mysql`, `mariadb-dump`, `mysqldump`) and the login it runs with.
#[derive(Clone)]
pub struct Client {
    program: PathBuf,
    /// The `[client]` option file, password included.
    options: Secret,
    /// The IO class and nice value the tool runs at (`None`: inherited).
    priority: Option<Priority>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("program", &self.program)
            .finish_non_exhaustive()
    }
}

/// What a tool printed, and how it ended.
#[derive(Debug)]
pub struct Output {
    /// Its exit status.
    pub status: ExitStatus,
    /// Its stdout.
    pub stdout: String,
    /// Its stderr, capped.
    pub stderr: String,
}

/// How a streamed tool ended (see [`Running::finish`]).
#[derive(Debug)]
pub struct Finished {
    /// Its exit status.
    pub status: ExitStatus,
    /// Its stderr, capped.
    pub stderr: String,
}

/// A tool started by [`Client::spawn`]: take its stdin or stdout, stream, then [`Running::finish`].
pub struct Running {
    program: PathBuf,
    child: Child,
    stderr: Option<std::thread::JoinHandle<String>>,
    _credentials: Credentials,
}

impl Client {
    /// `program`, logged in at `endpoint` as `user`; `extra` option lines (e.g.
    /// `connect-timeout=5\n`) go in the option file as they are.
    pub fn new(
        program: impl Into<PathBuf>,
        endpoint: &Endpoint,
        user: Option<&str>,
        password: Option<&Secret>,
        extra: &str,
    ) -> Client {
        Client {
            program: program.into(),
            options: Secret::new(option_file(endpoint, user, password, extra)),
            priority: None,
        }
    }

    /// This client with its tools started at `priority` (the dump tool: `[agent] io_priority`
    /// and `nice`), set in the child before it runs the tool; `None`: as the agent runs.
    pub fn with_priority(mut self, priority: Option<Priority>) -> Client {
        self.priority = priority;
        self
    }

    /// The tool.
    pub fn program(&self) -> &Path {
        &self.program
    }

    fn credentials(&self) -> Result<Credentials, MysqlError> {
        Credentials::new(self.options.expose()).map_err(|e| MysqlError::Credentials {
            cause: e.to_string(),
        })
    }

    fn spawn_error(&self, e: std::io::Error) -> MysqlError {
        MysqlError::Spawn {
            program: self.program.clone(),
            cause: e.to_string(),
        }
    }

    /// Starts the tool with `args` (after the credentials argument, which comes first); its
    /// stdin and stdout are pipes when asked for, else null.
    pub fn spawn<I, S>(&self, args: I, stdin: bool, stdout: bool) -> Result<Running, MysqlError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.spawn_cmd(Command::new(&self.program), args, stdin, stdout)
    }

    /// [`Client::spawn`] for a tool meant to run as long as the agent (the binary log reader):
    /// it is killed when the thread that started it ends, so an agent killed outright leaves
    /// no reader behind (it would hold the server's binary logs from being purged). Call it
    /// from a thread that lives as long as the tool is wanted (a runtime worker).
    pub fn spawn_tied<I, S>(&self, args: I) -> Result<Running, MysqlError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(&self.program);
        // SAFETY: between fork and exec the hook only calls prctl, which is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                let kill = rustix::process::Signal::KILL;
                rustix::process::set_parent_process_death_signal(Some(kill))?;
                Ok(())
            });
        }
        self.spawn_cmd(cmd, args, false, false)
    }

    fn spawn_cmd<I, S>(
        &self,
        mut cmd: Command,
        args: I,
        stdin: bool,
        stdout: bool,
    ) -> Result<Running, MysqlError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let creds = self.credentials()?;
        cmd.arg(creds.arg()).args(args);
        creds.pass_to(&mut cmd);
        if let Some(p) = self.priority {
            use std::os::unix::process::CommandExt;
            // SAFETY: between fork and exec the hook only makes the ioprio_set and setpriority
            // syscalls, which are async-signal-safe.
            unsafe {
                cmd.pre_exec(move || {
                    p.apply_in_child();
                    Ok(())
                });
            }
        }
        let pipe = |p: bool| if p { Stdio::piped() } else { Stdio::null() };
        cmd.stdin(pipe(stdin))
            .stdout(pipe(stdout))
            .stderr(Stdio::piped());
        let mut child = crate::priority::spawn_child(cmd).map_err(|e| self.spawn_error(e))?;
        if let Some(p) = self.priority.filter(|p| !p.holds_for(child.id())) {
            tracing::warn!(
                program = %self.program.display(),
                io_priority = p.io.as_str(),
                "the tool could not be given its IO class; it runs at normal priority \
                 (a sandbox forbidding ioprio_set?)"
            );
        }
        let err = child.stderr.take().expect("piped stderr");
        let stderr = std::thread::spawn(move || read_capped(err));
        Ok(Running {
            program: self.program.clone(),
            child,
            stderr: Some(stderr),
            _credentials: creds,
        })
    }

    /// Runs the tool with `args`, `input` fed on its stdin (none: stdin is null), and returns
    /// its stdout; fails with its stderr when it exits unsuccessfully.
    pub fn run<I, S>(&self, args: I, input: Option<&str>) -> Result<String, MysqlError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut running = self.spawn(args, input.is_some(), true)?;
        let writer = running.take_stdin().map(|mut stdin| {
            let input = input.unwrap_or_default().to_string();
            std::thread::spawn(move || stdin.write_all(input.as_bytes()))
        });
        let mut out = Vec::new();
        let read = running
            .take_stdout()
            .expect("piped stdout")
            .read_to_end(&mut out);
        if let Some(w) = writer {
            let _ = w.join();
        }
        let finished = running.finish()?;
        if let Err(e) = read {
            return Err(MysqlError::Wait {
                program: self.program.clone(),
                cause: e.to_string(),
            });
        }
        finished.ok(&self.program)?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    /// Runs the tool with `args` and no stdin, asynchronously; the child is killed if the
    /// future is dropped (a deadline passed). The caller judges the exit status.
    pub async fn output_async(&self, args: &[&str]) -> Result<Output, MysqlError> {
        use tokio::io::AsyncReadExt;
        let creds = self.credentials()?;
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.arg(creds.arg())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        creds.pass_to_async(&mut cmd);
        let mut child = cmd.spawn().map_err(|e| self.spawn_error(e))?;
        let mut out = child.stdout.take().expect("piped stdout");
        let mut err = child.stderr.take().expect("piped stderr");
        let (stdout, stderr) = tokio::join!(
            async {
                let mut v = Vec::new();
                let _ = out.read_to_end(&mut v).await;
                v
            },
            async {
                let mut kept = Capped::default();
                let mut buf = [0u8; 4096];
                while let Ok(n) = err.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    kept.push(&buf[..n]);
                }
                kept.into_string()
            }
        );
        let status = child.wait().await.map_err(|e| MysqlError::Wait {
            program: self.program.clone(),
            cause: e.to_string(),
        })?;
        Ok(Output {
            status,
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr,
        })
    }
}

impl Running {
    /// The tool's stdin (when piped; once).
    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.child.stdin.take()
    }

    /// The tool's stdout (when piped; once).
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.child.stdout.take()
    }

    /// Stops the tool (a stream went wrong: it must not see a clean end).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
    }

    /// Whether the tool has exited (a long-running one: the binary log reader).
    pub fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Closes whatever pipe is still held here, waits for the tool, and collects its stderr.
    /// Call it after dropping the stdin or stdout taken, so the stream is drained first.
    pub fn finish(mut self) -> Result<Finished, MysqlError> {
        drop(self.child.stdin.take());
        drop(self.child.stdout.take());
        let status = self.child.wait().map_err(|e| MysqlError::Wait {
            program: self.program.clone(),
            cause: e.to_string(),
        });
        let stderr = self
            .stderr
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default();
        Ok(Finished {
            status: status?,
            stderr,
        })
    }
}

impl Finished {
    /// The tool's error when it exited unsuccessfully.
    pub fn ok(self, program: &Path) -> Result<Finished, MysqlError> {
        if self.status.success() {
            return Ok(self);
        }
        Err(MysqlError::Exit {
            program: program.to_path_buf(),
            status: self.status.code(),
            stderr: self.stderr.trim().to_string(),
        })
    }
}

/// The first and last `STDERR_KEEP / 2` bytes of a stream.
#[derive(Default)]
struct Capped {
    head: Vec<u8>,
    tail: Vec<u8>,
    cut: bool,
}

impl Capped {
    fn push(&mut self, mut data: &[u8]) {
        let half = STDERR_KEEP / 2;
        if self.head.len() < half {
            let n = data.len().min(half - self.head.len());
            self.head.extend_from_slice(&data[..n]);
            data = &data[n..];
        }
        self.tail.extend_from_slice(data);
        if self.tail.len() > half {
            self.tail.drain(..self.tail.len() - half);
            self.cut = true;
        }
    }

    fn into_string(mut self) -> String {
        if self.cut {
            self.head.extend_from_slice(b"\n[...]\n");
        }
        self.head.extend_from_slice(&self.tail);
        String::from_utf8_lossy(&self.head).into_owned()
    }
}

/// Reads `r` to its end, keeping it capped.
fn read_capped(mut r: impl Read) -> String {
    let mut kept = Capped::default();
    let mut buf = [0u8; 4096];
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => kept.push(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    kept.into_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_keeps_its_head_and_tail() {
        let mut c = Capped::default();
        c.push(b"first line\n");
        c.push(&vec![b'x'; STDERR_KEEP * 2]);
        c.push(b"\nlast line");
        let s = c.into_string();
        assert!(s.len() <= STDERR_KEEP + 16, "{}", s.len());
        assert!(s.starts_with("first line\n") && s.ends_with("\nlast line"));
        assert!(s.contains("[...]"));
        assert_eq!(read_capped(&b"short"[..]), "short");
    }
}
