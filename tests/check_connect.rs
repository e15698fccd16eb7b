//! `check-config --connect` probes the storage for real: ok against the S3 server, a clear
//! error naming endpoint and bucket (exit 1) when it is down or the bucket is missing.

mod common;

use common::s3::{S3Server, ACCESS_KEY, SECRET_KEY};
use std::process::Command;

fn config(dir: &std::path::Path, endpoint: &str, bucket: &str) -> std::path::PathBuf {
    let secret = dir.join("s3");
    std::fs::write(&secret, SECRET_KEY).unwrap();
    let p = dir.join(format!("{bucket}.toml"));
    std::fs::write(
        &p,
        format!("[agent]\nstate_dir = \"{}\"\n[storage]\ntype = \"s3\"\nbucket = \"{bucket}\"\nendpoint = \"{endpoint}\"\naccess_key_id = \"{ACCESS_KEY}\"\nsecret_access_key_file = \"{}\"\n", dir.join("state").display(), secret.display()),
    )
    .unwrap();
    p
}

fn connect(cfg: &std::path::Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_opsagent"))
        .arg("--config")
        .arg(cfg)
        .args(["check-config", "--connect"])
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn connect_probe_reports_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let mut s3 = S3Server::start();
    let bucket = s3.new_bucket();
    let (code, out) = connect(&config(dir.path(), &s3.endpoint(), &bucket));
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("storage check: ok") && !out.contains(SECRET_KEY),
        "{out}"
    );

    let (code, out) = connect(&config(dir.path(), &s3.endpoint(), "no-such-bucket"));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("no-such-bucket"), "{out}");

    let endpoint = s3.endpoint();
    s3.stop();
    let (code, out) = connect(&config(dir.path(), &endpoint, &bucket));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&endpoint) && out.contains(&bucket), "{out}");
}
