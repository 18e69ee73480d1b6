//! strongSwan interop: a swanctl client (charon-systemd with kernel-libipsec, ESP in UDP 4500
//! forced with `encap = yes`) dials into `dialgate run` across a veth pair between two network
//! namespaces, as user Test of examples/dialgate.conf: PSK gateway authentication (RFC 7296
//! §2.15), EAP-Identity and EAP-MSCHAPv2 (RFC 2759) with the password immediately followed by
//! the current TOTP code (RFC 6238) of Test's token, CP address assignment (§2.19).
//!
//! Needs root, `ip netns` and the strongSwan packages (see `scripts/setup`). Without root or
//! namespace support each test prints why it skips and returns. Every namespace, daemon and
//! gateway a test starts is removed by a drop guard, also when the test fails.

mod common;

use common::{current_code, sh, wait_timeout};
use std::fs;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const DIALGATE: &str = env!("CARGO_BIN_EXE_dialgate");
use common::NETNS_SH;
const EXAMPLE: &str = include_str!("../../examples/dialgate.conf");
const PASSWORD: &str = "p@ssw0rd";
const PSK: &str = "Pr3-Shared-K3y";
const GW_IP: &str = "192.0.2.1";

static SEQ: AtomicU32 = AtomicU32::new(0);

const USER2: &str = "Test2";
const PASSWORD2: &str = "s3cond-Passw0rd";

/// The example gateway with its WAN address moved into the test network, plus a second member
/// of VPN_Users without a token (a second client must not reuse Test's code).
fn gateway_config() -> String {
    let text = EXAMPLE
        .replace("set ip 172.16.200.4 255.255.255.0", &format!("set ip {GW_IP} 255.255.255.0"))
        .replace("set gateway 172.16.200.1", "set gateway 192.0.2.254")
        .replace(
            "        set passwd \"p@ssw0rd\"\n    next\n",
            &format!(
                "        set passwd \"p@ssw0rd\"\n    next\n    edit \"{USER2}\"\n        set type password\n        set passwd \"{PASSWORD2}\"\n    next\n"
            ),
        )
        .replace("set member \"Test\"", &format!("set member \"Test\" \"{USER2}\""));
    assert!(text.contains(USER2) && text.contains(GW_IP), "example configuration changed shape");
    text
}

/// Why these tests cannot run here (probed once per process).
fn skip_reason() -> Option<String> {
    static REASON: OnceLock<Option<String>> = OnceLock::new();
    REASON.get_or_init(probe).clone()
}

fn probe() -> Option<String> {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).and_then(|l| l.split_whitespace().nth(1));
    if uid != Some("0") {
        return Some("not running as root".into());
    }
    let probe = format!("dgt-probe-{}", std::process::id());
    let ok = Command::new("ip").args(["netns", "add", &probe]).status().is_ok_and(|s| s.success());
    let _ = Command::new("ip").args(["netns", "del", &probe]).status();
    if !ok {
        return Some("`ip netns add` does not work here".into());
    }
    None
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

/// A strongSwan client daemon in its own namespace.
struct Client {
    dir: PathBuf,
    ip: String,
}

/// Namespaces, the gateway and the clients of one test; torn down on drop.
struct Lab {
    dir: PathBuf,
    gw_ns: String,
    namespaces: Vec<String>,
    clients: Vec<Client>,
    gw: Option<Child>,
}

impl Lab {
    fn new(test: &str) -> Self {
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let dir = std::env::temp_dir().join(format!("dgt-{pid}-{n}-{test}"));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("temp dir");
        let gw_ns = format!("dgt-gw-{pid}-{n}");
        Lab { dir, gw_ns: gw_ns.clone(), namespaces: vec![gw_ns], clients: Vec::new(), gw: None }
    }

    /// Adds client namespace number `i` linked to the gateway namespace by its own veth pair
    /// (192.0.2.4i+2 ↔ 192.0.2.4i+1, /30), with a charon daemon running in it.
    fn add_client(&mut self, i: u8) -> usize {
        let ns = format!("dgt-cli-{}-{}", self.namespaces[0].trim_start_matches("dgt-gw-"), i);
        let (cli_ip, gw_ip) = (format!("192.0.2.{}", 4 * i + 2), format!("192.0.2.{}", 4 * i + 1));
        let (ok, out) = if i == 0 {
            sh(&["dg_ns_pair", &ns, &self.gw_ns, "cli0", "wan0", &format!("{cli_ip}/30"), &format!("{gw_ip}/30")])
        } else {
            let gw_if = format!("wan{i}");
            sh(&["dg_ns_attach", &ns, &self.gw_ns, "cli0", &gw_if, &format!("{cli_ip}/30"), &format!("{gw_ip}/30")])
        };
        if i == 0 {
            self.namespaces.insert(0, ns.clone());
        } else {
            self.namespaces.push(ns.clone());
        }
        assert!(ok, "namespace setup failed: {out}");
        let dir = self.dir.join(format!("client{i}"));
        let d = dir.to_str().expect("utf-8 path");
        let (ok, out) = sh(&["dg_charon_conf", d]);
        assert!(ok, "{out}");
        self.clients.push(Client { dir: dir.clone(), ip: cli_ip });
        let (ok, out) = sh(&["dg_charon_start", &ns, d]);
        assert!(ok, "charon did not start: {out}");
        self.clients.len() - 1
    }

    /// Starts `dialgate run` in the gateway namespace and waits until it listens.
    fn start_gateway(&mut self, listen: Option<&str>) {
        let conf = self.dir.join("gw.conf");
        fs::write(&conf, gateway_config()).expect("write gw.conf");
        let out = fs::File::create(self.dir.join("gw.out")).expect("gw.out");
        let err = fs::File::create(self.dir.join("gw.err")).expect("gw.err");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.gw_ns, DIALGATE, "run", "--config"]).arg(&conf);
        if let Some(l) = listen {
            cmd.args(["--listen", l]);
        }
        let child = cmd.stdout(out).stderr(err).stdin(Stdio::null()).spawn().expect("spawn dialgate");
        self.gw = Some(child);
        let end = Instant::now() + Duration::from_secs(5);
        while !self.gw_out().contains("listening on") {
            if let Some(Ok(Some(s))) = self.gw.as_mut().map(Child::try_wait) {
                panic!("dialgate exited early ({s}): {}", self.gw_err());
            }
            assert!(Instant::now() < end, "dialgate did not start: {}", self.gw_err());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn gw_out(&self) -> String {
        fs::read_to_string(self.dir.join("gw.out")).unwrap_or_default()
    }

    fn gw_err(&self) -> String {
        fs::read_to_string(self.dir.join("gw.err")).unwrap_or_default()
    }

    /// Writes and loads the client's swanctl.conf: PSK for the gateway, EAP-MSCHAPv2 as Test
    /// with `secret`, a virtual IP, ESP in UDP forced.
    fn load_client(&self, c: usize, user: &str, secret: &str, gw_ip: &str) {
        let cl = &self.clients[c];
        let conf = format!(
            r#"connections {{
  dialgate {{
    version = 2
    local_addrs = {local}
    remote_addrs = {gw_ip}
    vips = 0.0.0.0
    encap = yes
    proposals = aes128-sha256-ecp256,aes256gcm16-prfsha384-ecp384
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
  eap-test {{
    id = {user}
    secret = "{secret}"
  }}
  ike-gw {{
    secret = "{PSK}"
  }}
}}
"#,
            local = cl.ip,
        );
        let path = cl.dir.join("swanctl.conf");
        fs::write(&path, conf).expect("write swanctl.conf");
        let d = cl.dir.to_str().expect("utf-8");
        let (ok, out) = sh(&["dg_swanctl", d, "--load-all", "--noprompt", "--file", path.to_str().expect("utf-8")]);
        assert!(ok && out.contains("loaded connection 'dialgate'"), "swanctl --load-all failed: {out}");
    }

    /// `swanctl --initiate`; returns whether it succeeded and its output.
    fn initiate(&self, c: usize) -> (bool, String) {
        let cl = &self.clients[c];
        let log = cl.dir.join("initiate.out");
        let f = fs::File::create(&log).expect("initiate.out");
        let f2 = f.try_clone().expect("dup");
        let d = cl.dir.to_str().expect("utf-8");
        let mut child = Command::new("bash")
            .arg(NETNS_SH)
            .args(["dg_swanctl", d, "--initiate", "--child", "dialgate", "--timeout", "8"])
            .stdout(f)
            .stderr(f2)
            .spawn()
            .expect("spawn swanctl");
        let st = wait_timeout(&mut child, Duration::from_secs(12));
        let out = fs::read_to_string(&log).unwrap_or_default();
        (st.is_some_and(|s| s.success()), out)
    }

    fn terminate(&self, c: usize) -> String {
        let d = self.clients[c].dir.to_str().expect("utf-8");
        sh(&["dg_swanctl", d, "--terminate", "--ike", "dialgate", "--timeout", "5"]).1
    }

    fn list_sas(&self, c: usize) -> String {
        let d = self.clients[c].dir.to_str().expect("utf-8");
        sh(&["dg_swanctl", d, "--list-sas"]).1
    }

    /// Stops the gateway with SIGTERM and returns its exit status.
    fn stop_gateway(&mut self) -> Option<ExitStatus> {
        let mut child = self.gw.take()?;
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        wait_timeout(&mut child, Duration::from_secs(3))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut gw) = self.gw.take() {
            let _ = gw.kill();
            let _ = gw.wait();
        }
        for c in &self.clients {
            if let Some(d) = c.dir.to_str() {
                let _ = sh(&["dg_charon_stop", d]);
            }
        }
        let mut args = vec!["dg_ns_del"];
        args.extend(self.namespaces.iter().map(String::as_str));
        let _ = sh(&args);
        if std::thread::panicking() {
            eprintln!("interop: logs kept in {}", self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// The client's virtual IP from `swanctl --list-sas` (`local '…' @ addr[port] [VIP]`).
fn virtual_ip(list: &str) -> Option<Ipv4Addr> {
    let line = list.lines().find(|l| l.trim_start().starts_with("local ") && l.contains('@'))?;
    let last = line.rsplit('[').next()?;
    last.trim_end().trim_end_matches(']').parse().ok()
}

fn in_pool(a: Ipv4Addr) -> bool {
    (u32::from(Ipv4Addr::new(10, 40, 40, 2))..=u32::from(Ipv4Addr::new(10, 40, 40, 20))).contains(&u32::from(a))
}

fn no_secrets(text: &str, code: &str) {
    assert!(!text.contains(PASSWORD), "password in gateway output");
    assert!(!text.contains(PSK), "PSK in gateway output");
    assert!(!text.contains(code), "token code in gateway output");
}

#[test]
fn swanctl_psk_gateway_eap_mschapv2_with_token_code() {
    let mut lab = lab_or_skip!("login");
    let c = lab.add_client(0);
    lab.start_gateway(Some(GW_IP));
    let code = current_code(&gateway_config());
    lab.load_client(c, "Test", &format!("{PASSWORD}{code}"), GW_IP);
    let (ok, out) = lab.initiate(c);
    assert!(ok, "initiate failed:\n{out}\n--- gateway:\n{}{}", lab.gw_out(), lab.gw_err());
    assert!(out.contains("EAP method EAP_MSCHAPV2 succeeded"), "{out}");

    let sas = lab.list_sas(c);
    assert!(sas.contains("ESTABLISHED"), "{sas}");
    assert!(sas.contains("INSTALLED, TUNNEL-in-UDP"), "CHILD_SA not UDP-encapsulated: {sas}");
    assert!(sas.contains("remote 10.50.0.0/24"), "split include not applied: {sas}");
    let vip = virtual_ip(&sas).unwrap_or_else(|| panic!("no virtual IP in: {sas}"));
    assert!(in_pool(vip), "{vip} outside 10.40.40.2-20");

    let (gout, gerr) = (lab.gw_out(), lab.gw_err());
    assert!(gerr.contains("ike V=root:0:Test-Dialup:1: responder received AUTH msg"), "{gerr}");
    assert!(gerr.contains("ike V=root:0:Test-Dialup:1: authentication succeeded"), "{gerr}");
    let install = gout.lines().find(|l| l.contains("install child SA:")).unwrap_or_else(|| panic!("{gout}"));
    assert!(install.contains(&format!("assigned={vip}")), "{install}");
    assert!(install.contains("encap=udp") && install.contains(":4500"), "{install}");
    assert!(install.contains(&format!("tsi={vip} ")), "{install}");
    assert!(gout.contains("eap-user=Test"), "{gout}");
    // The gateway's inbound SPI is the client's outbound one.
    let in_spi = install.split("in_spi=").nth(1).and_then(|s| s.get(..8)).expect("in_spi");
    assert!(sas.contains(&format!("out {in_spi}")), "SPI mismatch: {install}\n{sas}");
    no_secrets(&format!("{gout}{gerr}"), &code);

    let st = lab.stop_gateway().expect("dialgate did not stop on SIGTERM");
    assert!(st.success(), "dialgate exit status {st}");
    assert!(lab.gw_out().contains("dialgate: stopped;"), "{}", lab.gw_out());
}

#[test]
fn swanctl_wrong_password_is_refused() {
    let mut lab = lab_or_skip!("wrongpw");
    let c = lab.add_client(0);
    lab.start_gateway(Some(GW_IP));
    let code = current_code(&gateway_config());
    lab.load_client(c, "Test", &format!("wrongpass{code}"), GW_IP);
    let (ok, out) = lab.initiate(c);
    assert!(!ok, "initiate succeeded with a wrong password:\n{out}");
    assert!(out.contains("EAP-MS-CHAPv2 failed"), "{out}");
    let sas = lab.list_sas(c);
    assert!(!sas.contains("ESTABLISHED"), "{sas}");
    let (gout, gerr) = (lab.gw_out(), lab.gw_err());
    assert!(
        gout.contains("authentication failed: user=\"Test\" reason: wrong password or token code"),
        "{gout}\n{gerr}"
    );
    assert!(gerr.contains("EAP-MSCHAPv2 failed for user \"Test\""), "{gerr}");
    assert!(!gout.contains("install child SA"), "{gout}");
    no_secrets(&format!("{gout}{gerr}"), &code);
}

#[test]
fn swanctl_reused_token_code_is_refused() {
    let mut lab = lab_or_skip!("reuse");
    let c = lab.add_client(0);
    lab.start_gateway(Some(GW_IP));
    let code = current_code(&gateway_config());
    lab.load_client(c, "Test", &format!("{PASSWORD}{code}"), GW_IP);
    let (ok, out) = lab.initiate(c);
    assert!(ok, "first login failed:\n{out}\n{}", lab.gw_out());
    let t = lab.terminate(c);
    assert!(t.contains("terminate completed successfully"), "{t}");
    // Same password and code again, well within the code's 30 s step (±1 step accepted).
    let (ok, out) = lab.initiate(c);
    assert!(!ok, "a used code was accepted again:\n{out}");
    assert!(!lab.list_sas(c).contains("ESTABLISHED"));
    let gout = lab.gw_out();
    assert!(gout.contains("reason: token code has already been used"), "{gout}\n{}", lab.gw_err());
    assert_eq!(gout.matches("install child SA").count(), 1, "{gout}");
}

#[test]
fn swanctl_two_clients_get_different_addresses() {
    let mut lab = lab_or_skip!("two");
    let a = lab.add_client(0);
    let b = lab.add_client(1);
    // Default listen address (0.0.0.0): both veths reach the same sockets.
    lab.start_gateway(None);
    let code = current_code(&gateway_config());
    lab.load_client(a, "Test", &format!("{PASSWORD}{code}"), GW_IP);
    lab.load_client(b, USER2, PASSWORD2, "192.0.2.5");
    let (ok, out) = lab.initiate(a);
    assert!(ok, "client A:\n{out}\n{}", lab.gw_out());
    let (ok, out) = lab.initiate(b);
    assert!(ok, "client B:\n{out}\n{}{}", lab.gw_out(), lab.gw_err());
    let (sa, sb) = (lab.list_sas(a), lab.list_sas(b));
    let va = virtual_ip(&sa).unwrap_or_else(|| panic!("{sa}"));
    let vb = virtual_ip(&sb).unwrap_or_else(|| panic!("{sb}"));
    assert!(in_pool(va) && in_pool(vb), "{va} {vb}");
    assert_ne!(va, vb, "both clients got {va}");
    let gout = lab.gw_out();
    assert_eq!(gout.matches("install child SA").count(), 2, "{gout}");
    assert!(gout.contains(&format!("eap-user={USER2} assigned={vb}")), "{gout}");
    assert!(gout.contains(&format!("eap-user=Test assigned={va}")), "{gout}");
}
