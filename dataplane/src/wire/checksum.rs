//! The Internet checksum (RFC 1071), with pseudo-headers for UDP over IPv4 and IPv6.

use core::net::{Ipv4Addr, Ipv6Addr};

/// One's-complement sum of `data` folded to 16 bits, not yet inverted.
///
/// Adds 32-bit big-endian words into 64 bits and folds at the end: 2^16 ≡ 1 (mod 2^16 − 1),
/// so the wide sum folds to the 16-bit one (RFC 1071 §2: deferred carries). Half the adds of
/// a 16-bit loop, and no carry handling inside it; every received header is checked with it.
#[inline]
pub fn sum(data: &[u8]) -> u16 {
    let mut acc: u64 = 0;
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        acc += u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    }
    acc += match *words.remainder() {
        [a, b, c] => (u64::from(u16::from_be_bytes([a, b]))) + (u64::from(c) << 8),
        [a, b] => u64::from(u16::from_be_bytes([a, b])),
        [a] => u64::from(a) << 8,
        _ => 0,
    };
    // Two folds bring any 64-bit sum under 2^32 + 2^32, a third under 2^32.
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    fold(acc as u32)
}

/// Folds a 32-bit accumulator to 16 bits with end-around carry.
#[inline(always)]
pub fn fold(acc: u32) -> u16 {
    // Two end-around carries always do: the first leaves at most 0xffff + 0xffff = 0x1fffe,
    // the second at most 0xfffe + 1. No loop, so the per-packet checksum updates stay
    // straight-line code.
    let acc = (acc & 0xffff) + (acc >> 16);
    ((acc & 0xffff) + (acc >> 16)) as u16
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

    /// The RFC 1071 definition word by word, to hold the wide sum against.
    fn reference(data: &[u8]) -> u16 {
        let mut acc: u32 = 0;
        for c in data.chunks(2) {
            acc += u32::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)]));
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    #[test]
    fn wide_sum_equals_the_word_by_word_sum() {
        // Every length up to a jumbo header's worth, all-ones data (the most carries) and a
        // pseudo-random pattern.
        let mut x: u32 = 0x9e37_79b9;
        let noise: Vec<u8> = (0..2100)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        let ones = vec![0xffu8; 2100];
        for len in (0..=80).chain([1499, 1500, 2099]) {
            for data in [&noise[..len], &ones[..len], &noise[len / 3..len]] {
                assert_eq!(sum(data), reference(data), "length {}", data.len());
            }
        }
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(sum(&[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
    }
}
