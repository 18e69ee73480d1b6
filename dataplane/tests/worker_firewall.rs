//! The worker's firewall and source NAT over in-memory ports (no EAL): allowed and denied flows
//! with their policy counters, two clients NAT'd to one LAN server with distinct translations
//! and replies back into the right tunnel, ICMP id translation, user groups on a tunnel,
//! a full connection table, reloads, LAN-initiated traffic, malformed packets.
//!
//! Topology (port 0 = WAN "wan1", port 1 = LAN "internal", tunnel interface "VPN-v2" = 2):
//! ```text
//!  client A 198.51.100.7  ─┐                                                      ┌─ server 10.0.0.5
//!  client B 198.51.100.8  ─┴ router 192.0.2.254 ── [0] 192.0.2.1 gw 10.0.0.1 [1] ─┘
//!  virtual addresses 10.212.134.200 (A) and .201 (B); ESP in UDP 4500
//! ```

use core::net::{IpAddr, Ipv4Addr, SocketAddrV4};

use dialgate_dataplane::esp::{Algorithm, Backend, DropReason, Transform};
use dialgate_dataplane::nat::{NatConfig, NatError};
use dialgate_dataplane::policy::{
    Action, AddrSet, GroupMask, IfIndex, IfMatch, PolicySet, PolicySpec, PortRange, ServiceEntry,
};
use dialgate_dataplane::port::mem::{MemBuf, MemConfig, MemIo, MemNet};
use dialgate_dataplane::port::PacketIo;
use dialgate_dataplane::ring::Command;
use dialgate_dataplane::route::NextHop;
use dialgate_dataplane::sa::table::{InboundEntry, TunnelTag};
use dialgate_dataplane::sa::{InboundSa, Lifetime, OutboundSa, Tunnel, UdpEncap};
use dialgate_dataplane::wire::{checksum, ip_proto, ipv4};
use dialgate_dataplane::worker::{
    frames, Control, Counter, FirewallConfig, Interface, Plane, PlaneConfig, Role, Worker, WorkerConfig,
};

const WAN: u16 = 0;
const LAN: u16 = 1;
const IF_WAN: IfIndex = 0;
const IF_LAN: IfIndex = 1;
const IF_TUN: IfIndex = 2;
const GW_WAN: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const ROUTER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 254);
const ROUTER_MAC: [u8; 6] = [0x02, 0xee, 0, 0, 0, 0xfe];
const GW_LAN: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 5);
const SERVER_MAC: [u8; 6] = [0x02, 0xaa, 0, 0, 0, 5];
const GROUP_STAFF: GroupMask = GroupMask(0b10);

fn transform(seed: u8) -> Transform {
    let key: Vec<u8> = (0..20).map(|i| seed.wrapping_mul(31).wrapping_add(i)).collect();
    Transform::new(Algorithm::Aes128Gcm, Backend::AwsLc, &key, &[]).unwrap()
}

/// One client: its outer address, virtual address and both ends of its SA pair.
struct Client {
    outer: Ipv4Addr,
    vip: Ipv4Addr,
    /// Seals towards the gateway.
    out: OutboundSa,
    /// Opens what the gateway sends.
    inb: InboundSa,
}

fn policy(id: u32, services: Vec<ServiceEntry>, nat: bool, groups: GroupMask) -> PolicySpec {
    PolicySpec {
        id,
        src_if: IfMatch::List(vec![IF_TUN]),
        dst_if: IfMatch::List(vec![IF_LAN]),
        src: AddrSet::prefix(Ipv4Addr::new(10, 212, 134, 0), 24),
        dst: AddrSet::prefix(Ipv4Addr::new(10, 0, 0, 0), 24),
        services,
        action: Action::Accept,
        nat,
        groups,
    }
}

fn udp(port: u16) -> ServiceEntry {
    ServiceEntry::Udp { dst: PortRange::one(port), src: PortRange::ANY }
}

/// Policy 1: DNS, ping and UDP 9000-9010 with NAT; policy 2: UDP 7 without NAT for the
/// `staff` group only.
fn specs() -> Vec<PolicySpec> {
    vec![
        policy(
            1,
            vec![
                udp(53),
                ServiceEntry::Icmp { icmp_type: Some(8) },
                ServiceEntry::Udp { dst: PortRange::new(9000, 9010), src: PortRange::ANY },
            ],
            true,
            GroupMask::NONE,
        ),
        policy(2, vec![udp(7)], false, GROUP_STAFF),
    ]
}

struct Fx {
    net: MemNet,
    control: Control<MemBuf>,
    worker: Worker<MemIo>,
    wan_mac: [u8; 6],
    lan_mac: [u8; 6],
    clients: Vec<Client>,
}

fn fx_with(nat: NatConfig, firewall: bool) -> Fx {
    let net = MemNet::new(&MemConfig { ports: 2, queues: 1, queue_depth: 1024, buffers: 4096, buf_size: 2176 });
    let (mut control, mut links) = Plane::build::<MemBuf>(&PlaneConfig::default());
    let ifaces = vec![Interface::new(WAN, Role::Wan, GW_WAN), Interface::new(LAN, Role::Lan, GW_LAN)];
    let mut cfg = WorkerConfig::new(ifaces, 0);
    if firewall {
        let mut fw = FirewallConfig::new(vec![(WAN, IF_WAN), (LAN, IF_LAN)]);
        fw.nat = nat;
        cfg.firewall = Some(fw);
    }
    let worker = Worker::new(links.remove(0), cfg, net.io()).unwrap();
    let io = net.io();
    let (wan_mac, lan_mac) = (io.mac(WAN).unwrap(), io.mac(LAN).unwrap());
    let routes = [
        (Ipv4Addr::UNSPECIFIED, 0, NextHop::Gateway { port: WAN, via: ROUTER }),
        (Ipv4Addr::new(10, 0, 0, 0), 24, NextHop::Connected { port: LAN }),
        (Ipv4Addr::new(192, 0, 2, 0), 24, NextHop::Connected { port: WAN }),
    ];
    for (prefix, len, hop) in routes {
        assert_eq!(control.broadcast(|| Command::RouteAdd { prefix, len, hop }), 0);
    }
    assert_eq!(control.broadcast(|| Command::NeighbourAdd { port: WAN, ip: ROUTER, mac: ROUTER_MAC }), 0);
    assert_eq!(control.broadcast(|| Command::NeighbourAdd { port: LAN, ip: SERVER, mac: SERVER_MAC }), 0);
    control.policy.store(PolicySet::compile(&specs(), 3, None).unwrap());
    let mut clients = Vec::new();
    // Client A authenticated as a member of `staff`; client B of no group.
    for (i, groups) in [(0u8, GROUP_STAFF), (1, GroupMask::NONE)] {
        let outer = Ipv4Addr::new(198, 51, 100, 7 + i);
        let vip = Ipv4Addr::new(10, 212, 134, 200 + i);
        let client_spi = 0xc1c1_0001 + u32::from(i);
        let spi = control.spis.allocate(0).unwrap();
        let encap = |l, r| Some(UdpEncap { local_port: l, remote_port: r });
        let sa = InboundSa::new(spi, transform(10 + i), false, 64, Lifetime::default());
        let tag = TunnelTag { if_index: IF_TUN, groups, conn_id: None };
        control.install_inbound(Box::new(InboundEntry::new(sa, IpAddr::V4(vip), None).with_tunnel(tag))).unwrap();
        let t = Tunnel { local: GW_WAN.into(), remote: outer.into(), encap: encap(4500, 4500) };
        let gw_out =
            OutboundSa::new(client_spi, transform(20 + i), t, false, Lifetime::default()).with_if_index(IF_TUN);
        control.outbound.install_vip(vip, gw_out).unwrap();
        let t = Tunnel { local: outer.into(), remote: GW_WAN.into(), encap: encap(4500, 4500) };
        clients.push(Client {
            outer,
            vip,
            out: OutboundSa::new(spi, transform(10 + i), t, false, Lifetime::default()),
            inb: InboundSa::new(client_spi, transform(20 + i), false, 64, Lifetime::default()),
        });
    }
    let mut f = Fx { net, control, worker, wan_mac, lan_mac, clients };
    f.pump();
    assert_eq!(f.worker.stats().get(Counter::CommandsFailed), 0);
    f
}

fn fx() -> Fx {
    fx_with(NatConfig { capacity: 1024, per_tunnel: 256, tunnels: 4096, ..NatConfig::default() }, true)
}

impl Fx {
    fn pump(&mut self) {
        for _ in 0..4 {
            self.worker.poll();
        }
    }

    /// Client `c` sends `inner` through its tunnel.
    fn send(&self, c: usize, inner: &[u8]) {
        let frame = frames::seal_frame(&self.clients[c].out, self.wan_mac, ROUTER_MAC, inner).unwrap();
        assert!(self.net.inject(WAN, 0, &frame));
    }

    fn udp_from(&self, c: usize, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let src = SocketAddrV4::new(self.clients[c].vip, sport);
        frames::ipv4_udp(src, SocketAddrV4::new(SERVER, dport), 64, payload)
    }

    /// The server sends an IP packet on the LAN.
    fn server_sends(&self, ip: &[u8]) {
        assert!(self.net.inject(LAN, 0, &frames::ethernet(self.lan_mac, SERVER_MAC, 0x0800, ip)));
    }

    /// IP packets the gateway sent onto the LAN.
    fn lan_out(&self) -> Vec<Vec<u8>> {
        self.net.drain_tx(LAN, 0).into_iter().map(|f| f[14..].to_vec()).collect()
    }

    /// Decrypts what the gateway sent on the WAN with each client's SA: (client, inner packet).
    fn wan_out(&mut self) -> Vec<(usize, Vec<u8>)> {
        let mut out = Vec::new();
        for fr in self.net.drain_tx(WAN, 0) {
            let opened: Vec<(usize, Vec<u8>)> = (0..self.clients.len())
                .filter_map(|c| frames::open_frame(&mut self.clients[c].inb, &fr).ok().map(|p| (c, p)))
                .collect();
            assert_eq!(opened.len(), 1, "exactly one client's SA opens the packet");
            let outer = ipv4::Packet::new_checked(&fr[14..]).unwrap();
            assert_eq!(outer.dst_addr(), self.clients[opened[0].0].outer, "sent to that client's address");
            out.extend(opened);
        }
        out
    }

    fn drops(&self, r: DropReason) -> u64 {
        self.worker.stats().drops(r)
    }

    fn counters(&self, id: u32) -> (u64, u64, u64) {
        let c = self.control.policy.load().counters(id).unwrap();
        (c.packets, c.hits, c.bytes)
    }
}

fn ports(ip: &[u8]) -> (u16, u16) {
    let p = ipv4::Packet::new_checked(ip).unwrap();
    let l4 = p.payload();
    (u16::from_be_bytes([l4[0], l4[1]]), u16::from_be_bytes([l4[2], l4[3]]))
}

fn addrs(ip: &[u8]) -> (Ipv4Addr, Ipv4Addr) {
    let p = ipv4::Packet::new_checked(ip).unwrap();
    (p.src_addr(), p.dst_addr())
}

/// The server's answer to `q` (as it arrived on the LAN): addresses and ports swapped.
fn udp_answer(q: &[u8], payload: &[u8]) -> Vec<u8> {
    let (src, dst) = addrs(q);
    let (sport, dport) = ports(q);
    frames::ipv4_udp(SocketAddrV4::new(dst, dport), SocketAddrV4::new(src, sport), 64, payload)
}

/// An ICMP echo reply (RFC 792 type 0) to the echo request `q`.
fn echo_answer(q: &[u8]) -> Vec<u8> {
    let (src, dst) = addrs(q);
    let p = ipv4::Packet::new_checked(q).unwrap();
    let mut m = p.payload().to_vec();
    m[0] = 0;
    m[2..4].fill(0);
    let c = !checksum::sum(&m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    frames::ipv4(dst, src, ip_proto::ICMP, 64, &m)
}

#[test]
fn allowed_flow_is_translated_and_counted() {
    let mut f = fx();
    let q = f.udp_from(0, 5000, 53, b"query");
    f.send(0, &q);
    f.pump();
    let out = f.lan_out();
    assert_eq!(out.len(), 1);
    let p = &out[0];
    assert_eq!(addrs(p), (GW_LAN, SERVER), "source NAT to the LAN port's address");
    assert_eq!(ports(p).1, 53);
    assert!(frames::checksums_ok(p), "IP and UDP checksums after translation");
    assert!(p.ends_with(b"query"));
    let (packets, hits, bytes) = f.counters(1);
    assert_eq!((packets, hits), (1, 1));
    assert_eq!(bytes, q.len() as u64);
    let nat = f.worker.conn_table().unwrap();
    assert_eq!(nat.len(), 1);
    // A second packet of the flow keeps the translation and is not a new hit.
    f.send(0, &f.udp_from(0, 5000, 53, b"again"));
    f.pump();
    let again = f.lan_out();
    assert_eq!(ports(&again[0]), ports(p));
    assert_eq!(f.counters(1).0, 2);
    assert_eq!(f.counters(1).1, 1);
}

#[test]
fn denied_flow_is_dropped_and_counted() {
    let mut f = fx();
    f.send(0, &f.udp_from(0, 5000, 4444, b"nope"));
    f.send(1, &f.udp_from(1, 5000, 7, b"not staff"));
    f.pump();
    assert!(f.lan_out().is_empty());
    assert_eq!(f.drops(DropReason::PolicyDenied), 2);
    let (packets, hits, _) = f.counters(0);
    assert_eq!((packets, hits), (2, 2), "the implicit deny counts both");
    assert_eq!(f.worker.conn_table().unwrap().len(), 0, "no entry for a denied flow");
    assert_eq!(f.worker.stats().get(Counter::Decrypted), 2, "decrypted, then denied");
}

#[test]
fn user_group_policy_without_nat_admits_members_only() {
    let mut f = fx();
    f.send(0, &f.udp_from(0, 6000, 7, b"staff echo"));
    f.pump();
    let out = f.lan_out();
    assert_eq!(out.len(), 1);
    assert_eq!(addrs(&out[0]), (f.clients[0].vip, SERVER), "policy 2 has no NAT");
    assert_eq!(ports(&out[0]), (6000, 7));
    assert_eq!(f.counters(2).0, 1);
    // The reply to the tracked (untranslated) flow goes back through the tunnel.
    f.server_sends(&udp_answer(&out[0], b"staff echo"));
    f.pump();
    let back = f.wan_out();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].0, 0);
    assert_eq!(addrs(&back[0].1), (SERVER, f.clients[0].vip));
    assert_eq!(f.counters(2).0, 2, "the reply counts under the same policy");
}

#[test]
fn two_clients_to_one_server_keep_distinct_translations_and_replies_find_their_tunnel() {
    let mut f = fx();
    // Both clients use the same source port towards the same server and port.
    for c in 0..2 {
        let q = f.udp_from(c, 40000, 9000, format!("hello from {c}").as_bytes());
        f.send(c, &q);
    }
    f.pump();
    let out = f.lan_out();
    assert_eq!(out.len(), 2);
    assert!(out.iter().all(|p| addrs(p) == (GW_LAN, SERVER)));
    let (pa, pb) = (ports(&out[0]).0, ports(&out[1]).0);
    assert_ne!(pa, pb, "distinct NAT ports");
    assert_eq!(f.worker.conn_table().unwrap().len(), 2);
    // The server answers each; the answers go into the tunnel of the client that asked.
    for p in out.iter().rev() {
        let who = if p.ends_with(b"hello from 0") { "0" } else { "1" };
        f.server_sends(&udp_answer(p, format!("answer for {who}").as_bytes()));
    }
    f.pump();
    let back = f.wan_out();
    assert_eq!(back.len(), 2);
    for (c, inner) in &back {
        assert_eq!(addrs(inner), (SERVER, f.clients[*c].vip), "destination translated back");
        assert_eq!(ports(inner), (9000, 40000), "client's own port restored");
        assert!(frames::checksums_ok(inner));
        assert!(inner.ends_with(format!("answer for {c}").as_bytes()), "client {c} got its own answer");
    }
    assert_eq!(f.counters(1).0, 4);
    assert_eq!(f.counters(1).1, 2);
}

/// A NAT reply is forwarded, so its IPv4 header checksum is the client's to check, as for any
/// forwarded packet; the translation must not turn a wrong sum into a right one. What the
/// gateway takes in itself from the LAN (an echo request) is still checked.
#[test]
fn a_reply_with_a_bad_header_checksum_reaches_the_client_still_bad() {
    let mut f = fx();
    f.send(0, &f.udp_from(0, 5000, 53, b"query"));
    f.pump();
    let out = f.lan_out();
    assert_eq!(out.len(), 1);
    let mut answer = udp_answer(&out[0], b"answer");
    answer[10] ^= 0x11;
    f.server_sends(&answer);
    f.pump();
    let back = f.wan_out();
    assert_eq!(back.len(), 1, "forwarded like any reply");
    let inner = &back[0].1;
    assert_eq!(addrs(inner), (SERVER, f.clients[0].vip), "translated back");
    assert!(!ipv4::Packet::new_checked(&inner[..]).unwrap().verify_checksum(), "still fails at the client");
    assert!(inner.ends_with(b"answer"));

    let mut ping = frames::ipv4(SERVER, GW_LAN, ip_proto::ICMP, 64, &[8, 0, 0xf7, 0xff, 0, 0, 0, 0]);
    ping[10] ^= 0x11;
    f.server_sends(&ping);
    f.pump();
    assert!(f.lan_out().is_empty(), "no echo reply to a bad header");
    assert_eq!(f.drops(DropReason::BadOuterHeader), 1);
}

#[test]
fn icmp_echo_ids_are_translated_per_client() {
    let mut f = fx();
    for c in 0..2 {
        f.send(c, &frames::ipv4_echo(f.clients[c].vip, SERVER, 0x0101, 1, b"ping"));
    }
    f.pump();
    let out = f.lan_out();
    assert_eq!(out.len(), 2);
    let id = |p: &[u8]| {
        let ip = ipv4::Packet::new_checked(p).unwrap();
        u16::from_be_bytes([ip.payload()[4], ip.payload()[5]])
    };
    assert_ne!(id(&out[0]), id(&out[1]), "distinct echo ids on the LAN");
    assert!(out.iter().all(|p| frames::checksums_ok(p) && addrs(p).0 == GW_LAN));
    for p in &out {
        f.server_sends(&echo_answer(p));
    }
    f.pump();
    let back = f.wan_out();
    assert_eq!(back.len(), 2);
    let mut seen = [false; 2];
    for (c, inner) in &back {
        assert_eq!(addrs(inner).1, f.clients[*c].vip);
        assert_eq!(id(inner), 0x0101, "the client's own id restored");
        assert!(frames::checksums_ok(inner));
        seen[*c] = true;
    }
    assert_eq!(seen, [true, true]);
}

#[test]
fn a_full_table_refuses_new_flows_and_keeps_forwarding_known_ones() {
    let mut f = fx_with(NatConfig { capacity: 2, per_tunnel: 2, tunnels: 4096, ..NatConfig::default() }, true);
    for sport in [1000, 1001, 1002, 1003] {
        f.send(0, &f.udp_from(0, sport, 53, b"q"));
    }
    f.pump();
    assert_eq!(f.lan_out().len(), 2);
    assert_eq!(f.drops(DropReason::NatRefused), 2);
    let nat = f.worker.conn_table().unwrap().counters();
    assert_eq!(nat.error(NatError::TableFull), 2);
    // Existing flows still pass; the worker keeps polling.
    f.send(0, &f.udp_from(0, 1000, 53, b"q2"));
    f.pump();
    assert_eq!(f.lan_out().len(), 1);
    assert_eq!(f.drops(DropReason::NatRefused), 2);
}

#[test]
fn per_tunnel_limit_leaves_room_for_other_tunnels() {
    let mut f = fx_with(NatConfig { capacity: 16, per_tunnel: 1, tunnels: 4096, ..NatConfig::default() }, true);
    f.send(0, &f.udp_from(0, 1000, 53, b"q"));
    f.send(0, &f.udp_from(0, 1001, 53, b"q"));
    f.send(1, &f.udp_from(1, 1000, 53, b"q"));
    f.pump();
    assert_eq!(f.lan_out().len(), 2);
    assert_eq!(f.drops(DropReason::NatRefused), 1);
    assert_eq!(f.worker.conn_table().unwrap().counters().error(NatError::TunnelFull), 1);
}

#[test]
fn reload_keeps_allowed_flows_and_cuts_denied_ones() {
    let mut f = fx();
    f.send(0, &f.udp_from(0, 5000, 53, b"dns"));
    f.send(0, &f.udp_from(0, 5001, 9000, b"app"));
    f.pump();
    let first = f.lan_out();
    assert_eq!(first.len(), 2);
    let old = f.control.policy.load();
    // New set: DNS only.
    let mut s = specs();
    s[0].services = vec![udp(53)];
    f.control.policy.store(PolicySet::compile(&s, 3, Some(&old)).unwrap());
    drop(old);
    f.send(0, &f.udp_from(0, 5000, 53, b"dns2"));
    f.send(0, &f.udp_from(0, 5001, 9000, b"app2"));
    f.pump();
    let out = f.lan_out();
    assert_eq!(out.len(), 1, "only DNS passes after the reload");
    assert_eq!(ports(&out[0]), ports(&first[0]), "the DNS flow keeps its translation");
    assert_eq!(f.drops(DropReason::PolicyDenied), 1);
    assert_eq!(f.counters(1).0, 3, "counters carried over the reload");
    // The cut flow's entry is gone: its reply no longer passes.
    f.server_sends(&udp_answer(&first[1], b"late"));
    f.pump();
    assert!(f.wan_out().is_empty());
    assert_eq!(f.drops(DropReason::Unhandled), 1);
    assert_eq!(f.control.policy.reclaim(), 0, "the worker let go of the old set");
}

#[test]
fn lan_initiated_traffic_needs_its_own_policy() {
    let mut f = fx();
    let to_client =
        frames::ipv4_udp(SocketAddrV4::new(SERVER, 2000), SocketAddrV4::new(f.clients[1].vip, 3000), 64, b"hi");
    f.server_sends(&to_client);
    f.pump();
    assert!(f.wan_out().is_empty());
    assert_eq!(f.drops(DropReason::PolicyDenied), 1);
    let mut s = specs();
    s.push(PolicySpec {
        id: 10,
        src_if: IfMatch::List(vec![IF_LAN]),
        dst_if: IfMatch::List(vec![IF_TUN]),
        src: AddrSet::all(),
        dst: AddrSet::all(),
        services: vec![ServiceEntry::Any],
        action: Action::Accept,
        nat: false,
        groups: GroupMask::NONE,
    });
    let old = f.control.policy.load();
    f.control.policy.store(PolicySet::compile(&s, 3, Some(&old)).unwrap());
    f.server_sends(&to_client);
    f.pump();
    let back = f.wan_out();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].0, 1);
    assert_eq!(f.counters(10).0, 1);
}

#[test]
fn malformed_and_unknown_traffic_is_counted_not_fatal() {
    let mut f = fx();
    // A UDP header cut short inside a valid IPv4 packet.
    let short = frames::ipv4(f.clients[0].vip, SERVER, ip_proto::UDP, 64, &[0x13, 0x88, 0]);
    f.send(0, &short);
    // GRE is not tracked: accepted without NAT by nothing here, so denied.
    f.send(0, &frames::ipv4(f.clients[0].vip, SERVER, 47, 64, &[0; 8]));
    // Traffic to the gateway's LAN address that matches no entry.
    f.server_sends(&frames::ipv4_udp(SocketAddrV4::new(SERVER, 53), SocketAddrV4::new(GW_LAN, 1234), 64, b"x"));
    f.pump();
    assert!(f.lan_out().is_empty() && f.wan_out().is_empty());
    assert_eq!(f.drops(DropReason::BadInnerPacket), 1);
    assert_eq!(f.drops(DropReason::PolicyDenied), 1);
    assert_eq!(f.drops(DropReason::Unhandled), 1);
    // Still forwarding.
    f.send(0, &f.udp_from(0, 5000, 53, b"ok"));
    f.pump();
    assert_eq!(f.lan_out().len(), 1);
}

#[test]
fn without_a_firewall_config_nothing_is_filtered_or_translated() {
    let mut f = fx_with(NatConfig::default(), false);
    f.send(0, &f.udp_from(0, 5000, 4444, b"anything"));
    f.server_sends(&frames::ipv4_udp(SocketAddrV4::new(SERVER, 53), SocketAddrV4::new(GW_LAN, 1234), 64, b"x"));
    f.pump();
    let out = f.lan_out();
    assert_eq!(out.len(), 1);
    assert_eq!(addrs(&out[0]).0, f.clients[0].vip, "no NAT");
    assert!(f.worker.conn_table().is_none());
    assert_eq!(f.drops(DropReason::Unhandled), 1, "traffic to the gateway stays unhandled");
    assert_eq!(f.drops(DropReason::PolicyDenied), 0);
}

#[test]
fn many_flows_in_full_bursts_keep_order_and_distinct_translations() {
    let mut f = fx();
    // 96 packets: three full bursts through the firewall stage, alternating clients.
    for i in 0..96u16 {
        let c = usize::from(i % 2);
        let q = f.udp_from(c, 20000 + i / 2, 9005, format!("{c}:{i}").as_bytes());
        f.send(c, &q);
    }
    for _ in 0..8 {
        f.worker.poll();
    }
    let out = f.lan_out();
    assert_eq!(out.len(), 96);
    for (i, p) in out.iter().enumerate() {
        assert!(p.ends_with(format!("{}:{i}", i % 2).as_bytes()), "packet {i} in order");
        assert!(frames::checksums_ok(p));
    }
    let nat_ports: std::collections::HashSet<u16> = out.iter().map(|p| ports(p).0).collect();
    assert_eq!(nat_ports.len(), 96, "one translation per flow");
    assert_eq!(f.worker.conn_table().unwrap().len(), 96);
    // All 96 replies come back, each to its own client.
    for p in &out {
        f.server_sends(&udp_answer(p, b"r"));
    }
    for _ in 0..8 {
        f.worker.poll();
    }
    let back = f.wan_out();
    assert_eq!(back.len(), 96);
    let mut got = [std::collections::BTreeSet::new(), std::collections::BTreeSet::new()];
    for (c, inner) in &back {
        assert_eq!(addrs(inner).1, f.clients[*c].vip);
        got[*c].insert(ports(inner).1);
    }
    let want: std::collections::BTreeSet<u16> = (20000..20048).collect();
    assert_eq!(got, [want.clone(), want], "each client gets the replies of its own 48 flows");
}

#[test]
fn idle_entries_expire_and_their_replies_stop() {
    let mut f = fx();
    f.send(0, &f.udp_from(0, 5000, 53, b"q"));
    f.pump();
    let out = f.lan_out();
    assert_eq!(f.worker.conn_table().unwrap().len(), 1);
    // Busy or idle, nothing expires before the UDP timeout (180 s; one tick is 1 s).
    f.control.clock.set(100);
    for _ in 0..64 {
        f.worker.poll();
    }
    assert_eq!(f.worker.conn_table().unwrap().len(), 1);
    // Past it, idle polls sweep the table (1 024 slots, 32 a sweep).
    f.control.clock.set(200);
    for _ in 0..40 {
        f.worker.poll();
    }
    assert_eq!(f.worker.conn_table().unwrap().len(), 0, "swept");
    assert_eq!(f.worker.conn_table().unwrap().counters().expired.load(std::sync::atomic::Ordering::Relaxed), 1);
    f.server_sends(&udp_answer(&out[0], b"too late"));
    f.pump();
    assert!(f.wan_out().is_empty());
    assert_eq!(f.drops(DropReason::Unhandled), 1);
}

/// A new flow whose packets follow each other in one burst: the first makes the entry after
/// the later ones were parked (their prefetch found nothing), and they must still find it —
/// one entry, one hit, one translation — in order, with the replies in one burst too.
#[test]
fn a_new_flow_repeated_within_one_burst_gets_one_entry() {
    let mut f = fx();
    // 40 packets: flow A (port 7000) at every fifth, new flows between; 32 fill one park.
    let mut sent = Vec::new();
    for i in 0..40u16 {
        let sport = if i % 5 == 0 { 7000 } else { 7100 + i };
        let q = f.udp_from(0, sport, 9005, format!("#{i}").as_bytes());
        f.send(0, &q);
        sent.push(sport);
    }
    for _ in 0..6 {
        f.worker.poll();
    }
    let out = f.lan_out();
    assert_eq!(out.len(), 40);
    for (i, p) in out.iter().enumerate() {
        assert!(p.ends_with(format!("#{i}").as_bytes()), "packet {i} in order");
        assert!(frames::checksums_ok(p));
    }
    let a: std::collections::HashSet<u16> =
        out.iter().zip(&sent).filter(|(_, &s)| s == 7000).map(|(p, _)| ports(p).0).collect();
    assert_eq!(a.len(), 1, "flow A has one translation across its 8 packets");
    let flows = 1 + 32;
    assert_eq!(f.worker.conn_table().unwrap().len(), flows);
    let (packets, hits, _) = f.counters(1);
    assert_eq!((packets, hits), (40, flows as u64), "a hit per flow, a packet per packet");
    // Eight answers to A in one burst: all back to the client, to port 7000.
    let a_out = out.iter().zip(&sent).find(|(_, &s)| s == 7000).map(|(p, _)| p.clone()).unwrap();
    for k in 0..8u8 {
        f.server_sends(&udp_answer(&a_out, &[b'r', k]));
    }
    f.pump();
    let back = f.wan_out();
    assert_eq!(back.len(), 8);
    for (k, (c, inner)) in back.iter().enumerate() {
        assert_eq!(*c, 0);
        assert_eq!(ports(inner).1, 7000);
        assert!(inner.ends_with(&[b'r', k as u8]), "reply {k} in order");
        assert!(frames::checksums_ok(inner));
    }
}

/// Outbound packets and replies the session fast path took.
fn fast_paths(f: &Fx) -> (u64, u64) {
    let c = f.worker.conn_table().unwrap().counters();
    let o = std::sync::atomic::Ordering::Relaxed;
    (c.fast.load(o), c.fast_replies.load(o))
}

fn fast(f: &Fx) -> u64 {
    fast_paths(f).0
}

/// The session fast path: once a flow's first packet has been routed, its entry caches the
/// egress port and next hop's MAC, and later packets skip routing and the neighbour table.
/// They must leave exactly as the routed one did (TTL, translation, checksums, MACs).
#[test]
fn a_known_flow_leaves_on_its_cached_hop_exactly_as_routed() {
    let mut f = fx();
    let q = f.udp_from(0, 5000, 53, b"same");
    f.send(0, &q);
    f.pump();
    let routed = f.net.drain_tx(LAN, 0);
    assert_eq!(routed.len(), 1);
    assert_eq!(fast(&f), 0, "the first packet is routed");
    f.send(0, &q);
    f.pump();
    let cached = f.net.drain_tx(LAN, 0);
    assert_eq!(fast(&f), 1, "the second takes the cached hop");
    assert_eq!(cached, routed, "byte for byte the same frame");
    let p = &cached[0][14..];
    assert_eq!(&cached[0][0..6], &SERVER_MAC);
    assert_eq!(&cached[0][6..12], &f.lan_mac);
    assert_eq!(ipv4::Packet::new_checked(p).unwrap().hop_limit(), 63, "TTL decremented once");
    assert!(frames::checksums_ok(p));
    assert_eq!(f.counters(1).0, 2, "counted under its policy either way");
    // A packet of the flow whose TTL runs out is not forwarded on the cached hop.
    let last = frames::ipv4_udp(SocketAddrV4::new(f.clients[0].vip, 5000), SocketAddrV4::new(SERVER, 53), 1, b"ttl");
    f.send(0, &last);
    f.pump();
    assert!(f.lan_out().is_empty());
    assert_eq!(f.worker.stats().get(Counter::TtlExpired), 1);
    assert_eq!(fast(&f), 1);
    // A tracked flow without NAT (policy 2, client A is staff): the same, untranslated.
    let echo = f.udp_from(0, 6000, 7, b"plain");
    f.send(0, &echo);
    f.pump();
    let routed = f.net.drain_tx(LAN, 0);
    f.send(0, &echo);
    f.pump();
    let cached = f.net.drain_tx(LAN, 0);
    assert_eq!(fast(&f), 2);
    assert_eq!(cached, routed);
    let p = &cached[0][14..];
    assert_eq!(addrs(p), (f.clients[0].vip, SERVER), "not translated");
    assert_eq!(ipv4::Packet::new_checked(p).unwrap().hop_limit(), 63);
    assert!(frames::checksums_ok(p));
}

/// A neighbour's new MAC or a route change reaches flows whose hop is cached: the next packet
/// is routed again, and uses what changed.
#[test]
fn a_cached_hop_gives_way_to_a_new_neighbour_mac_and_to_a_route_change() {
    let mut f = fx();
    let q = f.udp_from(0, 5000, 53, b"q");
    for _ in 0..2 {
        f.send(0, &q);
        f.pump();
    }
    assert_eq!(fast(&f), 1);
    assert_eq!(f.net.drain_tx(LAN, 0).len(), 2);
    // The server moved to another MAC (a gratuitous ARP, or the control plane says so).
    let moved = [0x02, 0xaa, 0, 0, 0, 0x55];
    assert_eq!(f.control.broadcast(|| Command::NeighbourAdd { port: LAN, ip: SERVER, mac: moved }), 0);
    f.pump();
    for _ in 0..2 {
        f.send(0, &q);
        f.pump();
    }
    let out = f.net.drain_tx(LAN, 0);
    assert_eq!(out.len(), 2);
    assert!(out.iter().all(|fr| fr[0..6] == moved), "both to the new MAC");
    assert_eq!(fast(&f), 2, "routed once after the change, then cached again");
    // The same MAC again is no change: the cached hop stays.
    assert_eq!(f.control.broadcast(|| Command::NeighbourAdd { port: LAN, ip: SERVER, mac: moved }), 0);
    f.pump();
    f.send(0, &q);
    f.pump();
    assert_eq!(fast(&f), 3);
    // The LAN route is withdrawn: what is left (the default route) leads to the WAN, where
    // decrypted traffic may not go; the flow's packets stop instead of leaving on the old hop.
    let del = || Command::RouteDel { prefix: Ipv4Addr::new(10, 0, 0, 0), len: 24 };
    assert_eq!(f.control.broadcast(del), 0);
    f.pump();
    f.net.drain_tx(LAN, 0);
    f.send(0, &q);
    f.pump();
    assert!(f.lan_out().is_empty());
    assert_eq!(f.drops(DropReason::NoRoute), 1);
    assert_eq!(fast(&f), 3);
}

/// A known flow's reply goes from the park straight into its client's tunnel (the entry names
/// the client): it arrives as the full way delivers one — translated back, TTL down by one,
/// checksums right — and counts under the flow's policy. One whose TTL runs out does not.
#[test]
fn a_reply_of_a_known_flow_is_sealed_from_the_park_like_a_routed_one() {
    let mut f = fx();
    let q = f.udp_from(0, 5000, 53, b"q");
    f.send(0, &q);
    f.pump();
    let out = f.lan_out();
    let answer = udp_answer(&out[0], b"answer");
    f.server_sends(&answer);
    f.server_sends(&answer);
    f.pump();
    let back = f.wan_out();
    assert_eq!(back.len(), 2);
    assert_eq!(fast_paths(&f).1, 2);
    assert_eq!(back[0], back[1]);
    let (c, inner) = &back[0];
    assert_eq!(*c, 0);
    assert_eq!(addrs(inner), (SERVER, f.clients[0].vip));
    assert_eq!(ports(inner), (53, 5000));
    assert_eq!(ipv4::Packet::new_checked(&inner[..]).unwrap().hop_limit(), 63);
    assert!(frames::checksums_ok(inner));
    assert!(inner.ends_with(b"answer"));
    assert_eq!(f.counters(1).0, 3, "the query and both replies");
    // TTL 1: the full way, which drops it as expired.
    let dying = {
        let (src, dst) = addrs(&out[0]);
        let (sport, dport) = ports(&out[0]);
        frames::ipv4_udp(SocketAddrV4::new(dst, dport), SocketAddrV4::new(src, sport), 1, b"late")
    };
    f.server_sends(&dying);
    f.pump();
    assert!(f.wan_out().is_empty());
    assert_eq!(f.worker.stats().get(Counter::TtlExpired), 1);
    assert_eq!(fast_paths(&f).1, 2);
}
