//! An append-only server key (it may write, not delete), as an S3/MinIO policy without
//! s3:DeleteObject gives: a proxy in front of the real S3 server answers that key's deletes
//! `403 AccessDenied`. Backups still succeed and lose nothing; the retention they cannot apply
//! is recorded as a failed `prune` run naming the fix; `opsagent prune` exits 1 saying so; with
//! `--credentials FILE` (a key that may delete) it prunes.

mod common;

use common::agent::{opsagent, Bench};
use common::deny_proxy::DenyProxy;
use common::s3::S3Server;
use opsagent::catalog::{Catalog, RunStatus};
use std::sync::atomic::Ordering;

fn text(o: &std::process::Output) -> String {
    common::output_text(o)
}

#[test]
fn an_append_only_key_backs_up_refuses_prune_with_the_fix_and_an_admin_key_prunes() {
    let s3 = S3Server::shared();
    let b = Bench::new(s3, &[]);
    let proxy = DenyProxy::start(s3.port(), "server-key");
    let src = b.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.txt"), b"first").unwrap();
    let cfg = b.write(
        "opsagent.toml",
        &format!(
            "[agent]\nhostname = \"web-01\"\nstate_dir = \"{state}\"\ntimezone = \"UTC\"\n\
             [storage]\ntype = \"s3\"\nbucket = \"{bucket}\"\nendpoint = \"{ep}\"\n\
             access_key_id = \"server-key\"\nsecret_access_key_file = \"{sec}\"\n\
             [[media]]\nname = \"up\"\npaths = [\"{src}\"]\nschedule = \"@daily\"\nkeep = {{ last = 1 }}\n\
             anomaly_drop = \"off\"\n",
            state = b.path("state").display(),
            bucket = b.bucket,
            ep = proxy.endpoint(),
            sec = b.path("s3").display(),
            src = src.display(),
        ),
    );
    let manifests = || {
        s3.list_keys(&b.bucket)
            .into_iter()
            .filter(|(k, _)| k.contains("/snapshots/"))
            .count()
    };
    for content in ["first", "second"] {
        std::fs::write(src.join("a.txt"), content).unwrap();
        let out = opsagent(&cfg, &["backup", "up"]);
        assert!(out.status.success(), "{}", text(&out));
    }
    // Retention wanted to remove the first snapshot and was refused: nothing lost.
    assert_eq!(manifests(), 2);
    assert!(proxy.refused.load(Ordering::SeqCst) >= 1);
    let cat = Catalog::open(&b.path("state/catalog.sqlite")).unwrap();
    let prune = cat
        .last_run_of("up", "prune")
        .unwrap()
        .expect("a prune run");
    assert_eq!(prune.status, RunStatus::Failed, "{prune:?}");
    let why = prune.error.unwrap_or_default();
    assert!(
        why.contains("append-only") && why.contains("--credentials"),
        "{why}"
    );

    // `opsagent prune` with the server's key: exit 1, the message names the fix.
    let out = opsagent(&cfg, &["prune"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("--credentials FILE"), "{}", text(&out));
    assert_eq!(manifests(), 2);

    // A credentials file that is wrong: exit 2 at its position.
    let bad = b.write(
        "bad-admin.toml",
        "access_key_id = \"admin-key\"\nsecret = \"x\"\n",
    );
    let out = opsagent(&cfg, &["prune", "--credentials", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("bad-admin.toml:2:1"), "{}", text(&out));

    // With a key that may delete: pruned to one snapshot.
    let admin = b.write(
        "admin.toml",
        "access_key_id = \"admin-key\"\nsecret_access_key = \"admin-secret\"\n",
    );
    let out = opsagent(&cfg, &["prune", "--credentials", admin.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(manifests(), 1);
    assert!(!text(&out).contains("admin-secret"), "{}", text(&out));
}
