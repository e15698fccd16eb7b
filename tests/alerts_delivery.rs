//! Delivery against the real SMTP capture server: an alert fired while the server is down is
//! delivered once it is back, across a daemon restart in between (the durable outbox), and
//! again while the daemon runs (backoff); `notify-test` over STARTTLS with AUTH and a private CA
//! trusted through `ca_file`, and a wrong password / untrusted certificate / closed port named
//! with the server and the step that failed.

mod common;

use common::agent::{wait_for, Daemon};

use chrono::Utc;
use common::smtp::{SmtpOptions, SmtpServer};
use opsagent::catalog::{Catalog, EventRow};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn base(dir: &Path) -> String {
    let mut s = format!(
        "[agent]\nhostname = \"web-01\"\nstate_dir = \"{d}/state\"\ntimezone = \"UTC\"\nshutdown_grace = \"2s\"\n\
         [storage]\ntype = \"local\"\npath = \"{d}/backups\"\n",
        d = dir.display()
    );
    for k in ["cpu", "load", "memory", "swap", "disk", "gateway"] {
        s += &format!("[checks.{k}]\nenabled = false\n");
    }
    s
}

fn event(cat: &Catalog, from: &str, to: &str) {
    let now = Utc::now();
    let e = EventRow {
        id: 0,
        check: "tcp:api".into(),
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

fn subject(raw: &str) -> String {
    raw.lines()
        .find_map(|l| l.strip_prefix("Subject: "))
        .unwrap_or_default()
        .to_string()
}

#[test]
fn smtp_down_when_an_alert_fires_is_delivered_later_even_across_a_daemon_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut smtp = SmtpServer::start();
    smtp.stop();
    let cfg = dir.path().join("opsagent.toml");
    std::fs::write(
        &cfg,
        base(dir.path())
            + &format!(
                "[alerts]\ngroup_wait = \"200ms\"\ngroup_interval = \"1s\"\nrepeat_interval = \"1h\"\n\
                 [alerts.email]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {}\ntls = \"none\"\n\
                 from = \"opsagent@web-01.example.com\"\nto = [\"oncall@example.com\"]\ntimeout = \"2s\"\n",
                smtp.port()
            ),
    )
    .unwrap();
    let log = dir.path().join("daemon.log");
    let cat = Catalog::open(&dir.path().join("state/catalog.sqlite")).unwrap();
    let d = Daemon::start(&cfg, &log);
    event(&cat, "OK", "CRIT");
    wait_for("a failed attempt", Duration::from_secs(10), || {
        cat.outbox(None).unwrap().iter().any(|m| m.attempts >= 1)
    });
    let row = &cat.outbox(None).unwrap()[0];
    let err = row.last_error.clone().unwrap();
    assert!(
        err.contains(&format!("127.0.0.1:{}", smtp.port())) && err.contains("connect failed"),
        "{err}"
    );
    d.stop();
    assert_eq!(
        cat.outbox(None).unwrap().len(),
        1,
        "the mail survives the stop"
    );
    smtp.restart();
    let d = Daemon::start(&cfg, &log);
    let m = smtp.wait_for_messages(1, Duration::from_secs(10));
    assert_eq!(subject(&m[0]), "[opsagent] FIRING CRIT tcp api on web-01");
    wait_for("an empty outbox", Duration::from_secs(5), || {
        cat.outbox(None).unwrap().is_empty()
    });
    // Down again while the daemon runs: the RESOLVED waits in the outbox, then goes out.
    smtp.stop();
    event(&cat, "CRIT", "OK");
    wait_for("a failed attempt", Duration::from_secs(10), || {
        cat.outbox(None).unwrap().iter().any(|m| m.attempts >= 1)
    });
    smtp.restart();
    let m = smtp.wait_for_messages(2, Duration::from_secs(10));
    assert_eq!(subject(&m[1]), "[opsagent] RESOLVED tcp api on web-01");
    let id = m[0]
        .lines()
        .find_map(|l| l.strip_prefix("Message-ID: "))
        .unwrap();
    assert!(m[1].contains(&format!("In-Reply-To: {id}")), "{}", m[1]);
    d.stop();
    assert_eq!(smtp.messages().len(), 2, "no duplicates");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("alert mail not delivered yet"), "{text}");
}

/// A private CA and a certificate for 127.0.0.1 signed by it: (ca.pem, cert.pem, key.pem).
fn private_ca(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "opsagent test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca, rcgen::KeyPair::generate().unwrap()).unwrap();
    let leaf =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".into()]).unwrap();
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
    (paths.0, paths.1, paths.2)
}

fn notify_test(dir: &Path, port: u16, password: &str, ca: Option<&Path>) -> (i32, String) {
    let pw = dir.join("smtp-password");
    std::fs::write(&pw, format!("{password}\n")).unwrap();
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    let ca = ca
        .map(|c| format!("ca_file = \"{}\"\n", c.display()))
        .unwrap_or_default();
    let cfg = dir.join("opsagent.toml");
    std::fs::write(
        &cfg,
        base(dir)
            + &format!(
                "[alerts.email]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {port}\ntls = \"starttls\"\n\
                 username = \"alerts\"\npassword_file = \"{}\"\n{ca}\
                 from = \"opsagent@web-01.example.com\"\nto = [\"oncall@example.com\"]\ntimeout = \"5s\"\n",
                pw.display()
            ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_opsagent"))
        .arg("--config")
        .arg(&cfg)
        .arg("notify-test")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn notify_test_over_starttls_with_auth_and_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = private_ca(dir.path());
    let smtp = SmtpServer::start_with(SmtpOptions {
        starttls_cert: Some((cert, key)),
        auth: Some(("alerts".into(), "s3cret pass".into())),
        ..Default::default()
    });
    let port = smtp.port();
    let (code, out) = notify_test(dir.path(), port, "s3cret pass", Some(&ca));
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("(STARTTLS, AUTH as alerts)") && out.contains("ok: the server accepted"),
        "{out}"
    );
    let m = smtp.wait_for_messages(1, Duration::from_secs(5));
    assert_eq!(subject(&m[0]), "[opsagent] TEST mail from web-01");
    assert!(m[0].contains("Auto-Submitted: auto-generated"), "{}", m[0]);

    let (code, out) = notify_test(dir.path(), port, "wrong", Some(&ca));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "SMTP 127.0.0.1:{port}: authentication (AUTH) failed"
        )),
        "{out}"
    );
    assert!(
        out.contains("check username and the password in password_file"),
        "{out}"
    );
    assert!(
        !out.contains("wrong"),
        "the password is never printed: {out}"
    );

    let (code, out) = notify_test(dir.path(), port, "s3cret pass", None);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("SMTP 127.0.0.1:{port}: TLS handshake failed")),
        "{out}"
    );

    let closed = common::free_port();
    let (code, out) = notify_test(dir.path(), closed, "s3cret pass", Some(&ca));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("SMTP 127.0.0.1:{closed}: connect failed")),
        "{out}"
    );
    assert_eq!(smtp.messages().len(), 1);
}
