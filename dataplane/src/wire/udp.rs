//! UDP headers (RFC 768).

use super::{be16, put16, Error, Result};

/// Header length.
pub const HEADER_LEN: usize = 8;

super::view!(
    /// A view of a UDP datagram.
    Packet
);

impl<T: AsRef<[u8]>> Packet<T> {
    /// Checks the header fits and the length field is between 8 and the buffer length.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error);
        }
        let l = usize::from(self.len());
        if l < HEADER_LEN || l > len {
            return Err(Error);
        }
        Ok(())
    }

    /// Source port.
    pub fn src_port(&self) -> u16 {
        be16(self.buffer.as_ref(), 0)
    }
    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        be16(self.buffer.as_ref(), 2)
    }
    /// Length field (header + payload).
    pub fn len(&self) -> u16 {
        be16(self.buffer.as_ref(), 4)
    }
    /// Whether the length field is zero (never valid).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Checksum field (0 = none, allowed over IPv4).
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), 6)
    }
    /// The payload, bounded by the length field.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..usize::from(self.len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the source port.
    pub fn set_src_port(&mut self, v: u16) {
        put16(self.buffer.as_mut(), 0, v);
    }
    /// Sets the destination port.
    pub fn set_dst_port(&mut self, v: u16) {
        put16(self.buffer.as_mut(), 2, v);
    }
    /// Sets the length field.
    pub fn set_len(&mut self, v: u16) {
        put16(self.buffer.as_mut(), 4, v);
    }
    /// Sets the checksum field.
    pub fn set_checksum(&mut self, v: u16) {
        put16(self.buffer.as_mut(), 6, v);
    }
}

/// A UDP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Payload length.
    pub payload_len: usize,
}

impl Repr {
    /// Parses a header. The checksum is not verified here: over IPv4 ESP-in-UDP it is zero
    /// (RFC 3948 §2.1), and the ESP ICV protects the payload anyway.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Repr> {
        p.check_len()?;
        Ok(Repr { src_port: p.src_port(), dst_port: p.dst_port(), payload_len: usize::from(p.len()) - HEADER_LEN })
    }

    /// Header length.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header with checksum 0.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) {
        p.set_src_port(self.src_port);
        p.set_dst_port(self.dst_port);
        p.set_len((HEADER_LEN + self.payload_len) as u16);
        p.set_checksum(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static PACKET: [u8; 12] = [0x11, 0x94, 0x11, 0x94, 0x00, 0x0c, 0x00, 0x00, 1, 2, 3, 4];

    fn repr() -> Repr {
        Repr { src_port: 4500, dst_port: 4500, payload_len: 4 }
    }

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&PACKET[..]).unwrap();
        assert_eq!((p.src_port(), p.dst_port(), p.len(), p.checksum()), (4500, 4500, 12, 0));
        assert_eq!(p.payload(), &[1, 2, 3, 4]);
    }

    #[test]
    fn construct() {
        let mut b = [0u8; 12];
        let mut p = Packet::new_unchecked(&mut b[..]);
        p.set_src_port(4500);
        p.set_dst_port(4500);
        p.set_len(12);
        p.set_checksum(0);
        b[8..].copy_from_slice(&[1, 2, 3, 4]);
        assert_eq!(b, PACKET);
    }

    #[test]
    fn check_len() {
        for n in 0..PACKET.len() {
            assert!(Packet::new_checked(&PACKET[..n]).is_err(), "length {n}");
        }
        let mut bad = PACKET;
        bad[5] = 4;
        assert!(Packet::new_checked(&bad[..]).is_err(), "length field below 8");
    }

    #[test]
    fn parse() {
        assert_eq!(Repr::parse(&Packet::new_unchecked(&PACKET[..])).unwrap(), repr());
    }

    #[test]
    fn emit() {
        let mut b = PACKET;
        b[..8].fill(0xee);
        repr().emit(&mut Packet::new_unchecked(&mut b[..]));
        assert_eq!(b, PACKET);
    }

    #[test]
    fn buffer_len() {
        assert_eq!(repr().buffer_len(), 8);
    }
}
