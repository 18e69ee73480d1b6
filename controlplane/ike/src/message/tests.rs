use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use super::*;

fn header(exchange: ExchangeType) -> Header {
    Header {
        spi_i: 0x0102030405060708,
        spi_r: 0,
        next_payload: PayloadType::NONE,
        version: 0x20,
        exchange,
        flags: FLAG_INITIATOR,
        message_id: 0,
        length: 0,
    }
}

#[test]
fn header_wire_layout() {
    // RFC 7296 §3.1: SPIs, next payload, version 2.0, exchange, flags, message id, length.
    let m = Message { header: header(ExchangeType::IKE_SA_INIT), payloads: vec![Payload::Nonce(vec![0xaa; 4])] };
    let b = m.encode();
    assert_eq!(hex::encode(&b), "0102030405060708000000000000000028202208000000000000002400000008aaaaaaaa");
    let back = Message::parse(&b).unwrap();
    assert_eq!(back.payloads, m.payloads);
    assert_eq!(back.header.length, 36);
    assert_eq!(back.header.next_payload, PayloadType::NONCE);
}

#[test]
fn length_mismatch_and_version_rejected() {
    let m = Message { header: header(ExchangeType::IKE_SA_INIT), payloads: vec![] };
    let mut b = m.encode();
    b.push(0);
    assert_eq!(Message::parse(&b), Err(DecodeError::BadLength("message length")));
    let mut b = m.encode();
    b[17] = 0x30;
    assert_eq!(Message::parse(&b), Err(DecodeError::BadValue("major version")));
    assert_eq!(Message::parse(&b[..20]), Err(DecodeError::Truncated("message id")));
}

#[test]
fn unknown_payloads_skipped_or_rejected() {
    // RFC 7296 §2.5: unknown non-critical payloads are skipped; critical ones reject the message.
    let mut chain = Vec::new();
    // type 200 (unknown) -> NONCE
    chain.extend_from_slice(&[PayloadType::NONCE.0, 0x00, 0, 6, 0xde, 0xad]);
    chain.extend_from_slice(&[0, 0, 0, 6, 0x01, 0x02]);
    let got = decode_chain(PayloadType(200), &chain).unwrap();
    assert_eq!(got, vec![Payload::Nonce(vec![1, 2])]);
    chain[1] = 0x80;
    assert_eq!(decode_chain(PayloadType(200), &chain), Err(DecodeError::UnsupportedCritical(200)));
    // A known payload with the critical bit set is accepted (the bit is ignored).
    let known = [0u8, 0x80, 0, 6, 1, 2];
    assert_eq!(decode_chain(PayloadType::NONCE, &known).unwrap(), vec![Payload::Nonce(vec![1, 2])]);
}

#[test]
fn payload_length_checks() {
    assert_eq!(decode_chain(PayloadType::NONCE, &[0, 0, 0, 3]), Err(DecodeError::BadLength("payload")));
    assert_eq!(decode_chain(PayloadType::NONCE, &[0, 0, 0, 9, 1]), Err(DecodeError::Truncated("payload")));
    assert_eq!(decode_chain(PayloadType::NONCE, &[0, 0, 0, 5, 1, 7]), Err(DecodeError::TrailingBytes("payload chain")));
    // A notify whose SPI size runs past its payload.
    assert_eq!(
        decode_chain(PayloadType::NOTIFY, &[0, 0, 0, 8, 3, 4, 0x40, 0]),
        Err(DecodeError::Truncated("notify spi"))
    );
}

#[test]
fn sk_must_be_last() {
    let mut chain = vec![0x23, 0, 0, 6, 9, 9];
    assert_eq!(
        decode_chain(PayloadType::SK, &chain).unwrap(),
        vec![Payload::Sk { first: PayloadType::IDI, data: vec![9, 9] }]
    );
    chain.extend_from_slice(&[0, 0, 0, 4]);
    assert_eq!(decode_chain(PayloadType::SK, &chain), Err(DecodeError::TrailingBytes("encrypted payload")));
}

#[test]
fn skf_fragment_numbers() {
    // RFC 7383 §2.5: Fragment Number 1..=Total Fragments.
    let ok = [0x23, 0, 0, 10, 0, 1, 0, 2, 7, 7];
    assert_eq!(
        decode_chain(PayloadType::SKF, &ok).unwrap(),
        vec![Payload::Skf { first: PayloadType::IDI, number: 1, total: 2, data: vec![7, 7] }]
    );
    let bad = [0x23, 0, 0, 10, 0, 3, 0, 2, 7, 7];
    assert_eq!(decode_chain(PayloadType::SKF, &bad), Err(DecodeError::BadValue("fragment number")));
}

fn arb_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

fn arb_transform() -> impl Strategy<Value = Transform> {
    (1u8..6, any::<u16>(), proptest::option::of(any::<u16>()), proptest::option::of((1u16..0x7fff, arb_bytes(8))))
        .prop_map(|(ty, id, kl, long)| {
            let mut attributes = Vec::new();
            if let Some(k) = kl {
                attributes.push(Attribute::Short(ATTR_KEY_LENGTH, k));
            }
            if let Some((t, v)) = long {
                attributes.push(Attribute::Long(t, v));
            }
            Transform { ty: TransformType(ty), id, attributes }
        })
}

fn arb_proposal() -> impl Strategy<Value = Proposal> {
    (1u8..10, 1u8..4, prop_oneof![Just(0usize), Just(4), Just(8)], proptest::collection::vec(arb_transform(), 1..6))
        .prop_flat_map(|(n, proto, spi_len, ts)| {
            proptest::collection::vec(any::<u8>(), spi_len).prop_map(move |spi| Proposal {
                number: n,
                protocol: ProtocolId(proto),
                spi,
                transforms: ts.clone(),
            })
        })
}

fn arb_ts() -> impl Strategy<Value = TrafficSelector> {
    prop_oneof![
        (any::<u8>(), any::<u16>(), any::<u16>(), any::<u32>(), any::<u32>()).prop_map(|(p, a, b, s, e)| {
            TrafficSelector {
                ip_protocol: p,
                start_port: a,
                end_port: b,
                start_addr: IpAddr::V4(Ipv4Addr::from(s)),
                end_addr: IpAddr::V4(Ipv4Addr::from(e)),
            }
        }),
        (any::<u8>(), any::<u16>(), any::<u16>(), any::<u128>(), any::<u128>()).prop_map(|(p, a, b, s, e)| {
            TrafficSelector {
                ip_protocol: p,
                start_port: a,
                end_port: b,
                start_addr: IpAddr::V6(Ipv6Addr::from(s)),
                end_addr: IpAddr::V6(Ipv6Addr::from(e)),
            }
        }),
    ]
}

fn arb_payload() -> impl Strategy<Value = Payload> {
    prop_oneof![
        proptest::collection::vec(arb_proposal(), 1..4).prop_map(|proposals| Payload::Sa(SaPayload { proposals })),
        (any::<u16>(), arb_bytes(100)).prop_map(|(g, data)| Payload::Ke(KePayload { group: DhId(g), data })),
        (any::<u8>(), arb_bytes(40)).prop_map(|(t, data)| Payload::IdI(Identification { ty: IdType(t), data })),
        (any::<u8>(), arb_bytes(40)).prop_map(|(t, data)| Payload::IdR(Identification { ty: IdType(t), data })),
        (any::<u8>(), arb_bytes(40)).prop_map(|(encoding, data)| Payload::Cert(CertPayload { encoding, data })),
        (any::<u8>(), arb_bytes(40)).prop_map(|(encoding, data)| Payload::CertReq(CertPayload { encoding, data })),
        (any::<u8>(), arb_bytes(40)).prop_map(|(m, data)| Payload::Auth(AuthPayload { method: AuthMethod(m), data })),
        arb_bytes(64).prop_map(Payload::Nonce),
        (any::<u8>(), arb_bytes(8), any::<u16>(), arb_bytes(30)).prop_map(|(p, spi, t, data)| Payload::Notify(
            Notify { protocol: ProtocolId(p), spi, ty: NotifyType(t), data }
        )),
        (any::<u8>(), 0usize..5).prop_map(|(p, n)| Payload::Delete(DeletePayload {
            protocol: ProtocolId(p),
            spi_size: 4,
            spis: (0..n).map(|i| vec![i as u8; 4]).collect()
        })),
        arb_bytes(20).prop_map(Payload::VendorId),
        proptest::collection::vec(arb_ts(), 0..4).prop_map(|selectors| Payload::TsI(TsPayload { selectors })),
        proptest::collection::vec(arb_ts(), 0..4).prop_map(|selectors| Payload::TsR(TsPayload { selectors })),
        (1u8..5, proptest::collection::vec((0u16..0x7fff, arb_bytes(16)), 0..5)).prop_map(|(t, a)| Payload::Cp(
            CpPayload {
                cfg_type: CfgType(t),
                attributes: a.into_iter().map(|(ty, value)| CpAttribute { ty: CpAttrType(ty), value }).collect()
            }
        )),
        arb_bytes(40).prop_map(Payload::Eap),
    ]
}

proptest! {
    #[test]
    fn message_roundtrip(
        ex in 34u8..38,
        mid in any::<u32>(),
        payloads in proptest::collection::vec(arb_payload(), 0..6),
        sk in proptest::option::of((any::<u8>(), arb_bytes(40))),
    ) {
        let mut payloads = payloads;
        if let Some((first, data)) = sk {
            payloads.push(Payload::Sk { first: PayloadType(first), data });
        }
        let m = Message { header: Header { message_id: mid, ..header(ExchangeType(ex)) }, payloads };
        let b = m.encode();
        let back = Message::parse(&b).unwrap();
        prop_assert_eq!(&back.payloads, &m.payloads);
        prop_assert_eq!(back.header.message_id, mid);
        prop_assert_eq!(back.encode(), b);
    }

    #[test]
    fn parse_never_panics(bytes in arb_bytes(300)) {
        let _ = Message::parse(&bytes);
        let _ = decode_chain(PayloadType::SA, &bytes);
    }
}
