//! `stop_at_pos`, `stop_at_gtid` and the list of the last transactions kept.

use super::{run, shop, Log};

/// shop, other, shop (a DELETE), then a statement: GTIDs 0-1-1 … 0-1-4.
fn four() -> (Log, [usize; 4]) {
    let mut log = Log::new();
    let a = log.transaction(100, 1, 5, "shop", "orders"); // 1-4
    let b = log.transaction(110, 2, 6, "other", "t"); // 5-8
    let c = log.gtid(120, 3); // 9
    log.event(120, 160, b"DELETE FROM orders"); // 10: ANNOTATE_ROWS
    log.table_map(120, 5, "shop", "orders"); // 11
    log.rows(120, 32, 5); // 12
    log.xid(120); // 13
    let d = log.gtid(130, 4); // 14
    log.query(130, "shop", "ALTER TABLE orders DROP note"); // 15
    (log, [a, b, c, d])
}

#[test]
fn a_position_or_a_gtid_stops_before_its_transaction() {
    let (log, [_, _, c, d]) = four();
    let mut f = shop();
    f.stop_at_pos = Some(c as u64);
    let (out, sum) = run(&log.bytes, &f).unwrap();
    assert_eq!(out, log.only([0, 1, 2, 3, 4, 5, 8]));
    assert_eq!(sum.stopped_at, Some((c as u64, 120)));
    let mut g = shop();
    g.stop_at_gtid = Some("0-1-3".into());
    let (out2, sum2) = run(&log.bytes, &g).unwrap();
    assert_eq!((out2, sum2.stopped_at), (out, Some((c as u64, 120))));
    // The last one: everything before it.
    g.stop_at_gtid = Some("0-1-4".into());
    assert_eq!(
        run(&log.bytes, &g).unwrap().1.stopped_at,
        Some((d as u64, 130))
    );
    // Not in the log: no stop (the caller says the GTID was not found).
    g.stop_at_gtid = Some("0-1-9".into());
    assert_eq!(run(&log.bytes, &g).unwrap().1.stopped_at, None);
}

#[test]
fn the_last_transactions_of_the_source_database_are_listed() {
    let (log, [a, _, c, d]) = four();
    let mut f = shop();
    f.recent = 10;
    let (_, sum) = run(&log.bytes, &f).unwrap();
    let got: Vec<(u64, Option<&str>, Option<&str>, u64)> = (sum.recent.iter())
        .map(|t| {
            (
                t.pos,
                t.gtid.as_deref(),
                t.statement.as_deref(),
                t.row_events,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (a as u64, Some("0-1-1"), None, 1),
            (c as u64, Some("0-1-3"), Some("DELETE FROM orders"), 1),
            (
                d as u64,
                Some("0-1-4"),
                Some("ALTER TABLE orders DROP note"),
                0
            ),
        ]
    );
    assert!(sum.recent[1].tables.contains("orders"));
    f.recent = 1;
    f.stop_at_pos = Some(d as u64);
    let (_, sum) = run(&log.bytes, &f).unwrap();
    assert_eq!(sum.recent.len(), 1);
    assert_eq!(sum.recent[0].pos, c as u64);
}
