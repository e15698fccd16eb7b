//! Bandwidth limits (`max_upload_rate`, `max_download_rate`): a decorator of any [`Backend`]
//! whose writers and readers take their bytes from a token bucket, so every byte that goes
//! up or down — dumps, media packs, trees, binary log segments, copies, restores — is paced by
//! the same limiter, whoever the caller is.
//!
//! One bucket per storage and direction in the process ([`shared`], keyed by the storage's
//! description): the uploads of two jobs, or of a job and a copy, share it; a reload with a new
//! rate updates it in place.
//!
//! The bucket is a GCRA (a token bucket expressed as a "theoretical arrival time"): bytes are
//! reserved first come, first served, and a reservation says at which instant they may go. Its
//! capacity is [`burst_of`] the rate: a tenth of a second of data, between 64 KiB and 1 MiB, so
//! after a pause at most one such chunk goes at line speed, never seconds of data. Uploads
//! reserve before handing bytes to the backend, in pieces of at most one burst; downloads
//! reserve what a read returned and pause the next read until it is paid for.
//!
//! An S3 storage paces its uploads on the wire instead (`wire.rs`): the body of each request
//! goes in small pieces as the bucket allows, so the network sees a steady stream rather than
//! each part (8 MiB or more) at line speed; a local directory takes them as they enter.
//!
//! Why not the `governor` crate: its cells are `u32` and a wait is "check, then retry" rather
//! than a first-come reservation; it has no poll-based wait for `AsyncRead`, and its rate is
//! fixed at construction. What is needed here is the twenty lines of [`Bucket::reserve`].

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncRead, ReadBuf};

use super::{Backend, BackendWriter, ObjectInfo, ObjectReader, StorageFuture};

/// The smallest bucket capacity (a slow rate still moves reads of a sensible size).
const MIN_BURST: u64 = 64 << 10;
/// The largest bucket capacity: no more than this goes at line speed after a pause.
const MAX_BURST: u64 = 1 << 20;
/// The capacity as a share of one second of the rate.
const BURST_PER_SECOND: u64 = 10;

/// Bandwidth limits of one storage, in bytes per second; `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimits {
    /// Every upload to this storage, together.
    pub upload: Option<u64>,
    /// Every download from it (restores, drills, copies reading it), together.
    pub download: Option<u64>,
}

/// The bucket capacity for `rate` bytes per second.
pub fn burst_of(rate: u64) -> u64 {
    (rate / BURST_PER_SECOND).clamp(MIN_BURST, MAX_BURST)
}

/// A token bucket of bytes, shared by every transfer in one direction of one storage.
#[derive(Debug)]
pub struct Bucket {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Bytes per second.
    rate: u64,
    /// When every byte reserved so far has been paid for (`None`: never used).
    paid_at: Option<Instant>,
}

impl Bucket {
    /// A full bucket for `rate` bytes per second.
    pub fn new(rate: u64) -> Bucket {
        Bucket {
            state: Mutex::new(State {
                rate: rate.max(1),
                paid_at: None,
            }),
        }
    }

    /// The largest piece one reservation should take ([`burst_of`] the rate).
    pub fn burst(&self) -> u64 {
        burst_of(self.state.lock().expect("bucket lock").rate)
    }

    /// Bytes per second.
    pub fn rate(&self) -> u64 {
        self.state.lock().expect("bucket lock").rate
    }

    fn set_rate(&self, rate: u64) {
        self.state.lock().expect("bucket lock").rate = rate.max(1);
    }

    /// Reserves `n` bytes at `now`; returns when they may go (`now` or later). Reservations
    /// are served in the order they are made. `n` should be at most [`Bucket::burst`]: a
    /// larger one goes as one piece after its whole cost is paid.
    pub fn reserve(&self, n: u64, now: Instant) -> Instant {
        let mut s = self.state.lock().expect("bucket lock");
        let cost = Duration::from_secs_f64(n as f64 / s.rate as f64);
        let tolerance = Duration::from_secs_f64(burst_of(s.rate) as f64 / s.rate as f64);
        // An idle bucket refills up to its capacity, not beyond: earlier idle time is lost.
        let start = s.paid_at.map_or(now, |t| t.max(now));
        let paid_at = start + cost;
        s.paid_at = Some(paid_at);
        paid_at.checked_sub(tolerance).map_or(now, |t| t.max(now))
    }

    /// Waits until `n` bytes may go.
    pub async fn take(&self, n: u64) {
        let at = self.reserve(n, Instant::now());
        if at > Instant::now() {
            tokio::time::sleep_until(at.into()).await;
        }
    }
}

/// Which way bytes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Direction {
    Up,
    Down,
}

/// The process's bucket for `place` and `direction`, made at `rate` or set to it.
fn shared(place: &str, direction: Direction, rate: u64) -> Arc<Bucket> {
    static BUCKETS: Mutex<BTreeMap<(String, Direction), Arc<Bucket>>> = Mutex::new(BTreeMap::new());
    let mut all = BUCKETS.lock().expect("bucket registry lock");
    let bucket = all
        .entry((place.to_string(), direction))
        .or_insert_with(|| Arc::new(Bucket::new(rate)));
    bucket.set_rate(rate);
    bucket.clone()
}

/// A backend whose transfers are paced by the buckets of its place.
pub(super) struct Limited {
    inner: Arc<dyn Backend>,
    /// Paces uploads as they enter (`None`: no limit, or `inner` paces them on the wire).
    up: Option<Arc<Bucket>>,
    down: Option<Arc<Bucket>>,
}

impl Limited {
    /// `inner` paced by `limits`, with the process's buckets of `inner`'s place: uploads on
    /// the wire where `inner` can ([`Backend::paced_on_the_wire`]), else as they enter.
    pub(super) fn new(inner: Arc<dyn Backend>, limits: RateLimits) -> Limited {
        let place = inner.describe().to_string();
        let up = limits.upload.map(|r| shared(&place, Direction::Up, r));
        let on_wire = up.as_ref().and_then(|b| inner.paced_on_the_wire(b.clone()));
        Limited {
            up: if on_wire.is_some() { None } else { up },
            down: limits.download.map(|r| shared(&place, Direction::Down, r)),
            inner: on_wire.unwrap_or(inner),
        }
    }
}

impl Backend for Limited {
    fn describe(&self) -> &str {
        self.inner.describe()
    }

    fn check_access(&self) -> StorageFuture<'_, ()> {
        self.inner.check_access()
    }

    fn writer<'a>(&'a self, key: &'a str) -> StorageFuture<'a, Box<dyn BackendWriter>> {
        Box::pin(async move {
            let inner = self.inner.writer(key).await?;
            Ok(match &self.up {
                Some(bucket) => Box::new(PacedWriter {
                    inner,
                    bucket: bucket.clone(),
                }),
                None => inner,
            })
        })
    }

    fn reader<'a>(&'a self, key: &'a str) -> StorageFuture<'a, ObjectReader> {
        Box::pin(async move {
            let inner = self.inner.reader(key).await?;
            Ok(match &self.down {
                Some(bucket) => paced_reader(inner, bucket.clone()),
                None => inner,
            })
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> StorageFuture<'a, Vec<ObjectInfo>> {
        self.inner.list(prefix)
    }

    fn delete<'a>(&'a self, key: &'a str) -> StorageFuture<'a, ()> {
        self.inner.delete(key)
    }

    fn exists<'a>(&'a self, key: &'a str) -> StorageFuture<'a, bool> {
        self.inner.exists(key)
    }

    fn undeleted(&self) -> Option<Arc<dyn Backend>> {
        Some(Arc::new(Limited {
            inner: self.inner.undeleted()?,
            up: self.up.clone(),
            down: self.down.clone(),
        }))
    }
}

/// An upload whose bytes reach the backend no faster than its bucket allows.
struct PacedWriter {
    inner: Box<dyn BackendWriter>,
    bucket: Arc<Bucket>,
}

impl BackendWriter for PacedWriter {
    fn write(&mut self, mut data: Bytes) -> StorageFuture<'_, ()> {
        Box::pin(async move {
            while !data.is_empty() {
                let n = data.len().min(self.bucket.burst() as usize);
                let piece = data.split_to(n);
                self.bucket.take(n as u64).await;
                self.inner.write(piece).await?;
            }
            Ok(())
        })
    }

    fn finish(self: Box<Self>) -> StorageFuture<'static, ()> {
        self.inner.finish()
    }

    fn abort(self: Box<Self>) -> StorageFuture<'static, ()> {
        self.inner.abort()
    }
}

/// `inner`, each read paid for in its bucket before the next one.
fn paced_reader(inner: ObjectReader, bucket: Arc<Bucket>) -> ObjectReader {
    let size = inner.size();
    let paced = PacedRead {
        inner,
        bucket,
        pause: None,
    };
    // The inner reader's errors already name the key and the storage.
    ObjectReader::new(paced, size, String::new())
}

struct PacedRead {
    inner: ObjectReader,
    bucket: Arc<Bucket>,
    /// Until the last read is paid for.
    pause: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl AsyncRead for PacedRead {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(pause) = self.pause.as_mut() {
            ready!(pause.as_mut().poll(cx));
            self.pause = None;
        }
        let limit = (self.bucket.burst() as usize).min(buf.remaining());
        let mut piece = buf.take(limit);
        ready!(Pin::new(&mut self.inner).poll_read(cx, &mut piece))?;
        let n = piece.filled().len();
        // SAFETY: `piece` wrote (initialised) `n` bytes at the start of `buf`'s unfilled part.
        unsafe { buf.assume_init(n) };
        buf.advance(n);
        let now = Instant::now();
        let at = self.bucket.reserve(n as u64, now);
        if at > now {
            self.pause = Some(Box::pin(tokio::time::sleep_until(at.into())));
        }
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    /// Bytes let through by `reserve` in each window of `window` after `t0`, when a sender
    /// always wants more (pieces of `piece` bytes) and sends each at its allowed instant.
    fn sent_per_window(b: &Bucket, piece: u64, total: u64, window: Duration) -> Vec<u64> {
        let t0 = Instant::now();
        let mut now = t0;
        let mut windows = Vec::new();
        let mut sent = 0;
        while sent < total {
            now = b.reserve(piece, now);
            let w = ((now - t0).as_secs_f64() / window.as_secs_f64()) as usize;
            windows.resize(windows.len().max(w + 1), 0);
            windows[w] += piece;
            sent += piece;
        }
        windows
    }

    #[test]
    fn burst_is_a_tenth_of_a_second_within_bounds() {
        assert_eq!(burst_of(10 * MIB), MIB);
        assert_eq!(burst_of(100 * MIB), MIB);
        assert_eq!(burst_of(MIB), MIB / 10);
        assert_eq!(burst_of(100 << 10), 64 << 10);
    }

    #[test]
    fn long_run_average_is_the_rate() {
        let b = Bucket::new(10 * MIB);
        let t0 = Instant::now();
        let mut now = t0;
        for _ in 0..200 * 16 {
            now = b.reserve(64 << 10, now);
        }
        // 200 MiB at 10 MiB/s: 20 s less the one burst (0.1 s) that may go at once.
        let took = (now - t0).as_secs_f64();
        assert!((took - 19.9).abs() < 0.01, "{took}");
    }

    #[test]
    fn no_window_carries_more_than_the_rate_plus_one_burst() {
        let b = Bucket::new(10 * MIB);
        let windows = sent_per_window(&b, 256 << 10, 50 * MIB, Duration::from_millis(100));
        // The first window holds the initial burst plus its own tenth of a second.
        assert!(windows[0] <= 2 * MIB, "{windows:?}");
        for (i, w) in windows.iter().enumerate().skip(1) {
            assert!(*w <= MIB + (256 << 10), "window {i}: {w} bytes");
        }
    }

    #[test]
    fn an_idle_bucket_refills_to_one_burst_only() {
        let b = Bucket::new(10 * MIB);
        let t0 = Instant::now();
        b.reserve(10 * MIB, t0);
        // A minute later, the bucket is full: one burst goes at once, the next must wait.
        let later = t0 + Duration::from_secs(60);
        assert_eq!(b.reserve(MIB, later), later);
        let next = b.reserve(MIB, later);
        assert_eq!(next - later, Duration::from_millis(100));
    }

    #[test]
    fn reservations_are_served_in_order() {
        // 1 MB/s: a burst of 100 kB, each of 100 ms.
        let b = Bucket::new(1_000_000);
        let t0 = Instant::now();
        let first = b.reserve(100_000, t0);
        let second = b.reserve(100_000, t0);
        let third = b.reserve(100_000, t0);
        assert_eq!(first, t0);
        assert_eq!(second - t0, Duration::from_millis(100));
        assert_eq!(third - second, Duration::from_millis(100));
    }

    #[test]
    fn the_process_shares_one_bucket_per_place_and_direction() {
        let a = shared("test place", Direction::Up, MIB);
        let b = shared("test place", Direction::Up, 2 * MIB);
        let c = shared("test place", Direction::Down, MIB);
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
        // The later rate won.
        assert_eq!(a.burst(), burst_of(2 * MIB));
    }

    #[tokio::test]
    async fn paced_transfers_take_their_time() {
        use crate::storage::Storage;
        use tokio::io::AsyncReadExt;
        let limits = RateLimits {
            upload: Some(4 * MIB),
            download: Some(4 * MIB),
        };
        let storage = Storage::in_memory().with_rate_limits(limits);
        let t0 = Instant::now();
        let data = Bytes::from(vec![7u8; (2 * MIB) as usize]);
        storage.put_bytes("a/x", data).await.unwrap();
        let up = t0.elapsed().as_secs_f64();
        // 2 MiB at 4 MiB/s, less the first burst (0.1 s of data).
        assert!((0.4..0.8).contains(&up), "upload took {up}s");
        let t1 = Instant::now();
        let mut out = Vec::new();
        let mut reader = storage.reader("a/x").await.unwrap();
        reader.read_to_end(&mut out).await.unwrap();
        assert_eq!(out.len() as u64, 2 * MIB);
        let down = t1.elapsed().as_secs_f64();
        assert!((0.35..0.8).contains(&down), "download took {down}s");
    }
}
