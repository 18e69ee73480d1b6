use super::*;

const SEED_P1: &str = "aes128-sha256 aes256-sha256 aes128gcm-prfsha256 aes256gcm-prfsha384 chacha20poly1305-prfsha256";
const SEED_P2: &str = "aes128-sha1 aes256-sha1 aes128-sha256 aes256-sha256 aes128gcm aes256gcm chacha20poly1305";

#[test]
fn seed_phase1_proposal() {
    let o = IkeOffer::parse(SEED_P1, &[20, 21], false).unwrap();
    assert_eq!(o.suites.len(), 5);
    assert_eq!(
        o.suites[0],
        IkeSuite { encr: Encr::AesCbc { key_len: 16 }, integ: Some(Integ::HmacSha256_128), prf: Prf::HmacSha256 }
    );
    assert_eq!(o.suites[3], IkeSuite { encr: Encr::AesGcm16 { key_len: 32 }, integ: None, prf: Prf::HmacSha384 });
    assert_eq!(o.suites[4], IkeSuite { encr: Encr::ChaCha20Poly1305, integ: None, prf: Prf::HmacSha256 });
    assert_eq!(o.groups, vec![DhGroup::Ecp384, DhGroup::Ecp521]);
    let more = IkeOffer::parse("aes128-sha1 aes256-sha384 aes256-sha512", &[14, 19, 31], false).unwrap();
    assert_eq!(more.suites[2].integ, Some(Integ::HmacSha512_256));
    assert_eq!(more.groups, vec![DhGroup::Modp2048, DhGroup::Ecp256, DhGroup::Curve25519]);
    assert_eq!(IkeOffer::parse(SEED_P1, &[], false).unwrap().groups, vec![DhGroup::Modp2048]);
}

#[test]
fn bad_names_and_groups() {
    assert!(IkeOffer::parse("3des-sha1", &[14], false).is_err());
    assert!(IkeOffer::parse("aes128gcm-sha256", &[14], false).is_err());
    assert!(IkeOffer::parse("aes128-md5", &[14], false).is_err());
    assert!(IkeOffer::parse("", &[14], false).is_err());
    assert_eq!(IkeOffer::parse("aes128-sha256", &[5], false).unwrap_err(), ProposalError("dhgrp 5".into()));
    assert!(IkeOffer::parse("aes128-sha256", &[2], false).is_err());
    assert!(EspOffer::parse("aes128gcm-sha1", &[], false).is_err());
}

#[test]
fn seed_phase2_proposal() {
    let o = EspOffer::parse(SEED_P2, &[], false).unwrap();
    assert_eq!(o.suites.len(), 7);
    assert_eq!(o.suites[0], EspSuite { encr: Encr::AesCbc { key_len: 16 }, integ: Some(Integ::HmacSha1_96) });
    assert_eq!(o.suites[5], EspSuite { encr: Encr::AesGcm16 { key_len: 32 }, integ: None });
    assert_eq!(o.suites[6], EspSuite { encr: Encr::ChaCha20Poly1305, integ: None });
}

/// strongSwan's default IKE proposal shape: one CBC proposal with many transforms, one AEAD one.
fn strongswan_like() -> SaPayload {
    let t = Transform::new;
    SaPayload {
        proposals: vec![
            Proposal {
                number: 1,
                protocol: ProtocolId::IKE,
                spi: vec![],
                transforms: vec![
                    Transform::with_key_length(TransformType::ENCR, 12, 128),
                    Transform::with_key_length(TransformType::ENCR, 12, 256),
                    t(TransformType::INTEG, 12),
                    t(TransformType::INTEG, 2),
                    t(TransformType::PRF, 5),
                    t(TransformType::PRF, 2),
                    t(TransformType::DH, 31),
                    t(TransformType::DH, 19),
                    t(TransformType::DH, 20),
                    t(TransformType::DH, 14),
                ],
            },
            Proposal {
                number: 2,
                protocol: ProtocolId::IKE,
                spi: vec![],
                transforms: vec![
                    Transform::with_key_length(TransformType::ENCR, 20, 256),
                    t(TransformType::ENCR, 28),
                    t(TransformType::PRF, 6),
                    t(TransformType::PRF, 5),
                    t(TransformType::DH, 31),
                    t(TransformType::DH, 20),
                ],
            },
        ],
    }
}

#[test]
fn choose_first_acceptable_proposal() {
    // RFC 7296 §2.7: one proposal chosen, with one transform of each type.
    let o = IkeOffer::parse(SEED_P1, &[20, 21], false).unwrap();
    let c = o.select(&strongswan_like(), DhId::ECP_384).unwrap();
    assert_eq!(c.suite.encr, Encr::AesCbc { key_len: 16 });
    assert_eq!(c.suite.prf, Prf::HmacSha256);
    assert_eq!(c.group, DhGroup::Ecp384);
    assert_eq!(c.sa.proposals.len(), 1);
    assert_eq!(c.sa.proposals[0].number, 1);
    assert_eq!(c.sa.proposals[0].transforms.len(), 4);
    assert_eq!(c.sa.proposals[0].transforms[0].key_length(), Some(128));
}

#[test]
fn invalid_ke_names_our_group() {
    // INTEROP: charon-cmd sends a Curve25519 KE first; a gateway with `dhgrp 20 21` asks for 20.
    let o = IkeOffer::parse(SEED_P1, &[20, 21], false).unwrap();
    assert_eq!(o.select(&strongswan_like(), DhId::CURVE25519), Err(Error::InvalidKe(20)));
    // With 31 configured it is accepted as sent.
    let o31 = IkeOffer::parse(SEED_P1, &[31, 20], false).unwrap();
    assert_eq!(o31.select(&strongswan_like(), DhId::CURVE25519).unwrap().group, DhGroup::Curve25519);
}

#[test]
fn no_proposal_chosen() {
    let o = IkeOffer::parse("aes256-sha512", &[21], false).unwrap();
    assert_eq!(o.select(&strongswan_like(), DhId::CURVE25519), Err(Error::NoProposalChosen));
    // AEAD-only offer picks proposal 2 with its PRF order.
    let o = IkeOffer::parse("aes256gcm-prfsha384 chacha20poly1305-prfsha256", &[20], false).unwrap();
    let c = o.select(&strongswan_like(), DhId::ECP_384).unwrap();
    assert_eq!(c.sa.proposals[0].number, 2);
    assert_eq!(c.suite, IkeSuite { encr: Encr::AesGcm16 { key_len: 32 }, integ: None, prf: Prf::HmacSha384 });
}

#[test]
fn own_offer_round_trips_through_select() {
    let o = IkeOffer::parse(SEED_P1, &[20, 21], false).unwrap();
    let c = o.select(&o.to_sa(), DhId::ECP_384).unwrap();
    assert_eq!(c.suite, o.suites[0]);
    let e = EspOffer::parse(SEED_P2, &[], false).unwrap();
    let c = e.select(&e.to_sa(0x11223344), None, 0xc0000001).unwrap();
    assert_eq!(c.peer_spi, 0x11223344);
    assert_eq!(c.suite, e.suites[0]);
    assert!(!c.esn);
    assert_eq!(c.sa.proposals[0].spi, vec![0xc0, 0, 0, 1]);
}

#[test]
fn esp_select_prefers_initiator_order_and_pfs() {
    let ours = EspOffer::parse("aes256gcm aes128-sha256", &[20], false).unwrap();
    let theirs = EspOffer::parse("aes128-sha256 aes256gcm", &[], false).unwrap().to_sa(7);
    assert_eq!(ours.select(&theirs, None, 1).unwrap().suite, ours.suites[1]);
    // PFS in CREATE_CHILD_SA: group must be in the proposal and ours.
    let mut with_dh = theirs.clone();
    for p in &mut with_dh.proposals {
        p.transforms.push(Transform::new(TransformType::DH, 19));
        p.transforms.push(Transform::new(TransformType::DH, 20));
    }
    assert_eq!(ours.select(&with_dh, Some(DhId::ECP_384), 1).unwrap().group, Some(DhGroup::Ecp384));
    assert_eq!(ours.select(&with_dh, Some(DhId::ECP_256), 1), Err(Error::InvalidKe(20)));
}
