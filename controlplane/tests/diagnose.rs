//! `dialgate diagnose` against a running `dialgate run` (UDP driver) over its control socket.
//!
//! - On 127.0.0.1 with free ports (no privileges needed): the empty gateway list, the tunnel
//!   template, an unknown command (exit 2), no gateway (exit 1), and the debug stream: raw
//!   IKE_SA_INIT requests from 127.0.0.1 reach a stream whose `rem-addr4` filter is 127.0.0.1
//!   and never one whose filter names another address; `debug disable` ends streams; SIGTERM
//!   removes the socket.
//! - With root, `ip netns` and strongSwan (as in `interop_swanctl.rs`): a swanctl client logs in
//!   as Test with password ‖ TOTP code across a veth pair; `vpn ike gateway list` and `vpn
//!   tunnel list` show the user, 2FA, the assigned address and NAT-T, a stream filtered on the
//!   client's address receives "authentication succeeded", and nothing shows a secret.
//!   Without root or namespaces the test says why it skips. Namespaces, daemons and the
//!   gateway are removed by drop guards, also when an assertion fails.

mod common;

use common::{current_code, sh, wait_timeout};
use std::fs;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use dialgate_controlplane::config::{self};
use dialgate_controlplane::gateway::Gateway;
use dialgate_ike::crypto::dh::{DhGroup, DhPrivate};
use dialgate_ike::crypto::SystemEntropy;
use dialgate_ike::message::{ExchangeType, Header, KePayload, Message, Payload, PayloadType, FLAG_INITIATOR};

const DIALGATE: &str = env!("CARGO_BIN_EXE_dialgate");
use common::NETNS_SH;
const EXAMPLE: &str = include_str!("../../examples/dialgate.conf");
const PASSWORD: &str = "p@ssw0rd";
const PSK: &str = "Pr3-Shared-K3y";
const GW_IP: &str = "192.0.2.1";
const CLI_IP: &str = "192.0.2.2";

static SEQ: AtomicU32 = AtomicU32::new(0);

fn temp_dir(test: &str) -> PathBuf {
    let n = SEQ.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("dgt-diag-{}-{n}-{test}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Polls `f` every 50 ms until it returns true or `limit` passes.
fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `dialgate diagnose --socket SOCK ARGS…` (bounded): exit code, stdout, stderr.
fn diagnose(sock: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let mut child = Command::new(DIALGATE)
        .arg("diagnose")
        .arg("--socket")
        .arg(sock)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn dialgate diagnose");
    let st = wait_timeout(&mut child, Duration::from_secs(10));
    let mut out = String::new();
    let mut err = String::new();
    use std::io::Read;
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut out);
    }
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    (st.and_then(|s| s.code()), out, err)
}

fn ok(sock: &Path, args: &[&str]) -> String {
    let (code, out, err) = diagnose(sock, args);
    assert_eq!(code, Some(0), "diagnose {args:?}: {err}");
    out
}

/// A `dialgate run`, killed on drop.
struct Gw {
    child: Option<Child>,
    dir: PathBuf,
    sock: PathBuf,
}

impl Gw {
    /// Starts `dialgate run` (in namespace `ns`, if given) and waits until it listens.
    fn start(dir: &Path, conf_text: &str, ns: Option<&str>, extra: &[&str]) -> Gw {
        let conf = dir.join("gw.conf");
        fs::write(&conf, conf_text).expect("write gw.conf");
        let sock = dir.join("ctl").join("dialgate.sock");
        let out = fs::File::create(dir.join("gw.out")).expect("gw.out");
        let err = fs::File::create(dir.join("gw.err")).expect("gw.err");
        let mut cmd = match ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, DIALGATE]);
                c
            }
            None => Command::new(DIALGATE),
        };
        cmd.arg("run").arg("--config").arg(&conf).arg("--control-socket").arg(&sock).args(extra);
        let child = cmd.stdout(out).stderr(err).stdin(Stdio::null()).spawn().expect("spawn dialgate run");
        let mut gw = Gw { child: Some(child), dir: dir.to_path_buf(), sock };
        let end = Instant::now() + Duration::from_secs(5);
        while !gw.out().contains("listening on") {
            if let Some(Ok(Some(s))) = gw.child.as_mut().map(Child::try_wait) {
                panic!("dialgate exited early ({s}): {}", gw.err());
            }
            assert!(Instant::now() < end, "dialgate did not start: {}", gw.err());
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(gw.out().contains("dialgate: diagnose on "), "{}", gw.out());
        gw
    }

    fn out(&self) -> String {
        fs::read_to_string(self.dir.join("gw.out")).unwrap_or_default()
    }

    fn err(&self) -> String {
        fs::read_to_string(self.dir.join("gw.err")).unwrap_or_default()
    }

    /// The NAT-T (second) listening address.
    fn ports(&self) -> (SocketAddr, SocketAddr) {
        let out = self.out();
        let line = out.lines().find(|l| l.contains("listening on")).expect("listening line");
        let rest = line.split("listening on ").nth(1).expect("addresses");
        let (a, b) = rest.split_once(" and ").expect("two addresses");
        (a.trim().parse().expect("ike addr"), b.trim().parse().expect("natt addr"))
    }

    /// SIGTERM and wait.
    fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        wait_timeout(&mut child, Duration::from_secs(5))
    }
}

impl Drop for Gw {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A `dialgate diagnose debug enable` running in the background.
struct Stream {
    child: Option<Child>,
    out: PathBuf,
    err: PathBuf,
}

impl Stream {
    /// Starts the stream and waits until the gateway has registered it (its notice on stderr).
    fn open(sock: &Path, dir: &Path, name: &str) -> Stream {
        let out = dir.join(format!("{name}.out"));
        let err = dir.join(format!("{name}.err"));
        let child = Command::new(DIALGATE)
            .arg("diagnose")
            .arg("--socket")
            .arg(sock)
            .args(["--for", "60", "debug", "enable"])
            .stdin(Stdio::null())
            .stdout(fs::File::create(&out).expect("stream out"))
            .stderr(fs::File::create(&err).expect("stream err"))
            .spawn()
            .expect("spawn stream");
        let s = Stream { child: Some(child), out, err };
        assert!(
            eventually(Duration::from_secs(5), || s.err_text().contains("debug output enabled")),
            "stream did not start: {}",
            s.err_text()
        );
        s
    }

    fn text(&self) -> String {
        fs::read_to_string(&self.out).unwrap_or_default()
    }

    fn err_text(&self) -> String {
        fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// Waits for the client to exit (after `debug disable`); returns its exit status.
    fn wait(&mut self) -> Option<ExitStatus> {
        let mut c = self.child.take()?;
        wait_timeout(&mut c, Duration::from_secs(5))
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// An IKE_SA_INIT request (RFC 7296 §1.2) for the example gateway's offer, group 19.
fn sa_init(gw: &Gateway, spi_i: u64) -> Vec<u8> {
    let dh = DhPrivate::generate(DhGroup::Ecp256, &mut SystemEntropy::default()).expect("dh");
    let payloads = vec![
        Payload::Sa(gw.ike.ike.to_sa()),
        Payload::Ke(KePayload { group: DhGroup::Ecp256.id(), data: dh.public().to_vec() }),
        Payload::Nonce(vec![0x5a; 32]),
    ];
    let header = Header {
        spi_i,
        spi_r: 0,
        next_payload: PayloadType::NONE,
        version: 0x20,
        exchange: ExchangeType::IKE_SA_INIT,
        flags: FLAG_INITIATOR,
        message_id: 0,
        length: 0,
    };
    Message { header, payloads }.encode()
}

#[test]
fn diagnose_over_loopback() {
    let dir = temp_dir("loop");
    let mut gw = Gw::start(&dir, EXAMPLE, None, &["--listen", "127.0.0.1", "--ports", "0,0"]);
    let sock = gw.sock.clone();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(fs::metadata(&sock).expect("socket").permissions().mode() & 0o777, 0o600);

    assert_eq!(ok(&sock, &["vpn", "ike", "gateway", "list"]), "", "no IKE SA yet");
    let t = ok(&sock, &["vpn", "tunnel", "list"]);
    assert!(t.starts_with("list all ipsec tunnel in vd 0\n") && t.contains("name=Test-Dialup ver=2 "), "{t}");
    assert!(t.contains("mode=dialup/2") && t.contains("child_num=0"), "{t}");
    let fw = ok(&sock, &["firewall", "policy", "list"]);
    assert!(fw.contains("policy 1 name=\"vpn_VPN-v2_remote_0\" action=accept"), "{fw}");

    let (code, _, err) = diagnose(&sock, &["vpn", "ike", "gatway", "list"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("unknown command") && err.contains("vpn ike gateway list [name NAME]"), "{err}");
    let (code, _, err) = diagnose(&dir.join("nothing.sock"), &["vpn", "tunnel", "list"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("cannot connect"), "{err}");

    let cfg = config::load_str(EXAMPLE, "gw.conf").expect("example loads");
    let g = Gateway::from_config(&cfg, None).expect("gateway");
    let (ike, _) = gw.ports();
    let client = UdpSocket::bind("127.0.0.1:0").expect("client socket");

    // A filter naming another address: the stream stays silent while an SA is negotiated.
    ok(&sock, &["debug", "application", "ike", "-1"]);
    ok(&sock, &["vpn", "ike", "log", "filter", "rem-addr4", "203.0.113.9"]);
    let mut other = Stream::open(&sock, &dir, "other");
    client.send_to(&sa_init(&g, 0x1111_2222_3333_4444), ike).expect("send");
    assert!(
        eventually(Duration::from_secs(5), || ok(&sock, &["vpn", "ike", "gateway", "list"])
            .contains("status: connecting")),
        "SA_INIT did not show in the gateway list: {}",
        gw.err()
    );
    assert!(gw.err().contains("responder preparing SA_INIT msg"), "{}", gw.err());
    ok(&sock, &["debug", "disable"]);
    assert!(other.wait().is_some_and(|s| s.success()), "stream did not end on debug disable");
    assert_eq!(other.text(), "", "a non-matching rem-addr4 filter let lines through");

    // A filter naming the client: its lines arrive.
    ok(&sock, &["vpn", "ike", "log", "filter", "rem-addr4", "127.0.0.1"]);
    let info = ok(&sock, &["debug", "info"]);
    assert!(info.contains("ike debug level: -1") && info.contains("rem-addr4: 127.0.0.1"), "{info}");
    let mut mine = Stream::open(&sock, &dir, "mine");
    client.send_to(&sa_init(&g, 0x5555_6666_7777_8888), ike).expect("send");
    assert!(
        eventually(Duration::from_secs(5), || mine.text().contains("responder preparing SA_INIT msg")),
        "stream: {:?}\ngateway: {}",
        mine.text(),
        gw.err()
    );
    let text = mine.text();
    assert!(text.contains("ike V=root:0:Test-Dialup: responder received SA_INIT msg from 127.0.0.1:"), "{text}");
    assert!(text.contains("ike V=root:0:Test-Dialup:2: responder preparing SA_INIT msg"), "{text}");
    ok(&sock, &["debug", "reset"]);
    assert!(mine.wait().is_some_and(|s| s.success()));

    let list = ok(&sock, &["vpn", "ike", "gateway", "list"]);
    assert_eq!(list.matches("name: Test-Dialup\n").count(), 2, "{list}");
    assert!(list.contains("addr: 127.0.0.1:") && list.contains("-> 127.0.0.1:"), "{list}");
    let stats = ok(&sock, &["vpn", "ike", "stats"]);
    assert!(
        stats.contains("ike-sa: current 2 established 0") && stats.contains("driver udp: ike_rx=2 ike_tx=2"),
        "{stats}"
    );

    let st = gw.stop().expect("dialgate did not stop on SIGTERM");
    assert!(st.success(), "{st}");
    assert!(!sock.exists(), "control socket left behind");
    let _ = fs::remove_dir_all(&dir);
}

// ---- strongSwan in network namespaces -------------------------------------------------------

/// Why the strongSwan test cannot run here (probed once).
fn skip_reason() -> Option<String> {
    static REASON: OnceLock<Option<String>> = OnceLock::new();
    REASON
        .get_or_init(|| {
            let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
            let uid = status.lines().find(|l| l.starts_with("Uid:")).and_then(|l| l.split_whitespace().nth(1));
            if uid != Some("0") {
                return Some("not running as root".into());
            }
            if !Path::new("/usr/sbin/charon-systemd").exists() || !Path::new("/usr/sbin/swanctl").exists() {
                return Some("strongSwan (charon-systemd, swanctl) is not installed".into());
            }
            let probe = format!("dgd-probe-{}", std::process::id());
            let ok = Command::new("ip").args(["netns", "add", &probe]).status().is_ok_and(|s| s.success());
            let _ = Command::new("ip").args(["netns", "del", &probe]).status();
            (!ok).then(|| "`ip netns add` does not work here".into())
        })
        .clone()
}

/// Two namespaces joined by a veth pair, a charon daemon in the client one; removed on drop.
struct Lab {
    dir: PathBuf,
    client_dir: PathBuf,
    namespaces: Vec<String>,
}

impl Lab {
    fn new(dir: &Path) -> Lab {
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let (gw_ns, cli_ns) = (format!("dgd-gw-{pid}-{n}"), format!("dgd-cli-{pid}-{n}"));
        let client_dir = dir.join("client");
        let mut lab = Lab { dir: dir.to_path_buf(), client_dir, namespaces: Vec::new() };
        let (ok, out) =
            sh(&["dg_ns_pair", &cli_ns, &gw_ns, "cli0", "wan0", &format!("{CLI_IP}/30"), &format!("{GW_IP}/30")]);
        lab.namespaces = vec![cli_ns.clone(), gw_ns];
        assert!(ok, "namespace setup failed: {out}");
        let d = lab.client_dir.to_str().expect("utf-8").to_string();
        let (ok, out) = sh(&["dg_charon_conf", &d]);
        assert!(ok, "{out}");
        let (ok, out) = sh(&["dg_charon_start", &cli_ns, &d]);
        assert!(ok, "charon did not start: {out}");
        lab
    }

    fn gw_ns(&self) -> &str {
        &self.namespaces[1]
    }

    fn swanctl(&self, args: &[&str]) -> (bool, String) {
        let mut a = vec!["dg_swanctl", self.client_dir.to_str().expect("utf-8")];
        a.extend_from_slice(args);
        sh(&a)
    }

    fn load_client(&self, user: &str, secret: &str) {
        let conf = format!(
            r#"connections {{
  dialgate {{
    version = 2
    local_addrs = {CLI_IP}
    remote_addrs = {GW_IP}
    vips = 0.0.0.0
    encap = yes
    proposals = aes128-sha256-ecp256
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
        esp_proposals = aes128gcm16
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
"#
        );
        let path = self.client_dir.join("swanctl.conf");
        fs::write(&path, conf).expect("write swanctl.conf");
        let (ok, out) = self.swanctl(&["--load-all", "--noprompt", "--file", path.to_str().expect("utf-8")]);
        assert!(ok && out.contains("loaded connection 'dialgate'"), "swanctl --load-all failed: {out}");
    }

    fn initiate(&self) -> (bool, String) {
        let log = self.client_dir.join("initiate.out");
        let f = fs::File::create(&log).expect("initiate.out");
        let f2 = f.try_clone().expect("dup");
        let d = self.client_dir.to_str().expect("utf-8");
        let mut child = Command::new("bash")
            .arg(NETNS_SH)
            .args(["dg_swanctl", d, "--initiate", "--child", "dialgate", "--timeout", "8"])
            .stdout(f)
            .stderr(f2)
            .spawn()
            .expect("spawn swanctl");
        let st = wait_timeout(&mut child, Duration::from_secs(12));
        (st.is_some_and(|s| s.success()), fs::read_to_string(&log).unwrap_or_default())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(d) = self.client_dir.to_str() {
            let _ = sh(&["dg_charon_stop", d]);
        }
        let mut args = vec!["dg_ns_del"];
        args.extend(self.namespaces.iter().map(String::as_str));
        let _ = sh(&args);
        if std::thread::panicking() {
            eprintln!("diagnose: logs kept in {}", self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

fn gateway_config() -> String {
    let text = EXAMPLE
        .replace("set ip 172.16.200.4 255.255.255.0", &format!("set ip {GW_IP} 255.255.255.0"))
        .replace("set gateway 172.16.200.1", "set gateway 192.0.2.254");
    assert!(text.contains(GW_IP), "example configuration changed shape");
    text
}

#[test]
fn swanctl_login_shows_in_diagnose() {
    if let Some(why) = skip_reason() {
        eprintln!("skipping swanctl_login_shows_in_diagnose: {why}");
        return;
    }
    let dir = temp_dir("swan");
    // Field order: the gateway and streams drop (are killed) before the lab removes namespaces.
    let lab = Lab::new(&dir);
    let text = gateway_config();
    let gw = Gw::start(&dir, &text, Some(lab.gw_ns()), &["--listen", GW_IP]);
    let sock = gw.sock.clone();

    ok(&sock, &["debug", "reset"]);
    ok(&sock, &["vpn", "ike", "log-filter", "clear"]);
    ok(&sock, &["vpn", "ike", "log", "filter", "rem-addr4", CLI_IP]);
    ok(&sock, &["debug", "application", "ike", "-1"]);
    ok(&sock, &["debug", "application", "fnbamd", "-1"]);
    let mut stream = Stream::open(&sock, &dir, "stream");

    let code = current_code(&text);
    lab.load_client("Test", &format!("{PASSWORD}{code}"));
    let (ok_login, out) = lab.initiate();
    assert!(ok_login, "initiate failed:\n{out}\n--- gateway:\n{}{}", gw.out(), gw.err());
    let (_, sas) = lab.swanctl(&["--list-sas"]);
    let vip = sas
        .lines()
        .find(|l| l.trim_start().starts_with("local ") && l.contains('@'))
        .and_then(|l| l.rsplit('[').next())
        .map(|s| s.trim_end().trim_end_matches(']').to_string())
        .unwrap_or_else(|| panic!("no virtual IP in: {sas}"));
    assert!(vip.starts_with("10.40.40."), "{vip}");

    let list = ok(&sock, &["vpn", "ike", "gateway", "list"]);
    for want in [
        "name: Test-Dialup_0\n".to_string(),
        "version: 2\n".to_string(),
        "interface: wan1 1\n".to_string(),
        format!("addr: {GW_IP}:4500 -> {CLI_IP}:4500\n"),
        "eap-user: Test\n".to_string(),
        "2FA: yes\n".to_string(),
        format!("assigned IPv4 address: {vip}/255.255.255.255\n"),
        "IKE SA: created 1/1  established 1/1  time ".to_string(),
        "IPsec SA: created 1/1  established 1/1".to_string(),
    ] {
        assert!(list.contains(&want), "missing {want:?} in:\n{list}");
    }
    assert_eq!(ok(&sock, &["vpn", "ike", "gateway", "list", "name", "Test-Dialup_0"]), list);
    let tunnels = ok(&sock, &["vpn", "tunnel", "list", "name", "Test-Dialup_0"]);
    for want in [
        format!("name=Test-Dialup_0 ver=2 serial=1 {GW_IP}:4500->{CLI_IP}:4500 nexthop={CLI_IP} tun_id={vip} "),
        "parent=Test-Dialup index=0\n".to_string(),
        "stat: rxp=0 txp=0 rxb=0 txb=0\n".to_string(),
        "natt: mode=keepalive draft=0 interval=10 remote_port=4500\n".to_string(),
        format!("  dst: 0:{vip}-{vip}:0\n"),
        "esp=aes128gcm key=16".to_string(),
    ] {
        assert!(tunnels.contains(&want), "missing {want:?} in:\n{tunnels}");
    }

    assert!(
        eventually(Duration::from_secs(3), || stream.text().contains("authentication succeeded")),
        "stream: {}",
        stream.text()
    );
    ok(&sock, &["debug", "disable"]);
    assert!(stream.wait().is_some_and(|s| s.success()));
    let lines = stream.text();
    assert!(lines.contains("ike V=root:0:Test-Dialup:1: responder received AUTH msg\n"), "{lines}");
    assert!(lines.contains("ike V=root:0:Test-Dialup:1: authentication succeeded\n"), "{lines}");
    assert!(lines.contains("2fa code has already been verified in concatenated password"), "{lines}");

    let all = format!("{list}{tunnels}{lines}{}", ok(&sock, &["vpn", "ike", "stats"]));
    assert!(!all.contains(PASSWORD), "password in diagnose output");
    assert!(!all.contains(PSK), "PSK in diagnose output");
    assert!(!all.contains(&code), "token code in diagnose output");
    drop(gw);
    drop(lab);
}
