//! IPv6 fixed headers (RFC 8200). Extension headers are not walked: dialgate's outer
//! packets carry ESP or UDP directly, and inner packets are forwarded as they are.

use super::{be16, be32, put16, put32, Error, Result};
use core::net::Ipv6Addr;

/// Fixed header length.
pub const HEADER_LEN: usize = 40;

super::view!(
    /// A view of an IPv6 packet.
    Packet
);

impl<T: AsRef<[u8]>> Packet<T> {
    /// Checks the fixed header and the payload length fit the buffer.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN || HEADER_LEN + usize::from(self.payload_len()) > len {
            return Err(Error);
        }
        Ok(())
    }

    /// Version field (6 for a valid packet).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[0] >> 4
    }
    /// Traffic class.
    pub fn traffic_class(&self) -> u8 {
        ((be16(self.buffer.as_ref(), 0) >> 4) & 0xff) as u8
    }
    /// Flow label.
    pub fn flow_label(&self) -> u32 {
        be32(self.buffer.as_ref(), 0) & 0x000f_ffff
    }
    /// Payload length.
    pub fn payload_len(&self) -> u16 {
        be16(self.buffer.as_ref(), 4)
    }
    /// Next header.
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[6]
    }
    /// Hop limit.
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[7]
    }
    /// Source address.
    pub fn src_addr(&self) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buffer.as_ref()[8..24]);
        Ipv6Addr::from(a)
    }
    /// Destination address.
    pub fn dst_addr(&self) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buffer.as_ref()[24..40]);
        Ipv6Addr::from(a)
    }
    /// The payload, bounded by the payload length.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..HEADER_LEN + usize::from(self.payload_len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets version 6, traffic class and flow label.
    pub fn set_version_class_flow(&mut self, class: u8, flow: u32) {
        put32(self.buffer.as_mut(), 0, (6 << 28) | (u32::from(class) << 20) | (flow & 0xf_ffff));
    }
    /// Sets the payload length.
    pub fn set_payload_len(&mut self, v: u16) {
        put16(self.buffer.as_mut(), 4, v);
    }
    /// Sets the next header.
    pub fn set_next_header(&mut self, v: u8) {
        self.buffer.as_mut()[6] = v;
    }
    /// Sets the hop limit.
    pub fn set_hop_limit(&mut self, v: u8) {
        self.buffer.as_mut()[7] = v;
    }
    /// Sets the source address.
    pub fn set_src_addr(&mut self, a: Ipv6Addr) {
        self.buffer.as_mut()[8..24].copy_from_slice(&a.octets());
    }
    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, a: Ipv6Addr) {
        self.buffer.as_mut()[24..40].copy_from_slice(&a.octets());
    }
    /// The payload, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let n = usize::from(self.payload_len());
        &mut self.buffer.as_mut()[HEADER_LEN..HEADER_LEN + n]
    }
}

/// The fields of an IPv6 fixed header that dialgate sets or reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// Source address.
    pub src_addr: Ipv6Addr,
    /// Destination address.
    pub dst_addr: Ipv6Addr,
    /// Next header.
    pub next_header: u8,
    /// Payload length.
    pub payload_len: usize,
    /// Hop limit.
    pub hop_limit: u8,
    /// Traffic class.
    pub traffic_class: u8,
}

impl Repr {
    /// Parses a fixed header with version 6.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Repr> {
        p.check_len()?;
        if p.version() != 6 {
            return Err(Error);
        }
        Ok(Repr {
            src_addr: p.src_addr(),
            dst_addr: p.dst_addr(),
            next_header: p.next_header(),
            payload_len: usize::from(p.payload_len()),
            hop_limit: p.hop_limit(),
            traffic_class: p.traffic_class(),
        })
    }

    /// Header length.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the fixed header (flow label 0).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) {
        p.set_version_class_flow(self.traffic_class, 0);
        p.set_payload_len(self.payload_len as u16);
        p.set_next_header(self.next_header);
        p.set_hop_limit(self.hop_limit);
        p.set_src_addr(self.src_addr);
        p.set_dst_addr(self.dst_addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet() -> [u8; 44] {
        let mut b = [0u8; 44];
        b[0] = 0x60;
        b[1] = 0x20; // traffic class 0x02
        b[5] = 4;
        b[6] = 17;
        b[7] = 64;
        b[8] = 0xfe;
        b[9] = 0x80;
        b[23] = 1;
        b[24] = 0xfe;
        b[25] = 0x80;
        b[39] = 2;
        b[40..44].copy_from_slice(&[0xaa, 0xbb, 0xcc, 0xdd]);
        b
    }

    fn repr() -> Repr {
        Repr {
            src_addr: "fe80::1".parse().unwrap(),
            dst_addr: "fe80::2".parse().unwrap(),
            next_header: 17,
            payload_len: 4,
            hop_limit: 64,
            traffic_class: 2,
        }
    }

    #[test]
    fn deconstruct() {
        let b = packet();
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.version(), 6);
        assert_eq!(p.traffic_class(), 2);
        assert_eq!(p.flow_label(), 0);
        assert_eq!(p.payload(), &[0xaa, 0xbb, 0xcc, 0xdd]);
        assert_eq!(p.dst_addr(), "fe80::2".parse::<Ipv6Addr>().unwrap());
    }

    #[test]
    fn construct() {
        let mut b = [0u8; 44];
        let mut p = Packet::new_unchecked(&mut b[..]);
        p.set_version_class_flow(2, 0);
        p.set_payload_len(4);
        p.set_next_header(17);
        p.set_hop_limit(64);
        p.set_src_addr("fe80::1".parse().unwrap());
        p.set_dst_addr("fe80::2".parse().unwrap());
        p.payload_mut().copy_from_slice(&[0xaa, 0xbb, 0xcc, 0xdd]);
        assert_eq!(b, packet());
    }

    #[test]
    fn check_len() {
        let b = packet();
        for n in 0..b.len() {
            assert!(Packet::new_checked(&b[..n]).is_err(), "length {n}");
        }
    }

    #[test]
    fn parse() {
        let b = packet();
        assert_eq!(Repr::parse(&Packet::new_unchecked(&b[..])).unwrap(), repr());
        let mut bad = packet();
        bad[0] = 0x40;
        assert!(Repr::parse(&Packet::new_unchecked(&bad[..])).is_err());
    }

    #[test]
    fn emit() {
        let mut b = packet();
        b[..40].fill(0);
        repr().emit(&mut Packet::new_unchecked(&mut b[..]));
        assert_eq!(b, packet());
    }

    #[test]
    fn buffer_len() {
        assert_eq!(repr().buffer_len(), 40);
    }
}
