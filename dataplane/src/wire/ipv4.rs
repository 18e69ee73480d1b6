//! IPv4 headers (RFC 791). Options are skipped over, never interpreted.

use super::checksum;
use super::{be16, put16, Error, Result};
use core::net::Ipv4Addr;

/// Minimum header length.
pub const HEADER_LEN: usize = 20;

super::view!(
    /// A view of an IPv4 packet.
    Packet
);

/// The fields of a header [`write_header`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// DSCP and ECN.
    pub tos: u8,
    /// Total length in bytes.
    pub total_len: u16,
    /// Identification.
    pub ident: u16,
    /// Time to live.
    pub ttl: u8,
    /// Protocol of the payload.
    pub proto: u8,
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
}

/// Writes a 20-byte header (no options, DF clear, not a fragment) with its checksum into the
/// start of `buf`; `false` if `buf` is shorter.
///
/// The checksum is summed from the fields, not read back from the buffer: every sealed packet
/// gets one of these, and reading the header with wide loads right after writing it field by
/// field stalled store forwarding on each of them.
#[inline]
pub fn write_header(buf: &mut [u8], h: &Header) -> bool {
    let Some(out) = buf.first_chunk_mut::<HEADER_LEN>() else { return false };
    let (src, dst) = (u32::from(h.src), u32::from(h.dst));
    let ttl_proto = (u32::from(h.ttl) << 8) | u32::from(h.proto);
    let sum = 0x4500
        + u32::from(h.tos)
        + u32::from(h.total_len)
        + u32::from(h.ident)
        + ttl_proto
        + (src >> 16)
        + (src & 0xffff)
        + (dst >> 16)
        + (dst & 0xffff);
    let check = !checksum::fold(sum);
    let w0 = (0x45u64 << 56) | (u64::from(h.tos) << 48) | (u64::from(h.total_len) << 32) | (u64::from(h.ident) << 16);
    let w1 = (u64::from(ttl_proto) << 48) | (u64::from(check) << 32) | u64::from(src);
    out[..8].copy_from_slice(&w0.to_be_bytes());
    out[8..16].copy_from_slice(&w1.to_be_bytes());
    out[16..].copy_from_slice(&dst.to_be_bytes());
    true
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Checks that the header and the total length fit the buffer and agree with each other.
    /// The buffer may be longer than the total length (Ethernet padding).
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error);
        }
        let hl = usize::from(self.header_len());
        let tl = usize::from(self.total_len());
        if hl < HEADER_LEN || hl > len || tl < hl || tl > len {
            return Err(Error);
        }
        Ok(())
    }

    /// Version field (4 for a valid packet).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[0] >> 4
    }
    /// Header length in bytes.
    pub fn header_len(&self) -> u8 {
        (self.buffer.as_ref()[0] & 0x0f) * 4
    }
    /// DSCP and ECN byte.
    pub fn tos(&self) -> u8 {
        self.buffer.as_ref()[1]
    }
    /// Total length in bytes.
    pub fn total_len(&self) -> u16 {
        be16(self.buffer.as_ref(), 2)
    }
    /// Identification.
    pub fn ident(&self) -> u16 {
        be16(self.buffer.as_ref(), 4)
    }
    /// Don't-fragment flag.
    pub fn dont_frag(&self) -> bool {
        self.buffer.as_ref()[6] & 0x40 != 0
    }
    /// More-fragments flag.
    pub fn more_frags(&self) -> bool {
        self.buffer.as_ref()[6] & 0x20 != 0
    }
    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> u16 {
        (be16(self.buffer.as_ref(), 6) & 0x1fff) * 8
    }
    /// Time to live.
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[8]
    }
    /// Protocol of the payload.
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[9]
    }
    /// Header checksum.
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), 10)
    }
    /// Source address.
    pub fn src_addr(&self) -> Ipv4Addr {
        let b = self.buffer.as_ref();
        Ipv4Addr::new(b[12], b[13], b[14], b[15])
    }
    /// Destination address.
    pub fn dst_addr(&self) -> Ipv4Addr {
        let b = self.buffer.as_ref();
        Ipv4Addr::new(b[16], b[17], b[18], b[19])
    }
    /// Whether the header checksum verifies.
    pub fn verify_checksum(&self) -> bool {
        checksum::sum(&self.buffer.as_ref()[..usize::from(self.header_len())]) == 0xffff
    }
    /// Whether this is a fragment (offset or more-fragments set).
    pub fn is_fragment(&self) -> bool {
        self.more_frags() || self.frag_offset() != 0
    }
    /// The payload, bounded by the total length.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[usize::from(self.header_len())..usize::from(self.total_len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets version 4 and the header length.
    pub fn set_version_and_header_len(&mut self, header_len: u8) {
        self.buffer.as_mut()[0] = 0x40 | (header_len / 4);
    }
    /// Sets the DSCP/ECN byte.
    pub fn set_tos(&mut self, v: u8) {
        self.buffer.as_mut()[1] = v;
    }
    /// Sets the total length.
    pub fn set_total_len(&mut self, v: u16) {
        put16(self.buffer.as_mut(), 2, v);
    }
    /// Sets the identification.
    pub fn set_ident(&mut self, v: u16) {
        put16(self.buffer.as_mut(), 4, v);
    }
    /// Sets flags and offset: only don't-fragment, never a fragment.
    pub fn set_dont_frag(&mut self, df: bool) {
        put16(self.buffer.as_mut(), 6, if df { 0x4000 } else { 0 });
    }
    /// Sets the time to live.
    pub fn set_hop_limit(&mut self, v: u8) {
        self.buffer.as_mut()[8] = v;
    }
    /// Sets the protocol.
    pub fn set_next_header(&mut self, v: u8) {
        self.buffer.as_mut()[9] = v;
    }
    /// Sets the source address.
    pub fn set_src_addr(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[12..16].copy_from_slice(&a.octets());
    }
    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[16..20].copy_from_slice(&a.octets());
    }
    /// Recomputes the header checksum.
    pub fn fill_checksum(&mut self) {
        put16(self.buffer.as_mut(), 10, 0);
        let hl = usize::from(self.header_len());
        let c = !checksum::sum(&self.buffer.as_ref()[..hl]);
        put16(self.buffer.as_mut(), 10, c);
    }
    /// Decrements the TTL and patches the checksum incrementally (RFC 1624).
    pub fn decrement_hop_limit(&mut self) {
        let b = self.buffer.as_mut();
        let old = u16::from_be_bytes([b[8], b[9]]);
        b[8] = b[8].wrapping_sub(1);
        let new = u16::from_be_bytes([b[8], b[9]]);
        let c = be16(b, 10);
        let sum = checksum::combine(&[!c, !old, new]);
        put16(b, 10, !sum);
    }
    /// The payload, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (h, t) = (usize::from(self.header_len()), usize::from(self.total_len()));
        &mut self.buffer.as_mut()[h..t]
    }
}

/// The fields of an IPv4 header that dialgate sets or reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// Source address.
    pub src_addr: Ipv4Addr,
    /// Destination address.
    pub dst_addr: Ipv4Addr,
    /// Protocol of the payload.
    pub next_header: u8,
    /// Payload length (total length minus the header).
    pub payload_len: usize,
    /// Time to live.
    pub hop_limit: u8,
    /// DSCP/ECN byte.
    pub tos: u8,
}

impl Repr {
    /// Parses a header: version 4, lengths consistent, checksum correct.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Repr> {
        p.check_len()?;
        if p.version() != 4 || !p.verify_checksum() {
            return Err(Error);
        }
        Ok(Repr {
            src_addr: p.src_addr(),
            dst_addr: p.dst_addr(),
            next_header: p.next_header(),
            payload_len: usize::from(p.total_len() - u16::from(p.header_len())),
            hop_limit: p.hop_limit(),
            tos: p.tos(),
        })
    }

    /// Header length (no options are emitted).
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes a 20-byte header with identification 0 and a correct checksum. The caller
    /// guarantees `payload_len + 20` fits in 16 bits.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) {
        p.set_version_and_header_len(HEADER_LEN as u8);
        p.set_tos(self.tos);
        p.set_total_len((HEADER_LEN + self.payload_len) as u16);
        p.set_ident(0);
        p.set_dont_frag(false);
        p.set_hop_limit(self.hop_limit);
        p.set_next_header(self.next_header);
        p.set_src_addr(self.src_addr);
        p.set_dst_addr(self.dst_addr);
        p.fill_checksum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A UDP packet 10.0.0.1 → 10.0.0.2, 4 payload bytes, checksum 0x66d3.
    static PACKET: [u8; 24] = [
        0x45, 0x00, 0x00, 0x18, 0x00, 0x00, 0x00, 0x00, 0x40, 0x11, 0x66, 0xd3, 10, 0, 0, 1, 10, 0, 0, 2, 0xaa, 0xbb,
        0xcc, 0xdd,
    ];

    #[test]
    fn written_header_matches_the_known_packet_and_its_field_by_field_twin() {
        let h = Header {
            tos: 0,
            total_len: 24,
            ident: 0,
            ttl: 64,
            proto: 0x11,
            src: Ipv4Addr::new(10, 0, 0, 1),
            dst: Ipv4Addr::new(10, 0, 0, 2),
        };
        let mut b = [0u8; 20];
        assert!(write_header(&mut b, &h));
        assert_eq!(b[..], PACKET[..20], "the RFC 791 layout and checksum");
        assert!(!write_header(&mut [0u8; 19], &h), "too short a buffer is refused");
        // Fields that carry into every byte of the sum, against the setters + fill_checksum.
        for (tos, ident, ttl, src, dst) in [
            (0xb8, 0xffff, 255, Ipv4Addr::new(255, 255, 255, 255), Ipv4Addr::new(255, 255, 255, 254)),
            (0x02, 0x1234, 1, Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(198, 51, 100, 7)),
        ] {
            let h = Header { tos, total_len: 1500, ident, ttl, proto: 50, src, dst };
            let mut a = [0u8; 20];
            assert!(write_header(&mut a, &h));
            let mut twin = [0u8; 20];
            let mut p = Packet::new_unchecked(&mut twin[..]);
            p.set_version_and_header_len(20);
            p.set_tos(tos);
            p.set_total_len(1500);
            p.set_ident(ident);
            p.set_dont_frag(false);
            p.set_hop_limit(ttl);
            p.set_next_header(50);
            p.set_src_addr(src);
            p.set_dst_addr(dst);
            p.fill_checksum();
            assert_eq!(a, twin);
            assert!(Packet::new_unchecked(&a[..]).verify_checksum());
        }
    }

    fn repr() -> Repr {
        Repr {
            src_addr: Ipv4Addr::new(10, 0, 0, 1),
            dst_addr: Ipv4Addr::new(10, 0, 0, 2),
            next_header: 17,
            payload_len: 4,
            hop_limit: 64,
            tos: 0,
        }
    }

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&PACKET[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.total_len(), 24);
        assert_eq!(p.next_header(), 17);
        assert!(p.verify_checksum());
        assert_eq!(p.payload(), &[0xaa, 0xbb, 0xcc, 0xdd]);
        assert!(!p.is_fragment());
    }

    #[test]
    fn construct() {
        let mut buf = [0u8; 24];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_version_and_header_len(20);
        p.set_total_len(24);
        p.set_hop_limit(64);
        p.set_next_header(17);
        p.set_src_addr(Ipv4Addr::new(10, 0, 0, 1));
        p.set_dst_addr(Ipv4Addr::new(10, 0, 0, 2));
        p.fill_checksum();
        p.payload_mut().copy_from_slice(&[0xaa, 0xbb, 0xcc, 0xdd]);
        assert_eq!(buf, PACKET);
    }

    #[test]
    fn check_len() {
        for n in 0..PACKET.len() {
            assert!(Packet::new_checked(&PACKET[..n]).is_err(), "length {n}");
        }
        let mut bad = PACKET;
        bad[0] = 0x44; // header length 16 < 20
        assert!(Packet::new_checked(&bad[..]).is_err());
        let mut bad = PACKET;
        bad[3] = 0x10; // total length 16 < header length
        assert!(Packet::new_checked(&bad[..]).is_err());
    }

    #[test]
    fn parse() {
        assert_eq!(Repr::parse(&Packet::new_unchecked(&PACKET[..])).unwrap(), repr());
        let mut bad = PACKET;
        bad[11] ^= 1;
        assert!(Repr::parse(&Packet::new_unchecked(&bad[..])).is_err(), "bad checksum");
        let mut bad = PACKET;
        bad[0] = 0x65;
        assert!(Repr::parse(&Packet::new_unchecked(&bad[..])).is_err(), "version 6");
    }

    #[test]
    fn emit() {
        let mut buf = PACKET;
        buf[..20].fill(0);
        repr().emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf, PACKET);
    }

    #[test]
    fn buffer_len() {
        assert_eq!(repr().buffer_len(), 20);
    }

    #[test]
    fn ttl_decrement_keeps_checksum_valid() {
        let mut buf = PACKET;
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.decrement_hop_limit();
        assert_eq!(p.hop_limit(), 63);
        assert!(p.verify_checksum());
    }
}
