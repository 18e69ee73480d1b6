//! The worker on real links: net_af_packet on veths into two network namespaces this test
//! creates, scapy as the remote-access client.
//!
//! ```text
//!  netns dgc<pid> (client)            this process (own netns)                 netns dgl<pid> (LAN)
//!  cwan 192.0.2.7/24  ═══veth═══ gwan [DPDK port, WAN 192.0.2.1]               │
//!                                       worker on lcore 1                      │
//!                               glan [DPDK port, LAN 10.0.0.1]  ═══veth═══ lan0 10.0.0.5/24
//!                                                                   route 10.212.134.0/24 via 10.0.0.1
//! ```
//!
//! The SA pair is installed while the worker runs: the inbound SA through the command ring,
//! the outbound SA through the RCU table. Scapy in the client namespace sends ICMP echo
//! requests from the client's virtual address 10.212.134.200 to 10.0.0.5, sealed as ESP in
//! UDP 4500 (RFC 3948); the LAN host's kernel answers (so the cleartext arrived), the worker
//! seals the answer, and scapy opens it. Nobody configures a MAC address: the client's and the
//! LAN host's ARP requests for the gateway are answered by the worker, and the worker resolves
//! the LAN host and the client with its own ARP requests.
//!
//! Needs root and scapy (`scripts/setup` creates `.venv` with it; override with
//! `DIALGATE_PYTHON`); otherwise it reports SKIPPED. The namespaces are deleted on every way
//! out; the process's own namespace (holding the gateway-side veth ends) dies with it.

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
            println!("test worker_esp_through_netns_with_scapy ... ok");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("test worker_esp_through_netns_with_scapy ... FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(dpdk)]
mod imp {
    use core::net::{IpAddr, Ipv4Addr};
    use std::process::Command;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use dialgate_dataplane::esp::{Algorithm, Backend, Transform};
    use dialgate_dataplane::ring::Command as DpCommand;
    use dialgate_dataplane::route::NextHop;
    use dialgate_dataplane::sa::table::InboundEntry;
    use dialgate_dataplane::sa::{InboundSa, Lifetime, OutboundSa, Tunnel, UdpEncap};
    use dialgate_dataplane::worker::{Counter, Interface, Plane, PlaneConfig, Role, Worker, WorkerConfig};
    use dialgate_ffi::io::EthdevIo;
    use dialgate_ffi::{port, Eal, Mbuf, Mempool, PoolConfig, Port, PortConfig};

    const GW_WAN: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);
    const GW_LAN: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const VIP: Ipv4Addr = Ipv4Addr::new(10, 212, 134, 200);
    const CLIENT_SPI: u32 = 0xc1c1_0001;
    /// AES-128-GCM keying material (16-byte key + 4-byte salt, RFC 4106 §8.1), per direction.
    const KEY_IN: [u8; 20] = *b"client->gateway key!";
    const KEY_OUT: [u8; 20] = *b"gateway->client key!";
    const PINGS: u32 = 8;

    /// The client: seal echo requests, sniff and open what comes back, print JSON.
    const CLIENT_PY: &str = r#"
import json, sys, time
from scapy.all import IP, UDP, ICMP, Raw, AsyncSniffer, send, conf
from scapy.layers.ipsec import ESP, SecurityAssociation
conf.verb = 0
spi_gw, spi_cl, k_in, k_out, n = int(sys.argv[1]), int(sys.argv[2]), bytes.fromhex(sys.argv[3]), bytes.fromhex(sys.argv[4]), int(sys.argv[5])
GW, CL, VIP, HOST = "192.0.2.1", "192.0.2.7", "10.212.134.200", "10.0.0.5"
tx = SecurityAssociation(ESP, spi=spi_gw, crypt_algo="AES-GCM", crypt_key=k_in,
                         tunnel_header=IP(src=CL, dst=GW), nat_t_header=UDP(sport=4500, dport=4500))
rx = SecurityAssociation(ESP, spi=spi_cl, crypt_algo="AES-GCM", crypt_key=k_out,
                         tunnel_header=IP(src=GW, dst=CL), nat_t_header=UDP(sport=4500, dport=4500))
sn = AsyncSniffer(iface="cwan", store=True,
                  lfilter=lambda p: IP in p and p[IP].src == GW and UDP in p and p[UDP].sport == 4500)
sn.start()
time.sleep(0.5)
for i in range(n):
    inner = IP(src=VIP, dst=HOST) / ICMP(type=8, id=0x4447, seq=i) / Raw(b"dialgate-%d" % i)
    send(tx.encrypt(inner))
    time.sleep(0.25)
time.sleep(1.0)
replies, errors = [], []
for p in sn.stop():
    try:
        plain = rx.decrypt(IP(bytes(p[IP])))
    except Exception as e:
        errors.append(str(e))
        continue
    if ICMP in plain and plain[ICMP].type == 0:
        replies.append({"src": plain[IP].src, "dst": plain[IP].dst, "seq": plain[ICMP].seq,
                        "data": bytes(plain[Raw].load).decode()})
print(json.dumps({"replies": replies, "errors": errors}))
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

    fn links(c: &str, l: &str) -> Result<(), String> {
        sh(&["ip", "link", "add", "gwan", "type", "veth", "peer", "name", "cwan", "netns", c])?;
        sh(&["ip", "link", "add", "glan", "type", "veth", "peer", "name", "lan0", "netns", l])?;
        // The gateway-side ends carry no kernel addresses: only DPDK speaks on them.
        let _ = sh(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
        for i in ["gwan", "glan"] {
            sh(&["ip", "link", "set", i, "up"])?;
        }
        let c_cmds: [&[&str]; 4] = [
            &["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"],
            &["ip", "link", "set", "lo", "up"],
            &["ip", "addr", "add", "192.0.2.7/24", "dev", "cwan"],
            &["ip", "link", "set", "cwan", "up"],
        ];
        for cmd in c_cmds {
            let mut v = vec!["ip", "netns", "exec", c];
            v.extend_from_slice(cmd);
            sh(&v)?;
        }
        let l_cmds: [&[&str]; 5] = [
            &["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"],
            &["ip", "link", "set", "lo", "up"],
            &["ip", "addr", "add", "10.0.0.5/24", "dev", "lan0"],
            &["ip", "link", "set", "lan0", "up"],
            &["ip", "route", "add", "10.212.134.0/24", "via", "10.0.0.1"],
        ];
        for cmd in l_cmds {
            let mut v = vec!["ip", "netns", "exec", l];
            v.extend_from_slice(cmd);
            sh(&v)?;
        }
        Ok(())
    }

    pub(super) fn run(python: &str) -> Result<(), String> {
        // SAFETY: called before any other thread exists, so the whole process lives in the
        // new namespace, which disappears with it.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            return Err(format!("unshare(CLONE_NEWNET): {}", std::io::Error::last_os_error()));
        }
        let pid = std::process::id();
        let (cns, lns) = (format!("dgc{pid}"), format!("dgl{pid}"));
        sh(&["ip", "netns", "add", &cns])?;
        let mut guard = Netns(vec![cns.clone()]);
        sh(&["ip", "netns", "add", &lns])?;
        guard.0.push(lns.clone());
        links(&cns, &lns)?;

        let prefix = format!("--file-prefix=dgwn{pid}");
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
        let pool = Mempool::new(&eal, "wnetns", PoolConfig::new(2047)).map_err(e2s)?;
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
        let link = links.pop().ok_or("no worker link")?;
        let stop = Arc::new(AtomicBool::new(false));
        let interfaces = vec![Interface::new(wan, Role::Wan, GW_WAN), Interface::new(lan, Role::Lan, GW_LAN)];
        let worker = {
            let stop = stop.clone();
            let wcfg = WorkerConfig::new(interfaces, 0);
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

        // The SA pair, as the IKE responder would install it after IKE_AUTH.
        let spi = control.spis.allocate(0).ok_or("spi")?;
        let sa_in = InboundSa::new(spi, gcm(&KEY_IN)?, false, 64, Lifetime::default());
        control.install_inbound(Box::new(InboundEntry::new(sa_in, IpAddr::V4(VIP), None))).map_err(|_| "ring full")?;
        let encap = Some(UdpEncap { local_port: 4500, remote_port: 4500 });
        let tunnel = Tunnel { local: GW_WAN.into(), remote: CLIENT.into(), encap };
        control
            .outbound
            .install_vip(VIP, OutboundSa::new(CLIENT_SPI, gcm(&KEY_OUT)?, tunnel, false, Lifetime::default()))
            .map_err(e2s)?;
        let nets = [
            DpCommand::RouteAdd { prefix: Ipv4Addr::new(192, 0, 2, 0), len: 24, hop: NextHop::Connected { port: wan } },
            DpCommand::RouteAdd { prefix: Ipv4Addr::new(10, 0, 0, 0), len: 24, hop: NextHop::Connected { port: lan } },
        ];
        for c in nets {
            control.command(0, c).map_err(|_| "ring full")?;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while control.counter(Counter::Commands) < 3 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        // The coarse clock paces ARP retries: tick it while the client runs.
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

        let out = Command::new("timeout")
            .args(["60", "ip", "netns", "exec", &cns, python, "-c", CLIENT_PY])
            .args([spi.to_string(), CLIENT_SPI.to_string(), hex(&KEY_IN), hex(&KEY_OUT), PINGS.to_string()])
            .output()
            .map_err(e2s)?;
        ticking.store(false, Ordering::Relaxed);
        let _ = ticker.join();
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            return Err(format!("scapy client failed: {}\n{stdout}", String::from_utf8_lossy(&out.stderr)));
        }
        let counters: Vec<String> = Counter::ALL
            .iter()
            .map(|&c| (c, control.counter(c)))
            .filter(|&(_, n)| n != 0)
            .map(|(c, n)| format!("{}={n}", c.name()))
            .collect();
        let drops: Vec<String> =
            control.shared[0].stats.nonzero_drops().iter().map(|(r, n)| format!("{}={n}", r.name())).collect();
        let why = format!("client said {stdout}; counters {counters:?}; drops {drops:?}");

        // Parse the client's report without a JSON dependency: count the replies it opened
        // and check each one's addresses and payload.
        let replies = stdout.matches("\"src\": \"10.0.0.5\", \"dst\": \"10.212.134.200\"").count();
        if replies + 2 < PINGS as usize {
            return Err(format!("only {replies} of {PINGS} echo replies came back sealed and opened; {why}"));
        }
        for i in 0..PINGS {
            let pat = format!("\"seq\": {i}, \"data\": \"dialgate-{i}\"");
            if stdout.contains(&format!("\"seq\": {i},")) && !stdout.contains(&pat) {
                return Err(format!("reply {i} carries the wrong payload; {why}"));
            }
        }
        if !stdout.contains("\"errors\": []") {
            return Err(format!("scapy could not open some packets; {why}"));
        }
        let c = |k| control.counter(k);
        if c(Counter::ArpReplies) < 2
            || c(Counter::NeighboursLearned) < 2
            || c(Counter::Decrypted) < u64::from(PINGS) - 2
        {
            return Err(format!("ARP/ESP counters; {why}"));
        }
        stop.store(true, Ordering::Relaxed);
        let rc = worker.join().map_err(e2s)?;
        if rc != 0 {
            return Err(format!("worker returned {rc}"));
        }
        drop(guard);
        println!("{replies} of {PINGS} echo replies opened by scapy; counters {counters:?}; drops {drops:?}");
        Ok(())
    }
}
