//! `check-config --connect` for the jobs with `binlog = true`: the server writes a binary log,
//! in a format a point-in-time restore replays, kept long enough, and the job's user may read
//! it. Says what is missing with the lines to add; a warning, not a failure, like the restore
//! user's check (backups themselves work without it).

use crate::config::MysqlJob;
use crate::quote::printable;

/// The server's settings that matter, from one query.
const QUERY: &str = "SELECT @@log_bin, @@binlog_format, @@expire_logs_days";

/// Prints, per job archiving its binary log, whether the server is ready for it.
pub fn check(jobs: &[MysqlJob]) {
    use crate::backup::mysql_cmd::{client_tool, dump_tool, query};
    for job in jobs.iter().filter(|j| j.binlog.is_some()) {
        let name = printable(&job.name);
        let out = dump_tool(job)
            .and_then(|d| client_tool(&d))
            .and_then(|c| query(job, &c, QUERY));
        let text = match out {
            Ok(rows) => rows.join("\n"),
            Err(e) => {
                println!("warning: the binary log of {name} cannot be checked: {e}");
                continue;
            }
        };
        for line in advice(&text) {
            println!("warning: binary log of {name}: {line}");
        }
        if advice(&text).is_empty() {
            println!("binary log of {name}: ok, the server writes one in ROW format");
        }
    }
}

/// What to fix, from the answer to [`QUERY`] (tab-separated).
fn advice(answer: &str) -> Vec<String> {
    let f: Vec<&str> = answer.trim().split('\t').collect();
    let mut out = Vec::new();
    if f.first() != Some(&"1") {
        out.push("the server writes none: add `log_bin = binlog`, `server_id = 1` and `binlog_format = ROW` under [mariadb] (or [mysqld]) in its configuration and restart it".to_string());
        return out;
    }
    if f.get(1).is_some_and(|b| !b.eq_ignore_ascii_case("ROW")) {
        out.push(format!("binlog_format is {}: ROW replays exactly what was written (add `binlog_format = ROW` under [mariadb])", f[1]));
    }
    if f.get(2)
        .and_then(|d| d.parse::<f64>().ok())
        .is_some_and(|d| d > 0.0 && d < 1.0)
    {
        out.push(format!("the server purges its binary logs after {} days: if archiving stops longer than that, the archive has a gap (set expire_logs_days = 7)", f[2]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advice_names_what_is_missing() {
        assert!(advice("0\tMIXED\t0")[0].contains("add `log_bin = binlog`"));
        assert!(advice("1\tMIXED\t0")[0].contains("binlog_format is MIXED"));
        assert!(advice("1\tROW\t0.5")[0].contains("purges its binary logs after 0.5 days"));
        assert!(advice("1\tROW\t7").is_empty());
    }
}
