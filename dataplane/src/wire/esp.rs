//! ESP headers (RFC 4303 §2): SPI and sequence number. The IV, payload, trailer and ICV
//! layout depends on the transform and is handled by `crate::esp`.

use super::{be32, put32, Error, Result};

/// Header length (SPI + sequence number).
pub const HEADER_LEN: usize = 8;

super::view!(
    /// A view of an ESP packet.
    Packet
);

impl<T: AsRef<[u8]>> Packet<T> {
    /// Checks the header fits.
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Error)
        } else {
            Ok(())
        }
    }

    /// Security Parameters Index.
    pub fn spi(&self) -> u32 {
        be32(self.buffer.as_ref(), 0)
    }
    /// Sequence number (low 32 bits when ESN is in use).
    pub fn seq(&self) -> u32 {
        be32(self.buffer.as_ref(), 4)
    }
    /// Everything after the header: IV, ciphertext, trailer, ICV.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the SPI.
    pub fn set_spi(&mut self, v: u32) {
        put32(self.buffer.as_mut(), 0, v);
    }
    /// Sets the sequence number.
    pub fn set_seq(&mut self, v: u32) {
        put32(self.buffer.as_mut(), 4, v);
    }
    /// Everything after the header, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
}

/// An ESP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// SPI, never 0 (RFC 4303 §2.1 reserves it; RFC 3948 uses a zero word as the non-ESP marker).
    pub spi: u32,
    /// Sequence number (low 32 bits).
    pub seq: u32,
}

impl Repr {
    /// Parses the header, refusing SPI 0.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Repr> {
        p.check_len()?;
        if p.spi() == 0 {
            return Err(Error);
        }
        Ok(Repr { spi: p.spi(), seq: p.seq() })
    }

    /// Header length.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) {
        p.set_spi(self.spi);
        p.set_seq(self.seq);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static PACKET: [u8; 10] = [0xc0, 0x01, 0x02, 0x03, 0x00, 0x00, 0x00, 0x05, 0xaa, 0xbb];

    fn repr() -> Repr {
        Repr { spi: 0xc001_0203, seq: 5 }
    }

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&PACKET[..]).unwrap();
        assert_eq!((p.spi(), p.seq()), (0xc001_0203, 5));
        assert_eq!(p.payload(), &[0xaa, 0xbb]);
    }

    #[test]
    fn construct() {
        let mut b = [0u8; 10];
        let mut p = Packet::new_unchecked(&mut b[..]);
        p.set_spi(0xc001_0203);
        p.set_seq(5);
        p.payload_mut().copy_from_slice(&[0xaa, 0xbb]);
        assert_eq!(b, PACKET);
    }

    #[test]
    fn check_len() {
        for n in 0..HEADER_LEN {
            assert!(Packet::new_checked(&PACKET[..n]).is_err());
        }
    }

    #[test]
    fn parse() {
        assert_eq!(Repr::parse(&Packet::new_unchecked(&PACKET[..])).unwrap(), repr());
        let zero = [0u8; 8];
        assert!(Repr::parse(&Packet::new_unchecked(&zero[..])).is_err(), "SPI 0 is reserved");
    }

    #[test]
    fn emit() {
        let mut b = [0u8; 10];
        b[8..].copy_from_slice(&[0xaa, 0xbb]);
        repr().emit(&mut Packet::new_unchecked(&mut b[..]));
        assert_eq!(b, PACKET);
    }

    #[test]
    fn buffer_len() {
        assert_eq!(repr().buffer_len(), 8);
    }
}
