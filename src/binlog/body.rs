//! The parts of event bodies the filter decides on: the names in a TABLE_MAP, the SQL of a
//! QUERY, and the search for the `BINLOG` keyword in what `mariadb-binlog` prints as text.

/// The database and table a TABLE_MAP names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableNames<'a> {
    /// The database name, as stored.
    pub db: &'a [u8],
    /// The table name, as stored.
    pub table: &'a [u8],
}

/// Reads `db_len u8, db, 0, table_len u8, table, 0` from the start of a TABLE_MAP's body after
/// its post-header. `None` when a name runs past the body, contains a NUL (the server would cut
/// it there) or is not followed by its NUL.
pub fn table_names(rest: &[u8]) -> Option<TableNames<'_>> {
    let (db, rest) = counted_name(rest)?;
    let (table, _) = counted_name(rest)?;
    Some(TableNames { db, table })
}

fn counted_name(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let (&len, rest) = b.split_first()?;
    let len = usize::from(len);
    let name = rest.get(..len)?;
    if name.contains(&0) || rest.get(len) != Some(&0) {
        return None;
    }
    Some((name, &rest[len + 1..]))
}

/// The default database (the `USE` it ran under; empty for none) and the SQL text of a QUERY
/// body (without checksum), given the post-header length for QUERY from the format
/// description. The post-header is thread_id u32, exec_time u32, db_len u8, error_code u16,
/// status_vars_len u16; the status variables, the database name and a NUL follow it, then the
/// SQL. `None` when malformed.
pub fn query_parts(body: &[u8], post_header: usize) -> Option<(&[u8], &[u8])> {
    if post_header < 13 || body.len() < post_header {
        return None;
    }
    let db_len = usize::from(body[8]);
    let vars_len = usize::from(u16::from_le_bytes([body[11], body[12]]));
    let db_start = post_header.checked_add(vars_len)?;
    let db_end = db_start.checked_add(db_len)?;
    if body.get(db_end) != Some(&0) {
        return None;
    }
    Some((&body[db_start..db_end], &body[db_end + 1..]))
}

/// Whether `bytes` holds the word `BINLOG` in any case, not inside a longer ASCII identifier
/// (`binlog_pos` is fine). Bytes above 0x7f count as separators, so multi-byte characters next
/// to the word never hide it.
pub fn has_binlog_word(bytes: &[u8]) -> bool {
    let ident = |b: Option<&u8>| matches!(b, Some(c) if c.is_ascii_alphanumeric() || *c == b'_' || *c == b'$');
    bytes.windows(6).enumerate().any(|(i, w)| {
        w.eq_ignore_ascii_case(b"binlog")
            && !ident(i.checked_sub(1).and_then(|j| bytes.get(j)))
            && !ident(bytes.get(i + 6))
    })
}

/// Whether a name has no control characters (a newline would end the comment line
/// `mariadb-binlog` prints it in, and the rest would run as SQL).
pub fn printable(name: &[u8]) -> bool {
    !name.iter().any(|&c| c < 0x20 || c == 0x7f)
}

/// `event` (a TABLE_MAP whose database name's length byte is at `at`) naming database `to`,
/// its size and checksum made right again (its `log_pos` stays: it is stale in a filtered
/// file anyway).
pub fn renamed(event: &[u8], at: usize, to: &str, checksum: bool) -> Vec<u8> {
    let old_len = usize::from(event[at]);
    let tail_end = event.len() - if checksum { 4 } else { 0 };
    let mut out = Vec::with_capacity(event.len() + to.len());
    out.extend_from_slice(&event[..at]);
    out.push(to.len() as u8);
    out.extend_from_slice(to.as_bytes());
    out.extend_from_slice(&event[at + 1 + old_len..tail_end]);
    let size = (out.len() + if checksum { 4 } else { 0 }) as u32;
    out[9..13].copy_from_slice(&size.to_le_bytes());
    if checksum {
        let crc = super::event::crc32(&out);
        out.extend_from_slice(&crc.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_binlog_word_is_found_in_any_case_but_not_inside_identifiers() {
        for yes in [
            &b"BINLOG 'abc'"[..],
            b"select 1/*!*/;\nbinlog 'x'",
            b"/*!BinLog*/",
            b"x\xe4BINLOG",
            b"BINLOG",
            b"(binlog)",
        ] {
            assert!(has_binlog_word(yes), "{}", String::from_utf8_lossy(yes));
        }
        for no in [
            &b"create table t (binlog_pos int)"[..],
            b"mybinlog",
            b"binlogs",
            b"$binlog",
            b"BINLO",
            b"",
        ] {
            assert!(!has_binlog_word(no), "{}", String::from_utf8_lossy(no));
        }
    }

    #[test]
    fn table_names_need_their_lengths_and_nuls() {
        let ok = b"\x02db\x00\x01t\x00rest";
        assert_eq!(
            table_names(ok),
            Some(TableNames {
                db: b"db",
                table: b"t"
            })
        );
        assert_eq!(
            table_names(b"\x02db\x01\x01t\x00"),
            None,
            "no NUL after the db"
        );
        assert_eq!(table_names(b"\x03d\x00b\x00\x01t\x00"), None, "NUL inside");
        assert_eq!(table_names(b"\x09db\x00"), None, "length past the end");
        assert_eq!(table_names(b""), None);
    }

    #[test]
    fn query_sql_skips_status_variables_and_the_database() {
        let mut body = vec![0u8; 13];
        body[8] = 2; // db_len
        body[11] = 3; // status_vars_len
        body.extend_from_slice(b"\x01\x02\x03db\x00BEGIN");
        assert_eq!(query_parts(&body, 13).map(|p| p.1), Some(&b"BEGIN"[..]));
        assert_eq!(query_parts(&body[..17], 13), None, "cut inside the db name");
        assert_eq!(query_parts(&body, 11), None, "post-header too short");
        assert!(printable(b"t \xc3\xa9") && !printable(b"t\nBINLOG"));
    }
}
