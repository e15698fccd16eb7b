//! Media backups: directory trees (user uploads, profile pictures) stored as content-addressed,
//! deduplicated chunks in pack objects, with one tree per snapshot (see docs/FORMAT.md).
//!
//! - `id`, `pack`, `index`, `tree`, `keys`: the storage format, pure and unit-tested.
//! - `chunker`: content-defined chunking of file contents (FastCDC) and the compression choice.

pub mod anchor;
pub mod backup;
pub mod beneath;
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
