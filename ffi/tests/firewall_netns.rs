//! Firewall policy and source NAT on real links: net_af_packet on veths into two network
//! namespaces this test creates, two scapy clients (two SAs, two virtual addresses) talking to
//! one UDP echo server on the LAN.
//!
//! ```text
//!  netns dfc<pid> (clients)              this process (own netns)              netns dfl<pid> (LAN)
//!  cwan 192.0.2.7/24, 192.0.2.8/24 ═veth═ gwan [DPDK port, WAN 192.0.2.1]        │
//!                                          worker on lcore 1, firewall + NAT     │
//!                                  glan [DPDK port, LAN 10.0.0.1]  ═══veth═══ lan0 10.0.0.5/24
//!                                                                   (no route to the clients)
//! ```
//!
//! Policy 1 lets the tunnel interface reach UDP 7000 on 10.0.0.5 with `nat enable`; nothing
//! allows UDP 7001. Client A (192.0.2.7, virtual address 10.212.134.200) and client B
//! (192.0.2.8, .201) both send from UDP port 40000 to 10.0.0.5:7000 and twice to :7001, as
//! ESP in UDP 4500. The server (a Python socket in the LAN namespace) echoes what it gets on
//! 7000 and records what it got on either port. Checked:
//! * the server saw both clients from the gateway's LAN address with two distinct ports, one
//!   per client (the LAN has no route to the virtual addresses, so replies only come back
//!   through the translation);
//! * each client opened echoes of its own payloads only, addressed to its virtual address
//!   and port 40000;
//! * nothing reached port 7001; the worker counted the four packets as `policy_denied` and the
//!   implicit deny counted them; policy 1 counted the flows (2 hits) and packets both ways.
//!
//! Needs root and scapy (`DIALGATE_PYTHON`, default `.venv/bin/python3`); otherwise it reports
//! SKIPPED. The namespaces are deleted and the server is killed on every way out.

use std::process::ExitCode;

#[cfg(not(dpdk))]
fn main() -> ExitCode {
    println!("SKIPPED: dialgate-ffi was built without DPDK");
    ExitCode::SUCCESS
}

#[cfg(dpdk)]
fn main() -> ExitCode {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("SKIPPED: network namespaces need root");
        return ExitCode::SUCCESS;
    }
    let python = std::env::var("DIALGATE_PYTHON")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../.venv/bin/python3").to_string());
    let has_scapy = std::process::Command::new(&python)
        .args(["-c", "import scapy.layers.ipsec"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_scapy {
        println!("SKIPPED: no scapy at {python} (run scripts/setup)");
        return ExitCode::SUCCESS;
    }
    match imp::run(&python) {
        Ok(()) => {
            println!("test firewall_nat_two_clients_through_netns ... ok");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("test firewall_nat_two_clients_through_netns ... FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(dpdk)]
mod imp {
    use core::net::{IpAddr, Ipv4Addr};
    use std::process::{Child, Command, Stdio};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use dialgate_dataplane::esp::{Algorithm, Backend, DropReason, Transform};
    use dialgate_dataplane::policy::{
        Action, AddrSet, GroupMask, IfIndex, IfMatch, PolicySet, PolicySpec, PortRange, ServiceEntry,
    };
    use dialgate_dataplane::ring::Command as DpCommand;
    use dialgate_dataplane::route::NextHop;
    use dialgate_dataplane::sa::table::{InboundEntry, TunnelTag};
    use dialgate_dataplane::sa::{InboundSa, Lifetime, OutboundSa, Tunnel, UdpEncap};
    use dialgate_dataplane::worker::{
        Counter, FirewallConfig, Interface, Plane, PlaneConfig, Role, Worker, WorkerConfig,
    };
    use dialgate_ffi::io::EthdevIo;
    use dialgate_ffi::{port, Eal, Mbuf, Mempool, PoolConfig, Port, PortConfig};

    const GW_WAN: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const GW_LAN: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const IF_WAN: IfIndex = 0;
    const IF_LAN: IfIndex = 1;
    const IF_TUN: IfIndex = 2;
    /// Packets each client sends to the allowed port.
    const SENDS: u32 = 8;
    /// Packets each client sends to the denied port.
    const DENIED: u32 = 2;

    /// One client: outer address, virtual address, SPIs are chosen at run time, keys here.
    struct ClientDef {
        outer: Ipv4Addr,
        vip: Ipv4Addr,
        spi_client: u32,
        key_in: [u8; 20],
        key_out: [u8; 20],
        tag: &'static str,
    }

    const CLIENTS: [ClientDef; 2] = [
        ClientDef {
            outer: Ipv4Addr::new(192, 0, 2, 7),
            vip: Ipv4Addr::new(10, 212, 134, 200),
            spi_client: 0xc1c1_0001,
            key_in: *b"A client->gw key 01!",
            key_out: *b"A gw->client key 01!",
            tag: "A",
        },
        ClientDef {
            outer: Ipv4Addr::new(192, 0, 2, 8),
            vip: Ipv4Addr::new(10, 212, 134, 201),
            spi_client: 0xc1c1_0002,
            key_in: *b"B client->gw key 02!",
            key_out: *b"B gw->client key 02!",
            tag: "B",
        },
    ];

    /// A client: seal UDP datagrams to 7000 (and a few to 7001), open what comes back.
    const CLIENT_PY: &str = r#"
import json, sys, time
from scapy.all import IP, UDP, Raw, AsyncSniffer, send, conf
from scapy.layers.ipsec import ESP, SecurityAssociation
conf.verb = 0
spi_gw, spi_cl = int(sys.argv[1]), int(sys.argv[2])
k_in, k_out = bytes.fromhex(sys.argv[3]), bytes.fromhex(sys.argv[4])
CL, VIP, tag, n, denied = sys.argv[5], sys.argv[6], sys.argv[7], int(sys.argv[8]), int(sys.argv[9])
GW, SERVER = "192.0.2.1", "10.0.0.5"
tx = SecurityAssociation(ESP, spi=spi_gw, crypt_algo="AES-GCM", crypt_key=k_in,
                         tunnel_header=IP(src=CL, dst=GW), nat_t_header=UDP(sport=4500, dport=4500))
rx = SecurityAssociation(ESP, spi=spi_cl, crypt_algo="AES-GCM", crypt_key=k_out,
                         tunnel_header=IP(src=GW, dst=CL), nat_t_header=UDP(sport=4500, dport=4500))
sn = AsyncSniffer(iface="cwan", store=True,
                  lfilter=lambda p: IP in p and p[IP].src == GW and p[IP].dst == CL and UDP in p and p[UDP].sport == 4500)
sn.start()
time.sleep(0.5)
for i in range(n):
    send(tx.encrypt(IP(src=VIP, dst=SERVER) / UDP(sport=40000, dport=7000) / Raw(b"%s-%d" % (tag.encode(), i))))
    if i < denied:
        send(tx.encrypt(IP(src=VIP, dst=SERVER) / UDP(sport=40000, dport=7001) / Raw(b"%s-denied-%d" % (tag.encode(), i))))
    time.sleep(0.25)
time.sleep(1.0)
replies, errors = [], []
for p in sn.stop():
    try:
        plain = rx.decrypt(IP(bytes(p[IP])))
    except Exception as e:
        errors.append(str(e))
        continue
    if UDP in plain and Raw in plain:
        replies.append({"src": plain[IP].src, "dst": plain[IP].dst, "sport": plain[UDP].sport,
                        "dport": plain[UDP].dport, "data": bytes(plain[Raw].load).decode()})
print(json.dumps({"replies": replies, "errors": errors}))
"#;

    /// The LAN server: echo on 7000, listen on 7001, report every datagram as
    /// `port peer_ip peer_port payload` lines when stdin closes or after the time limit.
    const SERVER_PY: &str = r#"
import select, socket, sys, time
socks = {}
for port in (7000, 7001):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("10.0.0.5", port))
    socks[s] = port
print("ready", flush=True)
end = time.time() + float(sys.argv[1])
log = []
while time.time() < end:
    r, _, _ = select.select(list(socks) + [sys.stdin], [], [], 0.2)
    if sys.stdin in r:
        break
    for s in r:
        data, peer = s.recvfrom(2048)
        log.append("%d %s %d %s" % (socks[s], peer[0], peer[1], data.decode(errors="replace")))
        if socks[s] == 7000:
            s.sendto(b"echo " + data, peer)
print("\n".join(log), flush=True)
"#;

    fn sh(args: &[&str]) -> Result<String, String> {
        let out = Command::new(args[0]).args(&args[1..]).output().map_err(|e| format!("{args:?}: {e}"))?;
        if !out.status.success() {
            return Err(format!("{args:?}: {}", String::from_utf8_lossy(&out.stderr)));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Deletes the named namespaces when dropped.
    struct Netns(Vec<String>);

    impl Drop for Netns {
        fn drop(&mut self) {
            for n in &self.0 {
                let _ = Command::new("ip").args(["netns", "del", n]).output();
            }
        }
    }

    struct StopOnDrop(Arc<AtomicBool>);

    impl Drop for StopOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }

    fn e2s<E: std::fmt::Display>(e: E) -> String {
        e.to_string()
    }

    fn gcm(key: &[u8]) -> Result<Transform, String> {
        Transform::new(Algorithm::Aes128Gcm, Backend::AwsLc, key, &[]).map_err(e2s)
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// Kills (and reaps) a child process this test started when dropped.
    struct KillOnDrop(Option<Child>);

    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            if let Some(mut c) = self.0.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }

    fn in_ns(ns: &str, cmd: &[&str]) -> Result<String, String> {
        let mut v = vec!["ip", "netns", "exec", ns];
        v.extend_from_slice(cmd);
        sh(&v)
    }

    fn links(c: &str, l: &str) -> Result<(), String> {
        sh(&["ip", "link", "add", "gwan", "type", "veth", "peer", "name", "cwan", "netns", c])?;
        sh(&["ip", "link", "add", "glan", "type", "veth", "peer", "name", "lan0", "netns", l])?;
        let _ = sh(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
        for i in ["gwan", "glan"] {
            sh(&["ip", "link", "set", i, "up"])?;
        }
        let c_cmds: [&[&str]; 5] = [
            &["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"],
            &["ip", "link", "set", "lo", "up"],
            &["ip", "addr", "add", "192.0.2.7/24", "dev", "cwan"],
            &["ip", "addr", "add", "192.0.2.8/24", "dev", "cwan"],
            &["ip", "link", "set", "cwan", "up"],
        ];
        for cmd in c_cmds {
            in_ns(c, cmd)?;
        }
        // No route to 10.212.134.0/24 on the LAN: replies can only return translated.
        let l_cmds: [&[&str]; 4] = [
            &["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"],
            &["ip", "link", "set", "lo", "up"],
            &["ip", "addr", "add", "10.0.0.5/24", "dev", "lan0"],
            &["ip", "link", "set", "lan0", "up"],
        ];
        for cmd in l_cmds {
            in_ns(l, cmd)?;
        }
        Ok(())
    }

    fn policies() -> Vec<PolicySpec> {
        vec![PolicySpec {
            id: 1,
            src_if: IfMatch::List(vec![IF_TUN]),
            dst_if: IfMatch::List(vec![IF_LAN]),
            src: AddrSet::prefix(Ipv4Addr::new(10, 212, 134, 0), 24),
            dst: AddrSet::prefix(Ipv4Addr::new(10, 0, 0, 5), 32),
            services: vec![ServiceEntry::Udp { dst: PortRange::one(7000), src: PortRange::ANY }],
            action: Action::Accept,
            nat: true,
            groups: GroupMask::NONE,
        }]
    }

    /// One `"key": value` of a flat JSON object in scapy's output (no JSON dependency).
    fn field<'a>(obj: &'a str, key: &str) -> Option<&'a str> {
        let at = obj.find(&format!("\"{key}\": "))? + key.len() + 4;
        let rest = &obj[at..];
        let end = rest.find([',', '}']).unwrap_or(rest.len());
        Some(rest[..end].trim().trim_matches('"'))
    }

    pub(super) fn run(python: &str) -> Result<(), String> {
        // SAFETY: called before any other thread exists, so the whole process lives in the
        // new namespace, which disappears with it.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            return Err(format!("unshare(CLONE_NEWNET): {}", std::io::Error::last_os_error()));
        }
        let pid = std::process::id();
        let (cns, lns) = (format!("dfc{pid}"), format!("dfl{pid}"));
        sh(&["ip", "netns", "add", &cns])?;
        let mut guard = Netns(vec![cns.clone()]);
        sh(&["ip", "netns", "add", &lns])?;
        guard.0.push(lns.clone());
        links(&cns, &lns)?;

        let prefix = format!("--file-prefix=dgfw{pid}");
        let eal = Eal::init(&[
            "--no-huge",
            "-m",
            "512",
            "--no-pci",
            "--no-shconf",
            "--no-telemetry",
            "-l",
            "0-1",
            "--vdev=net_af_packet0,iface=gwan",
            "--vdev=net_af_packet1,iface=glan",
            "--log-level=lib.eal:error",
            &prefix,
        ])
        .map_err(e2s)?;
        let wan = port::port_by_name(&eal, "net_af_packet0").map_err(e2s)?;
        let lan = port::port_by_name(&eal, "net_af_packet1").map_err(e2s)?;
        let pool = Mempool::new(&eal, "fwnetns", PoolConfig::new(2047)).map_err(e2s)?;
        let cfg = PortConfig { rx_desc: 256, tx_desc: 256, ..PortConfig::default() };
        let pw = Port::configure(&eal, wan, &cfg, &pool).map_err(e2s)?;
        let pl = Port::configure(&eal, lan, &cfg, &pool).map_err(e2s)?;
        pw.start().map_err(e2s)?;
        pl.start().map_err(e2s)?;
        let io = EthdevIo::new(
            pool.clone(),
            vec![pw.take_rx(0).map_err(e2s)?, pl.take_rx(0).map_err(e2s)?],
            vec![pw.take_tx(0).map_err(e2s)?, pl.take_tx(0).map_err(e2s)?],
        )
        .map_err(e2s)?;

        let (mut control, mut links) = Plane::build::<Mbuf>(&PlaneConfig::default());
        control.policy.store(PolicySet::compile(&policies(), 3, None).map_err(e2s)?);
        let link = links.pop().ok_or("no worker link")?;
        let stop = Arc::new(AtomicBool::new(false));
        let interfaces = vec![Interface::new(wan, Role::Wan, GW_WAN), Interface::new(lan, Role::Lan, GW_LAN)];
        let worker = {
            let stop = stop.clone();
            let mut wcfg = WorkerConfig::new(interfaces, 0);
            wcfg.firewall = Some(FirewallConfig::new(vec![(wan, IF_WAN), (lan, IF_LAN)]));
            eal.launch(1, move || match Worker::new(link, wcfg, io) {
                Ok(mut w) => {
                    w.run(&stop);
                    0
                }
                Err(_) => 1,
            })
            .map_err(e2s)?
        };
        let _stop = StopOnDrop(stop.clone());

        // Both clients' SA pairs, tagged with the tunnel interface as the control plane would.
        let encap = Some(UdpEncap { local_port: 4500, remote_port: 4500 });
        let mut spis = Vec::new();
        for c in &CLIENTS {
            let spi = control.spis.allocate(0).ok_or("spi")?;
            let sa_in = InboundSa::new(spi, gcm(&c.key_in)?, false, 64, Lifetime::default());
            let tag = TunnelTag { if_index: IF_TUN, groups: GroupMask::NONE, conn_id: None };
            let entry = InboundEntry::new(sa_in, IpAddr::V4(c.vip), None).with_tunnel(tag);
            control.install_inbound(Box::new(entry)).map_err(|_| "ring full")?;
            let tunnel = Tunnel { local: GW_WAN.into(), remote: c.outer.into(), encap };
            let sa_out = OutboundSa::new(c.spi_client, gcm(&c.key_out)?, tunnel, false, Lifetime::default())
                .with_if_index(IF_TUN);
            control.outbound.install_vip(c.vip, sa_out).map_err(e2s)?;
            spis.push(spi);
        }
        let nets = [
            DpCommand::RouteAdd { prefix: Ipv4Addr::new(192, 0, 2, 0), len: 24, hop: NextHop::Connected { port: wan } },
            DpCommand::RouteAdd { prefix: Ipv4Addr::new(10, 0, 0, 0), len: 24, hop: NextHop::Connected { port: lan } },
        ];
        for c in nets {
            control.command(0, c).map_err(|_| "ring full")?;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while control.counter(Counter::Commands) < 4 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        if control.counter(Counter::Commands) < 4 {
            return Err("the worker did not apply its commands".into());
        }
        let ticking = Arc::new(AtomicBool::new(true));
        let ticker = {
            let (clock, ticking) = (control.clock.clone(), ticking.clone());
            std::thread::spawn(move || {
                let mut t = 1;
                while ticking.load(Ordering::Relaxed) {
                    clock.set(t);
                    t += 1;
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        };

        // The LAN server, bounded by its own time limit and by `timeout`.
        let mut server = KillOnDrop(Some(
            Command::new("ip")
                .args(["netns", "exec", &lns, "timeout", "60", python, "-u", "-c", SERVER_PY, "45"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(e2s)?,
        ));
        let mut server_out = {
            use std::io::BufRead;
            let child = server.0.as_mut().ok_or("server")?;
            let stdout = child.stdout.take().ok_or("server stdout")?;
            let mut r = std::io::BufReader::new(stdout);
            let mut line = String::new();
            r.read_line(&mut line).map_err(e2s)?;
            if line.trim() != "ready" {
                return Err(format!("server did not start: {line:?}"));
            }
            r
        };

        let mut clients = Vec::new();
        for (c, spi) in CLIENTS.iter().zip(&spis) {
            let child = Command::new("timeout")
                .args(["60", "ip", "netns", "exec", &cns, python, "-c", CLIENT_PY])
                .args([spi.to_string(), c.spi_client.to_string(), hex(&c.key_in), hex(&c.key_out)])
                .args([c.outer.to_string(), c.vip.to_string(), c.tag.to_string()])
                .args([SENDS.to_string(), DENIED.to_string()])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(e2s)?;
            clients.push(KillOnDrop(Some(child)));
        }
        let mut reports = Vec::new();
        for k in &mut clients {
            let out = k.0.take().ok_or("client")?.wait_with_output().map_err(e2s)?;
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            if !out.status.success() {
                return Err(format!("scapy client failed: {}\n{stdout}", String::from_utf8_lossy(&out.stderr)));
            }
            reports.push(stdout);
        }
        ticking.store(false, Ordering::Relaxed);
        let _ = ticker.join();
        // Closing its stdin makes the server print what it received and exit.
        let log = {
            use std::io::Read;
            let child = server.0.as_mut().ok_or("server")?;
            drop(child.stdin.take());
            let mut s = String::new();
            server_out.read_to_string(&mut s).map_err(e2s)?;
            let _ = child.wait();
            s
        };
        drop(server);

        let counters: Vec<String> = Counter::ALL
            .iter()
            .map(|&c| (c, control.counter(c)))
            .filter(|&(_, n)| n != 0)
            .map(|(c, n)| format!("{}={n}", c.name()))
            .collect();
        let drops: Vec<String> =
            control.shared[0].stats.nonzero_drops().iter().map(|(r, n)| format!("{}={n}", r.name())).collect();
        let set = control.policy.load();
        let (p1, p0) = (set.counters(1).ok_or("policy 1")?, set.counters(0).ok_or("implicit deny")?);
        let why = format!(
            "clients said {reports:?}; server log {log:?}; counters {counters:?}; drops {drops:?}; policy 1 {p1:?}; \
             implicit deny {p0:?}"
        );

        // What the server saw: per client tag, the (address, port) it came from.
        let mut seen: Vec<(String, String, String)> = Vec::new();
        for l in log.lines() {
            let parts: Vec<&str> = l.splitn(4, ' ').collect();
            if let [port, ip, sport, data] = parts[..] {
                if port == "7001" {
                    return Err(format!("a datagram for the denied port reached the server: {l}; {why}"));
                }
                let tag = data.split('-').next().unwrap_or("").to_string();
                seen.push((tag, ip.to_string(), sport.to_string()));
            }
        }
        for c in &CLIENTS {
            let from: Vec<&(String, String, String)> = seen.iter().filter(|s| s.0 == c.tag).collect();
            if from.len() + 2 < SENDS as usize {
                return Err(format!("server got {} of {SENDS} datagrams of client {}; {why}", from.len(), c.tag));
            }
            if from.iter().any(|s| s.1 != GW_LAN.to_string() || s.2 != from[0].2) {
                return Err(format!("client {} not seen from one translated address and port; {why}", c.tag));
            }
        }
        let port_of = |tag: &str| seen.iter().find(|s| s.0 == tag).map(|s| s.2.clone());
        if port_of("A") == port_of("B") {
            return Err(format!("both clients share one NAT port; {why}"));
        }

        // What each client opened: echoes of its own datagrams only, to its own address/port.
        for (c, report) in CLIENTS.iter().zip(&reports) {
            if !report.contains("\"errors\": []") {
                return Err(format!("scapy could not open some packets of client {}; {why}", c.tag));
            }
            let replies: Vec<&str> = report.split('{').skip(2).collect();
            if replies.len() + 2 < SENDS as usize {
                return Err(format!("client {} got {} of {SENDS} echoes; {why}", c.tag, replies.len()));
            }
            for r in &replies {
                let ok = field(r, "src") == Some("10.0.0.5")
                    && field(r, "dst") == Some(&c.vip.to_string())
                    && field(r, "sport") == Some("7000")
                    && field(r, "dport") == Some("40000")
                    && field(r, "data").is_some_and(|d| d.starts_with(&format!("echo {}-", c.tag)));
                if !ok {
                    return Err(format!("client {} opened a reply that is not its own: {r}; {why}", c.tag));
                }
            }
        }

        let denied = control.drops(DropReason::PolicyDenied);
        if denied != u64::from(2 * DENIED) || p0.packets != u64::from(2 * DENIED) {
            return Err(format!("expected {} policy drops; {why}", 2 * DENIED));
        }
        if p1.hits != 2 || p1.packets < u64::from(2 * (2 * SENDS - 2)) {
            return Err(format!("policy 1 counters; {why}"));
        }
        stop.store(true, Ordering::Relaxed);
        let rc = worker.join().map_err(e2s)?;
        if rc != 0 {
            return Err(format!("worker returned {rc}"));
        }
        drop(guard);
        println!(
            "server saw A from {GW_LAN}:{} and B from {GW_LAN}:{}; policy 1 {p1:?}; implicit deny {p0:?}; drops {drops:?}",
            port_of("A").unwrap_or_default(),
            port_of("B").unwrap_or_default()
        );
        Ok(())
    }
}
