//! Reading through age: errors of the stored stream told apart from age's own, and the error
//! for a chunk that does not authenticate.

use std::io::{self, Read};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

/// An error of the stored stream, carried through age unchanged (told apart from its own).
#[derive(Debug)]
struct StoredError(io::Error);

impl std::fmt::Display for StoredError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for StoredError {}

pub(super) fn unmark(e: io::Error) -> Result<io::Error, io::Error> {
    if !e.get_ref().is_some_and(|inner| inner.is::<StoredError>()) {
        return Err(e);
    }
    let inner = e.into_inner().expect("checked above");
    Ok(inner.downcast::<StoredError>().expect("checked above").0)
}

/// Marks the errors of the stored stream as [`StoredError`].
pub(super) struct Marked<R>(pub(super) R);

impl<R: AsyncRead + Unpin> AsyncRead for Marked<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0)
            .poll_read(cx, buf)
            .map_err(|e| io::Error::new(e.kind(), StoredError(e)))
    }
}

/// A reader whose errors pass through a function.
pub(super) struct MapRead<R, F>(pub(super) R, pub(super) F);

impl<R: Read, F: Fn(io::Error) -> io::Error> Read for MapRead<R, F> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf).map_err(&self.1)
    }
}

impl<R: AsyncRead + Unpin, F: Fn(io::Error) -> io::Error + Unpin> AsyncRead for MapRead<R, F> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        Pin::new(&mut this.0).poll_read(cx, buf).map_err(&this.1)
    }
}

/// The error for a chunk that fails age's authentication (or a truncated stream).
pub(super) fn corrupt(key: &str, e: io::Error) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("object `{key}` is corrupt: its age encryption does not authenticate ({e})"),
    )
}
