//! What passes and what is dropped.

use super::{run, shop, Log};
use crate::binlog::BinlogError;

#[test]
fn other_databases_lose_their_table_maps_and_rows_and_shop_keeps_everything() {
    let mut log = Log::new();
    log.transaction(100, 1, 70, "shop", "t"); // events 1-4
    log.transaction(101, 2, 71, "other", "u"); // 5-8
    log.gtid(102, 3); // 9: one transaction writing both databases
    log.table_map(102, 72, "shop", "t"); // 10
    log.table_map(102, 73, "other", "u"); // 11
    log.rows(102, 23, 72); // 12
    log.rows(102, 23, 73); // 13
    log.xid(102); // 14
    let (out, sum) = run(&log.bytes, &shop()).unwrap();
    assert_eq!(out, log.only([0, 1, 2, 3, 4, 5, 8, 9, 10, 12, 14]));
    assert_eq!(sum.events_in, 15);
    assert_eq!(sum.events_out, 11);
    assert_eq!(sum.transactions, 3);
    assert_eq!(sum.dropped_row_events, 2);
    assert_eq!(sum.dropped_tables.iter().collect::<Vec<_>>(), ["other.u"]);
    assert_eq!(sum.last_timestamp, Some(102));
    assert_eq!(sum.stopped_at, None);
}

#[test]
fn the_database_name_must_match_exactly() {
    for other in ["Shop", "shop2", "sho", "shop ", "other"] {
        let mut log = Log::new();
        log.transaction(100, 1, 5, other, "t");
        let (out, sum) = run(&log.bytes, &shop()).unwrap();
        assert_eq!(out, log.only([0, 1, 4]), "{other}");
        assert_eq!(sum.dropped_row_events, 1, "{other}");
    }
}

#[test]
fn a_refused_map_takes_back_a_table_id_the_source_database_had() {
    let mut log = Log::new();
    log.gtid(100, 1); // 1
    log.table_map(100, 5, "shop", "t"); // 2
    log.table_map(100, 5, "other", "u"); // 3
    log.rows(100, 23, 5); // 4
    log.xid(100); // 5
    let (out, sum) = run(&log.bytes, &shop()).unwrap();
    assert_eq!(out, log.only([0, 1, 2, 5]));
    assert_eq!(sum.dropped_row_events, 1);
}

#[test]
fn row_events_need_a_map_from_their_own_transaction() {
    let mut log = Log::new();
    log.transaction(100, 1, 5, "shop", "t"); // 1-4
    log.gtid(101, 2); // 5
    log.rows(101, 23, 5); // 6: id 5 was mapped in the previous transaction
    log.xid(101); // 7
    log.query(102, "", "BEGIN"); // 8: BEGIN forgets maps too
    log.rows(102, 23, 5); // 9
    let (out, sum) = run(&log.bytes, &shop()).unwrap();
    assert_eq!(out, log.only([0, 1, 2, 3, 4, 5, 7, 8]));
    assert_eq!(sum.dropped_row_events, 2);
    assert_eq!(sum.queries, 1);
}

#[test]
fn every_row_event_type_is_kept_or_dropped_by_its_table() {
    for t in [23, 24, 25, 30, 31, 32, 166, 167, 168, 169, 170, 171] {
        let mut log = Log::new();
        log.gtid(100, 1);
        log.table_map(100, 5, "shop", "t");
        log.rows(100, t, 5);
        log.rows(100, t, 6);
        let (out, sum) = run(&log.bytes, &shop()).unwrap();
        assert_eq!(out, log.only([0, 1, 2, 3]), "type {t}");
        assert_eq!(sum.dropped_row_events, 1, "type {t}");
    }
}

#[test]
fn row_types_the_format_gives_no_post_header_are_refused() {
    // Pre-GA rows (20-22) and MySQL partial updates (39): a MariaDB format gives them length 0.
    for t in [20, 21, 22, 39] {
        let mut log = Log::new();
        let at = log.rows(100, t, 5) as u64;
        let err = run(&log.bytes, &shop()).unwrap_err();
        assert!(
            matches!(err, BinlogError::Malformed { pos, type_code, .. } if pos == at && type_code == t),
            "{err}"
        );
    }
}

#[test]
fn four_byte_table_ids_are_read_as_the_format_says() {
    let mut log = Log::with(true, true);
    log.gtid(100, 1); // 1
    log.table_map(100, 5, "shop", "t"); // 2
    log.table_map(100, 6, "other", "u"); // 3
    log.rows(100, 23, 5); // 4
    log.rows(100, 23, 6); // 5
    let (out, sum) = run(&log.bytes, &shop()).unwrap();
    assert_eq!(out, log.only([0, 1, 2, 4]));
    assert_eq!(sum.dropped_row_events, 1);
}

#[test]
fn stop_before_cuts_at_the_first_transaction_starting_at_or_after_it() {
    let mut log = Log::new();
    let first = log.transaction(100, 1, 5, "shop", "t"); // 1-4
    log.gtid(199, 2); // 5: starts before the stop, its events are later: kept whole
    log.table_map(250, 5, "shop", "t"); // 6
    log.rows(250, 23, 5); // 7
    log.xid(250); // 8
    let third = log.transaction(300, 3, 5, "shop", "t"); // 9-12
    for (stop, kept, stopped) in [
        (100, vec![0], Some((first as u64, 100i64))),
        (200, (0..=8).collect(), Some((third as u64, 300))),
        (300, (0..=8).collect(), Some((third as u64, 300))),
        (301, (0..=12).collect(), None),
    ] {
        let mut f = shop();
        f.stop_before = Some(stop);
        let (out, sum) = run(&log.bytes, &f).unwrap();
        assert_eq!(out, log.only(kept), "stop {stop}");
        assert_eq!(sum.stopped_at, stopped, "stop {stop}");
    }
}

#[test]
fn begin_starts_transactions_only_in_logs_without_gtids() {
    let mut old = Log::new();
    old.query(100, "shop", "BEGIN"); // 1
    old.table_map(100, 5, "shop", "t"); // 2
    old.rows(100, 23, 5); // 3
    old.query(100, "shop", "COMMIT"); // 4
    let second = old.query(200, "shop", "BEGIN"); // 5
    old.rows(200, 23, 5); // 6
    let mut f = shop();
    f.stop_before = Some(150);
    let (out, sum) = run(&old.bytes, &f).unwrap();
    assert_eq!(out, old.only(0..=4));
    assert_eq!(sum.stopped_at, Some((second as u64, 200)));
    assert_eq!((sum.transactions, sum.queries), (1, 2));

    // MySQL: GTID (33) then BEGIN; the GTID's moment decides.
    let mut mysql = Log::new();
    mysql.event(100, 33, &[0; 42]); // 1
    mysql.query(200, "shop", "BEGIN"); // 2
    mysql.xid(200); // 3
    let (out, sum) = run(&mysql.bytes, &f).unwrap();
    assert_eq!(out, mysql.only(0..=3));
    assert_eq!((sum.stopped_at, sum.transactions), (None, 1));
}

#[test]
fn start_pos_skips_earlier_events_but_not_the_format_description() {
    let mut log = Log::new();
    log.transaction(100, 1, 5, "shop", "t"); // 1-4
    let second = log.transaction(200, 2, 5, "shop", "t"); // 5-8
    let mut f = shop();
    f.start_pos = Some(second as u64);
    let (out, sum) = run(&log.bytes, &f).unwrap();
    assert_eq!(out, log.only([0, 5, 6, 7, 8]));
    assert_eq!((sum.events_in, sum.events_out, sum.transactions), (9, 5, 1));

    f.start_pos = Some(log.bytes.len() as u64);
    assert_eq!(run(&log.bytes, &f).unwrap().0, log.only([0]));

    f.start_pos = Some(second as u64 + 1);
    let err = run(&log.bytes, &f).unwrap_err();
    assert!(
        matches!(err, BinlogError::StartInsideEvent { pos, .. } if pos == second as u64),
        "{err}"
    );
}

#[test]
fn load_data_events_are_dropped_and_counted() {
    let mut log = Log::new();
    log.gtid(100, 1); // 1
    log.event(100, 17, &[1, 0, 0, 0, b'x']); // 2: BEGIN_LOAD_QUERY
    log.event(100, 18, &[0; 40]); // 3: EXECUTE_LOAD_QUERY
    for t in [6, 8, 9, 10, 11, 12] {
        log.event(100, t, &[0; 30]); // 4-9
    }
    log.xid(100); // 10
    let (out, sum) = run(&log.bytes, &shop()).unwrap();
    assert_eq!(out, log.only([0, 1, 10]));
    assert_eq!(sum.dropped_load_events, 8);
}

#[test]
fn other_events_pass_unchanged() {
    let mut log = Log::new();
    log.event(100, 163, &[0; 8]); // GTID_LIST
    log.event(100, 161, b"\x0d\0\0\0binlog.000001"); // checkpoint: `binlog.` is no word
    log.gtid(100, 1);
    log.event(100, 5, &[1, 7, 0, 0, 0, 0, 0, 0, 0]); // INTVAR
    log.event(100, 160, b"insert into t values ('BINLOG')"); // ANNOTATE_ROWS: comments
    log.query(100, "shop", "create table t (binlog_pos int)");
    log.xid(100);
    log.event(100, 4, b"\x04\0\0\0\0\0\0\0binlog.000002"); // ROTATE
    let (out, sum) = run(&log.bytes, &shop()).unwrap();
    assert_eq!(out, log.bytes);
    assert_eq!((sum.queries, sum.transactions), (1, 1));
}

#[test]
fn logs_without_checksums_are_filtered_too() {
    let mut log = Log::with(false, false);
    log.transaction(100, 1, 5, "shop", "t");
    log.transaction(100, 2, 6, "other", "t");
    let (out, sum) = run(&log.bytes, &shop()).unwrap();
    assert_eq!(out, log.only([0, 1, 2, 3, 4, 5, 8]));
    assert_eq!(sum.dropped_row_events, 1);
}

#[test]
fn statements_under_another_database_or_none_are_left_out() {
    let mut log = Log::new();
    log.gtid(100, 1); // 1
    log.query(100, "shop", "ALTER TABLE t ADD c INT"); // 2: kept
    log.gtid(101, 2); // 3
    log.query(101, "other", "DROP TABLE u"); // 4: dropped
    log.gtid(102, 3); // 5
    log.query(102, "", "CREATE DATABASE x"); // 6: dropped (no default database)
    log.query(102, "", "COMMIT"); // 7: transaction control is kept
    let (out, s) = run(&log.bytes, &shop()).unwrap();
    assert_eq!(out, log.only([0, 1, 2, 3, 5, 7]));
    assert_eq!((s.queries, s.dropped_queries), (2, 2));
}

#[test]
fn kept_table_maps_name_the_target_with_their_size_and_checksum_made_right() {
    let mut log = Log::new();
    log.transaction(100, 1, 70, "shop", "t");
    let f = crate::binlog::Filter {
        rename_to: Some("shop_copy_2026".into()),
        ..shop()
    };
    let (out, _) = run(&log.bytes, &f).unwrap();
    let mut at = 4;
    let mut maps = 0;
    while at + 19 <= out.len() {
        let size = u32::from_le_bytes(out[at + 9..at + 13].try_into().unwrap()) as usize;
        let event = &out[at..at + size];
        if event[4] == 19 {
            maps += 1;
            let text = String::from_utf8_lossy(event);
            assert!(
                text.contains("shop_copy_2026") && !text.contains("\u{4}shop\0"),
                "{text:?}"
            );
        }
        if event[4] != 15 {
            let crc = crate::binlog::event::crc32(&event[..size - 4]);
            assert_eq!(crc.to_le_bytes(), event[size - 4..], "event at {at}");
        }
        at += size;
    }
    assert_eq!((maps, at), (1, out.len()));
}
