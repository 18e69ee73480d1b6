//! UDP encapsulation of ESP (RFC 3948): what a datagram on port 4500 carries.

use super::{Error, Result};

/// The IKE port used with UDP encapsulation.
pub const PORT: u16 = 4500;
/// The plain IKE port.
pub const IKE_PORT: u16 = 500;
/// Length of the non-ESP marker that precedes IKE messages on port 4500.
pub const NON_ESP_MARKER_LEN: usize = 4;

/// What a UDP-4500 payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload {
    /// A NAT-keepalive (RFC 3948 §2.3): one byte 0xFF.
    Keepalive,
    /// An IKE message after the four-byte non-ESP marker (RFC 3948 §2.2).
    Ike,
    /// An ESP packet; the first word is its non-zero SPI.
    Esp,
}

/// Classifies a UDP-4500 payload.
pub fn classify(payload: &[u8]) -> Result<Payload> {
    match payload {
        [0xff] => Ok(Payload::Keepalive),
        [0, 0, 0, 0, ..] if payload.len() > NON_ESP_MARKER_LEN => Ok(Payload::Ike),
        // RFC 3948 §2.2: an ESP header is at least SPI + sequence number.
        _ if payload.len() >= 8 && payload[..4] != [0, 0, 0, 0] => Ok(Payload::Esp),
        _ => Err(Error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalive() {
        assert_eq!(classify(&[0xff]), Ok(Payload::Keepalive));
        assert_eq!(classify(&[0xfe]), Err(Error));
    }

    #[test]
    fn ike_after_marker() {
        let mut p = [0u8; 32];
        p[4] = 0x11;
        assert_eq!(classify(&p), Ok(Payload::Ike));
        assert_eq!(classify(&[0, 0, 0, 0]), Err(Error), "marker with nothing after it");
    }

    #[test]
    fn esp() {
        assert_eq!(classify(&[0, 0, 0, 1, 0, 0, 0, 1]), Ok(Payload::Esp));
        assert_eq!(classify(&[0, 0, 0, 1, 0, 0, 0]), Err(Error), "shorter than an ESP header");
        assert_eq!(classify(&[]), Err(Error));
    }
}
