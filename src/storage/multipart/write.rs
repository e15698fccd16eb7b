//! Streaming multipart upload through an opendal `Writer`, with bounded memory.
//!
//! Bytes are gathered into parts (big writes held as the caller's buffers, small ones copied
//! together); each full part is handed to opendal's writer as one
//! `write()` call, and its `MultipartWriter` turns each write into one S3 part (it keeps the
//! latest write back and uploads it on the next one, so a single write becomes a plain PUT).
//! The part size grows with the stream ([`part_size`]): S3 allows 10 000 parts of 5 MiB to
//! 5 GiB, so fixed 8 MiB parts would cap an object at 78 GiB.
//!
//! One `write()` runs at a time, in a spawned task, while the caller fills the next part: in
//! memory are the part being uploaded, the one opendal holds back, and the one being filled,
//! about three parts (24 MiB at first). Dropping an unfinished upload aborts it in the
//! background, so no incomplete multipart upload is left open.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::task::JoinHandle;

use crate::storage::error::Op;
use crate::storage::opendal_backend::{counted, Target};
use crate::storage::{BackendWriter, StorageError, StorageFuture};

/// Size of the first 1000 parts.
pub(crate) const FIRST_PART_SIZE: usize = 8 << 20;
/// The part size doubles after this many parts.
const PARTS_PER_DOUBLING: usize = 1000;
/// S3's largest part.
const MAX_PART_SIZE: u64 = 5 << 30;

/// Size of part number `index` (0-based): 8 MiB for parts 0–999, 16 MiB for 1000–1999, …,
/// capped at 5 GiB. 10 000 parts hold about 8 TiB (S3's object limit is 5 TiB); a 200 GiB
/// dump needs about 5 000 parts, the largest of them 128 MiB.
pub(crate) fn part_size(index: usize) -> usize {
    let doublings = (index / PARTS_PER_DOUBLING).min(20) as u32;
    ((FIRST_PART_SIZE as u64) << doublings).min(MAX_PART_SIZE) as usize
}

/// Where the opendal writer is.
enum State {
    /// Ready for the next part.
    Idle(opendal::Writer),
    /// Uploading a part in a spawned task, which hands the writer back.
    Busy(JoinHandle<PartDone>),
    /// A part failed: only `abort` is possible.
    Failed(opendal::Writer),
    /// Finished, aborted, or lost.
    Gone,
}

/// What the task uploading a part returns.
struct PartDone {
    writer: opendal::Writer,
    result: opendal::Result<()>,
    attempts: u32,
}

/// A [`BackendWriter`] over an opendal `Writer`.
pub(crate) struct OpendalWriter {
    target: Arc<Target>,
    key: String,
    /// The next part so far: the caller's big buffers, held rather than copied (a media pack
    /// goes out from the memory it was built in, with no new 8 MiB buffer to fault in), and
    /// the small writes gathered.
    part: Vec<Bytes>,
    /// Bytes in `part` and `small`.
    part_len: usize,
    /// Writes smaller than [`HOLD_AT_LEAST`], copied together.
    small: BytesMut,
    parts_sent: usize,
    state: State,
}

/// Writes at least this big are held as they are. (A smaller `Bytes` may be a small view of a
/// large buffer, which holding would keep whole.)
const HOLD_AT_LEAST: usize = 1 << 20;
/// Smaller writes are copied together into buffers of this size (under glibc's mmap threshold
/// as `media::backup` sets it, so they come from the heap and are reused).
const GATHER: usize = 512 << 10;

impl OpendalWriter {
    pub(crate) fn new(target: Arc<Target>, key: &str, writer: opendal::Writer) -> Self {
        OpendalWriter {
            target,
            key: key.to_string(),
            part: Vec::new(),
            part_len: 0,
            small: BytesMut::new(),
            parts_sent: 0,
            state: State::Idle(writer),
        }
    }

    fn error(&self, op: Op, err: opendal::Error, attempts: u32) -> StorageError {
        self.target.error(op, &self.key, err, attempts)
    }

    async fn append(&mut self, mut data: Bytes) -> Result<(), StorageError> {
        while !data.is_empty() {
            let target = part_size(self.parts_sent);
            let piece = data.split_to((target - self.part_len).min(data.len()));
            self.hold(piece);
            if self.part_len == target {
                let part = self.take_part();
                self.send_part(part).await?;
            }
        }
        Ok(())
    }

    /// Adds `piece` to the next part, in order.
    fn hold(&mut self, mut piece: Bytes) {
        self.part_len += piece.len();
        if piece.len() >= HOLD_AT_LEAST {
            self.gather_small();
            self.part.push(piece);
            return;
        }
        while !piece.is_empty() {
            if self.small.len() == self.small.capacity() {
                self.gather_small();
                self.small = BytesMut::with_capacity(GATHER);
            }
            let n = (self.small.capacity() - self.small.len()).min(piece.len());
            self.small.extend_from_slice(&piece.split_to(n));
        }
    }

    /// Moves the small writes gathered so far into the part.
    fn gather_small(&mut self) {
        if !self.small.is_empty() {
            self.part.push(self.small.split().freeze());
        }
    }

    /// The part held so far (perhaps empty), and an empty one started.
    fn take_part(&mut self) -> opendal::Buffer {
        self.gather_small();
        self.part_len = 0;
        opendal::Buffer::from(std::mem::take(&mut self.part))
    }

    /// Waits for the previous part, then starts uploading `part` in the background.
    async fn send_part(&mut self, part: opendal::Buffer) -> Result<(), StorageError> {
        let mut writer = self.take_idle().await?;
        self.parts_sent += 1;
        self.state = State::Busy(tokio::spawn(async move {
            let (result, attempts) = counted(writer.write(part)).await;
            PartDone {
                writer,
                result,
                attempts,
            }
        }));
        Ok(())
    }

    /// The writer once the part in flight (if any) is done; an error if that part failed.
    async fn take_idle(&mut self) -> Result<opendal::Writer, StorageError> {
        match std::mem::replace(&mut self.state, State::Gone) {
            State::Idle(writer) => Ok(writer),
            State::Busy(task) => match task.await {
                Ok(PartDone {
                    writer,
                    result: Ok(()),
                    ..
                }) => Ok(writer),
                Ok(PartDone {
                    writer,
                    result: Err(err),
                    attempts,
                }) => {
                    self.state = State::Failed(writer);
                    Err(self.error(Op::Upload, err, attempts))
                }
                Err(join) => Err(self.lost(join)),
            },
            State::Failed(writer) => {
                self.state = State::Failed(writer);
                Err(self.unusable())
            }
            State::Gone => Err(self.unusable()),
        }
    }

    fn lost(&self, join: tokio::task::JoinError) -> StorageError {
        lost(&self.target, &self.key, join)
    }

    fn unusable(&self) -> StorageError {
        self.target.ctx(Op::Upload, &self.key).failed(
            "an earlier part of this upload failed",
            "abort the upload and start it again",
        )
    }

    /// Uploads the rest and completes the upload.
    async fn complete(&mut self) -> Result<(), StorageError> {
        let mut writer = self.take_idle().await?;
        let rest = self.take_part();
        if !rest.is_empty() {
            let (result, attempts) = counted(writer.write(rest)).await;
            if let Err(err) = result {
                self.state = State::Failed(writer);
                return Err(self.error(Op::Upload, err, attempts));
            }
        }
        let (result, attempts) = counted(writer.close()).await;
        match result {
            Ok(_) => Ok(()),
            Err(err) => {
                self.state = State::Failed(writer);
                Err(self.error(Op::Upload, err, attempts))
            }
        }
    }

    /// Aborts whatever is server-side (the part in flight is awaited first).
    async fn abort_now(&mut self) -> Result<(), StorageError> {
        self.take_part();
        self.small = BytesMut::new();
        let state = std::mem::replace(&mut self.state, State::Gone);
        abort_state(&self.target, &self.key, state).await
    }
}

/// Aborts the upload behind `state`; the part in flight, if any, is awaited first.
/// (Takes the bare state, not an `OpendalWriter`, so a cancelled abort task cannot
/// trigger another abort from `Drop`.)
async fn abort_state(target: &Target, key: &str, state: State) -> Result<(), StorageError> {
    let mut writer = match state {
        State::Idle(writer) | State::Failed(writer) => writer,
        State::Busy(task) => match task.await {
            Ok(done) => done.writer,
            Err(join) => return Err(lost(target, key, join)),
        },
        State::Gone => return Ok(()),
    };
    let (result, attempts) = counted(writer.abort()).await;
    result.map_err(|err| target.error(Op::Abort, key, err, attempts))
}

fn lost(target: &Target, key: &str, join: tokio::task::JoinError) -> StorageError {
    target.ctx(Op::Upload, key).failed(
        format!("the part upload task ended abnormally: {join}"),
        "this is a bug; an incomplete multipart upload may remain until a bucket lifecycle \
         rule removes it",
    )
}

impl BackendWriter for OpendalWriter {
    fn write(&mut self, data: Bytes) -> StorageFuture<'_, ()> {
        Box::pin(self.append(data))
    }

    fn finish(self: Box<Self>) -> StorageFuture<'static, ()> {
        let mut this = self;
        Box::pin(async move {
            let result = this.complete().await;
            if result.is_err() {
                if let Err(err) = this.abort_now().await {
                    tracing::warn!(error = %err, "could not abort the failed upload");
                }
            }
            result
        })
    }

    fn abort(self: Box<Self>) -> StorageFuture<'static, ()> {
        let mut this = self;
        Box::pin(async move { this.abort_now().await })
    }
}

impl Drop for OpendalWriter {
    fn drop(&mut self) {
        if matches!(self.state, State::Gone) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(
                key = %self.key,
                "no async runtime left to abort the upload; an incomplete multipart upload \
                 may remain until a bucket lifecycle rule removes it"
            );
            return;
        };
        let target = self.target.clone();
        let key = std::mem::take(&mut self.key);
        let state = std::mem::replace(&mut self.state, State::Gone);
        runtime.spawn(async move {
            match abort_state(&target, &key, state).await {
                Ok(()) => tracing::debug!(%key, "dropped upload aborted"),
                Err(err) => tracing::warn!(error = %err, "could not abort the dropped upload"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    #[test]
    fn part_sizes_grow_in_steps() {
        assert_eq!(part_size(0), 8 << 20);
        assert_eq!(part_size(999), 8 << 20);
        assert_eq!(part_size(1000), 16 << 20);
        assert_eq!(part_size(2500), 32 << 20);
        assert_eq!(part_size(9999), 4 << 30);
        assert_eq!(part_size(usize::MAX), 5 << 30);
    }

    #[test]
    fn part_sizes_stay_within_s3_limits() {
        let mut previous = 0;
        for index in 0..10_000 {
            let size = part_size(index) as u64;
            assert!((5 * MIB..=5 * GIB).contains(&size), "part {index}: {size}");
            assert!(size >= previous, "part sizes never shrink");
            previous = size;
        }
    }

    #[test]
    fn two_hundred_gib_fit_in_ten_thousand_parts() {
        let mut total = 0u64;
        let mut parts = 0;
        while total < 200 * GIB {
            total += part_size(parts) as u64;
            parts += 1;
        }
        assert!(parts <= 10_000, "200 GiB took {parts} parts");
        // …and memory stays moderate on the way: ~3 parts of at most 128 MiB.
        assert!(part_size(parts - 1) as u64 <= 128 * MIB);
        let all: u64 = (0..10_000).map(|i| part_size(i) as u64).sum();
        assert!(all >= 5 * 1024 * GIB, "10 000 parts hold {all} bytes");
    }
}
