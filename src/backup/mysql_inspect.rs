//! What opsagent asks about a database before dumping it, so the dump restores faithfully:
//! - its default character set and collation: the dump tool writes no `CREATE DATABASE` (so the
//!   dump loads under any name), so they go in front of the SQL as an unnamed
//!   `ALTER DATABASE CHARACTER SET … COLLATE …`, which applies to whatever database it loads into;
//! - its system-versioned tables: their history is dumped too (`--dump-history`) where the dump
//!   tool can, otherwise a warning names them;
//! - its FLOAT columns: any dump tool writes them with 6 significant digits, so a warning names
//!   them;
//! - whether it still exists (`databases = ["*"]` skips one dropped since it was listed).

use super::mysql_cmd::query;
use crate::config::MysqlJob;
use crate::mysql_client::MysqlError;
use std::path::Path;

/// What [`inspect`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inspection {
    /// The database exists.
    pub exists: bool,
    /// Its default character set and collation.
    pub charset: Option<(String, String)>,
    /// System-versioned tables.
    pub versioned: Vec<String>,
    /// Every table and view.
    pub tables: Vec<String>,
    /// FLOAT columns, as `table.column`.
    pub floats: Vec<String>,
}

fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

fn unhex(s: &str) -> String {
    hex::decode(s)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_else(|_| s.to_string())
}

/// Asks the server about `db` (one query; names come back in hex, so any byte in them is safe).
pub fn inspect(job: &MysqlJob, client: &Path, db: &str) -> Result<Inspection, MysqlError> {
    let l = literal(db);
    let sql = format!(
        "SELECT 'cs', DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = {l} \
         UNION ALL SELECT 'sv', HEX(TABLE_NAME), '' FROM information_schema.TABLES WHERE TABLE_SCHEMA = {l} AND TABLE_TYPE = 'SYSTEM VERSIONED' \
         UNION ALL SELECT 'tb', HEX(TABLE_NAME), '' FROM information_schema.TABLES WHERE TABLE_SCHEMA = {l} \
         UNION ALL SELECT 'fl', HEX(c.TABLE_NAME), HEX(c.COLUMN_NAME) FROM information_schema.COLUMNS c JOIN information_schema.TABLES t \
           ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME \
           WHERE c.TABLE_SCHEMA = {l} AND c.DATA_TYPE = 'float' AND t.TABLE_TYPE <> 'VIEW'"
    );
    Ok(parse(&query(job, client, &sql)?))
}

fn parse(rows: &[String]) -> Inspection {
    let mut out = Inspection::default();
    for row in rows {
        let f: Vec<&str> = row.split('\t').collect();
        match f.as_slice() {
            ["cs", cs, coll] => {
                out.exists = true;
                let word = |s: &str| {
                    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                };
                if word(cs) && word(coll) {
                    out.charset = Some((cs.to_string(), coll.to_string()));
                }
            }
            ["sv", t, _] => out.versioned.push(unhex(t)),
            ["tb", t, _] => out.tables.push(unhex(t)),
            ["fl", t, c] => out.floats.push(format!("{}.{}", unhex(t), unhex(c))),
            _ => {}
        }
    }
    out
}

/// The SQL put in front of the dump (after the tool's first line when that is its sandbox-mode
/// marker, which the client only honours there).
pub fn preamble(i: &Inspection) -> Vec<u8> {
    match &i.charset {
        Some((cs, coll)) => format!(
            "-- opsagent: the default character set and collation of the database this was dumped from\n/*!40101 ALTER DATABASE CHARACTER SET {cs} COLLATE {coll} */;\n"
        )
        .into_bytes(),
        None => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_answer() {
        let rows = [
            "cs\tlatin1\tlatin1_swedish_ci".to_string(),
            format!("sv\t{}\t", hex::encode("hist ory")),
            format!("fl\t{}\t{}", hex::encode("t"), hex::encode("f\tx")),
        ];
        let i = parse(&rows);
        assert!(i.exists);
        assert_eq!(i.versioned, ["hist ory"]);
        assert_eq!(i.floats, ["t.f\tx"]);
        assert_eq!(
            String::from_utf8(preamble(&i)).unwrap().lines().nth(1),
            Some("/*!40101 ALTER DATABASE CHARACTER SET latin1 COLLATE latin1_swedish_ci */;")
        );
        let gone = parse(&[]);
        assert!(!gone.exists && preamble(&gone).is_empty());
        assert_eq!(parse(&["cs\tx;y\tz".to_string()]).charset, None);
    }
}
