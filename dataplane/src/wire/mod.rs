//! Zero-copy views over packet headers, in the style of smoltcp's `wire` module.
//!
//! Each header has a `Packet<T: AsRef<[u8]>>` view (`new_unchecked`, `new_checked` — use the
//! checked form on input, never trust a length before it is checked — RFC-named getters and
//! setters when `T: AsMut<[u8]>`) and, where a header has fields worth naming, a `Repr` with
//! `parse`, `buffer_len` and `emit`. Nothing here allocates or uses `unsafe`.

/// Declares a zero-copy view type over a byte buffer with the constructors every header shares;
/// each header module then supplies `check_len` and its field accessors.
macro_rules! view {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Debug, Clone)]
        pub struct $name<T: AsRef<[u8]>> {
            buffer: T,
        }

        impl<T: AsRef<[u8]>> $name<T> {
            /// Wraps a buffer without checking it: for output, never for input.
            pub const fn new_unchecked(buffer: T) -> Self {
                Self { buffer }
            }

            /// Wraps a buffer after `check_len`: for input.
            pub fn new_checked(buffer: T) -> $crate::wire::Result<Self> {
                let p = Self::new_unchecked(buffer);
                p.check_len()?;
                Ok(p)
            }

            /// Returns the underlying buffer.
            pub fn into_inner(self) -> T {
                self.buffer
            }
        }
    };
}
pub(crate) use view;

pub mod arp;
pub mod checksum;
pub mod esp;
pub mod ethernet;
pub mod ipv4;
pub mod ipv6;
pub mod natt;
pub mod udp;

/// A packet that does not parse: too short, or a field with a value that makes it unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Error;

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("malformed packet")
    }
}

impl std::error::Error for Error {}

/// Result of parsing a header.
pub type Result<T> = core::result::Result<T, Error>;

/// IP protocol numbers dialgate handles (IANA "Assigned Internet Protocol Numbers").
pub mod ip_proto {
    /// ICMP.
    pub const ICMP: u8 = 1;
    /// IPv4 encapsulation (tunnel-mode ESP next header for an inner IPv4 packet).
    pub const IPV4: u8 = 4;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// IPv6 encapsulation (tunnel-mode ESP next header for an inner IPv6 packet).
    pub const IPV6: u8 = 41;
    /// ESP (RFC 4303).
    pub const ESP: u8 = 50;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;
    /// No next header: an ESP dummy packet (RFC 4303 §2.6) carries this.
    pub const NO_NEXT_HEADER: u8 = 59;
}

pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

pub(crate) fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

pub(crate) fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}
