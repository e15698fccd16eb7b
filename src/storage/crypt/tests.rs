//! Unit tests of the age decorator on the in-memory storage; the interoperability with the
//! `age` CLI and the real S3 server is in tests/encryption.rs.

use super::*;
use sha2::Digest;
use std::path::Path;
use tokio::io::AsyncReadExt;

fn key_pair() -> (Identity, Recipient) {
    let id = Identity::generate();
    let public = id.to_public();
    (id, public)
}

fn identity_file(dir: &Path, ids: &[&Identity]) -> PathBuf {
    use age::secrecy::ExposeSecret;
    let path = dir.join("key.txt");
    let mut text = String::from("# created: by a test\n");
    for id in ids {
        text.push_str(&format!("# public key: {}\n", id.to_public()));
        text.push_str(id.to_string().expose_secret());
        text.push('\n');
    }
    std::fs::write(&path, text).unwrap();
    path
}

fn encrypted(recipients: Vec<Recipient>, identity_file: Option<PathBuf>) -> Storage {
    Storage::in_memory().with_encryption(Some(&EncryptionSpec {
        recipients,
        identity_file,
    }))
}

async fn read_all(mut r: impl tokio::io::AsyncRead + Unpin) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    r.read_to_end(&mut out).await?;
    Ok(out)
}

#[test]
fn plaintext_rule() {
    for key in [
        "snapshots/main/shop/x.json",
        "media/site/index/0001",
        "owner.json",
    ] {
        assert!(stays_plaintext(key), "{key}");
    }
    for key in [
        "mysql/main/shop/x.sql.zst.age",
        "media/site/packs/ab/abcd",
        "media/site/trees/x",
        "somethingnew/x",
    ] {
        assert!(!stays_plaintext(key), "{key}");
    }
}

#[test]
fn recipients_parsed_and_secrets_never_quoted() {
    let (id, public) = key_pair();
    assert_eq!(parse_recipient(&public.to_string()).unwrap(), public);
    use age::secrecy::ExposeSecret;
    let secret = id.to_string().expose_secret().to_string();
    let why = parse_recipient(&secret).unwrap_err().to_string();
    assert!(
        why.contains("secret key") && !why.contains(&secret),
        "{why}"
    );
    assert!(parse_recipient("age1qqqq")
        .unwrap_err()
        .to_string()
        .contains("not an age recipient"));
    assert!(parse_recipient("ssh-ed25519 AAAA")
        .unwrap_err()
        .to_string()
        .contains("SSH"));
    let file = format!("# team\n\n{public}\n  {public}  \n");
    assert_eq!(parse_recipients_file(&file).unwrap().len(), 2);
    let (line, why) = parse_recipients_file(&format!("{public}\n{secret}\n")).unwrap_err();
    assert_eq!(line, 2);
    assert!(!why.to_string().contains(&secret));
}

#[tokio::test]
async fn round_trip_streams_and_hashes_the_ciphertext() {
    let dir = tempfile::tempdir().unwrap();
    let (id, public) = key_pair();
    let storage = encrypted(vec![public], Some(identity_file(dir.path(), &[&id])));
    let plain: Vec<u8> = (0..400_000u32).flat_map(|i| i.to_le_bytes()).collect();
    let mut writer = storage.writer("mysql/a/b/x.sql.zst.age").await.unwrap();
    writer.write(Bytes::from_static(b"small ")).await.unwrap();
    writer.write(Bytes::from(plain.clone())).await.unwrap();
    let put = writer.finish().await.unwrap();

    let stored = read_all(storage.raw_reader(&put.key).await.unwrap())
        .await
        .unwrap();
    assert!(stored.starts_with(AGE_MAGIC));
    assert_eq!(stored.len() as u64, put.size);
    assert_eq!(hex::encode(sha2::Sha256::digest(&stored)), put.sha256);

    let back = read_all(storage.reader(&put.key).await.unwrap())
        .await
        .unwrap();
    assert_eq!(&back[..6], b"small ");
    assert!(back[6..] == plain[..]);
    let mut sync = storage
        .decrypting_read(&put.key, std::io::Cursor::new(stored))
        .unwrap();
    let mut again = Vec::new();
    sync.read_to_end(&mut again).unwrap();
    assert!(again == back);
}

#[tokio::test]
async fn manifests_stay_plaintext_and_plain_objects_read_as_they_are() {
    let (_, public) = key_pair();
    let storage = encrypted(vec![public], None);
    storage
        .put_bytes("snapshots/j/d/x.json", Bytes::from_static(b"{}"))
        .await
        .unwrap();
    assert_eq!(
        storage.get_bytes("snapshots/j/d/x.json").await.unwrap(),
        "{}"
    );
    assert_eq!(storage.recipients_for("snapshots/j/d/x.json"), None);
    assert_eq!(
        storage.recipients_for("mysql/j/d/x").map(|r| r.len()),
        Some(1)
    );
    // A plaintext data object where an age file is expected is refused, naming the key; a
    // media pack (blobs checked against their ids) still reads.
    let plain = Storage::in_memory();
    for key in [
        "mysql/old",
        "media/up/trees/t.jsonl.zst",
        "media/up/packs/ab/ab.pack",
    ] {
        plain
            .put_bytes(key, Bytes::from_static(b"ab"))
            .await
            .unwrap();
    }
    let again = plain.clone().with_encryption(Some(&EncryptionSpec {
        recipients: vec![key_pair().1],
        identity_file: None,
    }));
    for key in ["mysql/old", "media/up/trees/t.jsonl.zst"] {
        let e = again.get_bytes(key).await.unwrap_err().to_string();
        assert!(e.contains(key) && e.contains("plaintext"), "{e}");
        let sync = again.decrypting_read(key, std::io::Cursor::new(b"ab".to_vec()));
        assert!(sync
            .err()
            .unwrap()
            .to_string()
            .contains("must be an age file"));
    }
    assert_eq!(
        again.get_bytes("media/up/packs/ab/ab.pack").await.unwrap(),
        "ab"
    );
    assert_eq!(plain.get_bytes("mysql/old").await.unwrap(), "ab");
}

#[tokio::test]
async fn no_identity_wrong_identity_and_tampering_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let (id, public) = key_pair();
    let writer_only = encrypted(vec![public.clone()], None);
    let put = writer_only
        .put_bytes("mysql/j/d/x.age", Bytes::from(vec![7u8; 200_000]))
        .await
        .unwrap();
    let err = writer_only
        .get_bytes(&put.key)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("mysql/j/d/x.age") && err.contains("identity_file"),
        "{err}"
    );
    let recipients = [public.to_string()];
    let err = writer_only
        .check_can_decrypt("snapshot S", &recipients)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("snapshot S") && err.contains("identity_file"),
        "{err}"
    );
    let unencrypted = Storage::in_memory();
    let err = unencrypted
        .check_can_decrypt("snapshot S", &recipients)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no [encryption] section"), "{err}");

    let (other, _) = key_pair();
    let other_dir = tempfile::tempdir().unwrap();
    let wrong = writer_only.clone().with_encryption(Some(&EncryptionSpec {
        recipients: vec![public.clone()],
        identity_file: Some(identity_file(other_dir.path(), &[&other])),
    }));
    let err = wrong.get_bytes(&put.key).await.unwrap_err().to_string();
    assert!(err.contains("not encrypted to the identity in"), "{err}");
    let err = wrong
        .check_can_decrypt("snapshot S", &recipients)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&public.to_string()) && err.contains("age-keygen -y"),
        "{err}"
    );

    let missing = writer_only.clone().with_encryption(Some(&EncryptionSpec {
        recipients: vec![public.clone()],
        identity_file: Some(dir.path().join("nope.txt")),
    }));
    let err = missing.get_bytes(&put.key).await.unwrap_err().to_string();
    assert!(err.contains("nope.txt"), "{err}");

    let right = writer_only.clone().with_encryption(Some(&EncryptionSpec {
        recipients: vec![public],
        identity_file: Some(identity_file(dir.path(), &[&other, &id])),
    }));
    right.check_can_decrypt("snapshot S", &recipients).unwrap();
    assert_eq!(right.get_bytes(&put.key).await.unwrap().len(), 200_000);
    tampering_is_named(&right, &put.key, dir.path().join("key.txt")).await;
}

/// One flipped byte in the payload of `key` (readable by `right`): refused, naming the object,
/// by the async and the blocking reader.
async fn tampering_is_named(right: &Storage, key: &str, key_file: std::path::PathBuf) {
    let mut bad = read_all(right.raw_reader(key).await.unwrap())
        .await
        .unwrap();
    let mid = bad.len() / 2;
    bad[mid] ^= 1;
    let raw = Storage::in_memory();
    raw.put_bytes("mysql/bad", Bytes::from(bad.clone()))
        .await
        .unwrap();
    let err = read_all(
        raw.clone()
            .with_encryption(Some(&EncryptionSpec {
                recipients: vec![],
                identity_file: Some(key_file),
            }))
            .reader("mysql/bad")
            .await
            .unwrap(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("`mysql/bad` is corrupt"), "{err}");
    let mut sync = right
        .decrypting_read("mysql/bad", std::io::Cursor::new(bad))
        .unwrap();
    let err = std::io::copy(&mut sync, &mut std::io::sink())
        .unwrap_err()
        .to_string();
    assert!(err.contains("`mysql/bad` is corrupt"), "{err}");
}
