//! S3 multipart uploads, both halves: `write.rs` streams an object up as a multipart upload
//! (the writer of the opendal backends), `abort.rs` lists the uploads left open under our prefix
//! and aborts them (for `snapshot::orphan_uploads`).

mod abort;
mod object_lock;
mod write;

pub use abort::{Upload, Uploads};
pub use object_lock::LockConfig;
pub(crate) use write::OpendalWriter;
