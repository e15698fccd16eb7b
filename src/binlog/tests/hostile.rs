//! Damaged and forged input: always an error naming a position, never a panic, never more
//! memory than the bytes that are there.

use super::{run, shop, Log};
use crate::binlog::{scan_events, BinlogError, Filter};

/// A small valid log: two transactions of the source database, one of another.
fn sample(checksum: bool) -> Log {
    let mut log = Log::with(checksum, false);
    log.event(100, 163, &[0; 8]);
    log.transaction(100, 1, 5, "shop", "t");
    log.transaction(101, 2, 6, "other", "u");
    log.query(102, "shop", "create table t2 (a int)");
    log.transaction(103, 3, 7, "shop", "t");
    log
}

/// xorshift64*: reproducible pseudo-random bytes without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn every_truncation_is_an_error_unless_it_falls_on_an_event_boundary() {
    for checksum in [true, false] {
        let log = sample(checksum);
        let fde_end = log.events[0].1;
        for len in 0..=log.bytes.len() {
            let boundary = len >= fde_end && log.events.iter().any(|&(_, end)| end == len);
            match run(&log.bytes[..len], &shop()) {
                Ok((out, _)) => {
                    assert!(boundary, "cut at {len} accepted");
                    assert!(out.starts_with(&log.bytes[..fde_end]), "cut at {len}");
                }
                Err(e) if len < 4 => {
                    assert!(matches!(e, BinlogError::NotABinlog { .. }), "{len}: {e}")
                }
                Err(e) => {
                    assert!(!boundary, "cut at {len} refused: {e}");
                    let (start, _) = log
                        .events
                        .iter()
                        .find(|&&(a, b)| a <= len && len < b)
                        .unwrap();
                    assert!(
                        matches!(e, BinlogError::Truncated { pos, .. } if pos == *start as u64),
                        "cut at {len}: {e}"
                    );
                }
            }
        }
    }
}

#[test]
fn sizes_below_the_header_or_above_the_limit_name_their_event() {
    let log = sample(true);
    let (at, end) = log.events[2];
    for size in [0u32, 18] {
        let mut bytes = log.bytes.clone();
        bytes[at + 9..at + 13].copy_from_slice(&size.to_le_bytes());
        let err = run(&bytes, &shop()).unwrap_err();
        assert!(
            matches!(err, BinlogError::TooSmall { pos, .. } if pos == at as u64),
            "{err}"
        );
    }
    let mut f = shop();
    f.max_event = 1000;
    let mut bytes = log.bytes.clone();
    bytes[at + 9..at + 13].copy_from_slice(&1001u32.to_le_bytes());
    let err = run(&bytes, &f).unwrap_err();
    assert!(
        matches!(err, BinlogError::TooLarge { pos, size: 1001, max: 1000 } if pos == at as u64),
        "{err}"
    );
    assert!(err.to_string().contains(&format!("byte {at} ")), "{err}");
    // The limit holds for the format description too.
    f.max_event = (end - at) as u64;
    let err = run(&log.bytes, &f).unwrap_err();
    assert!(matches!(err, BinlogError::TooLarge { pos: 4, .. }), "{err}");
}

#[test]
fn a_huge_claimed_size_on_a_short_stream_is_cut_short_not_allocated() {
    let mut log = sample(true);
    let at = log.bytes.len();
    log.event(100, 16, &[0; 8]);
    log.bytes[at + 9..at + 17].copy_from_slice(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
    let mut f = Filter::new("shop");
    f.max_event = u64::MAX;
    let err = run(&log.bytes, &f).unwrap_err();
    assert!(
        matches!(err, BinlogError::Truncated { pos, needed: 0xffff_ffff, got: 31 } if pos == at as u64),
        "{err}"
    );
}

#[test]
fn an_event_out_of_place_is_refused() {
    let log = sample(true);
    let (at, _) = log.events[3];
    let mut bytes = log.bytes.clone();
    bytes[at + 13] ^= 1; // log_pos
    let err = run(&bytes, &shop()).unwrap_err();
    assert!(
        matches!(err, BinlogError::Misplaced { pos, .. } if pos == at as u64),
        "{err}"
    );
}

#[test]
fn random_bytes_are_refused_without_panicking() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for round in 0..2000 {
        let len = rng.below(300);
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        if round % 2 == 0 && len >= 4 {
            bytes[..4].copy_from_slice(b"\xfebin");
        }
        assert!(
            run(&bytes, &shop()).is_err(),
            "random input {round} accepted"
        );
        let _ = scan_events(&bytes, 0);
        let _ = scan_events(&bytes, rng.next());
    }
}

#[test]
fn mutated_logs_never_panic_and_what_passes_is_still_filtered() {
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let (mut accepted, mut refused) = (0, 0);
    for round in 0..3000 {
        let log = sample(round % 3 == 0);
        let mut bytes = log.bytes.clone();
        for _ in 0..1 + rng.below(4) {
            let i = rng.below(bytes.len());
            bytes[i] = rng.next() as u8;
        }
        let _ = scan_events(&bytes, 0);
        match run(&bytes, &shop()) {
            Ok((out, sum)) => {
                accepted += 1;
                assert!(out.starts_with(b"\xfebin") && sum.events_out <= sum.events_in);
                let other = b"\x05other\x00";
                assert!(
                    !out.windows(other.len()).any(|w| w == other),
                    "round {round}"
                );
            }
            Err(e) => {
                refused += 1;
                assert!(!e.to_string().is_empty());
            }
        }
    }
    assert!(
        accepted > 0 && refused > 0,
        "{accepted} accepted, {refused} refused"
    );
}

#[test]
fn the_state_kept_per_transaction_is_bounded() {
    use crate::binlog::{MAX_DROPPED_TABLES, MAX_TABLES_PER_TRANSACTION};
    let mut log = Log::with(false, false);
    log.gtid(100, 1);
    for id in 0..MAX_TABLES_PER_TRANSACTION as u64 {
        log.table_map(100, id, "shop", "t");
    }
    log.table_map(100, 0, "shop", "t"); // an id already kept is fine
    let (out, _) = run(&log.bytes, &shop()).unwrap();
    assert_eq!(out, log.bytes);
    let at = log.table_map(100, u64::from(u32::MAX), "shop", "t") as u64;
    let err = run(&log.bytes, &shop()).unwrap_err();
    assert!(
        matches!(err, BinlogError::Malformed { pos, .. } if pos == at),
        "{err}"
    );

    let mut log = Log::with(false, false);
    for id in 0..MAX_DROPPED_TABLES as u64 + 10 {
        log.table_map(100, id, "other", &format!("t{id}"));
    }
    let (_, sum) = run(&log.bytes, &shop()).unwrap();
    assert_eq!(sum.dropped_tables.len(), MAX_DROPPED_TABLES);
}
