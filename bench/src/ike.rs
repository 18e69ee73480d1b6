//! `dialgate-bench ike`: IKE setup rate in process, on one core, no sockets. dialgate's sans-IO
//! initiator runs full IKE_SA_INIT + IKE_AUTH (PSK gateway auth, EAP-Identity,
//! EAP-MSCHAPv2 with password ‖ token code, CP, one CHILD_SA) against the sans-IO responder;
//! every client has its own user name and address so the gateway keeps every IKE SA (no
//! INITIAL_CONTACT replacement). The verifier does the real MSCHAPv2 work
//! (`dialgate_controlplane::auth::mschapv2`: NT hash, DES challenge response, authenticator
//! response, MSK) against a fixed password ‖ code instead of the user database.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dialgate_controlplane::auth::mschapv2;
use dialgate_ike::crypto::Entropy;
use dialgate_ike::initiator::{EapPeer, Initiator, InitiatorConfig, MsChapAnswer, Progress};
use dialgate_ike::message::{IdType, Identification};
use dialgate_ike::proposal::{EspOffer, IkeOffer};
use dialgate_ike::responder::{AddressPool, AuthReject, Config, MsChapOk, Path, Responder, UserVerifier};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::hist::{new_histogram, ratio, rss_bytes, Percentiles};

const P1: &str = "aes128gcm-prfsha256 aes128-sha256 aes256-sha256";
const P2: &str = "aes128gcm aes256gcm aes128-sha256";
/// The gateway's pre-shared key in the benches.
pub const PSK: &[u8] = b"dialgate-bench-psk";
/// Password ‖ 6-digit code, as a FortiClient-style user types it.
pub const SECRET: &str = "p@ssw0rd345678123456";

/// Deterministic xorshift64 randomness (both sides; the DH and crypto work is unchanged).
#[derive(Debug)]
pub struct XorShift(pub u64);

impl Entropy for XorShift {
    fn fill(&mut self, out: &mut [u8]) {
        for c in out.chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            c.copy_from_slice(&self.0.to_le_bytes()[..c.len()]);
        }
    }
}

/// Any user, one password ‖ code, checked with the real MSCHAPv2 computations.
#[derive(Debug)]
pub struct FixedVerifier {
    hash: Zeroizing<[u8; 16]>,
    /// Rejections so far.
    pub rejected: u64,
}

impl FixedVerifier {
    /// A verifier for `secret`.
    pub fn new(secret: &str) -> FixedVerifier {
        FixedVerifier { hash: mschapv2::nt_password_hash(secret), rejected: 0 }
    }
}

impl UserVerifier for FixedVerifier {
    fn verify_mschapv2(
        &mut self,
        user: &str,
        auth: &[u8; 16],
        peer: &[u8; 16],
        nt: &[u8; 24],
        _now_unix: u64,
    ) -> Result<MsChapOk, AuthReject> {
        if !mschapv2::check_nt_response(auth, peer, user, &self.hash, nt) {
            self.rejected += 1;
            return Err(AuthReject { reason: "bad credentials".into() });
        }
        Ok(MsChapOk {
            authenticator_response: mschapv2::authenticator_response(&self.hash, nt, peer, auth, user),
            msk: mschapv2::msk(&self.hash, nt),
            token_needed: false,
        })
    }
}

/// A large mode-cfg pool (100.64.0.0/10 is enough for a million clients).
#[derive(Debug)]
pub struct CountingPool {
    next: u32,
    free: Vec<Ipv4Addr>,
}

impl AddressPool for CountingPool {
    fn allocate(&mut self, _user: &str) -> Option<Ipv4Addr> {
        self.free.pop().or_else(|| {
            self.next += 1;
            Some(Ipv4Addr::from(u32::from(Ipv4Addr::new(100, 64, 0, 0)) + self.next))
        })
    }
    fn release(&mut self, addr: Ipv4Addr) {
        self.free.push(addr);
    }
}

struct Client(String);

impl EapPeer for Client {
    fn mschapv2(&mut self, auth: &[u8; 16], peer: &[u8; 16], user: &str) -> MsChapAnswer {
        let hash = mschapv2::nt_password_hash(&self.0);
        let nt = mschapv2::generate_nt_response_from_hash(auth, peer, user, &hash);
        MsChapAnswer {
            nt_response: nt,
            expected_success: mschapv2::authenticator_response(&hash, &nt, peer, auth, user),
            msk: Zeroizing::new(*mschapv2::msk(&hash, &nt)),
        }
    }
}

/// The gateway type of the bench.
pub type Gateway = Responder<XorShift, FixedVerifier, CountingPool>;

/// A responder configured like a FortiClient-facing phase1 (PSK + EAP, DH 31/19/20).
pub fn gateway() -> Gateway {
    let cfg = Config {
        ike: IkeOffer::parse(P1, &[31, 19, 20], false).expect("proposals"),
        esp: EspOffer::parse(P2, &[], false).expect("proposals"),
        local_id: Identification { ty: IdType::ID_FQDN, data: b"gw.dialgate.bench".to_vec() },
        psk: Zeroizing::new(PSK.to_vec()),
        eap_identity_request: true,
        cookie_threshold: usize::MAX,
        per_address_half_open: 0,
        fragment_len: 1280,
        negotiate_timeout: Duration::from_secs(30),
        dns: vec![Ipv4Addr::new(10, 50, 0, 53)],
        split_include: vec![(Ipv4Addr::new(10, 50, 0, 0), 24)],
        server_name: "dialgate".into(),
        certificate: None,
    };
    let pool = CountingPool { next: 0, free: Vec::new() };
    Responder::new(
        Arc::new(cfg),
        XorShift(0x5eed_0001),
        FixedVerifier::new(SECRET),
        pool,
        Instant::now(),
        1_700_000_000,
    )
}

fn client_cfg(user: &str) -> InitiatorConfig {
    InitiatorConfig {
        ike: IkeOffer::parse(P1, &[31], false).expect("proposals"),
        esp: EspOffer::parse(P2, &[], false).expect("proposals"),
        idi: Identification { ty: IdType::ID_RFC822_ADDR, data: user.as_bytes().to_vec() },
        user: user.into(),
        psk: Zeroizing::new(PSK.to_vec()),
        auth_notifies: vec![],
        fragment_len: None,
    }
}

/// Runs one setup of client `i` against `gw`; `Ok` once the initiator is established.
pub fn setup(gw: &mut Gateway, i: u64, secret: &str) -> Result<(), String> {
    let mut t = Duration::ZERO;
    setup_timed(gw, i, secret, &mut t)
}

/// [`setup`], adding the time spent inside the responder (datagram handling, transmit and
/// event polling) to `gw_time`.
pub fn setup_timed(gw: &mut Gateway, i: u64, secret: &str, gw_time: &mut Duration) -> Result<(), String> {
    let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + (i / 50_000) as u32);
    let port = 1024 + (i % 50_000) as u16;
    let c = SocketAddr::V4(SocketAddrV4::new(ip, port));
    let g: SocketAddr = "203.0.113.1:4500".parse().expect("address");
    let (cp, gp) = (Path { local: c, remote: g }, Path { local: g, remote: c });
    let user = format!("user{i}");
    let mut c = Initiator::new(
        client_cfg(&user),
        XorShift(0x9e37_79b9_7f4a_7c15 ^ (i + 1).wrapping_mul(0x2545_f491_4f6c_dd1d)),
        Client(secret.into()),
        cp,
        0xc000_0000 | i as u32,
    )
    .map_err(|e| e.to_string())?;
    let mut out = c.start().map_err(|e| e.to_string())?;
    let now = Instant::now();
    for _ in 0..16 {
        let mut replies = Vec::new();
        let t = Instant::now();
        for d in &out {
            gw.handle_datagram(now, gp, d);
            while let Some(t) = gw.poll_transmit() {
                replies.push(t.payload);
            }
        }
        while gw.poll_event().is_some() {}
        *gw_time += t.elapsed();
        out = Vec::new();
        for r in replies {
            match c.handle_datagram(&r).map_err(|e| e.to_string())? {
                Progress::Send(d) => out = d,
                Progress::Established(_) => return Ok(()),
                Progress::Pending | Progress::Answered(_) => {}
            }
        }
        if out.is_empty() {
            return Err("stalled".into());
        }
    }
    Err("no result after 16 rounds".into())
}

/// One step of the setup-rate run: the figures once `tunnels` IKE SAs are established.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IkePoint {
    /// IKE SAs established so far (the gateway holds them all).
    pub tunnels: u64,
    /// Setups per second over the step since the previous point (initiator and responder on
    /// the same core).
    pub setups_per_sec: f64,
    /// Setups per second of the responder's share alone (time inside the responder only).
    pub responder_setups_per_sec: f64,
    /// Setup time (first IKE_SA_INIT → initiator established) over the step.
    pub setup_time: Percentiles,
    /// Failed setups in the step.
    pub failures: u64,
    /// IKE SAs the responder reports established.
    pub established: usize,
    /// RSS growth since the start divided by the IKE SAs held, bytes (both sides' transient
    /// state is dropped; the gateway's SAs stay).
    pub rss_bytes_per_sa: f64,
}

/// The whole ike run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IkeReport {
    /// What ran.
    pub setup: String,
    /// One point per checkpoint.
    pub points: Vec<IkePoint>,
    /// `responder_setups_per_sec` of the first point / 10 000 (the target: setups per second
    /// on one control core; the initiator's share runs on the client).
    pub ratio_to_target: f64,
}

/// Establishes IKE SAs up to each of `checkpoints` (ascending) on this thread, reporting
/// `progress` lines to stderr when asked.
pub fn run(checkpoints: &[u64], progress: bool) -> IkeReport {
    let rss0 = rss_bytes();
    let mut gw = gateway();
    let mut points = Vec::new();
    let mut done = 0u64;
    for &cp in checkpoints {
        let mut h = new_histogram();
        let mut failures = 0;
        let t0 = Instant::now();
        let start = done;
        let mut last = Instant::now();
        let mut gw_time = Duration::ZERO;
        while done < cp {
            let s = Instant::now();
            if setup_timed(&mut gw, done, SECRET, &mut gw_time).is_err() {
                failures += 1;
            }
            let _ = h.record(s.elapsed().as_nanos().max(1) as u64);
            done += 1;
            if progress && last.elapsed() > Duration::from_secs(2) {
                last = Instant::now();
                eprintln!("  ike: {done}/{cp} setups, {:.0}/s", (done - start) as f64 / t0.elapsed().as_secs_f64());
            }
        }
        let secs = t0.elapsed().as_secs_f64();
        let established = gw.established_count();
        points.push(IkePoint {
            tunnels: cp,
            setups_per_sec: (cp - start) as f64 / secs,
            responder_setups_per_sec: (cp - start) as f64 / gw_time.as_secs_f64(),
            setup_time: Percentiles::of(&h),
            failures,
            established,
            rss_bytes_per_sa: rss_bytes().saturating_sub(rss0) as f64 / established.max(1) as f64,
        });
        if progress {
            let p = points.last().expect("pushed");
            eprintln!(
                "ike {:>7} SAs: {:8.0} setups/s ({:.0}/s responder alone)  p99 {:7.1} µs  failures {}  {:6.0} B/SA",
                cp, p.setups_per_sec, p.responder_setups_per_sec, p.setup_time.p99_us, p.failures, p.rss_bytes_per_sa
            );
        }
    }
    let first = points.first().map_or(0.0, |p| p.responder_setups_per_sec);
    IkeReport {
        setup: "in-process sans-IO initiator vs responder, one thread: IKE_SA_INIT (DH 31, AES-128-GCM/PRF-SHA256) + IKE_AUTH with EAP-Identity + EAP-MSCHAPv2 (password||code, real MSCHAPv2 math, fixed-secret verifier), CP, one CHILD_SA".into(),
        points,
        ratio_to_target: ratio(first, 10_000.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completes_setups_without_failures() {
        let r = run(&[20, 50], false);
        assert_eq!(r.points.len(), 2);
        assert_eq!(r.points[0].failures, 0);
        assert_eq!(r.points[1].failures, 0);
        assert_eq!(r.points[1].established, 50);
        assert_eq!(r.points[1].setup_time.count, 30);
        assert!(r.points[0].setups_per_sec > 0.0);
    }

    #[test]
    fn wrong_secret_fails() {
        let mut gw = gateway();
        assert!(setup(&mut gw, 1, "wrong").is_err());
        assert!(setup(&mut gw, 2, SECRET).is_ok());
        assert_eq!(gw.established_count(), 1);
    }
}
