//! Where each line of a dump goes when it loads on several sessions at once.
//!
//! The dump is one stream in the order the dump tool wrote it. Its statements of rows (`INSERT
//! INTO … VALUES` up to the line ending in `;`, inside a `-- Dumping data for table` section)
//! go to whichever session has the least queued; everything else (the preamble, `CREATE
//! TABLE`, triggers, views, routines, events) goes to session 0, in order. Two waits keep the
//! one-session meaning:
//! - before a table's first rows go out, session 0 has run everything sent to it (the table
//!   exists);
//! - before any other statement follows rows sent to other sessions, every session has run
//!   what it was sent (a trigger is created after all the rows, as in the dump). The next
//!   table's own definition (its `DROP TABLE IF EXISTS` and `CREATE TABLE`, as its section
//!   header names it) is the exception: it runs on session 0 while the others finish the
//!   previous table's rows, so the sessions are not drained at every table.
//!
//! `LOCK TABLES … WRITE` / `UNLOCK TABLES` and `ALTER TABLE … DISABLE/ENABLE KEYS` around a
//! table's rows are left out (a lock held by one session would stop the others). The preamble
//! (the lines before the first section: character set, time zone, `UNIQUE_CHECKS=0`,
//! `FOREIGN_KEY_CHECKS=0`, `SQL_MODE`) runs on session 0 as it is; the other sessions get only
//! its `SET` statements before their first ([`session_settings`]): anything else there (the
//! sequences `mariadb-dump` writes before the first table, an `ALTER DATABASE`) must run once.
//!
//! A table's plain `KEY` lines are built after its rows ([`keys`]): on the sessions of rows
//! while the next tables load, where the sink can order that ([`Sink::after_all`]), else at the
//! end of the dump.
//!
//! Nothing here keeps a load inside its target: every session logs in as the load account
//! (`sandbox`), so a forged dump routed oddly still reaches nothing else.

use super::keys;
use super::lines::{around_rows, line_part, section, session_settings, Part, SECTIONS};
use super::Sink;
use std::io::Write;

/// The longest line start looked at to classify a line.
const HEAD_MAX: usize = 600;

/// A preamble longer than this is not a dump tool's: the rest loads on session 0 alone.
pub const PREAMBLE_MAX: usize = 64 << 10;

/// A `Write` that routes a dump's lines to sessions; see the module header.
pub struct Router<S: Sink> {
    sink: S,
    part: Part,
    preamble: Vec<u8>,
    /// The rest loads on session 0 alone (the preamble was not a dump tool's).
    single: bool,
    /// The start of the current line, not yet routed.
    head: Vec<u8>,
    /// Where the rest of the current line goes (`None` at a line start; `Some(None)`: dropped).
    dest: Option<Option<usize>>,
    /// The session running the current statement of rows.
    rows_on: Option<usize>,
    /// The last byte sent of the current statement of rows (its end, `;\n`, may straddle
    /// two writes).
    last: u8,
    /// Session 0 has run the current table's definition.
    table_ready: bool,
    /// Sessions other than 0 were sent statements since the last wait for them.
    spread: bool,
    /// Among those statements, held-back indexes ([`Router::build_after_rows`]).
    handed: bool,
    /// Inside a `DELIMITER ;;` block.
    in_block: bool,
    /// The quoted name of the table whose structure section this is (as its header names it).
    structure: Vec<u8>,
    /// Inside that table's own `CREATE TABLE`, which needs no wait (see [`own_definition`]).
    defining: bool,
    /// Statements of rows sent to each session.
    statements: Vec<u64>,
    /// The table's own `CREATE TABLE`, gathered to take its plain `KEY` lines out
    /// ([`keys::defer`]); `None` when not inside one, or not looking.
    create: Option<Vec<u8>>,
    /// The preamble's settings, when it is a dump tool's (secondary indexes may then be built
    /// after the rows, under these settings).
    settings: Option<Vec<u8>>,
    /// The `ALTER TABLE … ADD KEY` statements held back until the rows are in.
    deferred: Vec<Vec<u8>>,
    /// How many tables had their indexes built after their rows.
    rebuilt: usize,
}

impl<S: Sink> Router<S> {
    /// Routes to `sink`'s sessions (session 0 is already started).
    pub fn new(sink: S) -> Self {
        Router {
            single: sink.count() < 2,
            statements: vec![0; sink.count()],
            sink,
            part: Part::Preamble,
            preamble: Vec::new(),
            head: Vec::with_capacity(HEAD_MAX),
            dest: None,
            rows_on: None,
            last: 0,
            table_ready: false,
            spread: false,
            handed: false,
            in_block: false,
            structure: Vec::new(),
            defining: false,
            create: None,
            settings: None,
            deferred: Vec::new(),
            rebuilt: 0,
        }
    }

    /// Routes what is left of an unfinished last line and builds the indexes held back;
    /// hands back the sink, how many statements of rows each session got, and how many tables
    /// had their indexes built after their rows.
    pub fn finish(mut self) -> std::io::Result<(S, Vec<u64>, usize)> {
        if self.dest.is_none() && !self.head.is_empty() {
            self.route_head()?;
        }
        if self.part == Part::Preamble {
            self.end_preamble(false)?;
        }
        self.end_create()?;
        self.build_deferred(true)?;
        Ok((self.sink, self.statements, self.rebuilt))
    }

    /// Starts the other sessions with the preamble (or none, and loads on session 0 alone).
    fn end_preamble(&mut self, keep: bool) -> std::io::Result<()> {
        let preamble = std::mem::take(&mut self.preamble);
        self.part = Part::Other;
        self.single |= !keep;
        let settings = keep.then(|| session_settings(&preamble));
        self.sink.start(settings.as_deref().unwrap_or_default())?;
        self.settings = settings;
        Ok(())
    }

    /// Decides where the line in `head` goes, and sends `head` there. A statement of rows
    /// goes on in [`Router::rows`], which looks for its end only.
    fn route_head(&mut self) -> std::io::Result<()> {
        let to = self.classify()?;
        self.dest = Some(to);
        let head = std::mem::take(&mut self.head);
        let sent = self.emit(&head);
        if self.rows_on.is_some() {
            self.dest = None;
            self.last = head.last().copied().unwrap_or(0);
            if head.ends_with(b";\n") {
                self.rows_on = None;
            }
        }
        self.head = head;
        self.head.clear();
        sent
    }

    /// Sends what of `buf` belongs to the statement of rows in progress on `to`; returns how
    /// much that was, and ends the statement at its `;` and newline (a row never holds a raw
    /// newline: the dump escapes them).
    fn rows(&mut self, to: usize, buf: &[u8]) -> std::io::Result<usize> {
        let end = if self.last == b';' && buf.first() == Some(&b'\n') {
            Some(1)
        } else {
            memchr::memmem::find(buf, b";\n").map(|i| i + 2)
        };
        let n = end.unwrap_or(buf.len());
        self.sink.send(to, &buf[..n])?;
        self.last = buf[..n].last().copied().unwrap_or(self.last);
        if end.is_some() {
            self.rows_on = None;
            self.last = 0;
        }
        Ok(n)
    }

    /// Sends `bytes` of the current line where it goes; keeps the preamble.
    fn emit(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match (self.dest, self.create.as_mut()) {
            (Some(Some(0)), Some(c)) if c.len() + bytes.len() <= keys::CREATE_MAX => {
                c.extend_from_slice(bytes);
            }
            (Some(Some(0)), Some(_)) => {
                // Too long to look at: loads as written.
                self.end_create()?;
                self.sink.send(0, bytes)?;
            }
            (Some(Some(to)), _) => self.sink.send(to, bytes)?,
            _ => {}
        }
        if self.part == Part::Preamble {
            if self.preamble.len() + bytes.len() > PREAMBLE_MAX {
                return self.end_preamble(false);
            }
            self.preamble.extend_from_slice(bytes);
        }
        Ok(())
    }

    /// Where the line starting with `head` goes (`None`: left out).
    fn classify(&mut self) -> std::io::Result<Option<usize>> {
        let line = &self.head[..];
        if SECTIONS.iter().any(|s| line.starts_with(s)) {
            self.end_create()?;
            if self.part == Part::Preamble {
                self.end_preamble(true)?;
            }
            if self.table_ready {
                self.build_after_rows()?;
            }
            let (part, name) = section(&self.head);
            self.part = part;
            self.structure.clear();
            self.structure.extend_from_slice(name);
            self.table_ready = false;
            self.defining = false;
            return Ok(Some(0));
        }
        if line.starts_with(b"--") || line == b"\n" || self.part == Part::Preamble {
            return Ok(Some(0));
        }
        let rows = line.starts_with(b"INSERT INTO ") || line.starts_with(b"REPLACE INTO ");
        if self.part == Part::Data && !self.in_block && !self.single {
            if rows {
                return self.rows_to_any().map(Some);
            }
            if around_rows(line) {
                return Ok(None);
            }
        }
        if self.part == Part::Structure && !self.in_block && self.own_definition() {
            let starts = self.defining && self.head.starts_with(b"CREATE TABLE ");
            if starts && self.settings.is_some() && self.create.is_none() {
                self.create = Some(Vec::new());
            }
            return Ok(Some(0));
        }
        if self.spread {
            let n = self.sink.count();
            self.sink.wait(1..n)?;
            (self.spread, self.handed) = (false, false);
        }
        if self.head.starts_with(b"DELIMITER ") {
            self.in_block = self.head.starts_with(b"DELIMITER ;;");
        }
        if self.part == Part::Data && !rows {
            self.part = Part::Other;
        }
        self.rows_on = (rows && !self.in_block).then_some(0);
        if self.rows_on.is_some() {
            self.statements[0] += 1;
        }
        Ok(Some(0))
    }

    /// Whether the line in `head`, in a table's structure section, is part of that table's
    /// own definition as the dump tool writes it: `DROP TABLE IF EXISTS` and `CREATE TABLE` of
    /// the table the section names (to the line ending in `;`), or a session setting. Those
    /// need not wait for the previous table's rows; anything else does. (A dump shaped
    /// otherwise only loses the overlap: every session is the load account either way.)
    fn own_definition(&mut self) -> bool {
        let (line, name) = (&self.head[..], &self.structure[..]);
        let after = |prefix: &[u8]| line.strip_prefix(prefix).and_then(|r| r.strip_prefix(name));
        let mut defining = self.defining;
        let own = if defining {
            true
        } else if let Some(rest) = after(b"DROP TABLE IF EXISTS ") {
            rest == b";\n"
        } else if let Some(rest) = after(b"CREATE TABLE ") {
            defining = rest.starts_with(b" (");
            defining
        } else {
            line.starts_with(b"/*!40101 SET ") && line.ends_with(b" */;\n")
        };
        self.defining = defining && !line.ends_with(b";\n");
        own && !name.is_empty()
    }

    /// A statement of rows of the current table: to the least busy session, once session 0
    /// has created the table.
    fn rows_to_any(&mut self) -> std::io::Result<usize> {
        if !self.table_ready {
            self.sink.wait(0..1)?;
            self.table_ready = true;
        }
        let to = self.sink.least_busy();
        if let Some(n) = self.statements.get_mut(to) {
            *n += 1;
        }
        self.spread |= to != 0;
        self.rows_on = Some(to);
        Ok(to)
    }

    /// The current line ended (its newline went where the line went).
    fn line_ended(&mut self) -> std::io::Result<()> {
        self.dest = None;
        match self.defining {
            true => Ok(()),
            false => self.end_create(),
        }
    }

    /// Sends the `CREATE TABLE` gathered so far to session 0, without its plain `KEY` lines
    /// where [`keys::defer`] takes it; after the held-back indexes when it references a table.
    fn end_create(&mut self) -> std::io::Result<()> {
        let Some(create) = self.create.take() else {
            return Ok(());
        };
        if keys::references(&create) {
            self.build_deferred(false)?;
        }
        let room = self.deferred.iter().map(Vec::len).sum::<usize>() < keys::DEFERRED_MAX;
        match keys::defer(&create, &self.structure).filter(|_| room) {
            Some((table, alter)) => {
                self.deferred.push(alter);
                self.rebuilt += 1;
                self.sink.send(0, &table)
            }
            None => self.sink.send(0, &create),
        }
    }

    /// After a table's rows (session 0 has run every `CREATE` sent before them): the indexes
    /// held back go to the sessions of rows, each built once every row sent so far is in, while
    /// the next tables load; those the sink cannot take so wait for the end of the dump.
    fn build_after_rows(&mut self) -> std::io::Result<()> {
        while let Some(alter) = self.deferred.first() {
            if !self.sink.after_all(alter)? {
                break;
            }
            self.deferred.remove(0);
            (self.spread, self.handed) = (true, true);
        }
        Ok(())
    }

    /// Builds the indexes held back, once every session has run the rows sent so far: at the
    /// end of the dump spread over the sessions (`spread`), before a statement that may need
    /// them on session 0, in order.
    fn build_deferred(&mut self, spread: bool) -> std::io::Result<()> {
        // (Before a statement on session 0, also those already given to the other sessions.)
        if self.deferred.is_empty() && (spread || !self.handed) {
            return Ok(());
        }
        let n = self.sink.count();
        self.sink.wait(if spread { 0..n } else { 1..n })?;
        (self.spread, self.handed) = (false, false);
        let mut settings = self.settings.clone().filter(|_| spread);
        for alter in std::mem::take(&mut self.deferred) {
            let to = match spread && !self.single {
                true => self.sink.least_busy(),
                false => 0,
            };
            // The dump's last lines gave session 0 the server's SQL_MODE back (NO_ZERO_DATE
            // refuses an ALTER of a table with a zero-date default): its settings again first.
            if let Some(settings) = settings.take_if(|_| to == 0) {
                self.sink.send(0, &settings)?;
            }
            self.sink.send(to, &alter)?;
        }
        Ok(())
    }
}

impl<S: Sink> Write for Router<S> {
    fn write(&mut self, mut buf: &[u8]) -> std::io::Result<usize> {
        let len = buf.len();
        while !buf.is_empty() {
            if let Some(to) = self.rows_on {
                // Rows of the statement in progress: only its end is looked for.
                let n = self.rows(to, buf)?;
                buf = &buf[n..];
                continue;
            }
            if self.dest.is_none() {
                let want = HEAD_MAX - self.head.len();
                let (n, nl) = line_part(&buf[..buf.len().min(want)]);
                self.head.extend_from_slice(&buf[..n]);
                buf = &buf[n..];
                if nl || self.head.len() == HEAD_MAX {
                    self.route_head()?;
                }
                if nl && self.rows_on.is_none() {
                    self.line_ended()?;
                }
                continue;
            }
            let (n, nl) = line_part(buf);
            self.emit(&buf[..n])?;
            buf = &buf[n..];
            if nl {
                self.line_ended()?;
            }
        }
        Ok(len)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sessions that record what they got, and the waits in between.
    #[derive(Default)]
    struct Fake {
        n: usize,
        got: Vec<Vec<u8>>,
        log: Vec<String>,
        /// Each wait for sessions 1.., with how much session 0 had been sent by then.
        drains: Vec<usize>,
        next: usize,
        /// Takes statements to run after everything sent so far ([`Sink::after_all`]).
        after: bool,
    }

    impl Sink for Fake {
        fn send(&mut self, to: usize, bytes: &[u8]) -> std::io::Result<()> {
            self.got[to].extend_from_slice(bytes);
            Ok(())
        }
        fn start(&mut self, preamble: &[u8]) -> std::io::Result<()> {
            for s in 1..self.n {
                self.got[s].extend_from_slice(preamble);
            }
            self.log.push("start".into());
            Ok(())
        }
        fn wait(&mut self, r: std::ops::Range<usize>) -> std::io::Result<()> {
            self.log.push(format!("wait {r:?}"));
            if r.start == 1 {
                self.drains.push(self.got[0].len());
            }
            Ok(())
        }
        fn least_busy(&self) -> usize {
            self.next % self.n
        }
        fn count(&self) -> usize {
            self.n
        }
        fn after_all(&mut self, statement: &[u8]) -> std::io::Result<bool> {
            if self.after {
                self.log
                    .push(format!("after {}", String::from_utf8_lossy(statement)));
                self.got[self.n - 1].extend_from_slice(statement);
            }
            Ok(self.after)
        }
    }

    fn route(sql: &str, n: usize, piece: usize) -> Fake {
        route_to(sql, n, piece, false)
    }

    fn route_to(sql: &str, n: usize, piece: usize, after: bool) -> Fake {
        let fake = Fake {
            n,
            got: vec![Vec::new(); n],
            after,
            ..Fake::default()
        };
        let mut r = Router::new(fake);
        for (i, chunk) in sql.as_bytes().chunks(piece).enumerate() {
            r.write_all(chunk).unwrap();
            // Spread the next statement elsewhere, as a busy session would make it.
            r.sink.next = i;
        }
        r.finish().unwrap().0
    }

    const DUMP: &str = "/*M!999999\\- enable the sandbox mode */ \n-- MariaDB dump\n/*!40101 SET NAMES utf8mb4 */;\n/*!40103 SET TIME_ZONE='+00:00' */;\n\n--\n-- Table structure for table `a`\n--\n\nDROP TABLE IF EXISTS `a`;\nCREATE TABLE `a` (\n  `id` int\n);\n\n--\n-- Dumping data for table `a`\n--\n\nLOCK TABLES `a` WRITE;\n/*!40000 ALTER TABLE `a` DISABLE KEYS */;\nINSERT INTO `a` VALUES\n(1,'x;'),\n(2,'DEFINER=`r`@`h`;');\nINSERT INTO `a` VALUES\n(3,'y');\nINSERT INTO `a` VALUES (4,'z');\n/*!40000 ALTER TABLE `a` ENABLE KEYS */;\nUNLOCK TABLES;\nDELIMITER ;;\nCREATE TRIGGER t BEFORE INSERT ON a FOR EACH ROW\nINSERT INTO `b` VALUES (1);;\nDELIMITER ;\n-- Dump completed\n";

    /// Every statement, in a canonical order: the union of what the sessions ran.
    fn rows(f: &Fake) -> Vec<String> {
        let mut all: Vec<String> = f
            .got
            .iter()
            .flat_map(|g| {
                String::from_utf8(g.clone())
                    .unwrap()
                    .lines()
                    .map(String::from)
                    .collect::<Vec<_>>()
            })
            .filter(|l| l.starts_with('(') || l.starts_with("INSERT"))
            .collect();
        all.sort();
        all
    }

    /// A second table after `a`'s rows: its structure section, its rows, then a trigger on it.
    fn two_tables(b_structure: &str) -> String {
        let end = DUMP.find("DELIMITER ;;").unwrap();
        format!(
            "{}--\n-- Table structure for table `b`\n--\n\n{b_structure}\n--\n-- Dumping data for table `b`\n--\n\nINSERT INTO `b` VALUES (7);\nINSERT INTO `b` VALUES (8);\n{}",
            &DUMP[..end],
            &DUMP[end..]
        )
    }

    #[test]
    fn the_next_tables_definition_does_not_wait_for_the_rows_before_it() {
        let own = "DROP TABLE IF EXISTS `b`;\n/*!40101 SET @saved_cs_client     = @@character_set_client */;\n/*!40101 SET character_set_client = utf8mb4 */;\nCREATE TABLE `b` (\n  `id` int,\n  `c` text COMMENT 'x;'\n) ENGINE=InnoDB;\n/*!40101 SET character_set_client = @saved_cs_client */;\n";
        let spread = |f: &Fake| {
            f.got[1..]
                .iter()
                .any(|g| String::from_utf8_lossy(g).contains("VALUES"))
        };
        for piece in [1, 5, 40] {
            let f = route(&two_tables(own), 3, piece);
            let zero = String::from_utf8(f.got[0].clone()).unwrap();
            let (create_b, trigger) = (
                zero.find("DROP TABLE IF EXISTS `b`").unwrap(),
                zero.find("DELIMITER ;;").unwrap(),
            );
            // `a`'s rows went to other sessions, yet nothing waited for them before `b` was
            // defined; `b`'s rows waited for session 0 (the table exists), and the trigger
            // for every session.
            assert!(spread(&f), "piece {piece}");
            assert!(
                f.drains.iter().all(|&at| at > create_b + own.len()),
                "piece {piece}: {:?} {create_b}",
                f.drains
            );
            assert!(f.drains.contains(&trigger), "piece {piece}: {:?}", f.drains);
            let after_a = f.log.iter().filter(|l| *l == "wait 0..1").count();
            assert_eq!(after_a, 2, "piece {piece}: {:?}", f.log);
        }
        // Anything else in the section (here another table's drop, or the statement after a
        // `CREATE TABLE` ends) waits as before.
        for odd in [
            "DROP TABLE IF EXISTS `a`;\n",
            "CREATE TABLE `b` (`id` int);\nDELETE FROM `a`;\n",
            "CREATE TABLE `bb` (`id` int);\n",
        ] {
            let f = route(&two_tables(odd), 3, 3);
            assert!(spread(&f));
            let zero = String::from_utf8(f.got[0].clone()).unwrap();
            let at = zero.find("-- Table structure for table `b`").unwrap();
            assert!(
                f.drains.iter().any(|&d| d > at && d < at + 60 + odd.len()),
                "{odd:?}: {:?} {at}",
                f.drains
            );
        }
    }

    #[test]
    fn rows_spread_and_everything_else_stays_in_order_on_session_0() {
        for piece in [1, 7, 600, 1 << 20] {
            let f = route(DUMP, 3, piece);
            let zero = String::from_utf8(f.got[0].clone()).unwrap();
            // Structure, the trigger block and comments on session 0, in the dump's order.
            let order = [
                "SET NAMES",
                "CREATE TABLE `a`",
                "CREATE TRIGGER",
                "INSERT INTO `b`",
                "-- Dump completed",
            ];
            let at: Vec<usize> = order.iter().map(|w| zero.find(w).expect(w)).collect();
            assert!(at.windows(2).all(|w| w[0] < w[1]), "{zero}");
            // Locks and key switches around the rows are left out.
            for s in &f.got {
                let s = String::from_utf8_lossy(s);
                assert!(
                    !s.contains("LOCK TABLES") && !s.contains("DISABLE KEYS"),
                    "{s}"
                );
            }
            // Every other session got the preamble's settings first.
            for s in &f.got[1..] {
                assert!(
                    s.starts_with(
                        b"/*!40101 SET NAMES utf8mb4 */;\n/*!40103 SET TIME_ZONE='+00:00' */;\n"
                    ),
                    "{}",
                    String::from_utf8_lossy(s)
                );
            }
            // No row lost or doubled, and a statement's rows stay together.
            let mut want: Vec<String> = DUMP
                .lines()
                .filter(|l| l.starts_with('(') || l.starts_with("INSERT INTO `a`"))
                .map(String::from)
                .collect();
            want.sort();
            let mut got = rows(&f);
            got.retain(|l| !l.contains("`b`"));
            assert_eq!(got, want, "piece {piece}");
            for s in &f.got {
                let s = String::from_utf8_lossy(s);
                assert!(
                    !s.contains("(1,'x;'),\nINSERT") && !s.contains("VALUES\nINSERT"),
                    "{s}"
                );
            }
            // Table ready before its rows; every session drained before the trigger.
            let w: Vec<&str> = f.log.iter().map(String::as_str).collect();
            assert_eq!(w.first(), Some(&"start"));
            assert!(w.contains(&"wait 0..1"), "{w:?}");
            if f.got[1..]
                .iter()
                .any(|s| String::from_utf8_lossy(s).contains("VALUES"))
            {
                assert_eq!(w.last(), Some(&"wait 1..3"), "{w:?}");
            }
        }
    }

    #[test]
    fn only_the_preambles_settings_go_to_the_other_sessions() {
        // mariadb-dump writes a database's sequences before its first table section.
        let preamble = "/*M!999999\\- enable the sandbox mode */ \n-- MariaDB dump\n\
            /*!40101 SET NAMES utf8mb4 */;\n/*!40101 ALTER DATABASE CHARACTER SET utf8mb4 */;\n\
            /*M!100616 SET @OLD_NOTE_VERBOSITY=@@NOTE_VERBOSITY, NOTE_VERBOSITY=0 */;\n\
            SET @x = 1;\n--\n-- Sequence structure for `s`\n--\n\nDROP SEQUENCE IF EXISTS `s`;\n\
            CREATE SEQUENCE `s` start with 1 nocache ENGINE=InnoDB;\nDO SETVAL(`s`, 107, 0);\n\
            /*!40014 SET FOREIGN_KEY_CHECKS=0 */;\n/*!40101 SET NAMES utf8mb4 */ /* cut */\n";
        assert_eq!(
            String::from_utf8(session_settings(preamble.as_bytes())).unwrap(),
            "/*!40101 SET NAMES utf8mb4 */;\n\
             /*M!100616 SET @OLD_NOTE_VERBOSITY=@@NOTE_VERBOSITY, NOTE_VERBOSITY=0 */;\n\
             SET @x = 1;\n/*!40014 SET FOREIGN_KEY_CHECKS=0 */;\n"
        );
        let dump = format!("{preamble}{DUMP}");
        let f = route(&dump, 3, 64);
        assert!(String::from_utf8_lossy(&f.got[0]).starts_with(preamble));
        for s in &f.got[1..] {
            let s = String::from_utf8_lossy(s);
            assert!(
                !s.contains("SEQUENCE") && !s.contains("ALTER DATABASE"),
                "{s}"
            );
        }
    }

    #[test]
    fn one_session_gets_the_dump_as_it_is() {
        let f = route(DUMP, 1, 5);
        assert_eq!(f.got[0], DUMP.as_bytes());
        assert!(f.log.iter().all(|l| !l.starts_with("wait")), "{:?}", f.log);
    }

    #[test]
    fn a_preamble_no_dump_tool_writes_loads_on_session_0_alone() {
        let forged = format!("{}\n{DUMP}", "SET @x = 1;\n".repeat(PREAMBLE_MAX / 10));
        let f = route(&forged, 3, 4096);
        assert_eq!(f.got[0], forged.as_bytes());
        assert!(f.got[1..].iter().all(|s| s.is_empty()));
        // Rows inside a routine body are not a table's rows.
        let block = "-- Dumping data for table `a`\nDELIMITER ;;\nINSERT INTO `a` VALUES (1);;\nDELIMITER ;\n";
        let f = route(block, 2, 3);
        assert_eq!(f.got[0], block.as_bytes());
    }

    #[test]
    fn plain_keys_are_built_after_every_row_and_before_a_table_that_references_them() {
        let keyed = "DROP TABLE IF EXISTS `b`;\nCREATE TABLE `b` (\n  `id` int NOT NULL,\n  `k` int,\n  PRIMARY KEY (`id`),\n  KEY `k` (`k`)\n) ENGINE=InnoDB;\n";
        let alter = "ALTER TABLE `b` ADD KEY `k` (`k`);\n";
        for piece in [1, 7, 64] {
            let f = route(&two_tables(keyed), 3, piece);
            let zero = String::from_utf8(f.got[0].clone()).unwrap();
            assert!(
                zero.contains("  PRIMARY KEY (`id`)\n) ENGINE=InnoDB;\n"),
                "{zero}"
            );
            assert!(!zero.contains("  KEY `k`"), "{zero}");
            // Once, on one session, after a wait for all of them, at the very end.
            let on: Vec<usize> = (0..3)
                .filter(|&s| String::from_utf8_lossy(&f.got[s]).contains(alter))
                .collect();
            assert_eq!(on.len(), 1, "{on:?}");
            assert!(String::from_utf8_lossy(&f.got[on[0]]).ends_with(alter));
            assert_eq!(
                f.log.last().map(String::as_str),
                Some("wait 0..3"),
                "{:?}",
                f.log
            );
            assert_eq!(rows(&f), rows(&route(&two_tables(keyed), 1, piece)));
        }
        // One session: the same statements, the ALTER last.
        let one = route(&two_tables(keyed), 1, 5);
        let tail = format!(
            "{}{alter}",
            String::from_utf8(session_settings(DUMP.as_bytes())).unwrap()
        );
        assert!(
            String::from_utf8_lossy(&one.got[0]).ends_with(&tail),
            "{tail}"
        );
        // A later table referencing anything: the held-back indexes are built first, in order.
        let child = "--\n-- Table structure for table `c`\n--\n\nCREATE TABLE `c` (\n  `id` int NOT NULL,\n  `k` int,\n  PRIMARY KEY (`id`),\n  KEY `k` (`k`),\n  CONSTRAINT `f` FOREIGN KEY (`k`) REFERENCES `b` (`k`)\n) ENGINE=InnoDB;\n";
        // (and a table after it still gets its index built at the end)
        let later = "--\n-- Table structure for table `e`\n--\n\nCREATE TABLE `e` (\n  `id` int NOT NULL,\n  KEY `id` (`id`)\n) ENGINE=InnoDB;\n";
        let dump =
            two_tables(keyed).replace("DELIMITER ;;", &format!("{child}{later}DELIMITER ;;"));
        let f = route(&dump, 3, 11);
        let zero = String::from_utf8(f.got[0].clone()).unwrap();
        let (a, c) = (
            zero.find(alter).unwrap(),
            zero.find("CREATE TABLE `c`").unwrap(),
        );
        assert!(
            a < c && zero.contains("  KEY `k` (`k`),\n  CONSTRAINT"),
            "{zero}"
        );
        assert_eq!(zero.matches("ALTER TABLE `b` ADD").count(), 1);
        let all: String = f.got.iter().map(|g| String::from_utf8_lossy(g)).collect();
        assert_eq!(
            all.matches("ALTER TABLE `e` ADD KEY `id` (`id`);\n")
                .count(),
            1,
            "{all}"
        );
        // A preamble no dump tool writes: nothing is taken out.
        let forged = format!(
            "{}\n{}",
            "SET @x = 1;\n".repeat(PREAMBLE_MAX / 10),
            two_tables(keyed)
        );
        assert_eq!(route(&forged, 3, 4096).got[0], forged.as_bytes());
    }

    #[test]
    fn a_tables_keys_are_built_while_the_next_table_loads_where_the_sink_can_order_that() {
        let keyed = "DROP TABLE IF EXISTS `b`;\nCREATE TABLE `b` (\n  `id` int NOT NULL,\n  `k` int,\n  PRIMARY KEY (`id`),\n  KEY `k` (`k`)\n) ENGINE=InnoDB;\n";
        let alter = "ALTER TABLE `b` ADD KEY `k` (`k`);\n";
        let c = "--\n-- Table structure for table `c`\n--\n\nCREATE TABLE `c` (\n  `id` int\n);\n\n--\n-- Dumping data for table `c`\n--\n\nINSERT INTO `c` VALUES (9);\nDELIMITER ;;";
        let dump = two_tables(keyed).replace("DELIMITER ;;", c);
        for piece in [1, 9, 64] {
            let f = route_to(&dump, 3, piece, true);
            let log: Vec<&str> = f.log.iter().map(String::as_str).collect();
            // After `b`'s rows went out (its wait for session 0), before `c`'s: once, and not
            // on session 0; nothing is left for the end.
            let at = |w: &str| log.iter().position(|l| *l == w).unwrap();
            let after = at(&format!("after {alter}"));
            let readies: Vec<usize> = (0..log.len()).filter(|&i| log[i] == "wait 0..1").collect();
            assert_eq!(readies.len(), 3, "{log:?}");
            assert!(readies[1] < after && after < readies[2], "{log:?}");
            assert!(!log.contains(&"wait 0..3"), "{log:?}");
            let all: String = f.got.iter().map(|g| String::from_utf8_lossy(g)).collect();
            assert_eq!(all.matches("ALTER TABLE").count(), 1, "{all}");
            assert!(!String::from_utf8_lossy(&f.got[0]).contains(alter));
            assert_eq!(rows(&f), rows(&route(&dump, 1, piece)));
            // A sink that cannot: at the end, as before.
            let f = route_to(&dump, 3, piece, false);
            assert_eq!(f.log.last().map(String::as_str), Some("wait 0..3"));
        }
        // A table with no rows: the next header does not know its CREATE ran; kept until
        // the next table's rows waited for session 0, and goes at the header after them.
        let empty = dump
            .replace(
                "INSERT INTO `b` VALUES (7);\nINSERT INTO `b` VALUES (8);\n",
                "",
            )
            .replace(
                "DELIMITER ;;",
                "--\n-- Table structure for table `d`\n--\nDELIMITER ;;",
            );
        let f = route_to(&empty, 3, 7, true);
        let log: Vec<&str> = f.log.iter().map(String::as_str).collect();
        let after = log.iter().position(|l| l.starts_with("after")).unwrap();
        let c_ready = log.iter().rposition(|l| *l == "wait 0..1").unwrap();
        assert!(c_ready < after, "{log:?}");
        // A table that references one: created once every session built what it was given.
        let child = "--\n-- Table structure for table `c`\n--\n\nCREATE TABLE `c` (\n  `k` int,\n  CONSTRAINT `f` FOREIGN KEY (`k`) REFERENCES `b` (`k`)\n) ENGINE=InnoDB;\nDELIMITER ;;";
        // Whether the sessions of rows were waited for between `c`'s header and its CREATE.
        let drained_before_c = |b_structure: &str| {
            let f = route_to(
                &two_tables(b_structure).replace("DELIMITER ;;", child),
                3,
                5,
                true,
            );
            let zero = String::from_utf8(f.got[0].clone()).unwrap();
            let (header, create) = (
                zero.find("structure for table `c`").unwrap(),
                zero.find("CREATE TABLE `c`").unwrap(),
            );
            assert!(f.got[1..]
                .iter()
                .any(|g| String::from_utf8_lossy(g).contains("VALUES")));
            let drained = f.drains.iter().any(|&d| d > header && d <= create);
            (f.log, drained)
        };
        let (log, drained) = drained_before_c(keyed);
        let after = log.iter().position(|l| l.starts_with("after")).unwrap();
        assert_eq!(log[after + 1], "wait 1..3", "{log:?}");
        assert!(drained, "{log:?}");
        // With no index given out, the referencing table does not wait for the rows before it.
        let plain = "DROP TABLE IF EXISTS `b`;\nCREATE TABLE `b` (\n  `k` int\n);\n";
        let (log, drained) = drained_before_c(plain);
        assert!(!drained, "{log:?}");
    }
}
