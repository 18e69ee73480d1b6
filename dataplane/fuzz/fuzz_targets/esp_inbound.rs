//! Fuzz target: the inbound ESP path (outer IPv4/IPv6, UDP 4500, ESP, decryption, trailer and
//! inner-header checks) must never panic, whatever arrives on the wire.
//!
//! The first byte picks the transform; the SA's SPI is taken from where the packet's SPI would
//! sit, so the fuzzer reaches the crypto and trailer code instead of stopping at the lookup.
//! Run with `cargo +nightly fuzz run esp_inbound` from `dataplane/`.
#![no_main]

use dialgate_dataplane::buf::{HeadroomBuf, PacketBuf};
use dialgate_dataplane::esp::{inbound, Algorithm, Backend, Transform};
use dialgate_dataplane::sa::{InboundSa, Lifetime};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, pkt)) = data.split_first() else { return };
    let alg = Algorithm::ALL[usize::from(sel) % Algorithm::ALL.len()];
    let t = Transform::new(alg, Backend::AwsLc, &vec![0x42; alg.enc_key_len()], &vec![0x24; alg.auth_key_len()])
        .expect("key lengths match the algorithm");
    let mut buf = HeadroomBuf::from_slice(pkt);
    if let Ok(loc) = inbound::parse(buf.data()) {
        let mut sa = InboundSa::new(loc.spi, t, sel & 0x80 != 0, 64, Lifetime::default());
        if inbound::decap(&mut sa, &mut buf, &loc).is_ok() {
            // Only a packet sealed under the fixed key can get here; its inner packet is IP.
            assert!(matches!(buf.data().first().map(|b| b >> 4), Some(4 | 6)));
        }
    }
});
