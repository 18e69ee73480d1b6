//! Seed 002 end to end on 127.0.0.1: `dialgate posture-server` + `dialgate run` (UDP driver) +
//! `dialgate connect` with the FortiClient notify.
//!
//! Example 1: an endpoint whose own address has `all_registered_clients` connects; another is
//! refused with the failure notify and the seed's debug lines; the tag removed on the server →
//! the gateway reports the tunnel lost within the refresh interval. Example 2: the posture
//! server stopped → a valid token is accepted, a token for another endpoint is refused.

use std::io::{BufRead, BufReader, Read};
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dialgate_controlplane::posture::jwt;

const DIALGATE: &str = env!("CARGO_BIN_EXE_dialgate");
const SERIAL: &str = "FCTEMS8826000120";
const UID: &str = "6108A9179A5C40D7BD57504E15114C1F";

/// Kills the child on drop.
struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_udp() -> u16 {
    UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn free_tcp() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn tags_json(addresses_with_tag: &[&str]) -> String {
    let eps: Vec<String> = addresses_with_tag
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let uid = if i == 0 { UID.to_string() } else { format!("{UID}{i}") };
            format!(
                r#"{{"uid":"{uid}","address":"{a}","registered":true,"online":true,"tags":["all_registered_clients"]}}"#
            )
        })
        .collect();
    format!(
        r#"{{"serial":"{SERIAL}","tenant":"","tags":[{{"name":"all_registered_clients","id":6,"addresses":[]}}],"endpoints":[{}]}}"#,
        eps.join(",")
    )
}

fn config(ems_port: u16, key_file: &Path) -> String {
    format!(
        r#"config system interface
    edit "port1"
        set ip 127.0.0.1 255.0.0.0
    next
end
config firewall address
    edit "dialup_range"
        set type iprange
        set start-ip 10.212.134.200
        set end-ip 10.212.134.254
    next
end
config user local
    edit "userc"
        set type password
        set passwd "p@ssw0rd"
    next
    edit "userd"
        set type password
        set passwd "p@ssw0rd"
    next
end
config user group
    edit "local-group"
        set member "userc" "userd"
    next
end
config endpoint-control fctems
    edit "EMS1"
        set server "http://127.0.0.1:{ems_port}"
        set serial-number "{SERIAL}"
        set jwt-public-key "{}"
        set status-check-interval 1
        set call-timeout 2
    next
end
config vpn ipsec phase1-interface
    edit "dialup"
        set type dynamic
        set interface "port1"
        set ike-version 2
        set peertype any
        set net-device disable
        set mode-cfg enable
        set proposal aes128-sha256 aes256-sha256 aes128gcm-prfsha256 aes256gcm-prfsha384 chacha20poly1305-prfsha256
        set dhgrp 20 14
        set eap enable
        set eap-identity send-request
        set authusrgrp "local-group"
        set ems-sn-check enable
        set remote-gw-match ztna
        set assign-ip-from name
        set dns-mode auto
        set ipv4-name "dialup_range"
        set save-password enable
        set psksecret "Pr3-Shared-K3y"
        set remote-gw-ztna-tags "EMS1_ZTNA_all_registered_clients"
    next
end
config vpn ipsec phase2-interface
    edit "DY"
        set phase1name "dialup"
        set proposal aes128-sha1 aes256-sha1 aes128-sha256 aes256-sha256 aes128gcm aes256gcm chacha20poly1305
    next
end
"#,
        key_file.display()
    )
}

/// Waits until `file` contains `needle`; returns the whole text.
fn wait_for(file: &Path, needle: &str, limit: Duration) -> String {
    let t0 = Instant::now();
    loop {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        assert!(t0.elapsed() < limit, "{needle:?} not seen within {limit:?} in {}:\n{text}", file.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn connect(port: u16, fct: &str, token: Option<&Path>) -> (Output, String) {
    connect_with(port, fct, token, &["--user", "userc"])
}

fn connect_with(port: u16, fct: &str, token: Option<&Path>, extra: &[&str]) -> (Output, String) {
    let mut c = Command::new(DIALGATE);
    // Each endpoint logs in as its own user: a second login of one user with INITIAL_CONTACT
    // would replace the first tunnel (RFC 7296 §2.4).
    c.args(["connect", "--server", &format!("127.0.0.1:{port}"), "--timeout", "8"])
        .args(["--fct", fct])
        .args(extra)
        .env("DIALGATE_PASSWORD", "p@ssw0rd")
        .env("DIALGATE_PSK", "Pr3-Shared-K3y");
    if let Some(t) = token {
        c.arg("--token").arg(t);
    }
    let out = c.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out, text)
}

fn start_posture_server(file: &Path, port: u16) -> Proc {
    let mut p = Command::new(DIALGATE)
        .args(["posture-server", "--file"])
        .arg(file)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(p.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    assert!(line.starts_with("posture-server: listening on 127.0.0.1:"), "{line}");
    assert!(line.contains("(serial FCTEMS8826000120, 1 tags"), "{line}");
    Proc(p)
}

fn tmpdir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("dialgate-posture-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn seed_examples_end_to_end() {
    let dir = tmpdir();
    let (pkcs8, key) = jwt::generate_key().unwrap();
    let key_file = dir.join("ems1.pem");
    std::fs::write(&key_file, key.to_pem()).unwrap();
    let tags = dir.join("tags.json");
    std::fs::write(&tags, tags_json(&["172.16.200.242", "172.16.200.243"])).unwrap();
    let (ems_port, ike, natt) = (free_tcp(), free_udp(), free_udp());
    let cfg = dir.join("dialgate.conf");
    std::fs::write(&cfg, config(ems_port, &key_file)).unwrap();

    // The posture API answers with the resolved tag list.
    let ems = start_posture_server(&tags, ems_port);
    let log = dir.join("gateway.log");
    let sock = dir.join("dialgate.sock");
    let _gw = Proc(
        Command::new(DIALGATE)
            .args(["run", "--config"])
            .arg(&cfg)
            .args(["--listen", "127.0.0.1", "--ports", &format!("{ike},{natt}")])
            .arg("--control-socket")
            .arg(&sock)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_for(&log, "posture EMS1: synced from http://127.0.0.1", Duration::from_secs(20));

    // Example 1: the endpoint's own address (not its public one) is in the tag.
    let fct = format!("VER=1,FCTVER=7.2.4,UID={UID},IP=172.16.200.242,EMSSN={SERIAL},HOST=pc1");
    let (out, text) = connect(ike, &fct, None);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("connected: assigned 10.212.134.200 "), "{text}");
    assert!(text.contains("child_sa in_spi="), "{text}");
    let g = wait_for(&log, "EMS ZTNA tags check success ZTNA_all_registered_clients", Duration::from_secs(5));
    assert!(g.contains("EMS SN check passed"), "{g}");
    assert!(g.contains(&format!("received FCT-UID : {UID}")), "{g}");

    // diagnose shows the tag's addresses and the endpoint records from the connector cache.
    let diag = |args: &[&str]| {
        let o = Command::new(DIALGATE).arg("diagnose").arg("--socket").arg(&sock).args(args).output().unwrap();
        assert!(o.status.success(), "diagnose {args:?}: {o:?}");
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let dynamic = diag(&["firewall", "dynamic", "list"]);
    assert!(dynamic.contains("EMS1_ZTNA_all_registered_clients") && dynamic.contains("172.16.200.242"), "{dynamic}");
    let shm = diag(&["endpoint", "ec-shm", "list"]);
    assert!(shm.contains(UID) && shm.contains("172.16.200.242"), "{shm}");
    let gw_list = diag(&["vpn", "ike", "gateway", "list"]);
    assert!(gw_list.contains(&format!("FortiClient UID: {UID}")), "{gw_list}");

    // A second tagged endpoint over UDP 4500 (non-ESP marker), behind the same NAT address.
    let fct2 = format!("UID={UID}1 IP=172.16.200.243 EMSSN={SERIAL}");
    let (out, text) = connect_with(natt, &fct2, None, &["--user", "userd", "--timeout", "1.5"]);
    assert_eq!(out.status.code(), Some(1), "without the marker the NAT-T port takes IKE for ESP: {text}");
    let (out, text) = connect_with(natt, &fct2, None, &["--user", "userd", "--natt"]);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("connected: assigned 10.212.134.201 "), "{text}");

    // Without the tag: refused with the failure notify and the seed's lines.
    let other = format!("UID=AAAA0000AAAA0000AAAA0000AAAA0000;IP=172.16.200.99;EMSSN={SERIAL}");
    let (out, text) = connect(ike, &other, None);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("refused: AUTHENTICATION_FAILED"), "{text}");
    assert!(text.contains("ZTNA_TAGS_CHECK_FAILURE: EMS ZTNA tags check failed"), "{text}");
    let g = wait_for(&log, "EMS ZTNA tags check failure, abort", Duration::from_secs(5));
    assert!(g.contains("sending IKE_AUTH ZTNA TAGS check failure notification response"), "{g}");

    // EMS serial mismatch.
    let bad_sn = format!("UID={UID}\nIP=172.16.200.242\nEMSSN=FCTEMS0000000000\n");
    let (out, text) = connect(ike, &bad_sn, None);
    assert_eq!(out.status.code(), Some(1), "{text}");
    wait_for(&log, "EMS SN check failed", Duration::from_secs(5));

    // The tag is removed from .242 on the server: the file is reloaded, and the gateway finds
    // the tunnel lost within the refresh interval (1 s here).
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(&tags, tags_json(&["172.16.200.243"])).unwrap();
    let t0 = Instant::now();
    let g = wait_for(
        &log,
        "lost its ZTNA tag (172.16.200.242 not in EMS1_ZTNA_all_registered_clients)",
        Duration::from_secs(5),
    );
    assert!(t0.elapsed() < Duration::from_secs(4), "{g}");
    // ... and deletes that tunnel: the responder sends the DELETE and frees its address.
    let g = wait_for(&log, "deleting IKE SA", Duration::from_secs(5));
    assert!(g.contains("lost its ZTNA tag"), "{g}");
    let list = diag(&["vpn", "ike", "gateway", "list"]);
    assert!(!list.contains("10.212.134.200"), "the tunnel of .242 is still listed: {list}");

    // Example 2: the posture server stops; the gateway falls back to tokens.
    drop(ems);
    wait_for(&log, "posture EMS1: http://127.0.0.1", Duration::from_secs(10));
    wait_for(&log, "unreachable, tokens are verified instead", Duration::from_secs(10));
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let claims = |uid: &str| {
        format!(
            r#"{{"endpoint":{{"uid":"{uid}","tags":[{{"name":"all_registered_clients","type":1,"levl":null}}],"ztna_cert_sn":"B09D"}},"exp":{},"iat":{now}}}"#,
            now + 3600
        )
    };
    let tok = dir.join("token.jwt");
    std::fs::write(&tok, jwt::sign_rs256(claims(UID).as_bytes(), &pkcs8).unwrap()).unwrap();
    // The client stays up a little and sends its token again in INFORMATIONAL exchanges.
    let (out, text) = connect_with(
        ike,
        &format!("UID={UID},IP=10.160.1.197,EMSSN={SERIAL},FCTTAGS=1"),
        Some(&tok),
        &["--user", "userc", "--hold", "1.2", "--token-interval", "0.5"],
    );
    assert!(out.status.success(), "{text}");
    assert_eq!(text.matches("token update answered").count(), 2, "{text}");
    assert!(text.contains("EMS_ZTNA_TAGS_CHECK_SUCCESS: EMS1_ZTNA_all_registered_clients"), "{text}");
    let g = wait_for(&log, "EMS ZTNA token tags check success ZTNA_all_registered_clients", Duration::from_secs(5));
    assert!(g.contains("send EMS_ZTNA_TAGS_CHECK_SUCCESS"), "{g}");
    let token_text = std::fs::read_to_string(&tok).unwrap();
    assert!(!g.contains(&token_text[..40]), "the token is never logged");

    // Another endpoint's token is refused with its reason.
    std::fs::write(&tok, jwt::sign_rs256(claims("BBBB0000BBBB0000BBBB0000BBBB0000").as_bytes(), &pkcs8).unwrap())
        .unwrap();
    let (out, text) = connect(ike, &format!("UID={UID},IP=10.160.1.197,EMSSN={SERIAL},FCTTAGS=1"), Some(&tok));
    assert_eq!(out.status.code(), Some(1), "{text}");
    wait_for(&log, "is not the client's uid", Duration::from_secs(5));

    let mut s = String::new();
    let _ = std::fs::File::open(&log).and_then(|mut f| f.read_to_string(&mut s));
    assert!(!s.contains("p@ssw0rd") && !s.contains("Pr3-Shared-K3y"), "no secrets in the gateway log");
    let _ = std::fs::remove_dir_all(&dir);
}
