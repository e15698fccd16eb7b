//! Loading one dump on several client sessions at once (`restore_threads`), the way myloader
//! does, from the same plain `.sql.zst`: the stream is read once, in order, and its statements
//! of rows are spread over the sessions (`router`); every session is the load account, so the
//! isolation is the single-session load's (`sandbox`). The object's sha256 is checked by the
//! feeder exactly as before: a bad stream kills every session.

pub mod keys;
pub mod lanes;
pub mod lines;
pub mod router;
pub mod sessions;

use super::rewrite::{copy_sql, Rewritten};
use super::RestoreError;
use crate::config::MysqlJob;
use sessions::Sessions;
use std::io::BufRead;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Loads the SQL `sql` into `target` on `threads` sessions of `login`; `rename` is the
/// original database name when it loads under another.
pub fn load(
    (login, client): (&MysqlJob, &Path),
    (target, rename): (&str, Option<&str>),
    sql: std::io::Result<Box<dyn BufRead>>,
    threads: usize,
    abort: &Arc<AtomicBool>,
) -> Result<Rewritten, RestoreError> {
    let mut args = super::sql::load_args(client, target);
    // Markers are read as the session prints them: output flushed after each statement.
    args.push("--unbuffered".into());
    let mut sessions = Sessions::new((login, client), (args, target), threads, abort.clone())?;
    // With protocol lanes, session 0 (the client) takes no rows: it is left out of the count.
    let protocol = sessions.has_lanes();
    let copied = sql.and_then(|sql| {
        let mut router = router::Router::new(&mut sessions);
        let r = copy_sql(sql, &mut router, rename)?;
        let (_, statements, rebuilt) = router.finish()?;
        Ok((r, statements, rebuilt))
    });
    if abort.load(Ordering::SeqCst) || copied.is_err() {
        // Never let a client see a clean end of a bad stream.
        sessions.kill();
    }
    let ended = sessions.finish();
    if abort.load(Ordering::SeqCst) {
        return Err(RestoreError::Aborted);
    }
    let mut failed = None;
    for e in ended {
        let e = e?;
        if !e.ok && failed.as_ref().is_none_or(|f: &String| f.trim().is_empty()) {
            failed = Some(e.stderr);
        }
    }
    match (failed, copied) {
        // A client stopped first (the router then saw its queue close): its error is the cause.
        (Some(err), _) if !err.trim().is_empty() => Err(super::stream::load_error(target, &err)),
        (_, Err(e)) => Err(RestoreError::ReadDump {
            cause: e.to_string(),
        }),
        (Some(err), Ok(_)) => Err(super::stream::load_error(target, &err)),
        (None, Ok((r, statements, rebuilt))) => {
            let statements = &statements[usize::from(protocol)..];
            let used = statements.iter().filter(|n| **n > 0).count();
            tracing::info!(database = target, sessions = threads, protocol, "rows loaded on {used} of {threads} sessions (statements per session: {statements:?}); secondary indexes of {rebuilt} table(s) built after their rows");
            Ok(r)
        }
    }
}

/// The sessions the router writes to.
pub trait Sink {
    /// Queues `bytes` for session `to`.
    fn send(&mut self, to: usize, bytes: &[u8]) -> std::io::Result<()>;
    /// Starts sessions 1.. with `preamble` (called once, before anything is sent to them).
    fn start(&mut self, preamble: &[u8]) -> std::io::Result<()>;
    /// Returns once each session in `sessions` has run everything queued for it.
    fn wait(&mut self, sessions: std::ops::Range<usize>) -> std::io::Result<()>;
    /// The session with the least queued.
    fn least_busy(&self) -> usize;
    /// How many sessions.
    fn count(&self) -> usize;
    /// Queues `statement` on one of sessions 1.. to run once every session has run everything
    /// sent to it so far, without waiting here; `false` when these sessions cannot (the caller
    /// then keeps it).
    fn after_all(&mut self, _statement: &[u8]) -> std::io::Result<bool> {
        Ok(false)
    }
}

impl<T: Sink> Sink for &mut T {
    fn send(&mut self, to: usize, bytes: &[u8]) -> std::io::Result<()> {
        (**self).send(to, bytes)
    }
    fn start(&mut self, preamble: &[u8]) -> std::io::Result<()> {
        (**self).start(preamble)
    }
    fn wait(&mut self, sessions: std::ops::Range<usize>) -> std::io::Result<()> {
        (**self).wait(sessions)
    }
    fn least_busy(&self) -> usize {
        (**self).least_busy()
    }
    fn count(&self) -> usize {
        (**self).count()
    }
    fn after_all(&mut self, statement: &[u8]) -> std::io::Result<bool> {
        (**self).after_all(statement)
    }
}
