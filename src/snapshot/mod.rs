//! Snapshots as stored, shared by the work that writes them (`backup`) and the work that reads
//! them (`restore`, drills, `snapshots`): the key layout, manifests and their checks, the
//! commit, rebuilding the catalog from manifests, the prefix claim, the per-job lock, and
//! aborting the multipart uploads a dead run left; and the segments of the binary log archive
//! (`binlog`).

pub mod binlog;
pub mod claim;
pub mod commit;
pub mod keys;
pub mod lock;
pub mod manifest;
pub mod orphan_uploads;
pub mod refresh;

use crate::catalog::Catalog;
use crate::config::Config;
use crate::storage::Storage;
use std::sync::Arc;

/// What every job run needs.
#[derive(Clone)]
pub struct Env {
    /// The configuration in force when the run started.
    pub config: Arc<Config>,
    /// Where snapshots go.
    pub storage: Storage,
    /// The catalog.
    pub catalog: Arc<Catalog>,
    /// Counts uncompressed bytes read from dump tools, for a progress display.
    pub progress: Option<Arc<std::sync::atomic::AtomicU64>>,
    /// The copy storage (`[storage.NAME]`) `storage` is, when it is not the default one; the
    /// catalog's snapshot rows mirror the default storage only, so work on a copy leaves them.
    pub copy: Option<String>,
}
