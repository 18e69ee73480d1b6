//! Pair tests of the second authentication round (RFC 4739 multiple authentication with
//! EAP-GTC for the token code, RFC 3748 §5.6), token push, and the gateway's certificate AUTH,
//! against dialgate's own initiator with virtual time.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::initiator::{eap_of, find, notify_of, Initiator};
use common::{TestPool, TestRng, TestUsers, Tokens};
use dialgate_ike::crypto::dh::DhGroup;
use dialgate_ike::eap::{self, MsChapV2};
use dialgate_ike::message::*;
use dialgate_ike::proposal::{EspOffer, IkeOffer};
use dialgate_ike::responder::{
    pem_blocks, CloseReason, Config, Event, GatewayCert, Path, Responder, ECDSA_WITH_SHA256, SHA256_WITH_RSA,
};
use zeroize::Zeroizing;

const P1: &str = "aes128-sha256 aes256gcm-prfsha384 chacha20poly1305-prfsha256";
const P2: &str = "aes128-sha256 aes256gcm chacha20poly1305";
const PSK: &[u8] = b"dialgate-psk";
const USER: &str = "Test";
const PASSWORD: &str = "p@ssw0rd";
const CODE: &str = "345678";
const UNIX0: u64 = 1_700_000_000;

type Gw = Responder<TestRng, TestUsers, TestPool>;

fn config() -> Config {
    Config {
        ike: IkeOffer::parse(P1, &[19, 20], false).unwrap(),
        esp: EspOffer::parse(P2, &[], false).unwrap(),
        local_id: Identification { ty: IdType::ID_FQDN, data: b"gw.dialgate.test".to_vec() },
        psk: Zeroizing::new(PSK.to_vec()),
        certificate: None,
        eap_identity_request: true,
        cookie_threshold: 100,
        per_address_half_open: 0,
        fragment_len: 1280,
        negotiate_timeout: Duration::from_secs(30),
        dns: vec![],
        split_include: vec![(Ipv4Addr::new(10, 50, 0, 0), 24)],
        server_name: "dialgate".into(),
    }
}

fn path(client_port: u16) -> Path {
    Path {
        remote: SocketAddr::from(([198, 51, 100, 7], client_port)),
        local: SocketAddr::from(([203, 0, 113, 1], 4500)),
    }
}

struct Sim {
    gw: Gw,
    now: Instant,
}

impl Sim {
    fn new(cfg: Config) -> Self {
        let now = Instant::now();
        let tokens = Tokens { codes: [(USER.to_string(), vec![CODE.to_string()])].into_iter().collect(), used: vec![] };
        let users = TestUsers([(USER.to_string(), PASSWORD.to_string())].into_iter().collect(), vec![], tokens);
        let pool = TestPool::range(Ipv4Addr::new(10, 40, 40, 2), Ipv4Addr::new(10, 40, 40, 20));
        Self { gw: Responder::new(Arc::new(cfg), TestRng(0x5eed_0002), users, pool, now, UNIX0), now }
    }

    fn send_all(&mut self, p: Path, ds: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let mut out = vec![];
        for d in ds {
            self.gw.handle_datagram(self.now, p, d);
            while let Some(t) = self.gw.poll_transmit() {
                out.push(t.payload);
            }
        }
        out
    }

    fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.gw.poll_event()).collect()
    }

    fn debug_lines(ev: &[Event]) -> Vec<String> {
        ev.iter().filter_map(|e| if let Event::Debug { line, .. } = e { Some(line.clone()) } else { None }).collect()
    }
}

fn auth_of(pl: &[Payload]) -> Option<AuthPayload> {
    find(pl, |x| if let Payload::Auth(a) = x { Some(a.clone()) } else { None })
}

/// IKE_SA_INIT and the first round (EAP-MSCHAPv2 with the bare password). `multi`: announce
/// MULTIPLE_AUTH_SUPPORTED; `another`: send ANOTHER_AUTH_FOLLOWS with AUTH(MSK). Returns the
/// client and the payloads of the last response.
fn first_round(sim: &mut Sim, seed: u64, p: Path, multi: bool, another: bool) -> (Initiator, Vec<Payload>) {
    let mut c = Initiator::new(
        seed,
        IkeOffer::parse(P1, &[19], false).unwrap(),
        EspOffer::parse(P2, &[], false).unwrap(),
        USER,
        p,
    );
    let req = c.sa_init(DhGroup::Ecp256, None, false);
    let r = sim.send_all(p, &[req]);
    let resp = c.sa_init_response(&r[0]).unwrap();
    // RFC 4739 §3: the responder announces support in IKE_SA_INIT when the initiator did not
    // (yet); our initiator announces it only in IKE_AUTH, so it is not required here.
    let _ = resp;
    if multi {
        c.extra_auth1.push(Payload::Notify(Notify::new(NotifyType::MULTIPLE_AUTH_SUPPORTED, vec![])));
    }
    // HDR, SK {IDi, CP, SA, TSi, TSr, N(MULTIPLE_AUTH_SUPPORTED)} --> <-- IDr, AUTH(psk), EAP(Identity)
    let r = sim.send_all(p, &c.auth1(None));
    let (_, pl) = c.open(&r);
    let req = eap_of(&pl).unwrap();
    let r = sim
        .send_all(p, &c.eap(eap::CODE_RESPONSE, req.identifier, Some((eap::TYPE_IDENTITY, USER.as_bytes().to_vec()))));
    let (_, pl) = c.open(&r);
    let ch = eap_of(&pl).unwrap();
    let (dg, nt, _, _) = c.mschap_response(&ch, USER, PASSWORD);
    let r = sim.send_all(p, &dg);
    let (_, pl) = c.open(&r);
    let res = eap_of(&pl).unwrap();
    let Some((eap::TYPE_MSCHAPV2, d)) = &res.method else { panic!("no mschapv2") };
    if let MsChapV2::FailureRequest { .. } = MsChapV2::parse(d, true).unwrap() {
        return (c, pl);
    }
    let r = sim.send_all(
        p,
        &c.eap(eap::CODE_RESPONSE, res.identifier, Some((eap::TYPE_MSCHAPV2, MsChapV2::SuccessResponse.encode()))),
    );
    let (_, pl) = c.open(&r);
    assert_eq!(eap_of(&pl).unwrap().code, eap::CODE_SUCCESS);
    // HDR, SK {AUTH(MSK), N(ANOTHER_AUTH_FOLLOWS)} --> <-- HDR, SK {AUTH(MSK)}
    let msk = common::mschap::msk(PASSWORD, &nt);
    let mut m = vec![Payload::Auth(AuthPayload { method: AuthMethod::SHARED_KEY_MIC, data: c.auth_value(&msk) })];
    if another {
        m.push(Payload::Notify(Notify::new(NotifyType::ANOTHER_AUTH_FOLLOWS, vec![])));
    }
    let r = sim.send_all(p, &c.request(ExchangeType::IKE_AUTH, m));
    let (_, pl) = c.open(&r);
    if let Some(a) = auth_of(&pl) {
        let idr = config().local_id;
        assert_eq!(a.data, c.expected_responder_auth(&msk, &idr), "AUTH from the MSK (RFC 7296 §2.16)");
    }
    (c, pl)
}

fn idi2() -> Identification {
    Identification { ty: IdType::ID_RFC822_ADDR, data: b"Test-token".to_vec() }
}

/// The second round up to the EAP-GTC answer `code`; returns the response payloads.
fn second_round(sim: &mut Sim, c: &mut Initiator, p: Path, code: &str) -> Vec<Payload> {
    // HDR, SK {IDi} --> <-- HDR, SK {EAP(Identity)}
    let r = sim.send_all(p, &c.request(ExchangeType::IKE_AUTH, vec![Payload::IdI(idi2())]));
    let (_, pl) = c.open(&r);
    let req = eap_of(&pl).unwrap();
    assert_eq!(req.method, Some((eap::TYPE_IDENTITY, vec![])));
    // HDR, SK {EAP(Identity)} --> <-- HDR, SK {EAP(GTC request)}
    let r =
        sim.send_all(p, &c.eap(eap::CODE_RESPONSE, req.identifier, Some((eap::TYPE_IDENTITY, b"Test-token".to_vec()))));
    let (_, pl) = c.open(&r);
    let gtc = eap_of(&pl).unwrap();
    assert_eq!(gtc.code, eap::CODE_REQUEST);
    let Some((eap::TYPE_GTC, text)) = &gtc.method else { panic!("not EAP-GTC: {gtc:?}") };
    assert!(text.starts_with(b"Two-factor token is needed"));
    // HDR, SK {EAP(GTC response)} --> <-- HDR, SK {EAP(Success | Failure)}
    let r =
        sim.send_all(p, &c.eap(eap::CODE_RESPONSE, gtc.identifier, Some((eap::TYPE_GTC, code.as_bytes().to_vec()))));
    if r.is_empty() {
        return vec![];
    }
    c.open(&r).1
}

/// After EAP Success of the second round: AUTH from SK_pi, the gateway's AUTH from SK_pr.
fn final_auth(sim: &mut Sim, c: &mut Initiator, p: Path) -> Vec<Payload> {
    let skpi = c.keys.as_ref().unwrap().sk_pi.to_vec();
    let a = c.auth_value_for(&skpi, &idi2());
    let r = sim.send_all(
        p,
        &c.request(
            ExchangeType::IKE_AUTH,
            vec![Payload::Auth(AuthPayload { method: AuthMethod::SHARED_KEY_MIC, data: a })],
        ),
    );
    let (_, pl) = c.open(&r);
    let skpr = c.keys.as_ref().unwrap().sk_pr.to_vec();
    let auth = auth_of(&pl).expect("gateway AUTH of the second round");
    assert_eq!(auth.data, c.expected_responder_auth(&skpr, &config().local_id), "AUTH from SK_pr (RFC 7296 §2.16)");
    pl
}

#[test]
fn gtc_second_round_with_the_right_code() {
    let mut sim = Sim::new(config());
    let p = path(4500);
    let (mut c, pl) = first_round(&mut sim, 1, p, true, true);
    // The first round's answer is AUTH only: no CP, no CHILD_SA yet (RFC 4739 §3).
    assert!(auth_of(&pl).is_some());
    assert!(find(&pl, |x| if let Payload::Sa(s) = x { Some(s.clone()) } else { None }).is_none());
    assert!(find(&pl, |x| if let Payload::Cp(s) = x { Some(s.clone()) } else { None }).is_none());
    let ev = sim.events();
    assert!(Sim::debug_lines(&ev).iter().any(|l| l == "Two-factor token is needed"));
    assert!(!ev.iter().any(|e| matches!(e, Event::IkeSaEstablished { .. } | Event::AuthFailed { .. })));
    let pl = second_round(&mut sim, &mut c, p, CODE);
    assert_eq!(eap_of(&pl).unwrap().code, eap::CODE_SUCCESS);
    let pl = final_auth(&mut sim, &mut c, p);
    let cp = find(&pl, |x| if let Payload::Cp(c) = x { Some(c.clone()) } else { None }).unwrap();
    assert_eq!(cp.attributes[0].value, vec![10, 40, 40, 2]);
    assert!(find(&pl, |x| if let Payload::Sa(s) = x { Some(s.clone()) } else { None }).is_some());
    let ev = sim.events();
    assert!(ev.iter().any(|e| matches!(e, Event::IkeSaEstablished { user: Some(u), .. } if u == USER)));
    assert!(ev.iter().any(|e| matches!(e, Event::InstallChildSa(_))));
    assert_eq!(sim.gw.established_count(), 1);
    assert_eq!(sim.gw.verifier_mut().2.used, vec![CODE.to_string()]);
}

fn assert_refused(sim: &mut Sim, pl: &[Payload], reason: &str) {
    assert_eq!(eap_of(pl).map(|e| e.code), Some(eap::CODE_FAILURE));
    assert!(notify_of(pl, NotifyType::AUTHENTICATION_FAILED).is_some());
    let ev = sim.events();
    assert!(
        ev.iter().any(|e| matches!(e, Event::AuthFailed { user, reason: r, .. } if user == USER && r == reason)),
        "{ev:?}"
    );
    assert!(!ev.iter().any(|e| matches!(e, Event::InstallChildSa(_))));
    sim.now += Duration::from_secs(31);
    sim.gw.handle_timeout(sim.now);
    assert!(sim.events().iter().any(|e| matches!(e, Event::IkeSaClosed { reason: CloseReason::AuthFailed, .. })));
    assert_eq!(sim.gw.pool_mut().used.len(), sim.gw.established_count(), "no address for the refused one");
}

#[test]
fn gtc_wrong_code_is_refused() {
    let mut sim = Sim::new(config());
    let p = path(4501);
    let (mut c, _) = first_round(&mut sim, 2, p, true, true);
    let pl = second_round(&mut sim, &mut c, p, "000000");
    assert_refused(&mut sim, &pl, "wrong token code");
}

#[test]
fn gtc_reused_code_is_refused() {
    let mut sim = Sim::new(config());
    let p = path(4502);
    let (mut c, _) = first_round(&mut sim, 3, p, true, true);
    let pl = second_round(&mut sim, &mut c, p, CODE);
    assert_eq!(eap_of(&pl).unwrap().code, eap::CODE_SUCCESS);
    final_auth(&mut sim, &mut c, p);
    sim.events();
    let p2 = path(4503);
    let (mut c2, _) = first_round(&mut sim, 4, p2, true, true);
    let pl = second_round(&mut sim, &mut c2, p2, CODE);
    assert_refused(&mut sim, &pl, "token code has already been used");
    assert_eq!(sim.gw.established_count(), 1);
}

#[test]
fn token_needed_without_a_second_round_fails() {
    // Multiple auth announced but the AUTH(MSK) comes without ANOTHER_AUTH_FOLLOWS.
    let mut sim = Sim::new(config());
    let p = path(4504);
    let (_, pl) = first_round(&mut sim, 5, p, true, false);
    assert!(notify_of(&pl, NotifyType::AUTHENTICATION_FAILED).is_some());
    assert!(auth_of(&pl).is_none());
    let ev = sim.events();
    assert!(Sim::debug_lines(&ev).iter().any(|l| l == "Two-factor token is needed"));
    assert!(ev
        .iter()
        .any(|e| matches!(e, Event::AuthFailed { reason, .. } if reason.starts_with("two-factor token is needed"))));
    // No MULTIPLE_AUTH_SUPPORTED at all: the MSCHAPv2 round itself fails, as before.
    let p = path(4505);
    let (_, pl) = first_round(&mut sim, 6, p, false, false);
    let res = eap_of(&pl).unwrap();
    let Some((eap::TYPE_MSCHAPV2, d)) = &res.method else { panic!("no mschapv2") };
    assert!(matches!(MsChapV2::parse(d, true).unwrap(), MsChapV2::FailureRequest { .. }));
    let ev = sim.events();
    assert!(Sim::debug_lines(&ev).iter().any(|l| l == "Two-factor token is needed"));
    assert!(ev.iter().any(|e| matches!(e, Event::AuthFailed { reason, .. } if reason == "two-factor token is needed")));
    assert_eq!(sim.gw.established_count(), 0);
}

#[test]
fn token_push_is_approved() {
    let mut sim = Sim::new(config());
    let p = path(4506);
    let (mut c, _) = first_round(&mut sim, 7, p, true, true);
    sim.events();
    // An empty answer asks for a push: no response until approved.
    let r = sim.send_all(p, &c.request(ExchangeType::IKE_AUTH, vec![Payload::IdI(idi2())]));
    let req = eap_of(&c.open(&r).1).unwrap();
    let r =
        sim.send_all(p, &c.eap(eap::CODE_RESPONSE, req.identifier, Some((eap::TYPE_IDENTITY, b"Test-token".to_vec()))));
    let gtc = eap_of(&c.open(&r).1).unwrap();
    let push = c.eap(eap::CODE_RESPONSE, gtc.identifier, Some((eap::TYPE_GTC, b"push".to_vec())));
    assert!(sim.send_all(p, &push).is_empty(), "held while the push is pending");
    let ev = sim.events();
    assert!(Sim::debug_lines(&ev).iter().any(|l| l.starts_with("Token push is sent, waiting for approval")));
    assert!(ev.iter().any(|e| matches!(e, Event::TokenPushPending { user, .. } if user == USER)));
    sim.now += Duration::from_secs(5);
    assert!(sim.send_all(p, &push).is_empty(), "retransmissions are ignored while pending");
    assert_eq!(sim.gw.approve_token("someone-else", sim.now), 0);
    assert_eq!(sim.gw.approve_token("test", sim.now), 1);
    let mut out = vec![];
    while let Some(t) = sim.gw.poll_transmit() {
        assert_eq!(t.path, p);
        out.push(t.payload);
    }
    assert_eq!(eap_of(&c.open(&out).1).unwrap().code, eap::CODE_SUCCESS);
    // A retransmission now gets the cached EAP Success.
    assert_eq!(sim.send_all(p, &push).len(), 1);
    final_auth(&mut sim, &mut c, p);
    assert_eq!(sim.gw.established_count(), 1);
}

#[test]
fn token_push_times_out() {
    let mut sim = Sim::new(config());
    let p = path(4507);
    let (mut c, _) = first_round(&mut sim, 8, p, true, true);
    let r = second_round(&mut sim, &mut c, p, "");
    assert!(r.is_empty());
    sim.events();
    sim.now += Duration::from_secs(31);
    assert_eq!(sim.gw.approve_token(USER, sim.now), 0, "too late: not revived");
    sim.gw.handle_timeout(sim.now);
    let ev = sim.events();
    assert!(ev.iter().any(
        |e| matches!(e, Event::AuthFailed { user, reason, .. } if user == USER && reason.contains("not approved"))
    ));
    assert!(ev.iter().any(|e| matches!(e, Event::IkeSaClosed { reason: CloseReason::NegotiationTimeout, .. })));
    assert_eq!(sim.gw.approve_token(USER, sim.now), 0);
    assert_eq!(sim.gw.ike_sa_count(), 0);
}

/// The gateway authenticates with `cert`/`key` (fixtures made with strongSwan's `pki`); the
/// initiator checks CERT, AUTH method 14 and the RFC 7427 signature with the key's public half.
fn cert_login(cert: &[u8], key: &[u8], alg_id: &[u8]) {
    let gc = GatewayCert::from_pem(cert, key).unwrap();
    let mut cfg = config();
    cfg.certificate = Some(Arc::new(gc));
    let mut sim = Sim::new(cfg);
    let p = path(4510);
    let mut c = Initiator::new(
        9,
        IkeOffer::parse(P1, &[19], false).unwrap(),
        EspOffer::parse(P2, &[], false).unwrap(),
        "Plain",
        p,
    );
    let req = c.sa_init(DhGroup::Ecp256, None, false);
    let r = sim.send_all(p, &[req]);
    c.sa_init_response(&r[0]).unwrap();
    // HDR, SK {IDi, ...} --> <-- HDR, SK {IDr, CERT, AUTH(14), EAP(Identity)}
    let r = sim.send_all(p, &c.auth1(None));
    let (_, pl) = c.open(&r);
    let idr = find(&pl, |x| if let Payload::IdR(i) = x { Some(i.clone()) } else { None }).unwrap();
    let certs: Vec<CertPayload> =
        pl.iter().filter_map(|x| if let Payload::Cert(c) = x { Some(c.clone()) } else { None }).collect();
    let leaf = pem_blocks(cert).remove(0).1;
    assert_eq!(certs, vec![CertPayload { encoding: 4, data: leaf }]);
    let auth = auth_of(&pl).unwrap();
    assert_eq!(auth.method, AuthMethod::DIGITAL_SIGNATURE);
    let n = usize::from(auth.data[0]);
    assert_eq!(&auth.data[1..=n], alg_id, "RFC 7427 AlgorithmIdentifier");
    let sig = &auth.data[1 + n..];
    let octets = c.responder_signed_octets(&idr);
    let key_der = pem_blocks(key).remove(0).1;
    use aws_lc_rs::signature::{self as s, KeyPair};
    let (alg, public): (&dyn s::VerificationAlgorithm, Vec<u8>) = if alg_id == ECDSA_WITH_SHA256 {
        let k = s::EcdsaKeyPair::from_private_key_der(&s::ECDSA_P256_SHA256_ASN1_SIGNING, &key_der).unwrap();
        (&s::ECDSA_P256_SHA256_ASN1, k.public_key().as_ref().to_vec())
    } else {
        let k = s::RsaKeyPair::from_der(&key_der).unwrap();
        (&s::RSA_PKCS1_2048_8192_SHA256, k.public_key().as_ref().to_vec())
    };
    let pk = s::UnparsedPublicKey::new(alg, public);
    pk.verify(&octets, sig).expect("gateway signature verifies");
    let mut other = octets.clone();
    other[0] ^= 1;
    assert!(pk.verify(&other, sig).is_err(), "the signature covers the IKE_SA_INIT response");
    assert!(eap_of(&pl).is_some(), "EAP follows the certificate AUTH");
}

#[test]
fn gateway_certificate_auth_ecdsa_p256() {
    cert_login(include_bytes!("fixtures/gw-ec.crt"), include_bytes!("fixtures/gw-ec.key"), ECDSA_WITH_SHA256);
}

#[test]
fn gateway_certificate_auth_rsa() {
    cert_login(include_bytes!("fixtures/gw-rsa.crt"), include_bytes!("fixtures/gw-rsa.key"), SHA256_WITH_RSA);
}

#[test]
fn certificate_and_key_must_match() {
    let err = GatewayCert::from_pem(include_bytes!("fixtures/gw-ec.crt"), include_bytes!("fixtures/gw-rsa.key"));
    assert_eq!(err.unwrap_err().to_string(), "the private key does not belong to the certificate");
}

#[test]
fn certificate_gateway_without_psk_refuses_psk_clients() {
    let mut cfg = config();
    cfg.certificate = Some(Arc::new(
        GatewayCert::from_pem(include_bytes!("fixtures/gw-ec.crt"), include_bytes!("fixtures/gw-ec.key")).unwrap(),
    ));
    cfg.psk = Zeroizing::new(Vec::new());
    let mut sim = Sim::new(cfg);
    let p = path(4511);
    let mut c = Initiator::new(
        10,
        IkeOffer::parse(P1, &[19], false).unwrap(),
        EspOffer::parse(P2, &[], false).unwrap(),
        USER,
        p,
    );
    let req = c.sa_init(DhGroup::Ecp256, None, false);
    let r = sim.send_all(p, &[req]);
    c.sa_init_response(&r[0]).unwrap();
    // A PSK AUTH computed with the empty key must not authenticate.
    let r = sim.send_all(p, &c.auth1(Some(b"")));
    let (_, pl) = c.open(&r);
    assert!(notify_of(&pl, NotifyType::AUTHENTICATION_FAILED).is_some());
    assert!(!sim.events().iter().any(|e| matches!(e, Event::InstallChildSa(_))));
}
