//! Uploads paced on the wire (`max_upload_rate` on an S3 storage): an HTTP transport under
//! opendal that sends the body of each `PutObject` and `UploadPart` in pieces (a 160th of a
//! second of the rate: [`piece_of`]), each when the storage's upload bucket (`rate.rs`)
//! allows it.
//!
//! Pacing the bytes as they enter the writer keeps the average right but not the network
//! smooth: opendal hands the transport a whole part (8 MiB or more) and the HTTP client sends
//! it at line speed, so a server on the same machine sees bursts that take its cores from the
//! services beside it. Here the network sees a steady stream, a piece every few milliseconds.
//! The bytes are counted once, here; the writer above takes them as fast as the parts go
//! (its memory stays about three parts, as without a limit).
//!
//! A paced part may take long (8 MiB at 64 KiB/s is over two minutes, and uploads sharing the
//! bucket share the rate), so the time limit is on progress, not on the request: the request
//! fails (and is retried) when the HTTP client takes no piece for [`STALL_TIMEOUT`], or no
//! answer comes [`ANSWER_TIMEOUT`] after the last byte. Every other request passes to the
//! transport below untouched, within [`ANSWER_TIMEOUT`].

use std::future::{self, Future};
use std::pin::Pin;
use std::sync::{Arc, LazyLock, Mutex};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use futures::TryStreamExt;
use http::{Request, Response};
use opendal::raw::{parse_content_encoding, parse_content_length, ServiceOperation};
use opendal::{Buffer, Error, ErrorKind, HttpBody, HttpTransport, HttpTransporter};

use super::rate::Bucket;

/// Pieces per second at the rate: a piece every ~6 ms, 64 KiB at 10 MiB/s.
const PIECES_PER_SECOND: u64 = 160;
/// The smallest piece (a slow rate still sends a sensible size).
const MIN_PIECE: u64 = 16 << 10;
/// The largest piece (a fast rate does not wake the sender more than ~1000 times a second).
const MAX_PIECE: u64 = 1 << 20;

/// The largest piece sent at once at `rate` bytes per second.
fn piece_of(rate: u64) -> usize {
    (rate / PIECES_PER_SECOND).clamp(MIN_PIECE, MAX_PIECE) as usize
}
/// How long the HTTP client may take no piece of a body before the request fails.
const STALL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long an answer may take after the last byte of the request (and any request that is
/// not paced, from its start to its answer's headers).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(600);

/// One HTTP client for every paced request of the process (its connections are reused).
static CLIENT: LazyLock<reqwest::Client> = LazyLock::new(reqwest::Client::new);

/// The transport that paces upload bodies; `inner` sends everything else.
pub(crate) struct PacedTransport {
    inner: HttpTransporter,
    bucket: Arc<Bucket>,
}

impl PacedTransport {
    pub(crate) fn new(inner: HttpTransporter, bucket: Arc<Bucket>) -> Self {
        PacedTransport { inner, bucket }
    }
}

impl HttpTransport for PacedTransport {
    async fn fetch(&self, req: Request<Buffer>) -> opendal::Result<Response<HttpBody>> {
        let op = req.extensions().get::<ServiceOperation>().map(|o| o.0);
        let paced = matches!(op, Some("PutObject" | "UploadPart")) && !req.body().is_empty();
        if !paced {
            return match tokio::time::timeout(ANSWER_TIMEOUT, self.inner.fetch(req)).await {
                Ok(answer) => answer,
                Err(_) => Err(timed_out("no answer", ANSWER_TIMEOUT)),
            };
        }
        let progress = Arc::new(Progress::new());
        let sending = send_paced(req, self.bucket.clone(), progress.clone());
        tokio::select! {
            answer = sending => answer,
            why = progress.stalled() => Err(why),
        }
    }
}

/// Sends `req` with its body paced by `bucket`.
async fn send_paced(
    req: Request<Buffer>,
    bucket: Arc<Bucket>,
    progress: Arc<Progress>,
) -> opendal::Result<Response<HttpBody>> {
    let uri = req.uri().clone();
    let (parts, body) = req.into_parts();
    let url = reqwest::Url::parse(&uri.to_string()).map_err(|e| {
        Error::new(ErrorKind::Unexpected, "request url is invalid")
            .with_context("url", uri.to_string())
            .set_source(e)
    })?;
    let body = PacedBody {
        data: body,
        piece: piece_of(bucket.rate()),
        bucket,
        progress,
        waiting: None,
    };
    let mut resp = CLIENT
        .request(parts.method, url)
        .headers(parts.headers)
        .version(parts.version)
        .body(reqwest::Body::wrap(body))
        .send()
        .await
        .map_err(|e| client_error("send http request", &uri, e))?;
    let length = match parse_content_encoding(resp.headers())? {
        Some(_) => None,
        None => parse_content_length(resp.headers())?,
    };
    let mut answer = Response::builder()
        .status(resp.status())
        .version(resp.version())
        .extension(uri.clone());
    if let Some(headers) = answer.headers_mut() {
        std::mem::swap(headers, resp.headers_mut());
    }
    let stream = resp
        .bytes_stream()
        .try_filter(|b| future::ready(!b.is_empty()))
        .map_ok(Buffer::from)
        .map_err(move |e| client_error("read data from http response", &uri, e));
    answer
        .body(HttpBody::new(stream, length))
        .map_err(|e| Error::new(ErrorKind::Unexpected, "build the response").set_source(e))
}

/// An error of the HTTP client while it sent to or read from `uri` (temporary where a retry
/// can help, as opendal's own transport decides).
fn client_error(what: &'static str, uri: &http::Uri, e: reqwest::Error) -> Error {
    Error::new(ErrorKind::Unexpected, what)
        .with_operation("paced upload")
        .with_context("url", uri.to_string())
        .with_temporary(e.is_request() || e.is_body() || e.is_decode())
        .set_source(e.without_url())
}

fn timed_out(what: &str, after: Duration) -> Error {
    Error::new(
        ErrorKind::Unexpected,
        format!("{what} for {} s (paced upload)", after.as_secs()),
    )
    .with_context("timeout", after.as_secs().to_string())
    .set_temporary()
}

/// When the HTTP client last took a piece of the body, and whether it took the last one.
struct Progress {
    state: Mutex<(Instant, bool)>,
}

impl Progress {
    fn new() -> Progress {
        Progress {
            state: Mutex::new((Instant::now(), false)),
        }
    }

    fn touch(&self, done: bool) {
        *self.state.lock().expect("progress lock") = (Instant::now(), done);
    }

    /// The body waits for its turn until `at`: its own pace is not a stall, so the time
    /// counts from then (at a very low rate one piece may wait longer than the limit).
    fn waits_until(&self, at: Instant) {
        *self.state.lock().expect("progress lock") = (at, false);
    }

    /// Returns (the error) once the body stalls for [`STALL_TIMEOUT`] or the answer takes
    /// [`ANSWER_TIMEOUT`] after the last byte; never otherwise.
    async fn stalled(&self) -> Error {
        loop {
            let (last, done) = *self.state.lock().expect("progress lock");
            let (limit, what) = match done {
                true => (ANSWER_TIMEOUT, "no answer after the last byte"),
                false => (STALL_TIMEOUT, "the connection took no data"),
            };
            if last.elapsed() >= limit {
                return timed_out(what, limit);
            }
            tokio::time::sleep_until((last + limit).into()).await;
        }
    }
}

/// A request body that goes out in pieces of at most `piece` bytes, each paid for in the
/// bucket before it is handed to the HTTP client.
struct PacedBody {
    data: Buffer,
    piece: usize,
    bucket: Arc<Bucket>,
    progress: Arc<Progress>,
    /// The next piece, and until when it waits for its turn (`None`: it may go now).
    waiting: Option<(Bytes, Option<Pin<Box<tokio::time::Sleep>>>)>,
}

impl http_body::Body for PacedBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if this.waiting.is_none() {
            if this.data.is_empty() {
                this.progress.touch(true);
                return Poll::Ready(None);
            }
            let n = this.data.chunk().len().min(this.piece);
            let piece = this.data.copy_to_bytes(n);
            let now = Instant::now();
            let at = this.bucket.reserve(n as u64, now);
            let pause = (at > now).then(|| {
                this.progress.waits_until(at);
                Box::pin(tokio::time::sleep_until(at.into()))
            });
            this.waiting = Some((piece, pause));
        }
        if let Some((_, Some(pause))) = this.waiting.as_mut() {
            ready!(pause.as_mut().poll(cx));
        }
        let piece = this.waiting.take().map(|(p, _)| p).unwrap_or_default();
        // After the last piece the answer's time starts (the client may not poll again).
        this.progress.touch(this.data.is_empty());
        Poll::Ready(Some(Ok(http_body::Frame::data(piece))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_empty() && self.waiting.is_none()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        let waiting = self.waiting.as_ref().map_or(0, |(p, _)| p.len());
        http_body::SizeHint::with_exact((self.data.len() + waiting) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::Body as _;

    const MIB: u64 = 1 << 20;

    /// The instants (since the start) at which each piece of a 2 MiB body at 4 MiB/s came out.
    #[tokio::test]
    async fn a_body_comes_out_in_small_pieces_at_the_rate() {
        let data: Vec<Bytes> = (0..4).map(|_| Bytes::from(vec![1u8; 512 << 10])).collect();
        let progress = Arc::new(Progress::new());
        let mut body = PacedBody {
            data: Buffer::from(data),
            piece: piece_of(4 * MIB),
            bucket: Arc::new(Bucket::new(4 * MIB)),
            progress: progress.clone(),
            waiting: None,
        };
        assert_eq!(body.size_hint().exact(), Some(2 * MIB));
        let t0 = Instant::now();
        let mut seen = Vec::new();
        while let Some(frame) = future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
            let piece = frame.unwrap().into_data().unwrap();
            assert!(piece.len() <= piece_of(4 * MIB), "{} bytes", piece.len());
            seen.push((t0.elapsed().as_secs_f64(), piece.len() as u64));
        }
        let total: u64 = seen.iter().map(|s| s.1).sum();
        assert_eq!(total, 2 * MIB);
        // 2 MiB at 4 MiB/s less the first burst (0.1 s of data, 409.6 KiB).
        let took = t0.elapsed().as_secs_f64();
        assert!((0.35..0.6).contains(&took), "{took} s");
        // After the first burst, no 50 ms carries more than its share and two pieces (the
        // windows cut pieces at their instants, so one may count early and one late).
        for w in 0..(took / 0.05) as usize {
            let (from, to) = (0.15 + w as f64 * 0.05, 0.2 + w as f64 * 0.05);
            let sent: u64 = seen
                .iter()
                .filter(|s| s.0 >= from && s.0 < to)
                .map(|s| s.1)
                .sum();
            assert!(
                sent <= 4 * MIB / 20 + 2 * piece_of(4 * MIB) as u64,
                "{sent} bytes in [{from}, {to})"
            );
        }
        assert!(progress.state.lock().unwrap().1, "the end was seen");
    }

    #[test]
    fn pieces_are_a_160th_of_a_second_within_bounds() {
        assert_eq!(piece_of(10 * MIB), 64 << 10);
        assert_eq!(piece_of(MIB), 16 << 10);
        assert_eq!(piece_of(10 << 30), MIB as usize);
    }

    #[tokio::test]
    async fn a_stalled_body_is_an_error_that_says_so() {
        let progress = Progress::new();
        *progress.state.lock().unwrap() = (Instant::now() - STALL_TIMEOUT, false);
        let err = progress.stalled().await;
        assert!(err.is_temporary());
        assert!(err.to_string().contains("took no data for 60 s"), "{err}");
        progress.touch(true);
        let wait = tokio::time::timeout(Duration::from_millis(50), progress.stalled()).await;
        assert!(
            wait.is_err(),
            "an answer awaited within its time is no error"
        );
        // A piece that waits its turn for longer than the limit (a very low rate) is no stall.
        progress.waits_until(Instant::now() + 2 * STALL_TIMEOUT);
        let wait = tokio::time::timeout(Duration::from_millis(50), progress.stalled()).await;
        assert!(wait.is_err(), "waiting for the bucket is not a stall");
    }
}
