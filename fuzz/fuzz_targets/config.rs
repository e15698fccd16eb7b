//! The whole configuration path, load → raw → resolve, on arbitrary text: it must return a
//! config or positioned errors, never panic. (Secret files it names are read for real.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match opsagent::config::parse(Path::new("/etc/opsagent/fuzz.toml"), text) {
        Ok(cfg) => {
            // What check-config prints must be producible for any accepted file.
            let _ = opsagent::cli::check_config::summary(&cfg);
        }
        Err(errors) => {
            // Every error renders (file:line:col, hint).
            let _ = errors.to_string();
        }
    }
});
