//! SMTP servers that misbehave, scripted with aiosmtpd (`tests/support/smtp_capture.py
//! --fault`): one recipient refused (the others still get the mail, the refused one is shown
//! by `status`), 4xx on DATA then a dropped connection mid-DATA (retried, delivered once), a
//! permanent 5xx on DATA (not retried, ERROR in the log, REFUSED in `status`, exit 1), a slow
//! server (the timeout is named), implicit TLS vs STARTTLS mixed up, credentials set for a
//! server that offers no AUTH, and one TCP connection per attempt.

mod common;

use common::agent::{wait_for, Daemon};

use common::agent::opsagent;

use chrono::Utc;
use common::smtp::{SmtpOptions, SmtpServer};
use opsagent::catalog::{Catalog, EventRow};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The daemon on `cfg`, logging into a fresh `daemon.log` beside it.
fn daemon(cfg: &Path) -> Daemon {
    let log = cfg.with_file_name("daemon.log");
    let _ = std::fs::remove_file(&log);
    Daemon::start(cfg, &log)
}

fn config(dir: &Path, port: u16, email: &str) -> PathBuf {
    let mut s = format!(
        "[agent]\nhostname = \"web-01\"\nstate_dir = \"{d}/state\"\ntimezone = \"UTC\"\nshutdown_grace = \"2s\"\n\
         [storage]\ntype = \"local\"\npath = \"{d}/backups\"\n\
         [alerts]\ngroup_wait = \"100ms\"\ngroup_interval = \"1s\"\nrepeat_interval = \"1h\"\n\
         [alerts.email]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {port}\n\
         from = \"opsagent@web-01.example.com\"\n{email}\n",
        d = dir.display()
    );
    for k in ["cpu", "load", "memory", "swap", "disk", "gateway"] {
        s += &format!("[checks.{k}]\nenabled = false\n");
    }
    let path = dir.join("opsagent.toml");
    std::fs::write(&path, s).unwrap();
    path
}

fn fire(cat: &Catalog) {
    let now = Utc::now();
    let e = EventRow {
        id: 0,
        check: "tcp:api".into(),
        from_state: "OK".into(),
        to_state: "CRIT".into(),
        at: now,
        since: now,
        value: None,
        threshold: None,
        detail: "127.0.0.1:9 refused the connection".into(),
        delivered: false,
    };
    cat.save_check_round(&[], &[e]).unwrap();
}

fn server(faults: &[&str]) -> SmtpServer {
    SmtpServer::start_with(SmtpOptions {
        faults: faults.iter().map(|f| f.to_string()).collect(),
        ..Default::default()
    })
}

#[test]
fn refused_recipient_temporary_failure_and_dropped_connection() {
    let dir = tempfile::tempdir().unwrap();
    // b@ is unknown; the first DATA gets a 451, the second a closed connection, then it works.
    let smtp = server(&["rcpt:b@example.com:550", "data:451:1", "drop-data:1"]);
    let cfg = config(
        dir.path(),
        smtp.port(),
        "tls = \"none\"\ntimeout = \"3s\"\nto = [\"a@example.com\", \"b@example.com\"]",
    );
    let cat = Catalog::open(&dir.path().join("state/catalog.sqlite")).unwrap();
    let d = daemon(&cfg);
    fire(&cat);
    let m = smtp.wait_for_messages(1, Duration::from_secs(20));
    assert!(m[0].contains("FIRING CRIT tcp api"), "{}", m[0]);
    let envs = smtp.messages_with_envelopes();
    assert_eq!(envs[0].0.rcpt_to, ["a@example.com"], "a@ got it");
    wait_for(
        "the row to be given up for b@",
        Duration::from_secs(10),
        || cat.outbox(None).unwrap().iter().any(|r| r.given_up()),
    );
    let rows = cat.outbox(None).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].rcpt_to, ["b@example.com"], "waits for b@ only");
    assert!(
        rows[0].attempts >= 3,
        "451, dropped, then b@ refused: {rows:?}"
    );
    let log = d.log();
    assert!(
        log.contains("451") && log.contains("not delivered yet"),
        "{log}"
    );
    assert!(log.contains("refused for good"), "{log}");
    let out = opsagent(&cfg, &["status"]);
    let text = common::output_text(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a refused mail is a warning: {text}"
    );
    assert!(
        text.contains("mail REFUSED by the SMTP server")
            && text.contains("b@example.com")
            && text.contains("550"),
        "{text}"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(smtp.messages().len(), 1, "delivered once, to a@ only");
}

#[test]
fn permanent_refusal_of_the_message_is_not_retried() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = server(&["data:554:0"]);
    let cfg = config(
        dir.path(),
        smtp.port(),
        "tls = \"none\"\ntimeout = \"3s\"\nto = [\"oncall@example.com\"]",
    );
    let cat = Catalog::open(&dir.path().join("state/catalog.sqlite")).unwrap();
    let d = daemon(&cfg);
    fire(&cat);
    wait_for("a refused attempt", Duration::from_secs(10), || {
        cat.outbox(None).unwrap().iter().any(|r| r.attempts >= 1)
    });
    // Backoff would retry after 1 s, 2 s…: a 5xx is not retried.
    std::thread::sleep(Duration::from_secs(4));
    let rows = cat.outbox(None).unwrap();
    assert_eq!(rows.len(), 1, "kept, to be seen");
    assert_eq!(rows[0].attempts, 1, "{rows:?}");
    assert!(rows[0].given_up());
    let err = rows[0].last_error.clone().unwrap();
    assert!(
        err.contains("message (DATA) failed") && err.contains("554"),
        "{err}"
    );
    let log = d.log();
    assert!(
        log.contains("ERROR") && log.contains("refused for good by the SMTP server"),
        "{log}"
    );
    let json = opsagent(&cfg, &["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["outbox"][0]["refused"], true, "{v}");
    assert_eq!(v["status"], "WARN", "{v}");
    assert!(smtp.messages().is_empty());
}

/// `notify-test` against a server: (exit code, all output).
fn notify(dir: &Path, port: u16, email: &str) -> (i32, String) {
    let cfg = config(dir, port, email);
    let out = opsagent(&cfg, &["notify-test"]);
    (out.status.code().unwrap_or(-1), common::output_text(&out))
}

/// A private CA and a certificate for 127.0.0.1 signed by it: (ca.pem, cert.pem, key.pem).
fn private_ca(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca, rcgen::KeyPair::generate().unwrap()).unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = leaf.signed_by(&key, &ca).unwrap();
    let paths = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

#[test]
fn slow_server_tls_mixups_and_missing_auth_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = private_ca(dir.path());
    let ca = format!("ca_file = \"{}\"\n", ca.display());
    let to = "to = [\"oncall@example.com\"]\ntimeout = \"1s\"\n";

    // Slow: the DATA reply comes after 3 s; the 1 s timeout is named with its setting.
    let slow = server(&["slow-data:3:0"]);
    let (code, out) = notify(dir.path(), slow.port(), &format!("tls = \"none\"\n{to}"));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("message (DATA) failed: no answer within 1s (`timeout` in [alerts.email])"),
        "{out}"
    );

    // One recipient refused: the others get it, the command says so and exits 1.
    let picky = server(&["rcpt:nobody@example.com:550"]);
    let two = "to = [\"oncall@example.com\", \"nobody@example.com\"]\ntimeout = \"5s\"\n";
    let before = picky.connections();
    let (code, out) = notify(dir.path(), picky.port(), &format!("tls = \"none\"\n{two}"));
    // One connection per attempt: no reachability probe that hangs up (servers log and
    // rate-limit those).
    assert_eq!(picky.connections() - before, 1, "{out}");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("accepted the test mail for oncall@example.com only")
            && out.contains("recipient nobody@example.com (RCPT TO) failed")
            && out.contains("550"),
        "{out}"
    );
    assert_eq!(picky.messages().len(), 1);

    // Implicit TLS (465): works with tls = "tls"; "starttls" is told to check the mode.
    let implicit = SmtpServer::start_with(SmtpOptions {
        starttls_cert: Some((cert.clone(), key.clone())),
        implicit_tls: true,
        ..Default::default()
    });
    let (code, out) = notify(
        dir.path(),
        implicit.port(),
        &format!("tls = \"tls\"\n{ca}{to}"),
    );
    assert_eq!(code, 0, "{out}");
    let (code, out) = notify(
        dir.path(),
        implicit.port(),
        &format!("tls = \"starttls\"\n{ca}{to}"),
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("greeting (EHLO) failed: no answer within 1s")
            && out.contains("port 465 speaks TLS at once (tls = \"tls\")"),
        "{out}"
    );
    // check-config warns about the usual mix-up on the usual port.
    let cfg = config(dir.path(), 465, &format!("tls = \"starttls\"\n{to}"));
    let text = common::output_text(&opsagent(&cfg, &["check-config"]));
    assert!(
        text.contains("port 465 speaks TLS from the first byte"),
        "{text}"
    );

    // STARTTLS (587) server, but tls = "tls": a TLS handshake failure, with the hint.
    let starttls = SmtpServer::start_with(SmtpOptions {
        starttls_cert: Some((cert, key)),
        ..Default::default()
    });
    let (code, out) = notify(
        dir.path(),
        starttls.port(),
        &format!("tls = \"tls\"\n{ca}{to}"),
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("TLS handshake failed") && out.contains("\"starttls\" for 587"),
        "{out}"
    );

    // Credentials for a server without AUTH.
    let pw = common::write_secret(dir.path(), "smtp-pw", "secret");
    let creds = format!(
        "username = \"alerts\"\npassword_file = \"{}\"\n",
        pw.display()
    );
    let plain = server(&[]);
    let (code, out) = notify(
        dir.path(),
        plain.port(),
        &format!("tls = \"none\"\n{creds}{to}"),
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("authentication (AUTH) failed: the server offers no AUTH")
            && out.contains("set tls = \"starttls\""),
        "{out}"
    );
}
