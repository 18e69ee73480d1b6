//! ARP for IPv4 over Ethernet (RFC 826); other hardware/protocol pairs are rejected.

use super::ethernet::Address as MacAddr;
use super::{be16, put16, Error, Result};
use core::net::Ipv4Addr;

/// Length of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = 28;

/// ARP operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Who has …?
    Request,
    /// … is at.
    Reply,
}

super::view!(
    /// A view of an ARP packet.
    Packet
);

impl<T: AsRef<[u8]>> Packet<T> {
    /// Checks the buffer holds an Ethernet/IPv4 ARP packet.
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < PACKET_LEN {
            Err(Error)
        } else {
            Ok(())
        }
    }

    /// Hardware type (1 = Ethernet).
    pub fn hardware_type(&self) -> u16 {
        be16(self.buffer.as_ref(), 0)
    }
    /// Protocol type (0x0800 = IPv4).
    pub fn protocol_type(&self) -> u16 {
        be16(self.buffer.as_ref(), 2)
    }
    /// Hardware address length.
    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref()[4]
    }
    /// Protocol address length.
    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref()[5]
    }
    /// Raw operation code.
    pub fn operation(&self) -> u16 {
        be16(self.buffer.as_ref(), 6)
    }
    /// Sender hardware address.
    pub fn source_hardware_addr(&self) -> MacAddr {
        let mut a = [0u8; 6];
        a.copy_from_slice(&self.buffer.as_ref()[8..14]);
        MacAddr(a)
    }
    /// Sender protocol address.
    pub fn source_protocol_addr(&self) -> Ipv4Addr {
        let b = self.buffer.as_ref();
        Ipv4Addr::new(b[14], b[15], b[16], b[17])
    }
    /// Target hardware address.
    pub fn target_hardware_addr(&self) -> MacAddr {
        let mut a = [0u8; 6];
        a.copy_from_slice(&self.buffer.as_ref()[18..24]);
        MacAddr(a)
    }
    /// Target protocol address.
    pub fn target_protocol_addr(&self) -> Ipv4Addr {
        let b = self.buffer.as_ref();
        Ipv4Addr::new(b[24], b[25], b[26], b[27])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn set_fixed(&mut self, op: u16) {
        let b = self.buffer.as_mut();
        put16(b, 0, 1);
        put16(b, 2, 0x0800);
        b[4] = 6;
        b[5] = 4;
        put16(b, 6, op);
    }
    /// Sets sender addresses.
    pub fn set_source(&mut self, mac: MacAddr, ip: Ipv4Addr) {
        let b = self.buffer.as_mut();
        b[8..14].copy_from_slice(&mac.0);
        b[14..18].copy_from_slice(&ip.octets());
    }
    /// Sets target addresses.
    pub fn set_target(&mut self, mac: MacAddr, ip: Ipv4Addr) {
        let b = self.buffer.as_mut();
        b[18..24].copy_from_slice(&mac.0);
        b[24..28].copy_from_slice(&ip.octets());
    }
}

/// An Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// Request or reply.
    pub operation: Operation,
    /// Sender MAC.
    pub source_hardware_addr: MacAddr,
    /// Sender IPv4.
    pub source_protocol_addr: Ipv4Addr,
    /// Target MAC (zero in requests).
    pub target_hardware_addr: MacAddr,
    /// Target IPv4.
    pub target_protocol_addr: Ipv4Addr,
}

impl Repr {
    /// Parses an Ethernet/IPv4 request or reply.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Repr> {
        p.check_len()?;
        if p.hardware_type() != 1 || p.protocol_type() != 0x0800 || p.hardware_len() != 6 || p.protocol_len() != 4 {
            return Err(Error);
        }
        let operation = match p.operation() {
            1 => Operation::Request,
            2 => Operation::Reply,
            _ => return Err(Error),
        };
        Ok(Repr {
            operation,
            source_hardware_addr: p.source_hardware_addr(),
            source_protocol_addr: p.source_protocol_addr(),
            target_hardware_addr: p.target_hardware_addr(),
            target_protocol_addr: p.target_protocol_addr(),
        })
    }

    /// Packet length.
    pub const fn buffer_len(&self) -> usize {
        PACKET_LEN
    }

    /// Writes the packet.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) {
        p.set_fixed(match self.operation {
            Operation::Request => 1,
            Operation::Reply => 2,
        });
        p.set_source(self.source_hardware_addr, self.source_protocol_addr);
        p.set_target(self.target_hardware_addr, self.target_protocol_addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static REQUEST: [u8; 28] = [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 10, 0, 0, 1, 0, 0, 0, 0, 0,
        0, 10, 0, 0, 2,
    ];

    fn repr() -> Repr {
        Repr {
            operation: Operation::Request,
            source_hardware_addr: MacAddr([0x11, 0x12, 0x13, 0x14, 0x15, 0x16]),
            source_protocol_addr: Ipv4Addr::new(10, 0, 0, 1),
            target_hardware_addr: MacAddr([0; 6]),
            target_protocol_addr: Ipv4Addr::new(10, 0, 0, 2),
        }
    }

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&REQUEST[..]).unwrap();
        assert_eq!(p.operation(), 1);
        assert_eq!(p.source_protocol_addr(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(p.target_protocol_addr(), Ipv4Addr::new(10, 0, 0, 2));
    }

    #[test]
    fn construct() {
        let mut buf = [0u8; 28];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_fixed(1);
        p.set_source(MacAddr([0x11, 0x12, 0x13, 0x14, 0x15, 0x16]), Ipv4Addr::new(10, 0, 0, 1));
        p.set_target(MacAddr([0; 6]), Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(buf, REQUEST);
    }

    #[test]
    fn check_len() {
        for n in 0..PACKET_LEN {
            assert!(Packet::new_checked(&REQUEST[..n]).is_err());
        }
    }

    #[test]
    fn parse() {
        assert_eq!(Repr::parse(&Packet::new_unchecked(&REQUEST[..])).unwrap(), repr());
        let mut bad = REQUEST;
        bad[7] = 9;
        assert!(Repr::parse(&Packet::new_unchecked(&bad[..])).is_err(), "unknown operation");
        let mut bad = REQUEST;
        bad[1] = 6;
        assert!(Repr::parse(&Packet::new_unchecked(&bad[..])).is_err(), "not Ethernet");
    }

    #[test]
    fn emit() {
        let mut buf = [0u8; 28];
        repr().emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf, REQUEST);
    }

    #[test]
    fn buffer_len() {
        assert_eq!(repr().buffer_len(), 28);
    }
}
