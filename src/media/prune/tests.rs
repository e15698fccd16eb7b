//! Prune on an in-memory storage: marks, grace, unmarking, unindexed packs, repack, dry run.

use super::*;
use crate::media::index::Reuse;
use crate::media::pack::{encode_blob, extract, PackBuilder};
use crate::media::tree::{self, Node, NodeKind, RawPath};

const JOB: &str = "up";

fn noise(seed: u32, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn t(hours: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + hours * 3600, 0).unwrap()
}

async fn put_pack(st: &Storage, blobs: &[&[u8]]) -> PackIndex {
    let mut b = PackBuilder::with_capacity(1024);
    for data in blobs {
        let (c, stored) = encode_blob(data, false, 3);
        b.push(Id::of(data), data.len() as u64, c, &stored);
    }
    let p = b.finish();
    let size = p.bytes.len() as u64;
    st.put_bytes(&keys::pack_key(JOB, &p.id), p.bytes.into())
        .await
        .unwrap();
    PackIndex {
        id: p.id,
        size,
        blobs: p.blobs,
    }
}

async fn put_index(st: &Storage, packs: &[&PackIndex], pending: &[(Id, DateTime<Utc>)]) {
    let f = IndexFile {
        format: INDEX_FORMAT,
        packs: packs.iter().map(|p| (*p).clone()).collect(),
        delete_pending: pending
            .iter()
            .map(|(pack, since)| PendingDelete {
                pack: *pack,
                since: *since,
            })
            .collect(),
    };
    index::write(st, JOB, &f).await.unwrap();
}

/// A snapshot whose one file is `blobs`, with a tree (unless `tree` is false).
async fn snapshot(
    st: &Storage,
    id: &str,
    blobs: &[&[u8]],
    packs: &[&PackIndex],
    tree: bool,
) -> SnapshotRefs {
    let key = keys::tree_key(JOB, id);
    if tree {
        let node = Node {
            path: RawPath(b"/srv/f".to_vec()),
            kind: NodeKind::File,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime_ns: 0,
            ctime_ns: 0,
            inode: 1,
            size: blobs.iter().map(|b| b.len() as u64).sum(),
            target: None,
            chunks: blobs.iter().map(|b| Id::of(b)).collect(),
        };
        let bytes = tree::encode(&[node]).unwrap();
        st.put_bytes(&key, bytes.into()).await.unwrap();
    }
    SnapshotRefs {
        manifest: format!("snapshots/{JOB}/files/{id}.json"),
        tree: Some(key),
        packs: packs.iter().map(|p| p.id).collect(),
    }
}

fn settings(grace_hours: u64, dry_run: bool) -> Settings {
    Settings {
        job: JOB.into(),
        grace: std::time::Duration::from_secs(grace_hours * 3600),
        dry_run,
        read_trees: true,
    }
}

async fn prune(
    st: &Storage,
    s: &Settings,
    snaps: &[SnapshotRefs],
    now: DateTime<Utc>,
) -> (Report, Vec<(String, Vec<Id>)>) {
    let p = prepare(st, s, snaps, now).await.unwrap();
    let updates = p.manifest_updates().to_vec();
    (p.finish(st).await.unwrap(), updates)
}

async fn exists(st: &Storage, p: &PackIndex) -> bool {
    st.exists(&keys::pack_key(JOB, &p.id)).await.unwrap()
}

async fn index_now(st: &Storage) -> Index {
    Index::load(st, JOB).await.unwrap()
}

#[tokio::test]
async fn unused_pack_is_marked_then_deleted_after_the_grace() {
    let st = Storage::in_memory();
    let (a, b) = (noise(1, 500), noise(2, 700));
    let (p1, p2) = (put_pack(&st, &[&a]).await, put_pack(&st, &[&b]).await);
    put_index(&st, &[&p1], &[]).await;
    put_index(&st, &[&p2], &[]).await;
    let snaps = [snapshot(&st, "20270115T080000Z-00000001", &[&a], &[&p1], true).await];
    let (r, updates) = prune(&st, &settings(1, false), &snaps, t(0)).await;
    assert_eq!(
        (r.marked, r.deleted, r.pending, r.live),
        (1, 0, 1, 1),
        "{r:?}"
    );
    assert!(updates.is_empty());
    assert!(exists(&st, &p2).await, "inside the grace the pack stays");
    let idx = index_now(&st).await;
    assert_eq!(idx.keys.len(), 1, "the two index objects became one");
    assert_eq!(idx.delete_pending.get(&p2.id), Some(&t(0)));
    let reuse = Reuse::of(&idx);
    assert!(!reuse.reusable(&Id::of(&b)) && reuse.reusable(&Id::of(&a)));
    // Inside the grace again: the mark keeps its first time; after it: deleted.
    let (r, _) = prune(
        &st,
        &settings(1, false),
        &snaps,
        t(0) + chrono::Duration::minutes(30),
    )
    .await;
    assert_eq!((r.marked, r.deleted, r.pending), (0, 0, 1), "{r:?}");
    let (r, _) = prune(&st, &settings(1, false), &snaps, t(2)).await;
    assert_eq!(
        (r.deleted, r.deleted_bytes, r.pending),
        (1, p2.size, 0),
        "{r:?}"
    );
    assert!(!exists(&st, &p2).await && exists(&st, &p1).await);
    let idx = index_now(&st).await;
    assert_eq!(idx.packs.keys().copied().collect::<Vec<_>>(), vec![p1.id]);
    assert!(idx.delete_pending.is_empty());
}

#[tokio::test]
async fn pending_pack_used_again_is_taken_off_the_list() {
    let st = Storage::in_memory();
    let a = noise(3, 400);
    let p1 = put_pack(&st, &[&a]).await;
    put_index(&st, &[&p1], &[(p1.id, t(0))]).await;
    // A backup that loaded the index before the mark reused `a` and committed afterwards.
    let snaps = [snapshot(&st, "20270115T080000Z-00000002", &[&a], &[&p1], true).await];
    let (r, _) = prune(&st, &settings(1, false), &snaps, t(5)).await;
    assert_eq!((r.unmarked, r.deleted, r.pending), (1, 0, 0), "{r:?}");
    assert!(exists(&st, &p1).await);
    assert!(Reuse::of(&index_now(&st).await).reusable(&Id::of(&a)));
}

#[tokio::test]
async fn unindexed_pack_waits_for_the_grace_then_goes() {
    let st = Storage::in_memory();
    let a = noise(4, 300);
    let stray = put_pack(&st, &[&noise(5, 300)]).await; // a crashed run's upload
    let p1 = put_pack(&st, &[&a]).await;
    put_index(&st, &[&p1], &[]).await;
    let snaps = [snapshot(&st, "20270115T080000Z-00000003", &[&a], &[&p1], true).await];
    let (r, _) = prune(&st, &settings(2, false), &snaps, t(0)).await;
    assert_eq!((r.packs, r.marked, r.deleted), (2, 1, 0), "{r:?}");
    assert_eq!(
        index_now(&st).await.delete_pending.get(&stray.id),
        Some(&t(0))
    );
    let (r, _) = prune(&st, &settings(2, false), &snaps, t(3)).await;
    assert_eq!(r.deleted, 1, "{r:?}");
    assert!(!exists(&st, &stray).await && exists(&st, &p1).await);
}

#[tokio::test]
async fn unreadable_tree_counts_the_manifest_list_and_stops_repacking() {
    let st = Storage::in_memory();
    let (a, c) = (noise(6, 100), noise(7, 5000));
    let p1 = put_pack(&st, &[&a, &c]).await;
    put_index(&st, &[&p1], &[]).await;
    let snaps = [
        snapshot(&st, "20270115T080000Z-00000004", &[&a], &[&p1], true).await,
        snapshot(&st, "20270115T090000Z-00000005", &[&c], &[&p1], false).await,
    ];
    let (r, updates) = prune(&st, &settings(0, false), &snaps, t(0)).await;
    assert_eq!(
        (r.trees_unreadable, r.repacked, r.deleted),
        (1, 0, 0),
        "{r:?}"
    );
    assert!(
        r.repack_skipped.as_deref().unwrap().contains("00000005"),
        "{r:?}"
    );
    assert!(r.warnings.iter().any(|w| w.contains("00000005")), "{r:?}");
    assert!(updates.is_empty() && exists(&st, &p1).await);
}

#[tokio::test]
async fn mostly_dead_pack_is_repacked_and_the_manifest_list_follows() {
    let st = Storage::in_memory();
    let (a, c) = (noise(8, 100), noise(9, 8000));
    let p1 = put_pack(&st, &[&a, &c]).await;
    put_index(&st, &[&p1], &[]).await;
    let snaps = [snapshot(&st, "20270115T080000Z-00000006", &[&a], &[&p1], true).await];
    // Dry run first: reported, nothing stored or deleted.
    let before = st.list("").await.unwrap();
    let (r, _) = prune(&st, &settings(0, true), &snaps, t(0)).await;
    assert_eq!((r.repacked, r.dry_run), (1, true), "{r:?}");
    assert_eq!(
        st.list("").await.unwrap(),
        before,
        "a dry run changes nothing"
    );
    let (r, updates) = prune(&st, &settings(0, false), &snaps, t(0)).await;
    assert_eq!(
        (r.repacked, r.deleted, r.manifests_rewritten),
        (1, 1, 1),
        "{r:?}"
    );
    assert!(r.repack_written < p1.size / 4, "{r:?}");
    assert!(!exists(&st, &p1).await);
    let idx = index_now(&st).await;
    let loc = idx.blobs[&Id::of(&a)];
    assert_eq!(updates, vec![(snaps[0].manifest.clone(), vec![loc.pack])]);
    let bytes = st.get_bytes(&keys::pack_key(JOB, &loc.pack)).await.unwrap();
    assert_eq!(extract("n", &bytes, &loc.entry).unwrap(), a);
    assert!(!idx.blobs.contains_key(&Id::of(&c)));
}

#[tokio::test]
async fn trees_without_a_manifest_go_after_the_grace() {
    let st = Storage::in_memory();
    let a = noise(10, 100);
    let p1 = put_pack(&st, &[&a]).await;
    put_index(&st, &[&p1], &[]).await;
    let kept = [snapshot(&st, "20270115T080000Z-00000007", &[&a], &[&p1], true).await];
    let orphan = snapshot(&st, "20270115T090000Z-00000008", &[&a], &[&p1], true).await;
    let at = |h: i64| {
        NaiveDateTime::parse_from_str("20270115T090000Z", "%Y%m%dT%H%M%SZ")
            .unwrap()
            .and_utc()
            + chrono::Duration::hours(h)
    };
    let (r, _) = prune(&st, &settings(2, false), &kept, at(1)).await;
    assert_eq!(r.trees_deleted, 0);
    let (r, _) = prune(&st, &settings(2, false), &kept, at(3)).await;
    assert_eq!((r.trees_deleted, r.deleted), (1, 0), "{r:?}");
    assert!(!st.exists(orphan.tree.as_ref().unwrap()).await.unwrap());
    assert!(st.exists(kept[0].tree.as_ref().unwrap()).await.unwrap());
}

#[tokio::test]
async fn without_trees_the_manifest_lists_decide_and_nothing_is_repacked() {
    let st = Storage::in_memory();
    let (a, c, d) = (noise(11, 100), noise(12, 8000), noise(13, 300));
    let p1 = put_pack(&st, &[&a, &c]).await;
    let p2 = put_pack(&st, &[&d]).await;
    put_index(&st, &[&p1, &p2], &[]).await;
    // The tree says only `a` is used; the manifest lists p1: p1 stays whole, p2 goes.
    let snaps = [snapshot(&st, "20270115T080000Z-00000009", &[&a], &[&p1], true).await];
    let s = Settings {
        read_trees: false,
        ..settings(0, false)
    };
    let (r, updates) = prune(&st, &s, &snaps, t(0)).await;
    assert_eq!((r.repacked, r.deleted, r.live), (0, 1, 1), "{r:?}");
    assert_eq!((r.repack_skipped, updates.len()), (None, 0));
    assert!(exists(&st, &p1).await && !exists(&st, &p2).await);
}
