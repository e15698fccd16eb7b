//! Media backups: directory trees (user uploads, profile pictures) stored as content-addressed,
//! deduplicated chunks in pack objects, with one tree per snapshot (see docs/FORMAT.md).
//!
//! - `id`, `pack`, `tree`, `keys`, `limits`: the storage format and its bounds, pure and
//!   unit-tested; `index` also loads and writes the index objects through `storage`.
//! - `chunker`: content-defined chunking of file contents (FastCDC) and the compression choice.
//! - `walk`, `read`, `beneath`: reading the backed-up directories without following links out;
//!   `previous`: the last snapshot's tree, for unchanged files; `backup`, `upload`: one run.
//! - `anchor`: opening the directories an in-place restore starts from; `prune`: unused packs.

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
