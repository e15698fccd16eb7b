//! The text of a dump on its way into the client, made to load into the database it is being
//! restored to. This is for usability only: the isolation of a load comes from the login it
//! runs as (see `sandbox`), so a case missed here fails loudly instead of reaching another
//! database. What changes, outside rows (`INSERT INTO` lines outside blocks, passed through):
//! - when loading under another name, references qualified with the original database inside
//!   `DELIMITER ;;` blocks (triggers, routines, events keep their statements as written) and
//!   view definitions lose the qualification, backticked (`` `db`.t ``) or bare (`db.t`);
//!   `ALTER DATABASE `db` CHARACTER SET …` lines lose the name;
//! - every `DEFINER=user@host` clause becomes `DEFINER=CURRENT_USER` (the loading login may not
//!   set another definer), and the original definer is recorded per object, so the trusted
//!   session can give each object its definer back after the load.
//!
//! Lines are read with a bound: a line longer than [`MAX_LINE`] (a huge row) is passed through
//! as it is, in pieces, so memory stays flat whatever the dump holds.

use super::definitions::Kind;
use std::collections::HashMap;
use std::io::{BufRead, Read, Write};

/// Longest line that is inspected; longer ones pass through unchanged.
pub const MAX_LINE: u64 = 1 << 20;

/// Most definers recorded (at most ~50 MiB however the dump is forged); objects past it get
/// the restore user as definer.
const MAX_DEFINERS: usize = 100_000;

/// An account named in a `DEFINER=` clause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Definer {
    /// User (or role) name.
    pub user: String,
    /// Host part, absent for a role.
    pub host: Option<String>,
}

impl Definer {
    /// The account as SQL (`` `user`@`host` ``), quoted here whatever the dump said.
    pub fn sql(&self) -> String {
        let q = |s: &str| format!("`{}`", s.replace('`', "``"));
        match &self.host {
            Some(h) => format!("{}@{}", q(&self.user), q(h)),
            None => q(&self.user),
        }
    }
}

/// The original definer of each object of a loaded dump, by kind and name.
pub type Definers = HashMap<(Kind, String), Definer>;

/// What [`copy_sql`] did.
#[derive(Debug, Default)]
pub struct Rewritten {
    /// Bytes read.
    pub bytes: u64,
    /// Original definers.
    pub definers: Definers,
}

/// Copies SQL from `src` to `dst`, rewritten as the module header says; `rename_from` is the
/// original database name when it loads under another.
pub fn copy_sql(
    mut src: impl BufRead,
    dst: &mut impl Write,
    rename_from: Option<&str>,
) -> std::io::Result<Rewritten> {
    let mut state = State::new(rename_from);
    let mut line = Vec::with_capacity(1 << 16);
    let mut out = Rewritten::default();
    loop {
        if state.in_rows {
            // The rows of a statement: through in bulk, only its end looked for.
            let (n, ended) = pass_rows(&mut src, dst)?;
            out.bytes += n;
            state.in_rows = !ended;
            if !ended && n == 0 {
                out.definers = state.definers;
                return Ok(out);
            }
            continue;
        }
        line.clear();
        let n = (&mut src).take(MAX_LINE).read_until(b'\n', &mut line)?;
        if n == 0 {
            out.definers = state.definers;
            return Ok(out);
        }
        out.bytes += n as u64;
        if !line.ends_with(b"\n") && n as u64 == MAX_LINE {
            // A long line (a big row): through as it is, to its end.
            dst.write_all(&line)?;
            let (more, last) = pass_rest_of_line(&mut src, dst)?;
            out.bytes += more;
            state.long_line(&line, ends_statement(&last));
            continue;
        }
        state.line(&line, dst)?;
    }
}

/// Whether a line (or its last bytes) ends a statement of rows: `;` then the newline.
pub(crate) fn ends_statement(line: &[u8]) -> bool {
    line.ends_with(b";\n")
}

/// Copies rows up to and including the `;` and newline that end their statement (a row never
/// holds a raw newline); returns the bytes copied and whether the end was found.
fn pass_rows(src: &mut impl BufRead, dst: &mut impl Write) -> std::io::Result<(u64, bool)> {
    let mut total = 0u64;
    loop {
        let buf = src.fill_buf()?;
        if buf.is_empty() {
            return Ok((total, false));
        }
        if let Some(i) = memchr::memmem::find(buf, b";\n") {
            dst.write_all(&buf[..i + 2])?;
            src.consume(i + 2);
            return Ok((total + i as u64 + 2, true));
        }
        // Keep a last `;`: its newline may come with the next read.
        let n = buf.len() - usize::from(buf.ends_with(b";"));
        if n == 0 {
            // Only that `;` is buffered: the rest of its line, the slow way.
            let mut line = Vec::new();
            src.take(MAX_LINE).read_until(b'\n', &mut line)?;
            dst.write_all(&line)?;
            total += line.len() as u64;
            if ends_statement(&line) {
                return Ok((total, true));
            }
            continue;
        }
        dst.write_all(&buf[..n])?;
        src.consume(n);
        total += n as u64;
    }
}

/// Copies the rest of a long line; returns the bytes copied and the line's last 3 bytes.
fn pass_rest_of_line(
    src: &mut impl BufRead,
    dst: &mut impl Write,
) -> std::io::Result<(u64, Vec<u8>)> {
    let mut total = 0u64;
    let mut last = Vec::with_capacity(6);
    loop {
        let buf = src.fill_buf()?;
        if buf.is_empty() {
            return Ok((total, last));
        }
        let (n, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        dst.write_all(&buf[..n])?;
        last.extend_from_slice(&buf[n.saturating_sub(3)..n]);
        let cut = last.len().saturating_sub(3);
        last.drain(..cut);
        src.consume(n);
        total += n as u64;
        if done {
            return Ok((total, last));
        }
    }
}

struct State {
    rename: Option<Rename>,
    in_block: bool,
    /// Inside an `INSERT INTO … VALUES` whose rows follow on lines of their own (the dump
    /// tool writes one row per line): rows, never rewritten, until a line ends with `;`.
    in_rows: bool,
    pending: Option<Definer>,
    definers: Definers,
}

struct Rename {
    quoted: String,
    bare: Option<String>,
    alter: String,
}

impl State {
    fn new(rename_from: Option<&str>) -> State {
        let rename = rename_from.map(|db| {
            let quoted = format!("`{}`", db.replace('`', "``"));
            let bare_ok = !db.is_empty()
                && db
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$')
                && !db.bytes().all(|b| b.is_ascii_digit());
            Rename {
                alter: format!("ALTER DATABASE {quoted} CHARACTER SET "),
                bare: bare_ok.then(|| db.to_string()),
                quoted,
            }
        });
        State {
            rename,
            in_block: false,
            in_rows: false,
            pending: None,
            definers: Definers::new(),
        }
    }

    /// Whether `line` starts (or continues) a statement of rows, updating the state.
    fn rows(&mut self, line: &[u8], ends: bool) -> bool {
        // Rows (never inside a `DELIMITER ;;` block, where a routine body may start so).
        let starts = !self.in_block
            && (line.starts_with(b"INSERT INTO ") || line.starts_with(b"REPLACE INTO "));
        if !(self.in_rows || starts) {
            return false;
        }
        self.in_rows = !ends;
        true
    }

    /// A line too long to inspect went through as it was; `ends`: it ended with `;`.
    fn long_line(&mut self, head: &[u8], ends: bool) {
        self.rows(head, ends);
    }

    fn line(&mut self, line: &[u8], dst: &mut impl Write) -> std::io::Result<()> {
        if self.rows(line, ends_statement(line)) {
            return dst.write_all(line);
        }
        if line.starts_with(b"DELIMITER ") {
            self.in_block = line.starts_with(b"DELIMITER ;;");
            return dst.write_all(line);
        }
        let Ok(text) = std::str::from_utf8(line) else {
            return dst.write_all(line);
        };
        let mut text = text.to_string();
        if let Some(r) = &self.rename {
            if text.starts_with(&r.alter) {
                text = format!(
                    "ALTER DATABASE {}",
                    &text[r.alter.len() - "CHARACTER SET ".len()..]
                );
            } else if self.in_block || text.starts_with("/*!50001 ") {
                text = unqualify(&text, r);
            }
        }
        let mut from = 0;
        if text.contains("DEFINER=") {
            (text, from) = self.definer_clauses(&text);
        }
        if self.pending.is_some() {
            self.name_after_definer(&text[from..]);
        }
        dst.write_all(text.as_bytes())
    }

    /// Replaces each `DEFINER=account` with `DEFINER=CURRENT_USER`, remembering the account;
    /// also returns where the text after the last clause starts.
    fn definer_clauses(&mut self, text: &str) -> (String, usize) {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        let mut after_last = 0;
        while let Some(i) = rest.find("DEFINER=") {
            let after = &rest[i + "DEFINER=".len()..];
            out.push_str(&rest[..i + "DEFINER=".len()]);
            match parse_account(after) {
                Some((definer, used)) => {
                    out.push_str("CURRENT_USER");
                    after_last = out.len();
                    self.pending = definer;
                    rest = &after[used..];
                }
                None => rest = after,
            }
        }
        out.push_str(rest);
        (out, after_last)
    }

    /// Finds `TRIGGER name` (…) in `text`, which follows a definer clause, and records the
    /// definer for it.
    fn name_after_definer(&mut self, text: &str) {
        const KINDS: [(&str, Kind); 5] = [
            (" TRIGGER ", Kind::Trigger),
            (" PROCEDURE ", Kind::Procedure),
            (" FUNCTION ", Kind::Function),
            (" EVENT ", Kind::Event),
            (" VIEW ", Kind::View),
        ];
        let found = KINDS
            .iter()
            .filter_map(|(w, k)| text.find(w).map(|i| (i + w.len(), *k)))
            .min_by_key(|(i, _)| *i);
        let Some((at, kind)) = found else {
            return;
        };
        let Some(name) = object_name(&text[at..]) else {
            return;
        };
        if let Some(d) = self.pending.take() {
            if self.definers.len() < MAX_DEFINERS {
                self.definers.insert((kind, name), d);
            }
        }
    }
}

/// `text` with `` `db`. `` and bare `db.` (not the end of another name) removed.
fn unqualify(text: &str, r: &Rename) -> String {
    let s = text.replace(&format!("{}.", r.quoted), "");
    let Some(bare) = &r.bare else {
        return s;
    };
    let pat = format!("{bare}.");
    let mut out = String::with_capacity(s.len());
    let mut last = 0;
    for (i, _) in s.match_indices(&pat) {
        if i < last {
            continue;
        }
        let prev = s[..i].chars().last();
        let inside_a_name =
            prev.is_some_and(|c| c.is_alphanumeric() || matches!(c, '_' | '$' | '.' | '`' | '@'));
        out.push_str(&s[last..i]);
        if inside_a_name {
            out.push_str(&pat);
        }
        last = i + pat.len();
    }
    out.push_str(&s[last..]);
    out
}

/// One identifier: backticked (with ` doubled), double-quoted, single-quoted, or bare.
/// Returns the name and the bytes used.
pub(crate) fn identifier(s: &str) -> Option<(String, usize)> {
    let first = s.chars().next()?;
    if matches!(first, '`' | '\'' | '"') {
        let mut name = String::new();
        let mut chars = s.char_indices().skip(1).peekable();
        while let Some((i, c)) = chars.next() {
            if c == first {
                if chars.peek().is_some_and(|(_, n)| *n == first) {
                    chars.next();
                    name.push(c);
                    continue;
                }
                return Some((name, i + 1));
            }
            name.push(c);
        }
        return None;
    }
    let end = s
        .find(|c: char| {
            !(c.is_alphanumeric() || c == '_' || c == '$' || c == '%' || c == '.' || c == '-')
        })
        .unwrap_or(s.len());
    (end > 0).then(|| (s[..end].to_string(), end))
}

/// A definer account (`user@host`, `user`, `CURRENT_USER`, `CURRENT_USER()`); `None` inside for
/// `CURRENT_USER` (nothing to give back).
pub(crate) fn parse_account(s: &str) -> Option<(Option<Definer>, usize)> {
    for cu in ["CURRENT_USER()", "CURRENT_USER"] {
        if s.starts_with(cu) {
            return Some((None, cu.len()));
        }
    }
    let (user, mut used) = identifier(s)?;
    let host = if s[used..].starts_with('@') {
        let (h, n) = identifier(&s[used + 1..])?;
        used += 1 + n;
        Some(h)
    } else {
        None
    };
    if user.is_empty() || user.len() > 128 || host.as_ref().is_some_and(|h| h.len() > 255) {
        return None;
    }
    Some((Some(Definer { user, host }), used))
}

/// The object name at the start of `s`: `` `name` ``, `name`, or the last part of `a.b`.
fn object_name(s: &str) -> Option<String> {
    let s = s.trim_start();
    let (first, n) = identifier(s)?;
    if first.contains('.') && !s.starts_with('`') {
        return first.rsplit('.').next().map(str::to_string);
    }
    if let Some(rest) = s[n..].strip_prefix('.') {
        return identifier(rest).map(|(name, _)| name);
    }
    (!first.is_empty() && first.len() <= 64).then_some(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`copy_sql`] of a whole input into memory.
    fn rewrite_to_vec(src: impl Read, rename_from: Option<&str>) -> (Vec<u8>, Definers) {
        let mut out = Vec::new();
        let r = copy_sql(std::io::BufReader::new(src), &mut out, rename_from).expect("in memory");
        (out, r.definers)
    }

    fn run(sql: &str, from: Option<&str>) -> (String, Definers) {
        let (out, d) = rewrite_to_vec(sql.as_bytes(), from);
        (String::from_utf8(out).unwrap(), d)
    }

    #[test]
    fn qualified_names_in_blocks_are_dropped_in_every_quoting() {
        let sql = "INSERT INTO t VALUES ('`shop`.x','shop.y');\nDELIMITER ;;\n/*!50003 CREATE*/ /*!50017 DEFINER=`root`@`localhost`*/ /*!50003 TRIGGER shop.t_ai AFTER INSERT ON `shop`.t FOR EACH ROW INSERT INTO shop.log VALUES (1), (myshop.x) */;;\nDELIMITER ;\nSELECT '`shop`.y';\n";
        let (out, d) = run(sql, Some("shop"));
        assert!(
            out.contains("/*!50017 DEFINER=CURRENT_USER*/ /*!50003 TRIGGER t_ai AFTER INSERT ON t FOR EACH ROW INSERT INTO log VALUES (1), (myshop.x) */"),
            "{out}"
        );
        // Data and statements outside the blocks are never rewritten.
        assert!(
            out.contains("('`shop`.x','shop.y')") && out.contains("'`shop`.y'"),
            "{out}"
        );
        assert_eq!(
            d.get(&(Kind::Trigger, "t_ai".into())),
            Some(&Definer {
                user: "root".into(),
                host: Some("localhost".into())
            })
        );
        let (same, _) = run(sql, None);
        assert!(
            same.contains("TRIGGER shop.t_ai AFTER INSERT ON `shop`.t"),
            "{same}"
        );
    }

    #[test]
    fn definers_of_every_kind_are_recorded_and_replaced() {
        let sql = "DELIMITER ;;\nCREATE DEFINER=`app``x`@`%` PROCEDURE `p q`()\nINSERT INTO `shop`.log VALUES (1) ;;\nCREATE DEFINER=`root`@`localhost` FUNCTION `f`() RETURNS int\nRETURN 1 ;;\n/*!50106 CREATE*/ /*!50117 DEFINER=`ev`@`localhost`*/ /*!50106 EVENT `e` ON SCHEDULE EVERY 1 HOUR DO SELECT 1 */ ;;\nDELIMITER ;\n/*!50001 CREATE ALGORITHM=UNDEFINED */\n/*!50013 DEFINER=`vw`@`localhost` SQL SECURITY DEFINER */\n/*!50001 VIEW `v` AS select `shop`.`t`.`a` AS `a` from `shop`.`t` */;\n";
        let (out, d) = run(sql, Some("shop"));
        assert!(!out.contains("DEFINER=`"), "{out}");
        assert!(
            out.contains("VIEW `v` AS select `t`.`a` AS `a` from `t` */"),
            "{out}"
        );
        let (_, same_line) = run(
            "CREATE DEFINER=`a`@`b` FUNCTION `who`() RETURNS text RETURN CURRENT_USER;\n",
            None,
        );
        assert!(same_line.contains_key(&(Kind::Function, "who".into())));
        let user = |k: Kind, n: &str| d.get(&(k, n.to_string())).map(|x| x.sql());
        assert_eq!(
            user(Kind::Procedure, "p q").as_deref(),
            Some("`app``x`@`%`")
        );
        assert_eq!(
            user(Kind::Function, "f").as_deref(),
            Some("`root`@`localhost`")
        );
        assert_eq!(user(Kind::Event, "e").as_deref(), Some("`ev`@`localhost`"));
        assert_eq!(user(Kind::View, "v").as_deref(), Some("`vw`@`localhost`"));
    }

    #[test]
    fn alter_database_lines_lose_the_original_name() {
        let sql = "ALTER DATABASE `my db` CHARACTER SET latin1 COLLATE latin1_swedish_ci ;\nDELIMITER ;;\nALTER DATABASE `my db` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin ;;\nDELIMITER ;\nINSERT INTO t VALUES ('ALTER DATABASE `my db` CHARACTER SET x');\nALTER DATABASE `other` CHARACTER SET latin1 ;\n";
        let (out, _) = run(sql, Some("my db"));
        assert_eq!(
            out,
            "ALTER DATABASE CHARACTER SET latin1 COLLATE latin1_swedish_ci ;\nDELIMITER ;;\nALTER DATABASE CHARACTER SET utf8mb4 COLLATE utf8mb4_bin ;;\nDELIMITER ;\nINSERT INTO t VALUES ('ALTER DATABASE `my db` CHARACTER SET x');\nALTER DATABASE `other` CHARACTER SET latin1 ;\n"
        );
    }

    #[test]
    fn long_lines_pass_through_whole() {
        let big = format!(
            "INSERT INTO t VALUES ('{}');\nCREATE DEFINER=`a`@`b` PROCEDURE p() SELECT 1;\n",
            "x".repeat(3 * MAX_LINE as usize)
        );
        let mut nl = big.clone();
        nl.insert_str(0, &"y".repeat(2 * MAX_LINE as usize));
        let (out, d) = run(&nl, None);
        assert_eq!(out.len(), nl.len() - "`a`@`b`".len() + "CURRENT_USER".len());
        assert!(d.contains_key(&(Kind::Procedure, "p".into())));
    }

    #[test]
    fn rows_on_lines_of_their_own_are_never_rewritten() {
        // MariaDB's dump tool writes one row per line; a row's text may look like a clause.
        let big = "z".repeat(2 * MAX_LINE as usize);
        let sql = format!("INSERT INTO `t` VALUES\n(1,'CREATE DEFINER=`root`@`localhost` VIEW x'),\n(2,'{big}');\nCREATE DEFINER=`a`@`b` PROCEDURE p() SELECT 1;\nINSERT INTO `t` VALUES\n(3,'{big}'),\n(4,'DEFINER=`root`@`%`');\n");
        let (out, d) = run(&sql, Some("shop"));
        assert!(out.contains("(1,'CREATE DEFINER=`root`@`localhost` VIEW x'),\n"));
        assert!(out.contains("(4,'DEFINER=`root`@`%`');\n"));
        assert!(
            out.contains("CREATE DEFINER=CURRENT_USER PROCEDURE p()"),
            "{}",
            &out[..200]
        );
        assert_eq!(d.len(), 1, "only the procedure's definer: {d:?}");
        assert_eq!(
            out.len(),
            sql.len() - "`a`@`b`".len() + "CURRENT_USER".len()
        );
    }

    #[test]
    fn odd_definer_text_is_left_for_the_server_to_refuse() {
        // Unparseable: passed on unchanged, so the loading login's CREATE fails loudly.
        let (out, d) = run(
            "CREATE DEFINER=`unterminated PROCEDURE p() SELECT 1;\n",
            None,
        );
        assert!(out.contains("DEFINER=`unterminated"), "{out}");
        assert!(d.is_empty());
    }
}
