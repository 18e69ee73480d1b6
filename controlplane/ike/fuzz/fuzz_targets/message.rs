//! Fuzz target: message, payload and EAP decoders must not panic, and whatever parses must
//! encode back to bytes that parse to the same message.
//!
//! Run with `cargo +nightly fuzz run message` from `controlplane/ike/`.
#![no_main]

use dialgate_ike::codec::Codec;
use dialgate_ike::eap::{EapPacket, MsChapV2};
use dialgate_ike::message::Message;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Message::parse(data) {
        let again = Message::parse(&m.encode()).expect("re-encoded message parses");
        assert_eq!(again.payloads, m.payloads);
    }
    let _ = EapPacket::read_bytes(data);
    let _ = MsChapV2::parse(data, true);
    let _ = MsChapV2::parse(data, false);
});
