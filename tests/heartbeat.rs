//! `[heartbeat]` and a job's `ping_url` against a local HTTP capture server: pings while
//! healthy, `/start` and success around a job's run, `/fail` naming a CRIT check within a few
//! rounds; with the capture server refusing, the daemon keeps running and `status` shows the
//! failing pings; a stopped daemon stops pinging (that is the point of a dead-man's switch).

mod common;

use common::agent::{host_checks_off, opsagent, wait_for};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request the capture server received.
#[derive(Debug, Clone)]
struct Hit {
    method: String,
    path: String,
    body: String,
}

/// An HTTP server recording every request; while `down`, it drops connections unanswered.
struct Capture {
    port: u16,
    hits: Arc<Mutex<Vec<Hit>>>,
    down: Arc<AtomicBool>,
}

impl Capture {
    fn start() -> Capture {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let hits = Arc::new(Mutex::new(Vec::new()));
        let down = Arc::new(AtomicBool::new(false));
        let (h, d) = (hits.clone(), down.clone());
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                if d.load(Ordering::SeqCst) {
                    drop(s);
                    continue;
                }
                let h = h.clone();
                std::thread::spawn(move || {
                    let mut r = BufReader::new(s.try_clone().unwrap());
                    let mut line = String::new();
                    if r.read_line(&mut line).is_err() {
                        return;
                    }
                    let mut parts = line.split_whitespace();
                    let (method, path) = (
                        parts.next().unwrap_or("").to_string(),
                        parts.next().unwrap_or("").to_string(),
                    );
                    let mut len = 0usize;
                    loop {
                        let mut header = String::new();
                        if r.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                            break;
                        }
                        if let Some(v) = header.to_ascii_lowercase().strip_prefix("content-length:")
                        {
                            len = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0u8; len];
                    let _ = r.read_exact(&mut body);
                    h.lock().unwrap().push(Hit {
                        method,
                        path,
                        body: String::from_utf8_lossy(&body).into_owned(),
                    });
                    let mut s = s;
                    let _ = s.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK",
                    );
                });
            }
        });
        Capture { port, hits, down }
    }

    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    fn count(&self, f: impl Fn(&Hit) -> bool) -> usize {
        self.hits().iter().filter(|h| f(h)).count()
    }
}

#[test]
fn heartbeat_pings_while_healthy_fails_on_crit_and_stops_with_the_daemon() {
    let cap = Capture::start();
    let dir = tempfile::tempdir().unwrap();
    let db = TcpListener::bind("127.0.0.1:0").unwrap();
    let src = dir.path().join("media");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("a.txt"), b"hello").unwrap();
    let cfg = dir.path().join("o.toml");
    std::fs::write(
        &cfg,
        format!(
            "[agent]\nstate_dir = \"{d}/state\"\ntimezone = \"UTC\"\n[storage]\ntype = \"local\"\npath = \"{d}/b\"\n\
             [checks]\ninterval = \"1s\"\n{off}\
             [[checks.tcp]]\nname = \"db\"\naddress = \"127.0.0.1:{db}\"\n\
             [heartbeat]\nurl = \"http://127.0.0.1:{p}/ping/s3cr3t-token\"\ninterval = \"1s\"\n\
             [[media]]\nname = \"pics\"\npaths = [\"{src}\"]\nschedule = \"@daily\"\n\
             ping_url = \"http://127.0.0.1:{p}/job/t0k\"\n",
            d = dir.path().display(),
            off = host_checks_off(),
            db = db.local_addr().unwrap().port(),
            p = cap.port,
            src = src.display(),
        ),
    )
    .unwrap();
    let mut daemon = common::spawn({
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_opsagent"));
        c.arg("--config")
            .arg(&cfg)
            .arg("run")
            .env("OPSAGENT_LOG", "info")
            .stderr(Stdio::piped());
        c
    })
    .unwrap();
    let is_ok_ping = |h: &Hit| h.method == "GET" && h.path == "/ping/s3cr3t-token";
    wait_for("an ok ping", Duration::from_secs(20), || {
        cap.count(is_ok_ping) >= 2
    });

    // A job's run: /start, then success.
    let out = opsagent(&cfg, &["backup", "pics"]);
    assert!(out.status.success(), "{}", common::output_text(&out));
    let job: Vec<String> = cap
        .hits()
        .into_iter()
        .filter(|h| h.path.starts_with("/job/"))
        .map(|h| format!("{} {}", h.method, h.path))
        .collect();
    assert_eq!(
        job,
        ["GET /job/t0k/start", "GET /job/t0k"],
        "{:?}",
        cap.hits()
    );

    // The watched service goes away: the next pings are /fail naming it.
    drop(db);
    wait_for("a /fail ping", Duration::from_secs(20), || {
        cap.count(|h| h.path == "/ping/s3cr3t-token/fail") > 0
    });
    let fail = cap
        .hits()
        .into_iter()
        .find(|h| h.path == "/ping/s3cr3t-token/fail")
        .unwrap();
    assert_eq!(fail.method, "POST");
    assert!(fail.body.contains("CRIT db"), "{fail:?}");

    // The monitor is unreachable: the daemon goes on, `status` says the pings fail.
    cap.down.store(true, Ordering::SeqCst);
    wait_for(
        "status showing failing pings",
        Duration::from_secs(20),
        || {
            let out = opsagent(&cfg, &["status"]);
            String::from_utf8_lossy(&out.stdout).contains("ping http://127.0.0.1/…: FAILING")
        },
    );
    assert!(daemon.try_wait().unwrap().is_none(), "the daemon died");
    cap.down.store(false, Ordering::SeqCst);
    let before = cap.hits().len();
    wait_for(
        "pings getting through again",
        Duration::from_secs(30),
        || cap.hits().len() > before,
    );

    // A stopped daemon stops pinging.
    let pid = daemon.id() as i32;
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    std::thread::sleep(Duration::from_millis(500));
    let frozen = cap.hits().len();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        cap.hits().len(),
        frozen,
        "pings while the daemon was stopped"
    );
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let _ = daemon.kill();
    let out = daemon.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        !log.contains("s3cr3t-token"),
        "the ping URL's token was logged:\n{log}"
    );
    assert!(
        log.contains("heartbeat: ping to http://127.0.0.1/… failed"),
        "{log}"
    );
}

#[test]
fn the_commented_heartbeat_block_loads_and_bad_urls_are_named_without_the_token() {
    let example = include_str!("../config/opsagent.example.toml");
    let start = example.find("# [heartbeat]\n").unwrap();
    let end = start + example[start..].find("\n\n").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let secret = common::write_secret(dir.path(), "hb", "https://hc-ping.com/0b1c-uuid");
    let block: String = example[start..end]
        .lines()
        .map(|l| l.strip_prefix("# ").unwrap_or(l))
        .map(|l| l.replace("/etc/opsagent/secrets/heartbeat", secret.to_str().unwrap()))
        .collect::<Vec<_>>()
        .join("\n");
    let head = format!(
        "[agent]\nstate_dir = \"{0}/state\"\n[storage]\ntype = \"local\"\npath = \"{0}/b\"\n",
        dir.path().display()
    );
    let cfg = opsagent::config::parse(&dir.path().join("x.toml"), &format!("{head}{block}\n"))
        .unwrap_or_else(|e| panic!("{e}"));
    let hb = cfg.heartbeat.unwrap();
    assert_eq!(hb.interval, Duration::from_secs(60));
    assert_eq!(hb.url.describe(), "https://hc-ping.com/…");

    let bad = format!(
        "{head}[heartbeat]\nurl = \"ftp://x/s3cr3t\"\n[[media]]\nname = \"m\"\npaths = [\"/srv\"]\nschedule = \"@daily\"\nping_url = \"s3cr3t\"\n"
    );
    let err = opsagent::config::parse(&dir.path().join("x.toml"), &bad)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("x.toml:7:") && err.contains("heartbeat.url"),
        "{err}"
    );
    assert!(err.contains("media[0].ping_url"), "{err}");
    assert!(err.contains("not an http(s) URL"), "{err}");
    assert!(!err.contains("s3cr3t"), "{err}");
}
