//! `[[alerts.webhook]]` against a local HTTP capture server: a CRIT TCP check is POSTed FIRING
//! (json) and RESOLVED once the port opens; slack and ntfy bodies for the same group; a
//! receiver down then up gets the notification exactly once, also across a killed daemon, while
//! a dead SMTP relay holds up nothing; a 400 is not retried and `status` shows it refused; a 429
//! waits as long as its `Retry-After` asks. The URL's token never appears in the daemon's log,
//! in `status`, in `check-config` or in `notify-test`.

mod common;

use chrono::Utc;
use common::agent::{host_checks_off, opsagent, wait_for, Daemon};
use opsagent::catalog::{Catalog, EventRow};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const TOKEN: &str = "s3cr3t-token";

/// One request the capture server received.
#[derive(Debug, Clone)]
struct Hit {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Hit {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }
}

/// An HTTP server recording every request it answers. `answer` is the status it gives (200,
/// 500, 400); 0 means down: connections are dropped unread and nothing is recorded.
struct Capture {
    port: u16,
    hits: Arc<Mutex<Vec<Hit>>>,
    answer: Arc<AtomicU16>,
}

fn read_request(s: &std::net::TcpStream) -> Option<Hit> {
    let mut r = BufReader::new(s.try_clone().ok()?);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
        if let Some((n, v)) = h.trim_end().split_once(':') {
            headers.push((n.trim().to_string(), v.trim().to_string()));
        }
    }
    let len = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0usize);
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).ok()?;
    Some(Hit {
        method,
        path,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

impl Capture {
    fn start() -> Capture {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let hits = Arc::new(Mutex::new(Vec::new()));
        let answer = Arc::new(AtomicU16::new(200));
        let (h, a) = (hits.clone(), answer.clone());
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let code = a.load(Ordering::SeqCst);
                if code == 0 {
                    drop(s);
                    continue;
                }
                let h = h.clone();
                std::thread::spawn(move || {
                    let Some(hit) = read_request(&s) else { return };
                    // A receiver that echoes the request path (the token) in its error.
                    let body = format!("{{\"error\":\"no_text\",\"path\":\"{}\"}}", hit.path);
                    h.lock().unwrap().push(hit);
                    let mut s = s;
                    // A rate-limiting receiver says how long to wait.
                    let retry = if code == 429 {
                        "Retry-After: 30\r\n"
                    } else {
                        ""
                    };
                    let _ = s.write_all(
                        format!("HTTP/1.1 {code} X\r\n{retry}Content-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
                            .as_bytes(),
                    );
                });
            }
        });
        Capture { port, hits, answer }
    }

    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    fn set(&self, code: u16) {
        self.answer.store(code, Ordering::SeqCst);
    }
}

fn head(dir: &Path, extra: &str) -> String {
    format!(
        "[agent]\nhostname = \"web-01\"\nstate_dir = \"{d}/state\"\ntimezone = \"UTC\"\nshutdown_grace = \"2s\"\n\
         [storage]\ntype = \"local\"\npath = \"{d}/backups\"\n{off}{extra}\
         [alerts]\ngroup_wait = \"1s\"\ngroup_interval = \"1s\"\nrepeat_interval = \"1h\"\n",
        d = dir.display(),
        off = host_checks_off(),
    )
}

fn webhook(name: &str, port: u16, format: &str) -> String {
    format!(
        "[[alerts.webhook]]\nname = \"{name}\"\nurl = \"http://127.0.0.1:{port}/{name}/{TOKEN}\"\nformat = \"{format}\"\ntimeout = \"2s\"\n"
    )
}

fn event(cat: &Catalog, check: &str, from: &str, to: &str) {
    let now = Utc::now();
    let e = EventRow {
        id: 0,
        check: check.into(),
        from_state: from.into(),
        to_state: to.into(),
        at: now,
        since: now,
        value: None,
        threshold: None,
        detail: "127.0.0.1:9 refused the connection".into(),
        delivered: false,
    };
    cat.save_check_round(&[], &[e]).unwrap();
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn a_crit_tcp_check_is_posted_firing_then_resolved_in_json() {
    let cap = Capture::start();
    let dir = tempfile::tempdir().unwrap();
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let cfg = dir.path().join("opsagent.toml");
    let checks = format!(
        "[checks]\ninterval = \"1s\"\n[[checks.tcp]]\nname = \"db\"\naddress = \"127.0.0.1:{port}\"\n"
    );
    std::fs::write(
        &cfg,
        head(dir.path(), &checks) + &webhook("ops", cap.port, "json"),
    )
    .unwrap();
    let log = dir.path().join("daemon.log");
    let d = Daemon::start(&cfg, &log);
    let has = |status: &str| cap.hits().iter().any(|h| h.json()["status"] == status);
    wait_for("a FIRING webhook", Duration::from_secs(30), || {
        has("firing")
    });
    let h = cap.hits()[0].clone();
    assert_eq!(
        (h.method.as_str(), h.path.as_str()),
        ("POST", "/ops/s3cr3t-token")
    );
    assert_eq!(h.header("content-type"), Some("application/json"));
    assert!(
        h.header("x-opsagent-id")
            .is_some_and(|id| id.ends_with("/webhook:ops")),
        "{h:?}"
    );
    let v = h.json();
    assert_eq!(v["host"], "web-01");
    assert!(
        v["title"]
            .as_str()
            .unwrap()
            .starts_with("[opsagent] FIRING CRIT"),
        "{v}"
    );
    let a = &v["alerts"][0];
    assert!(a["name"].as_str().unwrap().contains("db"), "{v}");
    assert_eq!(
        (&a["state"], &a["severity"]),
        (&serde_json::json!("firing"), &serde_json::json!("CRIT"))
    );
    assert!(a["since"].as_str().unwrap().ends_with('Z'), "{v}");
    assert!(!a["detail"].as_str().unwrap().is_empty(), "{v}");
    assert!(a.get("value").is_some(), "{v}");

    // The port opens: RESOLVED, in one more request.
    let _open = TcpListener::bind(("127.0.0.1", port)).unwrap();
    wait_for("a RESOLVED webhook", Duration::from_secs(30), || {
        has("resolved")
    });
    let r = cap
        .hits()
        .into_iter()
        .find(|h| h.json()["status"] == "resolved")
        .unwrap()
        .json();
    assert_eq!(r["alerts"][0]["state"], "resolved");
    assert_eq!(cap.hits().len(), 2, "{:?}", cap.hits());
    let status = text(&opsagent(&cfg, &["status"]));
    let out = text(&opsagent(&cfg, &["notify-test"]));
    assert!(out.contains("ok: webhook ops answered 200"), "{out}");
    assert!(out.contains("http://127.0.0.1/…"), "{out}");
    let log = d.log();
    for (what, t) in [
        ("the log", &log),
        ("status", &status),
        ("notify-test", &out),
    ] {
        assert!(!t.contains(TOKEN), "the token in {what}:\n{t}");
    }
    assert!(log.contains("alert webhook sent"), "{log}");
}

#[test]
fn slack_and_ntfy_get_the_same_group_once_each() {
    let cap = Capture::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("opsagent.toml");
    std::fs::write(
        &cfg,
        head(dir.path(), "")
            + &webhook("chat", cap.port, "slack")
            + &webhook("phone", cap.port, "ntfy"),
    )
    .unwrap();
    let cat = Catalog::open(&dir.path().join("state/catalog.sqlite")).unwrap();
    let _d = Daemon::start(&cfg, &dir.path().join("daemon.log"));
    event(&cat, "tcp:api", "OK", "CRIT");
    event(&cat, "http:shop", "OK", "WARN");
    wait_for("both webhooks", Duration::from_secs(20), || {
        cap.hits().len() >= 2
    });
    std::thread::sleep(Duration::from_secs(2));
    let hits = cap.hits();
    assert_eq!(
        hits.len(),
        2,
        "one request per channel for the group: {hits:?}"
    );
    let slack = hits.iter().find(|h| h.path.starts_with("/chat/")).unwrap();
    let v = slack.json();
    let t = v["text"].as_str().unwrap();
    assert!(
        t.starts_with("*[opsagent] FIRING 2 alerts on web-01"),
        "{t}"
    );
    assert!(
        t.contains("FIRING CRIT tcp api") && t.contains("FIRING WARN http shop"),
        "{t}"
    );
    let ntfy = hits.iter().find(|h| h.path.starts_with("/phone/")).unwrap();
    assert!(
        ntfy.header("content-type")
            .unwrap()
            .starts_with("text/plain"),
        "{ntfy:?}"
    );
    assert_eq!(ntfy.header("priority"), Some("5"));
    assert!(
        ntfy.header("title")
            .unwrap()
            .starts_with("[opsagent] FIRING 2 alerts on web-01"),
        "{ntfy:?}"
    );
    assert!(
        ntfy.body.starts_with("FIRING CRIT tcp api\n")
            || ntfy.body.contains("\nFIRING CRIT tcp api\n"),
        "{ntfy:?}"
    );
    assert!(
        ntfy.body.contains("127.0.0.1:9 refused the connection"),
        "{ntfy:?}"
    );
}

#[test]
fn a_receiver_down_then_up_gets_it_once_across_a_killed_daemon_and_a_dead_smtp_relay() {
    let cap = Capture::start();
    cap.set(0);
    let dir = tempfile::tempdir().unwrap();
    let dead = TcpListener::bind("127.0.0.1:0").unwrap();
    let smtp = dead.local_addr().unwrap().port();
    drop(dead);
    let cfg = dir.path().join("opsagent.toml");
    std::fs::write(
        &cfg,
        head(dir.path(), "")
            + &webhook("ops", cap.port, "json")
            + &format!(
                "[alerts.email]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {smtp}\ntls = \"none\"\n\
                 from = \"opsagent@web-01.example.com\"\nto = [\"oncall@example.com\"]\ntimeout = \"2s\"\n"
            ),
    )
    .unwrap();
    let log = dir.path().join("daemon.log");
    let cat = Catalog::open(&dir.path().join("state/catalog.sqlite")).unwrap();
    let hook_row = || {
        cat.outbox(None)
            .unwrap()
            .into_iter()
            .find(|r| r.channel == "webhook:ops")
    };
    let d = Daemon::start(&cfg, &log);
    event(&cat, "tcp:api", "OK", "CRIT");
    wait_for("a failed webhook attempt", Duration::from_secs(20), || {
        hook_row().is_some_and(|r| r.attempts >= 1)
    });
    let err = hook_row().unwrap().last_error.unwrap();
    assert!(err.contains("webhook ops (http://127.0.0.1/…)"), "{err}");
    drop(d); // SIGKILL: no goodbye
    assert!(hook_row().is_some(), "the notification survives the kill");

    // Back, but failing (500): retried, not given up.
    cap.set(500);
    let d = Daemon::start(&cfg, &log);
    wait_for("two answered 500s", Duration::from_secs(20), || {
        cap.hits().len() >= 2
    });
    let row = hook_row().unwrap();
    assert!(
        !row.given_up()
            && row
                .last_error
                .as_deref()
                .unwrap_or("")
                .contains("answered 500"),
        "{row:?}"
    );
    cap.set(200);
    wait_for("the webhook delivered", Duration::from_secs(20), || {
        hook_row().is_none()
    });
    std::thread::sleep(Duration::from_secs(2));
    let ok: Vec<Hit> = cap
        .hits()
        .into_iter()
        .filter(|h| h.json()["status"] == "firing")
        .collect();
    assert_eq!(
        ok.len(),
        3,
        "two 500s, then one 200 and no more: {:?}",
        cap.hits()
    );
    let ids: Vec<&str> = ok
        .iter()
        .map(|h| h.header("x-opsagent-id").unwrap())
        .collect();
    assert!(
        ids.iter().all(|i| *i == ids[0]),
        "one notification, one id: {ids:?}"
    );
    assert!(
        cat.outbox(None)
            .unwrap()
            .iter()
            .any(|r| r.channel == "email"),
        "the mail still waits for its relay"
    );
    let text = d.log();
    assert!(text.contains("alert webhook not delivered yet"), "{text}");
    assert!(!text.contains(TOKEN), "{text}");
}

#[test]
fn a_400_is_refused_for_good_and_shown_by_status() {
    let cap = Capture::start();
    cap.set(400);
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("opsagent.toml");
    let url_file = dir.path().join("hook-url");
    std::fs::write(
        &url_file,
        format!("http://127.0.0.1:{}/ops/{TOKEN}\n", cap.port),
    )
    .unwrap();
    std::fs::set_permissions(
        &url_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    std::fs::write(
        &cfg,
        head(dir.path(), "")
            + &format!(
                "[[alerts.webhook]]\nname = \"ops\"\nurl_file = \"{}\"\n",
                url_file.display()
            ),
    )
    .unwrap();
    let cat = Catalog::open(&dir.path().join("state/catalog.sqlite")).unwrap();
    let d = Daemon::start(&cfg, &dir.path().join("daemon.log"));
    event(&cat, "tcp:api", "OK", "CRIT");
    wait_for("a refusal", Duration::from_secs(20), || {
        cat.outbox(None).unwrap().iter().any(|r| r.given_up())
    });
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        cap.hits().len(),
        1,
        "a 400 is not retried: {:?}",
        cap.hits()
    );
    let out = opsagent(&cfg, &["status"]);
    let status = text(&out);
    assert_eq!(out.status.code(), Some(1), "{status}");
    assert!(
        status.contains("webhook ops: notification REFUSED"),
        "{status}"
    );
    assert!(status.contains("answered 400"), "{status}");
    let json = text(&opsagent(&cfg, &["status", "--json"]));
    assert!(json.contains("\"channel\": \"webhook:ops\""), "{json}");
    let nt = opsagent(&cfg, &["notify-test"]);
    let nt_text = text(&nt);
    assert_eq!(nt.status.code(), Some(1), "{nt_text}");
    assert!(
        nt_text.contains("webhook ops: FAILED") && nt_text.contains("answered 400"),
        "{nt_text}"
    );
    let log = d.log();
    assert!(log.contains("refused for good"), "{log}");
    for (what, t) in [
        ("the log", &log),
        ("status", &status),
        ("status --json", &json),
        ("notify-test", &nt_text),
    ] {
        assert!(!t.contains(TOKEN), "the token in {what}:\n{t}");
    }
}

#[test]
fn a_429_is_retried_after_the_wait_the_receiver_asked_for() {
    let cap = Capture::start();
    cap.set(429);
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("opsagent.toml");
    std::fs::write(
        &cfg,
        head(dir.path(), "") + &webhook("ops", cap.port, "json"),
    )
    .unwrap();
    let cat = Catalog::open(&dir.path().join("state/catalog.sqlite")).unwrap();
    let _d = Daemon::start(&cfg, &dir.path().join("daemon.log"));
    event(&cat, "tcp:api", "OK", "CRIT");
    let failed = || {
        cat.outbox(None)
            .unwrap()
            .into_iter()
            .find(|r| r.attempts > 0)
    };
    wait_for("a failed attempt", Duration::from_secs(20), || {
        failed().is_some()
    });
    let row = failed().unwrap();
    // `Retry-After: 30`, not the first backoff step (1 s).
    let wait = row.next_attempt - Utc::now();
    assert!(wait > chrono::Duration::seconds(20), "{row:?}");
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(cap.hits().len(), 1, "retried early: {:?}", cap.hits());
    let out = opsagent(&cfg, &["check-config"]);
    let listed = text(&out);
    assert!(
        listed.contains("webhook   ops (json) to http://127.0.0.1/…"),
        "{listed}"
    );
    assert!(!listed.contains(TOKEN), "{listed}");
}

#[test]
fn bad_webhook_settings_are_refused_at_their_position_without_the_url() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(
        &cfg,
        head(dir.path(), "")
            + &format!("[[alerts.webhook]]\nname = \"ops\"\nurl = \"ftp://x/{TOKEN}\"\nformat = \"teams\"\n"),
    )
    .unwrap();
    let out = opsagent(&cfg, &["check-config"]);
    let err = text(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let lines = head(dir.path(), "").lines().count();
    let at = |line: usize| format!("{}:{}:", cfg.display(), lines + line);
    assert!(
        err.contains(&at(3))
            && err.contains("alerts.webhook[0].url")
            && err.contains("not an http(s) URL"),
        "{err}"
    );
    assert!(
        err.contains(&at(4))
            && err.contains("unknown webhook format `teams`")
            && err.contains("hint:"),
        "{err}"
    );
    assert!(!err.contains(TOKEN), "{err}");
}

#[test]
fn the_commented_webhook_block_of_the_example_config_loads() {
    let example = include_str!("../config/opsagent.example.toml");
    let start = example.find("# [[alerts.webhook]]\n").unwrap();
    let end = start + example[start..].find("\n\n").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("hook");
    std::fs::write(&secret, format!("https://chat.example.com/hooks/{TOKEN}\n")).unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let block: String = example[start..end]
        .lines()
        .map(|l| l.strip_prefix("# ").unwrap_or(l))
        .map(|l| {
            l.replace(
                "/etc/opsagent/secrets/webhook-chat",
                secret.to_str().unwrap(),
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    let text = format!(
        "[agent]\nstate_dir = \"{0}/state\"\n[storage]\ntype = \"local\"\npath = \"{0}/b\"\n{block}\n",
        dir.path().display()
    );
    let cfg = opsagent::config::parse(&dir.path().join("x.toml"), &text)
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
    let hooks = &cfg.alerts.webhooks;
    assert_eq!(hooks.len(), 2);
    assert_eq!(hooks[0].url.describe(), "https://chat.example.com/…");
    assert!(!format!("{hooks:?}").contains(TOKEN));
}
