//! Object keys of media jobs (relative to the storage prefix; see docs/FORMAT.md):
//!
//! ```text
//! media/<job>/packs/<first 2 hex digits>/<pack id>.pack    chunks of file content, tree blobs
//! media/<job>/index/<index id>.json.zst                    which pack holds which chunk
//! media/<job>/trees/<snapshot id>.jsonl.zst                the tree object (which blobs hold the tree)
//! snapshots/<job>/files/<snapshot id>.json                 the manifest: the commit point
//! ```

use super::id::Id;

/// The manifest `item` of media snapshots.
pub const ITEM: &str = "files";

/// Everything of one media job's repository (not its manifests).
pub fn job_prefix(job: &str) -> String {
    format!("media/{job}/")
}

/// Where pack `id` is stored.
pub fn pack_key(job: &str, id: &Id) -> String {
    let h = id.to_hex();
    format!("media/{job}/packs/{}/{h}.pack", &h[..2])
}

/// The pack id in a pack key, if it is one.
pub fn pack_id_of(key: &str) -> Option<Id> {
    let name = key.rsplit('/').next()?.strip_suffix(".pack")?;
    Id::from_hex(name)
}

/// The prefix of all packs of a job.
pub fn packs_prefix(job: &str) -> String {
    format!("media/{job}/packs/")
}

/// Where an index object is stored.
pub fn index_key(job: &str, id: &Id) -> String {
    format!("media/{job}/index/{id}.json.zst")
}

/// The prefix of all index objects of a job.
pub fn index_prefix(job: &str) -> String {
    format!("media/{job}/index/")
}

/// Where a snapshot's tree is stored.
pub fn tree_key(job: &str, snapshot: &str) -> String {
    format!("media/{job}/trees/{snapshot}.jsonl.zst")
}

/// The prefix of all trees of a job.
pub fn trees_prefix(job: &str) -> String {
    format!("media/{job}/trees/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_keys_round_trip() {
        let id = Id::of(b"x");
        let k = pack_key("uploads", &id);
        assert!(k.starts_with(&format!("media/uploads/packs/{}/", &id.to_hex()[..2])));
        assert_eq!(pack_id_of(&k), Some(id));
        assert_eq!(pack_id_of("media/u/index/x.json.zst"), None);
    }
}
