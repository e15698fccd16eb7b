//! Where a dump stands in the server's binary log: `--master-data=2` (MySQL 8: `--source-data`)
//! writes it as a comment near the start of the dump, which the dump stream keeps.

use crate::backup::dump::DumpError;
use crate::config::MysqlJob;
use crate::snapshot::manifest::BinlogPos;

/// Bytes kept of the start of a dump: `--master-data=2` writes its comment within the first
/// kilobytes (after the header and the SET lines).
pub const HEAD_KEEP: usize = 64 << 10;

/// The dump tool's argument that writes the position, for a job archiving its binary log
/// (it needs RELOAD and REPLICATION CLIENT): a point-in-time restore replays the log from there.
pub fn dump_arg(job: &MysqlJob) -> Option<String> {
    job.binlog.map(|_| "--master-data=2".to_string())
}

/// The position `head` (a dump's start) names, for a job archiving its binary log.
pub fn of_dump(job: &MysqlJob, head: &[u8]) -> Result<Option<BinlogPos>, DumpError> {
    match job.binlog {
        Some(_) => in_dump(head).map(Some).ok_or(DumpError::NoBinlogPos),
        None => Ok(None),
    }
}

/// Appends to `head` what it lacks of its first [`HEAD_KEEP`] bytes from `data`.
pub fn keep_head(head: &mut Vec<u8>, data: &[u8]) {
    let take = data.len().min(HEAD_KEEP.saturating_sub(head.len()));
    head.extend_from_slice(&data[..take]);
}

/// The binary log position `--master-data=2` wrote at the start of a dump:
/// `-- CHANGE MASTER TO MASTER_LOG_FILE='binlog.000042', MASTER_LOG_POS=1234;`
/// (`SOURCE_LOG_FILE`/`SOURCE_LOG_POS` with `--source-data` of MySQL 8).
pub fn in_dump(head: &[u8]) -> Option<BinlogPos> {
    let text = String::from_utf8_lossy(head);
    let line = text.lines().find(|l| {
        l.starts_with("-- CHANGE MASTER TO") || l.starts_with("-- CHANGE REPLICATION SOURCE TO")
    })?;
    let field = |names: [&str; 2]| {
        names.iter().find_map(|n| {
            let start = line.find(n)? + n.len();
            Some(&line[start..])
        })
    };
    let file = field(["MASTER_LOG_FILE='", "SOURCE_LOG_FILE='"])?;
    let file = &file[..file.find('\'')?];
    let pos = field(["MASTER_LOG_POS=", "SOURCE_LOG_POS="])?;
    let digits: String = pos.chars().take_while(char::is_ascii_digit).collect();
    if file.is_empty() || file.contains(['/', '\\']) || file.len() > 255 {
        return None;
    }
    Some(BinlogPos {
        file: file.to_string(),
        pos: digits.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_position_comment_is_read_and_odd_names_refused() {
        let dump = b"-- MariaDB dump\n/*!40101 SET NAMES utf8mb4 */;\n\n--\n-- Position to start replication or point-in-time recovery from\n--\n\n-- CHANGE MASTER TO MASTER_LOG_FILE='binlog.000002', MASTER_LOG_POS=1234;\n";
        assert_eq!(
            in_dump(dump),
            Some(BinlogPos {
                file: "binlog.000002".into(),
                pos: 1234
            })
        );
        let mysql8 = b"-- CHANGE REPLICATION SOURCE TO SOURCE_LOG_FILE='mysql-bin.000007', SOURCE_LOG_POS=157;\n";
        assert_eq!(in_dump(mysql8).unwrap().file, "mysql-bin.000007");
        assert_eq!(
            in_dump(b"-- CHANGE MASTER TO MASTER_LOG_FILE='../x', MASTER_LOG_POS=4;\n"),
            None
        );
        assert_eq!(
            in_dump(b"-- CHANGE MASTER TO MASTER_LOG_FILE='b.1', MASTER_LOG_POS=;\n"),
            None
        );
        assert_eq!(in_dump(b"CREATE TABLE t (a int);\n"), None);
    }
}
