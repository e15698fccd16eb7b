//! The sessions a parallel load sends its statements of rows to when it can: connections over
//! the client protocol ([`Connection`]), one thread each, instead of `mariadb` client processes.
//! The client parses every byte it is given to find the statements' ends, on the same cores the
//! server loads with; the router already knows where each statement of rows ends, so a lane
//! takes whole statements and sends each as it is.
//!
//! A lane logs in as the load account with the target as its default database, so what it runs
//! reaches what the client sessions reach and nothing more (`sandbox`); it never reads a local
//! file. A statement of rows longer than [`STATEMENT_MAX`] is not gathered in memory: the caller
//! streams it to the client session 0 instead ([`Lanes::send`] says when).

use super::sessions::Ended;
use crate::config::MysqlJob;
use crate::mysql_client::{Connection, MysqlError};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// The longest statement a lane gathers; longer ones go to the client session.
pub const STATEMENT_MAX: usize = 4 << 20;
/// Statements queued per lane (beside the one it runs and the one being gathered).
const QUEUE: usize = 2;
/// What a statement queued with [`Lanes::after_all`] weighs in [`Lanes::least_busy`] until it
/// ran: an index build takes seconds, so rows go to the other lanes meanwhile.
const AFTER_WEIGHT: u64 = 1 << 40;

/// What a lane's thread reports.
#[derive(Default)]
struct Progress {
    /// Statements run.
    ran: u64,
    /// Set when the thread ended: `Err` with the error that ended it.
    ended: Option<Result<(), MysqlError>>,
}

type Shared = Arc<(Mutex<Progress>, Condvar)>;

/// What a lane's thread is given.
enum Job {
    /// A statement to run.
    Run(Vec<u8>),
    /// A statement to run once each lane named has run that many statements.
    After(Vec<(Shared, u64)>, Vec<u8>),
}

/// Waits until the lane behind `shared` ran `n` statements; `false` when it ended first (or
/// `gone` says its thread did), or when `stop` is raised.
fn ran_up_to(shared: &Shared, n: u64, stop: &AtomicBool, gone: impl Fn() -> bool) -> bool {
    let (lock, cv) = &**shared;
    let mut p = lock.lock().unwrap_or_else(|e| e.into_inner());
    while p.ran < n {
        if p.ended.is_some() || gone() || stop.load(Ordering::SeqCst) {
            return false;
        }
        p = cv
            .wait_timeout(p, Duration::from_millis(200))
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
    true
}

/// One connection and its thread.
struct Lane {
    tx: Option<SyncSender<Job>>,
    /// The statement being gathered.
    buf: Vec<u8>,
    /// The current statement goes to the client session (it outgrew [`STATEMENT_MAX`]).
    diverted: bool,
    /// The last byte of the current statement sent so far.
    tail: u8,
    /// Bytes queued and not yet run.
    queued: Arc<AtomicU64>,
    /// Statements queued.
    sent: u64,
    progress: Shared,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Lane {
    /// Logs in on a thread of its own; returns once the login succeeded or failed.
    fn open(login: &MysqlJob, target: &str) -> Result<Lane, MysqlError> {
        let (tx, rx) = sync_channel::<Job>(QUEUE);
        let (ready_tx, ready) = sync_channel::<Result<(), MysqlError>>(1);
        let queued = Arc::new(AtomicU64::new(0));
        let progress: Shared = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (login, target) = (login.clone(), target.to_string());
        let (q, p, s) = (queued.clone(), progress.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let user = login.user.as_deref();
            let conn = Connection::open(&login.endpoint, user, login.password.as_ref(), &target);
            let mut conn = match conn {
                Ok(c) => c,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let _ = ready_tx.send(Ok(()));
            let mut ended = Ok(());
            for job in rx {
                let (statement, weight) = match job {
                    Job::Run(st) => (st, 0),
                    // Another lane that ended leaves this one to stop too: its error is the cause.
                    Job::After(waits, st) => {
                        match waits.iter().all(|(w, n)| ran_up_to(w, *n, &s, || false)) {
                            true => (st, AFTER_WEIGHT),
                            false => break,
                        }
                    }
                };
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let r = conn.execute(&statement);
                q.fetch_sub(statement.len() as u64 + weight, Ordering::Relaxed);
                if let Err(e) = r {
                    ended = Err(e);
                    break;
                }
                let (lock, cv) = &*p;
                lock.lock().unwrap_or_else(|e| e.into_inner()).ran += 1;
                cv.notify_all();
            }
            conn.close();
            let (lock, cv) = &*p;
            lock.lock().unwrap_or_else(|e| e.into_inner()).ended = Some(ended);
            cv.notify_all();
        });
        let opened = ready.recv().unwrap_or(Err(MysqlError::Closed));
        if let Err(e) = opened {
            let _ = thread.join();
            return Err(e);
        }
        Ok(Lane {
            tx: Some(tx),
            buf: Vec::new(),
            diverted: false,
            tail: 0,
            queued,
            sent: 0,
            progress,
            stop,
            thread: Some(thread),
        })
    }

    /// Queues one statement (its final `;` and line end taken off).
    fn queue(&mut self, statement: Vec<u8>) -> std::io::Result<()> {
        self.queue_job(statement, None)
    }

    /// Queues one statement, to run once each lane in `after` ran that many (none: at once).
    fn queue_job(
        &mut self,
        mut statement: Vec<u8>,
        after: Option<Vec<(Shared, u64)>>,
    ) -> std::io::Result<()> {
        while statement.last().is_some_and(|b| b.is_ascii_whitespace()) {
            statement.pop();
        }
        if statement.last() == Some(&b';') {
            statement.pop();
        }
        if statement.is_empty() {
            return Ok(());
        }
        let weight = after.as_ref().map_or(0, |_| AFTER_WEIGHT);
        self.queued
            .fetch_add(statement.len() as u64 + weight, Ordering::Relaxed);
        self.sent += 1;
        let job = match after {
            Some(waits) => Job::After(waits, statement),
            None => Job::Run(statement),
        };
        let tx = self.tx.as_ref().ok_or_else(super::sessions::stopped)?;
        tx.send(job).map_err(|_| super::sessions::stopped())
    }
}

/// The lanes of one load.
pub struct Lanes {
    lanes: Vec<Lane>,
}

impl Lanes {
    /// `n` lanes logged in as `login` on `target`; an error when any cannot log in (the load
    /// then uses client sessions only).
    pub fn open(login: &MysqlJob, target: &str, n: usize) -> Result<Lanes, MysqlError> {
        let mut lanes = Lanes { lanes: Vec::new() };
        for _ in 0..n {
            match Lane::open(login, target) {
                Ok(l) => lanes.lanes.push(l),
                Err(e) => {
                    lanes.kill();
                    let _ = lanes.finish();
                    return Err(e);
                }
            }
        }
        Ok(lanes)
    }

    /// How many lanes.
    pub fn len(&self) -> usize {
        self.lanes.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.lanes.is_empty()
    }

    /// Gives every lane the preamble's settings: one `SET` statement per line, as the router
    /// keeps them ([`super::lines::session_settings`]).
    pub fn start(&mut self, settings: &[u8]) -> std::io::Result<()> {
        for lane in &mut self.lanes {
            for line in settings.split_inclusive(|&b| b == b'\n') {
                lane.queue(line.to_vec())?;
            }
        }
        Ok(())
    }

    /// Takes `bytes` of a statement of rows for lane `i`: queued once its `;` and line end
    /// came. Returns `true` when the bytes belong to the client session instead (the statement
    /// outgrew [`STATEMENT_MAX`]; the caller sends them there, and `pending` first).
    pub fn send(&mut self, i: usize, bytes: &[u8], pending: &mut Vec<u8>) -> std::io::Result<bool> {
        let lane = &mut self.lanes[i];
        let ends = bytes.ends_with(b";\n") || (bytes == b"\n" && lane.tail == b';');
        lane.tail = bytes.last().copied().unwrap_or(lane.tail);
        if lane.diverted {
            lane.diverted = !ends;
            return Ok(true);
        }
        if !ends && lane.buf.len() + bytes.len() > STATEMENT_MAX {
            lane.diverted = true;
            *pending = std::mem::take(&mut lane.buf);
            return Ok(true);
        }
        lane.buf.extend_from_slice(bytes);
        if ends {
            let statement = std::mem::take(&mut lane.buf);
            lane.queue(statement)?;
        }
        Ok(false)
    }

    /// Queues `statement` on the least busy lane, to run once every lane has run what it was
    /// given so far (nothing here waits for that). Statements of rows sent later to other
    /// lanes may run meanwhile.
    pub fn after_all(&mut self, statement: &[u8]) -> std::io::Result<()> {
        let waits = self
            .lanes
            .iter()
            .map(|l| (l.progress.clone(), l.sent))
            .collect();
        let i = self.least_busy();
        self.lanes[i].queue_job(statement.to_vec(), Some(waits))
    }

    /// Returns once lane `i` ran everything queued for it; an error when it stopped first, or
    /// when `abort` is raised.
    pub fn wait(&self, i: usize, abort: &AtomicBool) -> std::io::Result<()> {
        let lane = &self.lanes[i];
        // (A thread that ended without saying so panicked: stopped too.)
        let gone = || lane.thread.as_ref().is_none_or(|t| t.is_finished());
        match ran_up_to(&lane.progress, lane.sent, abort, gone) {
            true => Ok(()),
            false => Err(super::sessions::stopped()),
        }
    }

    /// The lane with the least queued.
    pub fn least_busy(&self) -> usize {
        let load = |l: &Lane| l.queued.load(Ordering::Relaxed) + l.buf.len() as u64;
        (0..self.lanes.len())
            .min_by_key(|&i| load(&self.lanes[i]))
            .unwrap_or(0)
    }

    /// Stops every lane after the statement it runs; nothing queued runs (a stream went wrong).
    pub fn kill(&mut self) {
        for lane in &mut self.lanes {
            lane.stop.store(true, Ordering::SeqCst);
            lane.buf.clear();
            drop(lane.tx.take());
        }
    }

    /// Runs what each lane was given (a statement cut short by the end of the stream too, as
    /// a client would at the end of its input), and says how each ended.
    pub fn finish(mut self) -> Vec<Ended> {
        let mut out = Vec::new();
        for mut lane in self.lanes.drain(..) {
            if !lane.buf.is_empty() {
                let rest = std::mem::take(&mut lane.buf);
                let _ = lane.queue(rest);
            }
            drop(lane.tx.take());
            if let Some(t) = lane.thread.take() {
                let _ = t.join();
            }
            let (lock, _) = &*lane.progress;
            let mut p = lock.lock().unwrap_or_else(|e| e.into_inner());
            out.push(match p.ended.take() {
                Some(Err(e)) => Ended {
                    ok: false,
                    stderr: e.to_string(),
                },
                _ => Ended {
                    ok: !lane.stop.load(Ordering::SeqCst),
                    stderr: String::new(),
                },
            });
        }
        out
    }
}
