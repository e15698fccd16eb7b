//! Whole files the filter refuses, each error naming the event's position.

use super::{run, shop, Log};
use crate::binlog::{BinlogError, Filter};

/// The error for a log whose last event is `type_code` with `body`, and that event's offset.
fn refused(type_code: u8, body: &[u8]) -> (BinlogError, u64) {
    let mut log = Log::new();
    log.transaction(100, 1, 5, "shop", "t");
    let at = log.event(100, type_code, body) as u64;
    (run(&log.bytes, &shop()).unwrap_err(), at)
}

#[test]
fn encrypted_logs_are_refused() {
    let (err, at) = refused(164, &[1; 20]);
    assert!(
        matches!(err, BinlogError::Encrypted { pos } if pos == at),
        "{err}"
    );
    assert!(err.to_string().contains("encrypt_binlog"), "{err}");
}

#[test]
fn compressed_and_unknown_event_types_are_refused() {
    for (t, word) in [
        (165, "log_bin_compress"),
        (40, "binlog_transaction_compression"),
        (1, "does not know"),
        (7, "does not know"),
        (172, "does not know"),
        (255, "does not know"),
    ] {
        let (err, at) = refused(t, &[0; 30]);
        assert!(
            matches!(err, BinlogError::Unsupported { pos, type_code, .. } if pos == at && type_code == t),
            "{err}"
        );
        assert!(err.to_string().contains(word), "{err}");
    }
}

#[test]
fn binlog_statements_in_text_events_are_refused() {
    let mut query = Log::new();
    let at = query.query(100, "shop", "BINLOG 'AAAA'") as u64;
    let err = run(&query.bytes, &shop()).unwrap_err();
    assert!(
        matches!(err, BinlogError::Smuggled { pos, type_code: 2 } if pos == at),
        "{err}"
    );

    // Under another database (or none) it is left out with the statement: it is never
    // written, so it cannot reach the replay (a restore's own `GRANT BINLOG REPLAY`).
    let mut grant = Log::new();
    grant.query(
        100,
        "",
        "GRANT BINLOG REPLAY ON *.* TO 'opsagent_load_1'@'localhost'",
    );
    grant.query(100, "other", "BINLOG 'AAAA'");
    let (out, sum) = run(&grant.bytes, &shop()).unwrap();
    assert_eq!((out, sum.dropped_queries), (grant.only([0]), 2));

    // A delimiter that ends the statement mariadb-binlog prints, then a second one.
    let mut query = Log::new();
    query.query(100, "shop", "select 1/*!*/;\nbinlog 'AAAA'");
    assert!(matches!(
        run(&query.bytes, &shop()),
        Err(BinlogError::Smuggled { .. })
    ));

    // A user variable is printed as `SET @name:=…`.
    let (err, at) = refused(14, b"\x01\0\0\0a`:=1/*!*/;BinLog 'AAAA'");
    assert!(
        matches!(err, BinlogError::Smuggled { pos, type_code: 14 } if pos == at),
        "{err}"
    );
}

#[test]
fn names_printed_in_comments_must_be_printable() {
    // ROTATE, BINLOG_CHECKPOINT, INCIDENT: a newline would end the comment line.
    for (t, body) in [
        (4, &b"\x04\0\0\0\0\0\0\0x\nSELECT 1"[..]),
        (161, b"\x01\0\0\0x\rSELECT 1"),
        (26, b"\x01\0\x08x\nSELECT 1"),
        (4, b"\x04\0\0"),
    ] {
        let (err, at) = refused(t, body);
        assert!(
            matches!(err, BinlogError::Malformed { pos, type_code, .. } if pos == at && type_code == t),
            "{err}"
        );
    }
}

#[test]
fn passing_table_names_with_control_characters_are_refused() {
    let mut log = Log::new();
    log.gtid(100, 1);
    let at = log.table_map(100, 5, "shop", "t`\n/*!*/;\nSELECT 1") as u64;
    let err = run(&log.bytes, &shop()).unwrap_err();
    assert!(
        matches!(err, BinlogError::Malformed { pos, type_code: 19, .. } if pos == at),
        "{err}"
    );
}

#[test]
fn checksums_are_checked_when_the_format_says_so() {
    for checksum in [true, false] {
        let mut log = Log::with(checksum, false);
        log.gtid(100, 1);
        let at = log.query(100, "shop", "create table t (a int)");
        let n = log.bytes.len();
        log.bytes[n - 6] ^= 0x20; // a letter of the query changes case
        match run(&log.bytes, &shop()) {
            Err(BinlogError::Checksum {
                pos, type_code: 2, ..
            }) => {
                assert!(checksum);
                assert_eq!(pos, at as u64);
            }
            Ok((out, _)) => {
                assert!(!checksum);
                assert_eq!(out, log.bytes);
            }
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn files_without_magic_or_format_description_are_refused() {
    let err = run(b"\xfebi", &shop()).unwrap_err();
    assert!(
        matches!(err, BinlogError::NotABinlog { ref found } if found == b"\xfebi"),
        "{err}"
    );
    assert!(
        err.to_string().contains("restore to an earlier moment"),
        "{err}"
    );
    assert!(matches!(
        run(b"", &shop()),
        Err(BinlogError::NotABinlog { .. })
    ));
    assert!(matches!(
        run(b"-- MariaDB dump", &shop()),
        Err(BinlogError::NotABinlog { .. })
    ));

    let mut log = Log::new();
    let gtid = log.gtid(100, 1);
    let mut no_fde = log.only([]);
    no_fde.extend_from_slice(&log.bytes[gtid..]);
    no_fde[4 + 13..4 + 17].copy_from_slice(&0u32.to_le_bytes()); // log_pos: unknown
    let err = run(&no_fde, &shop()).unwrap_err();
    assert!(
        matches!(err, BinlogError::NoFormatDescription { type_code: 162 }),
        "{err}"
    );
}

#[test]
fn unusable_format_descriptions_are_refused() {
    // (offset in the file, new byte, why)
    for (at, byte, what) in [
        (4 + 19, 3, "binlog version"),
        (4 + 19 + 2, 0, "server version"),
        (4 + 19 + 3, b'\n', "server version"),
        (4 + 19 + 56, 20, "header length"),
    ] {
        let mut log = Log::with(false, false);
        log.bytes[at] = byte;
        let err = run(&log.bytes, &shop()).unwrap_err();
        assert!(
            matches!(err, BinlogError::BadFormat { pos: 4, .. }),
            "{err}"
        );
        assert!(err.to_string().contains(what), "{what}: {err}");
    }
    let mut log = Log::new();
    let alg = log.bytes.len() - 5;
    log.bytes[alg] = 2;
    let err = run(&log.bytes, &shop()).unwrap_err();
    assert!(err.to_string().contains("checksum algorithm"), "{err}");
    log.bytes[alg] = 1;
    log.bytes[30] ^= 1; // a version digit: the format description's own CRC32 fails
    assert!(matches!(
        run(&log.bytes, &shop()),
        Err(BinlogError::Checksum { pos: 4, .. })
    ));
}

#[test]
fn an_empty_source_database_is_refused() {
    let log = Log::new();
    for name in ["", "a\0b"] {
        let err = run(&log.bytes, &Filter::new(name)).unwrap_err();
        assert!(matches!(err, BinlogError::InvalidFilter { .. }), "{err}");
    }
}
