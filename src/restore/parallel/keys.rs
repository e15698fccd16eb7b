//! Secondary indexes built after the rows: a table's plain `KEY` lines are taken out of its
//! `CREATE TABLE` and added back by one `ALTER TABLE … ADD KEY …` once its rows are in (while
//! the next tables load, or at the end of the dump: see the router). InnoDB then builds each
//! index by sorting, once, instead of inserting every row into it (on the benchmark's 4-table
//! database, a fifth less load time for the two tables with secondary indexes).
//!
//! Only the shape `mariadb-dump` writes is touched, and only where nothing can depend on the
//! missing index while the rows load: one definition per line, the table InnoDB and not
//! partitioned, versioned or with a period, no `CONSTRAINT`/`FOREIGN KEY`/`FULLTEXT`/`SPATIAL`
//! line. Everything else loads as the dump has it. A table created later with a `REFERENCES`
//! clause (which needs the referenced columns indexed) first gets the indexes held back so far
//! ([`references`]).

/// A `CREATE TABLE` statement longer than this loads as it is.
pub const CREATE_MAX: usize = 256 << 10;

/// At most this much of `ALTER TABLE` statements is held back; later tables load as written.
pub const DEFERRED_MAX: usize = 4 << 20;

/// Splits `create` (`CREATE TABLE <name> (` … `) ENGINE=InnoDB …;`, line ends included) into
/// the statement without its plain `KEY` lines and the `ALTER TABLE` that adds them back;
/// `None` when it has none, or is not a shape this may touch.
pub fn defer(create: &[u8], name: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let lines: Vec<&[u8]> = create.split_inclusive(|&b| b == b'\n').collect();
    let (first, rest) = lines.split_first()?;
    let (last, body) = rest.split_last()?;
    let head = [&b"CREATE TABLE "[..], name, b" (\n"].concat();
    let plain_innodb = last.starts_with(b") ENGINE=InnoDB")
        && last.ends_with(b";\n")
        && !contains(last, b"VERSIONING")
        && !contains(last, b"PARTITION");
    if *first != head.as_slice() || !plain_innodb || body.is_empty() {
        return None;
    }
    // An AUTO_INCREMENT column must lead some index when the table is created: a key that may
    // start with it stays in the `CREATE TABLE`.
    let autos: Vec<Vec<u8>> = body
        .iter()
        .filter(|d| contains(d, b" AUTO_INCREMENT"))
        .filter_map(|d| quoted(d.get(2..)?).map(|q| [&b"("[..], q].concat()))
        .collect();
    let mut kept: Vec<&[u8]> = Vec::new();
    let mut keys: Vec<&[u8]> = Vec::new();
    for (i, line) in body.iter().enumerate() {
        let def = line.strip_suffix(b"\n")?;
        let def = match i + 1 == body.len() {
            true => def,
            false => def.strip_suffix(b",")?,
        };
        const REFUSED: [&[u8]; 6] = [
            b"  CONSTRAINT ",
            b"  FOREIGN KEY",
            b"  FULLTEXT ",
            b"  SPATIAL ",
            b"  PERIOD ",
            b"  VECTOR ",
        ];
        if !def.starts_with(b"  ") || def.starts_with(b"   ") || def.starts_with(b"  )") {
            return None;
        }
        if REFUSED.iter().any(|r| def.starts_with(r)) {
            return None;
        }
        match def.strip_prefix(b"  KEY ") {
            Some(_) if !autos.iter().any(|a| contains(def, a)) => keys.push(&def[2..]),
            _ => kept.push(def),
        }
    }

    if keys.is_empty() || kept.is_empty() {
        return None;
    }
    let mut table = first.to_vec();
    table.extend_from_slice(&kept.join(&b",\n"[..]));
    table.push(b'\n');
    table.extend_from_slice(last);
    let adds: Vec<Vec<u8>> = keys.iter().map(|k| [&b"ADD "[..], k].concat()).collect();
    let alter = [
        &b"ALTER TABLE "[..],
        name,
        b" ",
        &adds.join(&b", "[..]),
        b";\n",
    ]
    .concat();
    Some((table, alter))
}

/// The backquoted identifier `s` starts with (`` `a``b` ``, doubled backquotes inside).
fn quoted(s: &[u8]) -> Option<&[u8]> {
    let mut i = 1;
    (s.first() == Some(&b'`')).then_some(())?;
    loop {
        match (s.get(i)?, s.get(i + 1)) {
            (b'`', Some(b'`')) => i += 2,
            (b'`', _) => return Some(&s[..=i]),
            _ => i += 1,
        }
    }
}

/// Whether a `CREATE TABLE` statement names another table in a `REFERENCES` clause: the
/// indexes held back so far must be built before it runs (a foreign key needs its referenced
/// columns indexed, even with `FOREIGN_KEY_CHECKS=0`).
pub fn references(create: &[u8]) -> bool {
    contains(create, b" REFERENCES ")
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(hay, needle).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ITEMS: &str = "CREATE TABLE `items` (\n  `id` bigint(20) NOT NULL,\n  `sku` char(12) DEFAULT NULL COMMENT 'a, b',\n  PRIMARY KEY (`id`),\n  UNIQUE KEY `u` (`sku`,`id`),\n  KEY `sku` (`sku`),\n  KEY `x` (`sku`(4)) COMMENT 'KEY, here'\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;\n";

    fn text(b: &[u8]) -> &str {
        std::str::from_utf8(b).unwrap()
    }

    #[test]
    fn plain_keys_move_to_one_alter_and_the_rest_stays_as_written() {
        let (table, alter) = defer(ITEMS.as_bytes(), b"`items`").unwrap();
        assert_eq!(
            text(&table),
            "CREATE TABLE `items` (\n  `id` bigint(20) NOT NULL,\n  `sku` char(12) DEFAULT NULL COMMENT 'a, b',\n  PRIMARY KEY (`id`),\n  UNIQUE KEY `u` (`sku`,`id`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;\n"
        );
        assert_eq!(
            text(&alter),
            "ALTER TABLE `items` ADD KEY `sku` (`sku`), ADD KEY `x` (`sku`(4)) COMMENT 'KEY, here';\n"
        );
    }

    #[test]
    fn shapes_that_could_depend_on_an_index_load_as_written() {
        let with = |from: &str, to: &str| ITEMS.replace(from, to);
        let refused = [
            with(
                "  KEY `sku`",
                "  CONSTRAINT `f` FOREIGN KEY (`sku`) REFERENCES `p` (`s`),\n  KEY `sku`",
            ),
            with("  KEY `sku`", "  FULLTEXT KEY `t` (`sku`),\n  KEY `sku`"),
            with("ENGINE=InnoDB", "ENGINE=MyISAM"),
            with(
                "utf8mb4;\n",
                "utf8mb4\n PARTITION BY HASH (`id`) PARTITIONS 4;\n",
            ),
            with("utf8mb4;", "utf8mb4 WITH SYSTEM VERSIONING;"),
            // a definition over two lines, a missing separator, another table's name
            with("'a, b',\n", "'a,\n b',\n"),
            with("(`id`),\n", "(`id`)\n"),
        ];
        for (i, create) in refused.iter().enumerate() {
            assert!(
                defer(create.as_bytes(), b"`items`").is_none(),
                "{i}: {create}"
            );
        }
        assert!(defer(ITEMS.as_bytes(), b"`other`").is_none());
        let no_keys = "CREATE TABLE `a` (\n  `id` int(11) NOT NULL,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB;\n";
        assert!(defer(no_keys.as_bytes(), b"`a`").is_none());
        assert!(defer(b"", b"`a`").is_none());
    }

    #[test]
    fn a_key_an_auto_increment_column_may_need_stays() {
        let create = "CREATE TABLE `t` (\n  `tenant` int NOT NULL,\n  `i``d` int NOT NULL AUTO_INCREMENT,\n  `k` int,\n  PRIMARY KEY (`tenant`,`i``d`),\n  KEY `by_id` (`i``d`,`k`),\n  KEY `k` (`k`)\n) ENGINE=InnoDB AUTO_INCREMENT=5;\n";
        let (table, alter) = defer(create.as_bytes(), b"`t`").unwrap();
        assert!(
            text(&table)
                .contains("  PRIMARY KEY (`tenant`,`i``d`),\n  KEY `by_id` (`i``d`,`k`)\n) ENGINE"),
            "{}",
            text(&table)
        );
        assert_eq!(text(&alter), "ALTER TABLE `t` ADD KEY `k` (`k`);\n");
        assert_eq!(quoted(b"`a``b` int"), Some(&b"`a``b`"[..]));
        assert_eq!(quoted(b"`open"), None);
    }

    #[test]
    fn a_table_with_a_reference_is_seen() {
        assert!(references(
            b"  CONSTRAINT `f` FOREIGN KEY (`a`) REFERENCES `p` (`a`)\n"
        ));
        assert!(!references(ITEMS.as_bytes()));
    }
}
