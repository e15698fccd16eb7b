//! Pure helpers on single lines of a dump, for the router.

/// Lines that start a section of the dump (and so end the preamble).
pub const SECTIONS: [&[u8]; 6] = [
    b"-- Table structure for table `",
    b"-- Dumping data for table `",
    b"-- Temporary table structure for view `",
    b"-- Temporary view structure for view `",
    b"-- Final view structure for view `",
    b"-- Dumping ",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Before the first section.
    Preamble,
    /// In a table's data section, between statements.
    Data,
    /// In a `-- Table structure for table` section.
    Structure,
    /// Anywhere else.
    Other,
}

/// The part a section header starts, and the quoted name of the table a structure section is
/// about (as the header writes it: `` `a` ``).
pub fn section(header: &[u8]) -> (Part, &[u8]) {
    if header.starts_with(SECTIONS[1]) {
        return (Part::Data, b"");
    }
    match header.strip_prefix(&SECTIONS[0][..SECTIONS[0].len() - 1]) {
        Some(name) => (Part::Structure, name.trim_ascii_end()),
        None => (Part::Other, b""),
    }
}

/// The lines of `preamble` that set a session variable (`SET …;`, or a version comment holding
/// one, as `/*!40101 SET NAMES utf8mb4 */;` and `/*M!100616 SET … */;`): what each session
/// needs of it.
pub fn session_settings(preamble: &[u8]) -> Vec<u8> {
    let setting = |line: &[u8]| {
        let rest = match line
            .strip_prefix(b"/*!")
            .or_else(|| line.strip_prefix(b"/*M!"))
        {
            Some(r) => {
                let digits = r.iter().take_while(|b| b.is_ascii_digit()).count();
                r[digits..].strip_prefix(b" ").unwrap_or_default()
            }
            None => line,
        };
        rest.starts_with(b"SET ") && line.trim_ascii_end().ends_with(b";")
    };
    preamble
        .split_inclusive(|&b| b == b'\n')
        .filter(|l| setting(l))
        .flatten()
        .copied()
        .collect()
}

/// `LOCK TABLES`/`UNLOCK TABLES` and `DISABLE`/`ENABLE KEYS` lines around a table's rows.
pub fn around_rows(line: &[u8]) -> bool {
    let keys = line.starts_with(b"/*!40000 ALTER TABLE `")
        && (line.ends_with(b"` DISABLE KEYS */;\n") || line.ends_with(b"` ENABLE KEYS */;\n"));
    let lock = line.starts_with(b"LOCK TABLES `") && line.ends_with(b"` WRITE;\n");
    keys || lock || line == b"UNLOCK TABLES;\n"
}

/// How much of `buf` belongs to the current line, and whether that includes its newline.
pub fn line_part(buf: &[u8]) -> (usize, bool) {
    match buf.iter().position(|&b| b == b'\n') {
        Some(i) => (i + 1, true),
        None => (buf.len(), false),
    }
}
