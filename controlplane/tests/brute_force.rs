//! Brute force against the user database of `examples/dialgate.conf` (user "Test", password
//! "p@ssw0rd" followed by a TOTP code, `auth-lockout-threshold 5`, `auth-lockout-duration 300`):
//! lock-out for the configured time and its expiry, one use per code, a wrong code after the
//! right password counted as a failure, the same work on every path (counted, not timed), and the
//! same through the IKE responder with `gateway::DbVerifier` and dialgate's test initiator.

#[path = "../ike/tests/common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::initiator::{eap_of, find, Initiator};
use common::TestRng;
use dialgate_controlplane::auth::mschapv2::generate_nt_response;
use dialgate_controlplane::auth::totp::{format_code, totp};
use dialgate_controlplane::auth::{FailureReason, UserDb, CANDIDATES_PER_ATTEMPT};
use dialgate_controlplane::config::{load_str, value::base32_decode, Config};
use dialgate_controlplane::gateway::{DbVerifier, Gateway};
use dialgate_controlplane::pool::RangePool;
use dialgate_ike::crypto::dh::DhGroup;
use dialgate_ike::eap::{self, MsChapV2};
use dialgate_ike::message::{AuthMethod, AuthPayload, ExchangeType, NotifyType, Payload};
use dialgate_ike::proposal::{EspOffer, IkeOffer};
use dialgate_ike::responder::{Event, Path, Responder, UserVerifier};

const EXAMPLE: &str = include_str!("../../examples/dialgate.conf");
const USER: &str = "Test";
const PASSWORD: &str = "p@ssw0rd";
/// 10 s into a 30 s TOTP step.
const T0: u64 = 1_700_000_010;
const THRESHOLD: u32 = 5;
const LOCK_SECS: u64 = 300;
const AC: [u8; 16] = [7; 16];
const PC: [u8; 16] = [9; 16];

fn example() -> Config {
    load_str(EXAMPLE, "dialgate.conf").expect("the example loads")
}

fn code_at(cfg: &Config, now: u64) -> String {
    let t = &cfg.fortitokens[0];
    let seed = base32_decode(t.seed.as_ref().expect("seed").expose()).expect("base32");
    format_code(totp(t.algorithm, &seed, now, u64::from(t.period), t.digits), t.digits)
}

fn attempt(db: &mut UserDb, user: &str, password: &str, now: u64) -> Result<bool, FailureReason> {
    let nt = generate_nt_response(&AC, &PC, user, password);
    db.verify_mschapv2(user, &AC, &PC, &nt, now).map(|ok| ok.used_token).map_err(|f| f.reason)
}

fn verifier() -> (DbVerifier, Config) {
    let cfg = example();
    (Gateway::from_config(&cfg, None).expect("gateway").verifier, cfg)
}

#[test]
fn the_example_policy_is_what_these_tests_assume() {
    let (v, _) = verifier();
    let p = v.db.lockout_policy();
    assert_eq!((p.threshold, p.duration_secs), (THRESHOLD, LOCK_SECS));
}

#[test]
fn wrong_passwords_lock_the_user_for_the_configured_time_then_the_lock_expires() {
    let (mut v, cfg) = verifier();
    let db = &mut v.db;
    for i in 1..THRESHOLD {
        let r = attempt(db, USER, &format!("guess{i}{}", code_at(&cfg, T0)), T0 + u64::from(i));
        assert_eq!(r, Err(FailureReason::BadCredentials { locked_for: None }), "failure {i}");
    }
    let t_lock = T0 + u64::from(THRESHOLD);
    assert_eq!(
        attempt(db, USER, "guess-last", t_lock),
        Err(FailureReason::BadCredentials { locked_for: Some(LOCK_SECS) }),
        "the threshold-th failure locks"
    );
    // Locked: even the right password and a fresh code are refused, and no code is used up.
    let right = |t| format!("{PASSWORD}{}", code_at(&cfg, t));
    assert_eq!(
        attempt(db, USER, &right(t_lock + 1), t_lock + 1),
        Err(FailureReason::LockedOut { remaining_secs: 299 })
    );
    assert_eq!(
        attempt(db, USER, &right(t_lock + LOCK_SECS - 1), t_lock + LOCK_SECS - 1),
        Err(FailureReason::LockedOut { remaining_secs: 1 })
    );
    assert_eq!(db.lockout_remaining(USER, t_lock + 100), LOCK_SECS - 100);
    assert_eq!(db.lockout_remaining("tEsT", t_lock + 100), LOCK_SECS - 100, "names are case-insensitive");
    // The lock expires after exactly auth-lockout-duration.
    let t_free = t_lock + LOCK_SECS;
    assert_eq!(db.lockout_remaining(USER, t_free), 0);
    assert_eq!(attempt(db, USER, &right(t_free), t_free), Ok(true));
    // The success reset the failure count: threshold-1 new failures do not lock.
    for i in 1..THRESHOLD {
        let t = t_free + 30 * u64::from(i);
        assert_eq!(attempt(db, USER, "again", t), Err(FailureReason::BadCredentials { locked_for: None }));
    }
}

#[test]
fn a_used_code_is_refused_and_counts_as_a_failure() {
    let (mut v, cfg) = verifier();
    let pw = format!("{PASSWORD}{}", code_at(&cfg, T0));
    assert_eq!(attempt(&mut v.db, USER, &pw, T0), Ok(true));
    assert_eq!(attempt(&mut v.db, USER, &pw, T0 + 1), Err(FailureReason::CodeReused { locked_for: None }));
    // The previous step's code (inside the drift window) is older than the used one: refused too.
    let prev = format!("{PASSWORD}{}", code_at(&cfg, T0 - 30));
    assert_eq!(attempt(&mut v.db, USER, &prev, T0 + 2), Err(FailureReason::CodeReused { locked_for: None }));
    // Replaying the used code counts towards the lock-out.
    for i in 3..THRESHOLD {
        assert!(matches!(attempt(&mut v.db, USER, &pw, T0 + u64::from(i)), Err(FailureReason::CodeReused { .. })));
    }
    assert_eq!(attempt(&mut v.db, USER, &pw, T0 + 9), Err(FailureReason::CodeReused { locked_for: Some(LOCK_SECS) }));
    // The next step's code is fresh, but the user is locked now.
    let next = format!("{PASSWORD}{}", code_at(&cfg, T0 + 30));
    assert!(matches!(attempt(&mut v.db, USER, &next, T0 + 30), Err(FailureReason::LockedOut { .. })));
}

#[test]
fn a_wrong_code_after_the_right_password_counts_as_a_failure() {
    let (mut v, cfg) = verifier();
    let good = code_at(&cfg, T0);
    // A code from an hour ago is outside the ±1 step window.
    let stale = code_at(&cfg, T0 - 3600);
    assert_ne!(good, stale);
    for i in 1..THRESHOLD {
        let r = attempt(&mut v.db, USER, &format!("{PASSWORD}{stale}"), T0 + u64::from(i));
        assert_eq!(r, Err(FailureReason::BadCredentials { locked_for: None }), "password right, code wrong");
    }
    let r = attempt(&mut v.db, USER, &format!("{PASSWORD}000000"), T0 + 6);
    let r2 = if good == "000000" { Ok(true) } else { r };
    assert_eq!(r2, Err(FailureReason::BadCredentials { locked_for: Some(LOCK_SECS) }));
    assert!(v.db.lockout_remaining(USER, T0 + 7) > 0);
}

#[test]
fn every_path_checks_the_same_number_of_candidates() {
    // Counted, not timed: unknown user, disabled user, wrong password, right password without
    // code, wrong code, right password ‖ code, reused code, locked-out user, plain user (no
    // token) right and wrong all hash and compare the same number of secrets.
    let text = EXAMPLE.replace(
        "config user group",
        "config user local\n    edit \"plain\"\n        set passwd \"clientPass\"\n    next\n    edit \"off\"\n        set passwd \"x\"\n        set status disable\n    next\nend\nconfig user group",
    );
    let cfg = load_str(&text, "t.conf").expect("config with extra users");
    let mut db = UserDb::from_config(&cfg);
    let code = code_at(&cfg, T0);
    let right = format!("{PASSWORD}{code}");
    let work = |db: &mut UserDb, user: &str, pw: &str, t: u64| {
        let before = db.candidates_checked();
        let r = attempt(db, user, pw, t);
        (db.candidates_checked() - before, r)
    };
    let n = CANDIDATES_PER_ATTEMPT as u64;
    type Expect = fn(&Result<bool, FailureReason>) -> bool;
    let cases: Vec<(&str, String, u64, Expect)> = vec![
        ("nobody", "whatever".into(), T0, |r| r == &Err(FailureReason::UnknownUser)),
        ("off", "x".into(), T0, |r| r == &Err(FailureReason::Disabled)),
        (USER, "wrong".into(), T0, |r| matches!(r, Err(FailureReason::BadCredentials { .. }))),
        (USER, PASSWORD.into(), T0, |r| r == &Err(FailureReason::TokenNeeded)),
        (USER, format!("{PASSWORD}x{code}"), T0, |r| matches!(r, Err(FailureReason::BadCredentials { .. }))),
        (USER, right.clone(), T0, |r| r == &Ok(true)),
        (USER, right.clone(), T0 + 1, |r| matches!(r, Err(FailureReason::CodeReused { .. }))),
        ("plain", "clientPass".into(), T0, |r| r == &Ok(false)),
        ("plain", "clientPas".into(), T0, |r| matches!(r, Err(FailureReason::BadCredentials { .. }))),
    ];
    for (user, pw, t, ok) in &cases {
        let (w, r) = work(&mut db, user, pw, *t);
        assert!(ok(&r), "{user}/{pw}: {r:?}");
        assert_eq!(w, n, "{user}/{pw}: candidates checked");
    }
    // Lock "plain" out, then its right password costs the same as everything else.
    // One failure above; threshold - 1 more lock the user.
    for i in 0..u64::from(THRESHOLD - 1) {
        let (_, r) = work(&mut db, "plain", "nope", T0 + 1 + i);
        assert!(matches!(r, Err(FailureReason::BadCredentials { .. })));
    }
    let (w, r) = work(&mut db, "plain", "clientPass", T0 + 9);
    assert!(matches!(r, Err(FailureReason::LockedOut { .. })), "{r:?}");
    assert_eq!(w, n, "locked-out user: candidates checked");
    // Clear-text password checks follow the same rule.
    let before = db.candidates_checked();
    assert!(db.verify_password("nobody", "x", T0).is_err());
    assert!(db.verify_password(USER, "nope", T0).is_err());
    assert_eq!(db.candidates_checked() - before, 2 * n);
}

#[test]
fn a_dummy_candidate_is_never_accepted() {
    // An unknown user's attempt is checked against dummy secrets; a response computed from the
    // dummy must not log anyone in (the dummy is not a password).
    let mut db = UserDb::from_config(&example());
    for pw in ["\u{1}dialgate-dummy-candidate", ""] {
        assert_eq!(attempt(&mut db, "nobody", pw, T0), Err(FailureReason::UnknownUser));
    }
}

// ---- through the responder -------------------------------------------------------------

const P1: &str = "aes128-sha256 aes256-sha256 aes128gcm-prfsha256";
const P2: &str = "aes128gcm aes256gcm";

type Gw = Responder<TestRng, DbVerifier, RangePool>;

struct Sim {
    gw: Gw,
    now: Instant,
    psk: Vec<u8>,
}

impl Sim {
    fn new() -> Sim {
        let cfg = example();
        let g = Gateway::from_config(&cfg, None).expect("gateway");
        let psk = g.ike.psk.to_vec();
        let now = Instant::now();
        Sim { gw: Responder::new(g.ike, TestRng(0xb00f), g.verifier, g.pool, now, T0), now, psk }
    }

    fn send(&mut self, p: Path, ds: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let mut out = vec![];
        for d in ds {
            self.gw.handle_datagram(self.now, p, d);
            while let Some(t) = self.gw.poll_transmit() {
                out.push(t.payload);
            }
        }
        out
    }

    fn unix(&self, t0: Instant) -> u64 {
        T0 + self.now.duration_since(t0).as_secs()
    }

    fn auth_failures(&mut self) -> Vec<String> {
        std::iter::from_fn(|| self.gw.poll_event())
            .filter_map(|e| if let Event::AuthFailed { reason, .. } = e { Some(reason) } else { None })
            .collect()
    }
}

/// A full login attempt; true when the gateway established the IKE SA.
fn login(sim: &mut Sim, seed: u64, password: &str) -> bool {
    let p = Path {
        remote: SocketAddr::from(([198, 51, 100, (seed % 200) as u8 + 1], 4500)),
        local: SocketAddr::from(([172, 16, 200, 4], 4500)),
    };
    let mut c = Initiator::new(
        seed,
        IkeOffer::parse(P1, &[14], false).expect("p1"),
        EspOffer::parse(P2, &[], false).expect("p2"),
        USER,
        p,
    );
    let r = sim.send(p, &[c.sa_init(DhGroup::Modp2048, None, false)]);
    c.sa_init_response(&r[0]).expect("IKE_SA_INIT accepted");
    let d = c.auth1(None);
    let (_, pl) = c.open(&sim.send(p, &d));
    let req = eap_of(&pl).expect("EAP identity request");
    let id = Some((eap::TYPE_IDENTITY, USER.as_bytes().to_vec()));
    let d = c.eap(eap::CODE_RESPONSE, req.identifier, id);
    let (_, pl) = c.open(&sim.send(p, &d));
    let ch = eap_of(&pl).expect("challenge");
    let (dg, nt, _, _) = c.mschap_response(&ch, USER, password);
    let (_, pl) = c.open(&sim.send(p, &dg));
    let res = eap_of(&pl).expect("success or failure request");
    let Some((eap::TYPE_MSCHAPV2, d)) = &res.method else { panic!("not MSCHAPv2") };
    match MsChapV2::parse(d, true).expect("parses") {
        MsChapV2::FailureRequest { message, .. } => {
            assert!(message.starts_with(b"E=691 R=0"), "no retry offered");
            let fr = Some((eap::TYPE_MSCHAPV2, MsChapV2::FailureResponse.encode()));
            let d = c.eap(eap::CODE_RESPONSE, res.identifier, fr);
            let (_, pl) = c.open(&sim.send(p, &d));
            assert_eq!(eap_of(&pl).map(|e| e.code), Some(eap::CODE_FAILURE));
            false
        }
        MsChapV2::SuccessRequest { .. } => {
            let sr = Some((eap::TYPE_MSCHAPV2, MsChapV2::SuccessResponse.encode()));
            let d = c.eap(eap::CODE_RESPONSE, res.identifier, sr);
            let (_, pl) = c.open(&sim.send(p, &d));
            assert_eq!(eap_of(&pl).map(|e| e.code), Some(eap::CODE_SUCCESS));
            let msk = common::mschap::msk(password, &nt);
            let a = Payload::Auth(AuthPayload { method: AuthMethod::SHARED_KEY_MIC, data: c.auth_value(&msk) });
            let d = c.request(ExchangeType::IKE_AUTH, vec![a]);
            let (_, pl) = c.open(&sim.send(p, &d));
            assert!(find(&pl, |x| if let Payload::Auth(_) = x { Some(()) } else { None }).is_some());
            assert!(common::initiator::notify_of(&pl, NotifyType::AUTHENTICATION_FAILED).is_none());
            let _ = &sim.psk;
            true
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn responder_locks_out_a_guessing_client_then_admits_it_after_the_duration() {
    let mut sim = Sim::new();
    let t0 = sim.now;
    let cfg = example();
    for i in 0..THRESHOLD {
        let code = code_at(&cfg, sim.unix(t0));
        assert!(!login(&mut sim, 100 + u64::from(i), &format!("guess{i}{code}")), "wrong password {i}");
        sim.now += Duration::from_secs(1);
    }
    let reasons = sim.auth_failures();
    assert_eq!(reasons.len(), THRESHOLD as usize);
    assert!(reasons.last().unwrap().contains("locked out for 300 s"), "{reasons:?}");
    // Locked: the right password and a fresh code fail too, and the log says why.
    sim.now += Duration::from_secs(60);
    let code = code_at(&cfg, sim.unix(t0));
    assert!(!login(&mut sim, 200, &format!("{PASSWORD}{code}")), "locked out");
    let reasons = sim.auth_failures();
    assert!(reasons.iter().any(|r| r.contains("locked out after repeated failures")), "{reasons:?}");
    // After auth-lockout-duration the same user logs in.
    sim.now += Duration::from_secs(LOCK_SECS);
    sim.gw.handle_timeout(sim.now);
    let code = code_at(&cfg, sim.unix(t0));
    assert!(login(&mut sim, 300, &format!("{PASSWORD}{code}")), "lock expired");
    assert_eq!(sim.gw.established_count(), 1);
    // The code just used cannot be used again, even for a new IKE SA.
    sim.now += Duration::from_secs(1);
    assert!(!login(&mut sim, 301, &format!("{PASSWORD}{code}")), "code reused");
    assert!(sim.auth_failures().iter().any(|r| r.contains("already been used")));
}

#[test]
fn db_verifier_reports_the_same_outcome_for_unknown_users_and_wrong_passwords() {
    // What the peer learns is only "failed": the responder sends the same E=691 failure for
    // every refusal; the verifier's reasons differ only in the log.
    let (mut v, _) = verifier();
    let nt = generate_nt_response(&AC, &PC, "nobody", "x");
    let unknown = v.verify_mschapv2("nobody", &AC, &PC, &nt, T0).err().expect("refused");
    let nt = generate_nt_response(&AC, &PC, USER, "x");
    let wrong = v.verify_mschapv2(USER, &AC, &PC, &nt, T0).err().expect("refused");
    assert_ne!(unknown.reason, wrong.reason, "the log tells them apart");
    assert!(!unknown.reason.contains(PASSWORD) && !wrong.reason.contains(PASSWORD));
}
