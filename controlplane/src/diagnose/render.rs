//! Text of the `diagnose` listings, laid out as the seeds show FortiOS's (one field a line for
//! `vpn ike gateway list`, `key=value` lines for `vpn tunnel list`). Renderers are pure
//! functions of a [`Snapshot`], so they are tested without a gateway.
//!
//! Fields dialgate does not have (FortiClient UID, kernel interface flags, NPU offload, IKE SA
//! keys) are left out rather than invented. Keys are never printed: the registry does not hold
//! them, and the `dec:`/`enc:` lines show key lengths only.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use dialgate_ike::message::TrafficSelector;
use dialgate_ike::responder::Stats;

use super::{IkeEntry, SaStats, Snapshot};

fn ago(now: Instant, t: Instant) -> u64 {
    now.saturating_duration_since(t).as_secs()
}

fn netmask(prefix: u8) -> Ipv4Addr {
    let p = u32::from(prefix.min(32));
    Ipv4Addr::from(if p == 0 { 0 } else { u32::MAX << (32 - p) })
}

fn selector(ts: &[TrafficSelector]) -> String {
    match ts.first() {
        // FortiOS: `proto:start-end:port`.
        Some(t) => format!("{}:{}-{}:{}", t.ip_protocol, t.start_addr, t.end_addr, t.start_port),
        None => "0:0.0.0.0-255.255.255.255:0".into(),
    }
}

/// Whether entry `e` is selected by `name` (none selects everything).
fn selected(e: &IkeEntry, name: Option<&str>) -> bool {
    name.is_none_or(|n| e.name() == n)
}

/// `diagnose vpn ike gateway list [name NAME]`: one block per IKE SA, blank line between.
pub fn gateway_list(snap: &Snapshot, name: Option<&str>) -> String {
    let mut out = String::new();
    for e in snap.sas.iter().filter(|e| selected(e, name)) {
        if !out.is_empty() {
            out.push('\n');
        }
        gateway(&mut out, snap, e);
    }
    out
}

fn gateway(out: &mut String, snap: &Snapshot, e: &IkeEntry) {
    let t = snap.tunnel(&e.tunnel);
    let now = snap.now;
    let addr = |a: Option<std::net::SocketAddr>| a.map_or_else(|| "0.0.0.0:0".to_string(), |a| a.to_string());
    let _ = writeln!(out, "vd: root/0");
    let _ = writeln!(out, "name: {}", e.name());
    let _ = writeln!(out, "version: 2");
    let _ = writeln!(out, "interface: {} {}", t.interface, t.ifindex);
    let _ = writeln!(out, "addr: {} -> {}", addr(e.local), addr(e.remote));
    if let Some(a) = e.assigned {
        let _ = writeln!(out, "tun_id: {a}");
    }
    let _ = writeln!(out, "remote_location: 0.0.0.0");
    let _ = writeln!(out, "network-id: 0");
    let _ = writeln!(out, "transport: UDP");
    let _ = writeln!(out, "created: {}s ago", ago(now, e.created));
    if let Some(u) = &e.user {
        let _ = writeln!(out, "eap-user: {u}");
    }
    let _ = writeln!(out, "2FA: {}", if e.two_factor { "yes" } else { "no" });
    if !e.peer_id.is_empty() {
        let _ = writeln!(out, "peer-id: {}", e.peer_id);
    }
    let _ = writeln!(out, "peer-id-auth: no");
    if let Some(uid) = &e.client_uid {
        let _ = writeln!(out, "FortiClient UID: {uid}");
    }
    if let Some(a) = e.assigned {
        let _ = writeln!(out, "assigned IPv4 address: {a}/{}", netmask(t.netmask));
    }
    match e.nat {
        (true, true) => out.push_str("nat: me peer\n"),
        (true, false) => out.push_str("nat: me\n"),
        (false, true) => out.push_str("nat: peer\n"),
        (false, false) => {}
    }
    let _ = writeln!(out, "pending-queue: 0");
    let _ = writeln!(out, "PPK: no");
    let (est, ms) = match e.established {
        Some(at) => (1, at.saturating_duration_since(e.created).as_millis()),
        None => (0, 0),
    };
    let _ = writeln!(out, "IKE SA: created 1/1  established {est}/{est}  time {ms}/{ms}/{ms} ms");
    let n = e.children.len();
    let _ = writeln!(out, "IPsec SA: created {n}/{n}  established {n}/{n}  time 0/0/0 ms");
    out.push('\n');
    let _ = writeln!(out, "  id/spi: {} {:016x}", e.serial, e.spi);
    let _ = writeln!(out, "  direction: responder");
    match e.established {
        Some(at) => {
            let _ = writeln!(out, "  status: established {}-{}s ago = {ms}ms", ago(now, at), ago(now, e.created));
        }
        None => {
            let _ = writeln!(out, "  status: connecting {}s ago", ago(now, e.created));
        }
    }
    let _ = writeln!(out, "  child: no");
    let _ = writeln!(out, "  DPD sent/recv: 00000000/00000000");
    if !e.peer_id.is_empty() {
        let _ = writeln!(out, "  peer-id: {}", e.peer_id);
    }
}

/// `diagnose vpn tunnel list [name NAME]`: the dial-up templates (configured phase1s) and
/// their established instances.
pub fn tunnel_list(snap: &Snapshot, name: Option<&str>) -> String {
    let mut out = String::new();
    match name {
        Some(_) => out.push_str("list ipsec tunnel by names in vd 0\n"),
        None => out.push_str("list all ipsec tunnel in vd 0\n"),
    }
    const RULE: &str = "------------------------------------------------------\n";
    for (i, t) in snap.tunnels.iter().enumerate() {
        let instances: Vec<&IkeEntry> =
            snap.sas.iter().filter(|e| e.tunnel == t.name && e.established.is_some()).collect();
        if name.is_none_or(|n| n == t.name) {
            let mut stat = SaStats::default();
            for c in instances.iter().flat_map(|e| e.children.iter()) {
                stat += snap.traffic.get(&c.inbound_spi).copied().unwrap_or_default();
            }
            out.push_str(RULE);
            let _ = writeln!(
                out,
                "name={} ver=2 serial={} 0.0.0.0:0->0.0.0.0:0 nexthop= tun_id=0.0.0.0 status=up dst_mtu=0 weight=1",
                t.name,
                i + 1
            );
            let _ = writeln!(
                out,
                "bound_if={} real_if=0 lgwy=static/1 tun=intf mode=dialup/2 encap=none role=primary accept_traffic=1 overlay_id=0",
                t.ifindex
            );
            let _ = writeln!(out, "proxyid_num=0 child_num={} ad=/0", instances.len());
            stat_lines(&mut out, &stat);
            let _ = writeln!(
                out,
                "dpd: mode={} on=0 status=ok idle={}ms retry={} count=0 seqno=0",
                t.dpd_mode,
                u64::from(t.dpd_interval) * 1000,
                t.dpd_retry
            );
            out.push_str("natt: mode=none draft=0 interval=0 remote_port=0\n");
            out.push_str("fec: egress=0 ingress=0\n");
        }
        for e in instances.iter().filter(|e| selected(e, name)) {
            out.push_str(RULE);
            instance(&mut out, snap, e);
        }
    }
    // Instances of a tunnel that is not configured (another driver's, or a reload removed it).
    for e in snap.sas.iter().filter(|e| e.established.is_some() && !snap.tunnels.iter().any(|t| t.name == e.tunnel)) {
        if selected(e, name) {
            out.push_str(RULE);
            instance(&mut out, snap, e);
        }
    }
    out
}

fn stat_lines(out: &mut String, s: &SaStats) {
    let _ = writeln!(out, "stat: rxp={} txp={} rxb={} txb={}", s.rxp, s.txp, s.rxb, s.txb);
}

fn instance(out: &mut String, snap: &Snapshot, e: &IkeEntry) {
    let t = snap.tunnel(&e.tunnel);
    let local = e.local.map_or_else(|| "0.0.0.0:0".into(), |a| a.to_string());
    let remote = e.remote.map_or_else(|| "0.0.0.0:0".into(), |a| a.to_string());
    let nexthop = e.remote.map_or(IpAddr::from([0, 0, 0, 0]), |a| a.ip());
    let tun_id = e.assigned.map_or(nexthop, IpAddr::V4);
    let _ = writeln!(
        out,
        "name={} ver=2 serial={} {local}->{remote} nexthop={nexthop} tun_id={tun_id} status=up dst_mtu=1500 weight=1",
        e.name(),
        e.serial
    );
    let _ = writeln!(
        out,
        "bound_if={0} real_if={0} lgwy=static/1 tun=intf mode=dial_inst/3 encap=none run_state=0 role=primary accept_traffic=1 overlay_id=0",
        t.ifindex
    );
    let _ = writeln!(out, "parent={} index={}", e.tunnel, e.index.unwrap_or(0));
    let _ = writeln!(out, "proxyid_num={} child_num=0 ad=/0", e.children.len());
    let mut stat = SaStats::default();
    for c in &e.children {
        stat += snap.traffic.get(&c.inbound_spi).copied().unwrap_or_default();
    }
    stat_lines(out, &stat);
    let _ = writeln!(
        out,
        "dpd: mode={} on=0 status=ok idle={}ms retry={} count=0 seqno=0",
        t.dpd_mode,
        u64::from(t.dpd_interval) * 1000,
        t.dpd_retry
    );
    if e.natt() {
        let port = e.remote.map_or(0, |a| a.port());
        let _ = writeln!(out, "natt: mode=keepalive draft=0 interval=10 remote_port={port}");
    } else {
        out.push_str("natt: mode=none draft=0 interval=0 remote_port=0\n");
    }
    out.push_str("fec: egress=0 ingress=0\n");
    for (i, c) in e.children.iter().enumerate() {
        let _ = writeln!(out, "proxyid={} proto=0 sa=1 ref=2 serial={} add-route", e.tunnel, i + 1);
        let _ = writeln!(out, "  src: {}", selector(&c.tsr));
        let _ = writeln!(out, "  dst: {}", selector(&c.tsi));
        let _ = writeln!(
            out,
            "  SA:  ref=3 type=00 soft=0 mtu=1422 expire={}s replaywin=1024 esn={} encap={}",
            ago(snap.now, c.created),
            u8::from(c.esn),
            if c.udp_encap { "udp" } else { "none" }
        );
        let t = snap.traffic.get(&c.inbound_spi).copied().unwrap_or_default();
        let _ = writeln!(out, "  stat: rxp={} txp={} rxb={} txb={}", t.rxp, t.txp, t.rxb, t.txb);
        let auth_len = match c.auth {
            "sha1" => 20,
            "sha256" => 32,
            "sha384" => 48,
            "sha512" => 64,
            _ => 0,
        };
        let _ = writeln!(
            out,
            "  dec: spi={:08x} esp={} key={} ah={} key={auth_len}",
            c.inbound_spi, c.suite, c.key_len, c.auth
        );
        let _ = writeln!(
            out,
            "  enc: spi={:08x} esp={} key={} ah={} key={auth_len}",
            c.outbound_spi, c.suite, c.key_len, c.auth
        );
    }
}

/// What `diagnose vpn ike stats` prints.
#[derive(Debug)]
pub struct StatsView<'a> {
    /// Time since the registry was created.
    pub uptime: Duration,
    /// IKE SAs now.
    pub sas: usize,
    /// Established IKE SAs now.
    pub established: usize,
    /// CHILD_SAs now.
    pub children: usize,
    /// IKE SAs seen since start.
    pub ike_created: u64,
    /// IKE SAs established since start.
    pub ike_established: u64,
    /// CHILD_SAs installed since start.
    pub child_created: u64,
    /// Driver counters by driver.
    pub driver: &'a [(String, Vec<(&'static str, u64)>)],
    /// Responder counters.
    pub responder: Option<Stats>,
    /// Open debug streams.
    pub streams: usize,
    /// Debug lines dropped for slow streams.
    pub dropped_lines: u64,
}

/// `diagnose vpn ike stats`.
pub fn stats(v: &StatsView<'_>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "vd: root/0");
    let _ = writeln!(out, "uptime: {}s", v.uptime.as_secs());
    let _ = writeln!(out, "ike-sa: current {} established {}", v.sas, v.established);
    let _ = writeln!(out, "ike-sa total: created {} established {}", v.ike_created, v.ike_established);
    let _ = writeln!(out, "ipsec-sa: current {} total {}", v.children, v.child_created);
    for (name, values) in v.driver {
        let fields: Vec<String> = values.iter().map(|(k, n)| format!("{k}={n}")).collect();
        let _ = writeln!(out, "driver {name}: {}", fields.join(" "));
    }
    if let Some(r) = v.responder {
        let _ = writeln!(
            out,
            "responder: malformed={} integrity_failed={} unexpected={} retransmits={} cookies_sent={} blocked={} unsupported_critical={}",
            r.malformed, r.integrity_failed, r.unexpected, r.retransmits, r.cookies_sent, r.blocked, r.unsupported_critical
        );
    }
    let _ = writeln!(out, "debug: streams={} dropped_lines={}", v.streams, v.dropped_lines);
    out
}
