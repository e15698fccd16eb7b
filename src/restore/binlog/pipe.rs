//! The replay's pipeline, one file after the other into one client session: the rebuilt file
//! is filtered (`crate::binlog`) straight into `mariadb-binlog -` (reading its standard input),
//! whose output is copied into the `mariadb` client logged in as the load account. The filter,
//! the decoder and the server work at the same time, and the filtered log is never written
//! to disk.

use super::{BinlogRestoreError, RollForward, StopAt};
use crate::binlog::{filter_file, BinlogError, Filter, Summary};
use crate::config::MysqlJob;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Child;

/// The filter for `file` of `rf`: from the dump's position in its file, up to the stop, only
/// `source`'s events, their table maps renamed to `target` (none: a preview, which writes
/// nothing).
pub(super) fn filter_for(
    rf: &RollForward,
    file: &str,
    (source, target): (&str, Option<&str>),
    recent: usize,
) -> Filter {
    Filter {
        start_pos: (file == rf.from.file).then_some(rf.from.pos),
        stop_before: (rf.stop == StopAt::Moment).then_some(rf.to.timestamp() + 1),
        stop_at_pos: match &rf.stop {
            StopAt::Position(p) if p.file == file => Some(p.pos),
            _ => None,
        },
        stop_at_gtid: match &rf.stop {
            StopAt::Gtid(g) => Some(g.clone()),
            _ => None,
        },
        tables: (!rf.tables.is_empty()).then(|| rf.tables.iter().cloned().collect()),
        rename_to: target.map(str::to_string),
        recent,
        count_from: rf.count_from.map(|t| t.timestamp()),
        ..Filter::new(source)
    }
}

/// Replays the rebuilt `files` (name, path) of `rf` into `target`; the events and
/// transactions replayed.
pub(super) fn run(
    rf: &RollForward,
    files: &[(String, PathBuf)],
    (login, client): (&MysqlJob, &Path),
    (source, target): (&str, &str),
    work: &Path,
) -> Result<(u64, u64), BinlogRestoreError> {
    let fail = |cause: String| BinlogRestoreError::Replay {
        target: target.to_string(),
        cause,
    };
    let tool = crate::mysql_client::which("mariadb-binlog")
        .or_else(|| crate::mysql_client::which("mysqlbinlog"))
        .ok_or_else(|| fail("neither mariadb-binlog nor mysqlbinlog is on PATH".into()))?;
    let args = crate::restore::sql::load_args(client, target);
    let mut running =
        (login.login(client).spawn(args, true, false)).map_err(|e| fail(e.to_string()))?;
    let mut stdin = running.take_stdin().expect("piped stdin");
    let (mut events, mut transactions) = (0, 0);
    let mut result = Ok(());
    for (file, raw) in files {
        let filter = filter_for(rf, file, (source, Some(target)), 0);
        match one_file(
            &tool,
            (file, raw),
            &filter,
            (source, target),
            work,
            &mut stdin,
        ) {
            Ok(s) => {
                events += s.events_out;
                transactions += s.transactions;
                if s.stopped_at.is_some() {
                    break;
                }
            }
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    drop(stdin);
    let finished = running.finish().map_err(|e| fail(e.to_string()))?;
    if !finished.status.success() {
        return Err(fail(finished.stderr.trim().to_string()));
    }
    result.map(|()| (events, transactions))
}

/// Filters `raw` into a `mariadb-binlog -` whose output goes to `out`.
fn one_file(
    tool: &Path,
    (file, raw): (&str, &Path),
    filter: &Filter,
    (source, target): (&str, &str),
    work: &Path,
    out: &mut impl Write,
) -> Result<Summary, BinlogRestoreError> {
    let fail = |cause: String| BinlogRestoreError::Replay {
        target: target.to_string(),
        cause,
    };
    // Its stderr to a file: a pipe nobody reads while its stdout is copied could fill.
    let err_path = work.join("mariadb-binlog.err");
    let errors = std::fs::File::create(&err_path).map_err(|e| fail(e.to_string()))?;
    let mut decoder = crate::mysql_client::binlog_decoder(tool, (source, target), errors)
        .map_err(|e| fail(e.to_string()))?;
    let mut input = decoder.stdin.take().expect("piped stdin");
    let (raw, f) = (raw.to_path_buf(), filter.clone());
    // (`input` is dropped when the thread ends: the decoder sees the end of its input.)
    let filtering = std::thread::spawn(move || filter_raw(&raw, &mut input, &f));
    let mut output = decoder.stdout.take().expect("piped stdout");
    let copied = std::io::copy(&mut output, out);
    drop(output);
    let summary = filtering
        .join()
        .map_err(|_| "the filter panicked".to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
    if copied.is_err() || summary.is_err() {
        // The client or the filter stopped first: the decoder must not wait on a pipe.
        kill(&mut decoder);
    }
    let status = decoder.wait().map_err(|e| fail(e.to_string()))?;
    let summary = summary.map_err(|cause| BinlogRestoreError::Filter {
        file: file.to_string(),
        cause,
    })?;
    copied.map_err(|e| fail(format!("the client stopped reading: {e}")))?;
    if !status.success() {
        let said = std::fs::read(&err_path).unwrap_or_default();
        let said = String::from_utf8_lossy(&said[..said.len().min(4096)])
            .trim()
            .to_string();
        return Err(fail(crate::quote::printable(&said)));
    }
    Ok(summary)
}

/// Reads the rebuilt binary log `raw` through `filter` into `out`.
pub(super) fn filter_raw(
    raw: &Path,
    out: &mut impl Write,
    filter: &Filter,
) -> Result<Summary, BinlogError> {
    let file = std::fs::File::open(raw).map_err(|source| BinlogError::Read { pos: 0, source })?;
    filter_file(&mut std::io::BufReader::new(file), out, filter)
}

fn kill(child: &mut Child) {
    let _ = child.kill();
}
