//! Storage adapter against the real moto S3 server and a real local directory: round trips,
//! bounded memory for a 200 MiB streamed upload (measured in a child process), nothing left
//! behind by failed uploads, and errors that name endpoint and bucket when S3 is down.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::s3::{S3Server, ACCESS_KEY, REGION, SECRET_KEY};
use opsagent::secret::Secret;
use opsagent::storage::{ObjectInfo, Storage, StorageError, StorageSpec};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

const MIB: usize = 1 << 20;

fn s3_spec(s3: &S3Server, bucket: &str, prefix: &str) -> StorageSpec {
    StorageSpec::S3 {
        bucket: bucket.to_string(),
        prefix: prefix.to_string(),
        endpoint: Some(s3.endpoint()),
        region: REGION.to_string(),
        path_style: true,
        access_key_id: Some(ACCESS_KEY.to_string()),
        secret_access_key: Some(Secret::new(SECRET_KEY)),
        object_lock: None,
    }
}

fn local_spec(dir: &Path, prefix: &str) -> StorageSpec {
    StorageSpec::Local {
        path: dir.to_path_buf(),
        prefix: prefix.to_string(),
    }
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Deterministic, incompressible bytes (xorshift64*), produced chunk by chunk.
struct PseudoRandom(u64);

impl PseudoRandom {
    fn chunk(&mut self, len: usize) -> Bytes {
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let word = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
            out.extend_from_slice(&word[..word.len().min(len - out.len())]);
        }
        Bytes::from(out)
    }
}

/// Keys that exercise spaces, unicode and dashes, with their contents.
fn sample_objects() -> Vec<(&'static str, Bytes)> {
    vec![
        (
            "mysql/main/shop/2026-11-20T02-30-00.sql.zst",
            Bytes::from_static(b"dump"),
        ),
        ("media/with space/a b.txt", Bytes::from_static(b"spaces")),
        (
            "m\u{e9}dia/\u{65e5}\u{672c}/\u{fc}-\u{df}.txt",
            Bytes::from_static(b"unicode"),
        ),
        ("dash-key-1", Bytes::from_static(b"dash")),
        ("empty", Bytes::new()),
        ("nested/deep/er/x", PseudoRandom(7).chunk(100_000)),
    ]
}

/// Puts, gets, streams, lists, checks and deletes objects; the same on every backend.
async fn round_trip(storage: &Storage) {
    storage.check_access().await.expect("check_access");
    let objects = sample_objects();
    put_get_list(storage, &objects).await;
    streamed_upload(storage).await;
    for (key, _) in &objects {
        storage.delete(key).await.expect(key);
        assert!(!storage.exists(key).await.unwrap(), "{key}");
    }
    storage.delete("multi/part").await.unwrap();
    let missing = storage.delete("never/existed").await;
    missing.expect("deleting a missing key is Ok");
    let err = storage.get_bytes("dash-key-1").await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(matches!(err, StorageError::NotFound { ref key, .. } if key == "dash-key-1"));
    let err = storage.reader("never/existed").await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert_eq!(storage.list("").await.unwrap(), vec![]);
    assert!(storage.put_bytes("../escape", Bytes::new()).await.is_err());
}

async fn put_get_list(storage: &Storage, objects: &[(&str, Bytes)]) {
    for (key, data) in objects {
        let info = storage.put_bytes(key, data.clone()).await.expect(key);
        assert_eq!((info.key.as_str(), info.size), (*key, data.len() as u64));
        assert_eq!(info.sha256, sha256_hex(data), "{key}");
        assert_eq!(storage.get_bytes(key).await.expect(key), *data, "{key}");
        assert!(storage.exists(key).await.unwrap(), "{key}");
    }
    let mut want: Vec<ObjectInfo> = objects
        .iter()
        .map(|(k, d)| ObjectInfo {
            key: k.to_string(),
            size: d.len() as u64,
        })
        .collect();
    want.sort();
    assert_eq!(storage.list("").await.unwrap(), want);
    for prefix in ["mysql/", "m", "nested/deep/", "nested/de", "none/"] {
        let expected: Vec<_> = want
            .iter()
            .filter(|o| o.key.starts_with(prefix))
            .cloned()
            .collect();
        let got = storage.list(prefix).await.unwrap();
        assert_eq!(got, expected, "list({prefix:?})");
    }
    let mut reader = storage.reader("nested/deep/er/x").await.unwrap();
    assert_eq!(reader.size(), Some(100_000));
    let mut streamed = Vec::new();
    reader.read_to_end(&mut streamed).await.unwrap();
    assert_eq!(streamed, objects[5].1);
}

/// A streamed upload of several parts (8 + 8 + 1 MiB on S3), written in odd-sized chunks:
/// big ones (held as they are), small ones (gathered), a part boundary inside each kind.
async fn streamed_upload(storage: &Storage) {
    let mut source = PseudoRandom(11);
    let mut writer = storage.writer("multi/part").await.unwrap();
    let mut hasher = Sha256::new();
    let mut lens = vec![1, 3 * MIB + 5, 100, 70_000, 65_535];
    lens.extend(std::iter::repeat_n(1000, 1000));
    lens.extend([9 * MIB, 2 * MIB + 500_000]);
    // Up to 17 MiB - 1 in all: the last few small writes straddle the second part's end.
    let sum: usize = lens.iter().sum();
    lens.extend(std::iter::repeat_n(999, (17 * MIB - 1 - sum) / 999));
    lens.push(17 * MIB - 1 - lens.iter().sum::<usize>());
    for len in lens {
        let chunk = source.chunk(len);
        hasher.update(&chunk);
        writer.write(chunk).await.unwrap();
    }
    let info = writer.finish().await.unwrap();
    assert_eq!(info.size, 17 * MIB as u64 - 1);
    assert_eq!(info.sha256, hex::encode(hasher.finalize()));
    let back = storage.get_bytes("multi/part").await.unwrap();
    assert_eq!(sha256_hex(&back), info.sha256);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_round_trip() {
    let s3 = S3Server::shared();
    let bucket = s3.new_bucket();
    let storage = Storage::open(&s3_spec(s3, &bucket, "web-01")).unwrap();
    assert_eq!(
        storage.describe(),
        format!("s3://{bucket}/web-01/ at {}", s3.endpoint())
    );
    storage
        .put_bytes("mysql/x", Bytes::from_static(b"x"))
        .await
        .unwrap();
    assert_eq!(
        s3.list_keys(&bucket),
        vec![("web-01/mysql/x".to_string(), 1)]
    );
    assert_eq!(
        s3.get_object(&bucket, "web-01/mysql/x").as_deref(),
        Some(&b"x"[..])
    );
    storage.delete("mysql/x").await.unwrap();
    round_trip(&storage).await;
    assert!(s3.list_keys(&bucket).is_empty());
    assert!(s3.list_multipart_uploads(&bucket).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_without_prefix_and_missing_bucket() {
    let s3 = S3Server::shared();
    let bucket = s3.new_bucket();
    let storage = Storage::open(&s3_spec(s3, &bucket, "")).unwrap();
    storage
        .put_bytes("top", Bytes::from_static(b"t"))
        .await
        .unwrap();
    assert_eq!(s3.list_keys(&bucket), vec![("top".to_string(), 1)]);
    assert_eq!(storage.list("").await.unwrap().len(), 1);

    let missing = Storage::open(&s3_spec(s3, "no-such-bucket-here", "p")).unwrap();
    let err = missing.check_access().await.unwrap_err().to_string();
    assert!(
        err.contains("no-such-bucket-here") && err.contains(&s3.endpoint()),
        "{err}"
    );
    assert!(err.contains("bucket does not exist"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(&local_spec(dir.path(), "web-01")).unwrap();
    let root = dir.path().join("web-01");
    assert_eq!(
        storage.describe(),
        format!("local directory {}/", root.display())
    );
    storage
        .put_bytes("mysql/x", Bytes::from_static(b"x"))
        .await
        .unwrap();
    assert_eq!(std::fs::read(root.join("mysql/x")).unwrap(), b"x");
    assert!(root.join(".opsagent-tmp").is_dir(), "temp dir exists");
    assert_eq!(
        storage.list("").await.unwrap().len(),
        1,
        "temp dir never listed"
    );
    storage.delete("mysql/x").await.unwrap();
    assert!(!root.join("mysql").exists(), "empty directories are pruned");
    round_trip(&storage).await;
    assert_eq!(
        std::fs::read_dir(root.join(".opsagent-tmp"))
            .unwrap()
            .count(),
        0
    );
    assert!(storage
        .put_bytes(".opsagent-tmp/x", Bytes::new())
        .await
        .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_check_access_reports_missing_directory() {
    let dir = tempfile::tempdir().unwrap();
    let gone = dir.path().join("not-there");
    let storage = Storage::open(&local_spec(&gone, "p")).unwrap();
    let err = storage.check_access().await.unwrap_err().to_string();
    assert!(
        err.contains(&gone.display().to_string()) && err.contains("does not exist"),
        "{err}"
    );
    // A missing prefix directory is fine: the first upload creates it.
    let storage = Storage::open(&local_spec(dir.path(), "new-host")).unwrap();
    storage.check_access().await.unwrap();
}

const RSS_CHILD_ENV: &str = "OPSAGENT_TEST_RSS_CHILD";
const RSS_TOTAL: usize = 200 * MIB;
const RSS_CHUNK: usize = 256 * 1024;
const RSS_SEED: u64 = 0x5EED_0000_0000_0001;

/// Parent: runs [`rss_child`] in a fresh process and checks its peak RSS and the object.
#[test]
fn s3_streamed_upload_of_200_mib_stays_under_64_mib_rss() {
    let s3 = S3Server::shared();
    let bucket = s3.new_bucket();
    let started = Instant::now();
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "rss_child", "--nocapture", "--test-threads=1"])
        .env(RSS_CHILD_ENV, format!("{} {bucket}", s3.endpoint()))
        .output()
        .expect("re-run the test binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("RSS-CHILD "))
        .expect(&stdout)
        .1;
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (size, sha256, hwm_kib): (u64, &str, u64) = (
        fields[0].parse().unwrap(),
        fields[1],
        fields[2].parse().unwrap(),
    );
    eprintln!(
        "200 MiB upload: peak RSS {hwm_kib} KiB ({} KiB before the upload), {:?} in all",
        fields[3],
        started.elapsed()
    );
    assert!(
        hwm_kib < 64 * 1024,
        "peak RSS {hwm_kib} KiB is not under 64 MiB"
    );
    assert_eq!(size, RSS_TOTAL as u64);

    let mut source = PseudoRandom(RSS_SEED);
    let mut hasher = Sha256::new();
    for _ in 0..RSS_TOTAL / RSS_CHUNK {
        hasher.update(source.chunk(RSS_CHUNK));
    }
    assert_eq!(
        sha256,
        hex::encode(hasher.finalize()),
        "PutInfo.sha256 is the generated data's"
    );
    assert_eq!(
        s3.list_keys(&bucket),
        vec![("big/dump.sql.zst".to_string(), RSS_TOTAL as u64)]
    );
    let stored = s3.get_object(&bucket, "big/dump.sql.zst").unwrap();
    assert_eq!(
        sha256_hex(&stored),
        sha256,
        "the stored bytes are the generated data"
    );
    assert!(s3.list_multipart_uploads(&bucket).is_empty());
}

/// Child of the test above (does nothing unless its environment variable is set): streams
/// 200 MiB of generated data to S3 and prints size, SHA-256 and VmHWM.
#[test]
fn rss_child() {
    let Ok(target) = std::env::var(RSS_CHILD_ENV) else {
        return;
    };
    let (endpoint, bucket) = target.split_once(' ').unwrap();
    let spec = StorageSpec::S3 {
        bucket: bucket.to_string(),
        prefix: String::new(),
        endpoint: Some(endpoint.to_string()),
        region: REGION.to_string(),
        path_style: true,
        access_key_id: Some(ACCESS_KEY.to_string()),
        secret_access_key: Some(Secret::new(SECRET_KEY)),
        object_lock: None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (info, before) = runtime.block_on(async {
        let storage = Storage::open(&spec).unwrap();
        storage.check_access().await.unwrap();
        let before = peak_rss_kib();
        let mut writer = storage.writer("big/dump.sql.zst").await.unwrap();
        let mut source = PseudoRandom(RSS_SEED);
        for _ in 0..RSS_TOTAL / RSS_CHUNK {
            writer.write(source.chunk(RSS_CHUNK)).await.unwrap();
        }
        (writer.finish().await.unwrap(), before)
    });
    drop(runtime);
    println!(
        "RSS-CHILD {} {} {} {before}",
        info.size,
        info.sha256,
        peak_rss_kib()
    );
}

/// This process's peak resident set size (VmHWM) in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .unwrap();
    hwm.trim().trim_end_matches("kB").trim().parse().unwrap()
}

/// Writes ~30 MiB into a writer, as a dump would before its source fails.
async fn write_30_mib(storage: &Storage, key: &str) -> opsagent::storage::ObjectWriter {
    let mut writer = storage.writer(key).await.unwrap();
    let mut source = PseudoRandom(3);
    for _ in 0..30 {
        writer.write(source.chunk(MIB)).await.unwrap();
    }
    writer
}

/// Polls `done` for up to 10 s (a dropped writer aborts in the background).
async fn eventually(mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    done()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_failed_upload_leaves_nothing() {
    let s3 = S3Server::shared();
    let bucket = s3.new_bucket();
    let storage = Storage::open(&s3_spec(s3, &bucket, "web-01")).unwrap();

    let writer = write_30_mib(&storage, "mysql/aborted.sql.zst").await;
    assert_eq!(
        s3.list_multipart_uploads(&bucket).len(),
        1,
        "the upload is multipart"
    );
    writer.abort().await.unwrap();
    assert!(s3.list_multipart_uploads(&bucket).is_empty());
    assert!(s3
        .get_object(&bucket, "web-01/mysql/aborted.sql.zst")
        .is_none());

    let writer = write_30_mib(&storage, "mysql/dropped.sql.zst").await;
    drop(writer);
    assert!(
        eventually(|| s3.list_multipart_uploads(&bucket).is_empty()).await,
        "upload aborted"
    );
    assert!(s3.list_keys(&bucket).is_empty());
    assert!(!storage.exists("mysql/dropped.sql.zst").await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_failed_upload_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(&local_spec(dir.path(), "web-01")).unwrap();
    let tmp = dir.path().join("web-01/.opsagent-tmp");
    let temp_files = || std::fs::read_dir(&tmp).map_or(0, |d| d.count());

    let writer = write_30_mib(&storage, "mysql/aborted.sql.zst").await;
    assert_eq!(temp_files(), 1);
    writer.abort().await.unwrap();
    assert_eq!(temp_files(), 0);

    let writer = write_30_mib(&storage, "mysql/dropped.sql.zst").await;
    drop(writer);
    assert_eq!(temp_files(), 0, "temp file removed on drop");
    assert!(!dir.path().join("web-01/mysql/aborted.sql.zst").exists());
    assert!(!dir.path().join("web-01/mysql/dropped.sql.zst").exists());
    assert_eq!(storage.list("").await.unwrap(), vec![]);
}

/// Temp files a killed run left in `.opsagent-tmp/` go at the next upload once over an hour
/// old; a fresh one and one a running upload still holds (idle for two hours) stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_leftover_temp_files_are_swept_but_never_a_running_upload() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path().join("web-01/.opsagent-tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let two_hours_ago = std::time::SystemTime::now() - Duration::from_secs(7200);
    let age = |p: &Path| {
        let f = std::fs::File::options().write(true).open(p).unwrap();
        f.set_modified(two_hours_ago).unwrap();
    };
    let (dead, fresh) = (tmp.join("4242-0.tmp"), tmp.join("4242-1.tmp"));
    std::fs::write(&dead, vec![0u8; MIB]).unwrap();
    std::fs::write(&fresh, b"just created").unwrap();
    age(&dead);
    // A long upload of another storage handle (as another process's would be), idle for 2 h.
    let busy = Storage::open(&local_spec(dir.path(), "web-01")).unwrap();
    let writer = write_30_mib(&busy, "mysql/long.sql.zst").await;
    let live: Vec<_> = std::fs::read_dir(&tmp)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| *p != dead && *p != fresh)
        .collect();
    assert_eq!(live.len(), 1, "{live:?}");
    age(&live[0]);

    let storage = Storage::open(&local_spec(dir.path(), "web-01")).unwrap();
    storage
        .put_bytes("mysql/x", Bytes::from_static(b"x"))
        .await
        .unwrap();
    assert!(!dead.exists(), "the killed run's temp file is removed");
    assert!(fresh.exists(), "a temp file under an hour old stays");
    assert!(live[0].exists(), "the running upload's temp file stays");
    let info = writer.finish().await.unwrap();
    assert_eq!(info.size, 30 * MIB as u64);
    assert!(storage.exists("mysql/long.sql.zst").await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_down_fails_after_retries_naming_endpoint_and_bucket() {
    let mut s3 = S3Server::start();
    let bucket = s3.new_bucket();
    let storage = Storage::open(&s3_spec(&s3, &bucket, "web-01")).unwrap();
    storage
        .put_bytes("probe", Bytes::from_static(b"ok"))
        .await
        .unwrap();
    s3.stop();

    let started = Instant::now();
    let err = storage
        .put_bytes("mysql/main/shop/x.sql.zst", Bytes::from_static(b"dump"))
        .await;
    let elapsed = started.elapsed();
    let err = err.expect_err("S3 is down");
    let msg = err.to_string();
    eprintln!("after {elapsed:?}: {msg}");
    assert!(msg.contains(&s3.endpoint()), "names the endpoint: {msg}");
    assert!(
        msg.contains(&format!("s3://{bucket}/web-01/")),
        "names the bucket: {msg}"
    );
    assert!(
        msg.contains("mysql/main/shop/x.sql.zst"),
        "names the key: {msg}"
    );
    assert!(
        matches!(err, StorageError::Unreachable { attempts: 5, .. }),
        "{err:?}"
    );
    assert!(
        elapsed >= Duration::from_secs(3),
        "retried with backoff: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(20),
        "gave up in time: {elapsed:?}"
    );
}
