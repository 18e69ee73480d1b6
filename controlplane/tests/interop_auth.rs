//! strongSwan interop of the second authentication round and the gateway certificate:
//! - a swanctl client (charon-systemd with kernel-libipsec, `encap = yes`) with two rounds
//!   (RFC 4739): `local-1 { auth = eap-mschapv2 }` with Test's bare password, then
//!   `local-2 { auth = eap-gtc }` answering the gateway's EAP-GTC token request (RFC 3748 §5.6)
//!   with the current TOTP code of Test's token; the final AUTH uses SK_pi/SK_pr (no MSK);
//! - `charon-cmd --profile ikev2-eap` against a gateway that authenticates with an ECDSA
//!   certificate (RFC 7427 digital signature) made here with `pki`.
//!
//! Needs root, `ip netns` and the strongSwan packages. Without root or namespace support each
//! test prints why it skips and returns. Every namespace, daemon and gateway a test starts is
//! removed by a drop guard, also when the test fails; each test is bounded by the client
//! timeouts (well under 30 s).

mod common;

use common::{current_code, sh, wait_timeout};
use std::fs;
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
const CLI_IP: &str = "192.0.2.2";

static SEQ: AtomicU32 = AtomicU32::new(0);

/// The example gateway with its WAN address moved into the test network.
fn gateway_config() -> String {
    let text = EXAMPLE
        .replace("set ip 172.16.200.4 255.255.255.0", &format!("set ip {GW_IP} 255.255.255.0"))
        .replace("set gateway 172.16.200.1", "set gateway 192.0.2.254");
    assert!(text.contains(GW_IP), "example configuration changed shape");
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
    for tool in ["/usr/sbin/charon-cmd", "/usr/sbin/swanctl", "/usr/bin/pki"] {
        if !std::path::Path::new(tool).exists() {
            return Some(format!("{tool} is not installed"));
        }
    }
    let probe = format!("dga-probe-{}", std::process::id());
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

/// Two namespaces joined by a veth pair, the gateway and one client; torn down on drop.
struct Lab {
    dir: PathBuf,
    gw_ns: String,
    cli_ns: String,
    daemon: bool,
    gw: Option<Child>,
}

impl Lab {
    fn new(test: &str) -> Self {
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let dir = std::env::temp_dir().join(format!("dga-{pid}-{n}-{test}"));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("temp dir");
        let (gw_ns, cli_ns) = (format!("dga-gw-{pid}-{n}"), format!("dga-cli-{pid}-{n}"));
        let lab = Lab { dir, gw_ns, cli_ns, daemon: false, gw: None };
        let (ok, out) = sh(&[
            "dg_ns_pair",
            &lab.cli_ns,
            &lab.gw_ns,
            "cli0",
            "wan0",
            &format!("{CLI_IP}/30"),
            &format!("{GW_IP}/30"),
        ]);
        assert!(ok, "namespace setup failed: {out}");
        lab
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_str().expect("utf-8 path").to_string()
    }

    /// Starts a charon daemon in the client namespace (for swanctl).
    fn start_daemon(&mut self) {
        let d = self.path("client");
        let (ok, out) = sh(&["dg_charon_conf", &d]);
        assert!(ok, "{out}");
        self.daemon = true;
        let (ok, out) = sh(&["dg_charon_start", &self.cli_ns, &d]);
        assert!(ok, "charon did not start: {out}");
    }

    /// Starts `dialgate run` with configuration `text` and waits until it listens.
    fn start_gateway(&mut self, text: &str) {
        let conf = self.dir.join("gw.conf");
        fs::write(&conf, text).expect("write gw.conf");
        let out = fs::File::create(self.dir.join("gw.out")).expect("gw.out");
        let err = fs::File::create(self.dir.join("gw.err")).expect("gw.err");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.gw_ns, DIALGATE, "run", "--config"]).arg(&conf);
        cmd.args(["--listen", GW_IP, "--control-socket"]).arg(self.dir.join("gw.sock"));
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

    /// Loads a swanctl client with two rounds: EAP-MSCHAPv2 as Test with `password`, then
    /// EAP-GTC as Test-token with `code`; PSK for the gateway.
    fn load_two_rounds(&self, password: &str, code: &str) {
        let conf = format!(
            r#"connections {{
  dialgate {{
    version = 2
    local_addrs = {CLI_IP}
    remote_addrs = {GW_IP}
    vips = 0.0.0.0
    encap = yes
    proposals = aes128-sha256-ecp256,aes256gcm16-prfsha384-ecp384
    local-1 {{
      auth = eap-mschapv2
      eap_id = Test
    }}
    local-2 {{
      auth = eap-gtc
      eap_id = Test-token
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
  eap-pw {{
    id = Test
    secret = "{password}"
  }}
  eap-code {{
    id = Test-token
    secret = "{code}"
  }}
  ike-gw {{
    secret = "{PSK}"
  }}
}}
"#
        );
        let path = self.dir.join("client").join("swanctl.conf");
        fs::write(&path, conf).expect("write swanctl.conf");
        let d = self.path("client");
        let (ok, out) = sh(&["dg_swanctl", &d, "--load-all", "--noprompt", "--file", path.to_str().expect("utf-8")]);
        assert!(ok && out.contains("loaded connection 'dialgate'"), "swanctl --load-all failed: {out}");
    }

    /// `swanctl --initiate`; returns whether it succeeded and its output.
    fn initiate(&self) -> (bool, String) {
        let log = self.dir.join("initiate.out");
        let f = fs::File::create(&log).expect("initiate.out");
        let f2 = f.try_clone().expect("dup");
        let d = self.path("client");
        let mut child = Command::new("bash")
            .arg(NETNS_SH)
            .args(["dg_swanctl", &d, "--initiate", "--child", "dialgate", "--timeout", "8"])
            .stdout(f)
            .stderr(f2)
            .spawn()
            .expect("spawn swanctl");
        let st = wait_timeout(&mut child, Duration::from_secs(12));
        let out = fs::read_to_string(&log).unwrap_or_default();
        (st.is_some_and(|s| s.success()), out)
    }

    fn list_sas(&self) -> String {
        sh(&["dg_swanctl", &self.path("client"), "--list-sas"]).1
    }

    fn charon_log(&self) -> String {
        fs::read_to_string(self.dir.join("client").join("charon.log")).unwrap_or_default()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut gw) = self.gw.take() {
            let _ = gw.kill();
            let _ = gw.wait();
        }
        if self.daemon {
            let _ = sh(&["dg_charon_stop", &self.path("client")]);
        }
        let _ = sh(&["dg_ns_del", &self.cli_ns, &self.gw_ns]);
        if std::thread::panicking() {
            eprintln!("interop: logs kept in {}", self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

fn no_secrets(text: &str, code: &str) {
    assert!(!text.contains(PASSWORD), "password in gateway output");
    assert!(!text.contains(PSK), "PSK in gateway output");
    assert!(!text.contains(code), "token code in gateway output");
}

#[test]
fn swanctl_two_rounds_mschapv2_then_gtc_token_code() {
    let mut lab = lab_or_skip!("gtc");
    lab.start_daemon();
    let text = gateway_config();
    lab.start_gateway(&text);
    let code = current_code(&text);
    lab.load_two_rounds(PASSWORD, &code);
    let (ok, out) = lab.initiate();
    let (gout, gerr) = (lab.gw_out(), lab.gw_err());
    assert!(ok, "initiate failed:\n{out}\n--- charon:\n{}\n--- gateway:\n{gout}{gerr}", lab.charon_log());
    assert!(out.contains("EAP method EAP_MSCHAPV2 succeeded"), "{out}");
    assert!(out.contains("EAP method EAP_GTC succeeded"), "{out}");
    let sas = lab.list_sas();
    assert!(sas.contains("ESTABLISHED") && sas.contains("INSTALLED, TUNNEL-in-UDP"), "{sas}");
    assert!(gerr.contains("Two-factor token is needed"), "{gerr}");
    assert!(gerr.contains("second authentication round"), "{gerr}");
    assert!(gerr.contains("authentication succeeded"), "{gerr}");
    assert!(gout.contains("install child SA:") && gout.contains("eap-user=Test"), "{gout}");
    no_secrets(&format!("{gout}{gerr}"), &code);
}

#[test]
fn swanctl_two_rounds_wrong_code_is_refused() {
    let mut lab = lab_or_skip!("gtcwrong");
    lab.start_daemon();
    let text = gateway_config();
    lab.start_gateway(&text);
    let code = current_code(&text);
    let wrong = if code == "000000" { "111111" } else { "000000" };
    lab.load_two_rounds(PASSWORD, wrong);
    let (ok, out) = lab.initiate();
    assert!(!ok, "initiate succeeded with a wrong code:\n{out}");
    assert!(!lab.list_sas().contains("ESTABLISHED"));
    let (gout, gerr) = (lab.gw_out(), lab.gw_err());
    assert!(
        gout.contains("authentication failed: user=\"Test\" reason: wrong password or token code"),
        "{gout}\n{gerr}"
    );
    assert!(!gout.contains("install child SA"), "{gout}");
    no_secrets(&format!("{gout}{gerr}"), &code);
}

/// Makes a CA and a gateway certificate (`key_type` ecdsa or rsa) with SAN `GW_IP` using `pki`;
/// returns the paths of the CA certificate, the gateway certificate and its key.
fn make_certs(lab: &Lab, key_type: &str) -> (String, String, String) {
    let (ca_key, ca, key, cert) = (lab.path("ca.key"), lab.path("ca.crt"), lab.path("gw.key"), lab.path("gw.crt"));
    let size = if key_type == "rsa" { "2048" } else { "256" };
    let script = format!(
        "set -e; pki --gen --type ecdsa --size 256 --outform pem > {ca_key}; \
         pki --self --ca --lifetime 2 --in {ca_key} --dn 'CN=dialgate interop CA' --outform pem > {ca}; \
         pki --gen --type {key_type} --size {size} --outform pem > {key}; \
         pki --pub --in {key} | pki --issue --lifetime 2 --cacert {ca} --cakey {ca_key} \
           --dn 'CN={GW_IP}' --san {GW_IP} --flag serverAuth --outform pem > {cert}"
    );
    let out = Command::new("bash").args(["-c", &script]).output().expect("run pki");
    assert!(out.status.success(), "pki failed: {}", String::from_utf8_lossy(&out.stderr));
    (ca, cert, key)
}

/// The example gateway authenticating with the certificate files (`authmethod signature`).
fn cert_gateway_config(cert: &str, key: &str) -> String {
    let text = gateway_config().replace(
        &format!("        set psksecret \"{PSK}\"\n"),
        "        set authmethod signature\n        set certificate \"gw\"\n",
    );
    assert!(text.contains("authmethod signature"), "example configuration changed shape");
    format!(
        "{text}config vpn certificate local\n    edit \"gw\"\n        set dialgate-cert-file \"{cert}\"\n        set dialgate-key-file \"{key}\"\n    next\nend\n"
    )
}

/// Runs `charon-cmd --profile ikev2-eap` in the client namespace with `password` on stdin until
/// its CHILD_SA is up (or 12 s pass), then stops it with SIGINT; returns whether the CHILD_SA
/// came up and the output.
fn charon_cmd(lab: &Lab, ca: &str, password: &str) -> (bool, Option<ExitStatus>, String) {
    let conf = lab.path("charon-cmd.conf");
    // stdout is block-buffered when not a terminal: poll a line-flushed file log instead.
    let log = lab.dir.join("charon-cmd.log");
    fs::write(
        &conf,
        format!(
            "charon-cmd {{\n    load = random nonce openssl pem pkcs1 pkcs8 x509 pubkey constraints aes sha1 sha2 \
             hmac gcm kdf kernel-libipsec kernel-netlink socket-default eap-identity eap-mschapv2 eap-gtc\n    \
             install_virtual_ip = yes\n    retransmit_tries = 2\n    retransmit_timeout = 1.0\n    \
             filelog {{\n        log {{\n            path = {}\n            default = 1\n            \
             flush_line = yes\n        }}\n    }}\n}}\n",
            log.display()
        ),
    )
    .expect("write charon-cmd.conf");
    let stdout_log = lab.dir.join("charon-cmd.out");
    let f = fs::File::create(&stdout_log).expect("charon-cmd.out");
    let f2 = f.try_clone().expect("dup");
    let mut child = Command::new("ip")
        .args(["netns", "exec", &lab.cli_ns, "/usr/sbin/charon-cmd", "--host", GW_IP, "--identity", "Test"])
        .args(["--remote-identity", GW_IP, "--cert", ca, "--profile", "ikev2-eap", "--remote-ts", "10.50.0.0/24"])
        .env("STRONGSWAN_CONF", &conf)
        .stdin(Stdio::piped())
        .stdout(f)
        .stderr(f2)
        .spawn()
        .expect("spawn charon-cmd");
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write;
        let _ = writeln!(stdin, "{password}");
    }
    let end = Instant::now() + Duration::from_secs(12);
    let mut up = false;
    while Instant::now() < end {
        let out = fs::read_to_string(&log).unwrap_or_default();
        if out.contains("CHILD_SA cmd{1} established") {
            up = true;
            break;
        }
        if matches!(child.try_wait(), Ok(Some(_))) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let waited = end.saturating_duration_since(Instant::now());
    let exited = child.try_wait().ok().flatten();
    if exited.is_none() {
        let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).stderr(Stdio::null()).status();
    }
    wait_timeout(&mut child, Duration::from_secs(3));
    let out = fs::read_to_string(&log).unwrap_or_default();
    (up, exited, format!("{out}\n(left {waited:?}, exited early: {exited:?})"))
}

fn charon_cmd_against_certificate_gateway(key_type: &str, scheme: &str) {
    let name = format!("cert-{key_type}");
    let mut lab = lab_or_skip!(&name);
    let (ca, cert, key) = make_certs(&lab, key_type);
    let text = cert_gateway_config(&cert, &key);
    lab.start_gateway(&text);
    let code = current_code(&text);
    let (up, _, out) = charon_cmd(&lab, &ca, &format!("{PASSWORD}{code}"));
    let (gout, gerr) = (lab.gw_out(), lab.gw_err());
    assert!(up, "charon-cmd did not get its CHILD_SA:\n{out}\n--- gateway:\n{gout}{gerr}");
    assert!(out.contains(&format!("authentication of '{GW_IP}' with {scheme} successful")), "{out}");
    assert!(out.contains("parsed IKE_AUTH response 1 [ IDr CERT AUTH EAP/REQ/ID ]"), "{out}");
    assert!(gerr.contains("responder authenticating with certificate"), "{gerr}");
    assert!(gout.contains("install child SA:") && gout.contains("eap-user=Test"), "{gout}");
    no_secrets(&format!("{gout}{gerr}"), &code);
}

#[test]
fn charon_cmd_ecdsa_certificate_gateway() {
    charon_cmd_against_certificate_gateway("ecdsa", "ECDSA_WITH_SHA256_DER");
}

#[test]
fn charon_cmd_rsa_certificate_gateway() {
    charon_cmd_against_certificate_gateway("rsa", "RSA_EMSA_PKCS1_SHA2_256");
}

/// A wrong password: the gateway refuses with AUTHENTICATION_FAILED (after the MSCHAPv2
/// failure) and charon-cmd gives up by itself with a non-zero exit status.
#[test]
fn charon_cmd_wrong_password_fails() {
    let mut lab = lab_or_skip!("cert-wrongpw");
    let (ca, cert, key) = make_certs(&lab, "ecdsa");
    let text = cert_gateway_config(&cert, &key);
    lab.start_gateway(&text);
    let code = current_code(&text);
    let (up, exited, out) = charon_cmd(&lab, &ca, &format!("wrong-{PASSWORD}{code}"));
    let (gout, gerr) = (lab.gw_out(), lab.gw_err());
    assert!(!up, "a wrong password got a CHILD_SA:\n{out}");
    let st = exited.unwrap_or_else(|| panic!("charon-cmd kept running after the refusal:\n{out}"));
    assert!(!st.success(), "charon-cmd exited with {st}:\n{out}");
    assert!(out.contains("EAP-MS-CHAPv2 failed") || out.contains("AUTHENTICATION_FAILED"), "{out}");
    assert!(gout.contains("authentication failed: user=\"Test\""), "{gout}\n{gerr}");
    assert!(!gout.contains("install child SA"), "{gout}");
    no_secrets(&format!("{gout}{gerr}"), &code);
}

/// Token push: the client answers the GTC round with `push`; the exchange waits (no answer)
/// until the administrator runs `dialgate diagnose user token approve Test`, then completes.
#[test]
fn swanctl_token_push_approved_over_diagnose() {
    let mut lab = lab_or_skip!("push");
    lab.start_daemon();
    let text = gateway_config();
    lab.start_gateway(&text);
    lab.load_two_rounds(PASSWORD, "push");
    let (ok, out) = std::thread::scope(|s| {
        let login = s.spawn(|| lab.initiate());
        let end = Instant::now() + Duration::from_secs(8);
        while !lab.gw_err().contains("Token push is sent") {
            assert!(Instant::now() < end, "no push pending:\n{}", lab.gw_err());
            std::thread::sleep(Duration::from_millis(50));
        }
        // Held: nothing installed before the approval.
        std::thread::sleep(Duration::from_millis(500));
        assert!(!lab.gw_out().contains("install child SA"), "{}", lab.gw_out());
        let sock = lab.dir.join("gw.sock");
        let o = Command::new(DIALGATE)
            .args(["diagnose", "--socket"])
            .arg(&sock)
            .args(["user", "token", "approve", "Test"])
            .output()
            .expect("dialgate diagnose");
        assert!(o.status.success(), "approve: {o:?}");
        login.join().expect("initiate thread")
    });
    let (gout, gerr) = (lab.gw_out(), lab.gw_err());
    assert!(ok, "login after approval failed:\n{out}\n--- gateway:\n{gout}{gerr}");
    assert!(out.contains("EAP method EAP_GTC succeeded"), "{out}");
    assert!(gerr.contains("approved by the administrator"), "{gerr}");
    assert!(gout.contains("install child SA:") && gout.contains("eap-user=Test"), "{gout}");
}
