//! IKEv2 messages: the fixed header (RFC 7296 §3.1), the payload chain (§3.2) and the payloads.
//!
//! How to drive it: [`Message::parse`] a datagram (after the driver has removed the 4-byte
//! non-ESP marker on port 4500) to get the header and the cleartext payloads; an encrypted
//! message ends with [`Payload::Sk`] or [`Payload::Skf`], which [`crate::sk`] opens into the inner
//! chain with [`decode_chain`]. To send, build a [`Message`] and [`Message::encode`] it, or let
//! [`crate::sk`] seal the inner payloads.
//!
//! RFC 7296 §2.5: a payload type we do not know is skipped unless its critical bit is set, in
//! which case the whole message is rejected with UNSUPPORTED_CRITICAL_PAYLOAD.

mod consts;
pub mod payload;

pub use consts::*;
pub use payload::*;

use crate::codec::{patch_u16, put_u32, Codec, Reader};
use crate::error::DecodeError;

/// IKE header length in bytes.
pub const HEADER_LEN: usize = 28;

/// Header flag: the sender is the original initiator.
pub const FLAG_INITIATOR: u8 = 0x08;
/// Header flag: the sender can speak a higher major version.
pub const FLAG_VERSION: u8 = 0x10;
/// Header flag: this message is a response.
pub const FLAG_RESPONSE: u8 = 0x20;

/// The IKE header (RFC 7296 §3.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Initiator's SPI (never zero).
    pub spi_i: u64,
    /// Responder's SPI (zero in the first IKE_SA_INIT request).
    pub spi_r: u64,
    /// Type of the first payload.
    pub next_payload: PayloadType,
    /// Version byte: major in the high nibble (2), minor in the low one.
    pub version: u8,
    /// Exchange type.
    pub exchange: ExchangeType,
    /// Flags (I, V, R).
    pub flags: u8,
    /// Message ID.
    pub message_id: u32,
    /// Total length of the message, header included.
    pub length: u32,
}

impl Header {
    /// True for a response.
    pub fn is_response(&self) -> bool {
        self.flags & FLAG_RESPONSE != 0
    }
    /// True when sent by the original initiator.
    pub fn is_initiator(&self) -> bool {
        self.flags & FLAG_INITIATOR != 0
    }
    /// Major version.
    pub fn major(&self) -> u8 {
        self.version >> 4
    }
}

impl Codec for Header {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.spi_i.to_be_bytes());
        out.extend_from_slice(&self.spi_r.to_be_bytes());
        out.push(self.next_payload.0);
        out.push(self.version);
        out.push(self.exchange.0);
        out.push(self.flags);
        put_u32(out, self.message_id);
        put_u32(out, self.length);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            spi_i: r.u64("initiator spi")?,
            spi_r: r.u64("responder spi")?,
            next_payload: PayloadType(r.u8("next payload")?),
            version: r.u8("version")?,
            exchange: ExchangeType(r.u8("exchange type")?),
            flags: r.u8("flags")?,
            message_id: r.u32("message id")?,
            length: r.u32("message length")?,
        })
    }
}

/// One payload of a chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    /// SA.
    Sa(SaPayload),
    /// KE.
    Ke(KePayload),
    /// IDi.
    IdI(Identification),
    /// IDr.
    IdR(Identification),
    /// CERT.
    Cert(CertPayload),
    /// CERTREQ.
    CertReq(CertPayload),
    /// AUTH.
    Auth(AuthPayload),
    /// Ni or Nr.
    Nonce(Vec<u8>),
    /// N.
    Notify(Notify),
    /// D.
    Delete(DeletePayload),
    /// V.
    VendorId(Vec<u8>),
    /// TSi.
    TsI(TsPayload),
    /// TSr.
    TsR(TsPayload),
    /// CP.
    Cp(CpPayload),
    /// EAP: the EAP message (RFC 3748), decoded by [`crate::eap`].
    Eap(Vec<u8>),
    /// SK: `first` is the type of the first inner payload; `data` is IV ‖ ciphertext ‖ ICV.
    Sk {
        /// Type of the first inner payload.
        first: PayloadType,
        /// IV, ciphertext and ICV.
        data: Vec<u8>,
    },
    /// SKF (RFC 7383 §2.5): one fragment of an SK payload.
    Skf {
        /// Type of the first inner payload (only in fragment 1; zero in the others).
        first: PayloadType,
        /// Fragment number, from 1.
        number: u16,
        /// Total number of fragments.
        total: u16,
        /// IV, ciphertext and ICV of this fragment.
        data: Vec<u8>,
    },
}

impl Payload {
    /// The payload type code.
    pub fn ty(&self) -> PayloadType {
        match self {
            Payload::Sa(_) => PayloadType::SA,
            Payload::Ke(_) => PayloadType::KE,
            Payload::IdI(_) => PayloadType::IDI,
            Payload::IdR(_) => PayloadType::IDR,
            Payload::Cert(_) => PayloadType::CERT,
            Payload::CertReq(_) => PayloadType::CERTREQ,
            Payload::Auth(_) => PayloadType::AUTH,
            Payload::Nonce(_) => PayloadType::NONCE,
            Payload::Notify(_) => PayloadType::NOTIFY,
            Payload::Delete(_) => PayloadType::DELETE,
            Payload::VendorId(_) => PayloadType::VENDOR_ID,
            Payload::TsI(_) => PayloadType::TSI,
            Payload::TsR(_) => PayloadType::TSR,
            Payload::Cp(_) => PayloadType::CP,
            Payload::Eap(_) => PayloadType::EAP,
            Payload::Sk { .. } => PayloadType::SK,
            Payload::Skf { .. } => PayloadType::SKF,
        }
    }

    /// Appends the body (no generic header).
    pub fn encode_body(&self, out: &mut Vec<u8>) {
        match self {
            Payload::Sa(p) => p.encode(out),
            Payload::Ke(p) => p.encode(out),
            Payload::IdI(p) | Payload::IdR(p) => p.encode(out),
            Payload::Cert(p) | Payload::CertReq(p) => p.encode(out),
            Payload::Auth(p) => p.encode(out),
            Payload::Nonce(b) | Payload::VendorId(b) | Payload::Eap(b) => out.extend_from_slice(b),
            Payload::Notify(p) => p.encode(out),
            Payload::Delete(p) => p.encode(out),
            Payload::TsI(p) | Payload::TsR(p) => p.encode(out),
            Payload::Cp(p) => p.encode(out),
            Payload::Sk { data, .. } => out.extend_from_slice(data),
            Payload::Skf { number, total, data, .. } => {
                out.extend_from_slice(&number.to_be_bytes());
                out.extend_from_slice(&total.to_be_bytes());
                out.extend_from_slice(data);
            }
        }
    }

    fn decode_body(ty: PayloadType, next: u8, r: &mut Reader<'_>) -> Result<Option<Self>, DecodeError> {
        Ok(Some(match ty {
            PayloadType::SA => Payload::Sa(SaPayload::read(r)?),
            PayloadType::KE => Payload::Ke(KePayload::read(r)?),
            PayloadType::IDI => Payload::IdI(Identification::read(r)?),
            PayloadType::IDR => Payload::IdR(Identification::read(r)?),
            PayloadType::CERT => Payload::Cert(CertPayload::read(r)?),
            PayloadType::CERTREQ => Payload::CertReq(CertPayload::read(r)?),
            PayloadType::AUTH => Payload::Auth(AuthPayload::read(r)?),
            PayloadType::NONCE => Payload::Nonce(r.rest().to_vec()),
            PayloadType::NOTIFY => Payload::Notify(Notify::read(r)?),
            PayloadType::DELETE => Payload::Delete(DeletePayload::read(r)?),
            PayloadType::VENDOR_ID => Payload::VendorId(r.rest().to_vec()),
            PayloadType::TSI => Payload::TsI(TsPayload::read(r)?),
            PayloadType::TSR => Payload::TsR(TsPayload::read(r)?),
            PayloadType::CP => Payload::Cp(CpPayload::read(r)?),
            PayloadType::EAP => Payload::Eap(r.rest().to_vec()),
            PayloadType::SK => Payload::Sk { first: PayloadType(next), data: r.rest().to_vec() },
            PayloadType::SKF => {
                let number = r.u16("fragment number")?;
                let total = r.u16("total fragments")?;
                // RFC 7383 §2.5: number is from 1 to total; zero totals are invalid.
                if number == 0 || total == 0 || number > total {
                    return Err(DecodeError::BadValue("fragment number"));
                }
                Payload::Skf { first: PayloadType(next), number, total, data: r.rest().to_vec() }
            }
            _ => return Ok(None),
        }))
    }
}

/// Decodes a payload chain starting with type `first`.
///
/// SK and SKF must be the last payload of a chain; their "next payload" field names the first
/// inner payload and is kept in the variant.
pub fn decode_chain(first: PayloadType, bytes: &[u8]) -> Result<Vec<Payload>, DecodeError> {
    let mut r = Reader::init(bytes);
    let mut next = first;
    let mut out = Vec::new();
    while next != PayloadType::NONE {
        let this = next;
        let np = r.u8("payload next")?;
        let flags = r.u8("payload flags")?;
        let len = r.u16("payload length")? as usize;
        if len < 4 {
            return Err(DecodeError::BadLength("payload"));
        }
        let mut body = r.sub(len - 4, "payload")?;
        let critical = flags & 0x80 != 0;
        match Payload::decode_body(this, np, &mut body)? {
            Some(p) => {
                body.expect_empty("payload body")?;
                let encrypted = matches!(p, Payload::Sk { .. } | Payload::Skf { .. });
                out.push(p);
                if encrypted {
                    // RFC 7296 §3.14: the Encrypted payload is the last payload of the message.
                    r.expect_empty("encrypted payload")?;
                    return Ok(out);
                }
            }
            None if critical => return Err(DecodeError::UnsupportedCritical(this.0)),
            None => {}
        }
        next = PayloadType(np);
    }
    r.expect_empty("payload chain")?;
    Ok(out)
}

/// Encodes a payload chain; returns the type of the first payload (NONE when empty).
pub fn encode_chain(payloads: &[Payload], out: &mut Vec<u8>) -> PayloadType {
    for (i, p) in payloads.iter().enumerate() {
        let next = match p {
            Payload::Sk { first, .. } | Payload::Skf { first, .. } => *first,
            _ => payloads.get(i + 1).map_or(PayloadType::NONE, Payload::ty),
        };
        let start = out.len();
        out.push(next.0);
        out.push(0);
        out.extend_from_slice(&[0, 0]);
        p.encode_body(out);
        let len = out.len() - start;
        patch_u16(out, start + 2, len);
    }
    payloads.first().map_or(PayloadType::NONE, Payload::ty)
}

/// A whole message: header and cleartext payload chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The header; `next_payload` and `length` are recomputed by [`Message::encode`].
    pub header: Header,
    /// The payloads.
    pub payloads: Vec<Payload>,
}

impl Message {
    /// Parses a datagram: header, length check, version check, payload chain.
    pub fn parse(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::init(bytes);
        let header = Header::read(&mut r)?;
        if header.length as usize != bytes.len() {
            return Err(DecodeError::BadLength("message length"));
        }
        if header.major() != 2 {
            return Err(DecodeError::BadValue("major version"));
        }
        let payloads = decode_chain(header.next_payload, r.rest())?;
        Ok(Self { header, payloads })
    }

    /// Encodes the message, filling in `next_payload` and `length`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        let mut header = self.header.clone();
        header.encode(&mut out);
        let first = encode_chain(&self.payloads, &mut out);
        header.next_payload = first;
        header.length = out.len() as u32;
        let mut h = Vec::with_capacity(HEADER_LEN);
        header.encode(&mut h);
        out[..HEADER_LEN].copy_from_slice(&h);
        out
    }

    /// The first notify of a type.
    pub fn notify(&self, ty: NotifyType) -> Option<&Notify> {
        find_notify(&self.payloads, ty)
    }
}

/// The first notify of a type in a payload list.
pub fn find_notify(payloads: &[Payload], ty: NotifyType) -> Option<&Notify> {
    payloads.iter().find_map(|p| match p {
        Payload::Notify(n) if n.ty == ty => Some(n),
        _ => None,
    })
}

/// Reads just the header of a datagram (for dispatch before full parsing).
pub fn peek_header(bytes: &[u8]) -> Result<Header, DecodeError> {
    let mut r = Reader::init(bytes);
    Header::read(&mut r)
}

#[cfg(test)]
mod tests;
