//! End-to-end tests of the ESP engine: every transform, inner and outer IPv4/IPv6, with and
//! without UDP encapsulation, and every way an inbound packet can be bad.

use core::net::IpAddr;

use dialgate_dataplane::buf::{HeadroomBuf, PacketBuf};
use dialgate_dataplane::esp::{inbound, outbound, Algorithm, Backend, DropReason, Transform};
use dialgate_dataplane::sa::{InboundSa, Lifetime, OutboundSa, SaEvent, Tunnel, UdpEncap};
use dialgate_dataplane::wire::{ipv4, ipv6, udp};
use proptest::prelude::*;

const SPI: u32 = 0xc0de_0001;

fn keys(alg: Algorithm, seed: u8) -> (Vec<u8>, Vec<u8>) {
    let e = (0..alg.enc_key_len()).map(|i| seed.wrapping_mul(31).wrapping_add(i as u8)).collect();
    let a = (0..alg.auth_key_len()).map(|i| seed.wrapping_add(0x5a ^ i as u8)).collect();
    (e, a)
}

fn tunnel(v6: bool, encap: bool) -> Tunnel {
    let (l, r): (IpAddr, IpAddr) = if v6 {
        ("2001:db8::1".parse().unwrap(), "2001:db8::2".parse().unwrap())
    } else {
        ("192.0.2.1".parse().unwrap(), "198.51.100.7".parse().unwrap())
    };
    Tunnel { local: l, remote: r, encap: encap.then_some(UdpEncap { local_port: 4500, remote_port: 61000 }) }
}

fn pair(alg: Algorithm, backend: Backend, tunnel: Tunnel, esn: bool, window: u32) -> (OutboundSa, InboundSa) {
    let (e, a) = keys(alg, 7);
    let out = OutboundSa::new(SPI, Transform::new(alg, backend, &e, &a).unwrap(), tunnel, esn, Lifetime::default());
    let inb = InboundSa::new(SPI, Transform::new(alg, backend, &e, &a).unwrap(), esn, window, Lifetime::default());
    (out, inb)
}

/// An inner IPv4 or IPv6 UDP packet with `n` payload bytes.
fn inner(v6: bool, n: usize, fill: u8) -> Vec<u8> {
    if v6 {
        let mut p = vec![0u8; 40 + 8 + n];
        let repr = ipv6::Repr {
            src_addr: "fd00::2".parse().unwrap(),
            dst_addr: "fd00:50::9".parse().unwrap(),
            next_header: 17,
            payload_len: 8 + n,
            hop_limit: 63,
            traffic_class: 0,
        };
        repr.emit(&mut ipv6::Packet::new_unchecked(&mut p[..]));
        udp::Repr { src_port: 1000, dst_port: 2000, payload_len: n }
            .emit(&mut udp::Packet::new_unchecked(&mut p[40..]));
        p[48..].fill(fill);
        p
    } else {
        let mut p = vec![0u8; 20 + 8 + n];
        let repr = ipv4::Repr {
            src_addr: "10.40.40.2".parse().unwrap(),
            dst_addr: "10.50.0.9".parse().unwrap(),
            next_header: 17,
            payload_len: 8 + n,
            hop_limit: 63,
            tos: 0xb8,
        };
        repr.emit(&mut ipv4::Packet::new_unchecked(&mut p[..]));
        udp::Repr { src_port: 1000, dst_port: 2000, payload_len: n }
            .emit(&mut udp::Packet::new_unchecked(&mut p[20..]));
        p[28..].fill(fill);
        p
    }
}

fn seal(out: &OutboundSa, pkt: &[u8]) -> HeadroomBuf {
    let mut b = HeadroomBuf::from_slice(pkt);
    outbound::encap(out, &mut b).unwrap();
    b
}

fn open(inb: &mut InboundSa, b: &mut HeadroomBuf) -> Result<inbound::Opened, DropReason> {
    let loc = inbound::parse(b.data())?;
    inbound::decap(inb, b, &loc)
}

#[test]
fn round_trip_every_transform_family_and_encapsulation() {
    for alg in Algorithm::ALL {
        for backend in [Backend::AwsLc, Backend::RustCrypto] {
            for outer_v6 in [false, true] {
                for encap in [false, true] {
                    for inner_v6 in [false, true] {
                        let (out, mut inb) = pair(alg, backend, tunnel(outer_v6, encap), false, 64);
                        for n in [0usize, 1, 13, 100, 1400] {
                            let plain = inner(inner_v6, n, n as u8);
                            let mut b = seal(&out, &plain);
                            let loc = inbound::parse(b.data()).unwrap();
                            assert_eq!(loc.spi, SPI);
                            assert_eq!(loc.udp_ports.is_some(), encap);
                            assert_eq!(loc.src, out.tunnel.local);
                            let got = inbound::decap(&mut inb, &mut b, &loc).unwrap();
                            assert_eq!(b.data(), &plain[..], "{alg:?} {backend:?} v6={outer_v6} encap={encap} n={n}");
                            assert_eq!(got.next_header, if inner_v6 { 41 } else { 4 });
                        }
                        assert_eq!(inb.counters.packets(), 5);
                        assert_eq!(out.packets(), 5);
                        assert_eq!(inb.counters.bytes(), out.counters.bytes());
                    }
                }
            }
        }
    }
}

#[test]
fn outer_headers_follow_rfc3948_and_4303() {
    let (out, _) = pair(Algorithm::Aes128Gcm, Backend::AwsLc, tunnel(false, true), false, 64);
    let plain = inner(false, 33, 1);
    let b = seal(&out, &plain);
    let ip = ipv4::Packet::new_checked(b.data()).unwrap();
    assert!(ip.verify_checksum());
    assert_eq!(ip.next_header(), 17);
    assert_eq!(ip.tos(), 0xb8, "DSCP copied from the inner header");
    assert_eq!(ip.src_addr().to_string(), "192.0.2.1");
    let u = udp::Packet::new_checked(ip.payload()).unwrap();
    assert_eq!((u.src_port(), u.dst_port(), u.checksum()), (4500, 61000, 0));
    let esp = u.payload();
    assert_eq!(&esp[..4], &SPI.to_be_bytes());
    assert_eq!(&esp[4..8], &1u32.to_be_bytes(), "first sequence number is 1");
    assert_eq!(&esp[8..16], &1u64.to_be_bytes(), "AEAD IV is the sequence number");
    // 61 bytes inner + 2 trailer = 63 → 1 byte of padding to reach a multiple of 4.
    assert_eq!(esp.len(), 8 + 8 + 61 + 1 + 2 + 16);

    let (out6, _) = pair(Algorithm::ChaCha20Poly1305, Backend::AwsLc, tunnel(true, true), false, 64);
    let b = seal(&out6, &plain);
    let ip = ipv6::Packet::new_checked(b.data()).unwrap();
    let src = ip.src_addr();
    let dst = ip.dst_addr();
    let pseudo = dialgate_dataplane::wire::checksum::pseudo_v6(src, dst, 17, ip.payload().len() as u32);
    let total =
        dialgate_dataplane::wire::checksum::combine(&[pseudo, dialgate_dataplane::wire::checksum::sum(ip.payload())]);
    assert_eq!(total, 0xffff, "UDP checksum over IPv6 verifies");
}

#[test]
fn cbc_padding_aligns_to_the_block() {
    let (out, mut inb) = pair(Algorithm::Aes256CbcSha256, Backend::AwsLc, tunnel(false, false), false, 64);
    for n in 0..40 {
        let plain = inner(false, n, 3);
        let mut b = seal(&out, &plain);
        let esp_len = b.len() - 20;
        assert_eq!((esp_len - 8 - 16 - 16) % 16, 0, "n={n}");
        open(&mut inb, &mut b).unwrap();
        assert_eq!(b.data(), &plain[..]);
    }
}

#[test]
fn replayed_and_too_old_are_dropped_and_counted() {
    let (out, mut inb) = pair(Algorithm::Aes128Gcm, Backend::AwsLc, tunnel(false, true), false, 64);
    let plain = inner(false, 10, 9);
    let packets: Vec<HeadroomBuf> = (0..100).map(|_| seal(&out, &plain)).collect();
    let mut first = packets[0].clone();
    open(&mut inb, &mut first).unwrap();
    let mut again = packets[0].clone();
    assert_eq!(open(&mut inb, &mut again), Err(DropReason::Replayed));
    let mut last = packets[99].clone();
    open(&mut inb, &mut last).unwrap();
    let mut old = packets[1].clone();
    assert_eq!(open(&mut inb, &mut old), Err(DropReason::TooOld), "seq 2 is behind a 64-packet window at 100");
    let mut inside = packets[50].clone();
    open(&mut inb, &mut inside).unwrap();
    assert_eq!(inb.counters.errors(DropReason::Replayed), 1);
    assert_eq!(inb.counters.errors(DropReason::TooOld), 1);
    assert_eq!(inb.counters.packets(), 3);
}

#[test]
fn forged_packet_does_not_move_the_window() {
    let (out, mut inb) = pair(Algorithm::Aes128CbcSha1, Backend::AwsLc, tunnel(false, false), false, 64);
    let plain = inner(false, 10, 9);
    let good = seal(&out, &plain);
    // Same packet with sequence number 1000 and a broken ICV.
    let mut forged = good.clone();
    forged.data_mut()[20 + 7] = 0xe8;
    forged.data_mut()[20 + 6] = 0x03;
    assert_eq!(open(&mut inb, &mut forged), Err(DropReason::BadIcv));
    let mut g = good.clone();
    open(&mut inb, &mut g).expect("seq 1 still inside the window");
    assert_eq!(inb.replay.top(), 1);
}

#[test]
fn every_single_bit_flip_is_caught() {
    let (out, _) = pair(Algorithm::Aes256Gcm, Backend::AwsLc, tunnel(false, true), false, 64);
    let plain = inner(false, 20, 5);
    let good = seal(&out, &plain);
    let esp_start = 28;
    for at in esp_start..good.len() {
        for bit in [0x01u8, 0x80] {
            let (_, mut inb) = pair(Algorithm::Aes256Gcm, Backend::AwsLc, tunnel(false, true), false, 64);
            let mut b = good.clone();
            b.data_mut()[at] ^= bit;
            let r = open(&mut inb, &mut b);
            assert!(r.is_err(), "flip at {at} accepted");
            assert!(
                matches!(
                    r,
                    Err(DropReason::BadIcv | DropReason::UnknownSpi | DropReason::TooOld | DropReason::Truncated)
                ),
                "{r:?} at {at}"
            );
        }
    }
}

#[test]
fn truncated_at_every_length_never_panics() {
    for alg in Algorithm::ALL {
        for (v6, encap) in [(false, false), (false, true), (true, false), (true, true)] {
            let (out, _) = pair(alg, Backend::AwsLc, tunnel(v6, encap), false, 64);
            let good = seal(&out, &inner(false, 40, 1));
            for n in 0..good.len() {
                let (_, mut inb) = pair(alg, Backend::AwsLc, tunnel(v6, encap), false, 64);
                let mut b = HeadroomBuf::from_slice(&good.data()[..n]);
                assert!(open(&mut inb, &mut b).is_err(), "{alg:?} len {n}");
            }
        }
    }
}

/// Builds a packet whose trailer we control: `tail` replaces pad/padlen/nh before sealing.
fn sealed_with_trailer(alg: Algorithm, payload: &[u8], trailer: &[u8]) -> HeadroomBuf {
    let (e, a) = keys(alg, 7);
    let t = Transform::new(alg, Backend::AwsLc, &e, &a).unwrap();
    let mut esp = Vec::new();
    esp.extend_from_slice(&SPI.to_be_bytes());
    esp.extend_from_slice(&1u32.to_be_bytes());
    let mut iv = vec![0u8; alg.iv_len()];
    t.write_iv(1, &mut iv);
    esp.extend_from_slice(&iv);
    esp.extend_from_slice(payload);
    esp.extend_from_slice(trailer);
    esp.extend(std::iter::repeat_n(0u8, alg.icv_len()));
    t.seal(&mut esp, None).unwrap();
    let mut pkt = vec![0u8; 20];
    let repr = ipv4::Repr {
        src_addr: "198.51.100.7".parse().unwrap(),
        dst_addr: "192.0.2.1".parse().unwrap(),
        next_header: 50,
        payload_len: esp.len(),
        hop_limit: 64,
        tos: 0,
    };
    repr.emit(&mut ipv4::Packet::new_unchecked(&mut pkt[..]));
    pkt.extend_from_slice(&esp);
    HeadroomBuf::from_slice(&pkt)
}

#[test]
fn bad_padding_next_header_dummy_and_inner_are_distinguished() {
    let alg = Algorithm::Aes128Gcm;
    let ip = inner(false, 2, 0); // 30 bytes
    let fresh = || pair(alg, Backend::AwsLc, tunnel(false, false), false, 64).1;
    // 30 + 2 pad + 2 = 34 → not a multiple of 4: pad 4 instead. Correct: [1,2,3,4].
    let mut ok = sealed_with_trailer(alg, &ip, &[1, 2, 3, 4, 4, 4]);
    open(&mut fresh(), &mut ok).unwrap();
    assert_eq!(ok.data(), &ip[..]);
    let mut b = sealed_with_trailer(alg, &ip, &[1, 2, 9, 4, 4, 4]);
    assert_eq!(open(&mut fresh(), &mut b), Err(DropReason::BadPadding));
    let mut b = sealed_with_trailer(alg, &ip, &[1, 2, 3, 4, 200, 4]);
    assert_eq!(open(&mut fresh(), &mut b), Err(DropReason::BadPadding), "pad length beyond payload");
    let mut b = sealed_with_trailer(alg, &ip, &[1, 2, 3, 4, 4, 17]);
    assert_eq!(open(&mut fresh(), &mut b), Err(DropReason::BadNextHeader));
    let mut b = sealed_with_trailer(alg, &ip, &[1, 2, 3, 4, 4, 59]);
    let mut sa = fresh();
    assert_eq!(open(&mut sa, &mut b), Err(DropReason::Dummy));
    assert_eq!(sa.replay.top(), 1, "an authenticated dummy packet still advances the window");
    let mut b = sealed_with_trailer(alg, &ip, &[1, 2, 3, 4, 4, 41]);
    assert_eq!(open(&mut fresh(), &mut b), Err(DropReason::BadInnerPacket), "IPv4 bytes labelled IPv6");
    // TFC padding (RFC 4303 §2.7) after the inner packet is stripped.
    let mut with_tfc = ip.clone();
    with_tfc.extend_from_slice(&[0xee; 4]);
    let mut b = sealed_with_trailer(alg, &with_tfc, &[1, 2, 3, 4, 4, 4]);
    open(&mut fresh(), &mut b).unwrap();
    assert_eq!(b.data(), &ip[..]);
}

#[test]
fn unknown_spi_and_non_esp_are_refused() {
    let (out, _) = pair(Algorithm::Aes128Gcm, Backend::AwsLc, tunnel(false, true), false, 64);
    let mut b = seal(&out, &inner(false, 8, 0));
    let loc = inbound::parse(b.data()).unwrap();
    let (e, _) = keys(Algorithm::Aes128Gcm, 7);
    let mut other = InboundSa::new(
        SPI + 1,
        Transform::new(Algorithm::Aes128Gcm, Backend::AwsLc, &e, &[]).unwrap(),
        false,
        64,
        Lifetime::default(),
    );
    assert_eq!(inbound::decap(&mut other, &mut b, &loc), Err(DropReason::UnknownSpi));
    // IKE on 4500 (non-ESP marker) and a keepalive are not ESP.
    let mut ike = vec![0u8; 20 + 8 + 4 + 28];
    ipv4::Repr {
        src_addr: "198.51.100.7".parse().unwrap(),
        dst_addr: "192.0.2.1".parse().unwrap(),
        next_header: 17,
        payload_len: 8 + 32,
        hop_limit: 64,
        tos: 0,
    }
    .emit(&mut ipv4::Packet::new_unchecked(&mut ike[..]));
    udp::Repr { src_port: 4500, dst_port: 4500, payload_len: 32 }.emit(&mut udp::Packet::new_unchecked(&mut ike[20..]));
    ike[32] = 0x11;
    assert_eq!(inbound::parse(&ike), Err(DropReason::NotEsp));
}

#[test]
fn esn_packets_beyond_2_32_round_trip() {
    let alg = Algorithm::Aes128CbcSha256;
    let (e, a) = keys(alg, 3);
    let t = tunnel(false, true);
    let out = OutboundSa::with_seq(
        SPI,
        Transform::new(alg, Backend::AwsLc, &e, &a).unwrap(),
        t,
        true,
        Lifetime::default(),
        u64::from(u32::MAX) - 3,
    );
    let mut inb =
        InboundSa::new(SPI, Transform::new(alg, Backend::AwsLc, &e, &a).unwrap(), true, 64, Lifetime::default());
    let plain = inner(false, 16, 4);
    for i in 0..8 {
        let mut b = seal(&out, &plain);
        let got = open(&mut inb, &mut b).unwrap_or_else(|r| panic!("packet {i}: {r:?}"));
        assert_eq!(got.seq, u64::from(u32::MAX) - 2 + i);
    }
    assert!(inb.replay.top() > u64::from(u32::MAX));
}

#[test]
fn lifetimes_raise_events_and_hard_limit_stops_traffic() {
    let alg = Algorithm::Aes128Gcm;
    let (e, _) = keys(alg, 1);
    let lt = Lifetime { soft_packets: 3, hard_packets: 5, ..Default::default() };
    let out =
        OutboundSa::new(SPI, Transform::new(alg, Backend::AwsLc, &e, &[]).unwrap(), tunnel(false, false), false, lt);
    let plain = inner(false, 4, 0);
    let mut events = Vec::new();
    for _ in 0..5 {
        let mut b = HeadroomBuf::from_slice(&plain);
        events.push(outbound::encap(&out, &mut b).unwrap().event);
    }
    assert_eq!(events, vec![None, None, Some(SaEvent::SoftLifetime), None, Some(SaEvent::HardLifetime)]);
    let mut b = HeadroomBuf::from_slice(&plain);
    assert_eq!(outbound::encap(&out, &mut b).unwrap_err().reason, DropReason::HardLifetime);
    assert_eq!(out.counters.errors(DropReason::HardLifetime), 1);
}

#[test]
fn no_room_is_refused_not_panicking() {
    let (out, _) = pair(Algorithm::Aes128Gcm, Backend::AwsLc, tunnel(false, true), false, 64);
    let plain = inner(false, 10, 0);
    let mut tight = HeadroomBuf::with_capacity(0, plain.len() + 64);
    tight.append(plain.len()).unwrap().copy_from_slice(&plain);
    assert_eq!(outbound::encap(&out, &mut tight).unwrap_err().reason, DropReason::NoHeadroom);
    let mut b = HeadroomBuf::from_slice(&[0x45, 0, 0]);
    assert_eq!(outbound::encap(&out, &mut b).unwrap_err().reason, DropReason::BadInnerPacket);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Random bytes — raw, and behind a valid outer header — never panic and never decrypt.
    #[test]
    fn random_input_is_dropped_without_panic(data in proptest::collection::vec(any::<u8>(), 0..200), spi in any::<u32>(), behind_udp in any::<bool>()) {
        let (_, mut inb) = pair(Algorithm::Aes128Gcm, Backend::AwsLc, tunnel(false, true), false, 64);
        let mut b = HeadroomBuf::from_slice(&data);
        prop_assert!(open(&mut inb, &mut b).is_err());
        let mut esp = spi.to_be_bytes().to_vec();
        esp.extend_from_slice(&data);
        let l4 = if behind_udp { 8 } else { 0 };
        let mut pkt = vec![0u8; 20 + l4];
        ipv4::Repr { src_addr: "198.51.100.7".parse().unwrap(), dst_addr: "192.0.2.1".parse().unwrap(), next_header: if behind_udp { 17 } else { 50 }, payload_len: l4 + esp.len(), hop_limit: 64, tos: 0 }
            .emit(&mut ipv4::Packet::new_unchecked(&mut pkt[..]));
        if behind_udp {
            udp::Repr { src_port: 4500, dst_port: 4500, payload_len: esp.len() }.emit(&mut udp::Packet::new_unchecked(&mut pkt[20..]));
        }
        pkt.extend_from_slice(&esp);
        let mut inb2 = InboundSa::new(spi, Transform::new(Algorithm::Aes128Gcm, Backend::AwsLc, &keys(Algorithm::Aes128Gcm, 7).0, &[]).unwrap(), false, 64, Lifetime::default());
        let mut b = HeadroomBuf::from_slice(&pkt);
        prop_assert!(open(&mut inb2, &mut b).is_err());
    }
}
