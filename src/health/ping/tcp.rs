//! `tcp = "host:port"` mode: where ICMP is not allowed (or filtered on the way), loss and
//! latency from TCP connects. Each probe is one connect, started `spacing` after the previous
//! one and given at most `wait`; it is closed at once.
//!
//! What counts as an answer: an accepted connection, and also a refused one (a RST): the host
//! answered, and the time to the RST is a round trip like any other. Lost: a connect that
//! times out, or fails otherwise (host or net unreachable, no buffer). A SYN the network drops
//! is sent again by the kernel after its initial retransmission timeout (1 s); a `wait` at or
//! below 1 s counts that probe as lost, a longer one as a slow answer.

use super::round::Round;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// What one connect found.
enum Probe {
    Answered(Duration),
    Lost(Option<String>),
}

/// Runs `count` connects to `addr`, `spacing` apart, each for at most `wait`.
pub async fn round(addr: SocketAddr, count: u32, spacing: Duration, wait: Duration) -> Round {
    let probes = (0..count).map(|i| async move {
        tokio::time::sleep(spacing * i).await;
        let t0 = Instant::now();
        match tokio::time::timeout(wait, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(_stream)) => Probe::Answered(t0.elapsed()),
            Ok(Err(e)) if e.kind() == ErrorKind::ConnectionRefused => Probe::Answered(t0.elapsed()),
            Ok(Err(e)) => Probe::Lost(Some(e.to_string())),
            Err(_) => Probe::Lost(None),
        }
    });
    let mut round = Round {
        sent: count,
        ..Round::default()
    };
    for p in futures::future::join_all(probes).await {
        match p {
            Probe::Answered(d) if d <= wait => round.rtts.push(d),
            Probe::Answered(_) => {}
            Probe::Lost(e) => round.last_error = e.or(round.last_error.take()),
        }
    }
    round
}
