//! The agent under test, shared by the test binaries: running the `opsagent` binary, waiting
//! for a condition, and a bench (temp dir, bucket, secret files) that writes configurations.

use super::s3::{S3Server, ACCESS_KEY, SECRET_KEY};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs `opsagent --config <cfg> <args…>` to completion, stdin closed.
pub fn opsagent(cfg: &Path, args: &[&str]) -> Output {
    run_in(Command::new(env!("CARGO_BIN_EXE_opsagent")), cfg, args)
}

/// [`opsagent`] logging at `level` (`OPSAGENT_LOG`) instead of the CLI's `warn`.
pub fn opsagent_logging(level: &str, cfg: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_opsagent"));
    cmd.env("OPSAGENT_LOG", level);
    run_in(cmd, cfg, args)
}

/// `cmd` (the binary, or a wrapper followed by it) with `--config <cfg> <args…>`, stdin closed.
fn run_in(mut cmd: Command, cfg: &Path, args: &[&str]) -> Output {
    cmd.arg("--config")
        .arg(cfg)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Polls `ok` every 50 ms; fails the test naming `what` if it is not true within `within`.
pub fn wait_for(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !ok() {
        assert!(
            t0.elapsed() < within,
            "{what} did not happen within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `[checks.*]` tables turning off the host checks, so a test's config watches nothing else.
pub fn host_checks_off() -> String {
    ["cpu", "load", "memory", "swap", "disk", "gateway"]
        .iter()
        .map(|k| format!("[checks.{k}]\nenabled = false\n"))
        .collect()
}

/// The `[agent]` table: host `hostname`, UTC, state in `state_dir`, plus `extra` lines.
pub fn agent_table(hostname: &str, state_dir: &Path, extra: &str) -> String {
    format!(
        "[agent]\nhostname = \"{hostname}\"\nstate_dir = \"{}\"\ntimezone = \"UTC\"\n{extra}",
        state_dir.display()
    )
}

/// The `[storage]` table for `bucket` on `s3` (no prefix), its secret key in `secret_file`.
pub fn s3_storage_table(s3: &S3Server, bucket: &str, secret_file: &Path) -> String {
    format!(
        "[storage]\ntype = \"s3\"\nbucket = \"{bucket}\"\nendpoint = \"{ep}\"\nregion = \"us-east-1\"\n\
         access_key_id = \"{ACCESS_KEY}\"\nsecret_access_key_file = \"{}\"\n",
        secret_file.display(),
        ep = s3.endpoint(),
    )
}

/// A temp dir with the S3 secret (and any other secret files) and a fresh bucket.
pub struct Bench {
    /// Holds secrets, state dirs and configs.
    pub dir: tempfile::TempDir,
    /// This bench's bucket on the shared S3 server.
    pub bucket: String,
}

impl Bench {
    /// A new bench on `s3`, with the secret files `s3` plus `(name, value)` of `secrets`.
    pub fn new(s3: &S3Server, secrets: &[(&str, &str)]) -> Bench {
        let dir = tempfile::tempdir().unwrap();
        super::write_secret(dir.path(), "s3", SECRET_KEY);
        for (name, value) in secrets {
            super::write_secret(dir.path(), name, value);
        }
        Bench {
            dir,
            bucket: s3.new_bucket(),
        }
    }

    /// `name` inside the bench's directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `[agent]` (host `web-01`, UTC, state in `<dir>/<state>`, plus `agent_extra` lines) and
    /// `[storage]` on this bench's bucket with no prefix.
    pub fn head(&self, s3: &S3Server, state: &str, agent_extra: &str) -> String {
        agent_table("web-01", &self.path(state), agent_extra)
            + &s3_storage_table(s3, &self.bucket, &self.path("s3"))
    }

    /// Writes `text` as `<dir>/<name>` and returns the path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

/// `opsagent run` as a child process, its stderr appended to a log file; killed on drop.
pub struct Daemon(pub std::process::Child, pub PathBuf);

impl Daemon {
    /// Starts the daemon on `config`, logging at info into `log` (appended).
    pub fn start(config: &Path, log: &Path) -> Daemon {
        let err = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_opsagent"))
            .arg("--config")
            .arg(config)
            .arg("run")
            .env("OPSAGENT_LOG", "info")
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .unwrap();
        Daemon(child, log.to_path_buf())
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.1).unwrap_or_default()
    }

    /// SIGTERM, and the daemon must exit 0.
    pub fn stop(mut self) {
        let pid = rustix::process::Pid::from_raw(self.0.id() as i32).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        let status = self.0.wait().unwrap();
        assert!(status.success(), "daemon exit {status}:\n{}", self.log());
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Writes a configuration, a minimal `[agent]` and local `[storage]` (5 lines) followed by
/// `tail` (`{dir}` in it is the temp dir), runs `check-config` on it and checks that it exits
/// 2; returns the temp dir, the file and what was said.
pub fn check_config_fails(tail: &str) -> (tempfile::TempDir, PathBuf, String) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let cfg = dir.path().join("bad.toml");
    let head = format!(
        "[agent]\nstate_dir = \"{d}/state\"\n[storage]\ntype = \"local\"\npath = \"{d}/b\"\n"
    );
    std::fs::write(&cfg, head + &tail.replace("{dir}", &d)).unwrap();
    let out = opsagent(&cfg, &["check-config"]);
    let said = super::output_text(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    (dir, cfg, said)
}

/// Runs `opsagent --config <cfg> <args…>` with its clock at `at` (faketime; `date -d` words
/// such as `40 days ago` or `2026-11-20 02:30:00`).
pub fn opsagent_at(at: &str, cfg: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new("faketime");
    cmd.arg(at).arg(env!("CARGO_BIN_EXE_opsagent"));
    run_in(cmd, cfg, args)
}

/// The entries of media snapshot `m` (either tree format: a format-2 tree's blobs come from its
/// packs), read through the storage of configuration `cfg` as a restore reads them.
pub fn tree_nodes(
    cfg: &Path,
    m: &opsagent::snapshot::manifest::Manifest,
) -> Vec<opsagent::media::tree::Node> {
    tree_nodes_or_error(cfg, m).unwrap_or_else(|e| panic!("{e}"))
}

/// [`tree_nodes`], or the restore's error.
pub fn tree_nodes_or_error(
    cfg: &Path,
    m: &opsagent::snapshot::manifest::Manifest,
) -> Result<Vec<opsagent::media::tree::Node>, String> {
    let config = opsagent::config::load(cfg).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let storage = opsagent::storage::Storage::open(&config.storage).unwrap();
        opsagent::restore::media::load_tree(&storage, m)
            .await
            .map_err(|e| e.to_string())
    })
}
