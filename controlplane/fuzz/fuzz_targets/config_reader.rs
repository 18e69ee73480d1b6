//! Fuzz target: the FortiOS configuration reader must not panic on any input, and whatever it
//! accepts must print and load back to the same model.
//!
//! Run with `cargo +nightly fuzz run config_reader` from `controlplane/`.
#![no_main]

use dialgate_controlplane::config::{load_str, parse_str};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = load_str(text, "fuzz.conf");
    if let Ok(cfg) = parse_str(text, "fuzz.conf") {
        let shown = cfg.show(&[], true).expect("show of a loaded config");
        let again = parse_str(&shown, "shown.conf").expect("show output loads");
        assert_eq!(again, cfg);
    }
});
