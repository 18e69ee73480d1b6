//! Errors, grouped by who is at fault, and their mapping to IKEv2 Notify types in one place.
//!
//! How to drive it: decoders return [`DecodeError`]; the exchange code turns any failure into an
//! [`Error`] and asks [`Error::notify`] which error Notify (if any) the peer should be sent.

use crate::message::NotifyType;

/// A message or payload that could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Fewer bytes than the structure needs.
    #[error("truncated {0}")]
    Truncated(&'static str),
    /// Bytes left over after the structure.
    #[error("trailing bytes after {0}")]
    TrailingBytes(&'static str),
    /// A length field that is impossible (too small, or beyond its container).
    #[error("bad length in {0}")]
    BadLength(&'static str),
    /// A field value the protocol forbids.
    #[error("bad value in {0}")]
    BadValue(&'static str),
    /// A payload type we do not know, with the critical bit set (RFC 7296 §2.5).
    #[error("unsupported critical payload type {0}")]
    UnsupportedCritical(u8),
}

/// Why an exchange failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The peer sent bytes that do not decode.
    #[error("malformed message: {0}")]
    Decode(#[from] DecodeError),
    /// The peer sent a well-formed message that breaks the protocol.
    #[error("protocol violation: {0}")]
    Protocol(&'static str),
    /// No proposal of the peer is acceptable.
    #[error("no acceptable proposal")]
    NoProposalChosen,
    /// The peer's KE group is acceptable but not the one we want; the payload carries our group.
    #[error("wrong key exchange group, want {0}")]
    InvalidKe(u16),
    /// Integrity check or decryption of an SK payload failed.
    #[error("integrity check failed")]
    IntegrityFailed,
    /// The peer did not authenticate.
    #[error("authentication failed: {0}")]
    AuthFailed(&'static str),
    /// The traffic selectors cannot be narrowed to anything we accept.
    #[error("traffic selectors unacceptable")]
    TsUnacceptable,
    /// No address could be assigned.
    #[error("no internal address available")]
    InternalAddressFailure,
    /// A cryptographic primitive failed (bad public value, bad key length).
    #[error("crypto: {0}")]
    Crypto(&'static str),
    /// An authenticated message whose decrypted payloads include an unknown critical one: unlike
    /// [`DecodeError::UnsupportedCritical`] outside SK, this one deserves an answer (§2.5).
    #[error("unsupported critical payload type {0} inside SK")]
    UnsupportedCriticalInside(u8),
}

impl Error {
    /// The error Notify the peer should receive for this failure, if any (RFC 7296 §3.10.1).
    pub fn notify(&self) -> Option<NotifyType> {
        match self {
            Error::Decode(DecodeError::UnsupportedCritical(_)) | Error::UnsupportedCriticalInside(_) => {
                Some(NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD)
            }
            Error::Decode(_) | Error::Protocol(_) => Some(NotifyType::INVALID_SYNTAX),
            Error::NoProposalChosen => Some(NotifyType::NO_PROPOSAL_CHOSEN),
            Error::InvalidKe(_) => Some(NotifyType::INVALID_KE_PAYLOAD),
            // RFC 7296 §2.21.1: integrity failures are dropped silently.
            Error::IntegrityFailed => None,
            Error::AuthFailed(_) => Some(NotifyType::AUTHENTICATION_FAILED),
            Error::TsUnacceptable => Some(NotifyType::TS_UNACCEPTABLE),
            Error::InternalAddressFailure => Some(NotifyType::INTERNAL_ADDRESS_FAILURE),
            Error::Crypto(_) => Some(NotifyType::INVALID_SYNTAX),
        }
    }
}
