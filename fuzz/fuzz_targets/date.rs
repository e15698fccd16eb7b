//! `restore --date` expressions: any text, at any plausible "now" (1970–2199), in a few zones
//! (DST north and south, half-hour offsets, UTC, the system zone) parses or is refused, never
//! panics; a parsed day-sized moment is the last millisecond of a local day.
#![no_main]

use chrono::{DateTime, Utc};
use libfuzzer_sys::fuzz_target;
use opsagent::config::Zone;

const ZONES: [&str; 6] = [
    "UTC",
    "Europe/Berlin",
    "America/Bogota",
    "Australia/Lord_Howe",
    "Asia/Kathmandu",
    "Pacific/Apia",
];

fuzz_target!(|data: &[u8]| {
    if data.len() < 5 {
        return;
    }
    let (head, expr) = data.split_at(5);
    let Ok(expr) = std::str::from_utf8(expr) else {
        return;
    };
    // 1970-01-01 .. about 2199: the range a system clock can hold.
    let secs = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as i64 * 2;
    let Some(now) = DateTime::<Utc>::from_timestamp(secs, 0) else {
        return;
    };
    let zone = match head[4] as usize % (ZONES.len() + 1) {
        i if i < ZONES.len() => Zone::parse(ZONES[i]).expect("known zone"),
        _ => Zone::Local,
    };
    if let Ok(m) = opsagent::restore::date::parse(expr, now, zone) {
        if m.whole_day {
            assert_eq!(m.at.timestamp_subsec_millis(), 999, "{expr:?} at {now}");
        }
    }
});
