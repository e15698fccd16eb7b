//! The daemon as a real process: systemd notifications, SIGTERM, reload on file change and
//! SIGHUP (a broken file is refused and the old config kept).

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Daemon {
    child: Child,
    log: Arc<Mutex<String>>,
    notify: UnixDatagram,
    _dir: tempfile::TempDir,
    config: PathBuf,
}

fn good_config(dir: &Path, schedule: &str) -> String {
    format!(
        "[agent]\nstate_dir = \"{0}/state\"\ntimezone = \"UTC\"\nshutdown_grace = \"3s\"\n[storage]\ntype = \"local\"\npath = \"{0}/backups\"\n[[mysql]]\nname = \"main\"\ndatabases = [\"shop\"]\nhost = \"127.0.0.1\"\nport = 1\nschedule = \"{schedule}\"\n",
        dir.display()
    )
}

impl Daemon {
    fn start() -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("opsagent.toml");
        std::fs::write(&config, good_config(dir.path(), "30 2 * * *")).unwrap();
        let sock = dir.path().join("notify.sock");
        let notify = UnixDatagram::bind(&sock).unwrap();
        notify
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_opsagent"))
            .args(["--config", config.to_str().unwrap(), "run"])
            .env("NOTIFY_SOCKET", &sock)
            .env("OPSAGENT_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (l, stderr) = (log.clone(), child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut g = l.lock().unwrap();
                g.push_str(&line);
                g.push('\n');
            }
        });
        Daemon {
            child,
            log,
            notify,
            _dir: dir,
            config,
        }
    }

    /// Waits for a datagram containing `needle`; returns everything received until then.
    fn wait_notify(&self, needle: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        let mut seen = String::new();
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(n) = self.notify.recv(&mut buf) {
                seen.push_str(&String::from_utf8_lossy(&buf[..n]));
                seen.push('|');
                if seen.contains(needle) {
                    return seen;
                }
            }
        }
        panic!(
            "no `{needle}` from the daemon within {within:?}; got {seen:?}; log:\n{}",
            self.log()
        );
    }

    fn wait_log(&self, needle: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.log().contains(needle) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "no `{needle}` in the log within {within:?}:\n{}",
            self.log()
        );
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    fn signal(&self, sig: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        rustix::process::kill_process(pid, sig).unwrap();
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn ready_then_sigterm_exits_zero_quickly() {
    let mut d = Daemon::start();
    let got = d.wait_notify("READY=1", Duration::from_secs(10));
    assert!(
        got.contains("STATUS=1 jobs, 0 running; next: main at"),
        "{got}"
    );
    let t = Instant::now();
    d.signal(rustix::process::Signal::TERM);
    let status = loop {
        if let Some(s) = d.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "still running 2 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0), "{}", d.log());
    assert!(d
        .wait_notify("STOPPING=1", Duration::from_secs(1))
        .contains("STOPPING=1"));
    assert!(!d.alive());
}

#[test]
fn broken_config_is_refused_and_fixed_one_picked_up() {
    let mut d = Daemon::start();
    d.wait_notify("READY=1", Duration::from_secs(10));
    // Broken: an unknown key. The daemon keeps running on the old config.
    std::fs::write(
        &d.config,
        "[storage]\ntype = \"local\"\npath = \"/x\"\nbogus = 1\n",
    )
    .unwrap();
    d.wait_log("new configuration refused", Duration::from_secs(10));
    assert!(d.log().contains("bogus"), "{}", d.log());
    assert!(d.alive(), "daemon died on a broken config:\n{}", d.log());
    // Fixed, with a new schedule: picked up and rescheduled.
    let dir = d.config.parent().unwrap().to_path_buf();
    let tmp = dir.join("new.toml");
    std::fs::write(&tmp, good_config(&dir, "45 3 * * *")).unwrap();
    std::fs::rename(&tmp, &d.config).unwrap(); // as editors and config management do
    d.wait_log("configuration reloaded", Duration::from_secs(10));
    d.wait_log("03:45", Duration::from_secs(5));
    // SIGHUP reloads too.
    let before = d.log().matches("configuration reloaded").count();
    d.signal(rustix::process::Signal::HUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while d.log().matches("configuration reloaded").count() == before {
        assert!(
            Instant::now() < deadline,
            "SIGHUP did not reload:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        d.log().contains("reason=\"SIGHUP\"") || d.log().contains("reason=SIGHUP"),
        "{}",
        d.log()
    );
    assert!(d.alive());
}

#[test]
fn invalid_config_at_start_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "[storage]\ntype = \"nope\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_opsagent"))
        .args(["--config", config.to_str().unwrap(), "run"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.toml:2:8"));
}

/// The daemon booted in-process (`daemon::run` with a control channel, as `cli/run.rs` drives
/// it from signals): a media job whose last run is ten minutes old has missed a slot of
/// `* * * * *`, so it is caught up soon after start; `Control::Stop` then ends the daemon.
#[test]
fn in_process_daemon_catches_up_a_missed_run_and_stops_when_told() {
    use opsagent::catalog::{Catalog, RunStatus};
    use opsagent::daemon::{self, Control};
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("media");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("a.txt"), b"hello").unwrap();
    let path = dir.path().join("opsagent.toml");
    std::fs::write(
        &path,
        format!(
            "[agent]\nstate_dir = \"{0}/state\"\ntimezone = \"UTC\"\nshutdown_grace = \"5s\"\n\
             [storage]\ntype = \"local\"\npath = \"{0}/backups\"\n\
             [[media]]\nname = \"pics\"\npaths = [\"{1}\"]\nschedule = \"* * * * *\"\nkeep = {{ last = 3 }}\n",
            dir.path().display(),
            src.display()
        ),
    )
    .unwrap();
    let config = opsagent::config::load(&path).unwrap();
    let catalog = Catalog::open(&config.catalog_path()).unwrap();
    let ten_min_ago = chrono::Utc::now() - chrono::Duration::minutes(10);
    let id = catalog
        .start_run("pics", "media", "cli", ten_min_ago)
        .unwrap();
    catalog
        .finish_run(id, RunStatus::Success, 0, None, ten_min_ago)
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let daemon = rt.spawn(daemon::run(path.clone(), config, rx));
    let t0 = Instant::now();
    let caught_up = loop {
        let last = catalog.last_run_of("pics", "media").unwrap().unwrap();
        if last.id != id && last.status != RunStatus::Running {
            break last;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no catch-up run within a minute: {last:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(caught_up.trigger, "catch-up", "{caught_up:?}");
    assert_eq!(caught_up.status, RunStatus::Success, "{caught_up:?}");
    assert_eq!(catalog.snapshots(Some("pics")).unwrap().len(), 1);
    rt.block_on(tx.send(Control::Stop)).unwrap();
    let stopped = rt
        .block_on(async { tokio::time::timeout(Duration::from_secs(10), daemon).await })
        .expect("the daemon stops within its grace when told to")
        .unwrap();
    assert!(stopped.is_ok(), "{stopped:?}");
}
