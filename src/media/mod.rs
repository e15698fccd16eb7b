//! Media backups: directory trees (user uploads, profile pictures) stored as content-addressed,
//! deduplicated chunks in pack objects, with one tree per snapshot whose blobs are stored and
//! deduplicated the same way (see docs/FORMAT.md).
//!
//! - `id`, `pack`, `tree`, `keys`, `limits`: the storage format and its bounds, pure (no I/O)
//!   and unit-tested, but for `tree::blobs`, which fetches a tree's own blobs from their packs.
//! - `index`: which pack holds which blob; decoding is pure, and it also loads and writes the
//!   index objects through `storage`.
//! - `chunker`: content-defined chunking of file contents (FastCDC) and the compression choice.
//! - `walk`, `beneath`: reading the backed-up directories without following links out;
//!   `previous`: the last snapshot's tree, for unchanged files.
//! - `backup`: the engine of one backup run (`walk_and_store`): the walk and the tree built
//!   in walk order (`building`), the reading threads (`read`), pack uploads (`upload`). It
//!   stores packs and returns the tree; the job run in src/backup/media.rs commits.
//! - `anchor`: opening, from `/`, the directories an in-place restore (src/restore/media/)
//!   starts from; `prune`: collecting unused packs after retention.
//!
//! Errors are typed per step (`TreeError`, `IndexError`, `WalkError`, `EngineError`,
//! `PackPruneError`); each names the object key or path and, where one helps, a hint.

pub mod anchor;
pub mod backup;
pub mod beneath;
mod building;
pub mod chunker;
pub mod id;
pub mod index;
pub mod keys;
pub mod limits;
pub mod pack;
pub mod previous;
pub mod prune;
mod read;
pub mod tree;
mod upload;
pub mod walk;

pub use id::Id;
