//! The poll-mode worker over in-memory ports (no EAL): every classification path and drop
//! reason, the command/exception/event/tx rings, two workers sharing one client's SAs, and SA
//! churn under traffic.
//!
//! Topology (port 0 = WAN, port 1 = LAN):
//! ```text
//!  client 198.51.100.7:61000 ── router 192.0.2.254 ── [0] 192.0.2.1  gateway  10.0.0.1 [1] ── host 10.0.0.5
//!  virtual address 10.212.134.200 (pool 10.212.134.0/24), ESP in UDP 4500 (RFC 3948)
//! ```

use core::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dialgate_dataplane::buf::PacketBuf;
use dialgate_dataplane::esp::{Algorithm, Backend, DropReason, Transform};
use dialgate_dataplane::port::mem::{MemBuf, MemConfig, MemIo, MemNet};
use dialgate_dataplane::ring::{Command, Event, TxRequest};
use dialgate_dataplane::route::NextHop;
use dialgate_dataplane::sa::table::{InboundEntry, SpiParts};
use dialgate_dataplane::sa::{InboundSa, Lifetime, OutboundSa, Tunnel, UdpEncap};
use dialgate_dataplane::wire::arp::Operation;
use dialgate_dataplane::wire::{ip_proto, ipv4};
use dialgate_dataplane::worker::frames;
use dialgate_dataplane::worker::{Control, Counter, Interface, Plane, PlaneConfig, Role, Worker, WorkerConfig};

const WAN: u16 = 0;
const LAN: u16 = 1;
const GW_WAN: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const ROUTER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 254);
const ROUTER_MAC: [u8; 6] = [0x02, 0xee, 0, 0, 0, 0xfe];
const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
const CLIENT_PORT: u16 = 61000;
const GW_LAN: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const HOST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 5);
const HOST_MAC: [u8; 6] = [0x02, 0xaa, 0, 0, 0, 5];
const VIP: Ipv4Addr = Ipv4Addr::new(10, 212, 134, 200);
const CLIENT_SPI: u32 = 0xc1c1_0001;

fn transform(seed: u8) -> Transform {
    let key: Vec<u8> = (0..20).map(|i| seed.wrapping_mul(17).wrapping_add(i)).collect();
    Transform::new(Algorithm::Aes128Gcm, Backend::AwsLc, &key, &[]).unwrap()
}

fn encap(local: u16, remote: u16) -> Option<UdpEncap> {
    Some(UdpEncap { local_port: local, remote_port: remote })
}

/// The client's end of one CHILD_SA pair: what it seals with and what it opens with.
struct Client {
    /// Seals towards the gateway (SPI = the gateway's inbound SPI).
    out: OutboundSa,
    /// Opens what the gateway sends (SPI = CLIENT_SPI).
    inb: InboundSa,
}

fn client(spi: u32, seed_in: u8, seed_out: u8, window: u32) -> Client {
    let t = Tunnel { local: CLIENT.into(), remote: GW_WAN.into(), encap: encap(CLIENT_PORT, 4500) };
    Client {
        out: OutboundSa::new(spi, transform(seed_in), t, false, Lifetime::default()),
        inb: InboundSa::new(CLIENT_SPI, transform(seed_out), false, window, Lifetime::default()),
    }
}

fn gw_outbound(spi: u32, seed: u8) -> OutboundSa {
    let t = Tunnel { local: GW_WAN.into(), remote: CLIENT.into(), encap: encap(4500, CLIENT_PORT) };
    OutboundSa::new(spi, transform(seed), t, false, Lifetime::default())
}

fn gw_inbound(spi: u32, seed: u8, window: u32) -> Box<InboundEntry> {
    let sa = InboundSa::new(spi, transform(seed), false, window, Lifetime::default());
    Box::new(InboundEntry::new(sa, IpAddr::V4(VIP), None))
}

fn interfaces() -> Vec<Interface> {
    vec![Interface::new(WAN, Role::Wan, GW_WAN), Interface::new(LAN, Role::Lan, GW_LAN)]
}

fn base_routes(control: &Control<MemBuf>) {
    assert_eq!(
        control.broadcast(|| Command::RouteAdd {
            prefix: Ipv4Addr::UNSPECIFIED,
            len: 0,
            hop: NextHop::Gateway { port: WAN, via: ROUTER }
        }),
        0
    );
    assert_eq!(
        control.broadcast(|| Command::RouteAdd {
            prefix: Ipv4Addr::new(10, 0, 0, 0),
            len: 24,
            hop: NextHop::Connected { port: LAN }
        }),
        0
    );
    assert_eq!(
        control.broadcast(|| Command::RouteAdd {
            prefix: Ipv4Addr::new(192, 0, 2, 0),
            len: 24,
            hop: NextHop::Connected { port: WAN }
        }),
        0
    );
    assert_eq!(control.broadcast(|| Command::NeighbourAdd { port: WAN, ip: ROUTER, mac: ROUTER_MAC }), 0);
}

struct Fx {
    net: MemNet,
    control: Control<MemBuf>,
    worker: Worker<MemIo>,
    wan_mac: [u8; 6],
    lan_mac: [u8; 6],
    spi: u32,
    client: Client,
}

/// One worker with the client's SAs installed through the command ring and the table.
fn fx() -> Fx {
    let net = MemNet::new(&MemConfig { ports: 2, queues: 1, queue_depth: 1024, buffers: 4096, buf_size: 2176 });
    let (mut control, mut links) = Plane::build::<MemBuf>(&PlaneConfig::default());
    let worker = Worker::new(links.remove(0), WorkerConfig::new(interfaces(), 0), net.io()).unwrap();
    let io = net.io();
    let (wan_mac, lan_mac) = (io_mac(&io, WAN), io_mac(&io, LAN));
    base_routes(&control);
    let spi = control.spis.allocate(0).unwrap();
    control.install_inbound(gw_inbound(spi, 1, 64)).unwrap();
    control.outbound.install_vip(VIP, gw_outbound(CLIENT_SPI, 2)).unwrap();
    let mut f = Fx { net, control, worker, wan_mac, lan_mac, spi, client: client(spi, 1, 2, 64) };
    f.pump();
    assert_eq!(f.worker.stats().get(Counter::Commands), 5);
    assert_eq!(f.worker.stats().get(Counter::CommandsFailed), 0);
    f
}

fn io_mac(io: &MemIo, port: u16) -> [u8; 6] {
    use dialgate_dataplane::port::PacketIo;
    io.mac(port).unwrap()
}

impl Fx {
    fn pump(&mut self) {
        for _ in 0..4 {
            self.worker.poll();
        }
    }

    fn inject(&self, port: u16, frame: &[u8]) {
        assert!(self.net.inject(port, 0, frame));
    }

    /// A client packet (VIP → host) sealed as ESP in UDP, as the router delivers it.
    fn esp_from_client(&self, src: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
        let inner = frames::ipv4_udp(SocketAddrV4::new(src, 5000), SocketAddrV4::new(HOST, 53), 64, payload);
        frames::seal_frame(&self.client.out, self.wan_mac, ROUTER_MAC, &inner).unwrap()
    }

    fn events(&self) -> Vec<Event> {
        std::iter::from_fn(|| self.control.events.pop()).collect()
    }

    fn drops(&self, r: DropReason) -> u64 {
        self.worker.stats().drops(r)
    }
}

#[test]
fn arp_request_for_gateway_is_answered_and_sender_learned() {
    let mut f = fx();
    let req = frames::arp(Operation::Request, HOST_MAC, HOST, [0; 6], GW_LAN);
    f.inject(LAN, &req);
    f.pump();
    let out = f.net.drain_tx(LAN, 0);
    assert_eq!(out.len(), 1);
    let want = frames::arp(Operation::Reply, f.lan_mac, GW_LAN, HOST_MAC, HOST);
    assert_eq!(out[0][..42], want[..], "reply: is-at our MAC, to the requester");
    assert_eq!(f.worker.neighbour(LAN, HOST), Some(HOST_MAC));
    assert!(f.events().iter().any(|e| matches!(e, Event::NeighbourLearned { port: LAN, ip: HOST, mac: HOST_MAC })));
    // A request for someone else's address is not ours.
    f.inject(LAN, &frames::arp(Operation::Request, HOST_MAC, HOST, [0; 6], Ipv4Addr::new(10, 0, 0, 9)));
    f.inject(LAN, &[0u8; 10]);
    f.pump();
    assert!(f.net.drain_tx(LAN, 0).is_empty());
    assert_eq!(f.drops(DropReason::Unhandled), 1);
    assert_eq!(f.drops(DropReason::Truncated), 1);
    assert_eq!(f.worker.stats().get(Counter::ArpReplies), 1);
}

#[test]
fn icmp_echo_to_gateway_is_answered_in_place() {
    let mut f = fx();
    let ping = frames::ipv4_echo(HOST, GW_LAN, 0x1234, 7, b"dialgate");
    f.inject(LAN, &frames::ethernet(f.lan_mac, HOST_MAC, 0x0800, &ping));
    f.pump();
    let out = f.net.drain_tx(LAN, 0);
    assert_eq!(out.len(), 1);
    let r = &out[0];
    assert_eq!((&r[0..6], &r[6..12]), (&HOST_MAC[..], &f.lan_mac[..]));
    let ip = ipv4::Packet::new_checked(&r[14..]).unwrap();
    assert_eq!((ip.src_addr(), ip.dst_addr()), (GW_LAN, HOST));
    assert!(frames::checksums_ok(&r[14..]), "IP and ICMP checksums");
    let icmp = ip.payload();
    assert_eq!(icmp[0], 0, "echo reply");
    assert_eq!(&icmp[4..8], &[0x12, 0x34, 0, 7], "identifier and sequence kept");
    assert_eq!(&icmp[8..], b"dialgate");
    assert_eq!(f.worker.stats().get(Counter::EchoReplies), 1);
}

#[test]
fn ike_goes_to_the_exception_ring_and_keepalives_are_events() {
    let mut f = fx();
    let ike = [0x11u8; 40];
    let peer = SocketAddrV4::new(CLIENT, 500);
    let u500 = frames::ipv4_udp(peer, SocketAddrV4::new(GW_WAN, 500), 64, &ike);
    let mut marked = vec![0u8; 4];
    marked.extend_from_slice(&ike);
    let peer_nat = SocketAddrV4::new(CLIENT, CLIENT_PORT);
    let u4500 = frames::ipv4_udp(peer_nat, SocketAddrV4::new(GW_WAN, 4500), 64, &marked);
    let ka = frames::ipv4_udp(peer_nat, SocketAddrV4::new(GW_WAN, 4500), 64, &[0xff]);
    let other = frames::ipv4_udp(peer, SocketAddrV4::new(GW_WAN, 53), 64, b"dns?");
    for p in [&u500, &u4500, &ka, &other] {
        f.inject(WAN, &frames::ethernet(f.wan_mac, ROUTER_MAC, 0x0800, p));
    }
    f.pump();
    let ex: Vec<_> = std::iter::from_fn(|| f.control.exceptions.pop()).collect();
    assert_eq!(ex.len(), 2);
    assert_eq!((ex[0].src, ex[0].dst, ex[0].port), (peer, SocketAddrV4::new(GW_WAN, 500), WAN));
    assert_eq!(ex[0].payload(), &ike[..]);
    assert_eq!((ex[1].src, ex[1].dst), (peer_nat, SocketAddrV4::new(GW_WAN, 4500)));
    assert_eq!(ex[1].payload(), &ike[..], "non-ESP marker stripped");
    assert!(f.events().iter().any(|e| matches!(e, Event::Keepalive { from } if *from == peer_nat)));
    assert_eq!(f.worker.stats().get(Counter::Keepalives), 1);
    assert_eq!(f.drops(DropReason::Unhandled), 1, "UDP 53 to the gateway");
    assert!(f.net.drain_tx(WAN, 0).is_empty() && f.net.drain_tx(LAN, 0).is_empty());
}

#[test]
fn inbound_esp_reaches_the_lan_and_replays_are_dropped() {
    let mut f = fx();
    f.control.broadcast(|| Command::NeighbourAdd { port: LAN, ip: HOST, mac: HOST_MAC });
    let first = f.esp_from_client(VIP, b"query-1");
    f.inject(WAN, &first);
    f.inject(WAN, &f.esp_from_client(VIP, b"query-2"));
    f.inject(WAN, &first);
    f.pump();
    let out = f.net.drain_tx(LAN, 0);
    assert_eq!(out.len(), 2);
    for (i, fr) in out.iter().enumerate() {
        assert_eq!((&fr[0..6], &fr[6..12]), (&HOST_MAC[..], &f.lan_mac[..]));
        let ip = ipv4::Packet::new_checked(&fr[14..]).unwrap();
        assert_eq!((ip.src_addr(), ip.dst_addr(), ip.hop_limit()), (VIP, HOST, 63), "TTL decremented");
        assert!(frames::checksums_ok(&fr[14..]));
        assert!(fr.ends_with(format!("query-{}", i + 1).as_bytes()));
    }
    assert_eq!(f.drops(DropReason::Replayed), 1);
    assert_eq!(f.worker.stats().get(Counter::Decrypted), 2);
    let from = SocketAddr::new(CLIENT.into(), CLIENT_PORT);
    let ev = f.events();
    assert!(ev.iter().any(|e| matches!(e, Event::FirstPacket { spi, from: fr } if *spi == f.spi && *fr == from)));
    assert!(!ev.iter().any(|e| matches!(e, Event::PeerMoved { .. })));
    assert_eq!(f.worker.inbound().get(f.spi).unwrap().sa.counters.packets(), 2);
    f.control.clock.set(42);
    // The client's NAT rebinds to another port: reported once.
    f.client.out = OutboundSa::with_seq(
        f.spi,
        transform(1),
        Tunnel { local: CLIENT.into(), remote: GW_WAN.into(), encap: encap(62000, 4500) },
        false,
        Lifetime::default(),
        2,
    );
    f.inject(WAN, &f.esp_from_client(VIP, b"query-3"));
    f.inject(WAN, &f.esp_from_client(VIP, b"query-4"));
    f.pump();
    assert_eq!(f.net.drain_tx(LAN, 0).len(), 2);
    let moved: Vec<_> = f.events().into_iter().filter(|e| matches!(e, Event::PeerMoved { .. })).collect();
    assert_eq!(moved.len(), 1);
    assert!(matches!(moved[0], Event::PeerMoved { from, .. } if from == SocketAddr::new(CLIENT.into(), 62000)));
    let slot = SpiParts::from_spi(f.spi).slot;
    assert_eq!(f.control.shared[0].last_seen(slot), 42, "DPD last-seen stamp");
}

#[test]
fn spoofed_inner_source_is_dropped() {
    let mut f = fx();
    f.control.broadcast(|| Command::NeighbourAdd { port: LAN, ip: HOST, mac: HOST_MAC });
    f.inject(WAN, &f.esp_from_client(Ipv4Addr::new(10, 212, 134, 201), b"not me"));
    f.inject(WAN, &f.esp_from_client(HOST, b"not me either"));
    f.inject(WAN, &f.esp_from_client(VIP, b"me"));
    f.pump();
    assert_eq!(f.drops(DropReason::Spoofed), 2);
    assert_eq!(f.net.drain_tx(LAN, 0).len(), 1);
}

#[test]
fn unknown_and_stale_spis_and_retired_entries() {
    let mut f = fx();
    f.control.broadcast(|| Command::NeighbourAdd { port: LAN, ip: HOST, mac: HOST_MAC });
    let old_spi = f.spi;
    f.control.delete_inbound(old_spi).unwrap();
    f.pump();
    let retired: Vec<_> =
        f.events().into_iter().filter_map(|e| if let Event::InboundRetired(e) = e { Some(e) } else { None }).collect();
    assert_eq!(retired.len(), 1);
    assert_eq!(retired[0].sa.spi, old_spi);
    f.inject(WAN, &f.esp_from_client(VIP, b"to a deleted SA"));
    f.pump();
    assert_eq!(f.drops(DropReason::UnknownSpi), 1);
    // Reuse the slot: the new SPI differs only in its generation.
    assert!(f.control.spis.release(old_spi));
    let new_spi = f.control.spis.allocate(0).unwrap();
    assert_eq!(SpiParts::from_spi(new_spi).slot, SpiParts::from_spi(old_spi).slot);
    f.control.install_inbound(gw_inbound(new_spi, 3, 64)).unwrap();
    f.pump();
    f.inject(WAN, &f.esp_from_client(VIP, b"stale"));
    f.client = client(new_spi, 3, 2, 64);
    f.inject(WAN, &f.esp_from_client(VIP, b"fresh"));
    // An SPI naming a worker that does not exist.
    let bogus = SpiParts { generation: 1, worker: 9, slot: 0 }.to_spi().unwrap();
    f.client.out = OutboundSa::new(bogus, transform(3), f.client.out.tunnel, false, Lifetime::default());
    f.inject(WAN, &f.esp_from_client(VIP, b"nobody"));
    f.pump();
    assert_eq!(f.drops(DropReason::StaleSpi), 1);
    assert_eq!(f.drops(DropReason::UnknownSpi), 2);
    assert_eq!(f.net.drain_tx(LAN, 0).len(), 1);
    // Installing an SPI of another worker fails and the entry comes back to be freed.
    f.control.command(0, Command::InstallInbound(gw_inbound(bogus, 4, 64))).unwrap();
    f.control.command(0, Command::DeleteInbound { spi: old_spi }).unwrap();
    f.pump();
    assert_eq!(f.worker.stats().get(Counter::CommandsFailed), 2);
    assert!(f.events().iter().any(|e| matches!(e, Event::InboundRetired(e) if e.sa.spi == bogus)));
}

#[test]
fn lan_cleartext_is_sealed_towards_the_client() {
    let mut f = fx();
    let inner = frames::ipv4_udp(SocketAddrV4::new(HOST, 53), SocketAddrV4::new(VIP, 5000), 64, b"answer");
    for _ in 0..3 {
        f.inject(LAN, &frames::ethernet(f.lan_mac, HOST_MAC, 0x0800, &inner));
    }
    f.pump();
    let out = f.net.drain_tx(WAN, 0);
    assert_eq!(out.len(), 3);
    for (i, fr) in out.iter().enumerate() {
        assert_eq!((&fr[0..6], &fr[6..12]), (&ROUTER_MAC[..], &f.wan_mac[..]), "to the default gateway");
        let ip = ipv4::Packet::new_checked(&fr[14..]).unwrap();
        assert_eq!((ip.src_addr(), ip.dst_addr(), ip.next_header()), (GW_WAN, CLIENT, ip_proto::UDP));
        assert_eq!(&fr[34..38], &[0x11, 0x94, 0xee, 0x48], "UDP 4500 -> 61000");
        assert_eq!(u32::from_be_bytes(fr[42..46].try_into().unwrap()), CLIENT_SPI);
        assert_eq!(u32::from_be_bytes(fr[46..50].try_into().unwrap()), i as u32 + 1, "sequence");
        let opened = frames::open_frame(&mut f.client.inb, fr).unwrap();
        let mut want = inner.clone();
        ipv4::Packet::new_unchecked(&mut want[..]).decrement_hop_limit();
        assert_eq!(opened, want, "inner packet with TTL - 1");
    }
    assert_eq!(f.worker.stats().get(Counter::Encrypted), 3);
    assert_eq!(f.control.outbound.inspect(f.control.outbound.slot_of(VIP).unwrap(), |s| s.packets()), Some(3));
}

#[test]
fn routed_tunnel_and_no_route_and_ttl() {
    let mut f = fx();
    // A site behind the client, reached through a route into tunnel slot 300 (after the pool).
    let slot = 300;
    f.control.outbound.install(slot, gw_outbound(CLIENT_SPI, 2)).unwrap();
    f.control.broadcast(|| Command::RouteAdd {
        prefix: Ipv4Addr::new(172, 16, 0, 0),
        len: 12,
        hop: NextHop::Tunnel { slot },
    });
    f.pump();
    let lan_mac = f.lan_mac;
    let to = |dst: Ipv4Addr, ttl: u8| {
        let p = frames::ipv4_udp(SocketAddrV4::new(HOST, 1), SocketAddrV4::new(dst, 2), ttl, b"x");
        frames::ethernet(lan_mac, HOST_MAC, 0x0800, &p)
    };
    f.inject(LAN, &to(Ipv4Addr::new(172, 20, 1, 1), 64));
    f.inject(LAN, &to(Ipv4Addr::new(10, 212, 134, 9), 64)); // pool address without an SA
    f.inject(LAN, &to(Ipv4Addr::new(8, 8, 8, 8), 64)); // default route is not a tunnel
    f.inject(LAN, &to(VIP, 1)); // TTL runs out
    f.pump();
    assert_eq!(f.net.drain_tx(WAN, 0).len(), 1);
    assert_eq!(f.drops(DropReason::NoRoute), 2);
    assert_eq!(f.worker.stats().get(Counter::TtlExpired), 1);
    // Deleting the route: no more tunnel.
    f.control.broadcast(|| Command::RouteDel { prefix: Ipv4Addr::new(172, 16, 0, 0), len: 12 });
    f.pump();
    f.inject(LAN, &to(Ipv4Addr::new(172, 20, 1, 1), 64));
    f.pump();
    assert_eq!(f.drops(DropReason::NoRoute), 3);
}

#[test]
fn wan_garbage_is_counted_by_reason() {
    let mut f = fx();
    let mut bad_sum = frames::ipv4_udp(SocketAddrV4::new(CLIENT, 500), SocketAddrV4::new(GW_WAN, 500), 64, &[1; 30]);
    bad_sum[10] ^= 0xff;
    let transit = frames::ipv4_udp(SocketAddrV4::new(CLIENT, 1), SocketAddrV4::new(HOST, 2), 64, b"let me in");
    let esp_short = frames::ipv4(CLIENT, GW_WAN, ip_proto::ESP, 64, &[0, 0, 1, 0]);
    for p in [&bad_sum, &transit, &esp_short] {
        f.inject(WAN, &frames::ethernet(f.wan_mac, ROUTER_MAC, 0x0800, p));
    }
    // Another host's unicast MAC, and an IPv6 frame.
    f.inject(WAN, &frames::ethernet([2, 9, 9, 9, 9, 9], ROUTER_MAC, 0x0800, &transit));
    f.inject(WAN, &frames::ethernet(f.wan_mac, ROUTER_MAC, 0x86dd, &[0x60; 60]));
    f.pump();
    assert_eq!(f.drops(DropReason::BadOuterHeader), 1);
    assert_eq!(f.drops(DropReason::Unhandled), 3, "cleartext from the WAN, foreign MAC, IPv6");
    assert_eq!(f.drops(DropReason::Truncated), 1);
    assert_eq!(f.worker.stats().get(Counter::Rx), 5);
    assert_eq!(f.net.free_buffers(), 4096, "every dropped buffer went back to the pool");
}

#[test]
fn unresolved_next_hop_sends_arp_then_forwards_after_the_reply() {
    let mut f = fx();
    f.inject(WAN, &f.esp_from_client(VIP, b"one"));
    f.inject(WAN, &f.esp_from_client(VIP, b"two"));
    f.pump();
    // Held for the ARP answer, not dropped.
    assert_eq!(f.drops(DropReason::NoRoute), 0);
    assert_eq!(f.worker.stats().get(Counter::NeighbourMisses), 2);
    assert_eq!(f.worker.stats().get(Counter::NeighbourHeld), 2);
    let arp = f.net.drain_tx(LAN, 0);
    assert_eq!(arp.len(), 1, "one request per neighbour per clock tick");
    assert_eq!(arp[0][..42], frames::arp(Operation::Request, f.lan_mac, GW_LAN, [0; 6], HOST)[..]);
    f.inject(LAN, &frames::arp(Operation::Reply, HOST_MAC, HOST, f.lan_mac, GW_LAN));
    f.pump();
    assert_eq!(f.worker.neighbour(LAN, HOST), Some(HOST_MAC));
    // The held packets left in order, addressed to the MAC just learned.
    let out = f.net.drain_tx(LAN, 0);
    assert_eq!(out.len(), 2);
    assert!(out[0].ends_with(b"one") && out[1].ends_with(b"two"));
    assert_eq!(&out[0][..6], &HOST_MAC);
    assert_eq!(f.worker.stats().get(Counter::NeighbourReleased), 2);
    f.inject(WAN, &f.esp_from_client(VIP, b"three"));
    f.pump();
    let out = f.net.drain_tx(LAN, 0);
    assert_eq!(out.len(), 1);
    assert!(out[0].ends_with(b"three"));
    assert_eq!(f.net.free_buffers(), 4096, "nothing left behind");
}

#[test]
fn the_hold_queue_is_bounded_and_expires() {
    let mut f = fx();
    // Four packets for one silent neighbour: three held, the fourth dropped.
    for i in 0..4u8 {
        f.inject(WAN, &f.esp_from_client(VIP, &[b'a' + i]));
    }
    f.pump();
    assert_eq!(f.worker.stats().get(Counter::NeighbourHeld), 3);
    assert_eq!(f.drops(DropReason::NoRoute), 1);
    assert_eq!(f.net.drain_tx(LAN, 0).len(), 1, "the ARP request");
    assert_eq!(f.net.free_buffers(), 4096 - 3, "three buffers held");
    // Nobody answers: after the hold time they are dropped and their buffers come back.
    f.control.clock.set(1);
    f.pump();
    f.control.clock.set(20);
    f.pump();
    f.net.drain_tx(LAN, 0);
    assert_eq!(f.drops(DropReason::NoRoute), 4);
    assert_eq!(f.net.free_buffers(), 4096);
    // An answer after that finds nothing to release.
    f.inject(LAN, &frames::arp(Operation::Reply, HOST_MAC, HOST, f.lan_mac, GW_LAN));
    f.pump();
    assert_eq!(f.net.drain_tx(LAN, 0).len(), 0);
    assert_eq!(f.worker.stats().get(Counter::NeighbourReleased), 0);
}

#[test]
fn control_plane_datagrams_get_udp_ip_ethernet_and_the_marker() {
    let mut f = fx();
    use dialgate_dataplane::port::PacketIo;
    let mut io = f.net.io();
    let send = |io: &mut MemIo, sport: u16, dport: u16| {
        let mut b = io.alloc().unwrap();
        b.append(36).unwrap().fill(0x21);
        TxRequest { src: SocketAddrV4::new(GW_WAN, sport), dst: SocketAddrV4::new(CLIENT, dport), buf: b }
    };
    f.control.tx[0].push(send(&mut io, 500, 500)).unwrap();
    f.control.tx[0].push(send(&mut io, 4500, CLIENT_PORT)).unwrap();
    f.pump();
    let out = f.net.drain_tx(WAN, 0);
    assert_eq!(out.len(), 2);
    assert_eq!(&out[0][0..6], &ROUTER_MAC);
    assert!(frames::checksums_ok(&out[0][14..]) && frames::checksums_ok(&out[1][14..]));
    assert_eq!(out[0].len(), 14 + 20 + 8 + 36);
    assert_eq!(out[1].len(), 14 + 20 + 8 + 4 + 36, "non-ESP marker on 4500");
    assert_eq!(&out[1][42..46], &[0, 0, 0, 0]);
    assert_eq!(&out[1][34..38], &[0x11, 0x94, 0xee, 0x48]);
    assert_eq!(f.worker.stats().get(Counter::ControlTx), 2);
}

#[test]
fn full_rings_are_counted_never_block() {
    let net = MemNet::new(&MemConfig { ports: 2, ..MemConfig::default() });
    let cfg = PlaneConfig { command_ring: 2, exception_ring: 1, event_ring: 1, ..PlaneConfig::default() };
    let (control, mut links) = Plane::build::<MemBuf>(&cfg);
    let mut w = Worker::new(links.remove(0), WorkerConfig::new(interfaces(), 0), net.io()).unwrap();
    let cmd = || Command::NeighbourAdd { port: LAN, ip: HOST, mac: HOST_MAC };
    assert!(control.command(0, cmd()).is_ok() && control.command(0, cmd()).is_ok());
    assert!(control.command(0, cmd()).is_err(), "full command ring gives the command back");
    assert!(control.command(5, cmd()).is_err(), "no such worker");
    let wan_mac = io_mac(&net.io(), WAN);
    let ike = frames::ipv4_udp(SocketAddrV4::new(CLIENT, 500), SocketAddrV4::new(GW_WAN, 500), 64, &[1; 28]);
    let ka = frames::ipv4_udp(SocketAddrV4::new(CLIENT, 4500), SocketAddrV4::new(GW_WAN, 4500), 64, &[0xff]);
    for p in [&ike, &ike, &ka, &ka] {
        assert!(net.inject(WAN, 0, &frames::ethernet(wan_mac, ROUTER_MAC, 0x0800, p)));
    }
    let t0 = Instant::now();
    w.poll();
    assert!(t0.elapsed() < Duration::from_secs(1));
    assert_eq!(w.stats().drops(DropReason::QueueFull), 1, "second IKE datagram: exception ring full");
    assert_eq!(w.stats().get(Counter::EventsLost), 1, "second keepalive: event ring full");
    assert_eq!(control.exceptions.len(), 1);
}

#[test]
fn two_workers_share_one_client_sa_pair() {
    const N: u32 = 1200; // inbound packets
    const DUP_EVERY: u32 = 10;
    const M: usize = 800; // outbound packets per worker
    let net = MemNet::new(&MemConfig { ports: 2, queues: 2, queue_depth: 4096, buffers: 8192, buf_size: 2176 });
    let (mut control, links) = Plane::build::<MemBuf>(&PlaneConfig { workers: 2, ..PlaneConfig::default() });
    base_routes(&control);
    control.broadcast(|| Command::NeighbourAdd { port: LAN, ip: HOST, mac: HOST_MAC });
    // The inbound SA belongs to worker 0; worker 1 receives half of its packets (as if RSS
    // put the flow on both queues) and must hand them over.
    let spi = control.spis.allocate(0).unwrap();
    control.install_inbound(gw_inbound(spi, 1, 4096)).unwrap();
    control.outbound.install_vip(VIP, gw_outbound(CLIENT_SPI, 2)).unwrap();
    let mut cl = client(spi, 1, 2, 4096);
    let wan_mac = io_mac(&net.io(), WAN);
    let lan_mac = io_mac(&net.io(), LAN);
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = links
        .into_iter()
        .enumerate()
        .map(|(q, link)| {
            let (io, stop) = (net.io(), stop.clone());
            std::thread::spawn(move || {
                let mut w = Worker::new(link, WorkerConfig::new(interfaces(), q as u16), io).unwrap();
                w.run(&stop);
                w
            })
        })
        .collect();
    // Inbound: seq 1..=N alternating between the queues, every 10th also on the other queue.
    let mut frames_in = Vec::new();
    for i in 0..N {
        let inner = frames::ipv4_udp(SocketAddrV4::new(VIP, 5000), SocketAddrV4::new(HOST, 53), 64, &i.to_be_bytes());
        frames_in.push(frames::seal_frame(&cl.out, wan_mac, ROUTER_MAC, &inner).unwrap());
    }
    // Outbound: M cleartext packets on each LAN queue.
    let cleartext: Vec<Vec<u8>> = (0..2 * M as u32)
        .map(|i| {
            let p = frames::ipv4_udp(SocketAddrV4::new(HOST, 53), SocketAddrV4::new(VIP, 5000), 64, &i.to_be_bytes());
            frames::ethernet(lan_mac, HOST_MAC, 0x0800, &p)
        })
        .collect();
    let mut lan_out = Vec::new();
    let mut wan_out = Vec::new();
    for (i, fr) in frames_in.iter().enumerate() {
        let q = (i % 2) as u16;
        while !net.inject(WAN, q, fr) {
            std::thread::yield_now();
        }
        if (i as u32).is_multiple_of(DUP_EVERY) {
            while !net.inject(WAN, 1 - q, fr) {
                std::thread::yield_now();
            }
        }
        if let Some(c) = cleartext.get(i) {
            while !net.inject(LAN, (i % 2) as u16, c) {
                std::thread::yield_now();
            }
        }
        if i % 64 == 0 {
            // Keep reordering between the queues well inside the replay window.
            lan_out.extend(net.drain_tx_all(LAN));
            wan_out.extend(net.drain_tx_all(WAN));
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    for c in cleartext.iter().skip(frames_in.len()) {
        assert!(net.inject(LAN, 0, c));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while (lan_out.len() < N as usize || wan_out.len() < 2 * M) && Instant::now() < deadline {
        lan_out.extend(net.drain_tx_all(LAN));
        wan_out.extend(net.drain_tx_all(WAN));
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(20));
    stop.store(true, Ordering::Relaxed);
    let workers: Vec<Worker<MemIo>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    lan_out.extend(net.drain_tx_all(LAN));
    wan_out.extend(net.drain_tx_all(WAN));

    // Inbound: every packet delivered exactly once, duplicates counted as replays.
    let got: BTreeSet<u32> = lan_out.iter().map(|f| u32::from_be_bytes(f[f.len() - 4..].try_into().unwrap())).collect();
    assert_eq!(
        lan_out.len(),
        N as usize,
        "drops: {:?} {:?}",
        workers[0].stats().nonzero_drops(),
        workers[1].stats().nonzero_drops()
    );
    assert_eq!(got, (0..N).collect::<BTreeSet<_>>());
    let dups = N.div_ceil(DUP_EVERY) as u64;
    assert_eq!(control.drops(DropReason::Replayed), dups);
    assert_eq!(control.drops(DropReason::TooOld), 0);
    assert!(workers[1].stats().get(Counter::HandedOff) >= u64::from(N) / 2);
    assert_eq!(workers[0].stats().get(Counter::TakenOver), workers[1].stats().get(Counter::HandedOff));
    assert_eq!(workers[1].stats().get(Counter::Decrypted), 0, "only the owner touches the replay window");
    let sa = &workers[0].inbound().get(spi).unwrap().sa;
    assert_eq!(sa.counters.packets(), u64::from(N));
    assert_eq!(sa.counters.errors(DropReason::Replayed), dups);

    // Outbound: both workers sealed with one SA; sequence numbers are unique and dense.
    assert_eq!(wan_out.len(), 2 * M);
    let seqs: BTreeSet<u32> = wan_out.iter().map(|f| u32::from_be_bytes(f[46..50].try_into().unwrap())).collect();
    assert_eq!(seqs, (1..=2 * M as u32).collect::<BTreeSet<_>>(), "no sequence number used twice");
    assert!(workers.iter().all(|w| w.stats().get(Counter::Encrypted) > 0), "both workers sealed");
    wan_out.sort_by_key(|f| u32::from_be_bytes(f[46..50].try_into().unwrap()));
    let mut payloads = BTreeSet::new();
    for f in &wan_out {
        let inner = frames::open_frame(&mut cl.inb, f).unwrap();
        payloads.insert(u32::from_be_bytes(inner[inner.len() - 4..].try_into().unwrap()));
    }
    assert_eq!(payloads.len(), 2 * M);
}

#[test]
fn sa_churn_under_traffic_never_uses_a_freed_sa() {
    const ROUNDS: u32 = 300;
    let net = MemNet::new(&MemConfig { ports: 2, queues: 1, queue_depth: 4096, buffers: 8192, buf_size: 2176 });
    let (mut control, mut links) = Plane::build::<MemBuf>(&PlaneConfig::default());
    base_routes(&control);
    control.broadcast(|| Command::NeighbourAdd { port: LAN, ip: HOST, mac: HOST_MAC });
    let (wan_mac, lan_mac) = (io_mac(&net.io(), WAN), io_mac(&net.io(), LAN));
    let stop = Arc::new(AtomicBool::new(false));
    let worker = {
        let (io, stop, link) = (net.io(), stop.clone(), links.remove(0));
        std::thread::spawn(move || {
            let mut w = Worker::new(link, WorkerConfig::new(interfaces(), 0), io).unwrap();
            w.run(&stop);
            w
        })
    };
    let clear = {
        let p = frames::ipv4_udp(SocketAddrV4::new(HOST, 53), SocketAddrV4::new(VIP, 5000), 64, b"churn");
        frames::ethernet(lan_mac, HOST_MAC, 0x0800, &p)
    };
    // LAN traffic towards the client all through the churn.
    let generator = {
        let (net, stop) = (net.clone(), stop.clone());
        std::thread::spawn(move || {
            let (mut sent, mut sealed) = (0u64, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                if net.rx_pending(LAN, 0) < 64 && net.inject(LAN, 0, &clear) {
                    sent += 1;
                } else {
                    sealed.extend(net.drain_tx(WAN, 0));
                    std::thread::yield_now();
                }
            }
            (sent, sealed)
        })
    };
    let slot = control.outbound.slot_of(VIP).unwrap();
    let mut wan_out = Vec::new();
    let mut lan_out = 0usize;
    let (mut spoofs, mut replays) = (0u64, 0u64);
    let mut spi = control.spis.allocate(0).unwrap();
    control.install_inbound(gw_inbound(spi, 0, 64)).unwrap();
    for round in 0..ROUNDS {
        // Outbound: a new SA (new SPI, new keys) replaces the old one; every 5th round the
        // slot is emptied instead.
        if round % 5 == 4 {
            control.outbound.remove(slot).unwrap();
        } else {
            control.outbound.install(slot, gw_outbound(0x5000_0000 + round, round as u8)).unwrap();
        }
        // Inbound: delete and reinstall under a new SPI (same slot, next generation).
        control.delete_inbound(spi).unwrap();
        control.spis.release(spi);
        spi = control.spis.allocate(0).unwrap();
        control.install_inbound(gw_inbound(spi, round as u8, 64)).unwrap();
        let cl = client(spi, round as u8, 0, 64);
        let good = frames::ipv4_udp(SocketAddrV4::new(VIP, 1), SocketAddrV4::new(HOST, 2), 64, b"in");
        let good = frames::seal_frame(&cl.out, wan_mac, ROUTER_MAC, &good).unwrap();
        let spoof = frames::ipv4_udp(SocketAddrV4::new(HOST, 1), SocketAddrV4::new(HOST, 2), 64, b"spoof");
        let spoof = frames::seal_frame(&cl.out, wan_mac, ROUTER_MAC, &spoof).unwrap();
        // Wait until the worker applied the reinstall so these count deterministically.
        let deadline = Instant::now() + Duration::from_secs(5);
        while control.shared[0].stats.get(Counter::Commands) < 6 + 2 * u64::from(round + 1) && Instant::now() < deadline
        {
            std::thread::yield_now();
        }
        for f in [&good, &good, &spoof] {
            assert!(net.inject(WAN, 0, f));
        }
        // The worker processes a burst before it applies the next commands, so once the rx
        // queue is empty these three have met this round's SA.
        while net.rx_pending(WAN, 0) > 0 && Instant::now() < deadline {
            std::thread::yield_now();
        }
        spoofs += 1;
        replays += 1;
        // Let every published SA seal some traffic before it is replaced.
        while round % 5 != 4
            && control.outbound.inspect(slot, |s| s.packets()).unwrap_or(0) < 4
            && Instant::now() < deadline
        {
            std::thread::yield_now();
        }
        lan_out += net.drain_tx(LAN, 0).len();
        control.outbound.reclaim();
        // Retired inbound entries come back to be freed here.
        while let Some(ev) = control.events.pop() {
            drop(ev);
        }
    }
    std::thread::sleep(Duration::from_millis(50));
    stop.store(true, Ordering::Relaxed);
    let w = worker.join().unwrap();
    let (sent, sealed) = generator.join().unwrap();
    wan_out.extend(sealed);
    wan_out.extend(net.drain_tx(WAN, 0));
    lan_out += net.drain_tx(LAN, 0).len();
    // Every sealed packet opens with the keys of the SA whose SPI it carries: a packet sealed
    // from a freed (and reused) SA would carry garbage keys or SPI.
    let mut opened = 0;
    let mut per_spi: HashMap<u32, InboundSa> = HashMap::new();
    for f in &wan_out {
        let s = u32::from_be_bytes(f[42..46].try_into().unwrap());
        assert!((0x5000_0000..0x5000_0000 + ROUNDS).contains(&s), "SPI {s:#x}");
        let round = s - 0x5000_0000;
        let inb = per_spi
            .entry(s)
            .or_insert_with(|| InboundSa::new(s, transform(round as u8), false, 4096, Lifetime::default()));
        frames::open_frame(inb, f).unwrap();
        opened += 1;
    }
    assert!(opened > 100 && sent > opened, "sealed {opened} of {sent} during the churn");
    assert_eq!(per_spi.len() as u32, ROUNDS / 5 * 4, "every published SA sealed packets");
    assert!(w.stats().drops(DropReason::NoRoute) > 0, "packets hit the emptied slot");
    assert_eq!(w.stats().drops(DropReason::Spoofed), spoofs);
    assert_eq!(w.stats().drops(DropReason::Replayed), replays);
    assert_eq!(
        lan_out as u32,
        ROUNDS,
        "one good inbound packet per round; drops {:?} decrypted {}",
        w.stats().nonzero_drops(),
        w.stats().get(Counter::Decrypted)
    );
    drop(w);
    assert_eq!(control.outbound.reclaim() + control.outbound.pending(), 0, "the offline worker held nothing back");
}

/// The buffer pool runs dry: the control plane stalls (IKE held on the exception ring) and the
/// LAN side stops taking packets (its tx queue fills). Everything that cannot get a buffer or a
/// slot is counted (refused injections, full queues), the worker never blocks, and once the
/// control plane drains and the LAN takes packets again, the same tunnel forwards as before
/// and every buffer is back in the pool.
#[test]
fn buffer_pool_exhaustion_is_counted_and_recovers() {
    const BUFFERS: usize = 48;
    let net = MemNet::new(&MemConfig { ports: 2, queues: 1, queue_depth: 16, buffers: BUFFERS, buf_size: 2176 });
    let (mut control, mut links) =
        Plane::build::<MemBuf>(&PlaneConfig { exception_ring: 32, ..PlaneConfig::default() });
    let mut w = Worker::new(links.remove(0), WorkerConfig::new(interfaces(), 0), net.io()).unwrap();
    let io = net.io();
    let wan_mac = io_mac(&io, WAN);
    base_routes(&control);
    control.broadcast(|| Command::NeighbourAdd { port: LAN, ip: HOST, mac: HOST_MAC });
    let spi = control.spis.allocate(0).unwrap();
    control.install_inbound(gw_inbound(spi, 1, 1024)).unwrap();
    control.outbound.install_vip(VIP, gw_outbound(CLIENT_SPI, 2)).unwrap();
    let cl = client(spi, 1, 2, 1024);
    for _ in 0..4 {
        w.poll();
    }
    let ike = frames::ipv4_udp(SocketAddrV4::new(CLIENT, 500), SocketAddrV4::new(GW_WAN, 500), 64, &[1; 28]);
    let ike = frames::ethernet(wan_mac, ROUTER_MAC, 0x0800, &ike);
    let esp = |i: u32| {
        let inner = frames::ipv4_udp(SocketAddrV4::new(VIP, 5000), SocketAddrV4::new(HOST, 53), 64, &i.to_be_bytes());
        frames::seal_frame(&cl.out, wan_mac, ROUTER_MAC, &inner).unwrap()
    };

    // The stall: IKE piles up on the exception ring (nobody pops it), ESP is opened and sent
    // to a LAN whose tx queue nobody drains. Inject in small rounds, as a NIC would.
    let (mut seq, mut refused) = (0u32, 0u64);
    for _ in 0..20 {
        for _ in 0..4 {
            if !net.inject(WAN, 0, &ike) {
                refused += 1;
            }
        }
        for _ in 0..4 {
            seq += 1;
            if !net.inject(WAN, 0, &esp(seq)) {
                refused += 1;
            }
        }
        let t0 = Instant::now();
        w.poll();
        assert!(t0.elapsed() < Duration::from_millis(500), "a dry pool never blocks the worker");
    }
    assert_eq!(net.free_buffers(), 0, "the pool ran dry");
    assert!(refused > 0, "injections refused for want of a buffer");
    assert_eq!(net.stats(WAN).unwrap().inject_failed.load(Ordering::Relaxed), refused);
    assert_eq!(control.exceptions.len(), 32, "the stalled control plane holds a full exception ring");
    assert!(w.stats().drops(DropReason::QueueFull) > 0, "full exception ring and LAN tx queue: counted");
    assert!(net.stats(LAN).unwrap().tx_full.load(Ordering::Relaxed) > 0);
    let opened_in_stall = w.stats().get(Counter::Decrypted);
    assert!(opened_in_stall > 0);

    // Recovery: the control plane drains its ring, the LAN takes its packets.
    while control.exceptions.pop().is_some() {}
    let delivered = net.drain_tx_all(LAN).len();
    assert!(delivered > 0);
    for _ in 0..4 {
        w.poll();
    }
    net.drain_tx_all(LAN);
    assert_eq!(net.free_buffers(), BUFFERS, "every buffer came back");
    // The same tunnel forwards again, packet for packet.
    for _ in 0..10 {
        seq += 1;
        assert!(net.inject(WAN, 0, &esp(seq)));
    }
    for _ in 0..4 {
        w.poll();
    }
    let out = net.drain_tx_all(LAN);
    let drops: Vec<String> = w.stats().nonzero_drops().iter().map(|(r, n)| format!("{}={n}", r.name())).collect();
    assert_eq!(out.len(), 10, "after the stall every packet is forwarded; drops {drops:?}");
    assert_eq!(w.stats().get(Counter::Decrypted), opened_in_stall + 10);
    assert_eq!(net.free_buffers(), BUFFERS);
}
