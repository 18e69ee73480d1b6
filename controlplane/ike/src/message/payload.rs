//! Payload bodies (everything after the 4-byte generic payload header), RFC 7296 §3.3–§3.16.
//!
//! Each body implements [`Codec`] over exactly its own bytes: the payload chain in
//! [`super::Message`] hands every body a reader bounded by the payload length, so a body that
//! does not consume its bytes fails with `TrailingBytes` instead of bleeding into the next one.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::consts::*;
use crate::codec::{patch_u16, put_u16, Codec, Reader};
use crate::error::DecodeError;

/// A transform attribute (RFC 7296 §3.3.5): TV (`AF` bit set) or TLV.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attribute {
    /// TV format: 15-bit type and a 16-bit value.
    Short(u16, u16),
    /// TLV format: 15-bit type and a variable value.
    Long(u16, Vec<u8>),
}

impl Codec for Attribute {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Attribute::Short(t, v) => {
                put_u16(out, 0x8000 | (t & 0x7fff));
                put_u16(out, *v);
            }
            Attribute::Long(t, v) => {
                put_u16(out, t & 0x7fff);
                put_u16(out, v.len() as u16);
                out.extend_from_slice(v);
            }
        }
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let t = r.u16("attribute type")?;
        if t & 0x8000 != 0 {
            Ok(Attribute::Short(t & 0x7fff, r.u16("attribute value")?))
        } else {
            let len = r.u16("attribute length")? as usize;
            Ok(Attribute::Long(t, r.take(len, "attribute value")?.to_vec()))
        }
    }
}

/// One transform substructure (RFC 7296 §3.3.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transform {
    /// Transform type (ENCR, PRF, INTEG, DH, ESN).
    pub ty: TransformType,
    /// Transform ID within the type.
    pub id: u16,
    /// Attributes (in practice only the key length).
    pub attributes: Vec<Attribute>,
}

impl Transform {
    /// A transform without attributes.
    pub fn new(ty: TransformType, id: u16) -> Self {
        Self { ty, id, attributes: Vec::new() }
    }

    /// A transform with a key length attribute in bits.
    pub fn with_key_length(ty: TransformType, id: u16, bits: u16) -> Self {
        Self { ty, id, attributes: vec![Attribute::Short(ATTR_KEY_LENGTH, bits)] }
    }

    /// The key length attribute in bits, if present.
    pub fn key_length(&self) -> Option<u16> {
        self.attributes.iter().find_map(|a| match a {
            Attribute::Short(ATTR_KEY_LENGTH, v) => Some(*v),
            _ => None,
        })
    }

    fn encode_sub(&self, out: &mut Vec<u8>, last: bool) {
        let start = out.len();
        out.push(if last { 0 } else { 3 });
        out.push(0);
        put_u16(out, 0);
        out.push(self.ty.0);
        out.push(0);
        put_u16(out, self.id);
        for a in &self.attributes {
            a.encode(out);
        }
        let len = out.len() - start;
        patch_u16(out, start + 2, len);
    }

    fn read_sub(r: &mut Reader<'_>) -> Result<(Self, bool), DecodeError> {
        let more = r.u8("transform last")?;
        let _reserved = r.u8("transform reserved")?;
        let len = r.u16("transform length")? as usize;
        if len < 8 {
            return Err(DecodeError::BadLength("transform"));
        }
        let mut body = r.sub(len - 4, "transform")?;
        let ty = TransformType(body.u8("transform type")?);
        let _reserved = body.u8("transform reserved")?;
        let id = body.u16("transform id")?;
        let mut attributes = Vec::new();
        while body.any_left() {
            attributes.push(Attribute::read(&mut body)?);
        }
        let last = match more {
            0 => true,
            3 => false,
            _ => return Err(DecodeError::BadValue("transform last substruc")),
        };
        Ok((Self { ty, id, attributes }, last))
    }
}

/// One proposal substructure (RFC 7296 §3.3.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proposal {
    /// Proposal number (1 for the first, increasing by one).
    pub number: u8,
    /// IKE, AH or ESP.
    pub protocol: ProtocolId,
    /// SPI: empty in IKE_SA_INIT, 8 bytes for IKE rekey, 4 bytes for ESP/AH.
    pub spi: Vec<u8>,
    /// Transforms, in the sender's order.
    pub transforms: Vec<Transform>,
}

impl Proposal {
    /// Transforms of one type, in order.
    pub fn of_type(&self, ty: TransformType) -> impl Iterator<Item = &Transform> {
        self.transforms.iter().filter(move |t| t.ty == ty)
    }

    fn encode_sub(&self, out: &mut Vec<u8>, last: bool) {
        let start = out.len();
        out.push(if last { 0 } else { 2 });
        out.push(0);
        put_u16(out, 0);
        out.push(self.number);
        out.push(self.protocol.0);
        out.push(self.spi.len() as u8);
        out.push(self.transforms.len() as u8);
        out.extend_from_slice(&self.spi);
        for (i, t) in self.transforms.iter().enumerate() {
            t.encode_sub(out, i + 1 == self.transforms.len());
        }
        let len = out.len() - start;
        patch_u16(out, start + 2, len);
    }

    fn read_sub(r: &mut Reader<'_>) -> Result<(Self, bool), DecodeError> {
        let more = r.u8("proposal last")?;
        let _reserved = r.u8("proposal reserved")?;
        let len = r.u16("proposal length")? as usize;
        if len < 8 {
            return Err(DecodeError::BadLength("proposal"));
        }
        let mut body = r.sub(len - 4, "proposal")?;
        let number = body.u8("proposal number")?;
        let protocol = ProtocolId(body.u8("protocol id")?);
        let spi_size = body.u8("spi size")? as usize;
        let count = body.u8("transform count")? as usize;
        let spi = body.take(spi_size, "proposal spi")?.to_vec();
        let mut transforms = Vec::with_capacity(count);
        let mut saw_last = false;
        while body.any_left() {
            if saw_last {
                return Err(DecodeError::BadValue("transform after last"));
            }
            let (t, last) = Transform::read_sub(&mut body)?;
            transforms.push(t);
            saw_last = last;
        }
        if transforms.len() != count || !saw_last {
            return Err(DecodeError::BadValue("transform count"));
        }
        let last = match more {
            0 => true,
            2 => false,
            _ => return Err(DecodeError::BadValue("proposal last substruc")),
        };
        Ok((Self { number, protocol, spi, transforms }, last))
    }
}

/// Security Association payload (RFC 7296 §3.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SaPayload {
    /// Proposals in order of the sender's preference.
    pub proposals: Vec<Proposal>,
}

impl Codec for SaPayload {
    fn encode(&self, out: &mut Vec<u8>) {
        for (i, p) in self.proposals.iter().enumerate() {
            p.encode_sub(out, i + 1 == self.proposals.len());
        }
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let mut proposals = Vec::new();
        let mut saw_last = false;
        while r.any_left() {
            if saw_last {
                return Err(DecodeError::BadValue("proposal after last"));
            }
            let (p, last) = Proposal::read_sub(r)?;
            proposals.push(p);
            saw_last = last;
        }
        if !saw_last {
            return Err(DecodeError::BadValue("SA without proposals"));
        }
        Ok(Self { proposals })
    }
}

/// Key Exchange payload (RFC 7296 §3.4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KePayload {
    /// The group of the public value.
    pub group: DhId,
    /// The public value (MODP: big-endian, padded; ECP: x‖y; Curve25519: 32 bytes).
    pub data: Vec<u8>,
}

impl Codec for KePayload {
    fn encode(&self, out: &mut Vec<u8>) {
        put_u16(out, self.group.0);
        put_u16(out, 0);
        out.extend_from_slice(&self.data);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let group = DhId(r.u16("ke group")?);
        let _reserved = r.u16("ke reserved")?;
        Ok(Self { group, data: r.rest().to_vec() })
    }
}

/// Identification payload body, IDi or IDr (RFC 7296 §3.5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identification {
    /// ID type.
    pub ty: IdType,
    /// Identification data.
    pub data: Vec<u8>,
}

impl Codec for Identification {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.ty.0);
        out.extend_from_slice(&[0, 0, 0]);
        out.extend_from_slice(&self.data);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let ty = IdType(r.u8("id type")?);
        r.take(3, "id reserved")?;
        Ok(Self { ty, data: r.rest().to_vec() })
    }
}

impl std::fmt::Display for Identification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.ty, self.data.len()) {
            (IdType::ID_IPV4_ADDR, 4) => {
                let a: [u8; 4] = [self.data[0], self.data[1], self.data[2], self.data[3]];
                write!(f, "IPV4_ADDR {}", Ipv4Addr::from(a))
            }
            (IdType::ID_FQDN | IdType::ID_RFC822_ADDR | IdType::ID_KEY_ID, _) => {
                write!(f, "{} {}", self.ty, String::from_utf8_lossy(&self.data))
            }
            _ => write!(f, "{} ({} bytes)", self.ty, self.data.len()),
        }
    }
}

/// CERT or CERTREQ payload body (RFC 7296 §3.6, §3.7).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertPayload {
    /// Certificate encoding (4 = X.509 signature).
    pub encoding: u8,
    /// Certificate data, or for CERTREQ the concatenated SHA-1 hashes of CA public keys.
    pub data: Vec<u8>,
}

impl Codec for CertPayload {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.encoding);
        out.extend_from_slice(&self.data);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self { encoding: r.u8("cert encoding")?, data: r.rest().to_vec() })
    }
}

/// Authentication payload (RFC 7296 §3.8).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthPayload {
    /// Authentication method.
    pub method: AuthMethod,
    /// Authentication data.
    pub data: Vec<u8>,
}

impl Codec for AuthPayload {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.method.0);
        out.extend_from_slice(&[0, 0, 0]);
        out.extend_from_slice(&self.data);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let method = AuthMethod(r.u8("auth method")?);
        r.take(3, "auth reserved")?;
        Ok(Self { method, data: r.rest().to_vec() })
    }
}

/// Notify payload (RFC 7296 §3.10).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notify {
    /// Protocol of the SPI (0 when none).
    pub protocol: ProtocolId,
    /// SPI, usually empty.
    pub spi: Vec<u8>,
    /// Notify message type.
    pub ty: NotifyType,
    /// Notification data.
    pub data: Vec<u8>,
}

impl Notify {
    /// A notify without SPI.
    pub fn new(ty: NotifyType, data: Vec<u8>) -> Self {
        Self { protocol: ProtocolId::NONE, spi: Vec::new(), ty, data }
    }
}

impl Codec for Notify {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.protocol.0);
        out.push(self.spi.len() as u8);
        put_u16(out, self.ty.0);
        out.extend_from_slice(&self.spi);
        out.extend_from_slice(&self.data);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let protocol = ProtocolId(r.u8("notify protocol")?);
        let spi_size = r.u8("notify spi size")? as usize;
        let ty = NotifyType(r.u16("notify type")?);
        let spi = r.take(spi_size, "notify spi")?.to_vec();
        Ok(Self { protocol, spi, ty, data: r.rest().to_vec() })
    }
}

/// Delete payload (RFC 7296 §3.11).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeletePayload {
    /// IKE (no SPIs), ESP or AH.
    pub protocol: ProtocolId,
    /// SPI size in bytes (0 for IKE, 4 for ESP/AH).
    pub spi_size: u8,
    /// The SPIs being deleted.
    pub spis: Vec<Vec<u8>>,
}

impl Codec for DeletePayload {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.protocol.0);
        out.push(self.spi_size);
        put_u16(out, self.spis.len() as u16);
        for s in &self.spis {
            out.extend_from_slice(s);
        }
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let protocol = ProtocolId(r.u8("delete protocol")?);
        let spi_size = r.u8("delete spi size")?;
        let n = r.u16("delete spi count")? as usize;
        if spi_size == 0 && n != 0 {
            return Err(DecodeError::BadValue("delete spi count"));
        }
        let mut spis = Vec::with_capacity(n.min(256));
        for _ in 0..n {
            spis.push(r.take(spi_size as usize, "delete spi")?.to_vec());
        }
        Ok(Self { protocol, spi_size, spis })
    }
}

/// One traffic selector (RFC 7296 §3.13.1): an address range, protocol and port range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrafficSelector {
    /// IP protocol (0 = any).
    pub ip_protocol: u8,
    /// First port.
    pub start_port: u16,
    /// Last port.
    pub end_port: u16,
    /// First address; its family decides the TS type.
    pub start_addr: IpAddr,
    /// Last address, same family as `start_addr`.
    pub end_addr: IpAddr,
}

impl TrafficSelector {
    /// The whole IPv4 space, any protocol and port.
    pub fn ipv4_any() -> Self {
        Self::ipv4_range(Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST)
    }

    /// An IPv4 range, any protocol and port.
    pub fn ipv4_range(start: Ipv4Addr, end: Ipv4Addr) -> Self {
        Self {
            ip_protocol: 0,
            start_port: 0,
            end_port: 65535,
            start_addr: IpAddr::V4(start),
            end_addr: IpAddr::V4(end),
        }
    }
}

impl Codec for TrafficSelector {
    fn encode(&self, out: &mut Vec<u8>) {
        let v4 = matches!((self.start_addr, self.end_addr), (IpAddr::V4(_), IpAddr::V4(_)));
        out.push(if v4 { TsType::TS_IPV4_ADDR_RANGE.0 } else { TsType::TS_IPV6_ADDR_RANGE.0 });
        out.push(self.ip_protocol);
        put_u16(out, if v4 { 16 } else { 40 });
        put_u16(out, self.start_port);
        put_u16(out, self.end_port);
        for a in [self.start_addr, self.end_addr] {
            match (a, v4) {
                (IpAddr::V4(a), true) => out.extend_from_slice(&a.octets()),
                (IpAddr::V6(a), false) => out.extend_from_slice(&a.octets()),
                (IpAddr::V4(a), false) => out.extend_from_slice(&a.to_ipv6_mapped().octets()),
                (IpAddr::V6(_), true) => unreachable_v6(out),
            }
        }
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let ty = TsType(r.u8("ts type")?);
        let ip_protocol = r.u8("ts protocol")?;
        let len = r.u16("ts length")? as usize;
        let (want, alen) = match ty {
            TsType::TS_IPV4_ADDR_RANGE => (16, 4),
            TsType::TS_IPV6_ADDR_RANGE => (40, 16),
            _ => return Err(DecodeError::BadValue("ts type")),
        };
        if len != want {
            return Err(DecodeError::BadLength("traffic selector"));
        }
        let start_port = r.u16("ts start port")?;
        let end_port = r.u16("ts end port")?;
        let addr = |r: &mut Reader<'_>| -> Result<IpAddr, DecodeError> {
            let b = r.take(alen, "ts address")?;
            Ok(if alen == 4 {
                IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
            } else {
                let mut a = [0u8; 16];
                a.copy_from_slice(b);
                IpAddr::V6(Ipv6Addr::from(a))
            })
        };
        let start_addr = addr(r)?;
        let end_addr = addr(r)?;
        Ok(Self { ip_protocol, start_port, end_port, start_addr, end_addr })
    }
}

// A selector mixing families cannot be built by this crate's constructors; encode zeros of
// the right size rather than panicking.
fn unreachable_v6(out: &mut Vec<u8>) {
    out.extend_from_slice(&[0u8; 4]);
}

/// Traffic Selector payload body, TSi or TSr (RFC 7296 §3.13).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TsPayload {
    /// The selectors.
    pub selectors: Vec<TrafficSelector>,
}

impl Codec for TsPayload {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.selectors.len() as u8);
        out.extend_from_slice(&[0, 0, 0]);
        for s in &self.selectors {
            s.encode(out);
        }
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let n = r.u8("ts count")? as usize;
        r.take(3, "ts reserved")?;
        let mut selectors = Vec::with_capacity(n);
        for _ in 0..n {
            selectors.push(TrafficSelector::read(r)?);
        }
        Ok(Self { selectors })
    }
}

/// One configuration attribute (RFC 7296 §3.15.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpAttribute {
    /// Attribute type (15 bits).
    pub ty: CpAttrType,
    /// Value; empty in a request means "please assign".
    pub value: Vec<u8>,
}

/// Configuration payload (RFC 7296 §3.15).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpPayload {
    /// REQUEST, REPLY, SET or ACK.
    pub cfg_type: CfgType,
    /// Attributes.
    pub attributes: Vec<CpAttribute>,
}

impl CpPayload {
    /// True when an attribute of this type is present.
    pub fn has(&self, ty: CpAttrType) -> bool {
        self.attributes.iter().any(|a| a.ty == ty)
    }
}

impl Codec for CpPayload {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.cfg_type.0);
        out.extend_from_slice(&[0, 0, 0]);
        for a in &self.attributes {
            put_u16(out, a.ty.0 & 0x7fff);
            put_u16(out, a.value.len() as u16);
            out.extend_from_slice(&a.value);
        }
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let cfg_type = CfgType(r.u8("cp type")?);
        r.take(3, "cp reserved")?;
        let mut attributes = Vec::new();
        while r.any_left() {
            let ty = CpAttrType(r.u16("cp attribute type")? & 0x7fff);
            let len = r.u16("cp attribute length")? as usize;
            attributes.push(CpAttribute { ty, value: r.take(len, "cp attribute value")?.to_vec() });
        }
        Ok(Self { cfg_type, attributes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transform_with_key_length_wire() {
        // RFC 7296 §3.3.2/§3.3.5: ENCR_AES_CBC with Key Length 256 (TV attribute 0x800e).
        let sa = SaPayload {
            proposals: vec![Proposal {
                number: 1,
                protocol: ProtocolId::IKE,
                spi: vec![],
                transforms: vec![Transform::with_key_length(TransformType::ENCR, 12, 256)],
            }],
        };
        let b = sa.get_encoding();
        assert_eq!(hex::encode(&b), "00000014010100010000000c0100000c800e0100");
        assert_eq!(SaPayload::read_bytes(&b).unwrap(), sa);
        assert_eq!(sa.proposals[0].transforms[0].key_length(), Some(256));
    }

    #[test]
    fn proposal_length_beyond_payload_is_rejected() {
        let b = hex::decode("000000ff010100010000000c0100000c800e0100").unwrap();
        assert_eq!(SaPayload::read_bytes(&b), Err(DecodeError::Truncated("proposal")));
        let b = hex::decode("00000004").unwrap();
        assert_eq!(SaPayload::read_bytes(&b), Err(DecodeError::BadLength("proposal")));
    }

    #[test]
    fn transform_count_must_match() {
        let b = hex::decode("00000014010100020000000c0100000c800e0100").unwrap();
        assert_eq!(SaPayload::read_bytes(&b), Err(DecodeError::BadValue("transform count")));
    }

    #[test]
    fn ts_ipv4_range_wire() {
        let ts = TsPayload {
            selectors: vec![TrafficSelector::ipv4_range(Ipv4Addr::new(10, 40, 40, 2), Ipv4Addr::new(10, 40, 40, 2))],
        };
        let b = ts.get_encoding();
        assert_eq!(hex::encode(&b), "01000000070000100000ffff0a2828020a282802");
        assert_eq!(TsPayload::read_bytes(&b).unwrap(), ts);
        let mut bad = b.clone();
        bad[7] = 17;
        assert_eq!(TsPayload::read_bytes(&bad), Err(DecodeError::BadLength("traffic selector")));
    }

    #[test]
    fn delete_with_spis() {
        let d =
            DeletePayload { protocol: ProtocolId::ESP, spi_size: 4, spis: vec![vec![1, 2, 3, 4], vec![5, 6, 7, 8]] };
        let b = d.get_encoding();
        assert_eq!(hex::encode(&b), "030400020102030405060708");
        assert_eq!(DeletePayload::read_bytes(&b).unwrap(), d);
        assert!(DeletePayload::read_bytes(&b[..10]).is_err());
    }
}
