//! The watcher never goes silent: a log file its owner (the web user) replaces with a symlink
//! to `/dev/zero`, a FIFO, a 1 GiB line without a newline, or rotates every second. The daemon
//! runs as a real process; its memory stays bounded, the other checks keep their interval, the
//! log check says what is wrong (UNKNOWN) and recovers when the file is sane again.

mod common;

use common::agent::host_checks_off;
use opsagent::catalog::{Catalog, CheckStateRow};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

struct Agent {
    child: Child,
    catalog: Catalog,
    peak_rss_kib: u64,
}

impl Agent {
    fn start(dir: &Path, log: &Path, tcp_port: u16) -> Agent {
        let cfg = dir.join("o.toml");
        std::fs::write(
            &cfg,
            format!(
                "[agent]\nstate_dir = \"{0}/state\"\n[storage]\ntype = \"local\"\npath = \"{0}/b\"\n\
                 [checks]\ninterval = \"1s\"\ntimeout = \"1s\"\n{1}\
                 [[checks.tcp]]\nname = \"up\"\naddress = \"127.0.0.1:{tcp_port}\"\n\
                 [[checks.log]]\nname = \"app\"\npath = \"{2}\"\npattern = \"ERROR\"\n",
                dir.display(),
                host_checks_off(),
                log.display()
            ),
        )
        .unwrap();
        let child = common::spawn({
            let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_opsagent"));
            c.arg("--config").arg(&cfg).arg("run").stderr(Stdio::null());
            c
        })
        .unwrap();
        let catalog_path = dir.join("state/catalog.sqlite");
        let t0 = Instant::now();
        while !catalog_path.exists() {
            assert!(t0.elapsed() < Duration::from_secs(10), "no catalog");
            std::thread::sleep(Duration::from_millis(50));
        }
        Agent {
            child,
            catalog: Catalog::open(&catalog_path).unwrap(),
            peak_rss_kib: 0,
        }
    }

    fn state(&self, check: &str) -> Option<CheckStateRow> {
        self.catalog
            .check_states()
            .unwrap()
            .into_iter()
            .find(|c| c.check == check)
    }

    fn sample_rss(&mut self) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        self.peak_rss_kib = self.peak_rss_kib.max(kib);
    }

    /// Waits until the log check's state satisfies `ok`, checking meanwhile that the TCP check
    /// keeps being sampled every round (no gap over 3 s) and sampling the daemon's memory.
    fn wait_for_log(&mut self, what: &str, ok: impl Fn(&CheckStateRow) -> bool) -> CheckStateRow {
        self.wait_for_log_within(what, Duration::from_secs(20), ok)
    }

    fn wait_for_log_within(
        &mut self,
        what: &str,
        within: Duration,
        ok: impl Fn(&CheckStateRow) -> bool,
    ) -> CheckStateRow {
        let t0 = Instant::now();
        let mut tcp_last = self.state("up").map(|s| s.updated_at);
        let mut tcp_seen = Instant::now();
        loop {
            self.sample_rss();
            let tcp = self.state("up").map(|s| s.updated_at);
            if tcp != tcp_last {
                tcp_last = tcp;
                tcp_seen = Instant::now();
            }
            assert!(
                tcp_seen.elapsed() < Duration::from_secs(3),
                "the TCP check stopped while waiting for the log check to be {what}"
            );
            if let Some(s) = self.state("app").filter(|s| ok(s)) {
                return s;
            }
            assert!(
                t0.elapsed() < within,
                "the log check never became {what}: {:?}",
                self.state("app")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Puts `make`'s result at `log` atomically (built beside it, then renamed over it).
fn replace(log: &Path, make: impl FnOnce(&Path)) {
    let tmp: PathBuf = log.with_extension("new");
    let _ = std::fs::remove_file(&tmp);
    make(&tmp);
    std::fs::rename(&tmp, log).unwrap();
}

#[test]
fn hostile_log_files_neither_stall_nor_bloat_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let up = TcpListener::bind("127.0.0.1:0").unwrap();
    let log = dir.path().join("app.log");
    std::fs::write(&log, b"started\n").unwrap();
    let mut agent = Agent::start(dir.path(), &log, up.local_addr().unwrap().port());
    agent.wait_for_log("OK", |s| s.state == "OK");

    replace(&log, |p| {
        std::os::unix::fs::symlink("/dev/zero", p).unwrap()
    });
    let s = agent.wait_for_log("UNKNOWN for /dev/zero", |s| s.state == "UNKNOWN");
    assert!(
        s.detail.contains("is a device, not a regular file"),
        "{s:?}"
    );

    replace(&log, |p| {
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    });
    let s = agent.wait_for_log("UNKNOWN for a FIFO", |s| {
        s.state == "UNKNOWN" && s.detail.contains("a FIFO")
    });
    assert!(s.detail.contains("not a regular file"), "{s:?}");

    // A sane file again, with an error line: the check recovers and counts it.
    replace(&log, |p| std::fs::write(p, b"x ERROR one\n").unwrap());
    agent.wait_for_log("WARN on the error line", |s| s.state == "WARN");

    // 1 GiB without a newline (sparse: zero bytes), then an error line after it.
    replace(&log, |p| {
        let f = std::fs::File::create(p).unwrap();
        f.set_len(1 << 30).unwrap();
    });
    {
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        std::io::Write::write_all(&mut f, b"\nERROR after the long line\n").unwrap();
    }
    // Read 32 MiB a round: about 32 rounds, each as short as any other.
    let s = agent.wait_for_log_within("done with the long line", Duration::from_secs(90), |s| {
        s.detail.contains("longer than 64 KiB were cut")
    });
    assert_ne!(s.state, "UNKNOWN", "{s:?}");

    // Rotated every second for 5 s (a new file renamed over the old one), lines appended.
    let rotating = std::thread::spawn({
        let log = log.clone();
        move || {
            for i in 0..5 {
                replace(&log, |p| {
                    std::fs::write(p, format!("round {i} ERROR\n")).unwrap()
                });
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    });
    let t0 = Instant::now();
    while !rotating.is_finished() {
        let s = agent.wait_for_log("sampled while rotating", |_| true);
        assert_ne!(s.state, "UNKNOWN", "{s:?}");
        assert!(t0.elapsed() < Duration::from_secs(20));
    }
    rotating.join().unwrap();
    eprintln!("peak RSS of the daemon: {} KiB", agent.peak_rss_kib);
    assert!(
        agent.peak_rss_kib < 64 * 1024,
        "the daemon's RSS reached {} KiB",
        agent.peak_rss_kib
    );
    drop(up);
}
