//! dialgate's initiator (`dialgate_ike::initiator`) against the responder, in memory: INVALID_KE
//! retry, PSK check of the gateway, EAP-MSCHAPv2, CP, CHILD_SA keys equal on both sides, private
//! notifies both ways, refusals with their notify, fragmentation.
mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{mschap, TestPool, TestRng, TestUsers};
use dialgate_ike::initiator::{
    EapPeer, Established, Initiator, InitiatorConfig, InitiatorError, MsChapAnswer, Progress,
};
use dialgate_ike::message::{IdType, Identification, Notify, NotifyType};
use dialgate_ike::proposal::{EspOffer, IkeOffer};
use dialgate_ike::responder::{CheckVerdict, ClientCheck, ClientInfo, Config, Event, Path, Responder};
use zeroize::Zeroizing;

const P1: &str = "aes128-sha256 aes256-sha256 aes128gcm-prfsha256 aes256gcm-prfsha384 chacha20poly1305-prfsha256";
const P2: &str = "aes128-sha1 aes256-sha1 aes128-sha256 aes256-sha256 aes128gcm aes256gcm chacha20poly1305";
const PSK: &[u8] = b"dialgate-psk";
const USER: &str = "Test";
const PASSWORD: &str = "p@ssw0rd345678";

struct Peer(String);
impl EapPeer for Peer {
    fn mschapv2(&mut self, auth: &[u8; 16], peer: &[u8; 16], user: &str) -> MsChapAnswer {
        let nt = mschap::nt_response(auth, peer, user, &self.0);
        MsChapAnswer {
            nt_response: nt,
            expected_success: mschap::authenticator_response(&self.0, &nt, peer, auth, user),
            msk: Zeroizing::new(mschap::msk(&self.0, &nt)),
        }
    }
}

fn gw_config(fragment_len: usize) -> Config {
    Config {
        ike: IkeOffer::parse(P1, &[20, 21], false).unwrap(),
        esp: EspOffer::parse(P2, &[], false).unwrap(),
        local_id: Identification { ty: IdType::ID_FQDN, data: b"gw.dialgate.test".to_vec() },
        psk: Zeroizing::new(PSK.to_vec()),
        certificate: None,
        eap_identity_request: true,
        cookie_threshold: 100,
        per_address_half_open: 0,
        fragment_len,
        negotiate_timeout: Duration::from_secs(30),
        dns: vec![Ipv4Addr::new(10, 50, 0, 53)],
        split_include: vec![(Ipv4Addr::new(10, 50, 0, 0), 24)],
        server_name: "dialgate".into(),
    }
}

fn gw(fragment_len: usize) -> Responder<TestRng, TestUsers, TestPool> {
    let users = TestUsers([(USER.to_string(), PASSWORD.to_string())].into_iter().collect(), vec![], Default::default());
    let pool = TestPool::range(Ipv4Addr::new(10, 40, 40, 2), Ipv4Addr::new(10, 40, 40, 20));
    Responder::new(Arc::new(gw_config(fragment_len)), TestRng(0x5eed_0001), users, pool, Instant::now(), 1_700_000_000)
}

fn client_cfg(psk: &[u8], notifies: Vec<Notify>, frag: Option<usize>) -> InitiatorConfig {
    InitiatorConfig {
        // Group 31 first: the gateway wants 20, so the client must retry after INVALID_KE.
        ike: IkeOffer::parse(P1, &[31, 20], false).unwrap(),
        esp: EspOffer::parse(P2, &[], false).unwrap(),
        idi: Identification { ty: IdType::ID_RFC822_ADDR, data: USER.as_bytes().to_vec() },
        user: USER.into(),
        psk: Zeroizing::new(psk.to_vec()),
        auth_notifies: notifies,
        fragment_len: frag,
    }
}

/// Client path (local = client) and the gateway's view of it.
fn paths() -> (Path, Path) {
    let c: SocketAddr = "192.0.2.10:500".parse().unwrap();
    let g: SocketAddr = "203.0.113.1:500".parse().unwrap();
    (Path { local: c, remote: g }, Path { local: g, remote: c })
}

/// Runs the client against the gateway until it finishes; returns the result and the number
/// of IKE_SA_INIT requests sent.
fn drive(
    gw: &mut Responder<TestRng, TestUsers, TestPool>,
    cfg: InitiatorConfig,
    password: &str,
) -> (Result<Box<Established>, InitiatorError>, usize) {
    let (r, n, _) = drive_keep(gw, cfg, password);
    (r, n)
}

type Client = Initiator<TestRng, Peer>;

fn exchange(gw: &mut Responder<TestRng, TestUsers, TestPool>, ds: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let (_, gp) = paths();
    let mut replies = Vec::new();
    for d in ds {
        gw.handle_datagram(Instant::now(), gp, d);
        while let Some(t) = gw.poll_transmit() {
            replies.push(t.payload);
        }
    }
    replies
}

/// Like `drive`, and hands back the client for later exchanges.
fn drive_keep(
    gw: &mut Responder<TestRng, TestUsers, TestPool>,
    cfg: InitiatorConfig,
    password: &str,
) -> (Result<Box<Established>, InitiatorError>, usize, Client) {
    let (cp, _) = paths();
    // A fresh seed per attempt: a repeated SPIi from the same address would be a retransmission.
    static SEED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(77);
    let seed = SEED.fetch_add(1000, std::sync::atomic::Ordering::Relaxed);
    let mut c = Initiator::new(cfg, TestRng(seed), Peer(password.into()), cp, 0xc1c2c3c4).unwrap();
    let mut out = c.start().unwrap();
    let mut inits = 1;
    for _ in 0..20 {
        let replies = exchange(gw, &out);
        out = Vec::new();
        for r in replies {
            match c.handle_datagram(&r) {
                Ok(Progress::Send(d)) => {
                    if d.len() == 1 && d[0].get(18) == Some(&34) {
                        inits += 1;
                    }
                    out = d
                }
                Ok(Progress::Established(e)) => return (Ok(e), inits, c),
                Ok(Progress::Pending | Progress::Answered(_)) => {}
                Err(e) => return (Err(e), inits, c),
            }
        }
        assert!(!out.is_empty(), "stalled");
    }
    panic!("no result")
}

#[test]
fn connects_with_eap_mschapv2_and_keys_match() {
    let mut g = gw(1280);
    let (r, inits) = drive(&mut g, client_cfg(PSK, vec![], None), PASSWORD);
    let e = r.unwrap();
    assert_eq!(inits, 2, "one INVALID_KE retry");
    assert_eq!(e.assigned, Some(Ipv4Addr::new(10, 40, 40, 2)));
    assert_eq!(e.dns, vec![Ipv4Addr::new(10, 50, 0, 53)]);
    assert_eq!(e.child.inbound_spi, 0xc1c2c3c4);
    let mut installed = None;
    while let Some(ev) = g.poll_event() {
        if let Event::InstallChildSa(sa) = ev {
            installed = Some(sa);
        }
    }
    let sa = installed.expect("gateway installed a CHILD_SA");
    assert_eq!(sa.outbound_spi, e.child.inbound_spi);
    assert_eq!(sa.inbound_spi, e.child.outbound_spi);
    assert_eq!(sa.suite, e.child.suite);
    // Gateway inbound = client outbound (initiator→responder keys).
    assert_eq!(&sa.inbound.encr[..], &e.child.keys.encr_i[..]);
    assert_eq!(&sa.outbound.encr[..], &e.child.keys.encr_r[..]);
    assert_eq!(&sa.inbound.integ[..], &e.child.keys.integ_i[..]);
    assert_eq!(g.established_count(), 1);
}

#[test]
fn wrong_password_and_wrong_psk_fail() {
    let mut g = gw(1280);
    let (r, _) = drive(&mut g, client_cfg(PSK, vec![], None), "wrong");
    assert!(matches!(r, Err(InitiatorError::EapFailed(ref m)) if m.contains("E=691")), "{r:?}");
    let (r, _) = drive(&mut g, client_cfg(b"other-psk", vec![], None), PASSWORD);
    assert_eq!(r.unwrap_err(), InitiatorError::GatewayAuth("AUTH does not verify"));
}

struct Tags;
impl ClientCheck for Tags {
    fn check(&mut self, c: &ClientInfo<'_>) -> CheckVerdict {
        if c.notifies.iter().any(|n| n.ty == NotifyType(0xF100) && n.data == b"UID=GOOD") {
            CheckVerdict::Accept { debug: vec![], notifies: vec![Notify::new(NotifyType(0xF103), b"tag".to_vec())] }
        } else {
            CheckVerdict::Refuse {
                reason: "no".into(),
                debug: vec![],
                notify: Some(Notify::new(NotifyType(0xF102), b"EMS ZTNA tags check failed".to_vec())),
            }
        }
    }
}

#[test]
fn private_notifies_both_ways_and_refusal() {
    let mut g = gw(1280);
    g.set_client_check(Box::new(Tags));
    let good = vec![Notify::new(NotifyType(0xF100), b"UID=GOOD".to_vec())];
    let e = drive(&mut g, client_cfg(PSK, good, None), PASSWORD).0.unwrap();
    assert_eq!(e.private_notifies, vec![Notify::new(NotifyType(0xF103), b"tag".to_vec())]);
    let bad = vec![Notify::new(NotifyType(0xF100), b"UID=BAD".to_vec())];
    match drive(&mut g, client_cfg(PSK, bad, None), PASSWORD).0 {
        Err(InitiatorError::Refused { notify, private }) => {
            assert_eq!(notify, NotifyType::AUTHENTICATION_FAILED);
            assert_eq!(private[0].data, b"EMS ZTNA tags check failed");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn fragmented_exchange_with_a_large_notify() {
    let mut g = gw(576);
    let big = vec![Notify::new(NotifyType(0xF101), vec![b'x'; 3000])];
    let e = drive(&mut g, client_cfg(PSK, big, Some(576)), PASSWORD).0.unwrap();
    assert!(e.assigned.is_some());
}

#[test]
fn token_update_in_informational_after_establishment() {
    let mut g = gw(1280);
    let (r, _, mut c) = drive_keep(&mut g, client_cfg(PSK, vec![], None), PASSWORD);
    r.unwrap();
    let req = c.informational(vec![Notify::new(NotifyType(0xF101), b"eyJ.token.sig".to_vec())]).unwrap();
    let replies = exchange(&mut g, &req);
    assert_eq!(replies.len(), 1);
    assert!(matches!(c.handle_datagram(&replies[0]), Ok(Progress::Answered(_))));
    // A replayed answer is not taken twice.
    assert!(matches!(c.handle_datagram(&replies[0]), Ok(Progress::Pending)));
    let fresh = Initiator::new(client_cfg(PSK, vec![], None), TestRng(5), Peer(PASSWORD.into()), paths().0, 1).unwrap();
    let mut fresh = fresh;
    assert!(fresh.informational(vec![]).is_err(), "not before establishment");
}

proptest::proptest! {
    /// Whatever the "gateway" sends, in any state, the initiator answers or errs; it never panics.
    #[test]
    fn garbage_never_panics(junk in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600), 1..6), cut in 0usize..600) {
        let mut g = gw(1280);
        let (cp, gp) = paths();
        let mut c = Initiator::new(client_cfg(PSK, vec![], None), TestRng(9), Peer(PASSWORD.into()), cp, 7).unwrap();
        let mut out = c.start().unwrap();
        // Walk a few real steps, feeding junk (and truncated or bit-flipped real replies) at each.
        for _ in 0..6 {
            let mut replies = Vec::new();
            for d in &out {
                g.handle_datagram(Instant::now(), gp, d);
                while let Some(t) = g.poll_transmit() {
                    replies.push(t.payload);
                }
            }
            for j in &junk {
                let _ = c.handle_datagram(j);
            }
            let mut next = None;
            for r in replies {
                let _ = c.handle_datagram(&r[..cut.min(r.len())]);
                let mut flipped = r.clone();
                if let Some(b) = flipped.get_mut(cut % r.len().max(1)) {
                    *b ^= 0x40;
                }
                let _ = c.handle_datagram(&flipped);
                if let Ok(Progress::Send(d)) = c.handle_datagram(&r) {
                    next = Some(d);
                }
            }
            match next {
                Some(d) => out = d,
                None => break,
            }
        }
    }
}
