//! `restore --table T` (repeatable): only those tables of a dump. The dump tool writes each
//! table (and view) under comment headers of their own line (`-- Table structure for table
//! `t``, `-- Dumping data for table `t``, `-- Temporary table structure for view `v``, `-- Final
//! view structure for view `v``), a table's triggers after its data, and routines and events
//! in sections of their own at the end. [`TableFilter`] passes the dump's preamble and the
//! sections of the tables asked for, and leaves out every other section (routines and events
//! too). A string value never holds a raw newline (the dump escapes them), so a line starting
//! with such a header is one.

use std::collections::BTreeSet;
use std::io::{BufRead, Read};

/// The longest line start looked at to tell a header (the prefix and a quoted name of up to
/// 64 characters, each up to 4 bytes, doubled backquotes included).
const HEAD_MAX: usize = 600;

/// Header line prefixes that start a table's or view's section, the name following in
/// backquotes.
const NAMED: [&[u8]; 4] = [
    b"-- Table structure for table `",
    b"-- Dumping data for table `",
    b"-- Temporary table structure for view `",
    b"-- Final view structure for view `",
];
/// Header line prefixes of the sections never kept with `--table`.
const OTHERS: [&[u8]; 2] = [
    b"-- Dumping routines for database",
    b"-- Dumping events for database",
];

/// A dump stream with only the sections of `tables` (and the preamble).
pub struct TableFilter<R> {
    inner: R,
    tables: BTreeSet<String>,
    keep: bool,
    line_start: bool,
    /// A line start read to classify, not yet handed out (when kept).
    head: Vec<u8>,
    /// How much of `head` was handed out.
    given: usize,
}

impl<R: BufRead> TableFilter<R> {
    /// Filters `inner` down to `tables`.
    pub fn new(inner: R, tables: &[String]) -> Self {
        TableFilter {
            inner,
            tables: tables.iter().cloned().collect(),
            keep: true,
            line_start: true,
            head: Vec::new(),
            given: 0,
        }
    }

    /// Reads the start of a line (up to a newline or [`HEAD_MAX`] bytes) into `head` and
    /// decides whether its section is kept.
    fn classify(&mut self) -> std::io::Result<()> {
        self.head.clear();
        self.given = 0;
        while self.head.len() < HEAD_MAX && self.head.last() != Some(&b'\n') {
            let buf = self.inner.fill_buf()?;
            if buf.is_empty() {
                break;
            }
            let want = HEAD_MAX - self.head.len();
            let n = match buf.iter().take(want).position(|&b| b == b'\n') {
                Some(i) => i + 1,
                None => buf.len().min(want),
            };
            self.head.extend_from_slice(&buf[..n]);
            self.inner.consume(n);
        }
        if let Some(name) = section_name(&self.head) {
            self.keep = self.tables.contains(&name);
        } else if OTHERS.iter().any(|p| self.head.starts_with(p)) {
            self.keep = false;
        }
        self.line_start = self.head.last() == Some(&b'\n');
        Ok(())
    }
}

/// The table or view a header line names.
fn section_name(line: &[u8]) -> Option<String> {
    let rest = NAMED.iter().find_map(|p| line.strip_prefix(*p))?;
    let mut name = Vec::new();
    let mut i = 0;
    while i < rest.len() {
        match (rest[i], rest.get(i + 1)) {
            (b'`', Some(b'`')) => {
                name.push(b'`');
                i += 2;
            }
            (b'`', _) => return String::from_utf8(name).ok(),
            (b, _) => {
                name.push(b);
                i += 1;
            }
        }
    }
    None
}

impl<R: BufRead> Read for TableFilter<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if self.given < self.head.len() {
                if !self.keep {
                    self.given = self.head.len();
                    continue;
                }
                let n = out.len().min(self.head.len() - self.given);
                out[..n].copy_from_slice(&self.head[self.given..self.given + n]);
                self.given += n;
                return Ok(n);
            }
            if self.line_start {
                self.classify()?;
                if self.head.is_empty() {
                    return Ok(0);
                }
                continue;
            }
            let buf = self.inner.fill_buf()?;
            if buf.is_empty() {
                return Ok(0);
            }
            let (n, end) = match buf.iter().take(out.len()).position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (buf.len().min(out.len()), false),
            };
            let kept = self.keep;
            if kept {
                out[..n].copy_from_slice(&buf[..n]);
            }
            self.inner.consume(n);
            self.line_start = end;
            if kept {
                return Ok(n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP: &str = "/*!40101 SET NAMES utf8mb4 */;\n\
        --\n-- Table structure for table `orders`\n--\n\nCREATE TABLE `orders` (id int);\n\
        --\n-- Dumping data for table `orders`\n--\n\nINSERT INTO `orders` VALUES (1),(2);\n\
        --\n-- Table structure for table `odd``name`\n--\n\nCREATE TABLE `odd``name` (a int);\n\
        INSERT INTO `odd``name` VALUES ('-- Table structure for table `orders`');\n\
        --\n-- Temporary table structure for view `v`\n--\n\nCREATE VIEW v AS SELECT 1;\n\
        --\n-- Dumping routines for database 'shop'\n--\nCREATE PROCEDURE p() BEGIN END;\n\
        /*!40103 SET TIME_ZONE=@OLD_TIME_ZONE */;\n";

    fn filtered(tables: &[&str], chunk: usize) -> String {
        let tables: Vec<String> = tables.iter().map(|t| t.to_string()).collect();
        let reader = std::io::BufReader::with_capacity(7, DUMP.as_bytes());
        let mut f = TableFilter::new(reader, &tables);
        let mut out = Vec::new();
        let mut buf = vec![0u8; chunk];
        loop {
            let n = f.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn only_the_sections_asked_for_pass() {
        for chunk in [1, 3, 64, 4096] {
            let out = filtered(&["orders"], chunk);
            assert!(out.starts_with("/*!40101 SET NAMES utf8mb4 */;\n"), "{out}");
            assert!(
                out.contains("CREATE TABLE `orders`") && out.contains("VALUES (1),(2)"),
                "{out}"
            );
            assert!(
                !out.contains("odd") && !out.contains("VIEW") && !out.contains("PROCEDURE"),
                "{out}"
            );
            let odd = filtered(&["odd`name"], chunk);
            assert!(
                odd.contains("CREATE TABLE `odd``name`") && !odd.contains("CREATE TABLE `orders`"),
                "{odd}"
            );
            // A value that looks like a header is not one: it is inside the kept INSERT line.
            assert!(odd.contains("VALUES ('-- Table structure"), "{odd}");
        }
        assert_eq!(
            section_name(b"-- Dumping data for table `a``b`\n").as_deref(),
            Some("a`b")
        );
        assert_eq!(section_name(b"-- Dumping data for table `cut"), None);
    }
}
