//! The client sessions a parallel load writes to: one MySQL client process each, fed by a
//! writer thread through a bounded queue (so a slow session holds the reader back instead of
//! filling memory), with a reader of its output that learns how far the session has run.
//!
//! "How far" is a marker: `SELECT '<nonce>:<n>' AS m;` queued after the statements to wait
//! for; the session prints it once it ran them. The nonce is random per load, so a line the
//! dump makes the client print cannot pass for one (and would only reorder a load that is
//! refused anyway: every session is the load account).

use super::lanes::Lanes;
use super::Sink;
use crate::config::MysqlJob;
use crate::mysql_client::Running;
use std::io::{BufRead, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Bytes gathered for a session before they are queued.
const BATCH: usize = 256 << 10;
/// Batches queued per session.
const QUEUE: usize = 4;
/// The longest output line read from a session (markers are short; anything longer is noise).
const LINE_MAX: u64 = 4096;

/// One client process and its threads.
struct Session {
    running: Running,
    tx: Option<SyncSender<Vec<u8>>>,
    buf: Vec<u8>,
    queued: Arc<AtomicU64>,
    done: Receiver<u64>,
    writer: Option<JoinHandle<()>>,
    reader: Option<JoinHandle<()>>,
    sent_marker: u64,
}

/// How a session ended.
pub struct Ended {
    /// Whether the client exited 0.
    pub ok: bool,
    /// Its stderr (capped).
    pub stderr: String,
}

/// Starts one session of `login` with `args`.
fn start(
    login: &MysqlJob,
    client: &Path,
    args: &[String],
    nonce: &str,
) -> Result<Session, crate::mysql_client::MysqlError> {
    let mut running = login.login(client).spawn(args, true, true)?;
    let mut stdin = running.take_stdin().expect("piped stdin");
    let stdout = running.take_stdout().expect("piped stdout");
    let (tx, rx) = sync_channel::<Vec<u8>>(QUEUE);
    let queued = Arc::new(AtomicU64::new(0));
    let q = queued.clone();
    let writer = std::thread::spawn(move || {
        for batch in rx {
            if stdin.write_all(&batch).is_err() {
                // The client stopped: its stderr says why; the router sees the queue close.
                return;
            }
            q.fetch_sub(batch.len() as u64, Ordering::Relaxed);
        }
    });
    let (done_tx, done) = sync_channel::<u64>(64);
    let prefix = format!("{nonce}:");
    let reader = std::thread::spawn(move || read_markers(stdout, &prefix, done_tx));
    Ok(Session {
        running,
        tx: Some(tx),
        buf: Vec::with_capacity(BATCH),
        queued,
        done,
        writer: Some(writer),
        reader: Some(reader),
        sent_marker: 0,
    })
}

/// Reads a session's output, reporting each marker it printed.
fn read_markers(out: impl Read, prefix: &str, done: SyncSender<u64>) {
    let mut out = std::io::BufReader::new(out);
    let mut line = Vec::new();
    loop {
        line.clear();
        match (&mut out).take(LINE_MAX).read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let n = std::str::from_utf8(&line)
            .ok()
            .and_then(|l| l.trim_end().strip_prefix(prefix))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(n) = n {
            if done.send(n).is_err() {
                return;
            }
        }
    }
}

/// The sessions of one load.
pub struct Sessions {
    sessions: Vec<Session>,
    want: usize,
    login: MysqlJob,
    client: std::path::PathBuf,
    args: Vec<String>,
    nonce: String,
    abort: Arc<AtomicBool>,
    /// The protocol lanes rows go to, when they could log in (sessions 1.. are then lanes).
    lanes: Option<Lanes>,
    /// A statement of rows went to session 0 (it was too long for a lane) since session 0 was
    /// last waited for.
    diverted: bool,
}

impl Sessions {
    /// Starts session 0. With `count` of 2 or more, rows go to `count` protocol lanes on
    /// `target` (sessions 1..=count) when they can log in, else to client sessions 0..count;
    /// either way the others start with the preamble.
    pub fn new(
        (login, client): (&MysqlJob, &Path),
        (args, target): (Vec<String>, &str),
        count: usize,
        abort: Arc<AtomicBool>,
    ) -> Result<Sessions, crate::mysql_client::MysqlError> {
        let mut rnd = [0u8; 12];
        getrandom::fill(&mut rnd).expect("the system's random source");
        let nonce = format!("opsagent-{}", hex::encode(rnd));
        let first = start(login, client, &args, &nonce)?;
        let lanes = (count >= 2)
            .then(|| Lanes::open(login, target, count))
            .and_then(|opened| {
                opened
                    .inspect_err(|e| {
                        tracing::info!(database = target, error = %e, "rows load through client sessions: the protocol lanes cannot log in");
                    })
                    .ok()
            });
        Ok(Sessions {
            sessions: vec![first],
            want: lanes.as_ref().map_or(count.max(1), |l| 1 + l.len()),
            lanes,
            login: login.clone(),
            client: client.to_path_buf(),
            args,
            nonce,
            abort,
            diverted: false,
        })
    }

    /// Whether rows go to protocol lanes (sessions 1..) rather than client sessions.
    pub fn has_lanes(&self) -> bool {
        self.lanes.is_some()
    }

    fn push(&mut self, to: usize) -> std::io::Result<()> {
        let s = &mut self.sessions[to];
        if s.buf.is_empty() {
            return Ok(());
        }
        let batch = std::mem::replace(&mut s.buf, Vec::with_capacity(BATCH));
        s.queued.fetch_add(batch.len() as u64, Ordering::Relaxed);
        let tx = s.tx.as_ref().ok_or_else(stopped)?;
        tx.send(batch).map_err(|_| stopped())
    }

    /// Kills every session (a stream went wrong: no client may see a clean end).
    pub fn kill(&mut self) {
        for s in &mut self.sessions {
            s.running.kill();
        }
        if let Some(l) = &mut self.lanes {
            l.kill();
        }
    }

    /// Closes every session's input, waits for each, and says how each ended.
    pub fn finish(mut self) -> Vec<Result<Ended, crate::mysql_client::MysqlError>> {
        for i in 0..self.sessions.len() {
            let _ = self.push(i);
        }
        let mut out = Vec::new();
        for mut s in self.sessions.drain(..) {
            drop(s.tx.take());
            if let Some(w) = s.writer.take() {
                let _ = w.join();
            }
            let finished = s.running.finish();
            if let Some(r) = s.reader.take() {
                let _ = r.join();
            }
            out.push(finished.map(|f| Ended {
                ok: f.status.success(),
                stderr: f.stderr,
            }));
        }
        if let Some(lanes) = self.lanes.take() {
            out.extend(lanes.finish().into_iter().map(Ok));
        }
        out
    }

    /// Queues `bytes` for client session `to`.
    fn queue_client(&mut self, to: usize, bytes: &[u8]) -> std::io::Result<()> {
        self.sessions[to].buf.extend_from_slice(bytes);
        if self.sessions[to].buf.len() >= BATCH {
            self.push(to)?;
        }
        Ok(())
    }
}

pub(super) fn stopped() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::BrokenPipe,
        "a client session stopped taking statements",
    )
}

impl Sink for Sessions {
    fn send(&mut self, to: usize, bytes: &[u8]) -> std::io::Result<()> {
        let Some(lanes) = self.lanes.as_mut().filter(|_| to > 0) else {
            return self.queue_client(to, bytes);
        };
        let mut pending = Vec::new();
        if lanes.send(to - 1, bytes, &mut pending)? {
            // A statement too long to gather: streamed through session 0 instead.
            self.diverted = true;
            self.queue_client(0, &pending)?;
            self.queue_client(0, bytes)?;
        }
        Ok(())
    }

    fn start(&mut self, preamble: &[u8]) -> std::io::Result<()> {
        if let Some(lanes) = &mut self.lanes {
            return lanes.start(preamble);
        }
        while self.sessions.len() < self.want {
            let s = start(&self.login, &self.client, &self.args, &self.nonce)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            self.sessions.push(s);
            let i = self.sessions.len() - 1;
            self.send(i, preamble)?;
        }
        Ok(())
    }

    fn wait(&mut self, which: std::ops::Range<usize>) -> std::io::Result<()> {
        if let Some(lanes) = &self.lanes {
            for i in which.start.max(1)..which.end.min(1 + lanes.len()) {
                lanes.wait(i - 1, &self.abort)?;
            }
        }
        let which = which.start..which.end.min(self.sessions.len());
        let zero = which.contains(&0);
        for i in which.clone() {
            let s = &mut self.sessions[i];
            s.sent_marker += 1;
            let marker = format!("SELECT '{}:{}' AS m;\n", self.nonce, s.sent_marker);
            s.buf.extend_from_slice(marker.as_bytes());
            self.push(i)?;
        }
        for i in which {
            let s = &self.sessions[i];
            loop {
                match s.done.recv_timeout(Duration::from_millis(200)) {
                    Ok(n) if n >= s.sent_marker => break,
                    Ok(_) => {}
                    Err(RecvTimeoutError::Timeout) if !self.abort.load(Ordering::SeqCst) => {}
                    Err(_) => return Err(stopped()),
                }
            }
        }
        self.diverted &= !zero;
        Ok(())
    }

    fn least_busy(&self) -> usize {
        if let Some(lanes) = &self.lanes {
            return 1 + lanes.least_busy();
        }
        let load = |s: &Session| s.queued.load(Ordering::Relaxed) + s.buf.len() as u64;
        (0..self.sessions.len())
            .min_by_key(|&i| load(&self.sessions[i]))
            .unwrap_or(0)
    }

    fn count(&self) -> usize {
        self.want
    }

    /// On protocol lanes only, and only while no rows went to session 0 since it was last
    /// waited for (the lanes cannot see how far a client session ran).
    fn after_all(&mut self, statement: &[u8]) -> std::io::Result<bool> {
        match self.lanes.as_mut().filter(|_| !self.diverted) {
            Some(lanes) => lanes.after_all(statement).map(|()| true),
            None => Ok(false),
        }
    }
}
