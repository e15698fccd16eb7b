//! Client-side encryption with age, end to end on the real MariaDB and S3 servers and the real
//! `age` CLI: a server that holds only the recipient backs up, lists and refuses to restore; the
//! bucket holds no readable SQL; the identity restores (and drills) it; `age -d | zstd -d` gives
//! back the SQL by hand; a flipped byte or a wrong key is refused with a clear message.

mod common;

use common::agent::opsagent;

use common::mariadb::MariaDb;
use common::s3::{S3Server, ACCESS_KEY, SECRET_KEY};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The first line of every age file.
const AGE_MAGIC: &[u8] = b"age-encryption.org/v1\n";

struct Bench {
    dir: tempfile::TempDir,
    bucket: String,
    db: String,
    marker: String,
}

impl Bench {
    fn new() -> Bench {
        let (db, s3) = (MariaDb::shared(), S3Server::shared());
        let dir = tempfile::tempdir().unwrap();
        common::write_secret(dir.path(), "s3", SECRET_KEY);
        let name = format!("enc_{}", common::unique_name("e").replace('-', "_"));
        let marker = format!("ZEBRA-{}", common::unique_name("m"));
        db.sql(&format!("CREATE DATABASE `{name}`"));
        // ~200 KiB of SQL: several 64 KiB age chunks.
        db.sql_db(&name, &format!(
            "CREATE TABLE secrets (id INT PRIMARY KEY, note VARCHAR(100));\
             INSERT INTO secrets SELECT seq, CONCAT('{marker} row ', seq, ' ', MD5(seq)) FROM seq_1_to_3000;"
        ));
        Bench {
            dir,
            bucket: s3.new_bucket(),
            db: name,
            marker,
        }
    }

    /// A config whose `[encryption]` section is `encryption`.
    fn config(&self, name: &str, encryption: &str) -> PathBuf {
        let (db, s3) = (MariaDb::shared(), S3Server::shared());
        let text = format!(
            "[agent]\nhostname = \"web-01\"\nstate_dir = \"{state}\"\ntimezone = \"UTC\"\n\
             [storage]\ntype = \"s3\"\nbucket = \"{bucket}\"\nendpoint = \"{ep}\"\naccess_key_id = \"{ACCESS_KEY}\"\nsecret_access_key_file = \"{sec}\"\n\
             [[mysql]]\nname = \"main\"\ndatabases = [\"{name}\"]\nsocket = \"{sock}\"\nuser = \"root\"\nschedule = \"30 2 * * *\"\n\
             [encryption]\n{encryption}\n",
            state = self.dir.path().join(format!("state-{name}")).display(),
            bucket = self.bucket,
            ep = s3.endpoint(),
            sec = self.dir.path().join("s3").display(),
            name = self.db,
            sock = db.socket().display(),
        );
        let p = self.dir.path().join(format!("{name}.toml"));
        std::fs::write(&p, text).unwrap();
        p
    }

    fn checksum(&self, db: &str) -> String {
        let out = MariaDb::shared().sql(&format!("CHECKSUM TABLE `{db}`.secrets EXTENDED"));
        out.split_whitespace().last().unwrap().to_string()
    }
}

/// Makes a key with the real `age-keygen`; returns (key file, recipient).
fn keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let key = dir.join(name);
    let out = Command::new("age-keygen")
        .arg("-o")
        .arg(&key)
        .output()
        .expect("age-keygen is installed (scripts/install-test-deps)");
    assert!(out.status.success(), "{}", common::output_text(&out));
    let out = Command::new("age-keygen")
        .arg("-y")
        .arg(&key)
        .output()
        .unwrap();
    let recipient = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(recipient.starts_with("age1"), "{recipient}");
    (key, recipient)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// `age -d -i key file | zstd -d`, as the README tells an admin.
fn decrypt_by_hand(key: &Path, file: &Path) -> String {
    let mut age = Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(key)
        .arg(file)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = Command::new("zstd")
        .arg("-d")
        .stdin(age.stdout.take().unwrap())
        .output()
        .unwrap();
    assert!(age.wait().unwrap().success(), "age -d failed");
    assert!(out.status.success(), "{}", common::output_text(&out));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn encrypted_bucket_read_without_identity_nothing_readable_restore_with_identity_works() {
    let (db, s3) = (MariaDb::shared(), S3Server::shared());
    let b = Bench::new();
    let (key, recipient) = keygen(b.dir.path(), "key.txt");

    // The backup server holds only the recipient.
    let server = b.config("server", &format!("recipients = [\"{recipient}\"]"));
    let out = opsagent(&server, &["backup"]);
    assert!(out.status.success(), "{}", common::output_text(&out));

    // Every object in the bucket, read as anyone with bucket access would: no SQL anywhere.
    let objects = s3.list_keys(&b.bucket);
    let mut dumps = Vec::new();
    for (k, _) in &objects {
        let body = s3.get_object(&b.bucket, k).unwrap();
        for needle in [
            b.marker.as_bytes(),
            b"CREATE TABLE",
            b"INSERT INTO",
            b"secrets",
        ] {
            assert!(
                !contains(&body, needle),
                "object `{k}` holds {:?}",
                String::from_utf8_lossy(needle)
            );
        }
        if k.contains("/snapshots/") {
            let text = String::from_utf8(body).unwrap();
            assert!(
                text.contains("\"encryption\"") && text.contains(&recipient),
                "{text}"
            );
        } else if !k.ends_with("/opsagent-owner.json") {
            // Everything but manifests and the owner marker (plaintext by design, checked for
            // SQL above like every object) is an encrypted dump.
            assert!(k.ends_with(".sql.zst.age"), "{k}");
            assert!(body.starts_with(AGE_MAGIC), "`{k}` is not an age file");
            dumps.push((k.clone(), body));
        }
    }
    assert_eq!(dumps.len(), 1, "{objects:?}");

    // check-config says drills cannot work here.
    let out = opsagent(&server, &["check-config"]);
    assert!(
        common::output_text(&out).contains("every drill will fail"),
        "{}",
        common::output_text(&out)
    );

    // Listing works without the identity; restoring and drilling refuse, saying what to do.
    let out = opsagent(&server, &["snapshots"]);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains(&b.db),
        "{}",
        common::output_text(&out)
    );
    let target = format!("{}_back", b.db);
    let out = opsagent(
        &server,
        &[
            "restore",
            "--date",
            "now",
            "--to-database",
            &target,
            "--yes",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}", common::output_text(&out));
    assert!(
        err.contains("snapshot") && err.contains(&b.db) && err.contains("identity_file"),
        "{err}"
    );
    let out = opsagent(&server, &["verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", common::output_text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("identity_file"),
        "{}",
        common::output_text(&out)
    );
    assert!(!db.sql("SHOW DATABASES").contains(&target));

    // A wrong key is refused, naming both sides.
    let (wrong_key, wrong_recipient) = keygen(b.dir.path(), "other.txt");
    let wrong = b.config(
        "wrong",
        &format!(
            "recipients = [\"{recipient}\"]\nidentity_file = \"{}\"",
            wrong_key.display()
        ),
    );
    let out = opsagent(
        &wrong,
        &[
            "restore",
            "--date",
            "now",
            "--to-database",
            &target,
            "--yes",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}", common::output_text(&out));
    assert!(
        err.contains(&recipient) && err.contains(&wrong_recipient) && err.contains("age-keygen -y"),
        "{err}"
    );

    // With the identity: the restore gives back the same data, and the drill passes.
    let admin = b.config(
        "admin",
        &format!(
            "recipients = [\"{recipient}\"]\nidentity_file = \"{}\"",
            key.display()
        ),
    );
    let out = opsagent(
        &admin,
        &[
            "restore",
            "--date",
            "now",
            "--to-database",
            &target,
            "--yes",
        ],
    );
    assert!(out.status.success(), "{}", common::output_text(&out));
    assert_eq!(b.checksum(&target), b.checksum(&b.db));
    let out = opsagent(&admin, &["verify"]);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("3000 rows"),
        "{}",
        common::output_text(&out)
    );

    // By hand, without opsagent: `age -d -i key | zstd -d` is the SQL.
    let (dump_key, stored) = &dumps[0];
    let file = b.dir.path().join("shop.sql.zst.age");
    std::fs::write(&file, stored).unwrap();
    let sql = decrypt_by_hand(&key, &file);
    assert!(sql.contains("CREATE TABLE `secrets`") && sql.contains(&b.marker));
    assert!(
        sql.trim_end().ends_with("-- Dump completed"),
        "{}",
        &sql[sql.len() - 200..]
    );
    // `--to-file x.sql.zst.age` copies the stored bytes, no key needed.
    let copy = b.dir.path().join("copy.sql.zst.age");
    let out = opsagent(
        &server,
        &[
            "restore",
            "--date",
            "now",
            "--to-file",
            copy.to_str().unwrap(),
            "--yes",
        ],
    );
    assert!(out.status.success(), "{}", common::output_text(&out));
    assert!(std::fs::read(&copy).unwrap() == *stored);

    // One byte flipped in the stored dump: refused, naming the object.
    let mut bad = stored.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x01;
    s3.put_object(&b.bucket, dump_key, &bad);
    let again = format!("{}_again", b.db);
    let out = opsagent(
        &admin,
        &["restore", "--date", "now", "--to-database", &again, "--yes"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}", common::output_text(&out));
    assert!(
        err.contains("is corrupt") && err.contains(dump_key.trim_start_matches("web-01/")),
        "{err}"
    );
    assert!(
        !db.sql("SHOW DATABASES").contains(&again),
        "a refused restore left a database"
    );
}

#[test]
fn identity_file_with_loose_mode_is_warned_about_and_never_printed() {
    use std::os::unix::fs::PermissionsExt;
    let b = Bench::new();
    let (key, recipient) = keygen(b.dir.path(), "key.txt");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let cfg = b.config(
        "loose",
        &format!(
            "recipients = [\"{recipient}\"]\nidentity_file = \"{}\"",
            key.display()
        ),
    );
    let out = opsagent(&cfg, &["check-config"]);
    let all = common::output_text(&out);
    assert!(out.status.success(), "{all}");
    assert!(
        all.contains("identity file")
            && all.contains("can be read by every user")
            && all.contains("chmod 600"),
        "{all}"
    );
    assert!(all.contains("encrypted with age to 1 recipient"), "{all}");
    let secret = std::fs::read_to_string(&key).unwrap();
    let secret = secret
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .unwrap();
    assert!(!all.contains(secret), "{all}");
}

#[test]
fn example_encryption_section_is_valid() {
    // The commented `[encryption]` block of config/opsagent.example.toml, uncommented (without
    // its recipients_file, which names a file that does not exist here).
    let example = include_str!("../config/opsagent.example.toml");
    let block: String = example
        .lines()
        .skip_while(|l| *l != "# [encryption]")
        .take_while(|l| l.starts_with('#'))
        .filter(|l| !l.contains("recipients_file"))
        .map(|l| format!("{}\n", l.trim_start_matches("# ")))
        .collect();
    assert!(block.starts_with("[encryption]\nrecipients = "), "{block}");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("x.toml");
    let storage = format!(
        "[storage]\ntype = \"local\"\npath = \"{}\"\n",
        dir.path().display()
    );
    std::fs::write(&cfg, format!("{storage}{block}")).unwrap();
    let out = opsagent(&cfg, &["check-config"]);
    let all = common::output_text(&out);
    assert!(out.status.success(), "{all}");
    assert!(all.contains("encrypted with age to 1 recipient"), "{all}");
}
