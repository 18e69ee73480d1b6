//! strongSwan clients against `dialgate run --cores`: the DPDK data plane (net_af_packet on
//! veths) carries IKE to the responder through the worker's exception ring and the clients'
//! ESP-in-UDP through the worker.
//!
//! ```text
//!  netns C0 (swanctl) cl0 172.16.200.10 ─┐
//!  netns C1 (swanctl) cl0 172.16.200.11 ─┤ bridge in netns SW ├─ veth-gw-wan [wan1 172.16.200.4]
//!                                                                   dialgate (netns GW, DPDK)
//!                                        netns L  veth-lan 10.50.0.10 ═ veth-gw-lan [Internal 10.50.0.1]
//! ```
//!
//! Needs root, DPDK, `ip netns` and strongSwan (`scripts/setup`); otherwise each test says why it
//! skips. Namespaces, daemons and the gateway are removed by a drop guard on every way out.

mod common;
#[path = "../ike/tests/common/mod.rs"]
mod ike_common;

use common::{current_code, field, wait_timeout, FLOOD_PY};
use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const DIALGATE: &str = env!("CARGO_BIN_EXE_dialgate");
use common::NETNS_SH;
const EXAMPLE: &str = include_str!("../../examples/dialgate.conf");
const CORES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/cores-2.toml");
const PSK: &str = "Pr3-Shared-K3y";
const USER2: &str = "Test2";
const PASSWORD2: &str = "s3cond-Passw0rd";

static SEQ: AtomicU32 = AtomicU32::new(0);

fn skip_reason() -> Option<String> {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).and_then(|l| l.split_whitespace().nth(1));
    if uid != Some("0") {
        return Some("not running as root".into());
    }
    if !dialgate_ffi::AVAILABLE {
        return Some("built without DPDK".into());
    }
    if !std::path::Path::new("/usr/sbin/charon-systemd").exists() {
        return Some("strongSwan is missing (run scripts/setup)".into());
    }
    None
}

/// The example gateway plus a second VPN user without a token.
fn gateway_config() -> String {
    let text = EXAMPLE
        .replace(
            "        set passwd \"p@ssw0rd\"\n    next\n",
            &format!("        set passwd \"p@ssw0rd\"\n    next\n    edit \"{USER2}\"\n        set type password\n        set passwd \"{PASSWORD2}\"\n    next\n"),
        )
        .replace("set member \"Test\"", &format!("set member \"Test\" \"{USER2}\""));
    assert!(text.contains(USER2), "example configuration changed shape");
    text
}

fn run(args: &[&str]) -> (bool, String) {
    let out = Command::new(args[0]).args(&args[1..]).output().expect("spawn");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn must(args: &[&str]) {
    let (ok, out) = run(args);
    assert!(ok, "{args:?}: {out}");
}

fn netns_sh(args: &[&str]) -> (bool, String) {
    let mut v = vec!["bash", NETNS_SH];
    v.extend_from_slice(args);
    run(&v)
}

struct Lab {
    dir: PathBuf,
    tag: String,
    namespaces: Vec<String>,
    clients: Vec<(String, PathBuf, String)>,
    gw: Option<Child>,
}

impl Lab {
    fn new(test: &str) -> Lab {
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let tag = format!("dgp{}{n}", std::process::id());
        let dir = std::env::temp_dir().join(format!("{tag}-{test}"));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("temp dir");
        let mut lab = Lab { dir, tag, namespaces: Vec::new(), clients: Vec::new(), gw: None };
        let (sw, gw, lan) = (lab.ns("sw"), lab.ns("gw"), lab.ns("lan"));
        must(&["ip", "-n", &sw, "link", "add", "br0", "type", "bridge"]);
        must(&["ip", "-n", &sw, "link", "set", "br0", "up"]);
        must(&["ip", "link", "add", "veth-gw-wan", "netns", &gw, "type", "veth", "peer", "name", "swg", "netns", &sw]);
        must(&[
            "ip",
            "link",
            "add",
            "veth-gw-lan",
            "netns",
            &gw,
            "type",
            "veth",
            "peer",
            "name",
            "veth-lan",
            "netns",
            &lan,
        ]);
        must(&["ip", "-n", &sw, "link", "set", "swg", "master", "br0", "up"]);
        for i in ["veth-gw-wan", "veth-gw-lan", "lo"] {
            must(&["ip", "-n", &gw, "link", "set", i, "up"]);
        }
        must(&["ip", "-n", &lan, "addr", "add", "10.50.0.10/24", "dev", "veth-lan"]);
        must(&["ip", "-n", &lan, "link", "set", "veth-lan", "up"]);
        must(&["ip", "-n", &lan, "link", "set", "lo", "up"]);
        // No route back to the pool: replies reach the clients only through the source NAT of
        // the example's policy 1.
        lab
    }

    fn ns(&mut self, role: &str) -> String {
        let name = format!("{}-{role}", self.tag);
        must(&["ip", "netns", "add", &name]);
        let _ = run(&["ip", "netns", "exec", &name, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
        self.namespaces.push(name.clone());
        name
    }

    fn gw_ns(&self) -> String {
        format!("{}-gw", self.tag)
    }

    fn start_gateway(&mut self) {
        self.start_gateway_with(&gateway_config());
    }

    fn start_gateway_with(&mut self, text: &str) {
        let conf = self.dir.join("gw.conf");
        fs::write(&conf, text).expect("write gw.conf");
        let out = fs::File::create(self.dir.join("gw.out")).expect("gw.out");
        let err = fs::File::create(self.dir.join("gw.err")).expect("gw.err");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.gw_ns(), DIALGATE, "run", "--config"])
            .arg(&conf)
            .args(["--cores", CORES])
            .arg("--control-socket")
            .arg(self.dir.join("ctl.sock"))
            .stdout(out)
            .stderr(err)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn dialgate");
        self.gw = Some(child);
        let end = Instant::now() + Duration::from_secs(10);
        while !self.gw_out().contains("on DPDK") {
            if let Some(Ok(Some(s))) = self.gw.as_mut().map(Child::try_wait) {
                panic!("dialgate exited early ({s}): {}", self.gw_err());
            }
            assert!(Instant::now() < end, "dialgate did not start: {}", self.gw_err());
            std::thread::sleep(Duration::from_millis(20));
        }
        // The LAN host talks to the gateway first, so the worker knows its MAC address.
        let (ok, out) = run(&["ip", "netns", "exec", &format!("{}-lan", self.tag), "ping", "-c1", "-W2", "10.50.0.1"]);
        assert!(ok, "the worker did not answer the LAN host's ping: {out}\n{}", self.gw_err());
    }

    /// `dialgate diagnose WORDS…` against this lab's gateway.
    fn diagnose(&self, words: &[&str]) -> (bool, String) {
        let sock = self.dir.join("ctl.sock");
        let mut v = vec![DIALGATE, "diagnose", "--socket", sock.to_str().expect("utf-8")];
        v.extend_from_slice(words);
        run(&v)
    }

    fn gw_out(&self) -> String {
        fs::read_to_string(self.dir.join("gw.out")).unwrap_or_default()
    }

    fn gw_err(&self) -> String {
        fs::read_to_string(self.dir.join("gw.err")).unwrap_or_default()
    }

    /// A client namespace on the WAN bridge with a charon daemon, logging in as `user`.
    fn add_client(&mut self, user: &str, secret: &str) -> usize {
        let i = self.clients.len();
        let ns = self.ns(&format!("c{i}"));
        let sw = format!("{}-sw", self.tag);
        let ip = format!("172.16.200.{}", 10 + i);
        must(&[
            "ip",
            "link",
            "add",
            "cl0",
            "netns",
            &ns,
            "type",
            "veth",
            "peer",
            "name",
            &format!("sw{i}"),
            "netns",
            &sw,
        ]);
        must(&["ip", "-n", &sw, "link", "set", &format!("sw{i}"), "master", "br0", "up"]);
        must(&["ip", "-n", &ns, "addr", "add", &format!("{ip}/24"), "dev", "cl0"]);
        must(&["ip", "-n", &ns, "link", "set", "cl0", "up"]);
        must(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        let dir = self.dir.join(format!("client{i}"));
        let d = dir.to_str().expect("utf-8").to_string();
        let (ok, out) = netns_sh(&["dg_charon_conf", &d]);
        assert!(ok, "{out}");
        let (ok, out) = netns_sh(&["dg_charon_start", &ns, &d]);
        assert!(ok, "charon: {out}");
        let conf = format!(
            r#"connections {{
  dialgate {{
    version = 2
    local_addrs = {ip}
    remote_addrs = 172.16.200.4
    vips = 0.0.0.0
    encap = yes
    proposals = aes128gcm16-prfsha256-ecp384,aes128-sha256-modp2048
    local {{
      auth = eap-mschapv2
      eap_id = {user}
    }}
    remote {{
      auth = psk
    }}
    children {{
      dialgate {{
        remote_ts = 10.50.0.0/24
        esp_proposals = aes128gcm16,aes256-sha256
      }}
    }}
  }}
}}
secrets {{
  eap-user {{
    id = {user}
    secret = "{secret}"
  }}
  ike-gw {{
    secret = "{PSK}"
  }}
}}
"#
        );
        let path = dir.join("swanctl.conf");
        fs::write(&path, conf).expect("swanctl.conf");
        let (ok, out) =
            netns_sh(&["dg_swanctl", &d, "--load-all", "--noprompt", "--file", path.to_str().expect("utf-8")]);
        assert!(ok, "swanctl --load-all: {out}");
        self.clients.push((ns, dir, ip));
        i
    }

    fn swanctl(&self, c: usize, args: &[&str]) -> (bool, String) {
        let d = self.clients[c].1.to_str().expect("utf-8").to_string();
        let mut v = vec!["timeout", "20", "bash", NETNS_SH, "dg_swanctl", &d];
        v.extend_from_slice(args);
        run(&v)
    }

    fn initiate(&self, c: usize) {
        let (ok, out) = self.swanctl(c, &["--initiate", "--child", "dialgate", "--timeout", "10"]);
        assert!(ok, "client {c} initiate:\n{out}\n--- gateway\n{}{}", self.gw_out(), self.gw_err());
    }

    /// The client's virtual address (assigned by the gateway's pool).
    fn vip(&self, c: usize) -> String {
        let (_, out) = run(&["ip", "-n", &self.clients[c].0, "-4", "-o", "addr", "show"]);
        out.split_whitespace()
            .filter_map(|w| w.strip_suffix("/32"))
            .find(|a| a.starts_with("10.40.40."))
            .unwrap_or_else(|| panic!("client {c} has no pool address: {out}"))
            .to_string()
    }

    /// Pings the LAN host from client `c`'s virtual address; returns the replies received.
    fn ping(&self, c: usize, count: u32, interval: &str) -> u32 {
        let vip = self.vip(c);
        let n = count.to_string();
        let (_, out) = run(&[
            "ip",
            "netns",
            "exec",
            &self.clients[c].0,
            "ping",
            "-q",
            "-c",
            &n,
            "-i",
            interval,
            "-W",
            "2",
            "-I",
            &vip,
            "10.50.0.10",
        ]);
        out.split(", ")
            .find_map(|p| p.strip_suffix(" received"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no ping summary: {out}"))
    }

    /// Starts `count` echoes from client `c` to the LAN host on a thread; join it for ping's
    /// summary (`N received`).
    fn ping_in_background(&self, c: usize, count: u32, interval: &str) -> std::thread::JoinHandle<(bool, String)> {
        let (ns, vip, n, i) = (self.clients[c].0.clone(), self.vip(c), count.to_string(), interval.to_string());
        std::thread::spawn(move || {
            run(&["ip", "netns", "exec", &ns, "ping", "-q", "-c", &n, "-i", &i, "-W", "2", "-I", &vip, "10.50.0.10"])
        })
    }

    /// Kills client `c`'s charon without a DELETE (a laptop that lost its network).
    fn kill_client(&self, c: usize) {
        let pid = fs::read_to_string(self.clients[c].1.join("charon.pid")).expect("charon.pid");
        must(&["kill", "-KILL", pid.trim()]);
    }

    /// Waits until the gateway's stdout contains `what` `n` times.
    fn wait_out(&self, what: &str, n: usize, limit: Duration) {
        let end = Instant::now() + limit;
        while self.gw_out().matches(what).count() < n {
            assert!(Instant::now() < end, "no {what:?} within {limit:?}:\n{}\n{}", self.gw_out(), self.gw_err());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop_gateway(&mut self) -> String {
        if let Some(mut gw) = self.gw.take() {
            let _ = Command::new("kill").args(["-TERM", &gw.id().to_string()]).status();
            let end = Instant::now() + Duration::from_secs(5);
            while gw.try_wait().ok().flatten().is_none() && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = gw.kill();
            let _ = gw.wait();
        }
        self.gw_out()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut gw) = self.gw.take() {
            let _ = gw.kill();
            let _ = gw.wait();
        }
        for (_, dir, _) in &self.clients {
            let _ = netns_sh(&["dg_charon_stop", dir.to_str().unwrap_or_default()]);
        }
        let mut args = vec!["dg_ns_del"];
        args.extend(self.namespaces.iter().map(String::as_str));
        let _ = netns_sh(&args);
        if std::thread::panicking() {
            eprintln!("interop_dpdk: logs kept in {}", self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

macro_rules! lab_or_skip {
    ($name:expr) => {
        match skip_reason() {
            Some(why) => {
                eprintln!("skipping {}: {why}", $name);
                return;
            }
            None => Lab::new($name),
        }
    };
}

/// Two clients at once over the DPDK data plane: different pool addresses, and each one's
/// traffic crosses the worker both ways on its own SA pair.
#[test]
fn two_clients_traffic_both_ways_through_the_worker() {
    let mut lab = lab_or_skip!("two");
    lab.start_gateway();
    let code = current_code(&gateway_config());
    let a = lab.add_client("Test", &format!("p@ssw0rd{code}"));
    let b = lab.add_client(USER2, PASSWORD2);
    lab.initiate(a);
    lab.initiate(b);
    let (va, vb) = (lab.vip(a), lab.vip(b));
    assert_ne!(va, vb, "both clients got {va}");
    assert_eq!(lab.ping(a, 20, "0.02"), 20, "client A lost echoes\n{}", lab.gw_err());
    assert_eq!(lab.ping(b, 20, "0.02"), 20, "client B lost echoes\n{}", lab.gw_err());
    let out = lab.stop_gateway();
    let installs: Vec<&str> = out.lines().filter(|l| l.contains("install child SA:")).collect();
    assert_eq!(installs.len(), 2, "{out}");
    for vip in [&va, &vb] {
        let stat = out
            .lines()
            .find(|l| l.starts_with("child SA in_spi=") && l.contains(&format!(" {vip}:")))
            .unwrap_or_else(|| panic!("no counters for {vip}: {out}"));
        assert!(stat.contains("rxp=20 txp=20"), "per-SA counters of {vip}: {stat}");
    }
}

/// SIGHUP re-reads the configuration: a file with an error is reported as `file:line:col` and
/// changes nothing (the old users still log in); a good file takes effect for new logins.
#[test]
fn sighup_reload_keeps_the_running_config_on_errors() {
    let mut lab = lab_or_skip!("reload");
    lab.start_gateway();
    let conf = lab.dir.join("gw.conf");
    let good = fs::read_to_string(&conf).expect("gw.conf");
    let pid = lab.gw.as_ref().expect("gateway").id().to_string();
    let wait_for = |lab: &Lab, what: &str, n: usize| {
        let end = Instant::now() + Duration::from_secs(5);
        while lab.gw_out().matches(what).count() < n {
            assert!(Instant::now() < end, "no {what:?} after SIGHUP: {}{}", lab.gw_out(), lab.gw_err());
            std::thread::sleep(Duration::from_millis(20));
        }
    };

    // A typo on a user: refused with its position, nothing changes.
    let bad = good.replacen("set type password", "set type pasword", 1);
    fs::write(&conf, &bad).expect("write");
    must(&["kill", "-HUP", &pid]);
    wait_for(&lab, "the running configuration is unchanged", 1);
    let line = bad.lines().position(|l| l.contains("pasword")).expect("typo line") + 1;
    assert!(lab.gw_err().contains(&format!("gw.conf:{line}:")), "no file:line:col: {}", lab.gw_err());
    let a = lab.add_client(USER2, PASSWORD2);
    lab.initiate(a);
    assert_eq!(lab.ping(a, 3, "0.1"), 3);

    // A new user: applied on the next SIGHUP and able to log in.
    let with_user3 = good.replace(
        &format!("    edit \"{USER2}\""),
        &format!("    edit \"Test3\"\n        set type password\n        set passwd \"th1rd-Passw0rd\"\n    next\n    edit \"{USER2}\""),
    ).replace(&format!("set member \"Test\" \"{USER2}\""), &format!("set member \"Test\" \"{USER2}\" \"Test3\""));
    assert!(with_user3.contains("Test3"), "config shape changed");
    fs::write(&conf, &with_user3).expect("write");
    must(&["kill", "-HUP", &pid]);
    wait_for(&lab, "reloaded (users, groups, tokens, ", 1);
    let b = lab.add_client("Test3", "th1rd-Passw0rd");
    lab.initiate(b);
    assert_eq!(lab.ping(b, 3, "0.1"), 3);
    assert_eq!(lab.stop_gateway().matches("install child SA:").count(), 2);
}

/// A client that leaves with a DELETE and one that vanishes (charon killed): the first SA goes
/// at once, the second when dead-peer detection gives up; both leave the data plane and return
/// their addresses, which the next client gets again.
#[test]
fn delete_and_dead_peer_leave_the_data_plane() {
    let mut lab = lab_or_skip!("dpd");
    // Probe after 2 s idle, give up after one retransmission.
    let text = gateway_config().replace(
        "        set negotiate-timeout 50\n",
        "        set negotiate-timeout 50\n        set dpd on-idle\n        set dpd-retryinterval 2\n        set dpd-retrycount 1\n",
    );
    assert!(text.contains("dpd-retrycount 1"), "config shape changed");
    lab.start_gateway_with(&text);
    let a = lab.add_client(USER2, PASSWORD2);
    lab.initiate(a);
    let va = lab.vip(a);
    assert_eq!(lab.ping(a, 3, "0.1"), 3);
    let (ok, out) = lab.swanctl(a, &["--terminate", "--ike", "dialgate", "--timeout", "5"]);
    assert!(ok, "{out}");
    lab.wait_out("IKE SA closed: deleted", 1, Duration::from_secs(5));
    lab.wait_out(" removed, stat: rxp=3 txp=3", 1, Duration::from_secs(5));

    // Again (same address), then the client vanishes.
    lab.initiate(a);
    assert_eq!(lab.vip(a), va, "the deleted SA's address was reused");
    assert_eq!(lab.ping(a, 3, "0.1"), 3);
    lab.kill_client(a);
    let started = Instant::now();
    lab.wait_out("IKE SA closed: dead peer (DPD)", 1, Duration::from_secs(20));
    assert!(started.elapsed() >= Duration::from_secs(2), "removed before a probe could be answered");
    lab.wait_out(" removed, stat:", 2, Duration::from_secs(5));
    assert!(lab.gw_err().contains("sending DPD probe"), "{}", lab.gw_err());

    let b = lab.add_client(USER2, PASSWORD2);
    lab.initiate(b);
    assert_eq!(lab.vip(b), va, "the dead peer's address was reused");
    assert_eq!(lab.ping(b, 3, "0.1"), 3);
}

/// strongSwan rekeys the CHILD_SA and then the IKE SA in the middle of a ping flood: not one
/// echo is lost (make before break: the gateway seals with the new SA only once the client
/// uses it), the old CHILD_SA leaves the data plane when the client deletes it, and the
/// tunnel keeps working on the rekeyed IKE SA.
#[test]
fn rekeys_during_a_ping_flood_lose_nothing() {
    let mut lab = lab_or_skip!("rekey");
    lab.start_gateway();
    let a = lab.add_client(USER2, PASSWORD2);
    lab.initiate(a);
    let vip = lab.vip(a);
    let ns = lab.clients[a].0.clone();
    let flood = Command::new("ip")
        .args(["netns", "exec", &ns, "ping", "-q", "-c", "600", "-i", "0.005", "-W", "2", "-I", &vip, "10.50.0.10"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ping");
    std::thread::sleep(Duration::from_millis(700));
    let (ok, out) = lab.swanctl(a, &["--rekey", "--child", "dialgate"]);
    assert!(ok, "child rekey: {out}");
    lab.wait_out("delete child SA:", 1, Duration::from_secs(5));
    let (ok, out) = lab.swanctl(a, &["--rekey", "--ike", "dialgate"]);
    assert!(ok, "IKE rekey: {out}");
    lab.wait_out("IKE SA rekeyed:", 1, Duration::from_secs(5));
    let out = flood.wait_with_output().expect("ping");
    let text = String::from_utf8_lossy(&out.stdout);
    let got: u32 = text
        .split(", ")
        .find_map(|p| p.strip_suffix(" received"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no ping summary: {text}"));
    if got != 600 {
        // Stopped first: its last lines say what the workers dropped (or that they dropped
        // nothing, and the echo was lost outside the gateway).
        let gw = lab.stop_gateway();
        panic!("echoes lost across the rekeys: {got} of 600: {text}\n{gw}\n{}", lab.gw_err());
    }
    let gw = lab.gw_out();
    assert_eq!(gw.matches("install child SA:").count(), 2, "{gw}");
    assert!(gw.contains("IKE SA closed: deleted"), "the old IKE SA was deleted: {gw}");
    assert!(lab.gw_err().contains("received delete for CHILD_SA"), "{}", lab.gw_err());
    // After both rekeys: still traffic both ways, and a clean DELETE on the new IKE SA.
    assert_eq!(lab.ping(a, 3, "0.1"), 3);
    let (ok, out) = lab.swanctl(a, &["--terminate", "--ike", "dialgate", "--timeout", "5"]);
    assert!(ok, "{out}");
    lab.wait_out("IKE SA closed: deleted", 2, Duration::from_secs(5));
    lab.wait_out(" removed, stat:", 2, Duration::from_secs(5));
}

/// A control-plane failure is contained: `diagnose test application ike fault` makes the
/// responder loop fail one step. The tunnel keeps forwarding throughout (the workers never
/// notice), the failure is logged and counted, and the control plane still works afterwards: a
/// second client logs in.
#[test]
fn a_failed_control_plane_step_is_restarted_while_traffic_flows() {
    let mut lab = lab_or_skip!("fault");
    lab.start_gateway();
    let a = lab.add_client(USER2, PASSWORD2);
    lab.initiate(a);
    assert_eq!(lab.ping(a, 3, "0.1"), 3);
    let (ok, stats) = lab.diagnose(&["vpn", "ike", "stats"]);
    assert!(ok && stats.contains("supervision: ike_restarts=0"), "{stats}");

    // Echoes run across the failure.
    let flood = lab.ping_in_background(a, 40, "0.05");
    std::thread::sleep(Duration::from_millis(500));
    let (ok, out) = lab.diagnose(&["test", "application", "ike", "fault"]);
    assert!(ok, "{out}");
    let end = Instant::now() + Duration::from_secs(5);
    while !lab.gw_err().contains("control-plane step failed: fault drill") {
        assert!(Instant::now() < end, "the drill did not happen:\n{}", lab.gw_err());
        std::thread::sleep(Duration::from_millis(50));
    }
    let (_, out) = flood.join().expect("ping thread");
    assert!(out.contains("40 received"), "echoes lost across the failure: {out}");
    let (ok, stats) = lab.diagnose(&["vpn", "ike", "stats"]);
    assert!(ok && stats.contains("supervision: ike_restarts=1"), "{stats}");

    // The control plane is still whole: a new login and its traffic.
    let code = current_code(&gateway_config());
    let b = lab.add_client("Test", &format!("p@ssw0rd{code}"));
    lab.initiate(b);
    assert_eq!(lab.ping(b, 3, "0.1"), 3);
    assert_eq!(lab.ping(a, 3, "0.1"), 3);
    assert_eq!(lab.stop_gateway().matches("install child SA:").count(), 2);
}

/// An IKE_SA_INIT flood from 40 addresses on the WAN (4 000 requests, 2 000/s) while an
/// established client pings through the worker: not one echo is lost, the flood is answered
/// with COOKIEs above the half-open threshold, and a second client logs in during it.
#[test]
fn an_ike_flood_costs_established_tunnels_nothing() {
    let mut lab = lab_or_skip!("flood");
    lab.start_gateway();
    let a = lab.add_client(USER2, PASSWORD2);
    lab.initiate(a);
    assert_eq!(lab.ping(a, 3, "0.1"), 3);
    let code = current_code(&gateway_config());
    let b = lab.add_client("Test", &format!("p@ssw0rd{code}"));

    // The flooder: a namespace on the WAN bridge with 40 addresses, a well-formed IKE_SA_INIT
    // template with a fresh SPIi per packet.
    let fl = lab.ns("fl");
    let sw = format!("{}-sw", lab.tag);
    must(&["ip", "link", "add", "fl0", "netns", &fl, "type", "veth", "peer", "name", "swf", "netns", &sw]);
    must(&["ip", "-n", &sw, "link", "set", "swf", "master", "br0", "up"]);
    let srcs: Vec<String> = (0..40).map(|i| format!("172.16.200.{}", 100 + i)).collect();
    for a in &srcs {
        must(&["ip", "-n", &fl, "addr", "add", &format!("{a}/24"), "dev", "fl0"]);
    }
    must(&["ip", "-n", &fl, "link", "set", "fl0", "up"]);
    let p = dialgate_ike::responder::Path {
        remote: ([172, 16, 200, 100], 500).into(),
        local: ([172, 16, 200, 4], 500).into(),
    };
    let mut init = ike_common::initiator::Initiator::new(
        9,
        dialgate_ike::proposal::IkeOffer::parse("aes128-sha256", &[19], false).expect("offer"),
        dialgate_ike::proposal::EspOffer::parse("aes128gcm", &[], false).expect("offer"),
        "flood",
        p,
    );
    let tmpl = lab.dir.join("sa_init.hex");
    fs::write(&tmpl, hex::encode(init.sa_init(dialgate_ike::crypto::dh::DhGroup::Ecp256, None, false)))
        .expect("template");
    let py = lab.dir.join("flood.py");
    fs::write(&py, FLOOD_PY).expect("flood.py");
    let out = lab.dir.join("flood.out");
    let mut flooder = Command::new("ip")
        .args(["netns", "exec", &fl, "python3"])
        .arg(&py)
        .arg(&tmpl)
        .args(["172.16.200.4", &srcs.join(","), "4000", "5", "2000"])
        .stdout(fs::File::create(&out).expect("flood.out"))
        .stderr(Stdio::null())
        .spawn()
        .expect("flooder");

    // Echoes all through the flood; the second client logs in in the middle of it.
    let pinger = lab.ping_in_background(a, 50, "0.1");
    std::thread::sleep(Duration::from_millis(700));
    lab.initiate(b);
    let st = wait_timeout(&mut flooder, Duration::from_secs(20)).expect("flooder finishes");
    assert!(st.success());
    let (_, pings) = pinger.join().expect("ping thread");
    let json = fs::read_to_string(&out).expect("flood.out");
    let (sent, cookies, sas) = (field(&json, "sent"), field(&json, "cookie"), field(&json, "sa"));
    eprintln!("flood through DPDK: {json}; pings: {pings}");
    assert!(pings.contains("50 received"), "echoes lost during the flood: {pings}");
    assert!(sent >= 3600.0, "{json}");
    assert!(sas <= 64.0, "half-open SAs past the COOKIE threshold: {json}");
    assert!(cookies >= 0.5 * sent, "cookies engaged: {json}");
    assert_eq!(lab.ping(b, 3, "0.1"), 3, "the client that logged in during the flood has traffic");
    assert_eq!(lab.stop_gateway().matches("install child SA:").count(), 2);
}
