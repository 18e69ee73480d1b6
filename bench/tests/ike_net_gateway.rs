//! `ike-net` against dialgate's real UDP-mode gateway on 127.0.0.1: the configuration parser,
//! `Gateway::from_config` (user database, group check, address pool), the responder and the
//! UDP driver of `dialgate run --listen`, here on a runtime in a thread with free ports.

use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dialgate_bench::ikenet::{run, NetOptions};
use dialgate_controlplane::config;
use dialgate_controlplane::driver::udp::{self, Sockets};
use dialgate_controlplane::driver::{EventLog, LogOnlySink};
use dialgate_controlplane::gateway::Gateway;
use dialgate_ike::crypto::SystemEntropy;
use dialgate_ike::responder::Responder;
use zeroize::Zeroizing;

const PSK: &str = "ike-net-test-psk";
const PASSWORD: &str = "Bench-pw-1";
const SEED: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";

/// A dial-up phase1 with users bench0..bench{users-1} (password only) and "Tok" (password
/// followed by a FortiToken code).
fn gateway_config(users: usize) -> String {
    let mut c = String::from(
        "config system interface\n    edit \"wan1\"\n        set ip 127.0.0.1 255.0.0.0\n        set role wan\n    next\nend\n\
         config user fortitoken\n    edit \"FTKMOB0000000001\"\n        set status active\n",
    );
    c += &format!("        set seed \"{SEED}\"\n    next\nend\nconfig user local\n");
    for i in 0..users {
        c +=
            &format!("    edit \"bench{i}\"\n        set type password\n        set passwd \"{PASSWORD}\"\n    next\n");
    }
    c += &format!(
        "    edit \"Tok\"\n        set type password\n        set two-factor fortitoken\n        set fortitoken \"FTKMOB0000000001\"\n        set passwd \"{PASSWORD}\"\n    next\nend\n"
    );
    let members: Vec<String> = (0..users).map(|i| format!("\"bench{i}\"")).collect();
    c += &format!(
        "config user group\n    edit \"VPN_Users\"\n        set member {} \"Tok\"\n    next\nend\n",
        members.join(" ")
    );
    c += &format!(
        "config vpn ipsec phase1-interface\n    edit \"Bench\"\n        set type dynamic\n        set interface \"wan1\"\n        set ike-version 2\n        set peertype any\n        set net-device disable\n        set mode-cfg enable\n        set proposal aes128gcm-prfsha256 aes128-sha256\n        set dhgrp 31 19\n        set eap enable\n        set eap-identity send-request\n        set authusrgrp \"VPN_Users\"\n        set ipv4-start-ip 10.40.0.2\n        set ipv4-end-ip 10.40.3.254\n        set psksecret \"{PSK}\"\n        set dpd disable\n    next\nend\n\
         config vpn ipsec phase2-interface\n    edit \"Bench\"\n        set phase1name \"Bench\"\n        set proposal aes128gcm aes128-sha256\n    next\nend\n"
    );
    c
}

/// `dialgate run --listen 127.0.0.1` in a thread: its IKE address, a stop switch and, once
/// stopped, the IKE SAs it holds.
struct UdpGateway {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<usize>>,
}

impl UdpGateway {
    fn start(text: String) -> UdpGateway {
        let (addr_tx, addr_rx) = mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let cfg = config::load_str(&text, "ike-net.conf").expect("configuration");
            let gw = Gateway::from_config(&cfg, None).expect("gateway");
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async move {
                let sockets = Sockets::bind([127, 0, 0, 1].into(), 0, 0, None).await.expect("bind");
                addr_tx.send(sockets.local_addrs().expect("addrs").0).expect("send addr");
                let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs();
                let mut r = Responder::new(gw.ike, SystemEntropy::default(), gw.verifier, gw.pool, Instant::now(), now);
                let mut log = EventLog::new(&gw.name);
                let mut sink = LogOnlySink::default();
                let stop = async move {
                    let _ = stopped.await;
                };
                udp::run(&mut r, &sockets, &mut log, &mut sink, stop, None, None).await.expect("driver");
                r.established_count()
            })
        });
        let addr = addr_rx.recv_timeout(Duration::from_secs(10)).expect("gateway did not start");
        UdpGateway { addr, stop: Some(stop), thread: Some(thread) }
    }

    /// Stops the gateway; the IKE SAs it held.
    fn stop(mut self) -> usize {
        let _ = self.stop.take().expect("running").send(());
        self.thread.take().expect("running").join().expect("gateway thread")
    }
}

impl Drop for UdpGateway {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

fn options(addr: SocketAddr, user: &str, password: &str, tunnels: u64) -> NetOptions {
    let mut o = NetOptions::new(addr, user, password, PSK.as_bytes());
    o.tunnels = tunnels;
    o.window = 8;
    o.retransmit = Duration::from_millis(500);
    o.timeout = Duration::from_secs(10);
    o
}

#[test]
fn twenty_users_set_up_against_the_udp_gateway() {
    let gw = UdpGateway::start(gateway_config(20));
    let r = run(&options(gw.addr, "bench{i}", PASSWORD, 20)).expect("run");
    let held = gw.stop();
    assert_eq!(r.failures, 0, "{:?}", r.failure_reasons);
    assert_eq!(r.established, 20);
    assert_eq!(r.setup_time.count, 20);
    assert!(r.setups_per_sec > 0.0);
    assert_eq!(held, 20, "the gateway should hold one IKE SA per user");
}

#[test]
fn one_user_many_setups_keeps_one_sa() {
    // INITIAL_CONTACT from the same EAP user replaces its older IKE SA (RFC 7296 §2.4).
    let gw = UdpGateway::start(gateway_config(1));
    let mut o = options(gw.addr, "bench0", PASSWORD, 5);
    o.window = 1;
    let r = run(&o).expect("run");
    let held = gw.stop();
    assert_eq!(r.established, 5, "{:?}", r.failure_reasons);
    assert_eq!(held, 1);
}

#[test]
fn wrong_password_and_unknown_user_are_failures() {
    let gw = UdpGateway::start(gateway_config(4));
    let bad = run(&options(gw.addr, "bench{i}", "wrong-password", 3)).expect("run");
    let unknown = run(&options(gw.addr, "nobody{i}", PASSWORD, 2)).expect("run");
    let held = gw.stop();
    assert_eq!((bad.established, bad.failures), (0, 3), "{:?}", bad.failure_reasons);
    assert_eq!(bad.failure_reasons.get("EAP-MSCHAPv2 failed"), Some(&3), "{:?}", bad.failure_reasons);
    assert_eq!((unknown.established, unknown.failures), (0, 2), "{:?}", unknown.failure_reasons);
    assert_eq!(held, 0);
}

#[test]
fn token_user_needs_the_code() {
    let gw = UdpGateway::start(gateway_config(1));
    let mut with_code = options(gw.addr, "Tok", PASSWORD, 1);
    with_code.code_seed = Some(Zeroizing::new(config::value::base32_decode(SEED).expect("base32")));
    let ok = run(&with_code).expect("run");
    let without = run(&options(gw.addr, "Tok", PASSWORD, 1)).expect("run");
    let held = gw.stop();
    assert_eq!(ok.established, 1, "{:?}", ok.failure_reasons);
    assert_eq!(without.established, 0);
    assert_eq!(without.failures, 1);
    assert_eq!(held, 1);
}
