//! Inbound tunnel-mode ESP: outer IP packet in, inner IP packet out, in place.
//!
//! Two calls: `parse` locates the ESP header (directly in IP, or in UDP 4500 behind no
//! marker) and reports the SPI, so the caller can find the SA; `decap` then checks the
//! replay window, verifies and decrypts, and strips everything but the inner packet.
//!
//! The packet moves through typed stages: a `SealedEsp` exposes only what is authenticated
//! or harmless (SPI, sequence number); only `SealedEsp::open` — after the ICV verified —
//! yields an `OpenedEsp` through which the plaintext can be read.

use core::net::IpAddr;

use crate::buf::PacketBuf;
use crate::esp::replay::ReplayError;
use crate::esp::DropReason;
use crate::sa::{InboundSa, SaEvent};
use crate::wire::{be32, ip_proto, ipv4, ipv6, natt, udp};

/// Where the ESP packet sits in a buffer, and where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EspLocation {
    /// Offset of the SPI from the start of the buffer.
    pub offset: usize,
    /// Length from the SPI to the end of the ICV.
    pub len: usize,
    /// SPI.
    pub spi: u32,
    /// Sequence number as sent (low 32 bits).
    pub seq: u32,
    /// Outer source address.
    pub src: IpAddr,
    /// Outer destination address.
    pub dst: IpAddr,
    /// UDP source and destination ports when ESP came in UDP.
    pub udp_ports: Option<(u16, u16)>,
}

/// Finds the ESP packet inside an outer IPv4/IPv6 packet.
pub fn parse(pkt: &[u8]) -> Result<EspLocation, DropReason> {
    let (src, dst, proto, l4_off, l4_end) = match pkt.first().map(|b| b >> 4) {
        Some(4) => {
            let p = ipv4::Packet::new_checked(pkt).map_err(|_| DropReason::Truncated)?;
            // ESP packets are reassembled before processing (RFC 4303 §3.4.1); fragments are
            // not ours to handle on the fast path.
            if !p.verify_checksum() || p.is_fragment() {
                return Err(DropReason::BadOuterHeader);
            }
            (
                IpAddr::V4(p.src_addr()),
                IpAddr::V4(p.dst_addr()),
                p.next_header(),
                usize::from(p.header_len()),
                usize::from(p.total_len()),
            )
        }
        Some(6) => {
            let p = ipv6::Packet::new_checked(pkt).map_err(|_| DropReason::Truncated)?;
            (
                IpAddr::V6(p.src_addr()),
                IpAddr::V6(p.dst_addr()),
                p.next_header(),
                ipv6::HEADER_LEN,
                ipv6::HEADER_LEN + usize::from(p.payload_len()),
            )
        }
        Some(_) => return Err(DropReason::BadOuterHeader),
        None => return Err(DropReason::Truncated),
    };
    let l4 = &pkt[l4_off..l4_end];
    let (offset, udp_ports) = match proto {
        ip_proto::ESP => (l4_off, None),
        ip_proto::UDP => {
            let u = udp::Packet::new_checked(l4).map_err(|_| DropReason::Truncated)?;
            if u.dst_port() != natt::PORT && u.src_port() != natt::PORT {
                return Err(DropReason::NotEsp);
            }
            match natt::classify(u.payload()) {
                Ok(natt::Payload::Esp) => {}
                Ok(_) => return Err(DropReason::NotEsp),
                Err(_) => return Err(DropReason::Truncated),
            }
            (l4_off + udp::HEADER_LEN, Some((u.src_port(), u.dst_port())))
        }
        _ => return Err(DropReason::NotEsp),
    };
    let esp_end = match udp_ports {
        Some(_) => l4_off + usize::from(udp::Packet::new_unchecked(l4).len()),
        None => l4_end,
    };
    if esp_end < offset + 8 {
        return Err(DropReason::Truncated);
    }
    let spi = be32(pkt, offset);
    if spi == 0 {
        return Err(DropReason::NotEsp);
    }
    Ok(EspLocation { offset, len: esp_end - offset, spi, seq: be32(pkt, offset + 4), src, dst, udp_ports })
}

/// An ESP packet whose ICV has not been verified: only header fields are readable.
pub struct SealedEsp<'a> {
    bytes: &'a mut [u8],
    seq: u64,
}

impl<'a> SealedEsp<'a> {
    /// The full (ESN-inferred) sequence number.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Verifies the ICV and decrypts; the plaintext is reachable only through the result.
    pub fn open(self, sa: &InboundSa) -> Result<OpenedEsp<'a>, DropReason> {
        let esn_hi = sa.esn.then_some((self.seq >> 32) as u32);
        sa.transform.open(self.bytes, esn_hi).map_err(|e| match e {
            crate::esp::CryptoError::Integrity => DropReason::BadIcv,
            _ => DropReason::BadLength,
        })?;
        let alg = sa.transform.algorithm();
        let start = 8 + alg.iv_len();
        let end = self.bytes.len() - alg.icv_len();
        Ok(OpenedEsp { plain: &self.bytes[start..end], seq: self.seq })
    }
}

/// A verified, decrypted ESP payload: inner packet, padding, pad length, next header.
pub struct OpenedEsp<'a> {
    plain: &'a [u8],
    seq: u64,
}

impl OpenedEsp<'_> {
    /// Checks the trailer (RFC 4303 §2.4–2.6) and returns (inner length, next header,
    /// trailer length).
    fn trailer(&self) -> Result<(usize, u8, usize), DropReason> {
        let n = self.plain.len();
        if n < 2 {
            return Err(DropReason::BadLength);
        }
        let next_header = self.plain[n - 1];
        let pad_len = usize::from(self.plain[n - 2]);
        if pad_len + 2 > n {
            return Err(DropReason::BadPadding);
        }
        let pad = &self.plain[n - 2 - pad_len..n - 2];
        // The default padding is 1, 2, 3, …; a receiver checks it (RFC 4303 §2.4).
        if pad.iter().enumerate().any(|(i, &b)| usize::from(b) != i + 1) {
            return Err(DropReason::BadPadding);
        }
        Ok((n - 2 - pad_len, next_header, pad_len + 2))
    }
}

/// What came out of a decapsulated packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opened {
    /// Full sequence number.
    pub seq: u64,
    /// `ip_proto::IPV4` or `ip_proto::IPV6`.
    pub next_header: u8,
    /// Event for the control plane.
    pub event: Option<SaEvent>,
}

/// Decapsulates the packet located by `parse` for `sa`: `buf` then holds the inner IP
/// packet. On error the reason has been counted on the SA and `buf` must be dropped.
pub fn decap<B: PacketBuf>(sa: &mut InboundSa, buf: &mut B, loc: &EspLocation) -> Result<Opened, DropReason> {
    decap_inner(sa, buf, loc).map_err(|r| sa.counters.drop_for(r))
}

fn decap_inner<B: PacketBuf>(sa: &mut InboundSa, buf: &mut B, loc: &EspLocation) -> Result<Opened, DropReason> {
    if sa.is_dead() {
        return Err(DropReason::HardLifetime);
    }
    if loc.spi != sa.spi {
        return Err(DropReason::UnknownSpi);
    }
    let end = loc.offset.checked_add(loc.len).ok_or(DropReason::Truncated)?;
    let esp = buf.data_mut().get_mut(loc.offset..end).ok_or(DropReason::Truncated)?;
    let alg = sa.transform.algorithm();
    let body = esp.len().checked_sub(8 + alg.iv_len() + alg.icv_len()).ok_or(DropReason::Truncated)?;
    if body < 2 || body % alg.block_len() != 0 {
        return Err(DropReason::BadLength);
    }
    // Replay is checked before the expensive ICV and recorded only after it verified
    // (RFC 4303 §3.4.3).
    let seq = sa.replay.infer(loc.seq);
    sa.replay.check(seq).map_err(replay_reason)?;
    let sealed = SealedEsp { bytes: esp, seq };
    let opened = sealed.open(sa)?;
    let (inner_len, next_header, _) = opened.trailer()?;
    let seq = opened.seq;
    // Validate the inner header before committing anything.
    let inner = &opened.plain[..inner_len];
    let inner_len = match next_header {
        ip_proto::IPV4 => {
            let p = ipv4::Packet::new_checked(inner).map_err(|_| DropReason::BadInnerPacket)?;
            if p.version() != 4 {
                return Err(DropReason::BadInnerPacket);
            }
            usize::from(p.total_len())
        }
        ip_proto::IPV6 => {
            let p = ipv6::Packet::new_checked(inner).map_err(|_| DropReason::BadInnerPacket)?;
            if p.version() != 6 {
                return Err(DropReason::BadInnerPacket);
            }
            ipv6::HEADER_LEN + usize::from(p.payload_len())
        }
        ip_proto::NO_NEXT_HEADER => {
            // Dummy packets still advance the window: they were authenticated.
            sa.replay.update(seq).map_err(replay_reason)?;
            return Err(DropReason::Dummy);
        }
        _ => return Err(DropReason::BadNextHeader),
    };
    sa.replay.update(seq).map_err(replay_reason)?;
    // Strip outer headers, ESP header and IV in front; TFC padding, trailer and ICV behind.
    let front = loc.offset + 8 + alg.iv_len();
    let back = buf.len() - front - inner_len;
    if !buf.adj(front) || !buf.trim(back) {
        return Err(DropReason::Truncated);
    }
    let (packets, bytes) = sa.counters.add(inner_len);
    let event = sa.events.after(&sa.lifetime, packets, bytes);
    if event == Some(SaEvent::HardLifetime) {
        sa.mark_dead();
    }
    Ok(Opened { seq, next_header, event })
}

fn replay_reason(e: ReplayError) -> DropReason {
    match e {
        ReplayError::Replayed => DropReason::Replayed,
        ReplayError::TooOld => DropReason::TooOld,
    }
}
