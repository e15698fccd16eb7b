//! Dependencies between checks, end to end: the daemon watching a real MariaDB (killed and
//! restarted) and two TCP checks that depend on its MySQL check, mailing the real SMTP capture
//! server. MySQL down: exactly one FIRING mail, naming MySQL and listing what failed with it;
//! MySQL back: one RESOLVED; a dependent failing alone alerts on its own.

mod common;

use common::agent::Daemon;
use common::mariadb::MariaDb;
use common::smtp::SmtpServer;
use std::time::Duration;

fn subject(raw: &str) -> String {
    raw.lines()
        .find_map(|l| l.strip_prefix("Subject: "))
        .unwrap_or_default()
        .to_string()
}

/// The mail's text with quoted-printable soft breaks joined.
fn body(raw: &str) -> String {
    raw.replace("=\r\n", "").replace("=\n", "")
}

#[test]
fn mysql_down_sends_one_mail_listing_its_dependents_and_one_resolved() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = MariaDb::start();
    let smtp = SmtpServer::start();
    let cache = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let cache_port = cache.local_addr().unwrap().port();
    let mut text = format!(
        "[agent]\nhostname = \"web-01\"\nstate_dir = \"{d}/state\"\ntimezone = \"UTC\"\nshutdown_grace = \"2s\"\n\
         [storage]\ntype = \"local\"\npath = \"{d}/backups\"\n",
        d = dir.path().display()
    );
    for k in ["cpu", "load", "memory", "swap", "disk"] {
        text += &format!("[checks.{k}]\nenabled = false\n");
    }
    text += &format!(
        "[[mysql]]\nname = \"main\"\ndatabases = [\"mysql\"]\nsocket = \"{sock}\"\nuser = \"root\"\nschedule = \"30 2 * * *\"\n\
         [[checks.mysql]]\nname = \"mysql-main\"\njob = \"main\"\ninterval = \"1s\"\n\
         [[checks.tcp]]\nname = \"api\"\naddress = \"127.0.0.1:{port}\"\ninterval = \"1s\"\ndepends_on = [\"mysql-main\"]\n\
         [[checks.tcp]]\nname = \"cache\"\naddress = \"127.0.0.1:{cache_port}\"\ninterval = \"1s\"\ndepends_on = [\"mysql-main\"]\n\
         [alerts]\ngroup_wait = \"3s\"\ngroup_interval = \"2s\"\nrepeat_interval = \"1h\"\n\
         [alerts.email]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {smtp}\ntls = \"none\"\n\
         from = \"opsagent@web-01.example.com\"\nto = [\"oncall@example.com\"]\n",
        sock = server.socket().display(),
        port = server.port(),
        smtp = smtp.port(),
    );
    let cfg = dir.path().join("opsagent.toml");
    std::fs::write(&cfg, text).unwrap();
    let check = common::agent::opsagent(&cfg, &["check-config"]);
    assert!(check.status.success(), "{}", common::output_text(&check));
    let daemon = Daemon::start(&cfg, &dir.path().join("daemon.log"));
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(smtp.messages().len(), 0, "{:?}", smtp.messages());

    // MySQL down: its check and the api check (its port) fail together.
    server.kill();
    let mails = smtp.wait_for_messages(1, Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(8));
    let mails = if smtp.messages().len() > mails.len() {
        smtp.messages()
    } else {
        mails
    };
    let subjects: Vec<String> = mails.iter().map(|m| subject(m)).collect();
    assert_eq!(subjects.len(), 1, "{subjects:?}\n{}", daemon.log());
    assert!(
        subjects[0].contains("FIRING") && subjects[0].contains("mysql-main"),
        "{subjects:?}"
    );
    assert!(
        body(&mails[0]).contains("also affected: api"),
        "{}",
        mails[0]
    );
    // `status` shows the tree.
    let status = common::output_text(&common::agent::opsagent(&cfg, &["status"]));
    let api = status
        .lines()
        .find(|l| l.starts_with("api "))
        .unwrap_or_default();
    assert!(api.contains("(because mysql-main fails)"), "{status}");

    // MySQL back: one RESOLVED (the api alert was never mailed, so nothing about it).
    server.restart();
    smtp.wait_for_messages(2, Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(6));
    let subjects: Vec<String> = smtp.messages().iter().map(|m| subject(m)).collect();
    assert_eq!(subjects.len(), 2, "{subjects:?}");
    assert!(
        subjects[1].contains("RESOLVED") && subjects[1].contains("mysql-main"),
        "{subjects:?}"
    );

    // The cache fails alone: it alerts on its own.
    drop(cache);
    let mails = smtp.wait_for_messages(3, Duration::from_secs(30));
    let last = subject(&mails[2]);
    assert!(last.contains("FIRING") && last.contains("cache"), "{last}");
    daemon.stop();
}

#[test]
fn unknown_self_and_circular_dependencies_are_config_errors() {
    for (extra, says) in [
        (
            "depends_on = [\"nope\"]",
            "depends on `nope`, which is no check",
        ),
        ("depends_on = [\"a\"]", "depends on itself"),
    ] {
        let (_dir, _cfg, err) = common::agent::check_config_fails(&format!(
            "[[checks.tcp]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\n{extra}\n"
        ));
        assert!(err.contains(says), "{err}");
        assert!(err.contains("depends_on"), "{err}");
    }
    let (_dir, _cfg, err) = common::agent::check_config_fails(
        "[[checks.tcp]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\ndepends_on = [\"b\"]\n\
         [[checks.tcp]]\nname = \"b\"\naddress = \"127.0.0.1:1\"\ndepends_on = [\"a\"]\n",
    );
    assert!(err.contains("in a circle: "), "{err}");
}
