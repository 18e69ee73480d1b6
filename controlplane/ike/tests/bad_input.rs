//! Bad input through the responder: malformed IKE_SA_INIT requests (truncated, lying lengths,
//! unknown critical payloads, zero-length and oversized nonces, bad KE), encrypted garbage on an
//! established IKE SA (bad ICV, bad SK padding, inner chains with unknown critical payloads or
//! lying lengths, wrong message IDs), EAP-MSCHAPv2 state abuse in the style of CVE-2015-8023
//! (a Success-Response before any challenge, EAP-Success from the peer, AUTH without EAP) and
//! oversized EAP / MSCHAPv2 data in the style of CVE-2025-62291.
//!
//! Each is counted in [`Stats`] (malformed / integrity_failed / unexpected) or answered with the
//! right notify, never panics, and the established IKE SA still answers afterwards, while a new
//! client completes a full EAP-MSCHAPv2 login.
//!
//! With `DIALGATE_WRITE_FUZZ_CORPUS=<dir>` set, the tests also write every datagram they send to
//! `<dir>/message/` and a whole login as a frame sequence (the `responder` fuzz target's input
//! format, against the same configuration and randomness) to `<dir>/responder/`: the seeds of
//! the committed fuzz corpora.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aes::cipher::{block_padding::NoPadding, BlockEncryptMut, KeyIvInit};
use common::initiator::{eap_of, find, notify_of, Initiator};
use common::{TestPool, TestRng, TestUsers};
use dialgate_ike::codec::Codec;
use dialgate_ike::crypto::dh::DhGroup;
use dialgate_ike::crypto::Entropy;
use dialgate_ike::eap::{self, EapPacket, MsChapV2};
use dialgate_ike::message::*;
use dialgate_ike::proposal::{EspOffer, IkeOffer};
use dialgate_ike::responder::{Config, Event, Path, Responder, Stats};
use zeroize::Zeroizing;

const P1: &str = "aes128-sha256 aes128gcm-prfsha256";
const P2: &str = "aes128gcm aes256gcm";
const PSK: &[u8] = b"dialgate-psk";
const USER: &str = "Test";
const PASSWORD: &str = "p@ssw0rd345678";

fn config() -> Config {
    Config {
        ike: IkeOffer::parse(P1, &[19, 20], false).expect("p1"),
        esp: EspOffer::parse(P2, &[], false).expect("p2"),
        local_id: Identification { ty: IdType::ID_FQDN, data: b"gw.dialgate.test".to_vec() },
        psk: Zeroizing::new(PSK.to_vec()),
        eap_identity_request: true,
        cookie_threshold: 1000,
        per_address_half_open: 0,
        fragment_len: 1280,
        negotiate_timeout: Duration::from_secs(30),
        dns: vec![],
        split_include: vec![(Ipv4Addr::new(10, 50, 0, 0), 24)],
        server_name: "dialgate".into(),
        certificate: None,
    }
}

fn path(n: u8) -> Path {
    Path { remote: SocketAddr::from(([198, 51, 100, n], 4500)), local: SocketAddr::from(([203, 0, 113, 1], 4500)) }
}

struct Sim {
    gw: Responder<TestRng, TestUsers, TestPool>,
    now: Instant,
    sent: Vec<Vec<u8>>,
}

impl Sim {
    fn new() -> Sim {
        let now = Instant::now();
        let users =
            TestUsers([(USER.to_string(), PASSWORD.to_string())].into_iter().collect(), vec![], Default::default());
        let pool = TestPool::range(Ipv4Addr::new(10, 40, 40, 2), Ipv4Addr::new(10, 40, 40, 200));
        Sim {
            gw: Responder::new(Arc::new(config()), TestRng(0xbad1), users, pool, now, 1_700_000_000),
            now,
            sent: vec![],
        }
    }

    fn send(&mut self, p: Path, ds: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let mut out = vec![];
        for d in ds {
            self.sent.push(d.clone());
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

    /// Sends `d`, expects no answer, and returns how the counters moved.
    fn silent(&mut self, name: &str, p: Path, d: Vec<u8>) -> Stats {
        let before = self.gw.stats();
        let r = self.send(p, &[d]);
        assert!(r.is_empty(), "{name}: no answer");
        let a = self.gw.stats();
        Stats {
            malformed: a.malformed - before.malformed,
            integrity_failed: a.integrity_failed - before.integrity_failed,
            unexpected: a.unexpected - before.unexpected,
            retransmits: a.retransmits - before.retransmits,
            cookies_sent: a.cookies_sent - before.cookies_sent,
            blocked: a.blocked - before.blocked,
            unsupported_critical: a.unsupported_critical - before.unsupported_critical,
        }
    }

    fn write_corpus(&self, name: &str) {
        let Some(dir) = std::env::var_os("DIALGATE_WRITE_FUZZ_CORPUS") else { return };
        let dir = std::path::Path::new(&dir).join("message");
        std::fs::create_dir_all(&dir).expect("corpus dir");
        for (i, d) in self.sent.iter().enumerate() {
            std::fs::write(dir.join(format!("{name}-{i:03}")), d).expect("write seed");
        }
    }
}

fn counted(malformed: u64, integrity_failed: u64, unexpected: u64) -> Stats {
    Stats { malformed, integrity_failed, unexpected, ..Stats::default() }
}

fn client(seed: u64, p: Path) -> Initiator {
    Initiator::new(
        seed,
        IkeOffer::parse(P1, &[19], false).expect("p1"),
        EspOffer::parse(P2, &[], false).expect("p2"),
        USER,
        p,
    )
}

/// IKE_SA_INIT with keys on both sides.
fn init(sim: &mut Sim, c: &mut Initiator, p: Path) {
    let req = c.sa_init(DhGroup::Ecp256, None, false);
    let r = sim.send(p, &[req]);
    assert_eq!(r.len(), 1);
    c.sa_init_response(&r[0]).expect("IKE_SA_INIT accepted");
}

/// First IKE_AUTH; returns the EAP Identity request.
fn auth1(sim: &mut Sim, c: &mut Initiator, p: Path) -> EapPacket {
    let d = c.auth1(None);
    let (_, pl) = c.open(&sim.send(p, &d));
    eap_of(&pl).expect("EAP identity request")
}

/// EAP Identity; returns the MSCHAPv2 challenge.
fn identity(sim: &mut Sim, c: &mut Initiator, p: Path, req: &EapPacket) -> EapPacket {
    let d = c.eap(eap::CODE_RESPONSE, req.identifier, Some((eap::TYPE_IDENTITY, USER.as_bytes().to_vec())));
    let (_, pl) = c.open(&sim.send(p, &d));
    eap_of(&pl).expect("challenge")
}

/// A whole EAP-MSCHAPv2 login that must succeed; returns the initiator for later exchanges.
fn full_login(sim: &mut Sim, seed: u64, p: Path) -> Initiator {
    let mut c = client(seed, p);
    init(sim, &mut c, p);
    let req = auth1(sim, &mut c, p);
    let ch = identity(sim, &mut c, p, &req);
    let (dg, nt, _, _) = c.mschap_response(&ch, USER, PASSWORD);
    let (_, pl) = c.open(&sim.send(p, &dg));
    let res = eap_of(&pl).expect("success request");
    let d = c.eap(eap::CODE_RESPONSE, res.identifier, Some((eap::TYPE_MSCHAPV2, MsChapV2::SuccessResponse.encode())));
    let (_, pl) = c.open(&sim.send(p, &d));
    assert_eq!(eap_of(&pl).map(|e| e.code), Some(eap::CODE_SUCCESS));
    let msk = common::mschap::msk(PASSWORD, &nt);
    let a = Payload::Auth(AuthPayload { method: AuthMethod::SHARED_KEY_MIC, data: c.auth_value(&msk) });
    let d = c.request(ExchangeType::IKE_AUTH, vec![a]);
    let (_, pl) = c.open(&sim.send(p, &d));
    assert!(find(&pl, |x| if let Payload::Auth(_) = x { Some(()) } else { None }).is_some(), "login completes");
    assert!(find(&pl, |x| if let Payload::Sa(_) = x { Some(()) } else { None }).is_some(), "CHILD_SA");
    c
}

/// An INFORMATIONAL liveness check on an established SA: answered with an empty response.
fn still_alive(sim: &mut Sim, c: &mut Initiator, p: Path) {
    let d = c.request(ExchangeType::INFORMATIONAL, vec![]);
    let r = sim.send(p, &d);
    assert_eq!(r.len(), 1, "the established SA answers");
    let (h, pl) = c.open(&r);
    assert_eq!((h.exchange, h.message_id, pl.len()), (ExchangeType::INFORMATIONAL, c.mid - 1, 0));
}

/// An SK message built by hand (AES-128-CBC + HMAC-SHA-256-128, the suite the test client
/// negotiates first), so the plaintext — padding included — can be anything.
fn seal_raw(c: &Initiator, exchange: ExchangeType, mid: u32, first: u8, plain: &[u8]) -> Vec<u8> {
    let k = c.keys.as_ref().expect("keys");
    let integ = k.integ.expect("CBC suite with integrity");
    assert_eq!(plain.len() % 16, 0, "whole CBC blocks");
    let iv = [0x11u8; 16];
    let mut ct = plain.to_vec();
    let n = ct.len();
    cbc::Encryptor::<aes::Aes128>::new_from_slices(&k.sk_ei[..16], &iv)
        .expect("key")
        .encrypt_padded_mut::<NoPadding>(&mut ct, n)
        .expect("cbc");
    let icv_len = integ.icv_len();
    let body_len = 4 + 16 + ct.len() + icv_len;
    let h = Header {
        spi_i: c.spi_i,
        spi_r: c.spi_r,
        next_payload: PayloadType::SK,
        version: 0x20,
        exchange,
        flags: FLAG_INITIATOR,
        message_id: mid,
        length: (28 + body_len) as u32,
    };
    let mut out = Vec::new();
    h.encode(&mut out);
    out.extend_from_slice(&[first, 0]);
    out.extend_from_slice(&(body_len as u16).to_be_bytes());
    out.extend_from_slice(&iv);
    out.extend_from_slice(&ct);
    let icv = integ.mac(&k.sk_ai, &[&out]);
    out.extend_from_slice(&icv[..icv_len]);
    out
}

/// Plaintext of an inner chain padded to whole blocks with a correct pad length byte.
fn padded(chain: &[u8]) -> Vec<u8> {
    let pad = (16 - (chain.len() + 1) % 16) % 16;
    let mut p = chain.to_vec();
    p.extend(std::iter::repeat_n(0u8, pad));
    p.push(pad as u8);
    p
}

#[test]
fn malformed_ike_sa_init_is_counted_or_answered() {
    let mut sim = Sim::new();
    let p = path(7);
    let mut c = client(1, p);
    let good = c.sa_init(DhGroup::Ecp256, None, false);
    let parsed = Message::parse(&good).expect("parses");
    let with = |f: &dyn Fn(&mut Message)| {
        let mut m = parsed.clone();
        f(&mut m);
        m.encode()
    };
    // Truncated and lying lengths: dropped silently as malformed.
    assert_eq!(sim.silent("empty", p, vec![]), counted(1, 0, 0));
    assert_eq!(sim.silent("half a header", p, good[..14].to_vec()), counted(1, 0, 0));
    assert_eq!(sim.silent("truncated body", p, good[..good.len() - 7].to_vec()), counted(1, 0, 0));
    let mut long = good.clone();
    long[24..28].copy_from_slice(&(good.len() as u32 + 100).to_be_bytes());
    assert_eq!(sim.silent("header length longer than the datagram", p, long), counted(1, 0, 0));
    let mut trailing = good.clone();
    trailing.extend_from_slice(&[0; 9]);
    assert_eq!(sim.silent("bytes after the message", p, trailing), counted(1, 0, 0));
    let mut lying_payload = good.clone();
    lying_payload[30..32].copy_from_slice(&0xfff0u16.to_be_bytes()); // first payload's length
    assert_eq!(sim.silent("payload length beyond the message", p, lying_payload), counted(1, 0, 0));
    let mut tiny_payload = good.clone();
    tiny_payload[30..32].copy_from_slice(&2u16.to_be_bytes());
    assert_eq!(sim.silent("payload length below its header", p, tiny_payload), counted(1, 0, 0));
    // Not requests for us: unexpected.
    let mut resp = good.clone();
    resp[19] |= FLAG_RESPONSE;
    assert_eq!(sim.silent("response flag", p, resp), counted(0, 0, 1));
    let mut v3 = good.clone();
    v3[17] = 0x30;
    assert_eq!(sim.silent("major version 3", p, v3), counted(0, 0, 1));
    let mid1 = with(&|m| m.header.message_id = 1);
    assert_eq!(sim.silent("IKE_SA_INIT with message ID 1", p, mid1), counted(0, 0, 1));
    let mut stray = good.clone();
    stray[8..16].copy_from_slice(&0x1234_5678_9abc_def0u64.to_be_bytes());
    stray[18] = ExchangeType::IKE_AUTH.0;
    assert_eq!(sim.silent("IKE_AUTH for an unknown SA", p, stray), counted(0, 0, 1));
    assert_eq!(sim.gw.ike_sa_count(), 0, "no state for any of them");

    // Answered with a notify, no state kept.
    let answer = |sim: &mut Sim, name: &str, d: Vec<u8>| -> Notify {
        let r = sim.send(p, &[d]);
        assert_eq!(r.len(), 1, "{name}: one answer");
        let m = Message::parse(&r[0]).expect("answer parses");
        assert!(m.header.is_response(), "{name}");
        match m.payloads.as_slice() {
            [Payload::Notify(n)] => n.clone(),
            other => panic!("{name}: {other:?}"),
        }
    };
    // RFC 7296 §2.5: an unknown payload with the critical bit → UNSUPPORTED_CRITICAL_PAYLOAD.
    let mut crit = good.clone();
    let unknown_type = 200u8;
    // Insert a critical unknown payload first: header next payload → 200 → old first payload.
    let first = crit[16];
    crit[16] = unknown_type;
    let mut extra = vec![first, 0x80, 0, 8, 0xde, 0xad, 0xbe, 0xef];
    extra.extend_from_slice(&crit[28..]);
    crit.truncate(28);
    crit.extend_from_slice(&extra);
    let len = crit.len() as u32;
    crit[24..28].copy_from_slice(&len.to_be_bytes());
    let n = answer(&mut sim, "unknown critical payload", crit.clone());
    assert_eq!((n.ty, n.data), (NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD, vec![unknown_type]));
    // The same payload without the critical bit is skipped (RFC 7296 §2.5) — checked below.
    let mut noncrit = crit;
    noncrit[29] = 0;
    let zero_nonce = with(&|m| {
        for pl in &mut m.payloads {
            if let Payload::Nonce(n) = pl {
                n.clear();
            }
        }
    });
    assert_eq!(answer(&mut sim, "zero-length nonce", zero_nonce).ty, NotifyType::INVALID_SYNTAX);
    let short_nonce = with(&|m| {
        for pl in &mut m.payloads {
            if let Payload::Nonce(n) = pl {
                n.truncate(15);
            }
        }
    });
    assert_eq!(answer(&mut sim, "15-byte nonce", short_nonce).ty, NotifyType::INVALID_SYNTAX);
    let big_nonce = with(&|m| {
        for pl in &mut m.payloads {
            if let Payload::Nonce(n) = pl {
                n.resize(257, 7);
            }
        }
    });
    assert_eq!(answer(&mut sim, "257-byte nonce", big_nonce).ty, NotifyType::INVALID_SYNTAX);
    let no_ke = with(&|m| m.payloads.retain(|p| !matches!(p, Payload::Ke(_))));
    assert_eq!(answer(&mut sim, "no KE", no_ke).ty, NotifyType::INVALID_SYNTAX);
    let bad_ke = with(&|m| {
        for pl in &mut m.payloads {
            if let Payload::Ke(k) = pl {
                k.data.truncate(10);
            }
        }
    });
    assert_eq!(answer(&mut sim, "KE of the wrong length", bad_ke).ty, NotifyType::INVALID_SYNTAX);
    let off_curve = with(&|m| {
        for pl in &mut m.payloads {
            if let Payload::Ke(k) = pl {
                k.data.iter_mut().for_each(|b| *b = 0xff);
            }
        }
    });
    assert_eq!(answer(&mut sim, "KE point not on the curve", off_curve).ty, NotifyType::INVALID_SYNTAX);
    let no_sa = with(&|m| m.payloads.retain(|p| !matches!(p, Payload::Sa(_))));
    assert_eq!(answer(&mut sim, "no SA", no_sa).ty, NotifyType::INVALID_SYNTAX);
    let bad_props = with(&|m| {
        for pl in &mut m.payloads {
            if let Payload::Sa(s) = pl {
                for prop in &mut s.proposals {
                    prop.transforms.retain(|t| t.ty != TransformType::PRF);
                }
            }
        }
    });
    assert_eq!(answer(&mut sim, "proposal without PRF", bad_props).ty, NotifyType::NO_PROPOSAL_CHOSEN);
    assert_eq!(sim.gw.ike_sa_count(), 0, "no state for any of them");

    // A non-critical unknown payload is skipped: the SA is created.
    let r = sim.send(p, &[noncrit]);
    assert_eq!(r.len(), 1);
    assert!(Message::parse(&r[0]).expect("parses").payloads.iter().any(|p| matches!(p, Payload::Ke(_))));
    assert_eq!(sim.gw.ike_sa_count(), 1);

    // After all that, a client logs in.
    let mut c = full_login(&mut sim, 2, path(8));
    still_alive(&mut sim, &mut c, path(8));
    assert_eq!(sim.gw.established_count(), 1);
    sim.write_corpus("init");
}

#[test]
fn encrypted_garbage_on_an_established_sa_is_dropped_and_the_sa_keeps_working() {
    let mut sim = Sim::new();
    let p = path(9);
    let mut c = full_login(&mut sim, 3, p);
    still_alive(&mut sim, &mut c, p);
    let mid = c.mid;
    let info = ExchangeType::INFORMATIONAL;

    // Integrity failures (RFC 7296 §2.21.1: dropped silently).
    let good = c.request(info, vec![]);
    c.mid -= 1;
    let mut bad_icv = good[0].clone();
    *bad_icv.last_mut().expect("icv") ^= 1;
    assert_eq!(sim.silent("bad ICV", p, bad_icv), counted(0, 1, 0));
    let mut bad_ct = good[0].clone();
    bad_ct[50] ^= 0x40;
    assert_eq!(sim.silent("ciphertext flipped", p, bad_ct), counted(0, 1, 0));
    let mut bad_hdr = good[0].clone();
    bad_hdr[19] |= 0x10; // an unassigned flag bit: the header is authenticated too
    assert_eq!(sim.silent("header flag changed", p, bad_hdr), counted(0, 1, 0));

    // Verified, then malformed.
    let chain = {
        let mut v = Vec::new();
        encode_chain(&[Payload::Notify(Notify::new(NotifyType(16403), vec![]))], &mut v);
        v
    };
    let mut bad_pad = padded(&chain);
    *bad_pad.last_mut().expect("pad") = 200;
    assert_eq!(
        sim.silent("SK pad length beyond the plaintext", p, seal_raw(&c, info, mid, PayloadType::NOTIFY.0, &bad_pad)),
        counted(1, 0, 0)
    );
    let mut lying_inner = chain.clone();
    lying_inner[2..4].copy_from_slice(&300u16.to_be_bytes());
    assert_eq!(
        sim.silent(
            "inner payload length beyond the plaintext",
            p,
            seal_raw(&c, info, mid, PayloadType::NOTIFY.0, &padded(&lying_inner))
        ),
        counted(1, 0, 0)
    );
    let mut short = good[0].clone();
    short.truncate(28 + 4 + 10);
    let l = short.len() as u32;
    short[24..28].copy_from_slice(&l.to_be_bytes());
    short[30..32].copy_from_slice(&14u16.to_be_bytes());
    assert_eq!(sim.silent("SK shorter than IV + ICV", p, short), counted(1, 0, 0));
    let mut cut = good[0].clone();
    cut.truncate(cut.len() - 5);
    assert_eq!(sim.silent("SK datagram cut short", p, cut), counted(1, 0, 0));

    // Out of order: message IDs ahead, and the wrong initiator SPI.
    let ahead = seal_raw(&c, info, mid + 5, 0, &padded(&[]));
    assert_eq!(sim.silent("message ID ahead", p, ahead), counted(0, 0, 1));
    let mut other_spi = good[0].clone();
    other_spi[0] ^= 0xff;
    assert_eq!(sim.silent("right SPIr, wrong SPIi", p, other_spi), counted(0, 0, 1));

    // Verified, with an unknown critical payload inside: RFC 7296 §2.5 wants the request
    // answered with UNSUPPORTED_CRITICAL_PAYLOAD naming the type; it takes its message ID.
    assert_eq!(c.mid, mid);
    let crit_inner = [0u8, 0x80, 0, 8, 1, 2, 3, 4];
    let before = sim.gw.stats();
    let r = sim.send(p, &[seal_raw(&c, info, mid, 211, &padded(&crit_inner))]);
    assert_eq!(r.len(), 1, "unknown critical inner payload: answered");
    let (h, pl) = c.open(&r);
    assert_eq!((h.exchange, h.message_id), (info, mid));
    assert_eq!(pl, vec![Payload::Notify(Notify::new(NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD, vec![211]))]);
    let after = sim.gw.stats();
    assert_eq!(after.unsupported_critical, before.unsupported_critical + 1);
    assert_eq!(after.malformed, before.malformed);
    c.mid += 1;

    // The SA still answers at the message ID it expects, and a new client logs in.
    still_alive(&mut sim, &mut c, p);
    // (The same user again, with INITIAL_CONTACT: a responder may replace the first SA, so
    // only the new one is checked afterwards.)
    let mut c2 = full_login(&mut sim, 4, path(10));
    still_alive(&mut sim, &mut c2, path(10));
    assert!(sim.gw.established_count() >= 1);
    sim.write_corpus("established");
}

/// After the first IKE_AUTH and (optionally) the EAP identity: the SA in the EAP phase to abuse.
fn eap_phase(sim: &mut Sim, seed: u64, p: Path, challenged: bool) -> (Initiator, EapPacket) {
    let mut c = client(seed, p);
    init(sim, &mut c, p);
    let req = auth1(sim, &mut c, p);
    if challenged {
        let ch = identity(sim, &mut c, p, &req);
        (c, ch)
    } else {
        (c, req)
    }
}

/// Sends `d` and checks the gateway refused: AUTHENTICATION_FAILED, an AuthFailed event, nothing
/// established or installed, and the SA does not come back to life afterwards.
fn refused(sim: &mut Sim, c: &mut Initiator, p: Path, name: &str, d: Vec<Vec<u8>>) {
    let (_, pl) = c.open(&sim.send(p, &d));
    let failed = notify_of(&pl, NotifyType::AUTHENTICATION_FAILED).is_some();
    let is_eap_failure = eap_of(&pl).is_some_and(|e| {
        matches!(&e.method, Some((eap::TYPE_MSCHAPV2, d)) if matches!(MsChapV2::parse(d, true), Ok(MsChapV2::FailureRequest { .. })))
    });
    assert!(failed || is_eap_failure, "{name}: refused, got {pl:?}");
    if is_eap_failure {
        // Acknowledge the MSCHAPv2 failure: EAP-Failure and AUTHENTICATION_FAILED follow.
        let e = eap_of(&pl).expect("eap");
        let d = c.eap(eap::CODE_RESPONSE, e.identifier, Some((eap::TYPE_MSCHAPV2, MsChapV2::FailureResponse.encode())));
        let (_, pl) = c.open(&sim.send(p, &d));
        assert!(notify_of(&pl, NotifyType::AUTHENTICATION_FAILED).is_some(), "{name}: ends in failure");
    }
    let ev = sim.events();
    assert!(ev.iter().any(|e| matches!(e, Event::AuthFailed { .. })), "{name}: AuthFailed event");
    assert!(
        !ev.iter().any(|e| matches!(e, Event::IkeSaEstablished { .. } | Event::InstallChildSa(_))),
        "{name}: nothing established"
    );
    // Anything else on the dead SA (here: the final AUTH a client skipping EAP would send)
    // establishes nothing.
    let a = Payload::Auth(AuthPayload { method: AuthMethod::SHARED_KEY_MIC, data: c.auth_value(&[0u8; 64]) });
    let d = c.request(ExchangeType::IKE_AUTH, vec![a]);
    let _ = sim.send(p, &d);
    let ev = sim.events();
    assert!(
        !ev.iter().any(|e| matches!(e, Event::IkeSaEstablished { .. } | Event::InstallChildSa(_))),
        "{name}: stays dead"
    );
}

fn mschap(c: &mut Initiator, id: u8, data: Vec<u8>) -> Vec<Vec<u8>> {
    c.eap(eap::CODE_RESPONSE, id, Some((eap::TYPE_MSCHAPV2, data)))
}

#[test]
fn mschapv2_state_abuse_is_refused() {
    // CVE-2015-8023 (strongSwan eap-mschapv2): a client that answers out of order must never be
    // authenticated. Each case on a fresh IKE SA.
    let mut sim = Sim::new();
    let mut n = 20u8;
    let mut next = || {
        n += 1;
        (u64::from(n), path(n))
    };

    // Success-Response before any challenge (instead of the EAP identity).
    let (s, p) = next();
    let (mut c, req) = eap_phase(&mut sim, s, p, false);
    let d = mschap(&mut c, req.identifier, MsChapV2::SuccessResponse.encode());
    refused(&mut sim, &mut c, p, "success response before the challenge", d);

    // Success-Response instead of the challenge response.
    let (s, p) = next();
    let (mut c, ch) = eap_phase(&mut sim, s, p, true);
    let d = mschap(&mut c, ch.identifier, MsChapV2::SuccessResponse.encode());
    refused(&mut sim, &mut c, p, "success response instead of the response", d);

    // EAP-Success sent by the client.
    let (s, p) = next();
    let (mut c, ch) = eap_phase(&mut sim, s, p, true);
    let d = c.eap(eap::CODE_SUCCESS, ch.identifier, None);
    refused(&mut sim, &mut c, p, "EAP-Success from the peer", d);

    // Skip EAP: the final AUTH (MSK of zeros) right after the challenge.
    let (s, p) = next();
    let (mut c, _) = eap_phase(&mut sim, s, p, true);
    let a = Payload::Auth(AuthPayload { method: AuthMethod::SHARED_KEY_MIC, data: c.auth_value(&[0u8; 64]) });
    let d = c.request(ExchangeType::IKE_AUTH, vec![a]);
    refused(&mut sim, &mut c, p, "AUTH without EAP", d);

    // A response with the wrong EAP identifier.
    let (s, p) = next();
    let (mut c, ch) = eap_phase(&mut sim, s, p, true);
    let mut wrong = ch.clone();
    wrong.identifier = wrong.identifier.wrapping_add(7);
    let (d, _, _, _) = c.mschap_response(&wrong, USER, PASSWORD);
    refused(&mut sim, &mut c, p, "response with the wrong EAP identifier", d);

    // The challenge echoed back as if it were a response (request opcode from the peer).
    let (s, p) = next();
    let (mut c, ch) = eap_phase(&mut sim, s, p, true);
    let Some((_, data)) = ch.method.clone() else { panic!("challenge data") };
    let d = mschap(&mut c, ch.identifier, data);
    refused(&mut sim, &mut c, p, "challenge echoed back", d);

    // A right password for another user name in the response: the verifier checks that name,
    // which is not a user: refused.
    let (s, p) = next();
    let (mut c, ch) = eap_phase(&mut sim, s, p, true);
    let (d, _, _, _) = c.mschap_response(&ch, "Admin", PASSWORD);
    refused(&mut sim, &mut c, p, "response for another user", d);

    assert_eq!(sim.gw.established_count(), 0);
    let mut c = full_login(&mut sim, 99, path(99));
    still_alive(&mut sim, &mut c, path(99));
    sim.write_corpus("mschap-state");
}

#[test]
fn oversized_and_lying_eap_and_mschapv2_data_is_refused() {
    // CVE-2025-62291 (strongSwan eap-mschapv2: a Failure message whose length underflowed a
    // buffer computation) and friends: long, short and lying lengths in EAP and MSCHAPv2.
    let mut sim = Sim::new();
    let mut n = 40u8;
    let mut next = || {
        n += 1;
        (u64::from(n), path(n))
    };
    // MSCHAPv2 Failure with 4 KB of data where a bare Failure response (one byte) belongs.
    let (s, p) = next();
    let (mut c, ch) = eap_phase(&mut sim, s, p, true);
    let mut fail = MsChapV2::FailureRequest { id: 1, message: vec![b'E'; 4096] }.encode();
    let l = fail.len() as u16;
    fail[2..4].copy_from_slice(&l.to_be_bytes());
    let d = mschap(&mut c, ch.identifier, fail);
    refused(&mut sim, &mut c, p, "4 KB MSCHAPv2 failure data", d);

    // MSCHAPv2 Failure whose MS-Length claims less than it carries (the CVE's underflow shape).
    let (s, p) = next();
    let (mut c, ch) = eap_phase(&mut sim, s, p, true);
    let d = mschap(&mut c, ch.identifier, vec![4, 1, 0, 2, b'E', b'=']);
    refused(&mut sim, &mut c, p, "MSCHAPv2 failure with MS-Length 2", d);

    // Response with MS-Length larger than the data.
    let (s, p) = next();
    let (mut c, ch) = eap_phase(&mut sim, s, p, true);
    let mut resp =
        MsChapV2::Response { id: 1, peer_challenge: [1; 16], nt_response: [2; 24], flags: 0, name: USER.into() }
            .encode();
    resp[2..4].copy_from_slice(&0xfff0u16.to_be_bytes());
    let d = mschap(&mut c, ch.identifier, resp);
    refused(&mut sim, &mut c, p, "MSCHAPv2 response with MS-Length 65520", d);

    // Response whose value size is not 49, and one cut inside the NT-Response.
    let (s, p) = next();
    let (mut c, ch) = eap_phase(&mut sim, s, p, true);
    let d = mschap(&mut c, ch.identifier, vec![2, 1, 0, 10, 200, 0, 0, 0, 0, 0]);
    refused(&mut sim, &mut c, p, "MSCHAPv2 value size 200", d);
    let (s, p) = next();
    let (mut c, ch) = eap_phase(&mut sim, s, p, true);
    let d = mschap(
        &mut c,
        ch.identifier,
        vec![2, 1, 0, 30, 49, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    );
    refused(&mut sim, &mut c, p, "MSCHAPv2 response cut short", d);

    // A 16 KB user name in an otherwise well-formed response.
    let (s, p) = next();
    let (mut c, ch) = eap_phase(&mut sim, s, p, true);
    let big_name = "A".repeat(16 * 1024);
    let (d, _, _, _) = c.mschap_response(&ch, &big_name, PASSWORD);
    refused(&mut sim, &mut c, p, "16 KB user name", d);

    // EAP length field beyond the EAP payload (oversized claim).
    let (s, p) = next();
    let (mut c, ch) = eap_phase(&mut sim, s, p, true);
    let mut e = EapPacket {
        code: eap::CODE_RESPONSE,
        identifier: ch.identifier,
        method: Some((eap::TYPE_MSCHAPV2, vec![2; 10])),
    }
    .get_encoding();
    e[2..4].copy_from_slice(&0xffffu16.to_be_bytes());
    let d = c.request(ExchangeType::IKE_AUTH, vec![Payload::Eap(e)]);
    refused(&mut sim, &mut c, p, "EAP length 65535", d);

    // EAP length below its own header.
    let (s, p) = next();
    let (mut c, ch) = eap_phase(&mut sim, s, p, true);
    let d = c.request(ExchangeType::IKE_AUTH, vec![Payload::Eap(vec![2, ch.identifier, 0, 2])]);
    refused(&mut sim, &mut c, p, "EAP length 2", d);

    // An 8 KB EAP identity: accepted as a (long) name, then the challenge; nothing breaks, and
    // the login fails at the password because no such user exists.
    let (s, p) = next();
    let (mut c, req) = eap_phase(&mut sim, s, p, false);
    let long_id = vec![b'u'; 8192];
    let d = c.eap(eap::CODE_RESPONSE, req.identifier, Some((eap::TYPE_IDENTITY, long_id)));
    let (_, pl) = c.open(&sim.send(p, &d));
    let ch = eap_of(&pl).expect("challenge after a long identity");
    let (d, _, _, _) = c.mschap_response(&ch, USER, "wrong");
    refused(&mut sim, &mut c, p, "long identity then wrong password", d);

    assert_eq!(sim.gw.established_count(), 0);
    let mut c = full_login(&mut sim, 98, path(98));
    still_alive(&mut sim, &mut c, path(98));
    sim.write_corpus("oversized");
}

// ---- seeds for the `responder` fuzz target -------------------------------------------------

/// The fuzz target's randomness (xorshift64 taking the low byte), replicated so that a login
/// recorded here replays exactly under the fuzzer.
struct FuzzRng(u64);

impl Entropy for FuzzRng {
    fn fill(&mut self, out: &mut [u8]) {
        for b in out {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            *b = self.0 as u8;
        }
    }
}

#[test]
fn responder_fuzz_seed_replays_a_whole_exchange() {
    // The fuzz target's configuration (see controlplane/ike/fuzz/fuzz_targets/responder.rs).
    let cfg = Config {
        ike: IkeOffer::parse("aes128-sha256 aes128gcm-prfsha256", &[19, 31], false).expect("offer"),
        esp: EspOffer::parse("aes128gcm", &[], false).expect("offer"),
        local_id: Identification { ty: IdType::ID_FQDN, data: b"gw".to_vec() },
        psk: Default::default(),
        eap_identity_request: true,
        cookie_threshold: 4,
        per_address_half_open: 0,
        fragment_len: 576,
        negotiate_timeout: Duration::from_secs(30),
        dns: vec![],
        split_include: vec![],
        server_name: "dialgate".into(),
        certificate: None,
    };
    let now = Instant::now();
    let users = TestUsers(Default::default(), vec![], Default::default());
    let pool = TestPool::range(Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 9));
    let mut gw = Responder::new(Arc::new(cfg), FuzzRng(1), users, pool, now, 0);
    let p = Path { remote: SocketAddr::from(([192, 0, 2, 1], 4500)), local: SocketAddr::from(([192, 0, 2, 2], 4500)) };
    let mut c = Initiator::new(
        5,
        IkeOffer::parse("aes128-sha256", &[19], false).expect("offer"),
        EspOffer::parse("aes128gcm", &[], false).expect("offer"),
        USER,
        p,
    );
    let mut frames: Vec<u8> = Vec::new();
    let mut t = now;
    let mut step = |gw: &mut Responder<FuzzRng, TestUsers, TestPool>, d: &[u8]| -> Vec<Vec<u8>> {
        frames.extend_from_slice(&(d.len() as u16).to_be_bytes());
        frames.push(1); // port 4500
        frames.extend_from_slice(d);
        gw.handle_datagram(t, p, d);
        t += Duration::from_secs(1);
        gw.handle_timeout(t);
        std::iter::from_fn(|| gw.poll_transmit()).map(|x| x.payload).collect()
    };
    let r = step(&mut gw, &c.sa_init(DhGroup::Ecp256, None, true));
    c.sa_init_response(&r[0]).expect("init");
    let mut r = vec![];
    for d in c.auth1(None) {
        r.extend(step(&mut gw, &d));
    }
    let (_, pl) = c.open(&r);
    let req = eap_of(&pl).expect("identity request");
    let mut r = vec![];
    for d in c.eap(eap::CODE_RESPONSE, req.identifier, Some((eap::TYPE_IDENTITY, USER.as_bytes().to_vec()))) {
        r.extend(step(&mut gw, &d));
    }
    let (_, pl) = c.open(&r);
    let ch = eap_of(&pl).expect("challenge");
    let (ds, _, _, _) = c.mschap_response(&ch, USER, PASSWORD);
    let mut r = vec![];
    for d in ds {
        r.extend(step(&mut gw, &d));
    }
    let (_, pl) = c.open(&r);
    let res = eap_of(&pl).expect("failure request (no users)");
    assert!(
        matches!(&res.method, Some((eap::TYPE_MSCHAPV2, d)) if matches!(MsChapV2::parse(d, true), Ok(MsChapV2::FailureRequest { .. })))
    );
    let fr = c.eap(eap::CODE_RESPONSE, res.identifier, Some((eap::TYPE_MSCHAPV2, MsChapV2::FailureResponse.encode())));
    let mut r = vec![];
    for d in fr {
        r.extend(step(&mut gw, &d));
    }
    assert!(notify_of(&c.open(&r).1, NotifyType::AUTHENTICATION_FAILED).is_some());
    if let Some(dir) = std::env::var_os("DIALGATE_WRITE_FUZZ_CORPUS") {
        let dir = std::path::Path::new(&dir).join("responder");
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("login-eap-failure"), &frames).expect("seed");
    }
}
