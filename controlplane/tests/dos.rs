//! IKE_SA_INIT flood: a flooder namespace with 50 source addresses sends 20 000 IKE_SA_INIT
//! requests (fresh SPIi each, at most 10 s, paced) to `dialgate run` (UDP driver) in the
//! gateway namespace, while an honest strongSwan client in a third namespace logs in.
//!
//! First one address floods alone (300 requests): it gets 10 half-open SAs, the per-address
//! limit, and nothing more; the gateway logs that at most once a second.
//!
//! Asserted: the gateway creates half-open SAs only up to its COOKIE threshold (64, RFC 7296
//! §2.6) and answers everything above it with N(COOKIE) — the flooder sees the cookies; the
//! half-open count the gateway logs never passes the threshold (plus the honest client's one);
//! the honest client completes IKE_SA_INIT (with the cookie), EAP-MSCHAPv2 and the CHILD_SA
//! during the flood; the gateway keeps answering and stops cleanly. The flood rate sent and the
//! rate answered are printed (run with `--nocapture`).
//!
//! Needs root, `ip netns`, python3 and the strongSwan packages; otherwise it prints why it
//! skips. Namespaces and processes are removed by a drop guard on every path.

mod common;
#[path = "../ike/tests/common/mod.rs"]
mod ike_common;

use common::{field, sh, wait_timeout, FLOOD_PY};

use std::fs;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dialgate_controlplane::auth::totp;
use dialgate_controlplane::config::{self, value::base32_decode};
use dialgate_ike::crypto::dh::DhGroup;
use dialgate_ike::proposal::{EspOffer, IkeOffer};
use dialgate_ike::responder::Path;
use ike_common::initiator::Initiator;

const DIALGATE: &str = env!("CARGO_BIN_EXE_dialgate");
use common::NETNS_SH;
const EXAMPLE: &str = include_str!("../../examples/dialgate.conf");
const PASSWORD: &str = "p@ssw0rd";
const PSK: &str = "Pr3-Shared-K3y";
const GW_IP: &str = "192.0.2.1";
const CLI_IP: &str = "192.0.2.2";
const FLOOD_GW: &str = "198.51.100.1";
const FLOOD_SOURCES: u8 = 50;
const FLOOD_PACKETS: u32 = 20_000;
const FLOOD_SECS: f64 = 10.0;
/// Paced so that 20 000 packets take about 8 s (the whole flood stays under 10 s).
const FLOOD_PPS: u32 = 2_500;
/// `Gateway::from_config` sets the responder's COOKIE threshold to 64 half-open SAs.
const COOKIE_THRESHOLD: u64 = 64;
/// … and allows one address 10 of them.
const PER_ADDRESS: u64 = 10;

fn gateway_config() -> String {
    let text = EXAMPLE
        .replace("set ip 172.16.200.4 255.255.255.0", &format!("set ip {GW_IP} 255.255.255.0"))
        .replace("set gateway 172.16.200.1", "set gateway 192.0.2.254");
    assert!(text.contains(GW_IP), "example changed shape");
    text
}

fn current_code(cfg_text: &str) -> String {
    let cfg = config::load_str(cfg_text, "gw.conf").expect("config loads");
    let tok = &cfg.fortitokens[0];
    let seed = base32_decode(tok.seed.as_ref().expect("seed").expose()).expect("base32");
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs();
    totp::format_code(totp::totp(tok.algorithm, &seed, now, u64::from(tok.period), tok.digits), tok.digits)
}

fn skip_reason() -> Option<String> {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).and_then(|l| l.split_whitespace().nth(1));
    if uid != Some("0") {
        return Some("not running as root".into());
    }
    let probe = format!("dgd-probe-{}", std::process::id());
    let ok = Command::new("ip").args(["netns", "add", &probe]).status().is_ok_and(|s| s.success());
    let _ = Command::new("ip").args(["netns", "del", &probe]).status();
    if !ok {
        return Some("`ip netns add` does not work here".into());
    }
    if !std::path::Path::new("/usr/sbin/charon-systemd").exists() {
        return Some("strongSwan (charon-systemd) is not installed".into());
    }
    if !Command::new("python3").arg("-c").arg("import json").status().is_ok_and(|s| s.success()) {
        return Some("python3 is missing".into());
    }
    None
}

/// Client, gateway and flooder namespaces with their processes; removed on drop.
struct Lab {
    dir: PathBuf,
    namespaces: Vec<String>,
    client_dir: PathBuf,
    children: Vec<Child>,
    gw: Option<Child>,
}

impl Lab {
    fn new() -> Lab {
        let pid = std::process::id();
        let dir = std::env::temp_dir().join(format!("dgd-{pid}-dos"));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("temp dir");
        let (cli, gw, fl) = (format!("dgd-cli-{pid}"), format!("dgd-gw-{pid}"), format!("dgd-fl-{pid}"));
        let client_dir = dir.join("client");
        let lab =
            Lab { dir, namespaces: vec![cli.clone(), gw.clone(), fl.clone()], client_dir, children: vec![], gw: None };
        let (ok, out) = sh(&["dg_ns_pair", &cli, &gw, "cli0", "wan0", &format!("{CLI_IP}/30"), &format!("{GW_IP}/30")]);
        assert!(ok, "namespaces: {out}");
        let (ok, out) = sh(&["dg_ns_attach", &fl, &gw, "fl0", "wan9", "198.51.100.2/24", &format!("{FLOOD_GW}/24")]);
        assert!(ok, "flood namespace: {out}");
        for i in 0..FLOOD_SOURCES {
            let a = format!("198.51.100.{}/24", 10 + i);
            let st = Command::new("ip").args(["-n", &fl, "addr", "add", &a, "dev", "fl0"]).status().expect("ip addr");
            assert!(st.success(), "ip addr add {a}");
        }
        let d = lab.client_dir.to_str().expect("utf-8").to_string();
        let (ok, out) = sh(&["dg_charon_conf", &d]);
        assert!(ok, "{out}");
        let (ok, out) = sh(&["dg_charon_start", &cli, &d]);
        assert!(ok, "charon: {out}");
        lab
    }

    fn start_gateway(&mut self) {
        let conf = self.dir.join("gw.conf");
        fs::write(&conf, gateway_config()).expect("gw.conf");
        let out = fs::File::create(self.dir.join("gw.out")).expect("gw.out");
        let err = fs::File::create(self.dir.join("gw.err")).expect("gw.err");
        // Default listen address: the client's and the flooder's links both reach it.
        let child = Command::new("ip")
            .args(["netns", "exec", &self.namespaces[1], DIALGATE, "run", "--config"])
            .arg(&conf)
            .stdout(out)
            .stderr(err)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn dialgate");
        self.gw = Some(child);
        let end = Instant::now() + Duration::from_secs(5);
        while !self.read("gw.out").contains("listening on") {
            assert!(Instant::now() < end, "dialgate did not start: {}", self.read("gw.err"));
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn read(&self, name: &str) -> String {
        fs::read_to_string(self.dir.join(name)).unwrap_or_default()
    }

    fn swanctl(&self, args: &[&str], limit: Duration) -> (bool, String) {
        let d = self.client_dir.to_str().expect("utf-8");
        let log = self.client_dir.join("swanctl.out");
        let f = fs::File::create(&log).expect("log");
        let f2 = f.try_clone().expect("dup");
        let mut child = Command::new("bash")
            .arg(NETNS_SH)
            .args(["dg_swanctl", d])
            .args(args)
            .stdout(f)
            .stderr(f2)
            .spawn()
            .expect("swanctl");
        let st = wait_timeout(&mut child, limit);
        (st.is_some_and(|s| s.success()), fs::read_to_string(&log).unwrap_or_default())
    }

    fn load_client(&self, secret: &str) {
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
      eap_id = Test
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
    id = Test
    secret = "{secret}"
  }}
  ike-gw {{
    secret = "{PSK}"
  }}
}}
"#
        );
        let path = self.client_dir.join("swanctl.conf");
        fs::write(&path, conf).expect("swanctl.conf");
        let p = path.to_str().expect("utf-8").to_string();
        let (ok, out) = self.swanctl(&["--load-all", "--noprompt", "--file", &p], Duration::from_secs(10));
        assert!(ok && out.contains("loaded connection 'dialgate'"), "{out}");
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in self.children.iter_mut().chain(self.gw.iter_mut()) {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(d) = self.client_dir.to_str() {
            let _ = sh(&["dg_charon_stop", d]);
        }
        let mut args = vec!["dg_ns_del"];
        args.extend(self.namespaces.iter().map(String::as_str));
        let _ = sh(&args);
        if std::thread::panicking() {
            eprintln!("dos: logs kept in {}", self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// The pacing: `FLOOD_PPS`, or `DIALGATE_FLOOD_PPS` to measure what the gateway holds at other
/// rates (the assertions assume the flood outlasts the honest login, i.e. a few thousand per s).
fn flood_pps() -> u32 {
    std::env::var("DIALGATE_FLOOD_PPS").ok().and_then(|v| v.parse().ok()).unwrap_or(FLOOD_PPS)
}

/// The half-open counts in the gateway's "half-open N, sending COOKIE to …" debug lines.
fn half_open_counts(log: &str) -> Vec<u64> {
    log.lines()
        .filter_map(|l| l.split("half-open ").nth(1))
        .filter_map(|r| r.split([',', ' ']).next()?.trim().parse().ok())
        .collect()
}

#[test]
fn ike_sa_init_flood_gets_cookies_and_an_honest_client_still_connects() {
    if let Some(why) = skip_reason() {
        eprintln!("skipping dos: {why}");
        return;
    }
    let mut lab = Lab::new();
    lab.start_gateway();

    // The template: a well-formed IKE_SA_INIT offering what the gateway accepts (ECP-256).
    let p =
        Path { remote: SocketAddr::from(([198, 51, 100, 10], 500)), local: SocketAddr::from(([198, 51, 100, 1], 500)) };
    let mut init = Initiator::new(
        7,
        IkeOffer::parse("aes128-sha256", &[19], false).expect("offer"),
        EspOffer::parse("aes128gcm", &[], false).expect("offer"),
        "flood",
        p,
    );
    let tmpl = init.sa_init(DhGroup::Ecp256, None, false);
    let tmpl_path = lab.dir.join("sa_init.hex");
    fs::write(&tmpl_path, hex::encode(&tmpl)).expect("template");
    let py = lab.dir.join("flood.py");
    fs::write(&py, FLOOD_PY).expect("flood.py");
    let flood = |srcs: &[String], total: u32, pps: u32, out: &str| {
        Command::new("ip")
            .args(["netns", "exec", &lab.namespaces[2], "python3"])
            .arg(&py)
            .arg(&tmpl_path)
            .args([FLOOD_GW, &srcs.join(","), &total.to_string(), &FLOOD_SECS.to_string(), &pps.to_string()])
            .stdout(fs::File::create(lab.dir.join(out)).expect("flood out"))
            .stderr(fs::File::create(lab.dir.join("flood.err")).expect("flood.err"))
            .spawn()
            .expect("spawn flooder")
    };

    // First one address alone, below the COOKIE threshold: the per-address limit (10 half-open
    // SAs) is what stops it; the rest of its requests are dropped unanswered, not challenged.
    let one = vec!["198.51.100.10".to_string()];
    let mut single = flood(&one, 300, 1000, "single.out");
    let st = wait_timeout(&mut single, Duration::from_secs(15)).expect("single-address flood finishes");
    assert!(st.success(), "flooder: {}", lab.read("flood.err"));
    let json = fs::read_to_string(lab.dir.join("single.out")).expect("single.out");
    assert_eq!(field(&json, "sent"), 300.0, "{json}");
    assert_eq!(field(&json, "sa"), PER_ADDRESS as f64, "half-open SAs one address got: {json}");
    assert_eq!((field(&json, "cookie"), field(&json, "other")), (0.0, 0.0), "{json}");
    let gerr = lab.read("gw.err");
    assert!(gerr.contains("198.51.100.10 holds 10 half-open IKE SAs (limit 10), dropping its SA_INIT"), "{gerr}");
    let lines = gerr.matches("half-open IKE SAs (limit 10)").count();
    assert!((1..=3).contains(&lines), "block lines are rate-limited to one a second: {lines}");

    let srcs: Vec<String> = (0..FLOOD_SOURCES).map(|i| format!("198.51.100.{}", 10 + i)).collect();
    let flood_out = lab.dir.join("flood.out");
    let flooder = flood(&srcs, FLOOD_PACKETS, flood_pps(), "flood.out");
    let flood_start = Instant::now();
    lab.children.push(flooder);

    // One second into the flood the gateway is at its threshold; the honest client dials in.
    std::thread::sleep(Duration::from_secs(1));
    let code = current_code(&gateway_config());
    lab.load_client(&format!("{PASSWORD}{code}"));
    let t = Instant::now();
    let (ok, out) = lab.swanctl(&["--initiate", "--child", "dialgate", "--timeout", "10"], Duration::from_secs(14));
    let login_secs = t.elapsed().as_secs_f64();
    let login_done = flood_start.elapsed().as_secs_f64();
    assert!(ok, "honest client failed during the flood:\n{out}\n--- gateway:\n{}", lab.read("gw.out"));
    let (_, sas) = lab.swanctl(&["--list-sas"], Duration::from_secs(5));
    assert!(sas.contains("ESTABLISHED") && sas.contains("INSTALLED"), "{sas}");

    let st = wait_timeout(&mut lab.children[0], Duration::from_secs(20)).expect("flooder finishes in time");
    assert!(st.success(), "flooder: {}", lab.read("flood.err"));
    let json = fs::read_to_string(&flood_out).expect("flood.out");
    let (sent, elapsed) = (field(&json, "sent"), field(&json, "elapsed"));
    let (cookies, sas_created, other) = (field(&json, "cookie"), field(&json, "sa"), field(&json, "other"));
    let (gout, gerr) = (lab.read("gw.out"), lab.read("gw.err"));
    let halfs = half_open_counts(&gerr);
    let created = gerr.matches("responder preparing SA_INIT msg").count() as u64;
    eprintln!(
        "dos: flood {sent} IKE_SA_INIT from {FLOOD_SOURCES} addresses in {elapsed:.2} s = {:.0}/s; answered: {cookies} COOKIE, \
         {sas_created} SA, {other} other = {:.0}/s ({:.1}% of sent); gateway half-open max {:?}, SAs created {created}; \
         honest login took {login_secs:.2} s, done {login_done:.2} s into the flood",
        sent / elapsed,
        (cookies + sas_created + other) / elapsed,
        100.0 * (cookies + sas_created + other) / sent,
        halfs.iter().max(),
    );

    assert!(sent >= 0.9 * f64::from(FLOOD_PACKETS) && elapsed <= FLOOD_SECS + 0.5, "flood bounded: {json}");
    assert!(
        login_done < elapsed,
        "the honest client connected while the flood was on ({login_done:.2} s of {elapsed:.2} s)"
    );
    // Cookies engaged: the flooder got them, and SAs only up to the threshold.
    assert!(cookies >= 0.5 * sent, "cookies seen by the flooder: {json}");
    assert!(sas_created <= COOKIE_THRESHOLD as f64, "half-open SAs past the threshold: {json}");
    assert_eq!(other, 0.0, "only SA and COOKIE answers: {json}");
    // The gateway's own view: every COOKIE was sent at the threshold (the honest client's SA
    // can make it one more), and no more SAs were created than the threshold plus the client's.
    assert!(!halfs.is_empty(), "no COOKIE debug lines:\n{gerr}");
    assert!(
        halfs.iter().all(|&h| (COOKIE_THRESHOLD..=COOKIE_THRESHOLD + 1).contains(&h)),
        "half-open counts {halfs:?}"
    );
    assert!(created <= COOKIE_THRESHOLD + 2, "{created} SAs created (the single address's included)");
    assert!(gout.contains("install child SA") && gout.contains("eap-user=Test"), "{gout}");

    // The gateway is still healthy: it stops on SIGTERM with its summary.
    let mut gw = lab.gw.take().expect("gateway");
    let _ = Command::new("kill").args(["-TERM", &gw.id().to_string()]).status();
    let st = wait_timeout(&mut gw, Duration::from_secs(3)).expect("dialgate stops");
    assert!(st.success(), "dialgate exit {st}");
    assert!(lab.read("gw.out").contains("dialgate: stopped;"));
}
