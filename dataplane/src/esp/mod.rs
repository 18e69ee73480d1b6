//! The ESP engine: tunnel-mode encapsulation (RFC 4303) with optional UDP encapsulation
//! (RFC 3948), anti-replay, ESN, lifetimes and per-SA counters.
//!
//! Drive it per packet:
//! - outbound: `outbound::encap(&sa, &mut buf)` turns an inner IPv4/IPv6 packet into an
//!   outer IP packet (Ethernet is the worker's business);
//! - inbound: `inbound::parse(&buf)` finds the ESP header and SPI in an outer IP packet,
//!   the caller looks the SPI up, then `inbound::decap(&mut sa, &mut buf, &loc)` leaves the
//!   inner packet in `buf`.
//!
//! Neither allocates, locks nor calls the OS; failures come back as a `DropReason`, which
//! indexes the per-SA and per-worker drop counters.

pub mod inbound;
pub mod outbound;
pub mod replay;
pub mod transform;

pub use transform::{Algorithm, Backend, CryptoError, Integrity, Transform};

/// Why the ESP engine (or a worker) dropped a packet. `#[repr(u8)]` so it indexes counter
/// arrays directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DropReason {
    /// Shorter than its headers claim.
    Truncated = 0,
    /// Outer IP header invalid (version, lengths, checksum) or a fragment.
    BadOuterHeader,
    /// Not ESP, and not ESP in UDP 4500.
    NotEsp,
    /// No SA has this SPI.
    UnknownSpi,
    /// The SPI names a slot whose SA was replaced or deleted.
    StaleSpi,
    /// Sequence number already received.
    Replayed,
    /// Sequence number left of the replay window.
    TooOld,
    /// ICV did not verify.
    BadIcv,
    /// ESP payload length not aligned to the transform's block.
    BadLength,
    /// Padding bytes are not 1, 2, 3, … (RFC 4303 §2.4).
    BadPadding,
    /// Next header is neither IPv4 (4) nor IPv6 (41).
    BadNextHeader,
    /// A dummy packet (next header 59, RFC 4303 §2.6): dropped silently by design.
    Dummy,
    /// The decrypted (inbound) or offered (outbound) inner packet is not a valid IP packet.
    BadInnerPacket,
    /// Not enough headroom in the buffer to add the outer headers.
    NoHeadroom,
    /// Not enough tailroom in the buffer to add the ESP trailer and ICV.
    NoTailroom,
    /// The encapsulated packet would exceed 65535 bytes.
    TooBig,
    /// The SA passed its hard byte or packet lifetime.
    HardLifetime,
    /// The 32-bit (or 64-bit with ESN) sequence number space is used up (RFC 4303 §3.3.3).
    SeqExhausted,
    /// Inner source address is not the tunnel's assigned address.
    Spoofed,
    /// No route for the destination.
    NoRoute,
    /// A ring or tx queue was full.
    QueueFull,
    /// Not a protocol the worker handles.
    Unhandled,
    /// The firewall policy (a deny policy, or the implicit deny) refused the packet.
    PolicyDenied,
    /// Source NAT or connection tracking refused a new flow (table or tunnel share full, no
    /// free port, a protocol that cannot be translated).
    NatRefused,
}

impl DropReason {
    /// Number of reasons; the length of counter arrays.
    pub const COUNT: usize = DropReason::NatRefused as usize + 1;

    /// Every reason, in counter order.
    pub const ALL: [DropReason; DropReason::COUNT] = [
        DropReason::Truncated,
        DropReason::BadOuterHeader,
        DropReason::NotEsp,
        DropReason::UnknownSpi,
        DropReason::StaleSpi,
        DropReason::Replayed,
        DropReason::TooOld,
        DropReason::BadIcv,
        DropReason::BadLength,
        DropReason::BadPadding,
        DropReason::BadNextHeader,
        DropReason::Dummy,
        DropReason::BadInnerPacket,
        DropReason::NoHeadroom,
        DropReason::NoTailroom,
        DropReason::TooBig,
        DropReason::HardLifetime,
        DropReason::SeqExhausted,
        DropReason::Spoofed,
        DropReason::NoRoute,
        DropReason::QueueFull,
        DropReason::Unhandled,
        DropReason::PolicyDenied,
        DropReason::NatRefused,
    ];

    /// A short snake_case name for counters and `diagnose` output.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Truncated => "truncated",
            DropReason::BadOuterHeader => "bad_outer_header",
            DropReason::NotEsp => "not_esp",
            DropReason::UnknownSpi => "unknown_spi",
            DropReason::StaleSpi => "stale_spi",
            DropReason::Replayed => "replayed",
            DropReason::TooOld => "too_old",
            DropReason::BadIcv => "bad_icv",
            DropReason::BadLength => "bad_length",
            DropReason::BadPadding => "bad_padding",
            DropReason::BadNextHeader => "bad_next_header",
            DropReason::Dummy => "dummy",
            DropReason::BadInnerPacket => "bad_inner_packet",
            DropReason::NoHeadroom => "no_headroom",
            DropReason::NoTailroom => "no_tailroom",
            DropReason::TooBig => "too_big",
            DropReason::HardLifetime => "hard_lifetime",
            DropReason::SeqExhausted => "seq_exhausted",
            DropReason::Spoofed => "spoofed",
            DropReason::NoRoute => "no_route",
            DropReason::QueueFull => "queue_full",
            DropReason::Unhandled => "unhandled",
            DropReason::PolicyDenied => "policy_denied",
            DropReason::NatRefused => "nat_refused",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::DropReason;

    #[test]
    fn all_is_in_discriminant_order() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "{r:?}");
        }
        let names: std::collections::HashSet<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(names.len(), DropReason::COUNT, "names are unique");
    }
}
