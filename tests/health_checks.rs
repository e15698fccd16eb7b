//! Health checks against real things: TCP listeners, an HTTP and an HTTPS server (with a
//! short-lived certificate made here), a log file appended to, rotated and truncated, the
//! bench's MariaDB, real processes; the runner storing states and events with one endpoint
//! hung; config errors with positions. Service checks need systemd as PID 1, which CI does not
//! have: only the `systemctl show` parsing and the restart cap are tested (unit tests in
//! src/health/service.rs), plus the UNKNOWN state when systemctl cannot answer.

mod common;

use opsagent::catalog::Catalog;
use opsagent::health::state::Level;
use opsagent::health::{self, CheckSpec, Prober, Reading, Sample};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn parse(dir: &Path, checks: &str) -> opsagent::config::Config {
    let text = format!(
        "[agent]\nstate_dir = \"{0}/state\"\ntimezone = \"UTC\"\n[storage]\ntype = \"local\"\npath = \"{0}/b\"\n{checks}",
        dir.display()
    );
    opsagent::config::parse(&dir.join("opsagent.toml"), &text).unwrap_or_else(|e| panic!("{e}"))
}

fn specs(dir: &Path, checks: &str) -> Vec<CheckSpec> {
    parse(dir, checks).health.checks
}

fn catalog(dir: &Path) -> Arc<Catalog> {
    Arc::new(Catalog::open(&dir.join("state/catalog.sqlite")).unwrap())
}

async fn probe(spec: &CheckSpec, cat: &Arc<Catalog>) -> Sample {
    Prober::new(spec.clone(), cat).probe().await
}

fn level(s: &Sample) -> Level {
    match &s.reading {
        Reading::Judged { level, .. } => *level,
        Reading::Value { value, limits } => limits.level(*value, Level::Ok).0,
        Reading::Failed => Level::Unknown,
    }
}

/// A plain HTTP server answering every request with `status` and `body`; or never answering.
fn http_server(status: u16, body: &'static str, hang: bool) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || serve(s, status, body, hang));
        }
    });
    port
}

fn serve<S: Read + Write>(mut s: S, status: u16, body: &str, hang: bool) {
    let mut buf = [0u8; 4096];
    let mut req = Vec::new();
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => req.extend_from_slice(&buf[..n]),
        }
    }
    if hang {
        std::thread::sleep(Duration::from_secs(30));
        return;
    }
    let _ = write!(
        s,
        "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
}

#[tokio::test]
async fn tcp_open_closed() {
    let d = tempfile::tempdir().unwrap();
    let cat = catalog(d.path());
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let open = l.local_addr().unwrap().port();
    let closed = common::free_port();
    let s = specs(d.path(), &format!("[[checks.tcp]]\nname = \"up\"\naddress = \"127.0.0.1:{open}\"\n[[checks.tcp]]\nname = \"down\"\naddress = \"127.0.0.1:{closed}\"\nfor = \"1m\"\n"));
    assert_eq!(s[1].hold, Duration::from_secs(60));
    let up = probe(&s[0], &cat).await;
    assert_eq!(level(&up), Level::Ok, "{up:?}");
    let down = probe(&s[1], &cat).await;
    assert_eq!(level(&down), Level::Crit, "{down:?}");
    assert!(down.detail.contains("refused"), "{}", down.detail);
}

#[tokio::test]
async fn http_status_body_latency() {
    let d = tempfile::tempdir().unwrap();
    let cat = catalog(d.path());
    let ok = http_server(200, "all healthy", false);
    let err = http_server(503, "down", false);
    let s = specs(d.path(), &format!(
        "[[checks.http]]\nname = \"a\"\nurl = \"http://127.0.0.1:{ok}/health\"\nbody = \"healthy\"\nlatency_warn = \"2s\"\nlatency_crit = \"5s\"\n\
         [[checks.http]]\nname = \"b\"\nurl = \"http://127.0.0.1:{ok}/\"\nbody = \"missing\"\n\
         [[checks.http]]\nname = \"c\"\nurl = \"http://127.0.0.1:{err}/\"\n\
         [[checks.http]]\nname = \"d\"\nurl = \"http://127.0.0.1:{err}/\"\nstatus = 503\n"
    ));
    let want = [Level::Ok, Level::Crit, Level::Crit, Level::Ok];
    for (spec, want) in s.iter().zip(want) {
        let x = probe(spec, &cat).await;
        assert_eq!(level(&x), want, "{}: {x:?}", spec.name);
    }
    let a = probe(&s[0], &cat).await;
    assert!(
        matches!(a.reading, Reading::Value { value, .. } if value < 2000.0),
        "{a:?}"
    );
}

/// An HTTPS server with a self-signed certificate for localhost valid for `days` more days.
async fn https_server(days: i64) -> u16 {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
    let end = chrono::Utc::now() + chrono::Duration::days(days);
    use chrono::Datelike;
    params.not_after = rcgen::date_time_ymd(end.year(), end.month() as u8, end.day() as u8);
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            let acc = acceptor.clone();
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let Ok(mut tls) = acc.accept(s).await else {
                    return;
                };
                let mut buf = [0u8; 4096];
                let _ = tls.read(&mut buf).await;
                let _ = tls
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
                let _ = tls.shutdown().await;
            });
        }
    });
    port
}

#[tokio::test]
async fn tls_expiry_and_https_verification() {
    let d = tempfile::tempdir().unwrap();
    let cat = catalog(d.path());
    let soon = https_server(3).await;
    let later = https_server(60).await;
    let s = specs(d.path(), &format!(
        "[[checks.tls]]\nname = \"soon\"\naddress = \"127.0.0.1:{soon}\"\nserver_name = \"localhost\"\n\
         [[checks.tls]]\nname = \"later\"\naddress = \"127.0.0.1:{later}\"\nserver_name = \"localhost\"\nwarn_days = 90\ncrit_days = 7\n\
         [[checks.http]]\nname = \"verified\"\nurl = \"https://localhost:{soon}/\"\n\
         [[checks.http]]\nname = \"unverified\"\nurl = \"https://localhost:{soon}/\"\ntls_verify = false\n"
    ));
    let by = |n: &str| s.iter().find(|c| c.name == n).unwrap();
    let x = probe(by("soon"), &cat).await;
    let Reading::Value { value, .. } = x.reading else {
        panic!("{x:?}")
    };
    assert!((1.5..=4.0).contains(&value), "{value} days: {}", x.detail);
    assert_eq!(level(&x), Level::Crit);
    assert_eq!(level(&probe(by("later"), &cat).await), Level::Warn);
    let v = probe(by("verified"), &cat).await;
    assert_eq!(
        level(&v),
        Level::Crit,
        "a self-signed certificate fails verification: {v:?}"
    );
    assert!(v.detail.contains("UnknownIssuer"), "{}", v.detail);
    let u = probe(by("unverified"), &cat).await;
    assert_eq!(level(&u), Level::Ok, "{u:?}");
}

#[tokio::test]
async fn log_follows_appends_rotation_and_truncation() {
    let d = tempfile::tempdir().unwrap();
    let cat = catalog(d.path());
    let log = d.path().join("laravel.log");
    std::fs::write(&log, "old ERROR before start\n").unwrap();
    let s = specs(d.path(), &format!(
        "[[checks.log]]\nname = \"app\"\npath = \"{}\"\npattern = \"\\\\.(ERROR|CRITICAL):\"\nwindow = \"10m\"\nwarn = 2\ncrit = 5\n",
        log.display()
    ));
    let mut p = Prober::new(s[0].clone(), &cat);
    let count = |x: &Sample| match x.reading {
        Reading::Value { value, .. } => value,
        _ => panic!("{x:?}"),
    };
    assert_eq!(
        count(&p.probe().await),
        0.0,
        "lines before the start are not counted"
    );
    let append = |t: &str| {
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        f.write_all(t.as_bytes()).unwrap();
    };
    append("[2026-11-20] local.ERROR: SQLSTATE[HY000] gone away\n[2026-11-20] local.INFO: fine\npartial local.ERROR: ");
    let x = p.probe().await;
    assert_eq!(count(&x), 1.0);
    assert!(x.detail.contains("gone away"), "{}", x.detail);
    // Rotation: the rest of the old file is read, then the new one from its start.
    append("line finished\n");
    std::fs::rename(&log, d.path().join("laravel.log.1")).unwrap();
    std::fs::write(&log, "x.CRITICAL: disk\ny.ERROR: again\n").unwrap();
    let x = p.probe().await;
    assert_eq!(count(&x), 4.0, "{}", x.detail);
    assert_eq!(level(&x), Level::Warn);
    // Truncation (copytruncate): read from the start again.
    std::fs::write(&log, "").unwrap();
    append("z.ERROR: after truncate\n");
    let x = p.probe().await;
    assert_eq!(count(&x), 5.0, "{}", x.detail);
    assert_eq!(level(&x), Level::Crit);
}

#[tokio::test]
async fn rate_names_the_top_clients() {
    let d = tempfile::tempdir().unwrap();
    let cat = catalog(d.path());
    let log = d.path().join("access.log");
    std::fs::write(&log, "").unwrap();
    let s = specs(
        d.path(),
        &format!(
            "[[checks.rate]]\nname = \"spam\"\npath = \"{}\"\nwarn = 50\ncrit = 100\n",
            log.display()
        ),
    );
    let mut p = Prober::new(s[0].clone(), &cat);
    p.probe().await;
    let mut text = String::new();
    for i in 0..120 {
        let ip = if i % 10 == 0 {
            "198.51.100.4"
        } else {
            "203.0.113.9"
        };
        text.push_str(&format!(
            "{ip} - - [20/Nov/2026:03:00:00 +0000] \"GET /login HTTP/1.1\" 200 12\n"
        ));
    }
    std::fs::write(&log, text).unwrap();
    let x = p.probe().await;
    assert_eq!(level(&x), Level::Crit, "{x:?}");
    assert!(
        x.detail
            .contains("top clients: 203.0.113.9 (108), 198.51.100.4 (12)"),
        "{}",
        x.detail
    );
}

#[tokio::test]
async fn mysql_answers_and_connections() {
    let d = tempfile::tempdir().unwrap();
    let cat = catalog(d.path());
    let db = common::mariadb::MariaDb::shared();
    let s = specs(
        d.path(),
        &format!(
            "[[checks.mysql]]\nname = \"db\"\nsocket = \"{}\"\nuser = \"root\"\n\
         [[checks.mysql]]\nname = \"gone\"\nhost = \"127.0.0.1\"\nport = {}\nuser = \"root\"\n",
            db.socket().display(),
            common::free_port()
        ),
    );
    let x = probe(&s[0], &cat).await;
    let Reading::Value { value, .. } = x.reading else {
        panic!("{x:?}")
    };
    assert!(value > 0.0 && value < 80.0, "{x:?}");
    assert!(x.detail.contains("max_connections 200"), "{}", x.detail);
    let g = probe(&s[1], &cat).await;
    assert_eq!(level(&g), Level::Crit, "{g:?}");
}

#[tokio::test]
async fn process_by_name_and_pidfile() {
    let d = tempfile::tempdir().unwrap();
    let cat = catalog(d.path());
    let mut child = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    // Until exec completes the child still carries the test binary's name: wait for `sleep`.
    let comm = format!("/proc/{}/comm", child.id());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::fs::read_to_string(&comm).map_or(true, |c| c.trim() != "sleep") {
        assert!(std::time::Instant::now() < deadline, "sleep never exec'd");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let pidfile = d.path().join("sleep.pid");
    std::fs::write(&pidfile, format!("{}\n", child.id())).unwrap();
    let s = specs(
        d.path(),
        &format!(
            "[[checks.process]]\nname = \"sleep\"\n\
         [[checks.process]]\nname = \"by-pid\"\npidfile = \"{}\"\n\
         [[checks.process]]\nname = \"nothing\"\nprocess = \"no-such-process-xyz\"\n",
            pidfile.display()
        ),
    );
    assert_eq!(level(&probe(&s[0], &cat).await), Level::Ok);
    assert_eq!(level(&probe(&s[1], &cat).await), Level::Ok);
    assert_eq!(level(&probe(&s[2], &cat).await), Level::Crit);
    child.kill().unwrap();
    child.wait().unwrap();
    let x = probe(&s[1], &cat).await;
    assert_eq!(level(&x), Level::Crit, "{x:?}");
}

#[tokio::test]
async fn service_without_systemd_is_unknown_or_judged() {
    // CI has no systemd as PID 1: `systemctl show` either is missing or fails. Whatever it
    // does, the check must not hang and must say why.
    let d = tempfile::tempdir().unwrap();
    let cat = catalog(d.path());
    let s = specs(d.path(), "[[checks.service]]\nname = \"nginx\"\n");
    match &s[0].probe {
        health::ProbeSpec::Service(x) => assert_eq!(x.unit, "nginx.service"),
        other => panic!("{other:?}"),
    }
    let x = tokio::time::timeout(Duration::from_secs(10), probe(&s[0], &cat))
        .await
        .unwrap();
    assert!(!x.detail.is_empty(), "{x:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runner_stores_states_and_events_and_a_hung_endpoint_delays_nothing() {
    let d = tempfile::tempdir().unwrap();
    let cat = catalog(d.path());
    let hung = http_server(200, "", true);
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let open = l.local_addr().unwrap().port();
    let closed = common::free_port();
    let mut cfg = parse(
        d.path(),
        &format!(
            "[checks]\ninterval = \"1s\"\ntimeout = \"1s\"\n\
         [[checks.http]]\nname = \"hung\"\nurl = \"http://127.0.0.1:{hung}/\"\n\
         [[checks.tcp]]\nname = \"up\"\naddress = \"127.0.0.1:{open}\"\n\
         [[checks.tcp]]\nname = \"down\"\naddress = \"127.0.0.1:{closed}\"\n"
        ),
    )
    .health;
    cfg.host.disk = None;
    let watch = health::spawn(cfg, cat.clone());
    let t0 = std::time::Instant::now();
    let state = |name: &str| {
        cat.check_states()
            .unwrap()
            .into_iter()
            .find(|r| r.check == name)
    };
    while state("up").is_none() || state("down").is_none() {
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "tcp checks waited for the hung one"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        t0.elapsed() < Duration::from_millis(900),
        "{:?}",
        t0.elapsed()
    );
    while state("hung").is_none() {
        assert!(t0.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(watch);
    assert_eq!(state("up").unwrap().state, "OK");
    assert_eq!(state("down").unwrap().state, "CRIT");
    let hung = state("hung").unwrap();
    assert!(hung.state == "CRIT" || hung.state == "UNKNOWN", "{hung:?}");
    assert!(hung.detail.contains("timed out"), "{hung:?}");
    let events = cat.events(true, 100).unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.check == "down" && e.from_state == "OK" && e.to_state == "CRIT"),
        "{events:?}"
    );
    assert!(
        state("memory").is_some() && state("load").is_some(),
        "host checks run too"
    );
}

#[test]
fn config_errors_have_positions() {
    let d = tempfile::tempdir().unwrap();
    let base = format!(
        "[storage]\ntype = \"local\"\npath = \"{}/b\"\n",
        d.path().display()
    );
    let bad = |extra: &str| -> String {
        opsagent::config::parse(&d.path().join("x.toml"), &format!("{base}{extra}"))
            .unwrap_err()
            .to_string()
    };
    let e = bad("[[checks.tcp]]\nname = \"a\"\nadress = \"x:1\"\n");
    assert!(
        e.contains("x.toml:6:1") && e.contains("did you mean `address`"),
        "{e}"
    );
    let e = bad("[[checks.log]]\nname = \"a\"\npath = \"/x\"\npattern = \"(unclosed\"\n");
    assert!(
        e.contains("x.toml:7:11") && e.contains("regular expression"),
        "{e}"
    );
    let e = bad("[checks.cpu]\nwarn = 95\ncrit = 90\n");
    assert!(
        e.contains("checks.cpu.warn") && e.contains("above crit"),
        "{e}"
    );
    let e = bad("[[checks.tcp]]\nname = \"cpu\"\naddress = \"h:1\"\n[[checks.tcp]]\nname = \"x\"\naddress = \"nope\"\n");
    assert!(
        e.contains("host check") && e.contains("not host:port") && e.contains("2 errors"),
        "{e}"
    );
    // Host checks on by default, overridable and disable-able.
    let c = opsagent::config::parse(
        &d.path().join("x.toml"),
        &format!("{base}[checks.swap]\nenabled = false\n[checks.cpu]\ncrit = 95\nfor = \"1m\"\n"),
    )
    .unwrap();
    assert!(c.health.host.swap.is_none() && c.health.host.memory.is_some());
    let cpu = c.health.host.cpu.unwrap();
    assert_eq!(
        (cpu.limits.warn, cpu.limits.crit, cpu.hold),
        (Some(80.0), Some(95.0), Duration::from_secs(60))
    );
}

#[test]
fn example_config_checks_section_is_valid() {
    // The commented [checks] block of config/opsagent.example.toml, uncommented, must load.
    let example = include_str!("../config/opsagent.example.toml");
    let block: String = example[example.find("# [checks]").unwrap()..]
        .lines()
        .map(|l| l.strip_prefix("# ").unwrap_or(l.trim_start_matches('#')))
        .map(|l| format!("{l}\n"))
        .collect();
    let d = tempfile::tempdir().unwrap();
    let text = format!(
        "[agent]\nstate_dir = \"{0}/s\"\n[storage]\ntype = \"local\"\npath = \"{0}/b\"\n[[mysql]]\nname = \"main\"\ndatabases = [\"*\"]\nschedule = \"@daily\"\n{block}",
        d.path().display()
    );
    let c = opsagent::config::parse(&d.path().join("x.toml"), &text)
        .unwrap_or_else(|e| panic!("{e}\n{block}"));
    let kinds: Vec<&str> = c.health.checks.iter().map(|s| s.probe.kind()).collect();
    assert_eq!(
        kinds,
        [
            "tcp", "http", "tls", "service", "process", "mysql", "log", "rate", "ping", "peer",
            "backup"
        ]
    );
    let gateway = c.health.gateway.as_ref().expect("the gateway ping is on");
    assert_eq!(
        (gateway.name.as_str(), gateway.hold),
        ("gateway", Duration::from_secs(120))
    );
    let backup = c.health.checks.last().unwrap();
    assert_eq!(backup.name, "backup:main");
    match &backup.probe {
        health::ProbeSpec::Backup(b) => assert_eq!(b.period, Duration::from_secs(86_400)),
        other => panic!("{other:?}"),
    }
}

/// An HTTP server that sends `prefix`, then filler forever (no length, never ends).
fn endless_server(prefix: &'static [u8]) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n");
                let _ = s.write_all(prefix);
                let filler = [b'x'; 64 * 1024];
                while s.write_all(&filler).is_ok() {}
            });
        }
    });
    port
}

/// An endpoint that never stops sending: the body is read up to its limit, not to the end
/// (that aborted the daemon), and the check is judged on what was read, well before its timeout.
#[tokio::test]
async fn http_body_match_reads_a_bounded_prefix_of_an_endless_body() {
    let d = tempfile::tempdir().unwrap();
    let cat = catalog(d.path());
    let found = endless_server(b"status: healthy\n");
    let missing = endless_server(b"status: degraded\n");
    let s = specs(d.path(), &format!(
        "[[checks.http]]\nname = \"a\"\nurl = \"http://127.0.0.1:{found}/\"\nbody = \"healthy\"\ntimeout = \"20s\"\n\
         [[checks.http]]\nname = \"b\"\nurl = \"http://127.0.0.1:{missing}/\"\nbody = \"healthy\"\ntimeout = \"20s\"\n"
    ));
    let t0 = std::time::Instant::now();
    let a = probe(&s[0], &cat).await;
    assert_eq!(level(&a), Level::Ok, "{a:?}");
    let b = probe(&s[1], &cat).await;
    assert_eq!(level(&b), Level::Crit, "{b:?}");
    assert!(
        b.detail
            .contains("without \"healthy\" in the body in its first 1024 KiB"),
        "{b:?}"
    );
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "judged on the first MiB, not at the timeout: {:?}",
        t0.elapsed()
    );
}
