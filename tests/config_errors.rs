//! Bad configurations: each is refused by the real binary with exit 2, `file:line:col`, the key,
//! what is wrong and a hint. Also: every file under config/ loads.

use std::path::Path;
use std::process::Command;

const STORAGE: &str = "[storage]\ntype = \"local\"\npath = \"/tmp/opsagent-test-backups\"\n";

fn check(dir: &Path, name: &str, text: &str) -> (i32, String) {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_opsagent"))
        .args(["--config", path.to_str().unwrap(), "check-config"])
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_ACCESS_KEY_ID")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn mysql(extra: &str) -> String {
    format!("{STORAGE}\n[[mysql]]\nname = \"main\"\ndatabases = [\"shop\"]\nschedule = \"30 2 * * *\"\n{extra}")
}

struct Case {
    name: &'static str,
    text: String,
    line: usize,
    key: &'static str,
    needles: &'static [&'static str],
}

#[test]
fn bad_configs_are_refused_with_position_key_and_hint() {
    let dir = tempfile::tempdir().unwrap();
    let unreadable = dir.path().join("no-such-secret");
    let huge = dir.path().join("huge-secret");
    std::fs::write(&huge, vec![b'x'; 100_000]).unwrap();
    let cases = vec![
        Case { name: "unknown-key", text: format!("{STORAGE}\n[[mysql]]\nname = \"main\"\ndatabases = [\"shop\"]\nscheduel = \"@daily\"\n"), line: 8, key: "scheduel", needles: &["unknown field", "did you mean `schedule`?"] },
        Case { name: "unknown-section", text: format!("{STORAGE}\n[chekcs]\ninterval = \"30s\"\n"), line: 5, key: "chekcs", needles: &["unknown field `chekcs`", "hint:"] },
        Case { name: "wrong-type", text: mysql("port = \"3306\"\n"), line: 9, key: "port", needles: &["invalid type", "hint:"] },
        Case { name: "bad-cron", text: format!("{STORAGE}\n[[mysql]]\nname = \"main\"\ndatabases = [\"shop\"]\nschedule = \"61 2 * * *\"\n"), line: 8, key: "mysql[0].schedule", needles: &["not a valid crontab line", "hint: fields are `minute hour"] },
        Case { name: "bad-digest-cron", text: format!("{STORAGE}\n[alerts]\ndigest = \"0 25 * * *\"\n"), line: 6, key: "alerts.digest", needles: &["not a valid crontab line", "hint: fields are `minute hour"] },
        Case { name: "six-field-cron", text: format!("{STORAGE}\n[[mysql]]\nname = \"main\"\ndatabases = [\"shop\"]\nschedule = \"0 30 2 * * *\"\n"), line: 8, key: "mysql[0].schedule", needles: &["6 fields", "drop the seconds field"] },
        Case { name: "bad-duration", text: format!("[agent]\nshutdown_grace = \"5 minutez\"\n{STORAGE}"), line: 2, key: "agent.shutdown_grace", needles: &["hint: durations are written like \"30s\""] },
        Case { name: "bad-timezone", text: format!("[agent]\ntimezone = \"America/Bogot\"\n{STORAGE}"), line: 2, key: "agent.timezone", needles: &["unknown time zone", "did you mean `America/Bogota`?"] },
        Case { name: "missing-key", text: "[storage]\ntype = \"s3\"\nendpoint = \"http://127.0.0.1:9000\"\n".into(), line: 1, key: "storage.bucket", needles: &["required key is missing", "bucket = \"backups\""] },
        Case { name: "missing-schedule", text: format!("{STORAGE}\n[[mysql]]\nname = \"main\"\ndatabases = [\"shop\"]\n"), line: 5, key: "mysql[0].schedule", needles: &["required key is missing", "30 2 * * *"] },
        Case { name: "unknown-storage-type", text: "[storage]\ntype = \"gcs\"\npath = \"/x\"\n".into(), line: 2, key: "storage.type", needles: &["unknown storage type `gcs`", "\"local\" and \"s3\""] },
        Case { name: "duplicate-job", text: format!("{}\n[[mysql]]\nname = \"main\"\ndatabases = [\"crm\"]\nschedule = \"@daily\"\n", mysql("")), line: 11, key: "mysql[1].name", needles: &["duplicate job name `main`", "its own name"] },
        Case { name: "unreadable-password-file", text: mysql(&format!("password_file = \"{}\"\n", unreadable.display())), line: 9, key: "mysql[0].password_file", needles: &["cannot read secret file", "no-such-secret", "hint: create it"] },
        Case { name: "device-as-secret", text: mysql("password_file = \"/dev/zero\"\n"), line: 9, key: "mysql[0].password_file", needles: &["cannot read secret file /dev/zero: it is a character device, not a regular file", "hint: point the setting at a regular file"] },
        Case { name: "huge-secret", text: format!("{STORAGE}\n[alerts.email]\nsmtp_host = \"smtp.example.com\"\nfrom = \"a@example.com\"\nto = [\"b@example.com\"]\nusername = \"a\"\npassword_file = \"{}\"\n", huge.display()), line: 10, key: "alerts.email.password_file", needles: &["huge-secret: it is larger than 65536 bytes", "hint: is this the right file?"] },
        Case { name: "bad-email", text: format!("{STORAGE}\n[alerts.email]\nsmtp_host = \"smtp.example.com\"\nfrom = \"opsagent@example.com\"\nto = [\"oncall@example.com\", \"not an address\"]\n"), line: 8, key: "alerts.email.to[1]", needles: &["`not an address` is not a valid email address", "user@example.com"] },
        Case { name: "empty-databases", text: format!("{STORAGE}\n[[mysql]]\nname = \"main\"\ndatabases = []\nschedule = \"@daily\"\n"), line: 7, key: "mysql[0].databases", needles: &["the list is empty", "[\"*\"]"] },
        Case { name: "relative-socket", text: mysql("socket = \"run/mysqld/mysqld.sock\"\n"), line: 9, key: "mysql[0].socket", needles: &["relative path", "absolute path"] },
        Case { name: "bad-bucket", text: "[storage]\ntype = \"s3\"\nbucket = \"My_Bucket\"\n".into(), line: 3, key: "storage.bucket", needles: &["not a valid bucket name", "lowercase"] },
        Case { name: "toml-syntax", text: format!("{STORAGE}\n[[mysql]\nname = \"x\"\n"), line: 5, key: "", needles: &["hint:"] },
        Case { name: "anomaly-drop-word", text: mysql("anomaly_drop = \"lots\"\n"), line: 9, key: "mysql[0].anomaly_drop", needles: &["`lots` is not a share", "anomaly_drop = \"50%\""] },
        Case { name: "anomaly-expected", text: mysql("anomaly_expected = [\"shop.sessions\", \"sh*p.x\"]\n"), line: 9, key: "mysql[0].anomaly_expected[1]", needles: &["`sh*p.x` is not a table name or prefix", "shop.cache_*"] },
        Case { name: "anomaly-drop-range", text: format!("{STORAGE}\n[[media]]\nname = \"uploads\"\npaths = [\"/srv\"]\nschedule = \"@daily\"\nanomaly_drop = 50\n"), line: 9, key: "media[0].anomaly_drop", needles: &["50 is not between 0 and 1", "\"off\" or 0"] },
        Case { name: "restore-threads", text: mysql("restore_threads = 0\n"), line: 9, key: "mysql[0].restore_threads", needles: &["`restore_threads` is 0: it must be 1 to 64", "one per core"] },
        Case { name: "keep-nothing", text: mysql("keep = { last = 0 }\n"), line: 9, key: "mysql[0].keep", needles: &["keeps nothing", "daily = 7"] },
        Case { name: "media-missing-paths", text: format!("{STORAGE}\n[[media]]\nname = \"uploads\"\nschedule = \"@daily\"\n"), line: 5, key: "media[0].paths", needles: &["required key is missing", "paths = ["] },
        Case { name: "media-overlapping-paths", text: format!("{STORAGE}\n[[media]]\nname = \"uploads\"\npaths = [\"/srv/www\", \"/srv/www/uploads\"]\nschedule = \"@daily\"\n"), line: 7, key: "media[0].paths[1]", needles: &["overlaps another path", "a parent already includes"] },
        Case { name: "media-job-name-clash", text: format!("{}\n[[media]]\nname = \"main\"\npaths = [\"/srv\"]\nschedule = \"@daily\"\n", mysql("")), line: 11, key: "media[0].name", needles: &["duplicate job name `main`"] },
        Case { name: "bad-age-recipient", text: format!("{STORAGE}\n[encryption]\nrecipients = [\"age1notakey\"]\n"), line: 6, key: "encryption.recipients[0]", needles: &["`age1notakey` is not an age recipient", "age-keygen -y"] },
        Case { name: "secret-key-as-recipient", text: format!("{STORAGE}\n[encryption]\nrecipients = [\"AGE-SECRET-KEY-1QQQQ\"]\n"), line: 6, key: "encryption.recipients[0]", needles: &["secret key, not a recipient", "keep the secret key off this server"] },
        Case { name: "no-age-recipients", text: format!("{STORAGE}\n[encryption]\nidentity_file = \"/root/key.txt\"\n"), line: 5, key: "encryption", needles: &["no recipients", "age-keygen -o"] },
        Case { name: "bad-job-name", text: format!("{STORAGE}\n[[mysql]]\nname = \"main db\"\ndatabases = [\"shop\"]\nschedule = \"@daily\"\n"), line: 6, key: "mysql[0].name", needles: &["not a valid job name", "letters, digits"] },
    ];
    let mut failures = Vec::new();
    for c in &cases {
        let (code, err) = check(dir.path(), c.name, &c.text);
        let file = dir.path().join(format!("{}.toml", c.name));
        let position = format!("{}:{}:", file.display(), c.line);
        let mut ok = code == 2 && err.contains(&position) && err.contains(c.key);
        ok &= c.needles.iter().all(|n| err.contains(n));
        if !ok {
            failures.push(format!(
                "case {}: exit {code}, want 2 and `{position}`, `{}`, {:?}; got:\n{err}",
                c.name, c.key, c.needles
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn all_errors_are_reported_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let text = "[agent]\ntimezone = \"Mars/Olympus\"\n[storage]\ntype = \"local\"\npath = \"/x\"\n[[mysql]]\nname = \"a\"\ndatabases = []\nschedule = \"nope\"\n";
    let (code, err) = check(dir.path(), "many", text);
    assert_eq!(code, 2, "{err}");
    for n in [
        "unknown time zone",
        "the list is empty",
        "has 1 fields",
        "3 errors in the configuration",
    ] {
        assert!(err.contains(n), "missing `{n}` in:\n{err}");
    }
}

#[test]
fn missing_file_and_secrets_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let (code, err) = check(dir.path(), "x", "");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("[storage] section is missing"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_opsagent"))
        .args(["--config", "/nonexistent/opsagent.toml", "check-config"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("/nonexistent/opsagent.toml: cannot read the configuration"));

    let secret = dir.path().join("s3-secret");
    std::fs::write(&secret, "TOPSECRETVALUE\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    let text = format!("[storage]\ntype = \"s3\"\nbucket = \"backups\"\naccess_key_id = \"AKIA1\"\nsecret_access_key_file = \"{}\"\n[[mysql]]\nname = \"m\"\ndatabases = [\"*\"]\nschedule = \"@daily\"\n", secret.display());
    let path = dir.path().join("ok.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_opsagent"))
        .args(["--config", path.to_str().unwrap(), "check-config"])
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(!all.contains("TOPSECRETVALUE"), "{all}");
    // The secret file is world-readable (umask 022): warned about, by name; 0640 is fine.
    assert!(
        all.contains("can be read by every user (mode 644)") && all.contains("s3-secret"),
        "{all}"
    );
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_opsagent"))
        .args(["--config", path.to_str().unwrap(), "check-config"])
        .output()
        .unwrap();
    let all = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && !all.contains("s3-secret"), "{all}");
}

#[test]
fn every_file_under_config_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let out = Command::new(env!("CARGO_BIN_EXE_opsagent"))
                .args(["--config", path.to_str().unwrap(), "check-config"])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            // Relative paths (`./var/state`) are shown resolved, without `.` segments.
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(!stdout.contains("/./"), "{stdout}");
            n += 1;
        }
    }
    assert!(n >= 1);
}

#[test]
fn config_env_variable_and_next_run_shown() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("env.toml");
    std::fs::write(
        &path,
        format!(
            "[agent]\ntimezone = \"America/Bogota\"\nstate_dir = \"{}\"\n{}",
            dir.path().join("state").display(),
            mysql("")
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_opsagent"))
        .arg("check-config")
        .env("OPSAGENT_CONFIG", &path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("America/Bogota"), "{stdout}");
    assert!(
        stdout.contains("next run") && stdout.contains("02:30 -05"),
        "{stdout}"
    );
    assert!(
        stdout.contains("checks    every 30s: host cpu, load, memory"),
        "{stdout}"
    );
    assert!(
        stdout.contains("backup:main"),
        "the freshness check is listed: {stdout}"
    );
}

#[test]
fn a_missing_media_path_is_a_warning_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!("{STORAGE}\n[[media]]\nname = \"up\"\npaths = [\"{}\", \"/nonexistent/uploads\"]\nschedule = \"@daily\"\n", dir.path().display());
    let file = dir.path().join("missing-path.toml");
    std::fs::write(&file, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_opsagent"))
        .args(["--config", file.to_str().unwrap(), "check-config"])
        .output()
        .unwrap();
    let code = out.status.code().unwrap_or(-1);
    let err = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(code, 0, "a late mount must not stop the daemon: {err}");
    assert!(
        err.contains(&format!("{}:7:", file.display()))
            && err.contains("`/nonexistent/uploads` does not exist")
            && err.contains("hint: check the path"),
        "{err}"
    );
    assert!(
        !err.contains(&format!("`{}`", dir.path().display())),
        "{err}"
    );
}
