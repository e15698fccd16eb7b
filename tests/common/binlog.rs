//! The binary log archive's bench: a job `main` with `binlog = true` on a real MariaDB writing
//! a binary log, its bucket on the S3 server, and the archive read back (segments, rebuilt
//! files), shared by the binlog test binaries.

use super::agent::opsagent;
use super::agent::{agent_table, host_checks_off, s3_storage_table};
use super::mariadb::MariaDb;
use super::s3::{S3Server, SECRET_KEY};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub struct Bench {
    pub dir: tempfile::TempDir,
    pub bucket: String,
    pub db: String,
    pub cfg: PathBuf,
}

impl Bench {
    /// A job `main` archiving `server`'s binary log to a new bucket of the shared S3 server.
    pub fn new(server: &MariaDb) -> Bench {
        Bench::on(server, S3Server::shared())
    }

    /// The same on `s3`.
    pub fn on(server: &MariaDb, s3: &S3Server) -> Bench {
        let dir = tempfile::tempdir().unwrap();
        let sec = crate::common::write_secret(dir.path(), "s3", SECRET_KEY);
        let bucket = s3.new_bucket();
        let db = crate::common::unique_name("bl").replace('-', "_");
        server.sql(&format!("CREATE DATABASE `{db}`"));
        server.sql_db(&db, "CREATE TABLE orders (id INT PRIMARY KEY, note TEXT)");
        let text = agent_table("web-01", &dir.path().join("state"), "")
            + &s3_storage_table(s3, &bucket, &sec)
            + &host_checks_off()
            + &format!(
                "[[mysql]]\nname = \"main\"\ndatabases = [\"{db}\"]\nsocket = \"{}\"\nuser = \"root\"\n\
                 schedule = \"30 2 * * *\"\nbinlog = true\nbinlog_interval = \"1s\"\n\
                 keep = {{ last = 1 }}\n",
                server.socket().display()
            );
        let cfg = dir.path().join("opsagent.toml");
        std::fs::write(&cfg, text).unwrap();
        Bench {
            dir,
            bucket,
            db,
            cfg,
        }
    }

    /// Segment manifests in the bucket: (file, start, end), sorted.
    pub fn segments(&self) -> Vec<(String, u64, u64)> {
        self.segments_in(S3Server::shared())
    }

    /// The same on `s3`.
    pub fn segments_in(&self, s3: &S3Server) -> Vec<(String, u64, u64)> {
        let mut out: Vec<(String, u64, u64)> = (s3.list_keys(&self.bucket).into_iter())
            .filter(|(k, _)| k.contains("/binlog/main/") && k.ends_with(".json"))
            .map(|(k, _)| {
                let m: serde_json::Value =
                    serde_json::from_slice(&s3.get_object(&self.bucket, &k).unwrap()).unwrap();
                let n = |f: &str| m[f].as_u64().unwrap();
                (
                    m["file"].as_str().unwrap().to_string(),
                    n("start"),
                    n("end"),
                )
            })
            .collect();
        out.sort();
        out
    }

    /// Each file's bytes, rebuilt from its segments (which must start at 0 and touch).
    pub fn rebuilt(&self) -> BTreeMap<String, Vec<u8>> {
        self.rebuilt_in(S3Server::shared())
    }

    /// The same on `s3`.
    pub fn rebuilt_in(&self, s3: &S3Server) -> BTreeMap<String, Vec<u8>> {
        let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        for (file, start, end) in self.segments_in(s3) {
            let bytes = files.entry(file.clone()).or_default();
            assert_eq!(
                bytes.len() as u64,
                start,
                "{file}: a gap or an overlap at {start}"
            );
            let key = format!("web-01/binlog/main/{file}/{start:012}-{end:012}.zst");
            let packed = s3.get_object(&self.bucket, &key).expect("segment object");
            bytes.extend(zstd::decode_all(&packed[..]).unwrap());
            assert_eq!(
                bytes.len() as u64,
                end,
                "{file}: segment {start}-{end} size"
            );
        }
        files
    }
}

/// The server's (file, position) now.
pub fn master(server: &MariaDb) -> (String, u64) {
    let out = server.sql("SHOW MASTER STATUS");
    let mut f = out.split_whitespace();
    (
        f.next().unwrap().to_string(),
        f.next().unwrap().parse().unwrap(),
    )
}

/// Waits until the archive has the server's current position.
pub fn caught_up(b: &Bench, server: &MariaDb) {
    caught_up_in(b, server, S3Server::shared())
}

/// The same on `s3`.
pub fn caught_up_in(b: &Bench, server: &MariaDb, s3: &S3Server) {
    let (file, pos) = master(server);
    let t0 = Instant::now();
    while !b
        .segments_in(s3)
        .iter()
        .any(|(f, _, e)| *f == file && *e >= pos)
    {
        let log = std::fs::read_to_string(b.dir.path().join("daemon.log")).unwrap_or_default();
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the archive did not reach {file}:{pos}: {:?}\n{log}",
            b.segments_in(s3)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The server's clock, as `YYYY-MM-DD HH:MM:SS` UTC, `offset` seconds from now.
pub fn server_time(server: &MariaDb, offset: i64) -> String {
    server
        .sql(&format!(
            "SELECT DATE_FORMAT(CONVERT_TZ(NOW() + INTERVAL {offset} SECOND, @@session.time_zone, '+00:00'), '%Y-%m-%d %H:%i:%s')"
        ))
        .trim()
        .to_string()
}

/// `restore --date DATE --to-database DB --yes`.
pub fn restore_to(b: &Bench, date: &str, db: &str) -> std::process::Output {
    opsagent(
        &b.cfg,
        &["restore", "--date", date, "--to-database", db, "--yes"],
    )
}
