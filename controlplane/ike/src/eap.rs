//! EAP packets (RFC 3748 §4) and the EAP-MSCHAPv2 type data (draft-kamath-pppext-eap-mschapv2
//! §2, with the RFC 2759 field layouts), as carried in the IKEv2 EAP payload.
//!
//! How to drive it: [`EapPacket::read_bytes`] the EAP payload body; for type 26 parse
//! `type_data` with [`MsChapV2::parse`]. Build requests the same way and `encode` them.

use crate::codec::{put_u16, Codec, Reader};
use crate::error::DecodeError;

/// EAP code: Request.
pub const CODE_REQUEST: u8 = 1;
/// EAP code: Response.
pub const CODE_RESPONSE: u8 = 2;
/// EAP code: Success.
pub const CODE_SUCCESS: u8 = 3;
/// EAP code: Failure.
pub const CODE_FAILURE: u8 = 4;

/// EAP method type: Identity.
pub const TYPE_IDENTITY: u8 = 1;
/// EAP method type: Nak (legacy, response only).
pub const TYPE_NAK: u8 = 3;
/// EAP method type: Generic Token Card.
pub const TYPE_GTC: u8 = 6;
/// EAP method type: EAP-MSCHAPv2.
pub const TYPE_MSCHAPV2: u8 = 26;

/// One EAP packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EapPacket {
    /// Request, Response, Success or Failure.
    pub code: u8,
    /// Identifier matching responses to requests.
    pub identifier: u8,
    /// Method type and its data (Request/Response only).
    pub method: Option<(u8, Vec<u8>)>,
}

impl Codec for EapPacket {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.code);
        out.push(self.identifier);
        let len = 4 + self.method.as_ref().map_or(0, |(_, d)| 1 + d.len());
        put_u16(out, len as u16);
        if let Some((t, d)) = &self.method {
            out.push(*t);
            out.extend_from_slice(d);
        }
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let code = r.u8("eap code")?;
        let identifier = r.u8("eap identifier")?;
        let len = r.u16("eap length")? as usize;
        if len < 4 {
            return Err(DecodeError::BadLength("eap"));
        }
        let mut body = r.sub(len - 4, "eap")?;
        let method = match code {
            CODE_REQUEST | CODE_RESPONSE => {
                let t = body.u8("eap type")?;
                Some((t, body.rest().to_vec()))
            }
            CODE_SUCCESS | CODE_FAILURE => {
                body.expect_empty("eap success/failure")?;
                None
            }
            _ => return Err(DecodeError::BadValue("eap code")),
        };
        Ok(Self { code, identifier, method })
    }
}

/// MSCHAPv2 opcodes.
pub mod opcode {
    /// Challenge (server → peer).
    pub const CHALLENGE: u8 = 1;
    /// Response (peer → server).
    pub const RESPONSE: u8 = 2;
    /// Success (request with message, or bare response).
    pub const SUCCESS: u8 = 3;
    /// Failure (request with message, or bare response).
    pub const FAILURE: u8 = 4;
}

/// An EAP-MSCHAPv2 message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MsChapV2 {
    /// Challenge: 16-byte authenticator challenge and the server name.
    Challenge {
        /// MS-CHAPv2-ID.
        id: u8,
        /// Authenticator challenge.
        challenge: [u8; 16],
        /// Server name.
        name: Vec<u8>,
    },
    /// Response: peer challenge, NT-Response, flags and user name.
    Response {
        /// MS-CHAPv2-ID.
        id: u8,
        /// Peer challenge.
        peer_challenge: [u8; 16],
        /// NT-Response.
        nt_response: [u8; 24],
        /// Flags (zero).
        flags: u8,
        /// User name.
        name: Vec<u8>,
    },
    /// Success request: "S=<authenticator response> M=<message>".
    SuccessRequest {
        /// MS-CHAPv2-ID.
        id: u8,
        /// The message.
        message: Vec<u8>,
    },
    /// Failure request: "E=691 R=0 C=… V=3 M=…".
    FailureRequest {
        /// MS-CHAPv2-ID.
        id: u8,
        /// The message.
        message: Vec<u8>,
    },
    /// The peer's bare Success response (opcode only).
    SuccessResponse,
    /// The peer's bare Failure response (opcode only).
    FailureResponse,
}

impl MsChapV2 {
    /// Parses EAP type data of type 26; `request` tells which direction it came from.
    pub fn parse(data: &[u8], request: bool) -> Result<Self, DecodeError> {
        let mut r = Reader::init(data);
        let op = r.u8("mschapv2 opcode")?;
        if !request && (op == opcode::SUCCESS || op == opcode::FAILURE) {
            r.expect_empty("mschapv2 bare response")?;
            return Ok(if op == opcode::SUCCESS { MsChapV2::SuccessResponse } else { MsChapV2::FailureResponse });
        }
        let id = r.u8("mschapv2 id")?;
        let ms_len = r.u16("mschapv2 length")? as usize;
        // MS-Length counts from the OpCode to the end of the packet.
        if ms_len != data.len() {
            return Err(DecodeError::BadLength("mschapv2"));
        }
        match (op, request) {
            (opcode::CHALLENGE, true) => {
                if r.u8("value size")? != 16 {
                    return Err(DecodeError::BadValue("challenge size"));
                }
                let challenge = r.array::<16>("challenge")?;
                Ok(MsChapV2::Challenge { id, challenge, name: r.rest().to_vec() })
            }
            (opcode::RESPONSE, false) => {
                if r.u8("value size")? != 49 {
                    return Err(DecodeError::BadValue("response size"));
                }
                let peer_challenge = r.array::<16>("peer challenge")?;
                r.take(8, "reserved")?;
                let nt_response = r.array::<24>("nt response")?;
                let flags = r.u8("flags")?;
                Ok(MsChapV2::Response { id, peer_challenge, nt_response, flags, name: r.rest().to_vec() })
            }
            (opcode::SUCCESS, true) => Ok(MsChapV2::SuccessRequest { id, message: r.rest().to_vec() }),
            (opcode::FAILURE, true) => Ok(MsChapV2::FailureRequest { id, message: r.rest().to_vec() }),
            _ => Err(DecodeError::BadValue("mschapv2 opcode")),
        }
    }

    /// The EAP type data.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let head = |out: &mut Vec<u8>, op: u8, id: u8| {
            out.push(op);
            out.push(id);
            out.extend_from_slice(&[0, 0]);
        };
        match self {
            MsChapV2::Challenge { id, challenge, name } => {
                head(&mut out, opcode::CHALLENGE, *id);
                out.push(16);
                out.extend_from_slice(challenge);
                out.extend_from_slice(name);
            }
            MsChapV2::Response { id, peer_challenge, nt_response, flags, name } => {
                head(&mut out, opcode::RESPONSE, *id);
                out.push(49);
                out.extend_from_slice(peer_challenge);
                out.extend_from_slice(&[0; 8]);
                out.extend_from_slice(nt_response);
                out.push(*flags);
                out.extend_from_slice(name);
            }
            MsChapV2::SuccessRequest { id, message } => {
                head(&mut out, opcode::SUCCESS, *id);
                out.extend_from_slice(message);
            }
            MsChapV2::FailureRequest { id, message } => {
                head(&mut out, opcode::FAILURE, *id);
                out.extend_from_slice(message);
            }
            MsChapV2::SuccessResponse => return vec![opcode::SUCCESS],
            MsChapV2::FailureResponse => return vec![opcode::FAILURE],
        }
        let len = out.len() as u16;
        out[2..4].copy_from_slice(&len.to_be_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn identity_request_wire() {
        // RFC 3748 §4.1/§5.1: Request, id 0, length 5, type 1 (Identity), no data.
        let p = EapPacket { code: CODE_REQUEST, identifier: 0, method: Some((TYPE_IDENTITY, vec![])) };
        assert_eq!(p.get_encoding(), vec![1, 0, 0, 5, 1]);
        let s = EapPacket { code: CODE_SUCCESS, identifier: 7, method: None };
        assert_eq!(s.get_encoding(), vec![3, 7, 0, 4]);
        assert_eq!(EapPacket::read_bytes(&[3, 7, 0, 4]).unwrap(), s);
        assert!(EapPacket::read_bytes(&[3, 7, 0, 5, 1]).is_err());
        assert!(EapPacket::read_bytes(&[2, 7, 0, 9, 1]).is_err());
    }

    #[test]
    fn mschapv2_lengths_checked() {
        let c = MsChapV2::Challenge { id: 5, challenge: [9; 16], name: b"dialgate".to_vec() };
        let b = c.encode();
        assert_eq!(&b[..5], &[1, 5, 0, 29, 16]);
        assert_eq!(MsChapV2::parse(&b, true).unwrap(), c);
        let mut bad = b.clone();
        bad[3] = 30;
        assert_eq!(MsChapV2::parse(&bad, true), Err(DecodeError::BadLength("mschapv2")));
        assert_eq!(MsChapV2::parse(&[3], false).unwrap(), MsChapV2::SuccessResponse);
        assert!(MsChapV2::parse(&[3, 1], false).is_err());
    }

    proptest! {
        #[test]
        fn mschapv2_roundtrip(id in any::<u8>(), pc in any::<[u8; 16]>(), nt in proptest::collection::vec(any::<u8>(), 24), name in proptest::collection::vec(any::<u8>(), 0..40)) {
            let mut ntr = [0u8; 24];
            ntr.copy_from_slice(&nt);
            let r = MsChapV2::Response { id, peer_challenge: pc, nt_response: ntr, flags: 0, name: name.clone() };
            prop_assert_eq!(MsChapV2::parse(&r.encode(), false).unwrap(), r);
            let s = MsChapV2::SuccessRequest { id, message: name };
            prop_assert_eq!(MsChapV2::parse(&s.encode(), true).unwrap(), s);
        }

        #[test]
        fn eap_roundtrip(code in 1u8..3, id in any::<u8>(), t in any::<u8>(), d in proptest::collection::vec(any::<u8>(), 0..60)) {
            let p = EapPacket { code, identifier: id, method: Some((t, d)) };
            prop_assert_eq!(EapPacket::read_bytes(&p.get_encoding()).unwrap(), p);
        }
    }
}
