//! Snapshot manifests as read from a bucket: any bytes parse or are refused with a message
//! naming the key, never panic; what parses re-serialises and parses to the same manifest.
#![no_main]

use libfuzzer_sys::fuzz_target;
use opsagent::backup::manifest::Manifest;

const KEY: &str = "snapshots/main/shop/20261120T073000Z-0a1b2c3d.json";

fuzz_target!(|data: &[u8]| {
    match Manifest::parse(KEY, data) {
        Ok(m) => {
            let _ = (m.key(), m.stored_size(), m.raw_size());
            let again = serde_json::to_vec(&m).expect("a parsed manifest serialises");
            let back = Manifest::parse(KEY, &again).expect("a serialised manifest parses");
            assert_eq!(m, back);
        }
        Err(e) => assert!(e.contains(KEY), "{e}"),
    }
});
