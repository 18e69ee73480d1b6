//! Frame classification: one pure function from an Ethernet frame and the interface it came
//! in on to what the worker does with it.
//!
//! Rules, in order: frames for another unicast MAC are not ours; ARP goes to the worker's ARP
//! handler; IPv4 for one of the interface's addresses is ICMP echo, IKE (UDP 500, or UDP 4500
//! with the non-ESP marker, RFC 3948 §2.2), a NAT-T keepalive (UDP 4500, one 0xFF byte,
//! RFC 3948 §2.3), or ESP (IP protocol 50, or UDP 4500 with a non-zero SPI); IPv4 for other
//! addresses arriving on a LAN port is cleartext to encrypt; TCP, UDP and ICMP echo replies
//! for the gateway's address arriving on a LAN port may be replies to source-NAT'd flows;
//! everything else is dropped with a reason. The IPv4 header checksum is checked for what the
//! gateway takes in itself (ESP, IKE, keepalives, echo), not for what it forwards (cleartext
//! and NAT replies: the receiver checks those, and translation keeps a wrong sum wrong).

use core::net::{Ipv4Addr, SocketAddrV4};

use arrayvec::ArrayVec;

use crate::esp::DropReason;
use crate::wire::ethernet::{self, ethertype};
use crate::wire::{ip_proto, ipv4, natt, udp};

/// Which side of the gateway a port faces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The Internet side: clients' ESP and IKE arrive here.
    Wan,
    /// The protected side: cleartext to and from clients' tunnels.
    Lan,
}

/// A port as the worker sees it: its role and the gateway's addresses on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// DPDK port id.
    pub port: u16,
    /// Which side it faces.
    pub role: Role,
    /// The gateway's IPv4 addresses on this link (ARP is answered for these).
    pub addrs: ArrayVec<Ipv4Addr, 4>,
}

impl Interface {
    /// An interface with one address.
    pub fn new(port: u16, role: Role, addr: Ipv4Addr) -> Interface {
        let mut addrs = ArrayVec::new();
        addrs.push(addr);
        Interface { port, role, addrs }
    }

    /// Whether `a` is one of the gateway's addresses on this link.
    #[inline]
    pub fn owns(&self, a: Ipv4Addr) -> bool {
        self.addrs.contains(&a)
    }
}

/// What to do with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// An ARP packet.
    Arp,
    /// An ICMP echo request to the gateway.
    Echo,
    /// An IKE message: hand it to the control plane.
    Ike {
        /// The peer.
        src: SocketAddrV4,
        /// Our address and port.
        dst: SocketAddrV4,
        /// Offset of the IKE header in the frame.
        offset: usize,
    },
    /// A NAT-T keepalive.
    Keepalive {
        /// The peer.
        src: SocketAddrV4,
    },
    /// ESP or ESP in UDP for the gateway.
    Esp,
    /// Cleartext from a LAN port to somewhere else: encrypt towards a tunnel.
    Outbound,
    /// TCP, UDP (not IKE) or an ICMP echo reply from a LAN port to the gateway's own address:
    /// a reply to a source-NAT'd flow when the firewall is on, dropped otherwise.
    ToGateway,
    /// Dropped, and why.
    Drop(DropReason),
}

/// Classifies `frame`, received on `iface` whose MAC is `mac`.
#[inline]
pub fn classify(frame: &[u8], iface: &Interface, mac: [u8; 6]) -> Class {
    let Ok(eth) = ethernet::Frame::new_checked(frame) else { return Class::Drop(DropReason::Truncated) };
    let dst = eth.dst_addr();
    if dst.0 != mac && !dst.is_multicast() {
        return Class::Drop(DropReason::Unhandled);
    }
    match eth.ethertype() {
        ethertype::ARP => return Class::Arp,
        ethertype::IPV4 => {}
        _ => return Class::Drop(DropReason::Unhandled),
    }
    let l3 = &frame[ethernet::HEADER_LEN..];
    let Ok(ip) = ipv4::Packet::new_checked(l3) else { return Class::Drop(DropReason::Truncated) };
    if ip.version() != 4 {
        return Class::Drop(DropReason::BadOuterHeader);
    }
    let dst_ip = ip.dst_addr();
    if !iface.owns(dst_ip) {
        // Only the protected side may send cleartext through the gateway; the checks of the
        // inner header happen on the outbound path.
        return match iface.role {
            Role::Lan if !dst.is_multicast() => Class::Outbound,
            _ => Class::Drop(DropReason::Unhandled),
        };
    }
    if ip.is_fragment() {
        return Class::Drop(DropReason::BadOuterHeader);
    }
    let hl = usize::from(ip.header_len());
    let l4_off = ethernet::HEADER_LEN + hl;
    let l4 = &l3[hl..usize::from(ip.total_len())];
    let class = match ip.next_header() {
        ip_proto::ESP => Class::Esp,
        ip_proto::ICMP => match l4 {
            // Type 8 code 0 (RFC 792), with at least the 8-byte header.
            [8, 0, _, _, _, _, _, _, ..] => Class::Echo,
            // An echo reply: to a NAT'd ping when it comes from the LAN.
            [0, 0, _, _, _, _, _, _, ..] => return lan_only(iface),
            _ => Class::Drop(DropReason::Unhandled),
        },
        // NAT replies leave here, before the work only the gateway's own traffic needs.
        ip_proto::TCP => return lan_only(iface),
        ip_proto::UDP => {
            let Ok(u) = udp::Packet::new_checked(l4) else { return Class::Drop(DropReason::Truncated) };
            let port = u.dst_port();
            if port != natt::IKE_PORT && port != natt::PORT {
                return lan_only(iface);
            }
            let src = SocketAddrV4::new(ip.src_addr(), u.src_port());
            let dst = SocketAddrV4::new(dst_ip, port);
            let payload_off = l4_off + udp::HEADER_LEN;
            if port == natt::IKE_PORT {
                Class::Ike { src, dst, offset: payload_off }
            } else {
                match natt::classify(u.payload()) {
                    Ok(natt::Payload::Esp) => Class::Esp,
                    Ok(natt::Payload::Ike) => Class::Ike { src, dst, offset: payload_off + natt::NON_ESP_MARKER_LEN },
                    Ok(natt::Payload::Keepalive) => Class::Keepalive { src },
                    Err(_) => Class::Drop(DropReason::Truncated),
                }
            }
        }
        _ => Class::Drop(DropReason::Unhandled),
    };
    // What the gateway takes in itself has its header checksum checked here. A NAT reply is
    // forwarded, like `Outbound` traffic, whose header checksum is the receiver's to check:
    // its translation adjusts the checksum (RFC 1624), so a wrong one stays wrong.
    match class {
        Class::ToGateway | Class::Drop(_) => class,
        _ if ip.verify_checksum() => class,
        _ => Class::Drop(DropReason::BadOuterHeader),
    }
}

/// Traffic to the gateway's address that only a LAN port may send (NAT replies).
#[inline]
fn lan_only(iface: &Interface) -> Class {
    match iface.role {
        Role::Lan => Class::ToGateway,
        Role::Wan => Class::Drop(DropReason::Unhandled),
    }
}
