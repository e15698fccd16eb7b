//! The bench the media fault tests share: a `[[media]]` job on the shared moto server in a temp
//! dir, the real binary run with a time limit (a hang fails instead of stalling CI) and
//! optionally a lower limit of open files, and small file helpers.

use super::agent::{agent_table, s3_storage_table};
use super::s3::{S3Server, SECRET_KEY};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The job every bench configures.
pub const JOB: &str = "up";

/// A temp dir with a config for one `[[media]]` job on its own bucket of the shared moto.
pub struct Bench {
    /// Everything of the test: sources, state, config.
    pub dir: tempfile::TempDir,
    /// The config file.
    pub cfg: PathBuf,
    /// The job's bucket on the shared moto server.
    pub bucket: String,
}

impl Bench {
    /// A job backing up `paths` (relative to the bench directory).
    pub fn new(paths: &[&str]) -> Bench {
        Bench::with_job_lines(paths, "")
    }

    /// [`Bench::new`] with `lines` (TOML, each ending in a newline) added to the job's table.
    pub fn with_job_lines(paths: &[&str], lines: &str) -> Bench {
        let dir = tempfile::tempdir().unwrap();
        let s3 = S3Server::shared();
        let sec = super::write_secret(dir.path(), "s3", SECRET_KEY);
        let list: Vec<String> = paths
            .iter()
            .map(|p| format!("\"{}\"", dir.path().join(p).display()))
            .collect();
        let bucket = s3.new_bucket();
        let text = agent_table("web", &dir.path().join("state"), "")
            + &s3_storage_table(s3, &bucket, &sec)
            + &format!(
                "[[media]]\nname = \"{JOB}\"\npaths = [{}]\nschedule = \"@daily\"\n{lines}",
                list.join(", ")
            );
        let cfg = dir.path().join("opsagent.toml");
        std::fs::write(&cfg, text).unwrap();
        Bench { dir, cfg, bucket }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with_files(args, None)
    }

    /// Runs with at most `files` open files (`ulimit -n`) when given.
    pub fn run_with_files(&self, args: &[&str], files: Option<u32>) -> Output {
        let mut cmd = match files {
            None => Command::new(env!("CARGO_BIN_EXE_opsagent")),
            Some(n) => {
                let mut c = Command::new("sh");
                c.args(["-c", &format!("ulimit -n {n} && exec \"$0\" \"$@\"")])
                    .arg(env!("CARGO_BIN_EXE_opsagent"));
                c
            }
        };
        let mut child = cmd
            .arg("--config")
            .arg(&self.cfg)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // A FIFO opened for reading blocks: a hang is a failure, not a stuck CI job.
        let t = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if t.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                panic!("{args:?} hung for 60 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.wait_with_output().unwrap()
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            super::output_text(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

pub fn write(p: &Path, data: &[u8]) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

/// `base` followed by absolute path `p`.
pub fn under(base: &Path, p: &Path) -> PathBuf {
    base.join(p.strip_prefix("/").unwrap())
}
