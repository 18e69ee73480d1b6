//! `dialgate-bench ike-net`: IKE+EAP setup rate against a gateway over real UDP.
//!
//! Many sans-IO initiators (`dialgate_ike::initiator`) share one UDP socket per sender thread;
//! answers are demultiplexed by the initiator's SPI in the IKE header, so a single source port
//! carries every IKE SA (gateways key SAs by SPI, not by port). New setups start at the target
//! rate (or as fast as the in-flight window allows), each with its own IKE identity (and, with
//! `{i}` in the user name, its own EAP user: dialgate replaces a user's older SA on
//! INITIAL_CONTACT). A request without an answer is resent
//! after `retransmit`, a setup without a result after `timeout` counts as a failure.
//!
//! The same traffic runs against dialgate (`dialgate run --listen`) and a strongSwan gateway:
//! PSK gateway authentication, EAP-Identity, EAP-MSCHAPv2, CP address request, one CHILD_SA.

use std::collections::{BTreeMap, HashMap};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use dialgate_controlplane::auth::totp;
use dialgate_controlplane::config::TotpAlgorithm;
use dialgate_controlplane::driver::connect::MsChapPeer;
use dialgate_ike::crypto::SystemEntropy;
use dialgate_ike::initiator::{Initiator, InitiatorConfig, InitiatorError, Progress};
use dialgate_ike::message::{IdType, Identification};
use dialgate_ike::proposal::{EspOffer, IkeOffer};
use dialgate_ike::responder::Path;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::hist::{new_histogram, Percentiles};

/// IKE proposals offered: the in-process bench's, which both gateways accept.
pub const IKE_PROPOSALS: &str = "aes128gcm-prfsha256 aes128-sha256";
/// ESP proposals offered.
pub const ESP_PROPOSALS: &str = "aes128gcm aes128-sha256";

/// What to run.
#[derive(Debug, Clone)]
pub struct NetOptions {
    /// The gateway (port 4500 means IKE behind the non-ESP marker).
    pub target: SocketAddr,
    /// Local address to bind each sender's socket to (port 0: any).
    pub local: SocketAddr,
    /// Setups to attempt.
    pub tunnels: u64,
    /// New setups per second over all threads; 0 = as fast as the window allows.
    pub rate: f64,
    /// Setups in flight at most, per thread.
    pub window: usize,
    /// Sender threads, each with its own socket.
    pub threads: usize,
    /// EAP user; `{i}` in it becomes the setup's number. Gateways that honour INITIAL_CONTACT
    /// per user (dialgate does, RFC 7296 §2.4) keep one IKE SA per user, so holding many SAs
    /// needs many users.
    pub user: String,
    /// Password.
    pub password: Zeroizing<String>,
    /// Base32 token seed: the current TOTP code (SHA-1, 30 s, 6 digits) is appended to the
    /// password at each setup's start.
    pub code_seed: Option<Zeroizing<Vec<u8>>>,
    /// The gateway's pre-shared key.
    pub psk: Zeroizing<Vec<u8>>,
    /// Diffie-Hellman groups offered, preferred first.
    pub dh_groups: Vec<u16>,
    /// Resend an unanswered request after this long.
    pub retransmit: Duration,
    /// A setup without a result after this long fails.
    pub timeout: Duration,
    /// Distinguishes this run's IKE identities from an earlier run's against the same gateway.
    pub run_tag: u64,
}

impl NetOptions {
    /// Defaults for `target`: 100 setups, unpaced, window 64, one thread, DH 31.
    pub fn new(target: SocketAddr, user: &str, password: &str, psk: &[u8]) -> NetOptions {
        let local =
            if target.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { (std::net::Ipv6Addr::UNSPECIFIED, 0).into() };
        NetOptions {
            target,
            local,
            tunnels: 100,
            rate: 0.0,
            window: 64,
            threads: 1,
            user: user.into(),
            password: Zeroizing::new(password.into()),
            code_seed: None,
            psk: Zeroizing::new(psk.to_vec()),
            dh_groups: vec![31],
            retransmit: Duration::from_secs(2),
            timeout: Duration::from_secs(10),
            run_tag: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        }
    }
}

/// The result of one run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NetReport {
    /// The gateway.
    pub target: String,
    /// Setups attempted.
    pub tunnels: u64,
    /// Target rate (0: unpaced).
    pub rate: f64,
    /// Window per thread and threads.
    pub window: usize,
    /// Sender threads.
    pub threads: usize,
    /// Established.
    pub established: u64,
    /// Failed (refused, EAP failure, protocol error or timeout).
    pub failures: u64,
    /// Failures by reason.
    pub failure_reasons: BTreeMap<String, u64>,
    /// Requests resent after silence.
    pub retransmits: u64,
    /// From the first IKE_SA_INIT to the last result, seconds.
    pub elapsed_s: f64,
    /// Established per second over `elapsed_s`.
    pub setups_per_sec: f64,
    /// First IKE_SA_INIT → established, successful setups only.
    pub setup_time: Percentiles,
}

struct Live {
    ini: Initiator<SystemEntropy, MsChapPeer>,
    started: Instant,
    sent: Instant,
    pending: Vec<Vec<u8>>,
}

struct Tally {
    hist: Histogram<u64>,
    established: u64,
    failures: BTreeMap<String, u64>,
    retransmits: u64,
    first: Option<Instant>,
    last: Option<Instant>,
}

fn reason(e: &InitiatorError) -> String {
    match e {
        InitiatorError::Refused { notify, .. } => format!("refused (notify {})", notify.0),
        InitiatorError::EapFailed(_) => "EAP-MSCHAPv2 failed".into(),
        InitiatorError::GatewayAuth(_) => "gateway authentication failed".into(),
        InitiatorError::Protocol(m) => format!("protocol: {}", m.chars().take(60).collect::<String>()),
        other => other.to_string(),
    }
}

fn password_now(o: &NetOptions) -> Zeroizing<String> {
    match &o.code_seed {
        None => o.password.clone(),
        Some(seed) => {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
            let code = totp::format_code(totp::totp(TotpAlgorithm::Sha1, seed, now, 30, 6), 6);
            Zeroizing::new(format!("{}{code}", o.password.as_str()))
        }
    }
}

/// One sender thread: setups `thread, thread + threads, …` below `o.tunnels`.
fn sender(o: &NetOptions, thread: usize) -> Result<Tally> {
    let sock = UdpSocket::bind(o.local).context("bind")?;
    sock.connect(o.target).context("connect")?;
    let local = sock.local_addr()?;
    let path = Path { local, remote: o.target };
    let marker = o.target.port() == 4500;
    let ike = IkeOffer::parse(IKE_PROPOSALS, &o.dh_groups, false).map_err(|e| anyhow::anyhow!(e.0))?;
    let esp = EspOffer::parse(ESP_PROPOSALS, &[], false).map_err(|e| anyhow::anyhow!(e.0))?;
    let mine: Vec<u64> = (thread as u64..o.tunnels).step_by(o.threads.max(1)).collect();
    let rate = if o.rate > 0.0 { o.rate / o.threads.max(1) as f64 } else { 0.0 };
    let mut t = Tally {
        hist: new_histogram(),
        established: 0,
        failures: BTreeMap::new(),
        retransmits: 0,
        first: None,
        last: None,
    };
    let fail = |t: &mut Tally, why: String| {
        *t.failures.entry(why).or_insert(0) += 1;
        t.last = Some(Instant::now());
    };
    let send = |sock: &UdpSocket, d: &[Vec<u8>]| {
        for m in d {
            // A full socket buffer loses the datagram like the network would: retransmission
            // covers it.
            let _ = if marker { sock.send(&[&[0u8; 4][..], m].concat()) } else { sock.send(m) };
        }
    };
    let mut live: HashMap<u64, Live> = HashMap::new();
    let mut next = 0usize;
    let mut buf = vec![0u8; 65536];
    let t0 = Instant::now();
    let mut last_scan = t0;
    // Short blocking receives: the thread sleeps in the kernel instead of spinning on a core the
    // gateway may need, and wakes often enough to pace new setups.
    sock.set_read_timeout(Some(Duration::from_millis(2)))?;
    loop {
        let now = Instant::now();
        while next < mine.len()
            && live.len() < o.window
            && (rate == 0.0 || (next as f64) < now.duration_since(t0).as_secs_f64() * rate)
        {
            let i = mine[next];
            next += 1;
            let user = o.user.replace("{i}", &i.to_string());
            let id = format!("bench-{:x}-{i}@{user}", o.run_tag);
            let cfg = InitiatorConfig {
                ike: ike.clone(),
                esp: esp.clone(),
                idi: Identification { ty: IdType::ID_RFC822_ADDR, data: id.into_bytes() },
                user,
                psk: o.psk.clone(),
                auth_notifies: vec![],
                fragment_len: Some(1280),
            };
            // SPIs below 256 are reserved (RFC 4303 §2.1).
            let esp_spi = 0x0100_0000 | (i as u32 & 0x00ff_ffff);
            let started = Instant::now();
            t.first.get_or_insert(started);
            let mut ini =
                match Initiator::new(cfg, SystemEntropy::default(), MsChapPeer(password_now(o)), path, esp_spi) {
                    Ok(ini) => ini,
                    Err(e) => {
                        fail(&mut t, reason(&e));
                        continue;
                    }
                };
            match ini.start() {
                Ok(d) => {
                    send(&sock, &d);
                    live.insert(ini.spi_i(), Live { ini, started, sent: started, pending: d });
                }
                Err(e) => fail(&mut t, reason(&e)),
            }
        }
        if next == mine.len() && live.is_empty() {
            break;
        }
        match sock.recv(&mut buf) {
            Ok(n) => {
                let mut d = &buf[..n];
                if marker {
                    match d.strip_prefix(&[0u8; 4]) {
                        Some(rest) => d = rest,
                        None => continue,
                    }
                }
                let Some(spi) = d.get(..8).map(|s| u64::from_be_bytes(s.try_into().expect("8 bytes"))) else {
                    continue;
                };
                let Some(l) = live.get_mut(&spi) else { continue };
                match l.ini.handle_datagram(d) {
                    Ok(Progress::Send(m)) => {
                        send(&sock, &m);
                        l.pending = m;
                        l.sent = Instant::now();
                    }
                    Ok(Progress::Established(_)) => {
                        let l = live.remove(&spi).expect("present");
                        let end = Instant::now();
                        let _ = t.hist.record(end.duration_since(l.started).as_nanos().max(1) as u64);
                        t.established += 1;
                        t.last = Some(end);
                    }
                    Ok(Progress::Pending | Progress::Answered(_)) => {}
                    Err(e) => {
                        live.remove(&spi);
                        fail(&mut t, reason(&e));
                    }
                }
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            // ICMP port unreachable surfaces as a refused receive on a connected socket.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
            Err(e) => return Err(e).context("recv"),
        }
        let now = Instant::now();
        if now.duration_since(last_scan) >= Duration::from_millis(20) {
            last_scan = now;
            let mut expired = Vec::new();
            for (spi, l) in live.iter_mut() {
                if now.duration_since(l.started) >= o.timeout {
                    expired.push(*spi);
                } else if now.duration_since(l.sent) >= o.retransmit {
                    send(&sock, &l.pending);
                    l.sent = now;
                    t.retransmits += 1;
                }
            }
            for spi in expired {
                live.remove(&spi);
                fail(&mut t, "timeout".into());
            }
        }
    }
    Ok(t)
}

/// Runs the setups of `o` and reports.
pub fn run(o: &NetOptions) -> Result<NetReport> {
    let tallies: Vec<Result<Tally>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..o.threads.max(1)).map(|th| s.spawn(move || sender(o, th))).collect();
        hs.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("sender panicked")))).collect()
    });
    let mut hist = new_histogram();
    let (mut established, mut retransmits) = (0, 0);
    let mut reasons = BTreeMap::new();
    let (mut first, mut last): (Option<Instant>, Option<Instant>) = (None, None);
    for t in tallies {
        let t = t?;
        hist.add(&t.hist).context("histogram")?;
        established += t.established;
        retransmits += t.retransmits;
        for (k, v) in t.failures {
            *reasons.entry(k).or_insert(0) += v;
        }
        first = match (first, t.first) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        last = match (last, t.last) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
    let elapsed = match (first, last) {
        (Some(a), Some(b)) => b.duration_since(a).as_secs_f64(),
        _ => 0.0,
    };
    Ok(NetReport {
        target: o.target.to_string(),
        tunnels: o.tunnels,
        rate: o.rate,
        window: o.window,
        threads: o.threads.max(1),
        established,
        failures: reasons.values().sum(),
        failure_reasons: reasons,
        retransmits,
        elapsed_s: elapsed,
        setups_per_sec: if elapsed > 0.0 { established as f64 / elapsed } else { 0.0 },
        setup_time: Percentiles::of(&hist),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ike::{gateway, PSK, SECRET};
    use dialgate_ike::responder::Path;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    /// The sans-IO responder of the in-process bench behind a UDP socket on 127.0.0.1, in its own
    /// thread until `stop`; returns its address and, at the end, the SAs it established.
    fn udp_gateway(stop: Arc<AtomicBool>) -> (SocketAddr, std::thread::JoinHandle<usize>) {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let local = sock.local_addr().expect("addr");
        sock.set_read_timeout(Some(Duration::from_millis(20))).expect("timeout");
        let h = std::thread::spawn(move || {
            let mut gw = gateway();
            let mut buf = vec![0u8; 65536];
            while !stop.load(Ordering::Relaxed) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else { continue };
                gw.handle_datagram(Instant::now(), Path { local, remote: from }, &buf[..n]);
                while let Some(t) = gw.poll_transmit() {
                    let _ = sock.send_to(&t.payload, t.path.remote);
                }
                while gw.poll_event().is_some() {}
            }
            gw.established_count()
        });
        (local, h)
    }

    fn options(target: SocketAddr, password: &str) -> NetOptions {
        let mut o = NetOptions::new(target, "bench{i}", password, PSK);
        o.tunnels = 20;
        o.window = 8;
        o.retransmit = Duration::from_millis(500);
        o.timeout = Duration::from_secs(5);
        o
    }

    #[test]
    fn twenty_setups_over_udp_without_failures() {
        let stop = Arc::new(AtomicBool::new(false));
        let (addr, gw) = udp_gateway(stop.clone());
        let mut o = options(addr, SECRET);
        o.threads = 2;
        let r = run(&o).expect("run");
        stop.store(true, Ordering::Relaxed);
        let held = gw.join().expect("gateway thread");
        assert_eq!(r.failures, 0, "{:?}", r.failure_reasons);
        assert_eq!(r.established, 20);
        assert_eq!(r.setup_time.count, 20);
        assert!(r.setups_per_sec > 0.0 && r.elapsed_s > 0.0);
        // One user per setup: INITIAL_CONTACT replaced none of them.
        assert_eq!(held, 20);
    }

    #[test]
    fn wrong_password_counts_failures() {
        let stop = Arc::new(AtomicBool::new(false));
        let (addr, gw) = udp_gateway(stop.clone());
        let mut o = options(addr, "not-the-password");
        o.tunnels = 5;
        let r = run(&o).expect("run");
        stop.store(true, Ordering::Relaxed);
        assert_eq!(gw.join().expect("gateway thread"), 0);
        assert_eq!(r.established, 0);
        assert_eq!(r.failures, 5);
        assert_eq!(r.failure_reasons.get("EAP-MSCHAPv2 failed"), Some(&5), "{:?}", r.failure_reasons);
        assert_eq!(r.setups_per_sec, 0.0);
    }

    #[test]
    fn rate_paces_the_starts() {
        let stop = Arc::new(AtomicBool::new(false));
        let (addr, gw) = udp_gateway(stop.clone());
        let mut o = options(addr, SECRET);
        o.rate = 100.0;
        let r = run(&o).expect("run");
        stop.store(true, Ordering::Relaxed);
        gw.join().expect("gateway thread");
        assert_eq!(r.established, 20, "{:?}", r.failure_reasons);
        // At 100/s the 20th setup starts 190 ms after the first.
        assert!(r.elapsed_s >= 0.18, "{} s", r.elapsed_s);
        assert!(r.setups_per_sec <= 110.0, "{} setups/s", r.setups_per_sec);
    }

    #[test]
    fn silent_gateway_times_out_with_retransmits() {
        // A bound socket that never answers.
        let quiet = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let mut o = options(quiet.local_addr().expect("addr"), SECRET);
        o.tunnels = 3;
        o.retransmit = Duration::from_millis(100);
        o.timeout = Duration::from_millis(450);
        let r = run(&o).expect("run");
        assert_eq!(r.established, 0);
        assert_eq!(r.failure_reasons.get("timeout"), Some(&3));
        assert!(r.retransmits >= 6, "{} retransmits", r.retransmits);
    }
}
