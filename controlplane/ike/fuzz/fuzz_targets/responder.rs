//! Fuzz target: the responder (decode + state machine) must not panic on any sequence of
//! datagrams. The input is a sequence of frames `len(u16 BE) ‖ port selector ‖ bytes`, each
//! delivered one second after the previous one, to port 500 or 4500.
//!
//! Run with `cargo +nightly fuzz run responder` from `controlplane/ike/`.
#![no_main]

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dialgate_ike::crypto::Entropy;
use dialgate_ike::message::{IdType, Identification};
use dialgate_ike::proposal::{EspOffer, IkeOffer};
use dialgate_ike::responder::{AddressPool, AuthReject, Config, MsChapOk, Path, Responder, UserVerifier};
use libfuzzer_sys::fuzz_target;

struct Rng(u64);
impl Entropy for Rng {
    fn fill(&mut self, out: &mut [u8]) {
        for b in out {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            *b = self.0 as u8;
        }
    }
}

struct NoUsers;
impl UserVerifier for NoUsers {
    fn verify_mschapv2(&mut self, _: &str, _: &[u8; 16], _: &[u8; 16], _: &[u8; 24], _: u64) -> Result<MsChapOk, AuthReject> {
        Err(AuthReject { reason: "fuzz".into() })
    }
}

struct Pool;
impl AddressPool for Pool {
    fn allocate(&mut self, _: &str) -> Option<Ipv4Addr> {
        Some(Ipv4Addr::new(10, 0, 0, 2))
    }
    fn release(&mut self, _: Ipv4Addr) {}
}

fuzz_target!(|data: &[u8]| {
    let cfg = Config {
        ike: IkeOffer::parse("aes128-sha256 aes128gcm-prfsha256", &[19, 31], false).expect("offer"),
        esp: EspOffer::parse("aes128gcm", &[], false).expect("offer"),
        local_id: Identification { ty: IdType::ID_FQDN, data: b"gw".to_vec() },
        psk: Default::default(),
        certificate: None,
        eap_identity_request: true,
        cookie_threshold: 4,
        per_address_half_open: 0,
        fragment_len: 576,
        negotiate_timeout: Duration::from_secs(30),
        dns: vec![],
        split_include: vec![],
        server_name: "dialgate".into(),
    };
    let mut now = Instant::now();
    let mut r = Responder::new(Arc::new(cfg), Rng(1), NoUsers, Pool, now, 0);
    let mut rest = data;
    while rest.len() >= 3 {
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        let port = if rest[2] & 1 == 0 { 500 } else { 4500 };
        rest = &rest[3..];
        let (d, tail) = rest.split_at(len.min(rest.len()));
        rest = tail;
        let path = Path { remote: SocketAddr::from(([192, 0, 2, 1], port)), local: SocketAddr::from(([192, 0, 2, 2], port)) };
        r.handle_datagram(now, path, d);
        now += Duration::from_secs(1);
        r.handle_timeout(now);
        while r.poll_transmit().is_some() {}
        while r.poll_event().is_some() {}
    }
});
