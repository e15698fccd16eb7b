//! Integration-test harness: real MariaDB, S3 (moto) and SMTP (aiosmtpd) servers for the tests.
//!
//! Include it from a test binary with `mod common;`. Each server module offers an owned server
//! (`start()`, killed and its temp dir removed on `Drop`) and a lazily started one per test binary
//! (`shared()`, a `OnceLock`): give every test its own bucket, database or recipient on it.
//!
//! What this file provides to the server modules:
//! * [`free_port`], [`PortReservation`] (keeps a stopped server's port from being taken) and
//!   [`unique_name`];
//! * [`server_dir`]: a fresh directory per server under `CARGO_TARGET_TMPDIR/opsagent-harness`,
//!   named after this process's pid, so test binaries never share one; directories left behind by
//!   dead processes are removed on first use;
//! * [`spawn`]: every child is started from one long-lived thread with
//!   `prctl(PR_SET_PDEATHSIG, SIGKILL)`, so servers die with the test process even when it is
//!   killed (PDEATHSIG fires when the *spawning thread* exits, hence the dedicated thread);
//! * [`cleanup_at_exit`]: shared servers never drop, so an `atexit` hook kills them and removes
//!   their directories when the test binary exits;
//! * [`wait_until_ready`] / [`log_tail`]: the common start loop and the error message that
//!   quotes the server's log when it does not come up within [`START_TIMEOUT`].
#![allow(dead_code)]

pub mod agent;
pub mod alert_env;
pub mod binlog;
pub mod deny_proxy;
pub mod mariadb;
pub mod media_bench;
pub mod netns;
pub mod pingkit;
pub mod s3;
pub mod smtp;
pub mod wire_meter;

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

/// How long a server may take to become ready before the helper panics.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How many times `start()` picks a new port after losing a port race.
pub const PORT_RETRIES: usize = 5;

/// A TCP port on 127.0.0.1 that was free a moment ago (bind port 0, read it, drop the listener).
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0 to find a free port")
        .port()
}

/// `prefix` (lowercased, characters other than `[a-z0-9-]` turned into `-`) + `-` + 8 random hex
/// digits, e.g. `t-1a2b3c4d`: valid as an S3 bucket name. As a database name it needs backquotes;
/// [`mariadb::MariaDb::new_database`] uses `_` instead.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    h.write_u128(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    let prefix: String = prefix
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("{prefix}-{:08x}", h.finish() as u32)
}

/// Holds a port while its server is stopped: a socket bound to 127.0.0.1:port without `listen`,
/// so connections to it are refused, as for a dead server, and a plain `bind` of the port (or the
/// kernel choosing it for a `bind` to port 0) fails. It is bound with `SO_REUSEADDR`: the killed
/// server's own connections linger in TIME_WAIT on the port for a minute, and a socket without
/// that option could not be bound until they are gone (the restarted server sets it too).
pub struct PortReservation(libc::c_int);

impl PortReservation {
    pub fn new(port: u16) -> Option<PortReservation> {
        Self::bind(port, true)
    }

    /// Holds `port` for `server`, retrying for up to 5 s while the killed server's listening
    /// socket is still being closed; panics if it cannot (a silent miss would let another
    /// process take the port before the restart).
    pub fn hold(server: &str, port: u16) -> PortReservation {
        let t0 = Instant::now();
        loop {
            if let Some(r) = Self::new(port) {
                return r;
            }
            if t0.elapsed() > Duration::from_secs(5) {
                panic!("{server}: cannot hold port {port} after stopping it (still bound?)");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether a plain `bind` of `port` (without `SO_REUSEADDR`) fails: the port is held.
    pub fn is_held(port: u16) -> bool {
        Self::bind(port, false).is_none()
    }

    fn bind(port: u16, reuse: bool) -> Option<PortReservation> {
        // SAFETY: plain socket syscalls on a fd we own; the sockaddr is fully initialised.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            if fd < 0 {
                return None;
            }
            let one: libc::c_int = 1;
            if reuse {
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_REUSEADDR,
                    &one as *const libc::c_int as *const libc::c_void,
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
            let mut addr: libc::sockaddr_in = std::mem::zeroed();
            addr.sin_family = libc::AF_INET as libc::sa_family_t;
            addr.sin_port = port.to_be();
            addr.sin_addr.s_addr = u32::from(Ipv4Addr::LOCALHOST).to_be();
            let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            if libc::bind(
                fd,
                &addr as *const libc::sockaddr_in as *const libc::sockaddr,
                len,
            ) != 0
            {
                libc::close(fd);
                return None;
            }
            Some(PortReservation(fd))
        }
    }
}

impl Drop for PortReservation {
    fn drop(&mut self) {
        // SAFETY: closing the fd this value owns.
        unsafe { libc::close(self.0) };
    }
}

/// `CARGO_TARGET_TMPDIR/opsagent-harness`, or `$TMPDIR/opsagent-harness` if that cannot be
/// created or is so long that a MariaDB socket path in it might exceed the 107-byte limit.
pub fn harness_base() -> PathBuf {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("opsagent-harness");
    if base.as_os_str().len() <= 60 && std::fs::create_dir_all(&base).is_ok() {
        return base;
    }
    let base = std::env::temp_dir().join("opsagent-harness");
    let _ = std::fs::create_dir_all(&base);
    base
}

fn pid_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    unsafe {
        libc::kill(pid, 0) == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }
}

/// Removes the server directories of test processes that no longer run (killed before they
/// could clean up). Done automatically on the first [`server_dir`] call of a process.
pub fn sweep_stale_dirs() {
    for entry in std::fs::read_dir(harness_base())
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        let pid = name.rsplit('-').nth(1).and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(|p| p as u32 != std::process::id() && !pid_alive(p)) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// A new, empty directory `KIND-PID-N` for one server (or other per-process scratch data).
pub fn server_dir(kind: &str) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static SWEEP: OnceLock<()> = OnceLock::new();
    SWEEP.get_or_init(sweep_stale_dirs);
    let base = harness_base();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = base.join(format!("{kind}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

struct SpawnRequest {
    cmd: Command,
    reply: mpsc::Sender<io::Result<Child>>,
}

/// Spawns `cmd` from the harness's spawner thread (which never exits) with
/// `PR_SET_PDEATHSIG = SIGKILL`: the child is killed when the test process dies, however it dies.
/// Use it for any long-running child a test starts (e.g. the opsagent daemon), not just servers.
pub fn spawn(mut cmd: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<mpsc::Sender<SpawnRequest>> = OnceLock::new();
    let tx = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("harness-spawner".into())
            .spawn(move || {
                // The sender lives in a static, so recv() never fails and this thread never ends.
                while let Ok(mut req) = rx.recv() {
                    let _ = req.reply.send(req.cmd.spawn());
                }
            })
            .expect("start harness spawner thread");
        tx
    });
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure only makes async-signal-safe syscalls (prctl, getppid).
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                // The test process died before prctl took effect.
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    let (reply, rx) = mpsc::channel();
    tx.send(SpawnRequest { cmd, reply })
        .expect("harness spawner thread is gone");
    rx.recv().expect("harness spawner thread is gone")
}

/// Kill `pid` (if it is still our running child) and remove `dir` when the test binary exits.
/// For shared servers, which live in statics and are never dropped.
pub fn cleanup_at_exit(pid: Option<u32>, dir: PathBuf) {
    static LIST: Mutex<Vec<(Option<u32>, PathBuf)>> = Mutex::new(Vec::new());
    static HOOK: OnceLock<()> = OnceLock::new();
    extern "C" fn run() {
        let list = match LIST.lock() {
            Ok(mut l) => std::mem::take(&mut *l),
            Err(p) => std::mem::take(&mut *p.into_inner()),
        };
        for (pid, dir) in list.into_iter().rev() {
            if let Some(pid) = pid {
                let pid = pid as libc::pid_t;
                let mut status = 0;
                // SAFETY: only touches `pid` if it is an unreaped child of ours.
                unsafe {
                    if libc::waitpid(pid, &mut status, libc::WNOHANG) == 0 {
                        libc::kill(pid, libc::SIGKILL);
                        libc::waitpid(pid, &mut status, 0);
                    }
                }
            }
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    HOOK.get_or_init(|| {
        // SAFETY: registering a plain extern "C" fn that does not unwind.
        unsafe { libc::atexit(run) };
    });
    LIST.lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((pid, dir));
}

/// The last `lines` lines of a log file (lossy UTF-8), or a note that it cannot be read.
pub fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("<cannot read {}: {e}>", path.display()),
    }
}

/// Why a server did not become ready.
pub enum StartError {
    /// It exited because its port was taken (lost a race for a [`free_port`]): try another.
    PortInUse(String),
    /// Anything else; the message includes the log tail.
    Failed(String),
}

impl StartError {
    pub fn message(&self) -> &str {
        match self {
            StartError::PortInUse(m) | StartError::Failed(m) => m,
        }
    }
}

fn port_in_use(log: &str) -> bool {
    let l = log.to_ascii_lowercase();
    l.contains("address already in use") || l.contains("errno 98") || l.contains("error: 98")
}

/// Polls `ready` every 50 ms until it returns true (it must make sure that it is `child` that
/// answers, e.g. with [`listens_on`], and not another process on the port), the child exits, or [`START_TIMEOUT`] passes.
/// On failure the child is killed and reaped, and the error quotes the tail of `log`.
pub fn wait_until_ready(
    what: &str,
    child: &mut Child,
    log: &Path,
    mut ready: impl FnMut() -> bool,
) -> Result<Duration, StartError> {
    let started = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let tail = log_tail(log, 40);
            let this_run = tail.rsplit(MARKER).next().unwrap_or("");
            let msg = format!(
                "{what} exited during start-up ({status}); {}:\n{tail}",
                log.display()
            );
            return Err(if port_in_use(this_run) {
                StartError::PortInUse(msg)
            } else {
                StartError::Failed(msg)
            });
        }
        if ready() {
            return Ok(started.elapsed());
        }
        if started.elapsed() > START_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(StartError::Failed(format!(
                "{what} not ready after {START_TIMEOUT:?}; {}:\n{}",
                log.display(),
                log_tail(log, 40)
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Calls `launch(port)` with fresh free ports until it does not lose a port race; returns the
/// port it started on. Panics (prefixed with `what`) on any other failure.
pub fn start_on_free_port(
    what: &str,
    mut launch: impl FnMut(u16) -> Result<(), StartError>,
) -> u16 {
    let t0 = Instant::now();
    let mut last = String::new();
    for _ in 0..PORT_RETRIES {
        let port = free_port();
        match launch(port) {
            Ok(()) => {
                eprintln!("{what} on port {port} ready after {:?}", t0.elapsed());
                return port;
            }
            Err(StartError::PortInUse(m)) => last = m,
            Err(StartError::Failed(m)) => panic!("{what}: {m}"),
        }
    }
    panic!("{what}: no free port after {PORT_RETRIES} tries; last: {last}")
}

/// Calls `launch` (which restarts a server on its old `port`) up to [`PORT_RETRIES`] times.
pub fn restart_on_port(what: &str, port: u16, mut launch: impl FnMut() -> Result<(), StartError>) {
    let mut last = String::new();
    for _ in 0..PORT_RETRIES {
        match launch() {
            Ok(()) => return,
            Err(e) => last = e.message().to_string(),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{what}: restart on port {port} failed: {last}")
}

/// Kills (SIGKILL) and reaps a child, if any.
pub fn kill_child(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// Opens `path` for a child's stdout/stderr, appending (restarts keep the earlier log) after a
/// `=== harness: {marker} ===` line that separates this run's output from earlier ones.
pub fn log_file(path: &Path, marker: &str) -> (std::fs::File, std::fs::File) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open log {}: {e}", path.display()));
    let _ = writeln!(f, "{MARKER}{marker} ===");
    let g = f.try_clone().expect("clone log file handle");
    (f, g)
}

const MARKER: &str = "=== harness: ";

/// Whether process `pid` has a socket listening on 127.0.0.1:`port` (from /proc/net/tcp and
/// /proc/PID/fd): tells our server from another process that took the port meanwhile.
pub fn listens_on(pid: u32, port: u16) -> bool {
    let Ok(table) = std::fs::read_to_string("/proc/net/tcp") else {
        return false;
    };
    let local = format!("0100007F:{port:04X}");
    let inodes: Vec<String> = table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.len() > 9 && f[1] == local && f[3] == "0A")
        .map(|f| format!("socket:[{}]", f[9]))
        .collect();
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten();
    fds.filter_map(|e| std::fs::read_link(e.path()).ok())
        .any(|target| inodes.iter().any(|i| target.as_os_str() == i.as_str()))
}

/// A finished command's exit status, stdout and stderr, for assertion messages.
pub fn output_text(o: &std::process::Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Writes a secret file (`value` plus a newline, mode 0600) and returns its path.
pub fn write_secret(dir: &Path, name: &str, value: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    std::fs::write(&p, format!("{value}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}
