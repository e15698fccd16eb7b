//! `scan_events`: event boundaries, moments and GTIDs of a piece of a log.

use super::Log;
use crate::binlog::{scan_events, BinlogError, Scan};

fn sample() -> Log {
    let mut log = Log::new();
    log.transaction(100, 1, 5, "shop", "t");
    log.transaction(200, 2, 5, "other", "u");
    log.transaction(300, 3, 5, "shop", "t");
    log
}

#[test]
fn a_whole_log_is_complete_with_its_moments_and_gtids() {
    let log = sample();
    let scan = scan_events(&log.bytes, 0).unwrap();
    assert_eq!(
        scan,
        Scan {
            complete: log.bytes.len() as u64,
            events: 13,
            first_timestamp: Some(1000),
            last_timestamp: Some(300),
            first_gtid: Some("0-1-1".into()),
            last_gtid: Some("0-1-3".into()),
            ends_file: false,
        }
    );
}

#[test]
fn a_partial_event_at_the_end_is_left_for_the_next_segment() {
    let log = sample();
    for (i, &(start, end)) in log.events.iter().enumerate() {
        for len in [start + 1, start + 18, end - 1] {
            let scan = scan_events(&log.bytes[..len], 0).unwrap();
            assert_eq!(scan.complete, start as u64, "cut at {len}");
            assert_eq!(scan.events, i as u64, "cut at {len}");
        }
    }
    assert_eq!(scan_events(b"\xfeb", 0).unwrap().complete, 0);
    assert_eq!(scan_events(b"\xfebin", 0).unwrap().complete, 4);
}

#[test]
fn a_piece_from_the_middle_is_scanned_from_its_offset() {
    let log = sample();
    let (start, _) = log.events[5]; // the second transaction's GTID
    let scan = scan_events(&log.bytes[start..], start as u64).unwrap();
    assert_eq!(scan.complete, (log.bytes.len() - start) as u64);
    assert_eq!(scan.events, 8);
    assert_eq!(scan.first_gtid.as_deref(), Some("0-1-2"));
    assert_eq!(scan.first_timestamp, Some(200));

    // A wrong offset shows in the first event's log_pos.
    let err = scan_events(&log.bytes[start..], start as u64 + 1).unwrap_err();
    assert!(matches!(err, BinlogError::Misplaced { .. }), "{err}");
    // A piece that does not start on a boundary.
    let err = scan_events(&log.bytes[start + 1..], start as u64 + 1).unwrap_err();
    assert_eq!(err.pos(), Some(start as u64 + 1), "{err}");
    // Offsets 1-3 are inside the magic.
    let err = scan_events(&log.bytes[2..], 2).unwrap_err();
    assert!(matches!(err, BinlogError::StartInsideEvent { .. }), "{err}");
    let err = scan_events(b"GIF89a", 0).unwrap_err();
    assert!(matches!(err, BinlogError::NotABinlog { .. }), "{err}");
}

#[test]
fn mysql_gtids_are_read_as_uuid_and_number() {
    let mut log = Log::new();
    let mut body = vec![1u8];
    body.extend((0u8..16).collect::<Vec<_>>());
    body.extend(42u64.to_le_bytes());
    body.extend([0; 17]);
    log.event(100, 33, &body);
    let scan = scan_events(&log.bytes, 0).unwrap();
    assert_eq!(
        scan.last_gtid.as_deref(),
        Some("00010203-0405-0607-0809-0a0b0c0d0e0f:42")
    );
}

#[test]
fn every_truncation_and_offset_scans_without_panicking() {
    let log = sample();
    for len in 0..=log.bytes.len() {
        let scan = scan_events(&log.bytes[..len], 0).unwrap();
        assert!(scan.complete <= len as u64);
        for cut in [1, 7, 19] {
            let from = len.min(log.bytes.len());
            let piece = &log.bytes[from..(from + cut).min(log.bytes.len())];
            let _ = scan_events(piece, from as u64);
        }
    }
    assert!(scan_events(&log.bytes[4..], u64::MAX).is_err());
}
