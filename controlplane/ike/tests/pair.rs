//! In-memory pair tests: the responder against dialgate's own minimal initiator, with virtual
//! time, loss, reordering and retransmission. Each test carries the RFC 7296 message diagram of
//! what it drives.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::initiator::{eap_of, find, ipv4, notify_of, Initiator};
use common::{TestPool, TestRng, TestUsers};
use dialgate_ike::crypto::dh::DhGroup;
use dialgate_ike::crypto::dh::DhPrivate;
use dialgate_ike::eap::{self, MsChapV2};
use dialgate_ike::keymat::{child_keymat, rekey_skeyseed, IkeKeys};
use dialgate_ike::message::*;
use dialgate_ike::proposal::esp_key_lengths;
use dialgate_ike::proposal::{EspOffer, IkeOffer};
use dialgate_ike::responder::{CloseReason, Config, Dpd, Event, Path, Responder};
use dialgate_ike::sk::SkCipher;
use proptest::prelude::*;
use zeroize::Zeroizing;

const P1: &str = "aes128-sha256 aes256-sha256 aes128gcm-prfsha256 aes256gcm-prfsha384 chacha20poly1305-prfsha256";
const P2: &str = "aes128-sha1 aes256-sha1 aes128-sha256 aes256-sha256 aes128gcm aes256gcm chacha20poly1305";
const PSK: &[u8] = b"dialgate-psk";
const USER: &str = "Test";
const PASSWORD: &str = "p@ssw0rd345678";
const UNIX0: u64 = 1_700_000_000;

type Gw = Responder<TestRng, TestUsers, TestPool>;

fn config(cookie_threshold: usize, fragment_len: usize) -> Config {
    Config {
        ike: IkeOffer::parse(P1, &[20, 21], false).unwrap(),
        esp: EspOffer::parse(P2, &[], false).unwrap(),
        local_id: Identification { ty: IdType::ID_FQDN, data: b"gw.dialgate.test".to_vec() },
        psk: Zeroizing::new(PSK.to_vec()),
        certificate: None,
        eap_identity_request: true,
        cookie_threshold,
        per_address_half_open: 0,
        fragment_len,
        negotiate_timeout: Duration::from_secs(30),
        dns: vec![Ipv4Addr::new(10, 50, 0, 53)],
        split_include: vec![(Ipv4Addr::new(10, 50, 0, 0), 24)],
        server_name: "dialgate".into(),
    }
}

fn path(client_port: u16, gw_port: u16) -> Path {
    Path {
        remote: SocketAddr::from(([198, 51, 100, 7], client_port)),
        local: SocketAddr::from(([203, 0, 113, 1], gw_port)),
    }
}

struct Sim {
    gw: Gw,
    now: Instant,
    t0: Instant,
}

impl Sim {
    fn new(cfg: Config) -> Self {
        let t0 = Instant::now();
        let users =
            TestUsers([(USER.to_string(), PASSWORD.to_string())].into_iter().collect(), vec![], Default::default());
        let pool = TestPool::range(Ipv4Addr::new(10, 40, 40, 2), Ipv4Addr::new(10, 40, 40, 20));
        Self { gw: Responder::new(Arc::new(cfg), TestRng(0x5eed_0001), users, pool, t0, UNIX0), now: t0, t0 }
    }

    fn send(&mut self, path: Path, d: &[u8]) -> Vec<Vec<u8>> {
        self.gw.handle_datagram(self.now, path, d);
        let mut out = vec![];
        while let Some(t) = self.gw.poll_transmit() {
            assert_eq!(t.path, path, "responses go back where the request came from");
            out.push(t.payload);
        }
        out
    }

    fn send_all(&mut self, path: Path, ds: &[Vec<u8>]) -> Vec<Vec<u8>> {
        ds.iter().flat_map(|d| self.send(path, d)).collect()
    }

    fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.gw.poll_event()).collect()
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        if self.gw.poll_timeout().is_some_and(|t| t <= self.now) {
            self.gw.handle_timeout(self.now);
        }
    }
}

fn client(seed: u64, p: Path) -> Initiator {
    Initiator::new(
        seed,
        IkeOffer::parse(P1, &[31, 20], false).unwrap(),
        EspOffer::parse(P2, &[], false).unwrap(),
        USER,
        p,
    )
}

/// IKE_SA_INIT up to keys; returns the response message.
fn init(sim: &mut Sim, c: &mut Initiator, p: Path, frag: bool) -> Message {
    let req = c.sa_init(DhGroup::Ecp384, None, frag);
    let r = sim.send(p, &req);
    assert_eq!(r.len(), 1);
    c.sa_init_response(&r[0]).unwrap()
}

/// The full EAP-MSCHAPv2 exchange; returns the final IKE_AUTH response payloads.
fn eap_login(sim: &mut Sim, c: &mut Initiator, p: Path, password: &str) -> Vec<Payload> {
    // HDR, SK {IDi, CP(REQ), SAi2, TSi, TSr} --> <-- HDR, SK {IDr, AUTH, EAP(Identity)}
    let r = sim.send_all(p, &c.auth1(None));
    let (_, pl) = c.open(&r);
    let idr = find(&pl, |x| if let Payload::IdR(i) = x { Some(i.clone()) } else { None }).unwrap();
    let auth = find(&pl, |x| if let Payload::Auth(a) = x { Some(a.clone()) } else { None }).unwrap();
    assert_eq!(auth.data, c.expected_responder_auth(PSK, &idr), "gateway PSK AUTH (RFC 7296 §2.15)");
    let req = eap_of(&pl).unwrap();
    assert_eq!((req.code, req.method.clone()), (eap::CODE_REQUEST, Some((eap::TYPE_IDENTITY, vec![]))));
    // HDR, SK {EAP(Identity)} --> <-- HDR, SK {EAP(MSCHAPv2 Challenge)}
    let r = sim
        .send_all(p, &c.eap(eap::CODE_RESPONSE, req.identifier, Some((eap::TYPE_IDENTITY, USER.as_bytes().to_vec()))));
    let (_, pl) = c.open(&r);
    let ch = eap_of(&pl).unwrap();
    // HDR, SK {EAP(MSCHAPv2 Response)} --> <-- HDR, SK {EAP(Success request | Failure request)}
    let (dg, nt, peer, auth_ch) = c.mschap_response(&ch, USER, password);
    let r = sim.send_all(p, &dg);
    let (_, pl) = c.open(&r);
    let res = eap_of(&pl).unwrap();
    let Some((eap::TYPE_MSCHAPV2, d)) = &res.method else { panic!("no mschapv2") };
    match MsChapV2::parse(d, true).unwrap() {
        MsChapV2::SuccessRequest { message, .. } => {
            let want = common::mschap::authenticator_response(password, &nt, &peer, &auth_ch, USER);
            assert!(message.starts_with(want.as_bytes()), "authenticator response (RFC 2759 §8.7)");
        }
        MsChapV2::FailureRequest { message, .. } => {
            assert!(message.starts_with(b"E=691 R=0 C="));
            let r = sim.send_all(
                p,
                &c.eap(
                    eap::CODE_RESPONSE,
                    res.identifier,
                    Some((eap::TYPE_MSCHAPV2, MsChapV2::FailureResponse.encode())),
                ),
            );
            return c.open(&r).1;
        }
        other => panic!("unexpected {other:?}"),
    }
    // HDR, SK {EAP(Success response)} --> <-- HDR, SK {EAP(Success)}
    let r = sim.send_all(
        p,
        &c.eap(eap::CODE_RESPONSE, res.identifier, Some((eap::TYPE_MSCHAPV2, MsChapV2::SuccessResponse.encode()))),
    );
    let (_, pl) = c.open(&r);
    assert_eq!(eap_of(&pl).unwrap().code, eap::CODE_SUCCESS);
    // HDR, SK {AUTH(MSK)} --> <-- HDR, SK {AUTH, CP(REPLY), SAr2, TSi, TSr}
    let msk = common::mschap::msk(password, &nt);
    let a = c.auth_value(&msk);
    let r = sim.send_all(
        p,
        &c.request(
            ExchangeType::IKE_AUTH,
            vec![Payload::Auth(AuthPayload { method: AuthMethod::SHARED_KEY_MIC, data: a })],
        ),
    );
    let (_, pl) = c.open(&r);
    if notify_of(&pl, NotifyType::AUTHENTICATION_FAILED).is_some() {
        // Refused after EAP (a client check): no AUTH to verify.
        return pl;
    }
    let auth = find(&pl, |x| if let Payload::Auth(a) = x { Some(a.clone()) } else { None }).unwrap();
    assert_eq!(auth.data, c.expected_responder_auth(&msk, &idr), "AUTH from the MSK (RFC 7296 §2.16)");
    pl
}

#[test]
fn invalid_ke_then_full_eap_mschapv2_login() {
    let mut sim = Sim::new(config(100, 1280));
    let p = path(4500, 4500);
    let mut c = client(1, p);
    // HDR, SAi1, KEi(31), Ni --> <-- HDR, N(INVALID_KE_PAYLOAD, 20)   (RFC 7296 §1.2)
    let r = sim.send(p, &c.sa_init(DhGroup::Curve25519, None, false));
    let n = c.sa_init_response(&r[0]).unwrap_err();
    assert_eq!((n.ty, n.data.clone()), (NotifyType::INVALID_KE_PAYLOAD, vec![0, 20]));
    assert_eq!(sim.gw.ike_sa_count(), 0, "no state for a refused KE");
    // Retry with group 20.
    let resp = init(&mut sim, &mut c, p, false);
    assert!(notify_of(&resp.payloads, NotifyType::NAT_DETECTION_SOURCE_IP).is_some());
    assert!(notify_of(&resp.payloads, NotifyType::NAT_DETECTION_DESTINATION_IP).is_some());
    assert_eq!(notify_of(&resp.payloads, NotifyType::SIGNATURE_HASH_ALGORITHMS).unwrap().data, vec![0, 2, 0, 3, 0, 4]);
    let pl = eap_login(&mut sim, &mut c, p, PASSWORD);
    // CP reply: first pool address, DNS and the split-include subnet.
    let cp = find(&pl, |x| if let Payload::Cp(c) = x { Some(c.clone()) } else { None }).unwrap();
    assert_eq!(cp.cfg_type, CfgType::CFG_REPLY);
    assert_eq!(ipv4(&cp.attributes[0].value), Ipv4Addr::new(10, 40, 40, 2));
    assert!(cp.attributes.iter().any(|a| a.ty == CpAttrType::INTERNAL_IP4_DNS && a.value == vec![10, 50, 0, 53]));
    assert!(cp
        .attributes
        .iter()
        .any(|a| a.ty == CpAttrType::INTERNAL_IP4_SUBNET && a.value == vec![10, 50, 0, 0, 255, 255, 255, 0]));
    // TS narrowed: TSi to the /32, TSr to the split subnet (RFC 7296 §2.9).
    let tsi = find(&pl, |x| if let Payload::TsI(t) = x { Some(t.clone()) } else { None }).unwrap();
    let tsr = find(&pl, |x| if let Payload::TsR(t) = x { Some(t.clone()) } else { None }).unwrap();
    assert_eq!(
        tsi.selectors,
        vec![TrafficSelector::ipv4_range(Ipv4Addr::new(10, 40, 40, 2), Ipv4Addr::new(10, 40, 40, 2))]
    );
    assert_eq!(
        tsr.selectors,
        vec![TrafficSelector::ipv4_range(Ipv4Addr::new(10, 50, 0, 0), Ipv4Addr::new(10, 50, 0, 255))]
    );
    let sar = find(&pl, |x| if let Payload::Sa(s) = x { Some(s.clone()) } else { None }).unwrap();
    let keys = c.child_keys(&sar);
    // Events: established, then the ESP SA with the same keys the initiator derived.
    let ev = sim.events();
    assert!(ev.iter().any(|e| matches!(e, Event::InitialContact { peer_id, .. } if peer_id == USER)));
    assert!(ev.iter().any(|e| matches!(e, Event::IkeSaEstablished { user: Some(u), assigned: Some(a), .. } if u == USER && *a == Ipv4Addr::new(10, 40, 40, 2))));
    let child = ev.into_iter().find_map(|e| if let Event::InstallChildSa(c) = e { Some(c) } else { None }).unwrap();
    assert_eq!(child.outbound_spi, 0xc1c2c3c4);
    assert_eq!(u32::from_be_bytes(sar.proposals[0].spi[..].try_into().unwrap()), child.inbound_spi);
    assert_eq!(child.inbound.encr, keys.encr_i);
    assert_eq!(child.inbound.integ, keys.integ_i);
    assert_eq!(child.outbound.encr, keys.encr_r);
    assert!(child.udp_encap, "IKE on 4500 means ESP in UDP");
    assert_eq!(sim.gw.established_count(), 1);
    assert_eq!(sim.gw.poll_timeout(), None, "established SAs have no negotiation deadline");
    // The verifier saw wall-clock time derived from the anchor.
    assert_eq!(sim.gw.verifier_mut().1, vec![UNIX0]);
}

#[test]
fn wrong_password_is_refused_and_cleaned_up() {
    let mut sim = Sim::new(config(100, 1280));
    let p = path(500, 500);
    let mut c = client(2, p);
    init(&mut sim, &mut c, p, false);
    let pl = eap_login(&mut sim, &mut c, p, "wrong");
    // <-- HDR, SK {EAP(Failure), N(AUTHENTICATION_FAILED)}
    assert_eq!(eap_of(&pl).unwrap().code, eap::CODE_FAILURE);
    assert!(notify_of(&pl, NotifyType::AUTHENTICATION_FAILED).is_some());
    let ev = sim.events();
    assert!(ev
        .iter()
        .any(|e| matches!(e, Event::AuthFailed { user, reason, .. } if user == USER && reason == "bad credentials")));
    assert!(!ev.iter().any(|e| matches!(e, Event::InstallChildSa(_))));
    assert!(sim.gw.pool_mut().used.is_empty());
    sim.advance(Duration::from_secs(31));
    assert!(sim.events().iter().any(|e| matches!(e, Event::IkeSaClosed { reason: CloseReason::AuthFailed, .. })));
    assert_eq!(sim.gw.ike_sa_count(), 0);
}

#[test]
fn retransmissions_get_cached_responses() {
    let mut sim = Sim::new(config(100, 1280));
    let p = path(500, 500);
    let mut c = client(3, p);
    let req = c.sa_init(DhGroup::Ecp384, None, false);
    let r1 = sim.send(p, &req);
    // RFC 7296 §2.1: the same request again gets the same response, and no second SA.
    let r2 = sim.send(p, &req);
    assert_eq!(r1, r2);
    assert_eq!(sim.gw.ike_sa_count(), 1);
    c.sa_init_response(&r1[0]).unwrap();
    let a1 = c.auth1(None);
    let resp1 = sim.send_all(p, &a1);
    // Lost response: the initiator retransmits the identical IKE_AUTH request.
    let resp2 = sim.send_all(p, &a1);
    assert_eq!(resp1, resp2);
    assert_eq!(sim.gw.stats().retransmits, 2);
    // An old message ID that is not the last request is dropped.
    let stale = c.request(ExchangeType::IKE_AUTH, vec![]);
    c.mid -= 1;
    let mut old = stale[0].clone();
    old[20..24].copy_from_slice(&0u32.to_be_bytes());
    assert!(sim.send(p, &old).is_empty());
    // A corrupted datagram fails integrity silently (RFC 7296 §2.21.1).
    let mut bad = stale[0].clone();
    let n = bad.len();
    bad[n - 1] ^= 0x55;
    assert!(sim.send(p, &bad).is_empty());
    assert_eq!(sim.gw.stats().integrity_failed, 1);
}

#[test]
fn cookie_above_half_open_threshold() {
    // RFC 7296 §2.6:  HDR, SAi1, KEi, Ni --> <-- HDR, N(COOKIE)
    //                 HDR, N(COOKIE), SAi1, KEi, Ni --> <-- HDR, SAr1, KEr, Nr
    let mut sim = Sim::new(config(1, 1280));
    let p = path(500, 500);
    let mut first = client(4, p);
    init(&mut sim, &mut first, p, false);
    let p2 = path(501, 500);
    let mut c = client(5, p2);
    let r = sim.send(p2, &c.sa_init(DhGroup::Ecp384, None, false));
    let n = c.sa_init_response(&r[0]).unwrap_err();
    assert_eq!(n.ty, NotifyType::COOKIE);
    assert_eq!(sim.gw.ike_sa_count(), 1);
    // A wrong cookie is challenged again.
    let r = sim.send(p2, &c.sa_init(DhGroup::Ecp384, Some(vec![1; 33]), false));
    assert_eq!(c.sa_init_response(&r[0]).unwrap_err().ty, NotifyType::COOKIE);
    // The right one is accepted.
    let r = sim.send(p2, &c.sa_init(DhGroup::Ecp384, Some(n.data), false));
    assert!(c.sa_init_response(&r[0]).is_ok());
    assert_eq!(sim.gw.ike_sa_count(), 2);
    assert_eq!(sim.gw.stats().cookies_sent, 2);
}

#[test]
fn negotiate_timeout_removes_half_open_and_unfinished() {
    let mut sim = Sim::new(config(100, 1280));
    let p = path(500, 500);
    let mut c = client(6, p);
    init(&mut sim, &mut c, p, false);
    let r = sim.send_all(p, &c.auth1(None));
    assert!(!r.is_empty());
    assert_eq!(sim.gw.poll_timeout(), Some(sim.t0 + Duration::from_secs(30)));
    sim.advance(Duration::from_secs(29));
    assert_eq!(sim.gw.ike_sa_count(), 1);
    sim.advance(Duration::from_secs(2));
    assert_eq!(sim.gw.ike_sa_count(), 0);
    assert!(sim
        .events()
        .iter()
        .any(|e| matches!(e, Event::IkeSaClosed { reason: CloseReason::NegotiationTimeout, .. })));
}

#[test]
fn fragmented_exchange_with_reordering() {
    // RFC 7383: both sides announce IKEV2_FRAGMENTATION_SUPPORTED; large messages go as SKF.
    let mut sim = Sim::new(config(100, 110));
    let p = path(4500, 4500);
    let mut c = client(7, p);
    let resp = init(&mut sim, &mut c, p, true);
    assert!(notify_of(&resp.payloads, NotifyType::IKEV2_FRAGMENTATION_SUPPORTED).is_some());
    // The initiator fragments at 400 bytes; pad IKE_AUTH with a large vendor ID to force it.
    let mut frags = c.request(
        ExchangeType::IKE_AUTH,
        vec![
            Payload::IdI(c.idi.clone()),
            Payload::VendorId(vec![0x42; 900]),
            Payload::Cp(CpPayload {
                cfg_type: CfgType::CFG_REQUEST,
                attributes: vec![CpAttribute { ty: CpAttrType::INTERNAL_IP4_ADDRESS, value: vec![] }],
            }),
            Payload::Sa(c.esp.to_sa(c.esp_spi)),
            Payload::TsI(TsPayload { selectors: vec![TrafficSelector::ipv4_any()] }),
            Payload::TsR(TsPayload { selectors: vec![TrafficSelector::ipv4_any()] }),
        ],
    );
    assert!(frags.len() >= 3);
    frags.reverse();
    let r = sim.send_all(p, &frags);
    assert!(r.len() >= 2, "response fragmented at 110 bytes");
    assert!(r.iter().all(|d| d.len() <= 110));
    let (_, pl) = c.open(&r.iter().rev().cloned().collect::<Vec<_>>());
    assert!(eap_of(&pl).is_some());
    // Retransmitted first fragment: all response fragments again.
    let again = sim.send(p, frags.last().unwrap());
    assert_eq!(again, r);
}

#[test]
fn psk_client_in_one_round_trip() {
    let mut sim = Sim::new(config(100, 1280));
    let p = path(500, 500);
    let mut c = client(8, p);
    init(&mut sim, &mut c, p, false);
    let r = sim.send_all(p, &c.auth1(Some(PSK)));
    let (_, pl) = c.open(&r);
    assert!(find(&pl, |x| if let Payload::Sa(s) = x { Some(s.clone()) } else { None }).is_some());
    assert!(sim.events().iter().any(|e| matches!(e, Event::InstallChildSa(_))));
    // A wrong PSK is refused.
    let mut c2 = client(9, path(502, 500));
    init(&mut sim, &mut c2, path(502, 500), false);
    let r = sim.send_all(path(502, 500), &c2.auth1(Some(b"nope")));
    let (_, pl) = c2.open(&r);
    assert!(notify_of(&pl, NotifyType::AUTHENTICATION_FAILED).is_some());
}

#[test]
fn every_ike_suite_and_group_completes() {
    for (i, (p1, group, dh)) in [
        ("aes128-sha256", 20u16, DhGroup::Ecp384),
        ("aes256-sha512", 21, DhGroup::Ecp521),
        ("aes128-sha1", 14, DhGroup::Modp2048),
        ("aes256gcm-prfsha384", 19, DhGroup::Ecp256),
        ("chacha20poly1305-prfsha256", 31, DhGroup::Curve25519),
    ]
    .into_iter()
    .enumerate()
    {
        let mut cfg = config(100, 1280);
        cfg.ike = IkeOffer::parse(p1, &[group], false).unwrap();
        let mut sim = Sim::new(cfg);
        let p = path(500, 500);
        let mut c = Initiator::new(
            100 + i as u64,
            IkeOffer::parse(p1, &[group], false).unwrap(),
            EspOffer::parse("aes256gcm", &[], false).unwrap(),
            USER,
            p,
        );
        let req = c.sa_init(dh, None, false);
        let r = sim.send(p, &req);
        c.sa_init_response(&r[0]).unwrap_or_else(|n| panic!("{p1}: {}", n.ty));
        let pl = eap_login(&mut sim, &mut c, p, PASSWORD);
        assert!(find(&pl, |x| if let Payload::Sa(s) = x { Some(s.clone()) } else { None }).is_some(), "{p1}");
        assert_eq!(sim.gw.established_count(), 1, "{p1}");
    }
}

#[test]
fn unsupported_critical_payload_in_sa_init() {
    let mut sim = Sim::new(config(100, 1280));
    let p = path(500, 500);
    let mut c = client(10, p);
    let mut req = c.sa_init(DhGroup::Ecp384, None, false);
    // Append an unknown payload type 200 with the critical bit after the last payload.
    let mut r = dialgate_ike::codec::Reader::init(&req[28..]);
    let last;
    loop {
        let at = 28 + r.used();
        let np = r.u8("np").unwrap();
        r.u8("f").unwrap();
        let len = r.u16("l").unwrap() as usize;
        r.take(len - 4, "b").unwrap();
        if np == 0 {
            last = at;
            break;
        }
    }
    req[last] = 200;
    req.extend_from_slice(&[0, 0x80, 0, 4]);
    let n = req.len() as u32;
    req[24..28].copy_from_slice(&n.to_be_bytes());
    let out = sim.send(p, &req);
    let m = Message::parse(&out[0]).unwrap();
    assert_eq!(m.payloads, vec![Payload::Notify(Notify::new(NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD, vec![200]))]);
}

#[test]
fn two_clients_get_different_addresses() {
    let mut sim = Sim::new(config(100, 1280));
    let mut addrs = vec![];
    for (seed, port) in [(11u64, 4500u16), (12, 4501)] {
        let p = path(port, 4500);
        let mut c = client(seed, p);
        init(&mut sim, &mut c, p, false);
        let pl = eap_login(&mut sim, &mut c, p, PASSWORD);
        let cp = find(&pl, |x| if let Payload::Cp(c) = x { Some(c.clone()) } else { None }).unwrap();
        addrs.push(ipv4(&cp.attributes[0].value));
    }
    assert_eq!(addrs, vec![Ipv4Addr::new(10, 40, 40, 2), Ipv4Addr::new(10, 40, 40, 3)]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Random and mutated datagrams never panic the responder (decode + state machine).
    #[test]
    fn responder_survives_garbage(flips in proptest::collection::vec((0usize..2000, any::<u8>()), 1..8), junk in proptest::collection::vec(any::<u8>(), 0..400)) {
        let mut sim = Sim::new(config(100, 1280));
        let p = path(500, 500);
        let mut c = client(13, p);
        let req = c.sa_init(DhGroup::Ecp384, None, false);
        let mut m = req.clone();
        for (i, v) in &flips {
            let n = m.len();
            m[i % n] ^= v;
        }
        sim.send(p, &m);
        sim.send(p, &junk);
        let r = sim.send(p, &req);
        if let Some(r0) = r.first() {
            if c.sa_init_response(r0).is_ok() {
                let mut a = c.auth1(None)[0].clone();
                for (i, v) in &flips {
                    let n = a.len();
                    a[i % n] ^= v;
                }
                sim.send(p, &a);
            }
        }
        let _ = sim.events();
    }
}

/// Hands out SPIs the way the data plane does (worker and slot in the low bits) and remembers them.
struct DataPlaneSpis(std::sync::Arc<std::sync::Mutex<Vec<u32>>>, u32);

impl dialgate_ike::responder::SpiSource for DataPlaneSpis {
    fn allocate(&mut self) -> Option<u32> {
        self.1 += 1;
        let spi = 0x0100_0000 | self.1;
        self.0.lock().unwrap().push(spi);
        Some(spi)
    }
}

/// Refuses clients whose private notify 0xF100 lacks `TAG=good`, accepts the rest with a reply notify.
struct TagCheck(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl dialgate_ike::responder::ClientCheck for TagCheck {
    fn update(&mut self, spi: u64, notifies: &[Notify]) {
        let d: Vec<String> = notifies.iter().map(|n| String::from_utf8_lossy(&n.data).into_owned()).collect();
        self.0.lock().unwrap().push(format!("update {spi:x} {}", d.join("|")));
    }
    fn closed(&mut self, spi: u64) {
        self.0.lock().unwrap().push(format!("closed {spi:x}"));
    }
    fn check(&mut self, c: &dialgate_ike::responder::ClientInfo<'_>) -> dialgate_ike::responder::CheckVerdict {
        use dialgate_ike::responder::CheckVerdict;
        let data: Vec<String> = c.notifies.iter().map(|n| String::from_utf8_lossy(&n.data).into_owned()).collect();
        self.0.lock().unwrap().push(format!("{}:{}:{}", c.user.unwrap_or("-"), c.now_unix, data.join("|")));
        if data.iter().any(|d| d == "TAG=good") {
            CheckVerdict::Accept {
                debug: vec!["tags check success".into()],
                notifies: vec![Notify::new(NotifyType(0xF101), b"ok".to_vec())],
            }
        } else {
            CheckVerdict::Refuse {
                reason: "tags check failure".into(),
                debug: vec!["tags check failure, abort".into()],
                notify: Some(Notify::new(NotifyType(0xF102), b"no tag".to_vec())),
            }
        }
    }
}

/// The data plane's SPI source picks the inbound SPI; a client check between EAP and the
/// CHILD_SA sees the private notifies of the first IKE_AUTH and can refuse the login.
#[test]
fn spi_source_and_client_check_hooks() {
    let spis = std::sync::Arc::new(std::sync::Mutex::new(vec![]));
    let seen = std::sync::Arc::new(std::sync::Mutex::new(vec![]));
    let mut sim = Sim::new(config(100, 1280));
    sim.gw.set_spi_source(Box::new(DataPlaneSpis(spis.clone(), 0)));
    sim.gw.set_client_check(Box::new(TagCheck(seen.clone())));

    // Accepted: the response carries the check's notify and the SPI comes from the source.
    let p = path(500, 500);
    let mut c = client(21, p);
    c.extra_auth1 = vec![
        Payload::Notify(Notify::new(NotifyType(0xF100), b"TAG=good".to_vec())),
        Payload::Notify(Notify::new(NotifyType::MOBIKE_SUPPORTED, vec![])),
    ];
    init(&mut sim, &mut c, p, false);
    let pl = eap_login(&mut sim, &mut c, p, PASSWORD);
    assert_eq!(notify_of(&pl, NotifyType(0xF101)).map(|n| n.data), Some(b"ok".to_vec()));
    let installed: Vec<u32> = sim
        .events()
        .into_iter()
        .filter_map(|e| if let Event::InstallChildSa(sa) = e { Some(sa.inbound_spi) } else { None })
        .collect();
    assert_eq!(installed, *spis.lock().unwrap(), "the SPI source chose the inbound SPI");
    assert_eq!(installed.len(), 1);
    let sa = find(&pl, |x| if let Payload::Sa(s) = x { Some(s.clone()) } else { None }).unwrap();
    assert_eq!(sa.proposals[0].spi, installed[0].to_be_bytes().to_vec(), "the SPI sent to the peer");

    // Refused: AUTHENTICATION_FAILED with the check's notify, no CHILD_SA, no address kept.
    let p2 = path(501, 500);
    let mut c2 = client(22, p2);
    c2.extra_auth1 = vec![Payload::Notify(Notify::new(NotifyType(0xF100), b"TAG=bad".to_vec()))];
    init(&mut sim, &mut c2, p2, false);
    let pl = eap_login(&mut sim, &mut c2, p2, PASSWORD);
    assert!(notify_of(&pl, NotifyType::AUTHENTICATION_FAILED).is_some());
    assert_eq!(notify_of(&pl, NotifyType(0xF102)).map(|n| n.data), Some(b"no tag".to_vec()));
    assert!(find(&pl, |x| if let Payload::Sa(s) = x { Some(s.clone()) } else { None }).is_none());
    let ev = sim.events();
    assert!(!ev.iter().any(|e| matches!(e, Event::InstallChildSa(_) | Event::IkeSaEstablished { .. })));
    assert!(ev.iter().any(|e| matches!(e, Event::AuthFailed { reason, .. } if reason == "tags check failure")));
    assert!(ev.iter().any(|e| matches!(e, Event::Debug { line, .. } if line == "tags check failure, abort")));
    assert_eq!(spis.lock().unwrap().len(), 1, "no SPI taken for a refused client");
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert_eq!(seen[0], format!("{USER}:{UNIX0}:TAG=good"), "only private notifies, with user and time");
    }
    // After the tunnel is up: a fresh token in INFORMATIONAL reaches the check, and so does the
    // end of the SA.
    let ike = sim.gw.established_spis()[0];
    let note = Payload::Notify(Notify::new(NotifyType(0xF101), b"token-2".to_vec()));
    let r = sim.send_all(p, &c.request(ExchangeType::INFORMATIONAL, vec![note]));
    assert!(c.open(&r).1.is_empty());
    let del = DeletePayload { protocol: ProtocolId::IKE, spi_size: 0, spis: vec![] };
    sim.send_all(p, &c.request(ExchangeType::INFORMATIONAL, vec![Payload::Delete(del)]));
    let seen = seen.lock().unwrap();
    assert!(seen.contains(&format!("update {ike:x} token-2")), "{seen:?}");
    assert!(seen.contains(&format!("closed {ike:x}")), "{seen:?}");
}

/// A logged-in client: its initiator, path, assigned address and CHILD_SA SPIs (ours, its).
fn logged_in(sim: &mut Sim, seed: u64, port: u16) -> (Initiator, Path, Ipv4Addr, u32, u32, u64) {
    let p = path(port, 4500);
    let mut c = client(seed, p);
    init(sim, &mut c, p, false);
    let pl = eap_login(sim, &mut c, p, PASSWORD);
    let cp = find(&pl, |x| if let Payload::Cp(c) = x { Some(c.clone()) } else { None }).unwrap();
    let (mut ours, mut theirs, mut ike) = (0, 0, 0);
    for e in sim.events() {
        if let Event::InstallChildSa(sa) = e {
            (ours, theirs, ike) = (sa.inbound_spi, sa.outbound_spi, sa.ike_spi);
        }
    }
    assert_ne!(ours, 0, "no CHILD_SA installed");
    (c, p, ipv4(&cp.attributes[0].value), ours, theirs, ike)
}

/// ```text
/// HDR, SK {D(ESP, their SPI)} -->  <-- HDR, SK {D(ESP, our SPI)}       (RFC 7296 §1.4.1)
/// HDR, SK {D(IKE)}            -->  <-- HDR, SK {}
/// ```
/// The CHILD_SA delete is answered with our SPI and reported; the IKE SA delete removes the SA
/// and returns its address to the pool (the next client gets it).
#[test]
fn informational_deletes_child_and_ike_sa() {
    let mut sim = Sim::new(config(100, 1280));
    let (mut c, p, addr, ours, theirs, ike) = logged_in(&mut sim, 31, 4500);
    // Liveness check: an empty request gets an empty response.
    let r = sim.send_all(p, &c.request(ExchangeType::INFORMATIONAL, vec![]));
    let (h, pl) = c.open(&r);
    assert!(h.is_response() && pl.is_empty());

    let del = DeletePayload { protocol: ProtocolId::ESP, spi_size: 4, spis: vec![theirs.to_be_bytes().to_vec()] };
    let r = sim.send_all(p, &c.request(ExchangeType::INFORMATIONAL, vec![Payload::Delete(del)]));
    let (_, pl) = c.open(&r);
    let d = find(&pl, |x| if let Payload::Delete(d) = x { Some(d.clone()) } else { None }).expect("our delete");
    assert_eq!((d.protocol, d.spis), (ProtocolId::ESP, vec![ours.to_be_bytes().to_vec()]));
    let ev = sim.events();
    assert!(ev.iter().any(|e| matches!(e, Event::ChildSaDeleted { ike_spi, inbound_spi, outbound_spi }
        if *ike_spi == ike && *inbound_spi == ours && *outbound_spi == theirs)));
    assert_eq!(sim.gw.established_count(), 1, "a CHILD_SA delete keeps the IKE SA");

    let del = DeletePayload { protocol: ProtocolId::IKE, spi_size: 0, spis: vec![] };
    let r = sim.send_all(p, &c.request(ExchangeType::INFORMATIONAL, vec![Payload::Delete(del)]));
    let (h, pl) = c.open(&r);
    assert!(h.is_response() && pl.is_empty(), "§1.4.1: empty response to an IKE SA delete");
    let ev = sim.events();
    assert!(ev.iter().any(|e| matches!(e, Event::IkeSaClosed { spi, reason: CloseReason::Deleted } if *spi == ike)));
    assert_eq!(sim.gw.ike_sa_count(), 0);
    let (_, _, again, ..) = logged_in(&mut sim, 32, 4501);
    assert_eq!(again, addr, "the address went back to the pool");
}

/// Dead-peer detection: an idle peer is probed with an empty INFORMATIONAL request of ours
/// (message ID 0, no I flag); an answer keeps the SA; ESP reported by the driver postpones the
/// probe; a peer that never answers is removed after the retries and its address reused.
#[test]
fn dpd_probes_idle_peers_and_removes_dead_ones() {
    let mut sim = Sim::new(config(100, 1280));
    sim.gw.set_dpd(Some(Dpd { interval: Duration::from_secs(10), retries: 2 }));
    let (mut c, p, addr, _, _, ike) = logged_in(&mut sim, 41, 4500);

    // ESP keeps it alive: no probe while the driver reports traffic.
    for _ in 0..3 {
        sim.now += Duration::from_secs(6);
        let now = sim.now;
        sim.gw.peer_alive(ike, now);
        sim.advance(Duration::ZERO);
        assert!(sim.gw.poll_transmit().is_none(), "probed a peer that sends ESP");
    }
    // Idle for the interval: a probe, which the client answers.
    sim.advance(Duration::from_secs(10));
    let probe = sim.gw.poll_transmit().expect("DPD probe");
    let (h, pl) = c.open(std::slice::from_ref(&probe.payload));
    assert_eq!(
        (h.exchange, h.is_response(), h.flags & FLAG_INITIATOR, h.message_id),
        (ExchangeType::INFORMATIONAL, false, 0, 0)
    );
    assert!(pl.is_empty());
    let ans = c.respond(ExchangeType::INFORMATIONAL, h.message_id, vec![]);
    assert!(sim.send_all(p, &ans).is_empty(), "a response is not answered");
    assert_eq!(sim.gw.established_count(), 1);

    // Silent from now on: probe, two retransmissions of the same datagram, then removal.
    sim.advance(Duration::from_secs(10));
    let first = sim.gw.poll_transmit().expect("second probe").payload;
    let (h, _) = c.open(std::slice::from_ref(&first));
    assert_eq!(h.message_id, 1, "our message IDs count up (§2.2)");
    let mut retx = 0;
    for _ in 0..10 {
        sim.advance(Duration::from_secs(10));
        while let Some(t) = sim.gw.poll_transmit() {
            assert_eq!(t.payload, first, "retransmissions repeat the request");
            retx += 1;
        }
    }
    assert_eq!(retx, 2);
    let ev = sim.events();
    assert!(ev.iter().any(|e| matches!(e, Event::IkeSaClosed { spi, reason: CloseReason::DeadPeer } if *spi == ike)));
    assert_eq!(sim.gw.ike_sa_count(), 0);
    let (_, _, again, ..) = logged_in(&mut sim, 42, 4501);
    assert_eq!(again, addr, "the dead peer's address is reused");
}

/// INITIAL_CONTACT (RFC 7296 §2.4): the same user logging in again with it replaces the older
/// IKE SA; `delete_ike_sa` sends the peer a DELETE and frees the address.
#[test]
fn initial_contact_replaces_and_admin_delete() {
    let mut sim = Sim::new(config(100, 1280));
    let (_, _, a1, _, _, ike1) = logged_in(&mut sim, 51, 4500);
    // The same user again, from another port, with INITIAL_CONTACT (the test client sends it).
    let p2 = path(4501, 4500);
    let mut c2 = client(52, p2);
    init(&mut sim, &mut c2, p2, false);
    eap_login(&mut sim, &mut c2, p2, PASSWORD);
    let ev = sim.events();
    assert!(ev.iter().any(|e| matches!(e, Event::InitialContact { .. })));
    assert!(ev.iter().any(|e| matches!(e, Event::IkeSaClosed { spi, reason: CloseReason::Replaced } if *spi == ike1)));
    let ike2 = sim.gw.established_spis();
    assert_eq!(ike2.len(), 1, "only the new SA is left");
    assert_ne!(ike2[0], ike1);
    let (_, _, a3, ..) = logged_in(&mut sim, 53, 4502);
    assert_eq!(a3, a1, "the replaced SA's address was returned");

    // The control plane deletes an SA: the peer is told (an INFORMATIONAL DELETE it can open),
    // the SA and its address go.
    let spi = sim.gw.established_spis()[0];
    let now = sim.now;
    assert!(sim.gw.delete_ike_sa(spi, now));
    let ev = sim.events();
    assert!(ev.iter().any(|e| matches!(e, Event::IkeSaClosed { reason: CloseReason::Deleted, .. })));
    assert_eq!(sim.gw.ike_sa_count(), 0);
    assert!(!sim.gw.delete_ike_sa(spi, now), "already gone");
    let sent: Vec<Vec<u8>> = std::iter::from_fn(|| sim.gw.poll_transmit()).map(|t| t.payload).collect();
    assert_eq!(sent.len(), 1, "one DELETE to the peer");
}

/// The InstallChildSa events drained from `sim`.
fn installs(sim: &mut Sim) -> Vec<dialgate_ike::responder::ChildSa> {
    sim.events().into_iter().filter_map(|e| if let Event::InstallChildSa(sa) = e { Some(sa) } else { None }).collect()
}

/// ```text
/// HDR, SK {N(REKEY_SA), SA, Ni, TSi, TSr}        -->  <-- HDR, SK {SA, Nr, TSi, TSr}
/// HDR, SK {N(REKEY_SA), SA, Ni, KEi, TSi, TSr}   -->  <-- HDR, SK {SA, Nr, KEr, TSi, TSr}
/// ```
/// CHILD_SA rekeying without and with PFS (RFC 7296 §1.3.3, §2.17): the new SA's keys are
/// KEYMAT = prf+(SK_d, [g^ir |] Ni | Nr) as the client computes them, the old SA is named, the
/// selectors are narrowed as in IKE_AUTH, and the old SA stays until the peer deletes it.
#[test]
fn create_child_sa_rekeys_with_and_without_pfs() {
    let mut cfg = config(100, 1280);
    cfg.esp = EspOffer::parse(P2, &[19, 20], false).unwrap();
    let mut sim = Sim::new(cfg);
    let (mut c, p, addr, ours, theirs, ike) = logged_in(&mut sim, 61, 4500);
    let k = c.keys.as_ref().unwrap();
    let (prf, sk_d) = (k.prf, k.sk_d.clone());

    for (round, pfs) in [(0u32, false), (1, true)] {
        let (old_ours, old_theirs) = if round == 0 { (ours, theirs) } else { (0, 0) };
        let new_spi = 0x7700_0000 + round;
        let ni = vec![0x40 + round as u8; 32];
        let mut rekey = Notify::new(NotifyType::REKEY_SA, vec![]);
        rekey.protocol = ProtocolId::ESP;
        let current_theirs = if round == 0 { old_theirs } else { 0x7700_0000 };
        rekey.spi = current_theirs.to_be_bytes().to_vec();
        let dh = pfs.then(|| DhPrivate::generate(DhGroup::Ecp256, &mut common::TestRng(99)).unwrap());
        let offer = EspOffer::parse(P2, if pfs { &[19] } else { &[] }, false).unwrap().to_sa(new_spi);
        let mut req = vec![Payload::Notify(rekey), Payload::Sa(offer), Payload::Nonce(ni.clone())];
        if let Some(d) = &dh {
            req.push(Payload::Ke(KePayload { group: DhGroup::Ecp256.id(), data: d.public().to_vec() }));
        }
        req.push(Payload::TsI(TsPayload { selectors: vec![TrafficSelector::ipv4_any()] }));
        req.push(Payload::TsR(TsPayload { selectors: vec![TrafficSelector::ipv4_any()] }));
        let r = sim.send_all(p, &c.request(ExchangeType::CREATE_CHILD_SA, req));
        let (h, pl) = c.open(&r);
        assert_eq!(h.exchange, ExchangeType::CREATE_CHILD_SA);
        let sa = find(&pl, |x| if let Payload::Sa(s) = x { Some(s.clone()) } else { None })
            .unwrap_or_else(|| panic!("round {round}: no SA in {pl:?}"));
        let nr = find(&pl, |x| if let Payload::Nonce(n) = x { Some(n.clone()) } else { None }).expect("Nr");
        let ker = find(&pl, |x| if let Payload::Ke(k) = x { Some(k.clone()) } else { None });
        assert_eq!(ker.is_some(), pfs, "KEr exactly with PFS");
        let tsi = find(&pl, |x| if let Payload::TsI(t) = x { Some(t.clone()) } else { None }).unwrap();
        assert_eq!(tsi.selectors, vec![TrafficSelector::ipv4_range(addr, addr)], "TSi narrowed to the address");
        let got = installs(&mut sim);
        assert_eq!(got.len(), 1);
        let child = &got[0];
        assert_eq!(child.ike_spi, ike);
        assert_eq!(child.outbound_spi, new_spi);
        assert_eq!(sa.proposals[0].spi, child.inbound_spi.to_be_bytes().to_vec());
        if round == 0 {
            assert_eq!(child.rekeys, Some(old_ours), "names the SA it replaces");
        }
        let gir = dh.as_ref().map(|d| d.agree(&ker.as_ref().unwrap().data).unwrap());
        let (el, il) = esp_key_lengths(&child.suite);
        let want = child_keymat(prf, &sk_d, gir.as_ref().map(|g| g.as_slice()), &ni, &nr, el, il).unwrap();
        assert_eq!(*child.inbound.encr, *want.encr_i, "initiator-to-responder key (round {round})");
        assert_eq!(*child.outbound.encr, *want.encr_r);
    }
    // Rekeying an SA that does not exist.
    let mut rekey = Notify::new(NotifyType::REKEY_SA, vec![]);
    rekey.protocol = ProtocolId::ESP;
    rekey.spi = 0xdead_beef_u32.to_be_bytes().to_vec();
    let req = vec![
        Payload::Notify(rekey),
        Payload::Sa(EspOffer::parse(P2, &[], false).unwrap().to_sa(5000)),
        Payload::Nonce(vec![1; 32]),
        Payload::TsI(TsPayload { selectors: vec![TrafficSelector::ipv4_any()] }),
        Payload::TsR(TsPayload { selectors: vec![TrafficSelector::ipv4_any()] }),
    ];
    let r = sim.send_all(p, &c.request(ExchangeType::CREATE_CHILD_SA, req));
    let (_, pl) = c.open(&r);
    assert!(notify_of(&pl, NotifyType::CHILD_SA_NOT_FOUND).is_some());
}

/// IKE SA rekeying (RFC 7296 §1.3.2, §2.18): SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr);
/// the new SA answers with the keys the client derives, takes over the CHILD_SAs and the
/// address, and the old SA's DELETE leaves both alone.
#[test]
fn create_child_sa_rekeys_the_ike_sa() {
    let mut sim = Sim::new(config(100, 1280));
    let (mut c, p, addr, _, theirs, old_ike) = logged_in(&mut sim, 71, 4500);
    let old_keys = c.keys.as_ref().unwrap();
    let (prf, sk_d) = (old_keys.prf, old_keys.sk_d.clone());
    let dh = DhPrivate::generate(DhGroup::Ecp384, &mut common::TestRng(7)).unwrap();
    let new_spi_i: u64 = 0x1122_3344_5566_7788;
    let mut offer = IkeOffer::parse(P1, &[20], false).unwrap().to_sa();
    for pr in &mut offer.proposals {
        pr.spi = new_spi_i.to_be_bytes().to_vec();
    }
    let ni = vec![0x33; 32];
    let req = vec![
        Payload::Sa(offer),
        Payload::Nonce(ni.clone()),
        Payload::Ke(KePayload { group: DhGroup::Ecp384.id(), data: dh.public().to_vec() }),
    ];
    let r = sim.send_all(p, &c.request(ExchangeType::CREATE_CHILD_SA, req));
    let (_, pl) = c.open(&r);
    let sa = find(&pl, |x| if let Payload::Sa(s) = x { Some(s.clone()) } else { None }).expect("SA");
    let nr = find(&pl, |x| if let Payload::Nonce(n) = x { Some(n.clone()) } else { None }).unwrap();
    let ker = find(&pl, |x| if let Payload::Ke(k) = x { Some(k.clone()) } else { None }).unwrap();
    let new_spi_r = u64::from_be_bytes(sa.proposals[0].spi.clone().try_into().expect("8-byte SPI"));
    let ev = sim.events();
    assert!(ev.iter().any(
        |e| matches!(e, Event::IkeSaRekeyed { old_spi, new_spi } if *old_spi == old_ike && *new_spi == new_spi_r)
    ));

    // The client's view of the new SA: keys from the old SK_d and the new DH.
    let suite = IkeOffer::parse(P1, &[20], false).unwrap().select(&sa, DhGroup::Ecp384.id()).unwrap().suite;
    let gir = dh.agree(&ker.data).unwrap();
    let seed = rekey_skeyseed(prf, &sk_d, &gir, &ni, &nr);
    let keys = IkeKeys::derive(suite.prf, suite.encr, suite.integ, &seed, &ni, &nr, new_spi_i, new_spi_r).unwrap();
    let old_ciphers = (
        c.out.replace(SkCipher::outbound(&keys, false).unwrap()),
        c.inb.replace(SkCipher::inbound(&keys, false).unwrap()),
    );
    let old = (c.spi_i, c.spi_r, c.mid);
    (c.spi_i, c.spi_r, c.mid) = (new_spi_i, new_spi_r, 0);
    // A liveness check on the new SA with the new keys.
    let r = sim.send_all(p, &c.request(ExchangeType::INFORMATIONAL, vec![]));
    let (h, pl) = c.open(&r);
    assert!(h.is_response() && pl.is_empty() && h.spi_r == new_spi_r);
    let new_state = (c.out.take(), c.inb.take(), c.spi_i, c.spi_r, c.mid);

    // The client deletes the old IKE SA (old keys and SPIs): the children and address stay.
    (c.out, c.inb) = old_ciphers;
    (c.spi_i, c.spi_r, c.mid) = old;
    let del = DeletePayload { protocol: ProtocolId::IKE, spi_size: 0, spis: vec![] };
    let r = sim.send_all(p, &c.request(ExchangeType::INFORMATIONAL, vec![Payload::Delete(del)]));
    let (h, _) = c.open(&r);
    assert_eq!(h.spi_r, old_ike);
    let ev = sim.events();
    assert!(ev
        .iter()
        .any(|e| matches!(e, Event::IkeSaClosed { spi, reason: CloseReason::Deleted } if *spi == old_ike)));
    assert_eq!(sim.gw.established_spis(), vec![new_spi_r]);
    // The CHILD_SA moved: deleting it on the new SA is answered with our SPI.
    (c.out, c.inb, c.spi_i, c.spi_r, c.mid) = new_state;
    let del = DeletePayload { protocol: ProtocolId::ESP, spi_size: 4, spis: vec![theirs.to_be_bytes().to_vec()] };
    let r = sim.send_all(p, &c.request(ExchangeType::INFORMATIONAL, vec![Payload::Delete(del)]));
    let (_, pl) = c.open(&r);
    assert!(find(&pl, |x| if let Payload::Delete(d) = x { Some(d.clone()) } else { None }).is_some());
    // The address is still taken by the new SA: the next client gets another one.
    let (_, _, other, ..) = logged_in(&mut sim, 72, 4501);
    assert_ne!(other, addr);
}

/// The debug lines drained from `sim` that contain `needle`.
fn debug_lines(sim: &mut Sim, needle: &str) -> Vec<String> {
    sim.events()
        .into_iter()
        .filter_map(|e| if let Event::Debug { line, .. } = e { Some(line) } else { None })
        .filter(|l| l.contains(needle))
        .collect()
}

#[test]
fn per_address_half_open_limit_and_quiet_flood_lines() {
    // strongSwan's block_threshold: an address holding its share of half-open SAs gets no
    // answer at all (no parsing, no DH), other addresses are served as usual.
    let mut cfg = config(1000, 1280);
    cfg.per_address_half_open = 3;
    let mut sim = Sim::new(cfg);
    let mut answered = Vec::new();
    for i in 0..10u16 {
        let p = path(600 + i, 500);
        let mut c = client(100 + u64::from(i), p);
        let r = sim.send(p, &c.sa_init(DhGroup::Ecp384, None, false));
        if !r.is_empty() {
            c.sa_init_response(&r[0]).expect("SA_INIT answered");
            answered.push((c, p));
        }
    }
    assert_eq!(answered.len(), 3);
    assert_eq!((sim.gw.half_open_count(), sim.gw.ike_sa_count(), sim.gw.stats().blocked), (3, 3, 7));
    // Seven drops in the same second: one line.
    let lines = debug_lines(&mut sim, "half-open IKE SAs (limit 3)");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("198.51.100.7 holds 3 half-open"), "{}", lines[0]);

    // Another address is not affected.
    let other = Path { remote: SocketAddr::from(([198, 51, 100, 8], 500)), local: path(500, 500).local };
    let mut o = client(200, other);
    init(&mut sim, &mut o, other, false);
    assert_eq!(sim.gw.half_open_count(), 4);

    // A second later the next drop is logged with the count of those held back.
    sim.advance(Duration::from_secs(1));
    let p = path(700, 500);
    assert!(sim.send(p, &client(300, p).sa_init(DhGroup::Ecp384, None, false)).is_empty());
    let lines = debug_lines(&mut sim, "half-open IKE SAs (limit 3)");
    assert_eq!(lines.len(), 1);
    assert!(lines[0].contains("(6 more dropped since the last line)"), "{}", lines[0]);

    // One negotiation of the blocked address completes: it may start another.
    let (mut c, p) = answered.remove(0);
    eap_login(&mut sim, &mut c, p, PASSWORD);
    assert_eq!((sim.gw.half_open_count(), sim.gw.established_count()), (3, 1));
    let p = path(701, 500);
    let mut again = client(301, p);
    init(&mut sim, &mut again, p, false);
    assert_eq!(sim.gw.half_open_count(), 4);

    // negotiate-timeout empties the half-open table and the address's count with it.
    sim.advance(Duration::from_secs(31));
    assert_eq!((sim.gw.half_open_count(), sim.gw.ike_sa_count(), sim.gw.established_count()), (0, 1, 1));
    let p = path(702, 500);
    let mut later = client(302, p);
    init(&mut sim, &mut later, p, false);
}

#[test]
fn cookie_lines_are_rate_limited() {
    let mut sim = Sim::new(config(1, 1280));
    let p = path(500, 500);
    init(&mut sim, &mut client(4, p), p, false);
    for i in 0..20u16 {
        let p = path(800 + i, 500);
        let mut c = client(400 + u64::from(i), p);
        let r = sim.send(p, &c.sa_init(DhGroup::Ecp384, None, false));
        assert_eq!(c.sa_init_response(&r[0]).unwrap_err().ty, NotifyType::COOKIE, "every request is challenged");
    }
    assert_eq!(sim.gw.stats().cookies_sent, 20);
    let lines = debug_lines(&mut sim, "sending COOKIE to");
    assert_eq!(lines.len(), 1, "{lines:?}");
    // The driver takes the peer of a line from its end.
    assert!(lines[0].ends_with("sending COOKIE to 198.51.100.7:800"), "{}", lines[0]);
    sim.advance(Duration::from_secs(1));
    let p = path(900, 500);
    sim.send(p, &client(500, p).sa_init(DhGroup::Ecp384, None, false));
    let lines = debug_lines(&mut sim, "sending COOKIE to");
    assert_eq!(lines.len(), 1);
    assert!(lines[0].contains("half-open 1 (19 more COOKIEs since the last line)"), "{}", lines[0]);
}

#[test]
fn indexes_follow_logins_rekeys_deletes_and_timeouts() {
    // The counts and the timer are indexes kept beside the SA table: check them against
    // what the table holds through every way an SA comes and goes.
    let mut sim = Sim::new(config(100, 1280));
    sim.gw.set_dpd(Some(Dpd { interval: Duration::from_secs(20), retries: 2 }));
    let mut spis = Vec::new();
    for i in 0..6u16 {
        let (.., ike) = logged_in(&mut sim, 60 + u64::from(i), 5000 + i);
        spis.push(ike);
    }
    // logged_in's client sends INITIAL_CONTACT as the same user: each login replaced the last.
    assert_eq!(sim.gw.established_count(), 1);
    assert_eq!(sim.gw.established_spis(), vec![*spis.last().unwrap()]);
    assert_eq!(sim.gw.ike_sa_count(), 1);
    // Two half-open ones: the next timer is the earliest of their deadline and DPD.
    let p = path(6000, 500);
    init(&mut sim, &mut client(70, p), p, false);
    assert_eq!(sim.gw.half_open_count(), 1);
    let t = sim.gw.poll_timeout().expect("a timer");
    assert_eq!(t, sim.now + Duration::from_secs(20), "DPD of the idle established SA comes first");
    sim.events();
    // DPD probes go unanswered: the established SA dies, the half-open one times out.
    for _ in 0..40 {
        sim.advance(Duration::from_secs(5));
        std::iter::from_fn(|| sim.gw.poll_transmit()).for_each(drop);
    }
    let ev = sim.events();
    assert!(ev.iter().any(|e| matches!(e, Event::IkeSaClosed { reason: CloseReason::DeadPeer, .. })));
    assert!(ev.iter().any(|e| matches!(e, Event::IkeSaClosed { reason: CloseReason::NegotiationTimeout, .. })));
    assert_eq!((sim.gw.ike_sa_count(), sim.gw.half_open_count(), sim.gw.established_count()), (0, 0, 0));
    assert!(sim.gw.established_spis().is_empty());
    assert_eq!(sim.gw.poll_timeout(), None, "no timer left for SAs that are gone");
}
