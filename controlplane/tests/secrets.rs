//! Secrets never leak: a strongSwan client (charon-systemd with kernel-libipsec, ESP in UDP
//! forced) logs in to `dialgate run` (UDP driver, every debug line it has on stderr) as user
//! Test of `examples/dialgate.conf`, then disconnects; `dialgate config show` prints the
//! configuration. Every byte those commands wrote is searched for the PSK, the user password,
//! password ‖ code, the token seed (base32 and raw bytes) and the session keys of that very
//! session — SK_d/ai/ar/ei/er/pi/pr, the DH shared secret and the CHILD_SA keys, taken from the
//! client's own charon log at level 4 (`ike = 4`, `chd = 4`) — each as text, raw bytes, lower
//! and upper hex and base64. None may appear.
//!
//! Needs root, `ip netns` and the strongSwan packages (see `scripts/setup`); otherwise it prints
//! why it skips. Namespaces and daemons are removed by a drop guard on every path.

mod common;

use common::{sh, wait_timeout};
use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dialgate_controlplane::auth::totp;
use dialgate_controlplane::config::{self, value::base32_decode};

const DIALGATE: &str = env!("CARGO_BIN_EXE_dialgate");
use common::NETNS_SH;
const EXAMPLE: &str = include_str!("../../examples/dialgate.conf");
const PASSWORD: &str = "p@ssw0rd";
const PSK: &str = "Pr3-Shared-K3y";
const SEED_B32: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
const GW_IP: &str = "192.0.2.1";
const CLI_IP: &str = "192.0.2.2";

fn gateway_config() -> String {
    let text = EXAMPLE
        .replace("set ip 172.16.200.4 255.255.255.0", &format!("set ip {GW_IP} 255.255.255.0"))
        .replace("set gateway 172.16.200.1", "set gateway 192.0.2.254");
    assert!(text.contains(GW_IP) && text.contains(SEED_B32) && text.contains(PSK), "example changed shape");
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
    let probe = format!("dgs-probe-{}", std::process::id());
    let ok = Command::new("ip").args(["netns", "add", &probe]).status().is_ok_and(|s| s.success());
    let _ = Command::new("ip").args(["netns", "del", &probe]).status();
    if !ok {
        return Some("`ip netns add` does not work here".into());
    }
    if !std::path::Path::new("/usr/sbin/charon-systemd").exists() {
        return Some("strongSwan (charon-systemd) is not installed".into());
    }
    if !Command::new("tcpdump").arg("--version").output().is_ok_and(|o| o.status.success()) {
        return Some("tcpdump is not installed".into());
    }
    None
}

/// Two namespaces, a client daemon and the gateway; removed on drop.
struct Lab {
    dir: PathBuf,
    namespaces: Vec<String>,
    client_dir: PathBuf,
    gw: Option<Child>,
    tcpdump: Option<Child>,
}

impl Lab {
    fn new() -> Lab {
        let pid = std::process::id();
        let dir = std::env::temp_dir().join(format!("dgs-{pid}-secrets"));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("temp dir");
        let (cli, gw) = (format!("dgs-cli-{pid}"), format!("dgs-gw-{pid}"));
        let client_dir = dir.join("client");
        let mut lab = Lab { dir, namespaces: vec![cli.clone(), gw.clone()], client_dir, gw: None, tcpdump: None };
        let (ok, out) = sh(&["dg_ns_pair", &cli, &gw, "cli0", "wan0", &format!("{CLI_IP}/30"), &format!("{GW_IP}/30")]);
        assert!(ok, "namespaces: {out}");
        let d = lab.client_dir.to_str().expect("utf-8").to_string();
        let (ok, out) = sh(&["dg_charon_conf", &d]);
        assert!(ok, "{out}");
        // Level 4 for IKE and CHILD_SA: charon dumps the keys it derives (the values to hunt for).
        let conf = lab.client_dir.join("strongswan.conf");
        let text = fs::read_to_string(&conf).expect("strongswan.conf");
        assert!(text.contains("ike = 2"), "netns.sh's charon config changed shape");
        fs::write(&conf, text.replace("ike = 2", "ike = 4\n            chd = 4\n            enc = 1")).expect("write");
        let (ok, out) = sh(&["dg_charon_start", &cli, &d]);
        assert!(ok, "charon: {out}");
        lab.start_gateway();
        lab
    }

    fn start_gateway(&mut self) {
        let conf = self.dir.join("gw.conf");
        fs::write(&conf, gateway_config()).expect("gw.conf");
        let out = fs::File::create(self.dir.join("gw.out")).expect("gw.out");
        let err = fs::File::create(self.dir.join("gw.err")).expect("gw.err");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.namespaces[1], DIALGATE, "run", "--config"])
            .arg(&conf)
            .args(["--listen", GW_IP])
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

    /// Captures UDP on the gateway's link into `ike.pcap` (the wire is checked too).
    fn start_capture(&mut self) {
        let pcap = self.dir.join("ike.pcap");
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.namespaces[1],
                "tcpdump",
                "-i",
                "wan0",
                "--immediate-mode",
                "-U",
                "-Z",
                "root",
                "-s",
                "0",
                "-w",
            ])
            .arg(&pcap)
            .arg("udp")
            .stdout(Stdio::null())
            .stderr(fs::File::create(self.dir.join("tcpdump.err")).expect("tcpdump.err"))
            .spawn()
            .expect("tcpdump");
        self.tcpdump = Some(child);
        let end = Instant::now() + Duration::from_secs(5);
        while !self.read("tcpdump.err").contains("listening on") {
            assert!(Instant::now() < end, "tcpdump did not start: {}", self.read("tcpdump.err"));
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop_capture(&mut self) -> Vec<u8> {
        if let Some(mut c) = self.tcpdump.take() {
            // Let the last packets reach the file before the capture stops.
            std::thread::sleep(Duration::from_millis(300));
            let _ = Command::new("kill").args(["-INT", &c.id().to_string()]).status();
            let _ = wait_timeout(&mut c, Duration::from_secs(3));
        }
        fs::read(self.dir.join("ike.pcap")).unwrap_or_default()
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

    fn stop_gateway(&mut self) -> Option<ExitStatus> {
        let mut child = self.gw.take()?;
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        wait_timeout(&mut child, Duration::from_secs(3))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in self.gw.iter_mut().chain(self.tcpdump.iter_mut()) {
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
            eprintln!("secrets: logs kept in {}", self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Key material charon dumped with `%B` at level 4: a line `… <label> => N bytes @ 0x…`
/// followed by hex-dump lines `…    0: 3A 1F … ASCII`. Returns (label, bytes) of every dump whose
/// label names a key or a secret.
fn charon_keys(log: &str) -> Vec<(String, Vec<u8>)> {
    let lines: Vec<&str> = log.lines().collect();
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let Some((head, tail)) = l.split_once(" => ") else { continue };
        if !tail.contains("bytes @") {
            continue;
        }
        // `HH:MM:SS NN[IKE] label`: the first ']' ends the thread tag (hex-dump lines can have
        // ']' in their ASCII column, so never split at the last one).
        let label = head.split_once(']').map_or(head, |(_, l)| l).trim().to_string();
        let declared: usize = tail.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or(0);
        let lower = label.to_lowercase();
        // Keys and secrets; not the public inputs charon also dumps (signed octets, AUTH).
        let public = lower.starts_with("octets") || lower.starts_with("auth =");
        if public || !(lower.contains("sk_") || lower.contains("key") || lower.contains("secret")) {
            continue;
        }
        let mut bytes = Vec::new();
        for d in &lines[i + 1..] {
            let body = d.split_once(']').map_or(*d, |(_, b)| b).trim_start();
            let mut toks = body.split_whitespace();
            match toks.next() {
                Some(t) if t.ends_with(':') && t[..t.len() - 1].chars().all(|c| c.is_ascii_digit()) => {}
                _ => break,
            }
            // At most 16 bytes a line; the ASCII column after them is not hex.
            for t in toks.take(16) {
                match (t.len(), u8::from_str_radix(t, 16)) {
                    (2, Ok(b)) => bytes.push(b),
                    _ => break,
                }
            }
        }
        bytes.truncate(declared);
        if bytes.len() >= 16 && bytes.len() == declared {
            out.push((label, bytes));
        }
    }
    out
}

fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for c in data.chunks(3) {
        let n =
            (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
        for k in 0..4 {
            if k <= c.len() {
                s.push(A[(n >> (18 - 6 * k)) as usize & 63] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

/// The forms a secret could leak in: the raw bytes, lower and upper hex (also with the
/// separators of common dump formats), and base64 (without padding, so any alignment of the
/// secret inside a longer encoded blob is caught for at least the middle part).
fn forms(secret: &[u8]) -> Vec<Vec<u8>> {
    let hex_l = hex::encode(secret);
    let hex_u = hex_l.to_uppercase();
    let spaced: String = secret.iter().map(|b| format!("{b:02x} ")).collect();
    let colons: String = secret.iter().map(|b| format!("{b:02x}:")).collect();
    let mut v = vec![secret.to_vec(), hex_l.into_bytes(), hex_u.into_bytes()];
    v.push(spaced.trim_end().as_bytes().to_vec());
    v.push(spaced.trim_end().to_uppercase().into_bytes());
    v.push(colons.trim_end_matches(':').as_bytes().to_vec());
    v.push(base64(secret).trim_end_matches('=').as_bytes().to_vec());
    v
}

fn find(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle))
}

#[test]
fn no_secret_in_any_output_of_a_full_session() {
    if let Some(why) = skip_reason() {
        eprintln!("skipping secrets: {why}");
        return;
    }
    let mut lab = Lab::new();
    let cfg_text = gateway_config();
    let code = current_code(&cfg_text);
    let secret = format!("{PASSWORD}{code}");
    lab.load_client(&secret);
    lab.start_capture();
    let (ok, out) = lab.swanctl(&["--initiate", "--child", "dialgate", "--timeout", "8"], Duration::from_secs(12));
    assert!(ok, "login failed:\n{out}\n--- gateway:\n{}{}", lab.read("gw.out"), lab.read("gw.err"));
    // Some traffic-free time for DPD-less idling, then a clean disconnect (DELETE).
    let (ok, out) = lab.swanctl(&["--terminate", "--ike", "dialgate", "--timeout", "5"], Duration::from_secs(8));
    assert!(ok, "terminate: {out}");
    let pcap = lab.stop_capture();
    let ike = ike_datagrams(&pcap);
    assert!(ike.len() >= 8, "the capture holds the exchange: {} IKE datagrams", ike.len());
    write_corpus(&ike);
    let st = lab.stop_gateway().expect("dialgate stops on SIGTERM");
    assert!(st.success(), "dialgate exit {st}");

    // The gateway's every byte, plus `config show` of the file it ran with (all of it, and the
    // phase1 alone), and the error path of `config show` on a broken copy.
    let conf = lab.dir.join("gw.conf");
    let mut captured: Vec<u8> = Vec::new();
    captured.extend_from_slice(lab.read("gw.out").as_bytes());
    captured.extend_from_slice(lab.read("gw.err").as_bytes());
    let broken = lab.dir.join("broken.conf");
    fs::write(&broken, cfg_text.replace("set psksecret", "set psksecrt")).expect("broken");
    let shows: Vec<Vec<String>> = vec![
        vec!["config".into(), "show".into(), conf.display().to_string()],
        vec![
            "config".into(),
            "show".into(),
            conf.display().to_string(),
            "vpn".into(),
            "ipsec".into(),
            "phase1-interface".into(),
        ],
        vec![
            "config".into(),
            "show".into(),
            "--fragment".into(),
            conf.display().to_string(),
            "user".into(),
            "fortitoken".into(),
        ],
        vec!["config".into(), "check".into(), conf.display().to_string()],
        vec!["config".into(), "show".into(), broken.display().to_string()],
    ];
    for args in &shows {
        let o = Command::new(DIALGATE).args(args).output().expect("dialgate config");
        captured.extend_from_slice(&o.stdout);
        captured.extend_from_slice(&o.stderr);
    }
    let show = String::from_utf8_lossy(&captured);
    assert!(show.contains("ENC ********"), "config show masks secrets: {show}");
    assert!(show.contains("authentication succeeded"), "the debug log covers the login");
    assert!(show.contains("install child SA"), "the session reached the CHILD_SA");

    // What to look for.
    let mut secrets: Vec<(String, Vec<u8>)> = vec![
        ("psk".into(), PSK.as_bytes().to_vec()),
        ("password".into(), PASSWORD.as_bytes().to_vec()),
        ("password||code".into(), secret.as_bytes().to_vec()),
        ("token seed (base32)".into(), SEED_B32.as_bytes().to_vec()),
        ("token seed (raw)".into(), base32_decode(SEED_B32).expect("seed")),
    ];
    let charon_log = fs::read_to_string(lab.client_dir.join("charon.log")).expect("charon.log");
    let keys = charon_keys(&charon_log);
    let labels: Vec<&str> = keys.iter().map(|(l, _)| l.as_str()).collect();
    for want in
        ["Sk_d secret", "Sk_ei secret", "Sk_er secret", "Sk_ai secret", "Sk_ar secret", "Sk_pi secret", "Sk_pr secret"]
    {
        assert!(labels.iter().any(|l| l.contains(want)), "charon did not log {want}; got {labels:?}");
    }
    assert!(
        labels.iter().filter(|l| l.to_lowercase().contains("key")).count() >= 2,
        "charon logged no CHILD_SA keys; got {labels:?}"
    );
    eprintln!("secrets: {} key dumps from charon: {labels:?}", keys.len());
    secrets.extend(keys);

    // The wire carries none of them either (the IKE datagrams of the whole session).
    let wire: Vec<u8> = ike.concat();
    for (name, s) in &secrets {
        for f in forms(s) {
            assert!(!find(&wire, &f), "{name} on the wire");
        }
    }
    for (name, s) in &secrets {
        for (i, f) in forms(s).iter().enumerate() {
            // Short textual forms of short secrets (the 8-character password's base64) are
            // still long enough not to occur by chance in a few KB of log text.
            assert!(
                !find(&captured, f),
                "{name} (form {i}: {:?}) found in dialgate output",
                String::from_utf8_lossy(f)
            );
        }
    }
    // The code itself is six digits: it may appear by chance in a long hex dump, but never next
    // to the password or as a log field.
    assert!(!show.contains(&format!("code={code}")) && !show.contains(&format!("code {code}")));
}

/// The IKE messages in an Ethernet capture: UDP 500 payloads, and UDP 4500 payloads behind the
/// non-ESP marker (RFC 3948 §2.2), marker removed.
fn ike_datagrams(pcap: &[u8]) -> Vec<Vec<u8>> {
    let Ok(cap) = dialgate_dataplane::pcap::parse(pcap) else { return vec![] };
    let mut out = Vec::new();
    for r in &cap.records {
        let f = r.data;
        if f.len() < 14 + 20 + 8 || f[12..14] != [0x08, 0x00] || f[14 + 9] != 17 {
            continue;
        }
        let ihl = usize::from(f[14] & 0x0f) * 4;
        let u = 14 + ihl;
        let Some(h) = f.get(u..u + 8) else { continue };
        let (sport, dport) = (u16::from_be_bytes([h[0], h[1]]), u16::from_be_bytes([h[2], h[3]]));
        let len = usize::from(u16::from_be_bytes([h[4], h[5]]));
        let Some(payload) = f.get(u + 8..u + len.max(8)) else { continue };
        if sport == 500 || dport == 500 {
            out.push(payload.to_vec());
        } else if (sport == 4500 || dport == 4500) && payload.len() > 4 && payload[..4] == [0, 0, 0, 0] {
            out.push(payload[4..].to_vec());
        }
    }
    out
}

/// With `DIALGATE_WRITE_FUZZ_CORPUS=<dir>`: the strongSwan session's IKE messages as seeds of
/// the `message` target, and the client's requests as one frame sequence for `responder`.
fn write_corpus(ike: &[Vec<u8>]) {
    let Some(dir) = std::env::var_os("DIALGATE_WRITE_FUZZ_CORPUS") else { return };
    let dir = std::path::Path::new(&dir);
    fs::create_dir_all(dir.join("message")).expect("dir");
    fs::create_dir_all(dir.join("responder")).expect("dir");
    let mut frames = Vec::new();
    for (i, d) in ike.iter().enumerate() {
        fs::write(dir.join("message").join(format!("strongswan-{i:03}")), d).expect("seed");
        // Requests only (the R flag, 0x20, clear): what a responder receives.
        if d.len() > 19 && d[19] & 0x20 == 0 && d.len() < 65536 {
            frames.extend_from_slice(&(d.len() as u16).to_be_bytes());
            frames.push(if i == 0 { 0 } else { 1 });
            frames.extend_from_slice(d);
        }
    }
    fs::write(dir.join("responder").join("strongswan-session"), frames).expect("seed");
}

#[test]
fn key_dump_parser_reads_charon_hexdumps() {
    // Two dumps in charon's `%B` format: one key, one unrelated value that must be ignored.
    let log = "12:00:00 07[IKE] Sk_ai secret => 32 bytes @ 0x7f00\n\
               12:00:00 07[IKE]    0: 00 01 02 03 04 05 06 07 08 09 0A 0B 0C 0D 0E 0F  ................\n\
               12:00:00 07[IKE]   16: 10 11 12 13 14 15 16 17 18 19 1A 1B 1C 1D 1E 1F  ..]..AB........]\n\
               12:00:00 07[IKE] natd_chunk => 22 bytes @ 0x7f01\n\
               12:00:00 07[IKE]    0: AA BB CC DD EE FF 00 11 22 33 44 55 66 77 88 99  ................\n\
               12:00:00 07[IKE] next line\n";
    let keys = charon_keys(log);
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].0, "Sk_ai secret");
    assert_eq!(keys[0].1, (0u8..32).collect::<Vec<_>>());
    assert_eq!(base64(b"any carnal pleas"), "YW55IGNhcm5hbCBwbGVhcw==");
    assert!(find(b"xx 00 01 0A yy", &forms(&[0, 1, 10])[3]));
}
