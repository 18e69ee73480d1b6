//! Frame builders for tests, tools and benchmarks: Ethernet, ARP, IPv4 with UDP or ICMP echo,
//! and a client's side of an ESP tunnel (seal a frame, open a frame).
//!
//! These allocate (they return `Vec<u8>`) and are never used by the worker itself.

use core::net::{Ipv4Addr, SocketAddrV4};

use crate::buf::{HeadroomBuf, PacketBuf};
use crate::esp::{inbound, outbound, DropReason};
use crate::sa::{InboundSa, OutboundSa};
use crate::wire::ethernet::{self, ethertype, Address};
use crate::wire::{arp, checksum, ip_proto, ipv4, udp};

/// An Ethernet frame around `payload`.
pub fn ethernet(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(ethernet::HEADER_LEN + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An Ethernet ARP frame (requests are broadcast).
pub fn arp(op: arp::Operation, src_mac: [u8; 6], src_ip: Ipv4Addr, dst_mac: [u8; 6], dst_ip: Ipv4Addr) -> Vec<u8> {
    let mut p = [0u8; arp::PACKET_LEN];
    arp::Repr {
        operation: op,
        source_hardware_addr: Address(src_mac),
        source_protocol_addr: src_ip,
        target_hardware_addr: if op == arp::Operation::Request { Address::default() } else { Address(dst_mac) },
        target_protocol_addr: dst_ip,
    }
    .emit(&mut arp::Packet::new_unchecked(&mut p[..]));
    let eth_dst = if op == arp::Operation::Request { Address::BROADCAST.0 } else { dst_mac };
    ethernet(eth_dst, src_mac, ethertype::ARP, &p)
}

/// An IPv4 header (checksum filled) in front of `payload`.
pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, ttl: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; ipv4::HEADER_LEN + payload.len()];
    ipv4::Repr { src_addr: src, dst_addr: dst, next_header: proto, payload_len: payload.len(), hop_limit: ttl, tos: 0 }
        .emit(&mut ipv4::Packet::new_unchecked(&mut p[..]));
    p[ipv4::HEADER_LEN..].copy_from_slice(payload);
    p
}

/// An IPv4/UDP packet with a correct UDP checksum.
pub fn ipv4_udp(src: SocketAddrV4, dst: SocketAddrV4, ttl: u8, payload: &[u8]) -> Vec<u8> {
    let mut u = vec![0u8; udp::HEADER_LEN + payload.len()];
    udp::Repr { src_port: src.port(), dst_port: dst.port(), payload_len: payload.len() }
        .emit(&mut udp::Packet::new_unchecked(&mut u[..]));
    u[udp::HEADER_LEN..].copy_from_slice(payload);
    let pseudo = checksum::pseudo_v4(*src.ip(), *dst.ip(), ip_proto::UDP, u.len() as u16);
    let c = !checksum::combine(&[pseudo, checksum::sum(&u)]);
    u[6..8].copy_from_slice(&(if c == 0 { 0xffff } else { c }).to_be_bytes());
    ipv4(*src.ip(), *dst.ip(), ip_proto::UDP, ttl, &u)
}

/// An IPv4 ICMP echo request (RFC 792) with identifier, sequence number and data.
pub fn ipv4_echo(src: Ipv4Addr, dst: Ipv4Addr, ident: u16, seq: u16, data: &[u8]) -> Vec<u8> {
    let mut m = vec![8u8, 0, 0, 0];
    m.extend_from_slice(&ident.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(data);
    let c = !checksum::sum(&m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    ipv4(src, dst, ip_proto::ICMP, 64, &m)
}

/// Whether an IPv4 header checksum verifies and, for UDP/ICMP, the transport checksum too.
pub fn checksums_ok(ip: &[u8]) -> bool {
    let Ok(p) = ipv4::Packet::new_checked(ip) else { return false };
    if !p.verify_checksum() {
        return false;
    }
    let l4 = p.payload();
    match p.next_header() {
        ip_proto::ICMP => checksum::sum(l4) == 0xffff,
        ip_proto::UDP => {
            let stored = l4.get(6..8).map(|b| u16::from_be_bytes([b[0], b[1]]));
            stored == Some(0)
                || checksum::combine(&[
                    checksum::pseudo_v4(p.src_addr(), p.dst_addr(), ip_proto::UDP, l4.len() as u16),
                    checksum::sum(l4),
                ]) == 0xffff
        }
        _ => true,
    }
}

/// Seals an inner IP packet for `sa` and wraps it in Ethernet: what a client sends.
pub fn seal_frame(sa: &OutboundSa, dst_mac: [u8; 6], src_mac: [u8; 6], inner: &[u8]) -> Result<Vec<u8>, DropReason> {
    let mut b = HeadroomBuf::from_slice(inner);
    outbound::encap(sa, &mut b).map_err(|r| r.reason)?;
    let eth = if sa.tunnel.local.is_ipv4() { ethertype::IPV4 } else { ethertype::IPV6 };
    Ok(ethernet(dst_mac, src_mac, eth, b.data()))
}

/// Opens an ESP frame (Ethernet + outer IP) with `sa`: the inner IP packet.
pub fn open_frame(sa: &mut InboundSa, frame: &[u8]) -> Result<Vec<u8>, DropReason> {
    let ip = frame.get(ethernet::HEADER_LEN..).ok_or(DropReason::Truncated)?;
    let mut b = HeadroomBuf::from_slice(ip);
    let loc = inbound::parse(b.data())?;
    inbound::decap(sa, &mut b, &loc)?;
    Ok(b.data().to_vec())
}
