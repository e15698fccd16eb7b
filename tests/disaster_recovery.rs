//! The disaster-recovery drill, end to end on real components: two databases with the
//! adversarial schema of `support/nasty_sql.rs` (blobs holding every byte value, odd table and
//! column names, views, triggers, routines, an event, a sequence, versioned and partitioned
//! tables) and the tricky media tree of `support/media_tree.rs` (odd and non-UTF-8 names,
//! nested and empty directories, symlinks, modes, nanosecond times) are backed up to local
//! storage by one machine. Then the machine is gone: a fresh MariaDB server with no
//! databases, a new state dir (empty catalog), the upload directory emptied, and a config that
//! points at the same storage. One `opsagent restore --all --date today --yes` brings back every
//! database (checksums and definitions equal) and every file (contents and metadata equal), and its last line
//! is the recovery time. `--dry-run` changes nothing; `--all` with `--job` is a usage error; a
//! second run refuses the now non-empty databases, and `--in-place` replaces them.

mod common;
#[allow(dead_code)]
#[path = "support/media_tree.rs"]
mod media_tree;
#[path = "support/nasty_sql.rs"]
mod nasty_sql;

use common::agent::opsagent;
use common::mariadb::MariaDb;
use common::output_text;
use media_tree::{assert_identical, tricky_tree};
use nasty_sql::fingerprint;
use std::path::{Path, PathBuf};

const SHOP: &str = "dr-shop";
const CRM: &str = "dr crm";

/// The user databases on `db`.
fn user_databases(db: &MariaDb) -> Vec<String> {
    let system = [
        "information_schema",
        "mysql",
        "performance_schema",
        "sys",
        "test",
    ];
    db.sql("SHOW DATABASES")
        .lines()
        .filter(|d| !system.contains(d))
        .map(str::to_string)
        .collect()
}

fn fingerprints(db: &MariaDb) -> Vec<Vec<String>> {
    [SHOP, CRM].iter().map(|d| fingerprint(db, d)).collect()
}

fn config(dir: &Path, state: &str, db: &MariaDb, uploads: &Path) -> PathBuf {
    let text = common::agent::agent_table("web-01", &dir.join(state), "")
        + &format!(
            "[storage]\ntype = \"local\"\npath = \"{storage}\"\n\
             [[mysql]]\nname = \"main\"\ndatabases = [\"{SHOP}\", \"{CRM}\"]\nsocket = \"{sock}\"\nuser = \"root\"\nschedule = \"30 2 * * *\"\n\
             [[media]]\nname = \"uploads\"\npaths = [\"{up}\"]\nschedule = \"@daily\"\n",
            storage = dir.join("storage").display(),
            sock = db.socket().display(),
            up = uploads.display(),
        );
    let p = dir.join(format!("{state}.toml"));
    std::fs::write(&p, text).unwrap();
    p
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn one_command_brings_back_every_database_and_file_on_a_fresh_machine() {
    let dir = tempfile::tempdir().unwrap();
    let uploads = dir.path().join("www/uploads");
    std::fs::create_dir_all(&uploads).unwrap();
    tricky_tree(&uploads, 2, 300);
    // What the uploads were, kept aside (`cp -a` keeps modes, times and symlinks as they are).
    let reference = dir.path().join("reference");
    let cp = std::process::Command::new("cp")
        .arg("-a")
        .arg(&uploads)
        .arg(&reference)
        .status()
        .unwrap();
    assert!(cp.success());

    // The old machine: back up both databases and the uploads.
    let old = MariaDb::start();
    nasty_sql::create(&old, SHOP);
    nasty_sql::create(&old, CRM);
    let before = fingerprints(&old);
    let cfg_old = config(dir.path(), "state-old", &old, &uploads);
    let out = opsagent(&cfg_old, &["backup"]);
    assert!(out.status.success(), "backup: {}", output_text(&out));
    drop(old);

    // The new machine: a MariaDB with no databases, an empty state dir, the uploads emptied.
    let new = MariaDb::start();
    assert_eq!(user_databases(&new), Vec::<String>::new());
    std::fs::remove_dir_all(&uploads).unwrap();
    std::fs::create_dir(&uploads).unwrap();
    let cfg = config(dir.path(), "state-new", &new, &uploads);

    // Usage errors: exit 2, nothing read or written.
    for extra in [
        &["--job", "main"][..],
        &["--to-dir", "/tmp/x"],
        &["--database", SHOP],
    ] {
        let mut args = vec!["restore", "--all", "--date", "today", "--yes"];
        args.extend_from_slice(extra);
        let out = opsagent(&cfg, &args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{extra:?}: {}",
            output_text(&out)
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("cannot be used with"),
            "{}",
            output_text(&out)
        );
    }

    // The plan, and nothing changed.
    let out = opsagent(&cfg, &["restore", "--all", "--date", "today", "--dry-run"]);
    assert!(out.status.success(), "dry run: {}", output_text(&out));
    let plan = stdout(&out);
    for want in [
        "disaster recovery plan: as of `today`",
        "databases first, then files",
        "`dr-shop` (job main): snapshot",
        "`dr crm` (job main): snapshot",
        "files of job uploads: snapshot",
        "the dump loads as a temporary account opsagent_load_",
        "→ OVER the original paths",
        "dry run: nothing was changed",
    ] {
        assert!(plan.contains(want), "missing {want:?} in:\n{plan}");
    }
    let shop_at = plan.find("`dr-shop`").unwrap();
    assert!(
        plan.find("files of job uploads").unwrap() > shop_at,
        "{plan}"
    );
    assert_eq!(user_databases(&new), Vec::<String>::new());
    assert_eq!(std::fs::read_dir(&uploads).unwrap().count(), 0);

    // The recovery.
    let out = opsagent(&cfg, &["restore", "--all", "--date", "today", "--yes"]);
    let text = stdout(&out);
    assert!(out.status.success(), "restore --all: {}", output_text(&out));
    eprintln!("{text}");
    let last = text.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("recovered 2 databases and 1 media tree (")
            && last.ends_with("(recovery time)"),
        "last line: {last}\n{}",
        output_text(&out)
    );
    let mut dbs = user_databases(&new);
    dbs.sort();
    assert_eq!(dbs, vec![CRM.to_string(), SHOP.to_string()]);
    assert_eq!(
        fingerprints(&new),
        before,
        "the databases differ after the recovery"
    );
    assert_identical(&reference, &uploads);
    assert!(
        !dir.path().join("state-new").exists(),
        "the recovery wrote into the state dir"
    );

    // Again: the databases hold tables now, so it refuses and changes nothing.
    let out = opsagent(&cfg, &["restore", "--all", "--date", "today", "--yes"]);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`dr-shop` (job main) already exists with ") && err.contains("add --in-place"),
        "{}",
        output_text(&out)
    );
    assert_eq!(user_databases(&new).len(), 2);

    // With --in-place it replaces them (the old tables kept) and writes over the files.
    let out = opsagent(
        &cfg,
        &["restore", "--all", "--in-place", "--date", "today", "--yes"],
    );
    assert!(out.status.success(), "--in-place: {}", output_text(&out));
    let kept = user_databases(&new)
        .iter()
        .filter(|d| d.contains("_prerestore_"))
        .count();
    assert_eq!(kept, 2, "{:?}", user_databases(&new));
    assert_eq!(
        fingerprints(&new),
        before,
        "the databases differ after --in-place"
    );
    assert_identical(&reference, &uploads);
}
