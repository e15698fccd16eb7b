//! The digest (`[alerts] digest`) against the real daemon and the real SMTP capture server: a
//! local-storage media job that has run and one that never did, a digest every minute; exactly
//! one mail arrives for the slot, naming every job with its last result, and a daemon restarted
//! within that slot does not send it again. `check-config` shows the schedule.

mod common;

use common::agent::{opsagent, wait_for, Daemon};
use common::output_text;
use common::smtp::SmtpServer;
use opsagent::catalog::Catalog;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

fn config(dir: &Path, smtp_port: u16) -> String {
    let mut s = format!(
        "[agent]\nhostname = \"web-01\"\nstate_dir = \"{d}/state\"\ntimezone = \"UTC\"\nshutdown_grace = \"2s\"\n\
         [storage]\ntype = \"local\"\npath = \"{d}/backups\"\n"
        , d = dir.display()
    );
    for k in ["cpu", "load", "memory", "swap", "disk", "gateway"] {
        s += &format!("[checks.{k}]\nenabled = false\n");
    }
    for job in ["uploads", "logs"] {
        s += &format!(
            "[[media]]\nname = \"{job}\"\npaths = [\"{}/{job}\"]\nschedule = \"0 0 1 1 *\"\nkeep = {{ last = 3 }}\n",
            dir.display()
        );
    }
    s + &format!(
        "[alerts]\ndigest = \"* * * * *\"\n\
         [alerts.email]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {smtp_port}\ntls = \"none\"\n\
         from = \"opsagent@web-01.example.com\"\nto = [\"oncall@example.com\"]\ntimeout = \"2s\"\n"
    )
}

/// The subject (unfolded) and the plain-text part of a captured mail, decoded by Python's
/// `email` package.
fn parse(raw: &str) -> (String, String) {
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import email, email.policy, sys\n\
             m = email.message_from_binary_file(sys.stdin.buffer, policy=email.policy.default)\n\
             sys.stdout.write(m['subject'] + '\\n' + m.get_body(('plain',)).get_content())",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(raw.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "python3 could not parse the mail");
    let text = String::from_utf8(out.stdout).unwrap();
    let (subject, body) = text.split_once('\n').unwrap();
    (subject.to_string(), body.to_string())
}

/// The digests captured, as (subject, body).
fn digests(smtp: &SmtpServer) -> Vec<(String, String)> {
    smtp.messages()
        .iter()
        .map(|m| parse(m))
        .filter(|(subject, _)| subject.contains("daily digest"))
        .collect()
}
fn slot_line(body: &str) -> String {
    body.lines()
        .find(|l| l.starts_with("slot "))
        .unwrap_or_else(|| panic!("no slot line in:\n{body}"))
        .split(';')
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn one_digest_per_slot_naming_every_job_and_not_again_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for job in ["uploads", "logs"] {
        std::fs::create_dir_all(d.join(job)).unwrap();
    }
    std::fs::write(d.join("uploads/a.txt"), "hello digest\n").unwrap();
    let smtp = SmtpServer::start();
    let cfg = d.join("opsagent.toml");
    std::fs::write(&cfg, config(d, smtp.port())).unwrap();

    let out = opsagent(&cfg, &["check-config"]);
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("digest    \"* * * * *\", next "), "{text}");
    let out = opsagent(&cfg, &["backup", "uploads"]);
    assert!(out.status.success(), "{}", output_text(&out));

    // The first digest waits for the daemon's first slot: start early enough in a minute that
    // the start-up does not straddle it.
    let second = chrono::Utc::now().timestamp() % 60;
    if second >= 50 {
        std::thread::sleep(Duration::from_secs((62 - second) as u64));
    }
    let log = d.join("daemon.log");
    let daemon = Daemon::start(&cfg, &log);
    wait_for("the first digest", Duration::from_secs(80), || {
        smtp.messages().iter().any(|m| m.contains("digest"))
    });
    let mails = digests(&smtp);
    assert_eq!(mails.len(), 1, "{}", daemon.log());
    assert!(
        mails[0]
            .0
            .starts_with("[opsagent] web-01 daily digest: 1 job ok, 0 failed, 1 never run, "),
        "{}",
        mails[0].0
    );
    let body = &mails[0].1;
    let uploads = body
        .split("  uploads (media)\n")
        .nth(1)
        .unwrap_or_else(|| panic!("{body}"));
    assert!(uploads.starts_with("    last backup    "), "{body}");
    let last = uploads.lines().next().unwrap();
    assert!(
        last.contains(": ok, ") && last.contains(" stored, took "),
        "{body}"
    );
    let logs = body
        .split("  logs (media)\n")
        .nth(1)
        .unwrap_or_else(|| panic!("{body}"));
    assert!(
        logs.starts_with("    last backup    never\n    restore drill  never\n"),
        "{body}"
    );
    assert!(body.contains("  stored now     "), "{body}");
    assert!(body.contains("in 1 snapshot\n"), "{body}");
    let slot = slot_line(body);

    // Restarted within the slot: the slot is in the catalog, the digest is not sent again.
    daemon.stop();
    let daemon = Daemon::start(&cfg, &log);
    wait_for("the restarted daemon", Duration::from_secs(20), || {
        daemon.log().matches("opsagent started").count() == 2
    });
    std::thread::sleep(Duration::from_secs(3));
    let cat = Catalog::open(&d.join("state/catalog.sqlite")).unwrap();
    let recorded = cat.last_digest().unwrap().expect("the slot is recorded");
    let still_in_slot = chrono::Utc::now() < recorded.slot + chrono::Duration::seconds(60);
    daemon.stop();
    let mails = digests(&smtp);
    let slots: Vec<String> = mails.iter().map(|(_, body)| slot_line(body)).collect();
    assert_eq!(
        slots.iter().filter(|s| **s == slot).count(),
        1,
        "one digest for {slot}: {slots:?}"
    );
    if still_in_slot {
        assert_eq!(mails.len(), 1, "{slots:?}");
    }
    let mut unique = slots.clone();
    unique.dedup();
    assert_eq!(unique, slots, "no slot twice");
    assert!(cat.outbox(None).unwrap().is_empty(), "delivered");
}
