//! Outbound tunnel-mode ESP: inner IP packet in, outer IP packet out, in place.
//!
//! Layout produced (RFC 4303 §2, RFC 3948 §2.1):
//! `outer IP | [UDP 4500] | SPI | seq | IV | inner packet | pad 1,2,3… | pad len | next hdr | ICV`

use core::net::IpAddr;

use crate::buf::PacketBuf;
use crate::esp::DropReason;
use crate::sa::{OutboundSa, SaEvent};
use crate::wire::{checksum, ip_proto, ipv4, ipv6, put16, udp};

/// Outer TTL / hop limit for tunnel packets.
pub const OUTER_TTL: u8 = 64;

/// What happened to a packet that was sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sealed {
    /// The sequence number used.
    pub seq: u64,
    /// An event for the control plane, if this packet crossed a limit.
    pub event: Option<SaEvent>,
}

/// A packet that could not be sealed; `event` is set when the failure is news for the
/// control plane (sequence space or hard lifetime just ran out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// Why.
    pub reason: DropReason,
    /// Event to report.
    pub event: Option<SaEvent>,
}

impl From<DropReason> for Refused {
    fn from(reason: DropReason) -> Self {
        Refused { reason, event: None }
    }
}

/// Inner protocol of an IP packet, checked against its own header. Returns the ESP next
/// header value, the inner length (without link padding), and the DSCP/ECN byte.
fn inner_info(pkt: &[u8]) -> Result<(u8, usize, u8), DropReason> {
    match pkt.first().map(|b| b >> 4) {
        Some(4) => {
            let p = ipv4::Packet::new_checked(pkt).map_err(|_| DropReason::BadInnerPacket)?;
            Ok((ip_proto::IPV4, usize::from(p.total_len()), p.tos()))
        }
        Some(6) => {
            let p = ipv6::Packet::new_checked(pkt).map_err(|_| DropReason::BadInnerPacket)?;
            Ok((ip_proto::IPV6, ipv6::HEADER_LEN + usize::from(p.payload_len()), p.traffic_class()))
        }
        _ => Err(DropReason::BadInnerPacket),
    }
}

/// Encapsulates the inner IP packet in `buf` for `sa`. On error `buf` may have been changed
/// and must be dropped; the reason has been counted on the SA.
pub fn encap<B: PacketBuf>(sa: &OutboundSa, buf: &mut B) -> Result<Sealed, Refused> {
    encap_inner(sa, buf).map_err(|r| Refused { reason: sa.counters.drop_for(r.reason), event: r.event })
}

fn encap_inner<B: PacketBuf>(sa: &OutboundSa, buf: &mut B) -> Result<Sealed, Refused> {
    let alg = sa.transform.algorithm();
    if sa.tunnel.local.is_ipv4() != sa.tunnel.remote.is_ipv4() {
        return Err(DropReason::BadOuterHeader.into());
    }
    let (next_header, inner_len, tos) = inner_info(buf.data())?;
    // Link-layer padding behind the inner packet is not part of it.
    let extra = buf.len() - inner_len;
    if !buf.trim(extra) {
        return Err(DropReason::BadInnerPacket.into());
    }
    let block = alg.block_len();
    let pad_len = (block - (inner_len + 2) % block) % block;
    let iv_len = alg.iv_len();
    let icv_len = alg.icv_len();
    let esp_len = 8 + iv_len + inner_len + pad_len + 2 + icv_len;
    let udp_len = if sa.tunnel.encap.is_some() { udp::HEADER_LEN } else { 0 };
    let ip_len = match sa.tunnel.local {
        IpAddr::V4(_) => ipv4::HEADER_LEN,
        IpAddr::V6(_) => ipv6::HEADER_LEN,
    };
    let total = esp_len + udp_len + if ip_len == ipv4::HEADER_LEN { ip_len } else { 0 };
    if total > usize::from(u16::MAX) {
        return Err(DropReason::TooBig.into());
    }

    // Trailer: monotonically increasing padding (RFC 4303 §2.4), pad length, next header,
    // then room for the ICV.
    let tail = buf.append(pad_len + 2 + icv_len).ok_or(DropReason::NoTailroom)?;
    for (i, b) in tail[..pad_len].iter_mut().enumerate() {
        *b = (i + 1) as u8;
    }
    tail[pad_len] = pad_len as u8;
    tail[pad_len + 1] = next_header;
    // All headers at once, before a sequence number is taken: after this nothing can fail,
    // so every sequence number handed out is a packet sent (the packet counter is derived
    // from it instead of costing an atomic of its own).
    let esp_off = ip_len + udp_len;
    if buf.prepend(esp_off + 8 + iv_len).is_none() {
        return Err(DropReason::NoHeadroom.into());
    }

    let (seq, mut event) = sa.next_seq().map_err(|(reason, event)| Refused { reason, event })?;

    let data = buf.data_mut();
    let (outer, esp) = data.split_at_mut(esp_off);
    esp[..4].copy_from_slice(&sa.spi.to_be_bytes());
    esp[4..8].copy_from_slice(&(seq as u32).to_be_bytes());
    sa.transform.write_iv(seq, &mut esp[8..8 + iv_len]);
    let esn_hi = sa.esn.then_some((seq >> 32) as u32);
    sa.transform.seal(esp, esn_hi).map_err(|_| DropReason::BadLength)?;

    if let Some(encap) = sa.tunnel.encap {
        let repr = udp::Repr { src_port: encap.local_port, dst_port: encap.remote_port, payload_len: esp_len };
        repr.emit(&mut udp::Packet::new_unchecked(&mut outer[ip_len..]));
    }

    let l4_proto = if udp_len > 0 { ip_proto::UDP } else { ip_proto::ESP };
    let l4_len = esp_len + udp_len;
    match (sa.tunnel.local, sa.tunnel.remote) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            // RFC 4301 §5.1.2.1: the outer DSCP is copied; ECN follows RFC 6040 normal mode.
            let h = ipv4::Header {
                tos,
                total_len: (ipv4::HEADER_LEN + l4_len) as u16,
                ident: seq as u16,
                ttl: OUTER_TTL,
                proto: l4_proto,
                src,
                dst,
            };
            // `outer` holds `ip_len` = 20 bytes here.
            ipv4::write_header(outer, &h);
            // RFC 3948 §2.1: the UDP checksum is transmitted as zero over IPv4.
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            let repr = ipv6::Repr {
                src_addr: src,
                dst_addr: dst,
                next_header: l4_proto,
                payload_len: l4_len,
                hop_limit: OUTER_TTL,
                traffic_class: tos,
            };
            repr.emit(&mut ipv6::Packet::new_unchecked(&mut outer[..ip_len]));
            if udp_len > 0 {
                // IPv6 has no header checksum, so UDP's is required (RFC 8200 §8.1).
                let pseudo = checksum::pseudo_v6(src, dst, ip_proto::UDP, l4_len as u32);
                let c = !checksum::combine(&[pseudo, checksum::sum(&data[ipv6::HEADER_LEN..])]);
                put16(data, ipv6::HEADER_LEN + 6, if c == 0 { 0xffff } else { c });
            }
        }
        _ => return Err(DropReason::BadOuterHeader.into()),
    }

    let bytes = sa.counters.add_bytes(inner_len);
    let packets = seq - sa.first_seq() + 1;
    if let Some(ev) = sa.events.after(&sa.lifetime, packets, bytes) {
        if ev == SaEvent::HardLifetime {
            // This packet still goes out; the next ones are refused.
            sa.mark_dead();
        }
        event = event.or(Some(ev));
    }
    Ok(Sealed { seq, event })
}
