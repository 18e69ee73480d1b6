//! Source NAT connection table: translations, replies, checksums, timeouts, bounds, RSS steering.

use std::net::Ipv4Addr;

use dialgate_dataplane::nat::{Admit, ConnTable, Hop, NatConfig, NatError, Prefetch, RssSteer, Timeouts};
use dialgate_dataplane::policy::{
    predefined_service, Action, AddrSet, FlowKey, GroupMask, IfMatch, PolicySet, PolicySpec,
};
use dialgate_dataplane::wire::checksum;
use proptest::prelude::*;

const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMP: u8 = 1;
const S: u64 = 1_000_000_000;

fn client(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 212, 134, n)
}
const SERVER: Ipv4Addr = Ipv4Addr::new(192, 168, 10, 5);
const GW_LAN: Ipv4Addr = Ipv4Addr::new(192, 168, 10, 1);

/// Builds an IPv4 packet with every checksum computed from scratch. For ICMP, `sport` is the
/// echo id and `dport` the ICMP type.
fn packet(proto: u8, src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, payload: &[u8], flags: u8) -> Vec<u8> {
    let l4_len = match proto {
        TCP => 20,
        _ => 8,
    } + payload.len();
    let mut p = vec![0u8; 20 + l4_len];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&((20 + l4_len) as u16).to_be_bytes());
    p[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
    p[8] = 64;
    p[9] = proto;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    let l4 = &mut p[20..];
    match proto {
        TCP => {
            l4[0..2].copy_from_slice(&sport.to_be_bytes());
            l4[2..4].copy_from_slice(&dport.to_be_bytes());
            l4[4..8].copy_from_slice(&0x01020304u32.to_be_bytes());
            l4[12] = 5 << 4;
            l4[13] = flags;
            l4[14..16].copy_from_slice(&65535u16.to_be_bytes());
            l4[20..].copy_from_slice(payload);
        }
        UDP => {
            l4[0..2].copy_from_slice(&sport.to_be_bytes());
            l4[2..4].copy_from_slice(&dport.to_be_bytes());
            l4[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
            l4[8..].copy_from_slice(payload);
        }
        _ => {
            l4[0] = dport as u8;
            l4[4..6].copy_from_slice(&sport.to_be_bytes());
            l4[6..8].copy_from_slice(&7u16.to_be_bytes());
            l4[8..].copy_from_slice(payload);
        }
    }
    fill_checksums(&mut p);
    p
}

/// Recomputes every checksum of `p` (IPv4 header, and TCP/UDP with pseudo-header, or ICMP).
fn fill_checksums(p: &mut [u8]) {
    p[10..12].fill(0);
    let c = !checksum::sum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    let (src, dst, proto) = (ip(p, 12), ip(p, 16), p[9]);
    let len = (p.len() - 20) as u16;
    let at = match proto {
        TCP => 20 + 16,
        UDP => 20 + 6,
        _ => 20 + 2,
    };
    p[at..at + 2].fill(0);
    let c = if proto == ICMP {
        !checksum::sum(&p[20..])
    } else {
        !checksum::combine(&[checksum::pseudo_v4(src, dst, proto, len), checksum::sum(&p[20..])])
    };
    let c = if proto == UDP && c == 0 { 0xffff } else { c };
    p[at..at + 2].copy_from_slice(&c.to_be_bytes());
}

fn ip(p: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(p[at], p[at + 1], p[at + 2], p[at + 3])
}

/// Whether every checksum of `p` verifies when recomputed from scratch.
fn checksums_valid(p: &[u8]) -> bool {
    let mut q = p.to_vec();
    fill_checksums(&mut q);
    q == p
}

fn ports(p: &[u8]) -> (u16, u16) {
    let b = |at: usize| u16::from_be_bytes([p[at], p[at + 1]]);
    if p[9] == ICMP {
        (b(24), 0)
    } else {
        (b(20), b(22))
    }
}

/// The reply a server would send to `p`: addresses and ports swapped (checksums stay valid,
/// since one's-complement sums do not depend on order).
fn swap(p: &[u8]) -> Vec<u8> {
    let mut r = p.to_vec();
    r[12..16].copy_from_slice(&p[16..20]);
    r[16..20].copy_from_slice(&p[12..16]);
    if p[9] == ICMP {
        r[20] = if p[20] == 8 { 0 } else { 8 };
        // Type 8 -> 0 changes the first word: fix the checksum the way the server would.
        fill_checksums(&mut r);
    } else {
        r[20..22].copy_from_slice(&p[22..24]);
        r[22..24].copy_from_slice(&p[20..22]);
    }
    r
}

fn table(cfg: NatConfig) -> ConnTable {
    ConnTable::new(cfg)
}

#[test]
fn two_clients_keep_distinct_translations_and_replies_map_back() {
    let mut t = table(NatConfig::default());
    let mut a = packet(TCP, client(1), SERVER, 40000, 443, b"hello", 0x02);
    let mut b = packet(TCP, client(2), SERVER, 40000, 443, b"hello", 0x02);
    let oa = t.outbound(0, 1, &mut a, Some(GW_LAN)).unwrap();
    let ob = t.outbound(0, 2, &mut b, Some(GW_LAN)).unwrap();
    assert!(oa.new_flow && ob.new_flow);
    assert_eq!((ip(&a, 12), ip(&b, 12)), (GW_LAN, GW_LAN), "both leave with the LAN address");
    assert_ne!(oa.port, ob.port, "same client port, different NAT ports");
    assert_eq!((ports(&a).0, ports(&b).0), (oa.port, ob.port));
    assert!(checksums_valid(&a) && checksums_valid(&b));

    // A second packet of the same flow keeps its translation (prefetching first changes nothing,
    // nor does prefetching garbage).
    let mut a2 = packet(TCP, client(1), SERVER, 40000, 443, b"more", 0x10);
    for stage in [Prefetch::Index, Prefetch::Entry] {
        t.prefetch_outbound(1, &a2, stage);
        t.prefetch_outbound(1, &[0xff; 7], stage);
        t.prefetch_reply(&swap(&a), stage);
    }
    assert_eq!(t.len(), 2);
    let oa2 = t.outbound(1, 1, &mut a2, Some(GW_LAN)).unwrap();
    assert!(!oa2.new_flow);
    assert_eq!(oa2.port, oa.port);

    // Replies, in reverse order, go back to the right tunnel and client.
    let mut rb = swap(&b);
    let rep = t.reply(2, &mut rb).unwrap();
    assert_eq!((rep.tunnel, rep.client), (2, client(2)));
    assert_eq!(ip(&rb, 16), client(2));
    assert_eq!(ports(&rb).1, 40000);
    assert!(checksums_valid(&rb));
    let mut ra = swap(&a);
    assert_eq!(t.reply(2, &mut ra).unwrap().tunnel, 1);
    assert_eq!(ip(&ra, 16), client(1));
    assert_eq!(t.len(), 2);
    assert_eq!(t.tunnel_len(1), 1);
}

#[test]
fn checksums_are_valid_after_rewrite_for_each_protocol() {
    let mut t = table(NatConfig::default());
    for (n, (proto, sport, dport)) in [(TCP, 51000, 22), (UDP, 5353, 53), (ICMP, 0x4242, 8)].into_iter().enumerate() {
        let mut p = packet(proto, client(n as u8 + 1), SERVER, sport, dport, b"odd-length!", 0x02);
        let before = p.clone();
        let o = t.outbound(0, 0, &mut p, Some(GW_LAN)).unwrap();
        assert_ne!(p, before);
        assert!(checksums_valid(&p), "proto {proto} outbound");
        assert_eq!(ports(&p).0, o.port);
        let mut r = swap(&p);
        t.reply(0, &mut r).unwrap();
        assert!(checksums_valid(&r), "proto {proto} reply");
        assert_eq!(ip(&r, 16), client(n as u8 + 1));
        assert_eq!(ports(&r).0.max(ports(&r).1), if proto == ICMP { sport } else { sport.max(dport) });
    }
}

#[test]
fn udp_without_checksum_stays_without() {
    let mut t = table(NatConfig::default());
    let mut p = packet(UDP, client(1), SERVER, 5000, 53, b"q", 0);
    p[26..28].fill(0);
    t.outbound(0, 0, &mut p, Some(GW_LAN)).unwrap();
    assert_eq!(&p[26..28], &[0, 0]);
    assert_eq!(ip(&p, 12), GW_LAN);
    // The IP header checksum still verifies.
    assert_eq!(checksum::sum(&p[..20]), 0xffff);
}

#[test]
fn tracking_without_nat_keeps_the_packet_and_still_maps_replies() {
    let mut t = table(NatConfig::default());
    let mut p = packet(UDP, client(9), SERVER, 6000, 123, b"ntp", 0);
    let before = p.clone();
    let o = t.outbound(0, 7, &mut p, None).unwrap();
    assert!(o.new_flow);
    assert_eq!(p, before, "no NAT: bytes unchanged");
    let mut r = swap(&p);
    assert_eq!(t.reply(0, &mut r).unwrap().tunnel, 7);
    assert_eq!(r, swap(&before));
}

#[test]
fn entries_expire_per_protocol_timeouts() {
    let timeouts = Timeouts { tcp_established: 100 * S, tcp_transitory: 10 * S, udp: 30 * S, icmp: 5 * S };
    // 16 slots: a sweep budget of 1000 looks at every slot each call.
    let mut t = table(NatConfig { capacity: 16, timeouts, ..NatConfig::default() });
    let mut icmp = packet(ICMP, client(1), SERVER, 1, 8, b"", 0);
    let mut udp = packet(UDP, client(1), SERVER, 1000, 53, b"", 0);
    let mut tcp = packet(TCP, client(1), SERVER, 1000, 80, b"", 0x02);
    t.outbound(0, 0, &mut icmp, Some(GW_LAN)).unwrap();
    t.outbound(0, 0, &mut udp, Some(GW_LAN)).unwrap();
    t.outbound(0, 0, &mut tcp, Some(GW_LAN)).unwrap();
    // The TCP reply establishes the flow: 100 s from now.
    t.reply(S, &mut swap(&tcp)).unwrap();
    assert_eq!(t.sweep(6 * S, 1000), 1, "ICMP (5 s) expired");
    assert_eq!(t.reply(6 * S, &mut swap(&icmp)), Err(NatError::NoEntry));
    assert_eq!(t.sweep(31 * S, 1000), 1, "UDP (30 s) expired");
    assert_eq!(t.len(), 1);
    assert!(t.reply(50 * S, &mut swap(&tcp)).is_ok(), "TCP established lives on");
    // A FIN moves it to the transitory timeout.
    let mut fin = packet(TCP, client(1), SERVER, 1000, 80, b"", 0x11);
    t.outbound(51 * S, 0, &mut fin, Some(GW_LAN)).unwrap();
    assert_eq!(t.sweep(60 * S, 1000), 0);
    assert_eq!(t.sweep(62 * S, 1000), 1);
    assert!(t.is_empty());
    assert_eq!(t.counters().expired.load(std::sync::atomic::Ordering::Relaxed), 3);
}

#[test]
fn expired_entry_is_not_used_for_a_reply_even_before_the_sweep() {
    let mut t = table(NatConfig::default());
    let mut p = packet(UDP, client(1), SERVER, 1000, 53, b"", 0);
    t.outbound(0, 0, &mut p, Some(GW_LAN)).unwrap();
    let late = Timeouts::default().udp + 1;
    assert_eq!(t.reply(late, &mut swap(&p)), Err(NatError::NoEntry));
    assert!(t.is_empty());
}

#[test]
fn full_table_refuses_new_flows_and_counts_them() {
    let mut t = table(NatConfig { capacity: 8, per_tunnel: 8, tunnels: 4, ..NatConfig::default() });
    for i in 0..8 {
        let mut p = packet(UDP, client(1), SERVER, 1000 + i, 53, b"", 0);
        t.outbound(0, 0, &mut p, Some(GW_LAN)).unwrap();
    }
    let mut p = packet(UDP, client(1), SERVER, 2000, 53, b"", 0);
    let before = p.clone();
    for _ in 0..3 {
        assert_eq!(t.outbound(0, 1, &mut p, Some(GW_LAN)), Err(NatError::TableFull));
    }
    assert_eq!(p, before, "a refused packet is not modified");
    assert_eq!(t.counters().error(NatError::TableFull), 3);
    // Existing flows keep working.
    let mut old = packet(UDP, client(1), SERVER, 1003, 53, b"", 0);
    assert!(!t.outbound(1, 0, &mut old, Some(GW_LAN)).unwrap().new_flow);
    // After the timeout a bounded sweep frees room.
    let later = Timeouts::default().udp + 10;
    assert_eq!(t.sweep(later, 4), 4, "at most the budget per call");
    assert!(t.outbound(later, 1, &mut p, Some(GW_LAN)).unwrap().new_flow);
    // The sweep goes on where it stopped and wraps around the table.
    assert_eq!(t.sweep(later, 3), 3);
    assert_eq!(t.sweep(later, 3), 1, "the last expired one, then from the start: freed, or the new flow");
    assert_eq!(t.len(), 1);
    assert_eq!(t.sweep(later, 100), 0);
    assert_eq!(t.len(), 1, "the new flow is live");
}

#[test]
fn per_tunnel_limit_and_tunnel_range() {
    let mut t = table(NatConfig { capacity: 100, per_tunnel: 2, tunnels: 4, ..NatConfig::default() });
    for i in 0..2 {
        t.outbound(0, 3, &mut packet(TCP, client(3), SERVER, 1000 + i, 80, b"", 2), Some(GW_LAN)).unwrap();
    }
    let mut p = packet(TCP, client(3), SERVER, 1005, 80, b"", 2);
    assert_eq!(t.outbound(0, 3, &mut p, Some(GW_LAN)), Err(NatError::TunnelFull));
    assert!(t.outbound(0, 2, &mut p, Some(GW_LAN)).is_ok(), "another tunnel still may");
    assert_eq!(t.outbound(0, 4, &mut p, Some(GW_LAN)), Err(NatError::BadTunnel));
    assert_eq!(t.counters().error(NatError::TunnelFull), 1);
}

#[test]
fn port_exhaustion_is_refused_not_looped() {
    // Four ports for one server:port: the fifth client flow has none.
    let mut t = table(NatConfig { port_lo: 2000, port_hi: 2003, ..NatConfig::default() });
    for i in 0..4 {
        t.outbound(0, 0, &mut packet(UDP, client(1), SERVER, 3000 + i, 53, b"", 0), Some(GW_LAN)).unwrap();
    }
    let mut p = packet(UDP, client(1), SERVER, 3010, 53, b"", 0);
    assert_eq!(t.outbound(0, 0, &mut p, Some(GW_LAN)), Err(NatError::NoPort));
    // A different destination port reuses the same NAT ports (endpoint-dependent mapping).
    let mut q = packet(UDP, client(1), SERVER, 3010, 123, b"", 0);
    let o = t.outbound(0, 0, &mut q, Some(GW_LAN)).unwrap();
    assert!((2000..=2003).contains(&o.port));
}

#[test]
fn ike_ports_of_the_gateway_are_never_nat_ports() {
    // 4499-4501: only 4499 and 4501 may be used; 4500 on the gateway address is ESP in UDP.
    let mut t = table(NatConfig { port_lo: 4499, port_hi: 4501, ..NatConfig::default() });
    let mut got = Vec::new();
    for i in 0..2 {
        got.push(
            t.outbound(0, 0, &mut packet(UDP, client(1), SERVER, 3000 + i, 53, b"", 0), Some(GW_LAN)).unwrap().port,
        );
    }
    got.sort_unstable();
    assert_eq!(got, [4499, 4501]);
    let mut p = packet(TCP, client(1), SERVER, 3005, 53, b"", 0x02);
    let o = t.outbound(0, 0, &mut p, Some(GW_LAN)).unwrap();
    assert_ne!(o.port, 4500, "TCP too");
    let mut p = packet(UDP, client(1), SERVER, 3010, 53, b"", 0);
    assert_eq!(t.outbound(0, 0, &mut p, Some(GW_LAN)), Err(NatError::NoPort));
}

#[test]
fn fragments_malformed_and_unsolicited_replies_are_refused() {
    let mut t = table(NatConfig::default());
    let mut frag = packet(UDP, client(1), SERVER, 1, 2, b"x", 0);
    frag[6] = 0x20; // more fragments
    assert_eq!(t.outbound(0, 0, &mut frag, Some(GW_LAN)), Err(NatError::Fragment));
    let mut short = packet(TCP, client(1), SERVER, 1, 2, b"", 0)[..30].to_vec();
    short[2..4].copy_from_slice(&30u16.to_be_bytes());
    assert_eq!(t.outbound(0, 0, &mut short, Some(GW_LAN)), Err(NatError::Malformed));
    let mut unreachable = packet(ICMP, client(1), SERVER, 1, 3, b"", 0);
    assert_eq!(t.outbound(0, 0, &mut unreachable, Some(GW_LAN)), Err(NatError::Unsupported));
    let mut stray = packet(TCP, SERVER, GW_LAN, 80, 1234, b"", 0x12);
    assert_eq!(t.reply(0, &mut stray), Err(NatError::NoEntry));
    assert_eq!(t.counters().error(NatError::NoEntry), 1);
}

/// The Microsoft RSS verification suite ("Verifying the RSS Hash Calculation"), IPv4 with TCP:
/// source, destination, source port, destination port under the suite's key. The same table is
/// in the Intel 82599 datasheet §7.1.2.8.3.
#[test]
fn toeplitz_matches_the_rss_verification_suite() {
    let vectors = [
        ([66, 9, 149, 187], [161, 142, 100, 80], 2794, 1766, 0x51cc_c178u32),
        ([199, 92, 111, 2], [65, 69, 140, 83], 14230, 4739, 0xc626_b0ea),
        ([24, 19, 198, 95], [12, 22, 207, 184], 12898, 38024, 0x5c2b_394a),
        ([38, 27, 205, 30], [209, 142, 163, 6], 48228, 2217, 0xafc7_327f),
        ([153, 39, 163, 191], [202, 188, 127, 2], 44251, 1303, 0x10e8_28a2),
    ];
    for (s, d, sp, dp, want) in vectors {
        let mut input = Vec::new();
        input.extend_from_slice(&s);
        input.extend_from_slice(&d);
        input.extend_from_slice(&u16::to_be_bytes(sp));
        input.extend_from_slice(&u16::to_be_bytes(dp));
        assert_eq!(RssSteer::toeplitz(&MS_KEY, &input), want);
    }
    // Addresses only ("IPv4" column of the suite).
    assert_eq!(RssSteer::toeplitz(&MS_KEY, &[66, 9, 149, 187, 161, 142, 100, 80]), 0x323e_8fc2);
}

const MS_KEY: [u8; 40] = [
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0, 0xd0, 0xca, 0x2b,
    0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac,
    0x01, 0xfa,
];

#[test]
fn steered_ports_make_replies_hash_to_the_owning_queue() {
    // Four queues, a 128-entry redirection table filled round robin (as DPDK does by default).
    let reta: Vec<u16> = (0..128).map(|i| i % 4).collect();
    for queue in 0..4u16 {
        let steer = RssSteer::new(MS_KEY, reta.clone(), queue).unwrap();
        let mut t = table(NatConfig { steer: Some(steer.clone()), ..NatConfig::default() });
        for i in 0..200u16 {
            let mut p = packet(TCP, client((i % 50) as u8), SERVER, 30000 + i, 443, b"", 2);
            let o = t.outbound(0, 0, &mut p, Some(GW_LAN)).unwrap();
            // The reply: SERVER:443 -> GW_LAN:port.
            assert_eq!(steer.queue_of(SERVER, GW_LAN, 443, o.port), queue);
        }
    }
    assert!(RssSteer::new(MS_KEY, reta, 9).is_none(), "a queue not in the table");
}

proptest! {
    /// translate → reply → swap back restores the client's packet byte for byte.
    #[test]
    fn outbound_then_reply_round_trips(
        proto in prop::sample::select(vec![TCP, UDP, ICMP]),
        c in 1u8..=254,
        sport in 1u16..,
        dport in 1u16..,
        payload in prop::collection::vec(any::<u8>(), 0..64),
        flags in prop::sample::select(vec![0x02u8, 0x10, 0x18]),
        nat in any::<[u8; 4]>(),
    ) {
        let dport = if proto == ICMP { 8 } else { dport };
        let orig = packet(proto, client(c), SERVER, sport, dport, &payload, flags);
        let mut t = table(NatConfig::default());
        let mut p = orig.clone();
        let nat = Ipv4Addr::from(nat);
        t.outbound(0, 5, &mut p, Some(nat)).unwrap();
        prop_assert!(checksums_valid(&p));
        // The flow's next packet takes the entry's stored checksum sums: the same bytes.
        let mut again = orig.clone();
        t.outbound(0, 5, &mut again, Some(nat)).unwrap();
        prop_assert_eq!(&again, &p);
        let mut r = swap(&p);
        let rep = t.reply(1, &mut r).unwrap();
        prop_assert_eq!(rep.tunnel, 5);
        prop_assert!(checksums_valid(&r));
        prop_assert_eq!(swap(&r), orig);
    }
}

/// The entry prefetch finds the entry of a known flow's packets both ways — a tunnel packet's
/// through the forward index, a reply's at its home entry, where the flow was put — and a
/// stranger's hint leads to no entry.
#[test]
fn the_entry_prefetch_finds_a_known_flows_entry_both_ways() {
    let mut t = table(NatConfig { capacity: 64, ..NatConfig::default() });
    let mut found = 0;
    for n in 0..40u16 {
        let mut a = packet(UDP, client(1), SERVER, 1000 + n, 53, b"a", 0);
        t.outbound(0, 0, &mut a, Some(GW_LAN)).unwrap();
        let mut pf = t.parse_outbound(0, &packet(UDP, client(1), SERVER, 1000 + n, 53, b"a", 0)).unwrap();
        t.prefetch_entry(&mut pf);
        let mut pr = t.parse_reply(&swap(&a)).unwrap();
        t.prefetch_entry(&mut pr);
        assert_eq!(t.reply_known(0, &pr), pr.candidate(), "flow {n}'s reply finds its entry at home");
        // Probes are bounded, so a flow far from its home slot may be missed; most are not.
        if let (Some(x), Some(y)) = (pf.candidate(), pr.candidate()) {
            assert_eq!(x, y, "both ways reach the same entry");
            found += 1;
        }
        let stranger = t.parse_reply(&swap(&packet(UDP, client(1), SERVER, 1000 + n, 54, b"a", 0))).unwrap();
        assert_eq!(t.reply_known(0, &stranger), None, "no entry for a flow the table does not have");
        let mut untouched = swap(&packet(UDP, client(1), SERVER, 1000 + n, 54, b"a", 0));
        assert_eq!(t.reply_parsed(0, &stranger, &mut untouched).map(|r| r.tunnel), Err(NatError::NoEntry));
    }
    assert!(found >= 36, "the entry prefetch found {found} of 40 flows");
}

/// NAT'd flows are put where their replies look first (the reply tuple's home entry, chosen
/// through the port), also when the table is nearly full; entries taken out of the middle of
/// the free list leave it consistent: a full table refuses, empties, and fills up again.
#[test]
fn replies_find_their_entries_at_home_up_to_a_nearly_full_table() {
    let cap = 1024u32;
    let mut t = table(NatConfig { capacity: cap, per_tunnel: cap, ..NatConfig::default() });
    let flow = |n: u32| packet(UDP, client((n / 1000) as u8 + 1), SERVER, 1024 + (n % 1000) as u16, 53, b"a", 0);
    for round in 0..2u64 {
        let now = round * 2_000 * S;
        let mut at_home = 0;
        let mut replies = Vec::new();
        for n in 0..cap {
            let mut a = flow(n);
            t.outbound(now, 0, &mut a, Some(GW_LAN)).unwrap();
            replies.push(swap(&a));
        }
        assert_eq!(t.len(), cap as usize);
        let mut extra = flow(cap + 1);
        assert_eq!(t.outbound(now, 0, &mut extra, Some(GW_LAN)).map(|_| ()), Err(NatError::TableFull));
        for (n, r) in replies.iter().enumerate() {
            let p = t.parse_reply(r).unwrap();
            let e = t.reply_known(now, &p);
            assert!(e.is_some(), "round {round}: flow {n}'s reply has its entry");
            if e == p.candidate() {
                at_home += 1;
            }
            let mut back = r.clone();
            assert_eq!(t.reply_parsed(now, &p, &mut back).map(|r| r.tunnel), Ok(0));
            assert!(checksums_valid(&back));
        }
        // The last flows pick among few free entries (64 tries each): nearly all make it.
        assert!(at_home >= cap * 95 / 100, "round {round}: {at_home} of {cap} replies found their entry at home");
        // Everything expires; the emptied table takes as many flows again.
        assert_eq!(t.sweep(now + 1_000 * S, cap as usize), cap as usize);
        assert!(t.is_empty());
    }
}

/// The entry an entry prefetch remembers is only a hint: after that flow is gone and its
/// entry reused by another, a packet of the old flow must not take the new flow's translation.
#[test]
fn a_remembered_entry_that_changed_hands_is_not_used() {
    let timeouts = Timeouts { udp: 30 * S, ..Timeouts::default() };
    let mut t = table(NatConfig { capacity: 16, timeouts, ..NatConfig::default() });
    let mut a = packet(UDP, client(1), SERVER, 1000, 53, b"a", 0);
    t.outbound(0, 0, &mut a, Some(GW_LAN)).unwrap();
    let reply_a = swap(&a);
    let mut pa = t.parse_reply(&reply_a).unwrap();
    t.prefetch_entry(&mut pa);
    let set = accept_all();
    let first_a = packet(UDP, client(1), SERVER, 1000, 53, b"a", 0);
    let mut fa = t.parse_outbound(0, &first_a).unwrap();
    t.prefetch_entry(&mut fa);

    // Flow A expires; flow B (another client, another tunnel) gets the freed entry.
    assert_eq!(t.sweep(31 * S, 1000), 1);
    let mut b = packet(UDP, client(2), SERVER, 2000, 53, b"b", 0);
    t.outbound(31 * S, 1, &mut b, Some(GW_LAN)).unwrap();
    assert_eq!(t.len(), 1);

    // A's reply, with A's remembered entry: no entry, packet untouched.
    let mut r = reply_a.clone();
    assert_eq!(t.reply_parsed(32 * S, &pa, &mut r).map(|r| r.tunnel), Err(NatError::NoEntry));
    assert_eq!(r, reply_a);
    // B's reply goes to B.
    let mut rb = swap(&b);
    let mut pb = t.parse_reply(&rb).unwrap();
    t.prefetch_entry(&mut pb);
    let got = t.reply_parsed(32 * S, &pb, &mut rb).unwrap();
    assert_eq!((got.tunnel, got.client), (1, client(2)));
    assert!(checksums_valid(&rb));

    // A's next packet, with the remembered entry now B's: a new flow of its own, not B's
    // translation.
    let mut again = first_a.clone();
    let base = FlowKey::between(0, 1, GroupMask::NONE);
    let admitted = t.admit_parsed(33 * S, &fa, &mut again, &set, &base, GW_LAN).unwrap();
    assert!(matches!(admitted, Admit::Tracked { new_flow: true, .. }), "{admitted:?}");
    assert_eq!(t.len(), 2);
    assert_ne!(ports(&again).0, ports(&b).0, "A kept clear of B's NAT port");
    assert!(checksums_valid(&again));
}

fn accept_all() -> PolicySet {
    PolicySet::compile(&[accept_all_spec()], 3, None).unwrap()
}

fn accept_all_spec() -> PolicySpec {
    PolicySpec {
        id: 1,
        src_if: IfMatch::Any,
        dst_if: IfMatch::Any,
        src: AddrSet::from_ranges([(Ipv4Addr::new(0, 0, 0, 0), Ipv4Addr::new(255, 255, 255, 255))]),
        dst: AddrSet::from_ranges([(Ipv4Addr::new(0, 0, 0, 0), Ipv4Addr::new(255, 255, 255, 255))]),
        services: predefined_service("ALL").unwrap().to_vec(),
        action: Action::Accept,
        nat: true,
        groups: GroupMask::NONE,
    }
}

/// The hop a worker caches in an entry (the session fast path) is used only for the route
/// generation it was found in, translates as the admission did, and is dropped with the
/// cached verdict when the flow is routed out of another port, whose interface the policy
/// must judge again.
#[test]
fn a_cached_hop_holds_until_the_flow_is_routed_elsewhere() {
    let mut t = table(NatConfig { capacity: 16, ..NatConfig::default() });
    let mut spec = accept_all_spec();
    spec.dst_if = IfMatch::List(vec![1]);
    let set = PolicySet::compile(&[spec], 3, None).unwrap();
    let pkt = packet(UDP, client(1), SERVER, 1000, 53, b"a", 0);
    let p = t.parse_outbound(0, &pkt).unwrap();
    let mut a = pkt.clone();
    let admitted = t.admit_parsed(S, &p, &mut a, &set, &FlowKey::between(0, 1, GroupMask::NONE), GW_LAN).unwrap();
    assert!(matches!(admitted, Admit::Tracked { new_flow: true, .. }), "{admitted:?}");
    let mut untouched = pkt.clone();
    assert_eq!(t.forward_fast(S, &p, &set, 7, &mut untouched), None, "no hop cached yet");
    assert_eq!(untouched, pkt, "a packet the fast path refuses is left as it was");
    let hop = Hop { gen: 7, port: 1, mac: [2, 0, 0, 0, 0, 9] };
    let entry = t.flow_entry(&p).unwrap();
    t.set_hop(entry, hop);
    assert_eq!(t.forward_fast(S, &p, &set, 8, &mut untouched), None, "another route generation");
    assert_eq!(t.forward_fast(S, &p, &accept_all(), 7, &mut untouched), None, "another policy set");
    assert_eq!(untouched, pkt);
    let mut b = pkt.clone();
    let (got, v) = t.forward_fast(S, &p, &set, 7, &mut b).unwrap();
    assert_eq!(got, hop);
    assert!(v.is_from(&set), "counted under the admitting verdict");
    let mut want = a.clone();
    want[8] -= 1;
    fill_checksums(&mut want);
    assert_eq!(b, want, "translated as the admitted packet was, one hop further");
    let mut same = pkt.clone();
    assert!(t.admit_known(S, &p, &mut same, &set, 1).is_some(), "same port: nothing to judge again");
    assert_eq!(same, a, "translated as the admission did");
    assert!(t.forward_fast(S, &p, &set, 7, &mut pkt.clone()).is_some(), "same port: the hop stays");
    let mut c = pkt.clone();
    assert_eq!(t.admit_known(S, &p, &mut c, &set, 2), None, "the verdict is to be given again");
    assert_eq!(c, pkt, "and nothing was translated meanwhile");
    assert_eq!(t.forward_fast(S, &p, &set, 7, &mut c), None);
    assert_eq!(c, pkt);
    let again = t.admit_parsed(S, &p, &mut c, &set, &FlowKey::between(0, 2, GroupMask::NONE), GW_LAN).unwrap();
    assert!(matches!(again, Admit::Denied(_)), "{again:?}");
    assert_eq!(t.len(), 0, "denied on its new interface: the entry is gone");
}
