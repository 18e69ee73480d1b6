//! The Internet checksum (RFC 1071), with pseudo-headers for UDP over IPv4 and IPv6.

use core::net::{Ipv4Addr, Ipv6Addr};

/// One's-complement sum of `data` folded to 16 bits, not yet inverted.
pub fn sum(data: &[u8]) -> u16 {
    let mut acc: u32 = 0;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u32::from(*last) << 8;
    }
    fold(acc)
}

/// Folds a 32-bit accumulator to 16 bits with end-around carry.
pub fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// Adds 16-bit one's-complement sums.
pub fn combine(parts: &[u16]) -> u16 {
    fold(parts.iter().map(|&p| u32::from(p)).sum())
}

/// Sum of the IPv4 pseudo-header for an upper-layer protocol and length.
pub fn pseudo_v4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: u16) -> u16 {
    let mut acc = u32::from(sum(&src.octets())) + u32::from(sum(&dst.octets()));
    acc += u32::from(proto) + u32::from(len);
    fold(acc)
}

/// Sum of the IPv6 pseudo-header (RFC 8200 §8.1).
pub fn pseudo_v6(src: Ipv6Addr, dst: Ipv6Addr, proto: u8, len: u32) -> u16 {
    let mut acc = u32::from(sum(&src.octets())) + u32::from(sum(&dst.octets()));
    acc += u32::from(proto) + (len >> 16) + (len & 0xffff);
    fold(acc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to ddf2.
        assert_eq!(sum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]), 0xddf2);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(sum(&[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
    }
}
