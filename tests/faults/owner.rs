//! Two agents on one storage prefix: the second is refused (backup, prune, `check-config
//! --connect`) naming the bucket and the owner, can still list and restore, and takes over
//! with `backup --take-over`, after which the first one is refused.

use super::*;

fn owner(s3: &S3Server, bucket: &str) -> serde_json::Value {
    let raw = s3
        .get_object(bucket, "web-01/opsagent-owner.json")
        .expect("the owner object");
    serde_json::from_slice(&raw).unwrap()
}

fn agent_id(setup: &Setup, state: &str) -> String {
    std::fs::read_to_string(setup.path(state).join("agent-id"))
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn a_second_agent_on_the_same_prefix_is_refused_until_it_takes_over() {
    let db = MariaDb::shared();
    db.create_user("backup", PASSWORD);
    let s3 = S3Server::shared();
    let setup = Setup::new(s3, super::SECRETS);
    let name = db.new_database();
    db.sql_db(&name, "CREATE TABLE t (id INT); INSERT INTO t VALUES (7);");
    let first = setup.config(s3, db, &name);
    // A clone: same host name, same bucket and prefix, its own state directory.
    let clone = setup.config_in(s3, db, &name, "clone");

    let out = opsagent(&first, &["backup"]);
    assert!(out.status.success(), "{}", text(&out));
    let rec = owner(s3, &setup.bucket);
    let first_id = agent_id(&setup, "state");
    assert_eq!(rec["agent_id"], first_id.as_str(), "{rec}");
    assert_eq!(rec["hostname"], "web-01", "{rec}");
    assert_eq!(rec["format"], 1, "{rec}");

    // Writing is refused, and the refusal is a failed, recorded run (so it alerts).
    let out = opsagent(&clone, &["backup"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        format!("s3://{}/web-01/", setup.bucket),
        "belongs to another opsagent".to_string(),
        format!("agent {}", &first_id[..12]),
        "--take-over".to_string(),
    ] {
        assert!(err.contains(&needle), "`{needle}` missing from:\n{err}");
    }
    let clone_cat = Catalog::open(&setup.path("clone/catalog.sqlite")).unwrap();
    let runs = clone_cat.recent_runs(10).unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].status, RunStatus::Failed);
    assert!(runs[0]
        .error
        .as_deref()
        .unwrap()
        .contains("belongs to another opsagent"));
    assert_eq!(manifests(s3, &setup.bucket).len(), 1);
    let out = opsagent(&clone, &["prune"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("belongs to another opsagent"),
        "{}",
        text(&out)
    );
    let out = opsagent(&clone, &["check-config", "--connect"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("storage owner check failed"),
        "{}",
        text(&out)
    );

    // Reading is not: list, dry-run prune and restore (the disaster-recovery case).
    assert_eq!(snapshots(&clone, true).len(), 1);
    assert!(opsagent(&clone, &["prune", "--dry-run"]).status.success());
    let file = setup.path("restored.sql");
    let out = opsagent(
        &clone,
        &[
            "restore",
            "--date",
            "now",
            "--to-file",
            file.to_str().unwrap(),
            "--yes",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(std::fs::read_to_string(&file).unwrap().contains("(7)"));
    assert_eq!(owner(s3, &setup.bucket)["agent_id"], first_id.as_str());

    // Taking over is explicit and remembered; then the first agent is the foreign one.
    let out = opsagent(&clone, &["backup", "--take-over"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("took over"), "{}", text(&out));
    let rec = owner(s3, &setup.bucket);
    assert_eq!(rec["agent_id"], agent_id(&setup, "clone").as_str(), "{rec}");
    let from = rec["taken_over_from"].as_str().unwrap();
    assert!(
        from.starts_with(&format!("web-01 (agent {}", &first_id[..12])),
        "{rec}"
    );
    assert_eq!(manifests(s3, &setup.bucket).len(), 2);
    let out = opsagent(&first, &["backup"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("belongs to another opsagent"),
        "{}",
        text(&out)
    );
    let out = opsagent(&clone, &["check-config", "--connect"]);
    assert!(
        text(&out).contains("storage owner: this agent"),
        "{}",
        text(&out)
    );
}
