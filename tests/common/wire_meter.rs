//! A TCP relay that records when each byte going one way passed: put between the agent and
//! the S3 server, it shows what the network saw of an upload (a steady stream or bursts).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// (when, how many bytes) of each read, in order.
type Log = Arc<Mutex<Vec<(Instant, usize)>>>;

/// The running relay.
pub struct WireMeter {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// (when, how many bytes) of every read from a client, in order, across connections.
    sent: Log,
}

impl WireMeter {
    /// Relays every connection to `127.0.0.1:upstream`, recording the client's bytes.
    pub fn start(upstream: u16) -> WireMeter {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let sent: Log = Arc::new(Mutex::new(Vec::new()));
        let record = sent.clone();
        std::thread::spawn(move || {
            for client in l.incoming().flatten() {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let record = record.clone();
                std::thread::spawn(move || pipe(client, server, Some(record)));
                std::thread::spawn(move || pipe(s2, c2, None));
            }
        });
        WireMeter { port, sent }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Total bytes clients sent.
    pub fn total(&self) -> usize {
        self.sent.lock().unwrap().iter().map(|s| s.1).sum()
    }

    /// The most bytes clients sent within any `window` seconds that starts at least `skip`
    /// seconds after the first byte, and where that window starts.
    pub fn busiest(&self, window: f64, skip: f64) -> (usize, f64) {
        let sent = self.sent.lock().unwrap();
        let Some(t0) = sent.first().map(|s| s.0) else {
            return (0, 0.0);
        };
        let at: Vec<(f64, usize)> = sent
            .iter()
            .map(|(t, n)| ((*t - t0).as_secs_f64(), *n))
            .collect();
        let (mut best, mut start, mut end, mut sum) = ((0, 0.0), 0, 0, 0);
        while start < at.len() {
            while end < at.len() && at[end].0 < at[start].0 + window {
                sum += at[end].1;
                end += 1;
            }
            if at[start].0 >= skip && sum > best.0 {
                best = (sum, at[start].0);
            }
            sum -= at[start].1;
            start += 1;
        }
        best
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream, record: Option<Log>) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(r) = &record {
            r.lock().unwrap().push((Instant::now(), n));
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
