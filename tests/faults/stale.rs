//! Multipart uploads left open by killed runs are aborted at daemon start and by `opsagent
//! prune`, unless their job is running; uploads outside our prefix are left alone. The next run
//! of a SIGKILLed job aborts its own leftover upload, and only its job's.
//!
//! The other half of the rule, "older than an hour", cannot be shown against moto: it reports
//! every upload as initiated on 2010-11-10T20:48:33Z (a constant in moto), so there all uploads
//! are old. `snapshot::orphan_uploads`'s unit tests cover the age.

use super::*;
use opsagent::snapshot::lock::JobLock;

fn open_keys(s3: &S3Server, bucket: &str) -> Vec<String> {
    let mut keys: Vec<String> = s3
        .list_multipart_uploads(bucket)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    keys.sort();
    keys
}

#[test]
fn stale_uploads_are_aborted_at_daemon_start_and_by_prune_unless_their_job_runs() {
    let db = MariaDb::shared();
    let s3 = S3Server::shared();
    let setup = Setup::new(s3, super::SECRETS);
    let cfg = setup.config(s3, db, "unused");
    let b = &setup.bucket;
    let ours = "web-01/mysql/j/shop/20261120T073000Z-00000001.sql.zst";
    let running = "web-01/mysql/busy/shop/20261120T073000Z-00000002.sql.zst";
    let other_host = "web-02/mysql/j/shop/20261120T073000Z-00000003.sql.zst";
    for key in [ours, running, other_host] {
        s3.create_multipart_upload(b, key);
    }
    let id = s3.create_multipart_upload(b, ours);
    s3.upload_part(b, ours, &id, 1, b"partial dump");

    // A run of job `busy` is in progress (it holds the job's lock).
    let lock = JobLock::acquire(&setup.path("state"), "busy").unwrap();
    let log = daemon_until(&cfg, &[], "stale multipart uploads checked");
    assert!(
        log.contains("aborted=2") && log.contains("running=1"),
        "{log}"
    );
    assert!(
        log.contains("aborted a stale multipart upload") && log.contains("mysql/j/shop"),
        "{log}"
    );
    assert_eq!(
        open_keys(s3, b),
        vec![running.to_string(), other_host.to_string()]
    );

    // prune: --dry-run only says so; still busy → left; free → aborted.
    let out = opsagent(&cfg, &["prune"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("left upload mysql/busy/shop/"),
        "{}",
        text(&out)
    );
    drop(lock);
    let out = opsagent(&cfg, &["prune", "--dry-run"]);
    assert!(
        text(&out).contains("would abort stale upload mysql/busy/shop/"),
        "{}",
        text(&out)
    );
    assert_eq!(open_keys(s3, b).len(), 2);
    let out = opsagent(&cfg, &["prune"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("aborted stale upload mysql/busy/shop/"),
        "{}",
        text(&out)
    );
    assert_eq!(open_keys(s3, b), vec![other_host.to_string()]);
}

#[test]
fn the_next_run_of_a_sigkilled_job_aborts_its_open_upload() {
    let db = MariaDb::shared();
    let big = shared_big();
    let s3 = S3Server::shared();
    let setup = Setup::new(s3, super::SECRETS);
    let cfg = setup.config(s3, db, big);
    let b = &setup.bucket;
    // Left open by another job and by another host: not this run's to abort.
    let other_job = "web-01/mysql/other/shop/20261120T073000Z-00000001.sql.zst";
    let other_host = "web-02/mysql/j/shop/20261120T073000Z-00000002.sql.zst";
    for key in [other_job, other_host] {
        s3.create_multipart_upload(b, key);
    }
    let mut child = spawn_backup(&cfg, &[]);
    wait_while_running(
        &mut child,
        "a multipart upload opened",
        Duration::from_secs(60),
        || open_keys(s3, b).len() > 2,
    );
    let dumps = dump_children(child.id());
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    for d in dumps {
        let _ = Command::new("kill")
            .args(["-KILL", &d.to_string()])
            .status();
    }
    let ours = |keys: Vec<String>| -> Vec<String> {
        keys.into_iter()
            .filter(|k| k.starts_with("web-01/mysql/j/"))
            .collect()
    };
    assert_eq!(ours(open_keys(s3, b)).len(), 1, "{:?}", open_keys(s3, b));

    // The next run of the job (no daemon start, no prune in between) cleans up after it.
    let out = opsagent(&cfg, &["backup"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("aborted a multipart upload left by an interrupted run"),
        "{}",
        text(&out)
    );
    assert_eq!(ours(open_keys(s3, b)), Vec::<String>::new());
    assert_eq!(
        open_keys(s3, b),
        vec![other_job.to_string(), other_host.to_string()]
    );
    assert_eq!(snapshots(&cfg, true).len(), 1);
}
