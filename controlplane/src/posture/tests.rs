//! The posture check against seed 002's examples, with a cache filled in-memory and tokens signed
//! by a key generated at test time.

use std::net::SocketAddr;
use std::sync::OnceLock;

use dialgate_ike::message::{Notify, NotifyType};
use dialgate_ike::responder::{CheckVerdict, ClientCheck, ClientInfo};

use super::api::{Snapshot, Tag};
use super::cache::{ConnectorState, PostureCache};
use super::check::{MatchedBy, PostureCheck};
use super::client::{FORTICLIENT_CONNECT, ZTNA_TAGS_CHECK_FAILURE, ZTNA_TAGS_CHECK_SUCCESS, ZTNA_TAG_TOKEN};
use super::jwt::{self, TokenKey};

const NOW: u64 = 1_769_758_000;
const UID: &str = "F8A6AFF3531843B4972CBDBEEEB30E3C";
const SERIAL: &str = "FCTEMS8826000120";

fn keys() -> &'static (Vec<u8>, TokenKey) {
    static K: OnceLock<(Vec<u8>, TokenKey)> = OnceLock::new();
    K.get_or_init(|| jwt::generate_key().unwrap())
}

fn token(uid: &str, tags: &[&str], exp: u64) -> Vec<u8> {
    let tags: Vec<String> = tags.iter().map(|t| format!(r#"{{"name":"{t}","type":1,"levl":null}}"#)).collect();
    let claims = format!(
        r#"{{"endpoint":{{"uid":"{uid}","tags":[{}],"nwifs":null,"ztna_cert_sn":"B09D","owner":null}},"exp":{exp},"iat":{}}}"#,
        tags.join(","),
        NOW - 100
    );
    jwt::sign_rs256(claims.as_bytes(), &keys().0).unwrap().into_bytes()
}

fn tag(name: &str, addrs: &[&str]) -> Tag {
    Tag { name: name.into(), id: 6, addresses: addrs.iter().map(|a| a.to_string()).collect() }
}

/// A cache with connectors EMS1 and EMS3; EMS1 fresh with `tags`, EMS3 never reached.
fn cache(tags: Vec<Tag>) -> PostureCache {
    let c = PostureCache::new();
    c.insert(ConnectorState::new("EMS1", SERIAL, "", Some(keys().1.clone()), 180));
    c.insert(ConnectorState::new("EMS3", "FCTEMS0000000003", "", Some(keys().1.clone()), 180));
    c.store("EMS1", Snapshot { serial: SERIAL.into(), tags, ..Default::default() }, NOW - 5);
    c
}

fn fct(ip: &str, emssn: &str) -> Notify {
    let data = format!("VER=1\nFCTVER=7.4.5.1949\nUID={UID}\nIP={ip}\nMAC=00-0c-29-2c-4d-d7;\nHOST=pc1\nUSER=tester\nEMSSN={emssn}\nEMSID=0000\nFCTTAGS=1\n");
    Notify::new(NotifyType(FORTICLIENT_CONNECT), data.into_bytes())
}

fn run(check: &mut PostureCheck, spi: u64, notifies: &[Notify]) -> CheckVerdict {
    let remote: SocketAddr = "198.51.100.7:4500".parse().unwrap();
    check.check(&ClientInfo { spi, user: Some("userc"), peer_id: "172.16.200.242", remote, notifies, now_unix: NOW })
}

fn debug_of(v: &CheckVerdict) -> &[String] {
    match v {
        CheckVerdict::Accept { debug, .. } | CheckVerdict::Refuse { debug, .. } => debug,
    }
}

fn has(v: &CheckVerdict, line: &str) -> bool {
    debug_of(v).iter().any(|l| l == line)
}

fn refused_reason(v: &CheckVerdict) -> String {
    match v {
        CheckVerdict::Refuse { reason, notify, .. } => {
            assert_eq!(notify.as_ref().map(|n| n.ty), Some(NotifyType(ZTNA_TAGS_CHECK_FAILURE)), "failure notify");
            reason.clone()
        }
        CheckVerdict::Accept { debug, .. } => panic!("accepted: {debug:?}"),
    }
}

#[test]
fn example1_registered_client_connects_and_other_is_refused() {
    let tags = vec!["EMS1_ZTNA_all_registered_clients".to_string()];
    let mut check = PostureCheck::new(true, &tags, cache(vec![tag("all_registered_clients", &["172.16.200.242"])]));
    let ok = run(&mut check, 1, &[fct("172.16.200.242", SERIAL)]);
    assert!(matches!(ok, CheckVerdict::Accept { .. }), "{ok:?}");
    for line in [
        "processing notify type FORTICLIENT_CONNECT",
        &format!("received FCT-UID : {UID}"),
        &format!("received EMS SN : {SERIAL}"),
        "EMS SN check passed",
        "EMS ZTNA tags check success ZTNA_all_registered_clients",
    ] {
        assert!(has(&ok, line), "missing {line:?} in {:?}", debug_of(&ok));
    }
    assert_eq!(check.sessions.get(1).unwrap().matched.by, MatchedBy::Server);

    // The same server, an endpoint whose own address is not in the tag (its NAT'd public
    // address is irrelevant): refused with the failure notify and the seed's lines.
    let no = run(&mut check, 2, &[fct("172.16.200.99", SERIAL)]);
    let reason = refused_reason(&no);
    assert!(reason.starts_with("EMS ZTNA tags check failed"), "{reason}");
    assert!(has(&no, "EMS SN check passed"));
    assert!(has(&no, "EMS ZTNA tags check failure, abort"));
    assert!(has(&no, "sending IKE_AUTH ZTNA TAGS check failure notification response"));
    if let CheckVerdict::Refuse { notify: Some(n), .. } = &no {
        assert_eq!(n.data, b"EMS ZTNA tags check failed");
    }
    assert!(check.sessions.get(2).is_none());
}

#[test]
fn ems_serial_mismatch_is_refused() {
    let tags = vec!["EMS1_ZTNA_all_registered_clients".to_string()];
    let mut check = PostureCheck::new(true, &tags, cache(vec![tag("all_registered_clients", &["172.16.200.242"])]));
    let v = run(&mut check, 1, &[fct("172.16.200.242", "FCTEMS9999999999")]);
    assert!(refused_reason(&v).contains("EMS serial number"), "{v:?}");
    assert!(has(&v, "EMS SN check failed"));
    assert!(!has(&v, "EMS SN check passed"));
    // Without ems-sn-check the serial is not looked at.
    let mut lax = PostureCheck::new(false, &tags, check.cache.clone());
    assert!(matches!(run(&mut lax, 2, &[fct("172.16.200.242", "FCTEMS9999999999")]), CheckVerdict::Accept { .. }));
}

#[test]
fn several_tags_are_checked_in_order() {
    let tags: Vec<String> =
        ["EMS3_ZTNA_a", "EMS1_ZTNA_lab", "EMS1_ZTNA_all_registered_clients"].map(String::from).to_vec();
    let c = cache(vec![tag("lab", &["10.0.0.0-10.0.0.255"]), tag("all_registered_clients", &["10.0.0.5", "10.9.0.1"])]);
    let mut check = PostureCheck::new(false, &tags, c);
    // EMS3 is unreachable and no token: skipped; lab matches first although both EMS1 tags would.
    let v = run(&mut check, 1, &[fct("10.0.0.5", SERIAL)]);
    assert!(has(&v, "EMS ZTNA tags check success ZTNA_lab"), "{v:?}");
    assert!(!has(&v, "EMS ZTNA tags check success ZTNA_all_registered_clients"));
    // Only the third tag matches.
    let v = run(&mut check, 2, &[fct("10.9.0.1", SERIAL)]);
    assert!(has(&v, "EMS ZTNA tags check success ZTNA_all_registered_clients"), "{v:?}");
    // With a token for EMS3's tag `a`, the first tag matches through the token.
    let v = run(
        &mut check,
        3,
        &[fct("10.0.0.5", SERIAL), Notify::new(NotifyType(ZTNA_TAG_TOKEN), token(UID, &["a"], NOW + 600))],
    );
    assert!(has(&v, "EMS ZTNA token tags check success ZTNA_a"), "{v:?}");
    // Nothing matches: the reason lists each tag.
    let r = refused_reason(&run(&mut check, 4, &[fct("192.0.2.1", SERIAL)]));
    assert!(r.contains("EMS3 unreachable") && r.contains("not in EMS1_ZTNA_lab"), "{r}");
}

#[test]
fn example2_server_unreachable_token_fallback() {
    let tags = vec!["EMS3_ZTNA_a".to_string()];
    let c = cache(vec![]);
    c.store_error("EMS3", "connection refused".into());
    let mut check = PostureCheck::new(true, &tags, c);
    let sn = "FCTEMS0000000003";
    let with = |t: Vec<u8>| vec![fct("10.160.1.197", sn), Notify::new(NotifyType(ZTNA_TAG_TOKEN), t)];

    let ok = run(&mut check, 1, &with(token(UID, &["a", "all_registered_clients", "Low"], NOW + 3600)));
    match &ok {
        CheckVerdict::Accept { notifies, .. } => {
            assert_eq!(notifies[0].ty, NotifyType(ZTNA_TAGS_CHECK_SUCCESS));
            assert_eq!(notifies[0].data, b"EMS3_ZTNA_a");
        }
        other => panic!("{other:?}"),
    }
    for line in ["EMS SN check passed", "EMS ZTNA token tags check success ZTNA_a", "send EMS_ZTNA_TAGS_CHECK_SUCCESS"]
    {
        assert!(has(&ok, line), "missing {line:?}: {:?}", debug_of(&ok));
    }
    assert!(debug_of(&ok).iter().any(|l| l.starts_with("received ZTNA tags update token (len=")));
    assert!(!debug_of(&ok).iter().any(|l| l.contains("eyJ")), "the token itself is never logged");

    // Each bad token is refused with its own reason.
    let good = token(UID, &["a"], NOW + 3600);
    let s = String::from_utf8(good.clone()).unwrap();
    let p: Vec<&str> = s.split('.').collect();
    let forged_claims = format!(r#"{{"endpoint":{{"uid":"{UID}","tags":[{{"name":"a"}}]}},"exp":{}}}"#, NOW + 99999);
    let tampered = format!("{}.{}.{}", p[0], jwt::base64_encode(forged_claims.as_bytes(), true), p[2]);
    let none = format!("{}.{}.", jwt::base64_encode(br#"{"alg":"none"}"#, true), p[1]);
    let hs_input = format!("{}.{}", jwt::base64_encode(br#"{"alg":"HS256","typ":"JWT"}"#, true), p[1]);
    let k = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, keys().1.to_pem().as_bytes());
    let hs =
        format!("{hs_input}.{}", jwt::base64_encode(aws_lc_rs::hmac::sign(&k, hs_input.as_bytes()).as_ref(), true));
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (tampered.into_bytes(), "signature does not verify"),
        (token(UID, &["a"], NOW - 3600), "expired"),
        (token("0123456789ABCDEF0123456789ABCDEF", &["a"], NOW + 3600), "is not the client's uid"),
        (none.into_bytes(), "alg none refused"),
        (hs.into_bytes(), "alg HS256 refused"),
        (token(UID, &["b"], NOW + 3600), "token does not carry a"),
        (b"garbage".to_vec(), "token malformed"),
    ];
    for (i, (t, want)) in cases.into_iter().enumerate() {
        let v = run(&mut check, 10 + i as u64, &with(t));
        let r = refused_reason(&v);
        assert!(r.contains(want), "case {i}: want {want:?} in {r:?}");
        assert!(has(&v, "EMS ZTNA tags check failure, abort"));
    }
    // No token at all while the server is down.
    let r = refused_reason(&run(&mut check, 30, &[fct("10.160.1.197", sn)]));
    assert!(r.contains("unreachable and no tag token"), "{r}");

    // A reachable server wins over the token: the token names the tag but the address does not.
    check.cache.store(
        "EMS3",
        Snapshot { serial: sn.into(), tags: vec![tag("a", &["10.1.1.1"])], ..Default::default() },
        NOW,
    );
    let r = refused_reason(&run(&mut check, 31, &with(good)));
    assert!(r.contains("10.160.1.197 not in EMS3_ZTNA_a"), "{r}");
}

#[test]
fn missing_or_malformed_client_data_is_refused() {
    let tags = vec!["EMS1_ZTNA_all_registered_clients".to_string()];
    let mut check = PostureCheck::new(true, &tags, cache(vec![tag("all_registered_clients", &["172.16.200.242"])]));
    assert!(refused_reason(&run(&mut check, 1, &[])).contains("no FortiClient data"));
    let bad = Notify::new(NotifyType(FORTICLIENT_CONNECT), b"UID=A IP=300.1.1.1".to_vec());
    assert!(refused_reason(&run(&mut check, 2, &[bad])).contains("bad IP value"));
}

#[test]
fn tunnels_that_lose_their_tag_are_reported() {
    let tags = vec!["EMS1_ZTNA_all_registered_clients".to_string(), "EMS3_ZTNA_a".to_string()];
    let c = cache(vec![tag("all_registered_clients", &["172.16.200.242", "172.16.200.243"])]);
    c.store_error("EMS3", "down".into());
    let mut check = PostureCheck::new(false, &tags, c.clone());
    assert!(matches!(run(&mut check, 1, &[fct("172.16.200.242", SERIAL)]), CheckVerdict::Accept { .. }));
    assert!(matches!(run(&mut check, 2, &[fct("172.16.200.243", SERIAL)]), CheckVerdict::Accept { .. }));
    let tok = Notify::new(NotifyType(ZTNA_TAG_TOKEN), token(UID, &["a"], NOW + 100));
    assert!(matches!(run(&mut check, 3, &[fct("192.0.2.9", SERIAL), tok]), CheckVerdict::Accept { .. }));
    assert!(check.lost_sessions(NOW).is_empty());

    // The server drops .242 from the tag: only that tunnel is lost.
    c.store(
        "EMS1",
        Snapshot {
            serial: SERIAL.into(),
            tags: vec![tag("all_registered_clients", &["172.16.200.243"])],
            ..Default::default()
        },
        NOW,
    );
    let lost = check.lost_sessions(NOW);
    assert_eq!(lost.iter().map(|l| l.0).collect::<Vec<_>>(), [1]);
    assert!(lost[0].1.contains("172.16.200.242 not in EMS1_ZTNA_all_registered_clients"), "{lost:?}");

    // The token-based tunnel goes when its token expires while EMS3 stays unreachable...
    let later = NOW + 100 + jwt::DEFAULT_SKEW + 1;
    c.store(
        "EMS1",
        Snapshot {
            serial: SERIAL.into(),
            tags: vec![tag("all_registered_clients", &["172.16.200.243"])],
            ..Default::default()
        },
        later,
    );
    let lost = check.lost_sessions(later);
    assert_eq!(lost.iter().map(|l| l.0).collect::<Vec<_>>(), [1, 3]);
    assert!(lost[1].1.contains("expired"), "{lost:?}");
    // ...unless a fresh token arrived.
    check.sessions.update_token(3, token(UID, &["a"], later + 600));
    check.sessions.forget(1);
    assert!(check.lost_sessions(later).is_empty());
}

const BUILD_CFG: &str = r#"
config system interface
    edit "port1"
        set ip 172.16.200.4 255.255.255.0
    next
end
config user local
    edit "userc"
        set type password
        set passwd "p"
    next
end
config user group
    edit "local-group"
        set member "userc"
    next
end
config endpoint-control fctems
    edit "EMS1"
        set server "ems1.example"
        set https-port 8443
        set serial-number "FCTEMS8826000120"
        set tenant-id "T1"
        set ca-cert "CA_FILE"
        set call-timeout 3
        set status-check-interval 10
        set out-of-sync-threshold 30
    next
    edit "EMS3"
        set server "http://127.0.0.1:8910"
        set jwt-public-key "KEY_FILE"
    next
end
config vpn ipsec phase1-interface
    edit "dialup"
        set type dynamic
        set interface "port1"
        set ike-version 2
        set mode-cfg enable
        set proposal aes128-sha256
        set eap enable
        set authusrgrp "local-group"
        set ems-sn-check enable
        set remote-gw-match ztna
        set ipv4-start-ip 10.0.0.2
        set ipv4-end-ip 10.0.0.9
        set psksecret "k"
        set remote-gw-ztna-tags "EMS1_ZTNA_all_registered_clients" "EMS3_ZTNA_a"
    next
    edit "plain"
        set type dynamic
        set interface "port1"
        set ike-version 2
        set proposal aes128-sha256
        set psksecret "k"
    next
end
config vpn ipsec phase2-interface
    edit "p2"
        set phase1name "dialup"
        set proposal aes128gcm
    next
end
"#;

#[test]
fn build_from_configuration() {
    let dir = std::env::temp_dir().join(format!("dialgate-posture-build-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("k.pem");
    std::fs::write(&key, keys().1.to_pem()).unwrap();
    // A CA bundle for the HTTPS connector: any valid certificate will do; use the system one.
    let ca = "/etc/ssl/certs/ca-certificates.crt";
    if !std::path::Path::new(ca).exists() {
        eprintln!("no system CA bundle: skipped");
        return;
    }
    let text = BUILD_CFG.replace("CA_FILE", ca).replace("KEY_FILE", &key.to_string_lossy());
    let cfg = crate::config::load_str(&text, "posture.conf").unwrap();
    assert!(super::build(&cfg, "plain").unwrap().is_none(), "no ztna, no posture");
    assert!(super::build(&cfg, "nope").unwrap().is_none());
    let p = super::build(&cfg, "dialup").unwrap().unwrap();
    assert!(p.check.ems_sn_check);
    assert_eq!(
        p.check.tags.iter().map(|t| t.configured.as_str()).collect::<Vec<_>>(),
        ["EMS1_ZTNA_all_registered_clients", "EMS3_ZTNA_a"]
    );
    let dbg = format!("{:?}", p.refresher);
    assert!(dbg.contains("https://ems1.example:8443/api/v1/posture"), "{dbg}");
    assert!(dbg.contains("http://127.0.0.1:8910/api/v1/posture"), "{dbg}");
    let ems1 = p.check.cache.get("EMS1").unwrap();
    assert_eq!((ems1.configured_serial.as_str(), ems1.stale_after), ("FCTEMS8826000120", 30));
    assert!(ems1.configured_key.is_none());
    assert_eq!(p.check.cache.get("EMS3").unwrap().configured_key.as_ref(), Some(&keys().1));

    // A key file that is not a key is an error naming the connector.
    std::fs::write(&key, "junk").unwrap();
    let e = super::build(&cfg, "dialup").unwrap_err();
    assert!(e.to_string().contains("fctems \"EMS3\""), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
