use std::sync::atomic::{AtomicU32, Ordering as AtomicOrdering};

use dialgate_ike::proposal::EspSuite;
use dialgate_ike::responder::{DirectionKeys, Path};
use zeroize::Zeroizing;

use super::server::{execute, parse, words, Command, Reply};
use super::*;
use crate::driver::{EventLog, LogOnlySink};

const EXAMPLE: &str = include_str!("../../../examples/dialgate.conf");

fn example_diag() -> Diag {
    let cfg = crate::config::load_str(EXAMPLE, "dialgate.conf").unwrap();
    let d = Diag::new();
    for t in TunnelInfo::from_config(&cfg) {
        d.add_tunnel(t);
    }
    d.set_two_factor_users(two_factor_users(&cfg));
    d
}

fn path() -> Path {
    Path { remote: "198.51.100.7:64916".parse().unwrap(), local: "192.0.2.1:4500".parse().unwrap() }
}

/// Distinctive key bytes: if any listing or debug line printed a key, its hex would show.
const IN_ENCR: [u8; 20] = [
    0xde, 0xad, 0xbe, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0xfe, 0xdc, 0xba, 0x98, 0x11, 0x22, 0x33,
    0x44,
];
const OUT_ENCR: [u8; 20] = [
    0xca, 0xfe, 0xba, 0xbe, 0x76, 0x54, 0x32, 0x10, 0x0f, 0x1e, 0x2d, 0x3c, 0x4b, 0x5a, 0x69, 0x78, 0x55, 0x66, 0x77,
    0x88,
];

fn child(ike_spi: u64, in_spi: u32, out_spi: u32, vip: Ipv4Addr) -> ChildSa {
    ChildSa {
        ike_spi,
        inbound_spi: in_spi,
        outbound_spi: out_spi,
        suite: EspSuite::parse("aes128gcm").unwrap(),
        esn: false,
        inbound: DirectionKeys { encr: Zeroizing::new(IN_ENCR.to_vec()), integ: Zeroizing::new(Vec::new()) },
        outbound: DirectionKeys { encr: Zeroizing::new(OUT_ENCR.to_vec()), integ: Zeroizing::new(Vec::new()) },
        tsi: vec![TrafficSelector::ipv4_range(vip, vip)],
        tsr: vec![TrafficSelector::ipv4_range([10, 50, 0, 0].into(), [10, 50, 0, 255].into())],
        path: path(),
        udp_encap: true,
        assigned: Some(vip),
        rekeys: None,
    }
}

fn established(spi: u64, user: &str, vip: Ipv4Addr) -> Event {
    Event::IkeSaEstablished {
        spi,
        path: path(),
        user: Some(user.to_string()),
        peer_id: "198.51.100.7".into(),
        assigned: Some(vip),
    }
}

fn dbg(spi: Option<u64>, line: &str) -> Event {
    Event::Debug { spi, line: line.to_string() }
}

/// Feeds a whole login of `user` through an [`EventLog`] as a driver would.
fn login(log: &mut EventLog, spi: u64, user: &str, vip: Ipv4Addr, in_spi: u32) {
    let mut sink = LogOnlySink::default();
    log.set_peer(Some(path()));
    log.handle(dbg(None, "responder received SA_INIT msg from 198.51.100.7:500"), &mut sink);
    log.handle(dbg(None, "NAT detected: peer"), &mut sink);
    log.handle(dbg(Some(spi), "responder preparing SA_INIT msg, group 19"), &mut sink);
    log.handle(dbg(Some(spi), "responder received AUTH msg"), &mut sink);
    log.handle(dbg(Some(spi), "authentication succeeded"), &mut sink);
    log.handle(established(spi, user, vip), &mut sink);
    log.handle(Event::InstallChildSa(child(spi, in_spi, in_spi ^ 0xffff_0000, vip)), &mut sink);
    log.set_peer(None);
}

struct FixedCounters;

impl SaCounterSource for FixedCounters {
    fn counters(&self, inbound_spi: u32, _outbound_spi: u32) -> Option<SaStats> {
        (inbound_spi == 0xc000_0101).then_some(SaStats { rxp: 1290, txp: 40, rxb: 65588, txb: 34472 })
    }
}

#[test]
fn registry_names_instances_and_forgets_closed_sas() {
    let d = example_diag();
    let mut log = EventLog::with_diag("Test-Dialup", d.clone());
    let mut sink = LogOnlySink::default();
    // A negotiation in progress is listed under the phase1 name.
    log.handle(dbg(Some(0xaa), "responder preparing SA_INIT msg, group 19"), &mut sink);
    let s = d.snapshot();
    assert_eq!(s.sas.len(), 1);
    assert_eq!(s.sas[0].name(), "Test-Dialup");
    assert!(s.sas[0].established.is_none());

    log.handle(established(0xaa, "Test", [10, 40, 40, 2].into()), &mut sink);
    login(&mut log, 0xbb, "Test2", [10, 40, 40, 3].into(), 0xc000_0202);
    let s = d.snapshot();
    let names: Vec<String> = s.sas.iter().map(IkeEntry::name).collect();
    assert_eq!(names, ["Test-Dialup_0", "Test-Dialup_1"]);
    assert_eq!(s.sas[0].serial, 1);
    assert_eq!(s.sas[1].serial, 2);
    assert!(s.sas[0].two_factor, "Test has two-factor fortitoken");
    assert!(!s.sas[1].two_factor, "Test2 is not configured");
    assert_eq!(s.sas[1].children.len(), 1);
    assert_eq!(s.sas[1].nat, (false, true), "NAT line of IKE_SA_INIT attributed to the SA");
    // A repeated establishment event keeps the instance name.
    log.handle(established(0xbb, "Test2", [10, 40, 40, 3].into()), &mut sink);
    assert_eq!(d.snapshot().sas[1].name(), "Test-Dialup_1");

    log.handle(Event::IkeSaClosed { spi: 0xaa, reason: CloseReason::NegotiationTimeout }, &mut sink);
    let s = d.snapshot();
    assert_eq!(s.sas.len(), 1, "closed SA left the list");
    assert_eq!(s.sas[0].spi, 0xbb);
    // The freed instance index is reused.
    login(&mut log, 0xcc, "Test", [10, 40, 40, 4].into(), 0xc000_0303);
    let s = d.snapshot();
    assert_eq!(s.sas.iter().find(|e| e.spi == 0xcc).unwrap().name(), "Test-Dialup_0");
    // Always the lowest free one: 2 next, then 0 and 1 once both are free again.
    login(&mut log, 0xdd, "Test3", [10, 40, 40, 5].into(), 0xc000_0404);
    for spi in [0xbb, 0xcc] {
        log.handle(Event::IkeSaClosed { spi, reason: CloseReason::Deleted }, &mut sink);
    }
    login(&mut log, 0xee, "Test4", [10, 40, 40, 6].into(), 0xc000_0505);
    login(&mut log, 0xff, "Test5", [10, 40, 40, 7].into(), 0xc000_0606);
    let s = d.snapshot();
    let name = |spi: u64| s.sas.iter().find(|e| e.spi == spi).unwrap().name();
    assert_eq!(
        (name(0xdd), name(0xee), name(0xff)),
        ("Test-Dialup_2".into(), "Test-Dialup_0".into(), "Test-Dialup_1".into())
    );
}

#[test]
fn gateway_list_follows_the_seed_layout() {
    let d = example_diag();
    let mut log = EventLog::with_diag("Test-Dialup", d.clone());
    login(&mut log, 0x1122_3344_5566_7788, "Test", [10, 40, 40, 2].into(), 0xc000_0101);
    let text = render::gateway_list(&d.snapshot(), None);
    for want in [
        "vd: root/0\nname: Test-Dialup_0\nversion: 2\ninterface: wan1 1\n",
        "addr: 192.0.2.1:4500 -> 198.51.100.7:64916\n",
        "created: 0s ago\n",
        "eap-user: Test\n2FA: yes\npeer-id: 198.51.100.7\n",
        "assigned IPv4 address: 10.40.40.2/255.255.255.255\n",
        "nat: peer\n",
        "IKE SA: created 1/1  established 1/1  time ",
        "IPsec SA: created 1/1  established 1/1  time 0/0/0 ms\n",
        "  id/spi: 1 1122334455667788\n  direction: responder\n  status: established 0-0s ago = ",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    assert_eq!(render::gateway_list(&d.snapshot(), Some("Test-Dialup_0")), text);
    assert_eq!(render::gateway_list(&d.snapshot(), Some("Test-Dialup_1")), "");
}

#[test]
fn tunnel_list_shows_instances_traffic_and_natt() {
    let d = example_diag();
    d.set_sa_counters(Arc::new(FixedCounters));
    let mut log = EventLog::with_diag("Test-Dialup", d.clone());
    login(&mut log, 0x77, "Test", [10, 40, 40, 2].into(), 0xc000_0101);
    let text = render::tunnel_list(&d.snapshot(), None);
    for want in [
        "list all ipsec tunnel in vd 0\n------",
        "name=Test-Dialup ver=2 serial=1 0.0.0.0:0->0.0.0.0:0",
        "mode=dialup/2",
        "name=Test-Dialup_0 ver=2 serial=1 192.0.2.1:4500->198.51.100.7:64916 nexthop=198.51.100.7 tun_id=10.40.40.2 status=up",
        "mode=dial_inst/3",
        "parent=Test-Dialup index=0\n",
        "stat: rxp=1290 txp=40 rxb=65588 txb=34472\n",
        "dpd: mode=on-demand on=0 status=ok idle=20000ms retry=3 count=0 seqno=0\n",
        "natt: mode=keepalive draft=0 interval=10 remote_port=64916\n",
        "  src: 0:10.50.0.0-10.50.0.255:0\n  dst: 0:10.40.40.2-10.40.40.2:0\n",
        "  dec: spi=c0000101 esp=aes128gcm key=16 ah=null key=0\n",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    let one = render::tunnel_list(&d.snapshot(), Some("Test-Dialup_0"));
    assert!(one.starts_with("list ipsec tunnel by names in vd 0\n"), "{one}");
    assert!(!one.contains("mode=dialup/2"), "template listed for an instance name: {one}");
    assert!(one.contains("name=Test-Dialup_0 "), "{one}");
    // Without a data plane the counters are zeros, never missing.
    let d2 = example_diag();
    let mut log2 = EventLog::with_diag("Test-Dialup", d2.clone());
    login(&mut log2, 0x77, "Test", [10, 40, 40, 2].into(), 0xc000_0101);
    assert!(render::tunnel_list(&d2.snapshot(), None).contains("stat: rxp=0 txp=0 rxb=0 txb=0\n"));
    // Pushed counters work as well.
    d2.update_sa_stats(0xc000_0101, SaStats { rxp: 3, txp: 4, rxb: 5, txb: 6 });
    assert!(render::tunnel_list(&d2.snapshot(), None).contains("stat: rxp=3 txp=4 rxb=5 txb=6\n"));
}

#[test]
fn filter_matches_addresses_and_ranges() {
    let f = AddrFilter { start: [198, 51, 100, 7].into(), end: [198, 51, 100, 7].into() };
    assert!(f.matches(Some([198, 51, 100, 7].into())));
    assert!(!f.matches(Some([198, 51, 100, 8].into())));
    assert!(!f.matches(None), "a line of unknown peer never passes a filter");
    let mapped: IpAddr = "::ffff:198.51.100.7".parse().unwrap();
    assert!(f.matches(Some(mapped)));
    let r = AddrFilter { start: [10, 0, 0, 1].into(), end: [10, 0, 0, 9].into() };
    assert!(r.matches(Some([10, 0, 0, 9].into())) && !r.matches(Some([10, 0, 0, 10].into())));
    let mut s = DebugSettings::default();
    assert!(!s.passes(App::Ike, Some([10, 0, 0, 1].into())), "level 0 is off");
    s.levels.insert(App::Ike, -1);
    assert!(s.passes(App::Ike, None), "no filter: everything");
    assert!(!s.passes(App::Fnbamd, None));
    s.filter = Some(r);
    assert!(s.passes(App::Ike, Some([10, 0, 0, 5].into())));
    assert!(!s.passes(App::Ike, Some([10, 0, 0, 50].into())));
}

fn drain(rx: &mut mpsc::Receiver<Arc<str>>) -> Vec<String> {
    let mut v = Vec::new();
    while let Ok(l) = rx.try_recv() {
        v.push(l.to_string());
    }
    v
}

#[test]
fn stream_follows_level_filter_and_disable() {
    let d = example_diag();
    let mut log = EventLog::with_diag("Test-Dialup", d.clone());
    let mut rx = d.subscribe();
    // Level 0: nothing, although a stream is open.
    login(&mut log, 0x10, "Test", [10, 40, 40, 2].into(), 0x100);
    assert!(drain(&mut rx).is_empty());

    d.set_level(App::Ike, -1);
    d.set_filter(Some(AddrFilter { start: [198, 51, 100, 7].into(), end: [198, 51, 100, 7].into() }));
    login(&mut log, 0x11, "Test", [10, 40, 40, 3].into(), 0x101);
    let lines = drain(&mut rx);
    assert!(lines.contains(&"ike V=root:0:Test-Dialup:2: authentication succeeded".to_string()), "{lines:?}");
    assert!(lines.contains(&"ike V=root:0:Test-Dialup: NAT detected: peer".to_string()), "{lines:?}");
    assert!(lines.iter().all(|l| !l.starts_with('[')), "fnbamd lines without fnbamd level: {lines:?}");

    d.set_filter(Some(AddrFilter { start: [203, 0, 113, 1].into(), end: [203, 0, 113, 1].into() }));
    login(&mut log, 0x12, "Test", [10, 40, 40, 4].into(), 0x102);
    assert!(drain(&mut rx).is_empty(), "non-matching filter let lines through");

    d.set_filter(None);
    d.set_level(App::Fnbamd, -1);
    login(&mut log, 0x13, "Test", [10, 40, 40, 5].into(), 0x103);
    let lines = drain(&mut rx);
    assert!(
        lines.contains(
            &"[880] update_auth_token_session-2fa code has already been verified in concatenated password".to_string()
        ),
        "{lines:?}"
    );
    let mut sink = LogOnlySink::default();
    log.handle(
        Event::AuthFailed { spi: 0x14, user: "Test".into(), reason: "two-factor token is needed".into() },
        &mut sink,
    );
    let lines = drain(&mut rx);
    assert!(lines.contains(&"[1898] handle_req-Two-factor token is needed".to_string()), "{lines:?}");
    assert!(lines.contains(&"ike V=root:0:Test-Dialup: EAP requires token for user \"Test\"".to_string()));

    d.set_timestamps(true);
    log.handle(dbg(Some(0x13), "hello"), &mut sink);
    let l = drain(&mut rx);
    assert!(l.len() == 1 && l[0].ends_with(" ike V=root:0:Test-Dialup:4: hello") && l[0].starts_with("20"), "{l:?}");

    d.debug_disable();
    assert_eq!(d.stream_count(), 0);
    assert!(matches!(rx.try_recv(), Err(mpsc::error::TryRecvError::Disconnected)));
}

/// A driver that drains several datagrams' events at once and never calls `set_peer` (the DPDK
/// driver's batches): the SA_INIT line names the peer, so a filtered stream still sees the
/// lines before IKE_AUTH completes, and another peer's lines stay out.
#[test]
fn filter_works_without_set_peer() {
    let d = example_diag();
    d.set_level(App::Ike, -1);
    d.set_filter(Some(AddrFilter { start: [198, 51, 100, 7].into(), end: [198, 51, 100, 7].into() }));
    let mut rx = d.subscribe();
    let mut log = EventLog::with_diag("Test-Dialup", d.clone());
    let mut sink = LogOnlySink::default();
    for ev in [
        dbg(None, "responder received SA_INIT msg from 198.51.100.7:500"),
        dbg(Some(1), "responder preparing SA_INIT msg, group 19"),
        dbg(None, "responder received SA_INIT msg from 203.0.113.5:500"),
        dbg(Some(2), "responder preparing SA_INIT msg, group 19"),
        dbg(Some(1), "responder received AUTH msg"),
        dbg(Some(2), "responder received AUTH msg"),
        dbg(Some(1), "authentication succeeded"),
        dbg(Some(2), "authentication succeeded"),
    ] {
        log.handle(ev, &mut sink);
    }
    let lines = drain(&mut rx);
    assert_eq!(
        lines,
        [
            "ike V=root:0:Test-Dialup: responder received SA_INIT msg from 198.51.100.7:500",
            "ike V=root:0:Test-Dialup:1: responder preparing SA_INIT msg, group 19",
            "ike V=root:0:Test-Dialup:1: responder received AUTH msg",
            "ike V=root:0:Test-Dialup:1: authentication succeeded",
        ]
    );
}

#[test]
fn no_key_bytes_in_listings_or_debug_lines() {
    let d = example_diag();
    d.set_level(App::Ike, -1);
    d.set_level(App::Fnbamd, -1);
    let mut rx = d.subscribe();
    let mut log = EventLog::with_diag("Test-Dialup", d.clone());
    login(&mut log, 0xfeed, "Test", [10, 40, 40, 2].into(), 0xc000_0101);
    let mut all = drain(&mut rx).join("\n");
    let snap = d.snapshot();
    all.push_str(&render::gateway_list(&snap, None));
    all.push_str(&render::tunnel_list(&snap, None));
    all.push_str(&format!("{:?}", snap.sas));
    all.push_str(&d.stats_text());
    assert!(all.contains("c0000101"), "the listing is not empty: {all}");
    let lower = all.to_lowercase();
    for key in [&IN_ENCR[..], &OUT_ENCR[..]] {
        // Any 4-byte window of a key, in hex: a key printed in part is a leak too.
        for w in key.windows(4) {
            let h = hex::encode(w);
            assert!(!lower.contains(&h), "key bytes {h} in diagnose output:\n{all}");
        }
    }
}

#[test]
fn commands_parse_like_fortios() {
    let p = |s: &str| parse(&words(s));
    assert_eq!(p("vpn ike gateway list"), Ok(Command::GatewayList(None)));
    assert_eq!(
        p("vpn ike gateway list name \"Test-Dialup_0\""),
        Ok(Command::GatewayList(Some("Test-Dialup_0".into())))
    );
    assert_eq!(p("vpn tunnel list name x"), Ok(Command::TunnelList(Some("x".into()))));
    let one = AddrFilter { start: [198, 51, 100, 7].into(), end: [198, 51, 100, 7].into() };
    assert_eq!(p("vpn ike log filter rem-addr4 198.51.100.7"), Ok(Command::SetFilter(Some(one))));
    assert_eq!(p("vpn ike log-filter rem-addr4 198.51.100.7"), Ok(Command::SetFilter(Some(one))));
    assert_eq!(p("vpn ike log-filter clear"), Ok(Command::SetFilter(None)));
    assert_eq!(p("vpn ike log filter clear"), Ok(Command::SetFilter(None)));
    assert!(p("vpn ike log filter rem-addr4 10.0.0.9 10.0.0.1").is_err());
    assert!(p("vpn ike log filter rem-addr4 nope").is_err());
    assert_eq!(p("debug application ike -1"), Ok(Command::Application(App::Ike, Some(-1))));
    assert_eq!(p("debug application fnbamd -1"), Ok(Command::Application(App::Fnbamd, Some(-1))));
    assert_eq!(p("debug application eap_proxy -1"), Ok(Command::Application(App::EapProxy, Some(-1))));
    assert!(p("debug application sslvpn -1").is_err());
    assert_eq!(p("debug enable"), Ok(Command::Enable));
    assert_eq!(p("debug console timestamp enable"), Ok(Command::Timestamps(true)));
    assert_eq!(p("debug reset"), Ok(Command::Reset));
    assert_eq!(p("firewall policy list"), Ok(Command::FirewallPolicyList));
    assert_eq!(p("test application ike fault"), Ok(Command::FaultDrill));
    let e = p("vpn ike gatway list").unwrap_err();
    assert!(e.contains("unknown command") && e.contains("vpn tunnel list [name NAME]"), "{e}");
    assert_eq!(words("a  \"b c\" d"), ["a", "b c", "d"]);
}

#[test]
fn execute_sets_state_and_reset_clears_it() {
    let d = example_diag();
    assert_eq!(execute(&d, &Command::Application(App::Ike, Some(-1))), Reply::Text(String::new()));
    let f = AddrFilter { start: [1, 2, 3, 4].into(), end: [1, 2, 3, 4].into() };
    execute(&d, &Command::SetFilter(Some(f)));
    let Reply::Text(info) = execute(&d, &Command::Info) else { panic!() };
    assert!(info.contains("ike debug level: -1") && info.contains("rem-addr4: 1.2.3.4"), "{info}");
    let Reply::Stream(n) = execute(&d, &Command::Enable) else { panic!() };
    assert!(n.contains("ike -1") && n.contains("1.2.3.4"), "{n}");
    execute(&d, &Command::Reset);
    assert_eq!(d.settings().level(App::Ike), 0);
    assert_eq!(d.settings().filter, Some(f), "reset keeps the filter (log filter clear removes it)");
    let Reply::Stream(n) = execute(&d, &Command::Enable) else { panic!() };
    assert!(n.contains("no application has a debug level"), "{n}");
    assert!(matches!(execute(&d, &Command::FirewallPolicyList), Reply::Error(_)));
    d.set_firewall(Arc::new(|| "policy 0 name=\"implicit deny\" action=deny\n".to_string()));
    assert!(matches!(execute(&d, &Command::FirewallPolicyList), Reply::Text(t) if t.contains("implicit deny")));
}

#[test]
fn timestamps_are_utc_civil_time() {
    assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01 00:00:00");
    let t = UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
    assert_eq!(timestamp(t), "2023-11-14 22:13:20");
    let t = UNIX_EPOCH + std::time::Duration::from_secs(951_782_400); // leap day 2000
    assert_eq!(timestamp(t), "2000-02-29 00:00:00");
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// Over the socket: a stale socket file is replaced, a text command answers `ok`, an unknown
/// one `error`, and a stream receives a line that is emitted after it opened.
#[test]
fn socket_round_trip_and_stream() {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let dir = std::env::temp_dir().join(format!(
        "dgt-diag-unit-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, AtomicOrdering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let sock = dir.join("sub").join("dialgate.sock");
    std::fs::create_dir_all(sock.parent().unwrap()).unwrap();
    // A stale socket (bound, then its listener dropped) is removed at bind.
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    let d = example_diag();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let server = server::Server::bind(&sock).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(server::Server::bind(&sock).is_err(), "a live socket must not be taken over");
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(d.clone(), async move {
            let _ = stop_rx.await;
        }));
        let ask = |cmd: &'static str| {
            let sock = sock.clone();
            async move {
                let mut s = tokio::net::UnixStream::connect(&sock).await.unwrap();
                s.write_all(format!("{cmd}\n").as_bytes()).await.unwrap();
                let mut out = String::new();
                s.read_to_string(&mut out).await.unwrap();
                out
            }
        };
        assert_eq!(ask("vpn ike gateway list").await, "ok\n");
        let e = ask("bogus").await;
        assert!(e.starts_with("error\nunknown command: bogus\n"), "{e}");
        assert_eq!(ask("debug application ike -1").await, "ok\n");

        let mut s = tokio::net::UnixStream::connect(&sock).await.unwrap();
        s.write_all(b"debug enable\n").await.unwrap();
        let mut r = BufReader::new(s);
        let mut l = String::new();
        r.read_line(&mut l).await.unwrap();
        assert_eq!(l, "stream\n");
        l.clear();
        r.read_line(&mut l).await.unwrap();
        assert!(l.starts_with("debug output enabled (ike -1"), "{l}");
        d.debug(Some([198, 51, 100, 7].into()), "ike V=root:0:Test-Dialup:1: authentication succeeded");
        l.clear();
        tokio::time::timeout(std::time::Duration::from_secs(2), r.read_line(&mut l)).await.unwrap().unwrap();
        assert_eq!(l, "ike V=root:0:Test-Dialup:1: authentication succeeded\n");
        // `debug disable` from another client ends the stream.
        assert_eq!(ask("debug disable").await, "ok\n");
        l.clear();
        let n = tokio::time::timeout(std::time::Duration::from_secs(2), r.read_line(&mut l)).await.unwrap().unwrap();
        assert_eq!(n, 0, "stream still open: {l}");
        let _ = stop_tx.send(());
        task.await.unwrap();
    });
    assert!(!sock.exists(), "socket file left behind");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn fault_drill_needs_a_supervised_loop_and_fires_once() {
    let d = example_diag();
    assert!(matches!(execute(&d, &Command::FaultDrill), Reply::Error(_)), "nothing supervised yet");
    assert!(!d.take_fault_drill());
    let restarts = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    d.watch_restarts("ike", restarts.clone());
    assert!(d.stats_text().contains("supervision: ike_restarts=0"), "{}", d.stats_text());
    assert!(matches!(execute(&d, &Command::FaultDrill), Reply::Text(_)));
    assert!(d.take_fault_drill());
    assert!(!d.take_fault_drill(), "one drill, one failure");
    restarts.store(1, std::sync::atomic::Ordering::Relaxed);
    assert!(d.stats_text().contains("supervision: ike_restarts=1"), "{}", d.stats_text());
}
